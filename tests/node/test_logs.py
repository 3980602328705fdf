"""The node's logs (issue 10 item 2, node side).

- in process: a leadership change is logged once (shard, term, leader), not per cycle;
  a durable write over ``slow_fsync_ms`` is a warning with its milliseconds;
- real processes: with ``--log-format json`` every line a node writes parses as JSON and
  carries ``node``, the leadership lines carry ``shard``, ``term`` and ``leader``, and the
  region-state lines the region followed; ``--log-format text`` (the default) still works.
"""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from hongbao.config.topology import parse_topology
from hongbao.node.runtime import NodeRuntime
from hongbao.node.runtime_limits import RuntimeLimits
from hongbao.node.storage import Durability, NodeEnv
from hongbao.ops.local import LocalCluster, write_topology
from hongbao.proto.gen.hongbao.v1 import ledger_pb2
from tests.cluster.support import TEMPLATE, Harness, users_per_shard
from tests.node.topologies import ONE_NODE

RUNTIME_LOGGER = "hongbao.node.runtime"


@pytest.fixture
def runtime(tmp_path: Path) -> Iterator[NodeRuntime]:
    env = NodeEnv(tmp_path / "n1", durability=Durability.NO_FSYNC, map_size_bytes=1 << 26)
    try:
        yield NodeRuntime(
            topology=parse_topology(ONE_NODE),
            node_id=1,
            env=env,
            limits=RuntimeLimits(slow_fsync_ms=100),
        )
    finally:
        env.close()


def _events(caplog: pytest.LogCaptureFixture, name: str) -> list[logging.LogRecord]:
    return [r for r in caplog.records if getattr(r, "event", None) == name]


def test_a_leadership_change_is_logged_once(
    runtime: NodeRuntime, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger=RUNTIME_LOGGER)
    core = runtime.groups[0].core
    core.campaign()
    for _ in range(10):
        runtime.cycle(1)
    assert runtime.groups[0].is_leader
    changes = [r for r in _events(caplog, "leader_changed") if getattr(r, "shard", None) == 0]
    assert len(changes) == 1
    (line,) = changes
    assert line.levelno == logging.INFO
    assert (line.term, line.leader) == (core.term, 1)  # type: ignore[attr-defined]


def test_a_slow_durable_write_is_a_warning_with_its_ms(
    runtime: NodeRuntime, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger=RUNTIME_LOGGER)
    hook = runtime.env.on_durable_write
    assert hook is not None  # the runtime listens to its env
    hook(0.05)  # 50 ms: under the 100 ms threshold
    assert _events(caplog, "slow_fsync") == []
    hook(0.25)
    (line,) = _events(caplog, "slow_fsync")
    assert line.levelno == logging.WARNING
    assert line.fsync_ms == 250.0  # type: ignore[attr-defined]
    assert line.slow_fsync_ms == 100  # type: ignore[attr-defined]
    assert "250.0 ms" in line.getMessage()


def _json_lines(path: Path) -> list[dict[str, Any]]:
    lines = [line for line in path.read_text().splitlines() if line.strip()]
    assert lines, f"{path} is empty"
    parsed = []
    for line in lines:
        try:
            parsed.append(json.loads(line))
        except json.JSONDecodeError:
            pytest.fail(f"{path.name}: not JSON: {line!r}")
    return parsed


def test_json_and_text_formats_on_real_nodes(tmp_path: Path) -> None:
    config = write_topology(tmp_path / "topology.toml", template=TEMPLATE)
    cluster = LocalCluster(
        config, tmp_path / "data", no_fsync=True, node_args=["--log-format", "json"]
    )
    cluster.args_of_node = {3: ["--log-format", "text"]}  # the last flag wins: text on 3
    harness = Harness(cluster)
    try:
        cluster.start()
        leaders = harness.leaders()
        users = users_per_shard(cluster.topology, 1, "logs-user-")
        request = ledger_pb2.DepositRequest(
            request_id=uuid.uuid4().hex, user_id=users[0][0], amount_fen=100
        )
        harness.wallet(leaders[0]).Deposit(request, timeout=5.0)
        harness.close()
        cluster.stop_together()  # SIGTERM: the shutdown's lines must be JSON too
    finally:
        harness.close()
        cluster.close()

    for node_id in (1, 2):
        lines = _json_lines(cluster.log_path(node_id))
        assert all(line["node"] == node_id for line in lines)
        assert all(line["component"] == "node" for line in lines)
        assert {line["region"] for line in lines} == {cluster.topology.region_of(node_id)}
        changes = [line for line in lines if line.get("event") == "leader_changed"]
        assert changes
        for change in changes:
            assert isinstance(change["shard"], int)
            assert isinstance(change["term"], int)
            assert change["term"] >= 1
            assert change["leader"] in (1, 2, 3)
            assert change["level"] == "info"
        # One line per shard and term: no repeats of the same change.
        seen = [(c["shard"], c["term"], c["leader"]) for c in changes]
        assert len(seen) == len(set(seen))
        led = {c["shard"] for c in changes}
        assert set(range(cluster.topology.shard_count)) <= led
        followed = {
            line["state_region"]: line["state"]
            for line in lines
            if line.get("event") == "region_state_changed"
        }
        assert followed == {"shenzhen": "active", "shanghai": "active", "tianjin": "active"}
        assert any(line["msg"] == f"node {node_id} stopped" for line in lines)

    text = cluster.log_path(3).read_text()
    assert "node-3 INFO hongbao.node.runtime:" in text
    assert "event=leader_changed" in text
    assert "{" not in text.splitlines()[0]
