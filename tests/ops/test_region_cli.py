"""Every new command line against a detached cluster: `cluster status --address`,
`node drain`, `region stop/start`, their errors and exit codes."""

from __future__ import annotations

import json
import tomllib
from collections.abc import Iterator
from pathlib import Path

import pytest

from hongbao.config.topology import Topology, load_topology
from hongbao.ops.local import write_topology
from hongbao.ops.processes import ids_in, pid_alive, read_pid_file
from tests.cluster.support import wait_for
from tests.ops.support import TEMPLATE, group_leaders, hongbao, wait_home

pytestmark = pytest.mark.cluster


class Detached:
    def __init__(self, root: Path) -> None:
        self.config = write_topology(root / "topology.toml", template=TEMPLATE)
        self.data = root / "data"
        self.topology: Topology = load_topology(self.config)

    def run(self, *args: str) -> tuple[int, str, str]:
        result = hongbao(*args)
        return result.returncode, result.stdout, result.stderr

    def with_config(self, *args: str) -> tuple[int, str, str]:
        return self.run(*args, "--config", str(self.config))

    def home(self) -> dict[int, int]:
        return {s: int(self.topology.home_leader_of(s)) for s in range(self.topology.shard_count)}


@pytest.fixture(scope="module")
def detached(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Detached]:
    cluster = Detached(tmp_path_factory.mktemp("region-cli"))
    try:
        code, out, err = cluster.with_config("cluster", "up", "--data-dir", str(cluster.data),
                                             "--no-fsync", "--json")  # fmt: skip
        assert code == 0, out + err
        report = json.loads(out)
        assert [r["router_id"] for r in report["routers"]] == [1, 2, 3]
        assert ids_in(cluster.data, "router") == [1, 2, 3]
        yield cluster
    finally:
        pids = [p.pid for kind in ("node", "router") for i in (1, 2, 3)
                if (p := read_pid_file(cluster.data, i, kind)) is not None]  # fmt: skip
        code, out, err = cluster.run("cluster", "down", "--data-dir", str(cluster.data), "--json")
        assert code == 0, err
        assert json.loads(out)["routers_stopped"] == [1, 2, 3]
        assert not any(pid_alive(pid) for pid in pids)


def test_status_from_any_one_node_or_router_address(detached: Detached) -> None:
    views = []
    for address in (detached.topology.nodes[2].address, detached.topology.routers[0].address):
        code, out, err = detached.run("cluster", "status", "--address", address, "--json")
        assert code == 0, err
        views.append(json.loads(out))
    for view in views:
        assert view["leaders"] == {str(s): n for s, n in detached.home().items()}
        assert [r["up"] for r in view["routers"]] == [True, True, True]
        assert [n["health"] for n in view["nodes"]] == ["up", "up", "up"]
        assert [r["state"] for r in view["regions"]] == ["active"] * 3
        assert view["anomalies"] == []
    assert views[0]["cluster_id"] == views[1]["cluster_id"] != ""
    code, out, _ = detached.run("cluster", "status", "--address",
                                detached.topology.routers[1].address, "--shards")  # fmt: skip
    assert code == 0
    for label in ("regions", "nodes", "shards", "health: up = answered within 1000 ms", "meta"):
        assert label in out

    code, _, err = detached.run("cluster", "status", "--address", "127.0.0.1:1")
    assert code == 4
    assert "did not answer Admin.Topology" in err
    code, _, err = detached.with_config("cluster", "status", "--address", "127.0.0.1:1")
    assert code == 2
    assert "not both" in err


def test_status_flags_nodes_of_another_cluster(detached: Detached, tmp_path: Path) -> None:
    text = detached.config.read_text()
    assert "cluster_id" not in tomllib.loads(text)
    other = tmp_path / "other.toml"
    other.write_text('cluster_id = "impostor"\n' + text)
    code, out, _ = detached.run("cluster", "status", "--config", str(other), "--json")
    assert code == 5
    kinds = [a["kind"] for a in json.loads(out)["anomalies"]]
    assert kinds == ["cluster_mismatch"] * 3


def test_node_drain_moves_every_leadership_off_one_node(detached: Detached) -> None:
    code, out, err = detached.with_config("node", "drain", "--node", "2", "--json")
    assert code == 0, out + err
    report = json.loads(out)
    assert report["done"] is True
    assert report["stuck"] == []
    assert 2 not in group_leaders(detached.topology).values()
    code, _, err = detached.with_config("node", "drain", "--node", "9")
    assert code == 2
    assert "no node 9" in err
    assert "Exit codes" in hongbao("node", "drain", "--help").stdout
    wait_home(detached.topology, detached.config)


def test_region_stop_and_start(detached: Detached) -> None:
    data = ("--data-dir", str(detached.data))
    code, _, err = detached.with_config("region", "stop", "atlantis", *data)
    assert code == 4
    assert "unknown region" in err
    code, _, err = detached.with_config("region", "start", "shenzhen", *data)
    assert code == 4
    assert "already running" in err

    code, out, err = detached.with_config("region", "stop", "shenzhen", *data, "--json")
    assert code == 0, err
    stopped = json.loads(out)
    assert stopped["nodes"]["stopped"] == [1]
    assert stopped["routers"]["stopped"] == [1]

    def elsewhere() -> dict[int, int] | None:
        leaders = group_leaders(detached.topology)
        return leaders if len(leaders) == 13 and 1 not in leaders.values() else None

    wait_for(elsewhere, 30.0, "shenzhen's groups led elsewhere")
    code, out, _ = detached.with_config("cluster", "status", "--json")
    assert code == 0
    view = json.loads(out)
    assert [n["health"] for n in view["nodes"]] == ["down", "up", "up"]
    assert [r["up"] for r in view["routers"]] == [False, True, True]

    code, out, err = detached.with_config("region", "start", "shenzhen", *data, "--no-fsync",
                                          "--json")  # fmt: skip
    assert code == 0, out + err
    started = json.loads(out)
    assert started["nodes"] == [1]
    assert started["routers"] == [1]
    assert started["balance_warning"] is None
    # Home again: moved by the start's balance (or won back by node 1 as it started, for a
    # shard without writes meanwhile).
    wait_home(detached.topology, detached.config)
    assert "Exit codes" in hongbao("region", "start", "--help").stdout
