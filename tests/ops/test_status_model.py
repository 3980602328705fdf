"""The cluster view's judgements from synthetic snapshots (no processes): health by the
printed thresholds, leaders, skew, and every anomaly the view must flag."""

from __future__ import annotations

from pathlib import Path

from hongbao.config.topology import META_GROUP_ID, Topology, load_topology
from hongbao.meta.state import ClusterState, RegionEntry, RegionState, to_proto
from hongbao.ops.drain import quorum_problems
from hongbao.ops.status import ClusterStatus, NodeStatus
from hongbao.ops.transfer import caught_up_candidates
from hongbao.proto.gen.hongbao.v1 import admin_pb2

CONFIG = Path(__file__).resolve().parents[2] / "configs" / "local.toml"
LEADER, FOLLOWER = admin_pb2.ROLE_LEADER, admin_pb2.ROLE_FOLLOWER


def topology() -> Topology:
    return load_topology(CONFIG)


def shard(
    group: int,
    role: admin_pb2.Role,
    term: int = 2,
    *,
    last: int = 10,
    progress: dict[int, int] | None = None,
    active: bool = True,
) -> admin_pb2.ShardStatus:
    return admin_pb2.ShardStatus(
        shard_id=group, role=role, term=term, commit_index=last, applied_index=last,
        last_index=last,
        progress=[admin_pb2.ReplicaProgress(node_id=n, match_index=m, lag_entries=last - m,
                                            recent_active=active)
                  for n, m in (progress or {}).items()],
    )  # fmt: skip


def home_view(
    t: Topology,
    *,
    cluster_id: str = "c1",
    latency_ms: float = 5.0,
    down: frozenset[int] = frozenset(),
) -> list[NodeStatus]:
    """Every shard led by its home node, every follower caught up; ``down`` silent."""
    views: list[NodeStatus] = []
    for spec in t.nodes:
        node_id = int(spec.node_id)
        if node_id in down:
            views.append(NodeStatus(spec, None, "UNAVAILABLE: refused"))
            continue
        shards = []
        for s in t.shards_on(node_id):
            if t.home_leader_of(s) == node_id:
                others = {int(n): 10 for n in t.replicas_of(s) if n != node_id and n not in down}
                shards.append(shard(s, LEADER, progress=others))
            else:
                shards.append(shard(s, FOLLOWER))
        response = admin_pb2.StatusResponse(node_id=node_id, region=spec.region, shards=shards,
                                            cluster_id=cluster_id)  # fmt: skip
        meta_home = int(t.home_leader_of(META_GROUP_ID))
        peers = {int(n): 10 for n in t.meta_replicas if n != node_id and n not in down}
        role = LEADER if node_id == meta_home else FOLLOWER
        response.meta_group.CopyFrom(shard(META_GROUP_ID, role, progress=peers))
        views.append(NodeStatus(spec, response, latency_ms=latency_ms))
    return views


def test_a_healthy_view_has_home_leaders_no_skew_and_no_anomaly() -> None:
    t = topology()
    view = ClusterStatus(t, home_view(t), expected_cluster_id="c1")
    assert view.leaders() == {s: int(t.home_leader_of(s)) for s in range(12)}
    assert [view.leader_skew(int(n.node_id)) for n in t.nodes] == [0, 0, 0]
    assert [view.health_of(n) for n in view.nodes] == ["up", "up", "up"]
    assert view.anomalies() == []
    data = view.to_json()
    assert data["thresholds"] == {"suspect_after_ms": 1000, "down_after_ms": 3000}
    assert data["leaderless_shards"] == []


def test_health_follows_the_thresholds() -> None:
    t = topology()
    slow = ClusterStatus(t, home_view(t, latency_ms=1500.0))
    assert {slow.health_of(n) for n in slow.nodes} == {"suspect"}
    gone = ClusterStatus(t, home_view(t, down=frozenset({3})))
    assert [gone.health_of(n) for n in gone.nodes] == ["up", "up", "down"]
    # Silent to us, but a leader heard from it within an election timeout: suspect.
    heard = home_view(t, down=frozenset({3}))
    status = heard[0].status
    assert status is not None
    status.shards[0].progress.append(admin_pb2.ReplicaProgress(node_id=3, recent_active=True))
    assert ClusterStatus(t, heard).health_of(heard[2]) == "suspect"


def test_two_leaders_in_one_term_are_flagged() -> None:
    t = topology()
    nodes = home_view(t)
    second = nodes[1].status
    assert second is not None
    second.shards[0].role = LEADER  # node 2 also claims shard 0, term 2
    kinds = [a.kind for a in ClusterStatus(t, nodes).anomalies()]
    assert kinds == ["double_leader"]


def test_lost_quorum_other_cluster_and_overdue_drain_are_flagged() -> None:
    t = topology()
    view = ClusterStatus(t, home_view(t, down=frozenset({2, 3})), expected_cluster_id="c1")
    assert {a.kind for a in view.anomalies()} == {"no_quorum"}
    assert len(view.anomalies()) == 13  # every shard and the meta group

    impostor = ClusterStatus(t, home_view(t, cluster_id="other"), expected_cluster_id="c1")
    assert [a.kind for a in impostor.anomalies()] == ["cluster_mismatch"] * 3

    state = ClusterState("c1", 4, (RegionEntry("shenzhen", RegionState.DRAINING, 1_000, 5_000),
                                   RegionEntry("shanghai"), RegionEntry("tianjin")))  # fmt: skip
    nodes = [NodeStatus(n.spec, n.status, latency_ms=1.0, cluster_state=to_proto(state))
             for n in home_view(t)]  # fmt: skip
    late = ClusterStatus(t, nodes, expected_cluster_id="c1", taken_at_ms=9_000)
    assert [a.kind for a in late.anomalies()] == ["drain_overdue"]
    assert "4.0 s after its deadline" in late.anomalies()[0].message
    in_time = ClusterStatus(t, nodes, expected_cluster_id="c1", taken_at_ms=4_000)
    assert in_time.anomalies() == []
    assert in_time.region_state("shenzhen") is RegionState.DRAINING


def test_only_caught_up_replicas_in_allowed_regions_are_candidates() -> None:
    t = topology()
    nodes = home_view(t)
    view = ClusterStatus(t, nodes)
    assert caught_up_candidates(view, 0, lambda n: n != 1) == ([2, 3], "")
    leader = nodes[0].status
    assert leader is not None
    leader.shards[0].progress[0].match_index = 0  # node 2 far behind on shard 0
    leader.shards[0].progress[0].lag_entries = 10
    leader.shards[0].last_index = 100
    leader.shards[0].progress[1].match_index = 95
    assert caught_up_candidates(view, 0, lambda n: n != 1) == ([3], "")
    none, why = caught_up_candidates(view, 0, lambda n: n == 2)
    assert none == []
    assert "node 2 is 100 entries behind" in why


def test_a_drain_that_would_cost_a_quorum_is_refused_up_front() -> None:
    t = topology()
    active = ClusterState.initial("c1", ("shenzhen", "shanghai", "tianjin"))
    assert quorum_problems(t, active, "shenzhen") == []
    regions = (RegionEntry("shenzhen"), RegionEntry("shanghai", RegionState.DRAINED),
               RegionEntry("tianjin"))  # fmt: skip
    one_out = ClusterState("c1", 2, regions)
    problems = quorum_problems(t, one_out, "shenzhen")
    assert len(problems) == 13
    assert problems[-1].startswith("meta would keep 1 of 3")
    assert META_GROUP_ID == 65536
