"""The cluster state in real node processes (configs/local.toml, fresh ports): set through
Admin on the meta leader, followed by every node (health, leadership targets), guarded by
the cluster id, and surviving the loss of the meta leader's node."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from hongbao.node.errors import ErrorReason
from hongbao.proto.gen.hongbao.v1 import admin_pb2, admin_pb2_grpc, ledger_pb2
from tests.cluster.support import Harness, rpc_error, running_cluster, wait_for

CONVERGE_S = 10.0
META_LEADER_S = 15.0
WALLET = "hongbao.v1.Wallet"
ACTIVE, DRAINING = admin_pb2.REGION_STATE_ACTIVE, admin_pb2.REGION_STATE_DRAINING


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Harness]:
    with running_cluster(tmp_path_factory.mktemp("meta-cluster"), no_fsync=True) as harness:
        yield harness
        harness.quiesce_stop_audit()


def admin(h: Harness, node_id: int) -> admin_pb2_grpc.AdminStub:
    return admin_pb2_grpc.AdminStub(h.channel(node_id))


def meta_leader(h: Harness) -> int:
    """The meta leader every running meta replica agrees on (waits for one)."""

    def probe() -> int | None:
        leaders, claimants = set(), set()
        for node_id in h.running():
            status = h.status(node_id)
            if status is None:
                return None
            if status.HasField("meta_group"):
                leaders.add(int(status.meta_group.leader_node_id))
                if status.meta_group.role == admin_pb2.ROLE_LEADER:
                    claimants.add(node_id)
        if len(leaders) != 1 or leaders != claimants:  # the leader itself says so, too
            return None
        return leaders.pop()

    return wait_for(probe, META_LEADER_S, "an agreed meta leader")


def set_state(
    h: Harness, region: str, state: int, expected_version: int = 0
) -> admin_pb2.ClusterStateResponse:
    request = admin_pb2.SetRegionStateRequest(
        region=region, state=state, expected_version=expected_version
    )
    response: admin_pb2.ClusterStateResponse = admin(h, meta_leader(h)).SetRegionState(
        request, timeout=10
    )
    return response


def wait_converged(h: Harness, version: int) -> None:
    """Every running node reports cluster state ``version`` (Status and ClusterState)."""

    def probe() -> bool:
        for node_id in h.running():
            status = h.status(node_id)
            if status is None or status.cluster_state_version != version:
                return False
            answer = admin(h, node_id).ClusterState(admin_pb2.ClusterStateRequest(), timeout=2)
            if answer.version != version:
                return False
        return True

    wait_for(probe, CONVERGE_S, f"every node at cluster state version {version}")


def health_of(h: Harness, node_id: int, service: str) -> int | None:
    stub = health_pb2_grpc.HealthStub(h.channel(node_id))
    try:
        answer = stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=2)
    except grpc.RpcError:
        return None
    return int(answer.status)


def test_set_region_state_converges_on_every_node(cluster: Harness) -> None:
    before = admin(cluster, 1).ClusterState(
        admin_pb2.ClusterStateRequest(linearizable=True), timeout=5
    ) if meta_leader(cluster) == 1 else None  # fmt: skip
    answer = set_state(cluster, "tianjin", DRAINING)
    if before is not None:
        assert answer.version == before.version + 1
    assert {r.name: r.state for r in answer.regions}["tianjin"] == DRAINING
    wait_converged(cluster, answer.version)
    for node_id in cluster.running():
        status = cluster.status(node_id)
        assert status is not None
        expected = DRAINING if status.region == "tianjin" else ACTIVE
        assert status.region_state == expected
        assert status.cluster_id == answer.cluster_id
        assert len(status.shards) == cluster.topology.shard_count  # ledger shards only
        assert status.meta_group.shard_id == 65536
    back = set_state(cluster, "tianjin", ACTIVE)
    assert back.version == answer.version + 1
    wait_converged(cluster, back.version)


def test_a_stale_expected_version_is_refused(cluster: Harness) -> None:
    leader = meta_leader(cluster)
    current = admin(cluster, leader).ClusterState(
        admin_pb2.ClusterStateRequest(linearizable=True), timeout=5
    )
    request = admin_pb2.SetRegionStateRequest(
        region="tianjin", state=DRAINING, expected_version=current.version + 5
    )
    with pytest.raises(grpc.RpcError) as caught:
        admin(cluster, leader).SetRegionState(request, timeout=10)
    assert caught.value.code() is grpc.StatusCode.FAILED_PRECONDITION  # type: ignore[attr-defined]
    assert f"version {current.version}, not {current.version + 5}" in caught.value.details()  # type: ignore[attr-defined]
    follower = next(n for n in cluster.running() if n != leader)
    _, error = rpc_error(
        lambda: admin(cluster, follower).ClusterState(
            admin_pb2.ClusterStateRequest(linearizable=True), timeout=5
        )
    )
    assert error.reason is ErrorReason.NOT_LEADER
    assert error.leader_hint is not None
    assert error.leader_hint.node_id == leader


def test_a_draining_region_turns_its_client_services_not_serving(cluster: Harness) -> None:
    node = cluster.topology.nodes_in("tianjin")[0].node_id
    wait_for(  # the follower acts on a poll after the state is applied: wait for it
        lambda: health_of(cluster, node, WALLET) == health_pb2.HealthCheckResponse.SERVING,
        CONVERGE_S,
        "tianjin's node to report SERVING",
    )
    drained = set_state(cluster, "tianjin", DRAINING)
    try:
        wait_for(
            lambda: all(
                health_of(cluster, node, service) == health_pb2.HealthCheckResponse.NOT_SERVING
                for service in (WALLET, "hongbao.v1.Envelopes", "hongbao.v1.Batch")
            ),
            CONVERGE_S,
            "tianjin's node to report NOT_SERVING for Wallet, Envelopes and Batch",
        )
        assert health_of(cluster, node, "") == health_pb2.HealthCheckResponse.SERVING
        other = cluster.topology.nodes_in("shenzhen")[0].node_id
        assert health_of(cluster, other, WALLET) == health_pb2.HealthCheckResponse.SERVING
        # No leadership goes to the draining region.
        leaders = cluster.leaders()
        shard = next(s for s, leader in leaders.items() if leader != node)
        code, error = rpc_error(
            lambda: admin(cluster, leaders[shard]).TransferLeader(
                admin_pb2.TransferLeaderRequest(shard_id=shard, target_node_id=node, wait_ms=0),
                timeout=5,
            )
        )
        assert code is grpc.StatusCode.INVALID_ARGUMENT
        assert "tianjin, which is draining" in error.message
    finally:
        active = set_state(cluster, "tianjin", ACTIVE)
    assert active.version == drained.version + 1
    wait_for(
        lambda: health_of(cluster, node, WALLET) == health_pb2.HealthCheckResponse.SERVING,
        CONVERGE_S,
        "tianjin's node to report SERVING again",
    )


def test_a_call_for_another_cluster_is_refused(cluster: Harness) -> None:
    ours = cluster.status(1)
    assert ours is not None
    other = (("hongbao-cluster-id", "some-other-cluster"),)
    code, error = rpc_error(
        lambda: admin(cluster, 1).Status(admin_pb2.StatusRequest(), metadata=other, timeout=5)
    )
    assert code is grpc.StatusCode.FAILED_PRECONDITION
    assert error.reason is ErrorReason.CLUSTER_MISMATCH
    assert ours.cluster_id in error.message
    assert "some-other-cluster" in error.message
    code, error = rpc_error(
        lambda: cluster.wallet(1).Balance(
            ledger_pb2.BalanceRequest(user_id="alice"), metadata=other, timeout=5
        )
    )
    assert error.reason is ErrorReason.CLUSTER_MISMATCH
    same = (("hongbao-cluster-id", ours.cluster_id),)
    accepted = admin(cluster, 1).Status(admin_pb2.StatusRequest(), metadata=same, timeout=5)
    assert accepted.node_id == 1


def test_topology_answers_the_file_the_node_was_started_with(cluster: Harness) -> None:
    answer = admin(cluster, 2).Topology(admin_pb2.TopologyRequest(), timeout=5)
    assert answer.toml == Path(cluster.cluster.config_path).read_text()
    assert Path(answer.source) == Path(cluster.cluster.config_path).resolve()
    status = cluster.status(2)
    assert status is not None
    assert answer.cluster_id == status.cluster_id


def test_the_meta_group_survives_the_loss_of_its_leaders_node(cluster: Harness) -> None:
    leader = meta_leader(cluster)
    before = set_state(cluster, "shanghai", DRAINING)
    wait_converged(cluster, before.version)
    cluster.cluster.kill(leader)
    cluster.forget_channel(leader)
    try:
        new_leader = meta_leader(cluster)
        assert new_leader != leader
        after = set_state(cluster, "shanghai", ACTIVE)
        assert after.version == before.version + 1
        assert after.meta_leader_node_id == new_leader
        wait_converged(cluster, after.version)
    finally:
        cluster.cluster.start([leader])
    wait_converged(cluster, after.version)  # the returning replica catches up
    cluster.leaders()


def test_shard_audit_is_served_by_the_shards_leader(cluster: Harness) -> None:
    leaders = cluster.leaders()
    answer = admin(cluster, leaders[0]).ShardAudit(
        admin_pb2.ShardAuditRequest(shard_id=0), timeout=5
    )
    assert answer.shard_id == 0
    assert list(answer.problems) == []
