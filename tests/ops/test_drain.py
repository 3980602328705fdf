"""`hongbao region drain/undrain` and `cluster balance` under a steady load through routers.

A drain must fail no client request (none failed, none abandoned, none unknown), leave
no shard (nor the meta group) led in the region, turn the region's node NOT_SERVING for
the client services, and be reversible: undrain + balance bring the leaders home.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from tests.cluster.support import wait_for
from tests.ops.support import (
    NOT_SERVING,
    SERVING,
    Load,
    balances,
    cluster_with_routers,
    group_leaders,
    health_of,
    hongbao,
    status_json,
    status_of,
    wait_home,
)

pytestmark = pytest.mark.cluster

REGION = "shenzhen"
DEADLINE_S = "60"


@pytest.mark.parametrize("shard_count", [12, 48])
def test_drain_under_load_fails_nothing_and_undrain_brings_leaders_home(
    tmp_path: Path, shard_count: int
) -> None:
    with cluster_with_routers(tmp_path, shard_count=shard_count) as cluster:
        topology = cluster.topology
        config = str(cluster.config_path)
        drained_nodes = [int(n.node_id) for n in topology.nodes_in(REGION)]
        with Load(topology) as load:
            load.wait_for_acks(60)
            started = time.monotonic()
            drained = hongbao("region", "drain", REGION, "--config", config,
                              "--deadline-s", DEADLINE_S, "--json")  # fmt: skip
            wall_s = time.monotonic() - started
            assert drained.returncode == 0, drained.stdout + drained.stderr
            report = json.loads(drained.stdout)
            after_drain = load.stats.ok
            load.wait_for_acks(after_drain + 60)  # traffic keeps flowing, through every router
        stats = load.stop()
        assert stats.failures == [], stats.failures[:5]
        assert stats.abandoned == 0
        assert report["done"]
        assert report["state"] == "drained"
        assert report["stuck"] == []
        assert report["propagation"]["behind"] == []

        leaders = group_leaders(topology)
        assert not [g for g, n in leaders.items() if n in drained_nodes]
        assert len(leaders) == shard_count + 1  # and the meta group
        node = topology.node(drained_nodes[0]).address
        assert health_of(node, "hongbao.v1.Wallet") == NOT_SERVING
        assert health_of(topology.nodes[1].address, "hongbao.v1.Wallet") == SERVING
        status = status_json(cluster.config_path)
        region = next(r for r in status["regions"] if r["name"] == REGION)
        assert region["state"] == "drained"
        # (An election in progress on a busy machine is a transient no_leader.)
        assert [a for a in status["anomalies"] if a["kind"] != "no_leader"] == []
        # Nothing acknowledged was lost, nothing applied twice.
        assert balances(topology, load.users()) == stats.acknowledged

        undrained = hongbao("region", "undrain", REGION, "--config", config, "--json")
        assert undrained.returncode == 0, undrained.stderr
        wait_for(lambda: health_of(node, "hongbao.v1.Wallet") == SERVING, 10.0, "SERVING again")
        balanced = hongbao("cluster", "balance", "--config", config, "--json")
        assert balanced.returncode == 0, balanced.stderr
        assert json.loads(balanced.stdout)["moved_shards"]  # at least the drained ones
        wait_home(topology, cluster.config_path)
        print(
            f"\nFIGURE drain of {REGION} with {shard_count} shards under load: "
            f"{report['elapsed_s']:.2f} s inside the command ({wall_s:.2f} s wall, "
            f"{len(report['moved'])} leaderships moved, {report['attempts']} attempts); "
            f"failed requests: {len(stats.failures)} of {stats.attempts}"
        )


def test_a_draining_region_gets_no_leadership_back(tmp_path: Path) -> None:
    """Neither balance nor an election hands a draining region's replica a leadership,
    though its log is as long as any (it was a voter all along)."""
    with cluster_with_routers(tmp_path) as cluster:
        topology = cluster.topology
        config = str(cluster.config_path)
        drained = hongbao("region", "drain", REGION, "--config", config, "--json")
        assert drained.returncode == 0, drained.stdout + drained.stderr
        # Balance: the home of shards 0, 3, 6, 9 (and the meta group) is in the drained
        # region; they stay away. (Other shards may move: on a busy machine elections
        # happen, and balance brings those home.)
        balanced = hongbao("cluster", "balance", "--config", config, "--json")
        assert balanced.returncode == 0, balanced.stderr
        report = json.loads(balanced.stdout)
        assert not set(report["moved_shards"]) & {0, 3, 6, 9}
        assert report["meta_moved"] is False
        assert not [g for g, n in group_leaders(topology).items() if n == 1]
        # The leader of most groups dies: the elections that follow must not leave node 1
        # in office (its log is as long as any: it was a voter all along).
        status = status_of(topology)
        leaders = status.group_leaders()
        victim = max({2, 3}, key=lambda n: sum(1 for v in leaders.values() if v == n))
        led_by_victim = [g for g, n in leaders.items() if n == victim]
        for group in led_by_victim:
            mine = status.replica(1, group)
            lead = status.replica(victim, group)
            assert mine is not None
            assert lead is not None
            assert mine.last_index >= lead.last_index - 1
        cluster.kill(victim)
        survivor = ({2, 3} - {victim}).pop()

        def all_with_survivor() -> dict[int, int] | None:
            now = group_leaders(topology)
            return now if all(now.get(g) == survivor for g in led_by_victim) else None

        try:
            wait_for(all_with_survivor, 20.0, f"node {survivor} to lead every group")
        except TimeoutError:
            now = group_leaders(topology)
            taken = {g: now.get(g) for g in led_by_victim if now.get(g) != survivor}
            raise AssertionError(f"groups not led by node {survivor}: {taken}") from None
        cluster.start([victim])


def test_drain_refusals_change_nothing(tmp_path: Path) -> None:
    with cluster_with_routers(tmp_path) as cluster:
        config = str(cluster.config_path)
        unknown = hongbao("region", "drain", "atlantis", "--config", config)
        assert unknown.returncode == 4
        assert "unknown region 'atlantis'" in unknown.stderr
        first = hongbao("region", "drain", "shanghai", "--config", config, "--json")
        assert first.returncode == 0, first.stdout + first.stderr
        # With shanghai out, draining shenzhen would leave every shard one active replica.
        refused = hongbao("region", "drain", REGION, "--config", config)
        assert refused.returncode == 4
        assert "without a quorum" in refused.stderr
        listed = status_json(cluster.config_path)["regions"]
        regions = {r["name"]: r["state"] for r in listed}
        assert regions == {"shenzhen": "active", "shanghai": "drained", "tianjin": "active"}
        assert hongbao("region", "undrain", "atlantis", "--config", config).returncode == 4
        assert hongbao("region", "undrain", "shanghai", "--config", config).returncode == 0
        bad = hongbao("region", "drain", REGION, "--config", config, "--deadline-s", "-1")
        assert bad.returncode == 2
        help_text = hongbao("region", "drain", "--help").stdout
        assert "Exit codes" in help_text
        assert "deadline passed" in help_text
