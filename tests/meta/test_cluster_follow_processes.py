"""A node without a meta replica follows the cluster state over Admin.ClusterState.

Four real node processes: configs/local.toml plus node 4 in shenzhen, which has no
replica of the meta group (that is on the first node of each region). It must still
turn NOT_SERVING when its region drains, report the state's version, and keep following
when its own region's meta replica is gone (it asks another region's).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from grpc_health.v1 import health_pb2

from hongbao.config.topology import META_GROUP_ID
from hongbao.ops.local import LocalCluster, write_topology
from hongbao.proto.gen.hongbao.v1 import admin_pb2
from tests.cluster.support import TEMPLATE, Harness, wait_for
from tests.meta.test_cluster_state_processes import (
    ACTIVE,
    CONVERGE_S,
    DRAINING,
    WALLET,
    admin,
    health_of,
    set_state,
    wait_converged,
)

NODE_4 = '\n[[nodes]]\nid = 4\nregion = "shenzhen"\nhost = "127.0.0.1"\nport = 7104\n'


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Harness]:
    root = tmp_path_factory.mktemp("follow-cluster")
    template = root / "template.toml"
    template.write_text(TEMPLATE.read_text() + NODE_4)
    config = write_topology(root / "topology.toml", template=template)
    with LocalCluster(config, root / "data", no_fsync=True) as local:
        harness = Harness(local)
        try:
            local.start()
            harness.leaders()
            yield harness
        finally:
            harness.close()


def test_node_4_hosts_no_meta_replica(cluster: Harness) -> None:
    assert META_GROUP_ID not in cluster.topology.groups_on(4)
    status = cluster.status(4)
    assert status is not None
    assert not status.HasField("meta_group")
    assert status.region == "shenzhen"


def test_a_node_without_a_meta_replica_follows_a_drain(cluster: Harness) -> None:
    drained = set_state(cluster, "shenzhen", DRAINING)
    try:
        wait_for(
            lambda: health_of(cluster, 4, WALLET) == health_pb2.HealthCheckResponse.NOT_SERVING,
            CONVERGE_S,
            "node 4 to report NOT_SERVING",
        )
        wait_converged(cluster, drained.version)
        status = cluster.status(4)
        assert status is not None
        assert status.region_state == DRAINING
        answer = admin(cluster, 4).ClusterState(admin_pb2.ClusterStateRequest(), timeout=5)
        assert answer.answered_by_node_id in cluster.topology.meta_replicas
        assert answer.answered_by_node_id != 4
    finally:
        active = set_state(cluster, "shenzhen", ACTIVE)
    wait_for(
        lambda: health_of(cluster, 4, WALLET) == health_pb2.HealthCheckResponse.SERVING,
        CONVERGE_S,
        "node 4 to report SERVING again",
    )
    wait_converged(cluster, active.version)


def test_it_asks_another_region_when_its_own_meta_replica_is_gone(cluster: Harness) -> None:
    local_meta = next(
        n for n in cluster.topology.meta_replicas if cluster.topology.region_of(n) == "shenzhen"
    )
    cluster.cluster.kill(local_meta)
    cluster.forget_channel(local_meta)
    try:
        changed = set_state(cluster, "tianjin", DRAINING)
        wait_converged(cluster, changed.version)
        answer = admin(cluster, 4).ClusterState(admin_pb2.ClusterStateRequest(), timeout=5)
        assert answer.version == changed.version
        assert answer.answered_by_node_id not in (4, local_meta)
        back = set_state(cluster, "tianjin", ACTIVE)
        wait_converged(cluster, back.version)
    finally:
        cluster.cluster.start([local_meta])
    cluster.leaders()


def test_the_topology_file_the_test_wrote_is_the_one_served(cluster: Harness) -> None:
    answer = admin(cluster, 4).Topology(admin_pb2.TopologyRequest(), timeout=5)
    assert answer.toml == Path(cluster.cluster.config_path).read_text()
