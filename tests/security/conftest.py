"""One real 3-node cluster shared by every probe module of tests/security, and a prober.

Node 2 is stopped for the probes: without certificates the worst case is a forger who
claims a node whose own stream is not open (a node that is down, or not yet connected),
because a claim beside the real node's live stream is refused outright
(test_peer_probes.test_a_forged_stream_beside_a_live_one_is_refused). With node 2 down
every probe claiming node 2 meets the per-message checks. At teardown node 2 comes back
and the cluster is quiesced, stopped and audited (the offline audit compares replica
digests: any divergence or money from nothing fails it).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.cluster.support import Harness, running_cluster, wait_for
from tests.security.raw_peer import Prober

FORGED_NODE = 2
LOG_TIMEOUT_S = 10.0


@pytest.fixture(scope="package")
def probed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Harness]:
    with running_cluster(tmp_path_factory.mktemp("probed"), no_fsync=True) as harness:
        harness.cluster.stop(FORGED_NODE)
        harness.leaders()  # shards led by node 2 have new leaders on nodes 1 and 3
        yield harness
        harness.cluster.start([FORGED_NODE])
        harness.quiesce_stop_audit()


@pytest.fixture(scope="package")
def prober(probed: Harness) -> Iterator[Prober]:
    tool = Prober(probed.topology)
    yield tool
    tool.close()


def log_size(harness: Harness, node_id: int) -> int:
    """Where node ``node_id``'s log ends now: pass it to :func:`wait_logged` as ``after``."""
    path: Path = harness.cluster.log_path(node_id)
    return path.stat().st_size if path.exists() else 0


def wait_logged(harness: Harness, node_id: int, text: str, *, after: int) -> str:
    """Wait until ``text`` is logged by node ``node_id`` past byte ``after``; the line."""

    def probe() -> str | None:
        path: Path = harness.cluster.log_path(node_id)
        with path.open("rb") as log:
            log.seek(after)
            for line in log.read().decode(errors="replace").splitlines():
                if text in line:
                    return line
        return None

    return wait_for(probe, LOG_TIMEOUT_S, f"node {node_id} to log {text!r}")


def assert_alive(harness: Harness, *node_ids: int) -> None:
    """Each node's process runs and it answers Status (a busy node within a deadline)."""
    for node_id in node_ids:
        assert harness.cluster.is_running(node_id), harness.cluster.tail(node_id, 60)
        wait_for(lambda n=node_id: harness.status(n), LOG_TIMEOUT_S, f"node {node_id} to answer")


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """The fuzz figures (make fuzz), when the fuzz tests ran in this session."""
    from tests.security.fuzz_targets import TALLY  # only now: it builds a ledger at import

    if not TALLY:
        return
    tried = sum(TALLY[k] for k in ("peer_batches", "delivers", "ledger_requests", "ledger_entries"))
    terminalreporter.write_line(
        f"fuzz: inputs tried {tried} (peer batches {TALLY['peer_batches']}, delivers"
        f" {TALLY['delivers']}, ledger requests {TALLY['ledger_requests']}, ledger entries"
        f" {TALLY['ledger_entries']}); refused {TALLY['refused']}; crashes {TALLY['crashes']},"
        f" stops {TALLY['stops']}, state changes on refusal"
        f" {TALLY['state_changes_on_refusal']}, money from nothing {TALLY['money_from_nothing']}"
    )
