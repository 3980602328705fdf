"""A clean stop of a real cluster leaves nothing an operator must act on in the logs.

Issue 7 item 8: an ERROR line must mean an operator has something to do. A SIGTERM'd node
used to log ``Exception not handled by _handle_exceptions in servicer method
[/hongbao.v1.Peer/Stream]`` with a ``CancelledError`` traceback for every inbound peer
stream still open: grpc's per-call task outlived ``server.stop()`` and ``asyncio.run``
cancelled it on exit (see ``hongbao.node.transport``).
"""

from __future__ import annotations

from pathlib import Path

from tests.cluster.support import running_cluster


def _alarming(text: str) -> list[str]:
    return [line for line in text.splitlines() if " ERROR " in line or "Traceback" in line]


def test_a_clean_stop_logs_no_error_and_no_traceback(tmp_path: Path) -> None:
    with running_cluster(tmp_path) as harness:  # every shard has a leader: streams are up
        cluster = harness.cluster
        harness.close()
        # One at a time, as `cluster down` and systemd do: while the first stops, its
        # peers still hold streams open to it.
        codes = {node: cluster.stop(node) for node in cluster.node_ids}
        logs = {node: cluster.log_path(node).read_text(errors="replace")
                for node in cluster.node_ids}
    assert codes == dict.fromkeys(codes, 0)
    assert all("stopped" in text for text in logs.values()), logs
    alarming = {node: _alarming(text) for node, text in logs.items() if _alarming(text)}
    assert alarming == {}, "\n".join(
        f"node {node}:\n{logs[node]}" for node in sorted(alarming)
    )
