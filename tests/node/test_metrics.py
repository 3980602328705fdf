"""The node's Prometheus metrics (issue 10 item 1, node side).

- ``start_metrics_server`` serves a registry on 127.0.0.1 and frees its port on close;
- in process: the collector reports role, term and indexes from the runtime's replicas,
  and the cycle and fsync histograms count through the runtime's hooks;
- a real three-node cluster of configs/local.toml (node 1 with fsync, the others
  without, for speed): ``/metrics`` before and after deposits, parsed with
  prometheus_client's parser, shows proposals, applied entries and commit indexes grow,
  exactly one leader per shard across the nodes, and the histograms counted.
"""

from __future__ import annotations

import socket
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry, Counter, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from hongbao.config.topology import parse_topology
from hongbao.ledger.sharding import shard_for_user
from hongbao.meta.state import RegionState
from hongbao.metrics import start_metrics_server
from hongbao.metrics.node import NodeMetrics, NodeSources
from hongbao.node.runtime import NodeRuntime
from hongbao.node.storage import Durability, NodeEnv
from hongbao.ops.local import LocalCluster, wait_until, write_topology
from hongbao.proto.gen.hongbao.v1 import ledger_pb2
from tests.cluster.support import TEMPLATE, Harness, users_per_shard
from tests.node.topologies import ONE_NODE

SCRAPE_TIMEOUT_S = 2.0
Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def parse(text: str) -> Samples:
    """Every sample of a /metrics page, keyed by (sample name, sorted labels)."""
    samples: Samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def scrape(url: str) -> Samples:
    with urllib.request.urlopen(url, timeout=SCRAPE_TIMEOUT_S) as response:
        return parse(response.read().decode())


def by_label(samples: Samples, name: str, label: str) -> dict[str, float]:
    return {dict(labels)[label]: v for (n, labels), v in samples.items() if n == name}


def value(samples: Samples, name: str) -> float:
    return samples.get((name, ()), 0.0)


# -- the server --------------------------------------------------------------------------


def test_metrics_server_serves_its_registry_and_frees_the_port() -> None:
    registry = CollectorRegistry()
    Counter("hongbao_test_things", "things", registry=registry).inc(3)
    server = start_metrics_server(registry, "127.0.0.1", 0)
    try:
        assert value(scrape(server.url), "hongbao_test_things_total") == 3.0
    finally:
        server.close()
    server.close()  # idempotent
    with socket.socket() as probe:  # free again (the scrape's TIME_WAIT needs REUSEADDR)
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        probe.bind(("127.0.0.1", server.port))
        probe.listen()


# -- in process: the collector over a real runtime ----------------------------------------


@pytest.fixture
def one_node(tmp_path: Path) -> Iterator[tuple[NodeRuntime, NodeMetrics]]:
    topology = parse_topology(ONE_NODE)
    env = NodeEnv(tmp_path / "n1", durability=Durability.FSYNC, map_size_bytes=1 << 26)
    try:
        runtime = NodeRuntime(topology=topology, node_id=1, env=env)
        states = {"shenzhen": RegionState.DRAINING}
        metrics = NodeMetrics(
            NodeSources(
                groups=runtime.groups,
                senders={},
                received_bytes=dict,
                region_states=lambda: states,
            )
        )
        runtime.observe_cycle_s = metrics.cycle_seconds.observe
        runtime.observe_fsync_s = metrics.fsync_seconds.observe
        yield runtime, metrics
    finally:
        env.close()


def test_collector_reads_the_replicas_and_hooks_feed_the_histograms(
    one_node: tuple[NodeRuntime, NodeMetrics],
) -> None:
    runtime, metrics = one_node
    runtime.groups[0].core.campaign()
    for _ in range(5):
        runtime.cycle(1)
    assert runtime.groups[0].is_leader
    samples = parse(generate_latest(metrics.registry).decode())
    roles = {
        dict(labels)["role"]: v
        for (n, labels), v in samples.items()
        if n == "hongbao_shard_role" and dict(labels)["shard"] == "0"
    }
    assert roles == {"leader": 1.0, "follower": 0.0, "pre_candidate": 0.0, "candidate": 0.0}
    assert by_label(samples, "hongbao_shard_term", "shard")["0"] >= 1
    commit = by_label(samples, "hongbao_shard_commit_index", "shard")["0"]
    assert commit >= 1  # the leader's empty entry of its term
    assert by_label(samples, "hongbao_shard_applied_index", "shard")["0"] == commit
    assert by_label(samples, "hongbao_shard_apply_lag_entries", "shard")["0"] == 0
    assert by_label(samples, "hongbao_shard_follower_lag_entries", "shard")["0"] == 0
    assert value(samples, "hongbao_cycle_seconds_count") == 5
    assert value(samples, "hongbao_fsync_seconds_count") >= 1  # FSYNC env: timed
    region = {
        dict(labels)["state"]: v
        for (n, labels), v in samples.items()
        if n == "hongbao_region_state"
    }
    assert region == {"active": 0.0, "draining": 1.0, "drained": 0.0}


# -- a real cluster ------------------------------------------------------------------------


def _deposit_everywhere(harness: Harness, leaders: dict[int, int], per_shard: int) -> None:
    users = users_per_shard(harness.topology, per_shard, "metrics-user-")
    for shard_id, shard_users in users.items():
        wallet = harness.wallet(leaders[shard_id])
        for user in shard_users:
            assert shard_for_user(user, harness.topology.shard_count) == shard_id
            request = ledger_pb2.DepositRequest(
                request_id=uuid.uuid4().hex, user_id=user, amount_fen=100
            )
            wallet.Deposit(request, timeout=5.0)


def test_metrics_appear_and_move_under_load(tmp_path: Path) -> None:
    config = write_topology(tmp_path / "topology.toml", template=TEMPLATE)
    cluster = LocalCluster(config, tmp_path / "data")  # fsync on by default...
    cluster.args_of_node = {2: ["--no-fsync"], 3: ["--no-fsync"]}  # ...on node 1 only
    harness = Harness(cluster)
    urls = {
        int(spec.node_id): f"http://{spec.metrics_address}/metrics"
        for spec in cluster.topology.nodes
    }
    try:
        cluster.start()
        leaders = harness.leaders()
        before = {node: scrape(url) for node, url in urls.items()}
        per_shard = 5
        _deposit_everywhere(harness, leaders, per_shard)

        def every_node_applied_them() -> bool:
            now = {node: scrape(url) for node, url in urls.items()}
            return all(
                sum(by_label(now[node], "hongbao_entries_applied_total", "shard").values())
                >= sum(by_label(before[node], "hongbao_entries_applied_total", "shard").values())
                + per_shard * cluster.topology.shard_count
                for node in urls
            )

        wait_until(every_node_applied_them, 10.0, "every node to apply the deposits")
        after = {node: scrape(url) for node, url in urls.items()}
    finally:
        harness.close()
        cluster.close()

    shards = [str(s) for s in range(cluster.topology.shard_count)]
    for node in urls:
        # Every node hosts every shard (replication_factor 3 over 3 nodes) and the meta group.
        commit_before = by_label(before[node], "hongbao_shard_commit_index", "shard")
        commit_after = by_label(after[node], "hongbao_shard_commit_index", "shard")
        assert set(commit_after) == {*shards, "meta"}
        for shard in shards:
            assert commit_after[shard] >= commit_before[shard] + 1, (node, shard)
        applied_after = by_label(after[node], "hongbao_shard_applied_index", "shard")
        assert all(applied_after[s] >= commit_before[s] + 1 for s in shards)
        assert value(after[node], "hongbao_cycle_seconds_count") > value(
            before[node], "hongbao_cycle_seconds_count"
        )
        sent = by_label(after[node], "hongbao_peer_sent_bytes_total", "peer")
        received = by_label(after[node], "hongbao_peer_received_bytes_total", "peer")
        others = {str(n) for n in urls if n != node}
        assert set(sent) == others
        assert all(v > 0 for v in sent.values())
        assert set(received) == others
        assert all(v > 0 for v in received.values())
        assert set(by_label(after[node], "hongbao_peer_reconnects_total", "peer")) == others
        regions = {
            dict(labels)["region"]
            for (n, labels), v in after[node].items()
            if n == "hongbao_region_state" and dict(labels)["state"] == "active" and v == 1.0
        }
        assert regions == {"shenzhen", "shanghai", "tianjin"}

    proposals_grew = sum(
        sum(by_label(after[n], "hongbao_proposals_total", "shard").values())
        - sum(by_label(before[n], "hongbao_proposals_total", "shard").values())
        for n in urls
    )
    assert proposals_grew >= cluster.topology.shard_count  # at least one entry per shard

    for shard in [*shards, "meta"]:  # exactly one leader per shard across the nodes
        leading = [
            node
            for node in urls
            if after[node].get(("hongbao_shard_role", (("role", "leader"), ("shard", shard))))
            == 1.0
        ]
        assert len(leading) == 1, (shard, leading)
        lag = by_label(after[leading[0]], "hongbao_shard_follower_lag_entries", "shard")
        assert shard in lag
        assert lag[shard] >= 0

    # fsync is timed where it happens (node 1) and only there; cycles everywhere.
    assert value(after[1], "hongbao_fsync_seconds_count") > value(
        before[1], "hongbao_fsync_seconds_count"
    )
    assert value(after[2], "hongbao_fsync_seconds_count") == 0
    assert value(after[3], "hongbao_fsync_seconds_count") == 0
