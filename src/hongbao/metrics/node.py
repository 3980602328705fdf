"""The node's metrics: what one node process serves on its ``/metrics``.

Rules of this module: the hot path pays almost nothing. Per-shard and per-peer counts are
plain ints kept where the work happens (:class:`~hongbao.node.replica.ShardReplica`,
:class:`~hongbao.node.transport.PeerSender`, the peer servicer) and, like role, term and
indexes, are read by :class:`NodeCollector` only when Prometheus scrapes. Only the two
timings (fsync and cycle) are prometheus_client histograms, observed through the
runtime's ``observe_*`` hooks. The scrape runs in the metrics server's thread: it reads
and never mutates, and copies each dict before walking it (a copy of a dict of ints is
one C call, so the loop cannot change it half-way).

Names and labels are the contract of issue 10 (``shard`` is the group id, ``"meta"`` for
the meta group; ``peer`` the peer's node id). Histogram buckets are in seconds.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from typing import Final, Protocol, final

from prometheus_client import CollectorRegistry, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from hongbao.config.topology import META_GROUP_ID
from hongbao.meta.state import RegionState
from hongbao.node.replica import ShardReplica
from hongbao.raft.types import Role

# An fdatasync on a healthy SSD takes ~0.1-2 ms; etcd calls 10 ms worrying and warns
# at 100 ms (our slow_fsync_ms default): the buckets resolve both ends.
FSYNC_BUCKETS_S: Final = (
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
    2.5,
)  # fmt: skip
# A cycle is ~0.1 ms idle and tens of ms applying a full batch; one near the election
# timeout (hundreds of ms) starves heartbeats.
CYCLE_BUCKETS_S: Final = (
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
)  # fmt: skip
ROLES: Final = tuple(Role)
REGION_STATES: Final = tuple(RegionState)


class SenderCounts(Protocol):
    """What the collector reads of a :class:`~hongbao.node.transport.PeerSender`."""

    @property
    def reconnects(self) -> int: ...

    @property
    def sent_bytes(self) -> int: ...

    @property
    def sent_keepalives(self) -> int: ...


@final
class NodeSources:
    """Where the collector reads from; every callable is cheap and never blocks."""

    def __init__(
        self,
        *,
        groups: Mapping[int, ShardReplica],
        senders: Mapping[int, SenderCounts],
        received_bytes: Callable[[], Mapping[int, int]],
        region_states: Callable[[], Mapping[str, RegionState]],
    ) -> None:
        self.groups = groups
        self.senders = senders
        self.received_bytes = received_bytes
        self.region_states = region_states


def shard_label(group_id: int) -> str:
    return "meta" if group_id == META_GROUP_ID else str(group_id)


@final
class NodeCollector(Collector):
    """Per-shard, per-peer and per-region figures, read at scrape time."""

    def __init__(self, sources: NodeSources) -> None:
        self.sources = sources

    def collect(self) -> Iterator[Metric]:
        replicas = sorted(dict(self.sources.groups).items())
        yield from self._shard_gauges(replicas)
        yield from self._shard_counters(replicas)
        yield from self._peer_counters()
        yield region_state_family(self.sources.region_states())

    def _shard_gauges(self, replicas: list[tuple[int, ShardReplica]]) -> Iterator[Metric]:
        role = GaugeMetricFamily(
            "hongbao_shard_role", "1 for the replica's current Raft role", labels=["shard", "role"]
        )
        term = GaugeMetricFamily("hongbao_shard_term", "Current Raft term", labels=["shard"])
        commit = GaugeMetricFamily(
            "hongbao_shard_commit_index", "Highest log index known committed", labels=["shard"]
        )
        applied = GaugeMetricFamily(
            "hongbao_shard_applied_index", "Highest log index applied here", labels=["shard"]
        )
        apply_lag = GaugeMetricFamily(
            "hongbao_shard_apply_lag_entries",
            "Committed entries not yet applied here",
            labels=["shard"],
        )
        follower_lag = GaugeMetricFamily(
            "hongbao_shard_follower_lag_entries",
            "Leaders only: log entries the slowest follower lacks",
            labels=["shard"],
        )
        quiesced = GaugeMetricFamily(
            "hongbao_shard_quiesced",
            "1 while the replica's group is quiesced: idle, no heartbeats (raft/quiesce.py)",
            labels=["shard"],
        )
        for group_id, replica in replicas:
            shard = shard_label(group_id)
            core = replica.core
            quiesced.add_metric([shard], 1.0 if core.quiesced else 0.0)
            current = core.role
            for each in ROLES:
                role.add_metric([shard, each.value], 1.0 if each is current else 0.0)
            term.add_metric([shard], float(core.term))
            commit_index, applied_index = core.commit_index, core.applied_index
            commit.add_metric([shard], float(commit_index))
            applied.add_metric([shard], float(applied_index))
            apply_lag.add_metric([shard], float(max(0, commit_index - applied_index)))
            if current is Role.LEADER:
                lag = _slowest_follower_lag(replica)
                if lag is not None:
                    follower_lag.add_metric([shard], float(lag))
        yield from (role, term, commit, applied, apply_lag, follower_lag, quiesced)

    def _shard_counters(self, replicas: list[tuple[int, ShardReplica]]) -> Iterator[Metric]:
        families = (
            ("hongbao_proposals", "Entries proposed here as leader", "proposals_total"),
            ("hongbao_entries_applied", "Entries applied here", "entries_applied_total"),
            ("hongbao_snapshot_sends", "Snapshots sent to followers", "snapshot_sends_total"),
            ("hongbao_snapshot_installs", "Snapshots installed here", "snapshot_installs_total"),
            (
                "hongbao_grabs_settled",
                "Grabs of an envelope closed to the grabber (empty, expired, already grabbed)"
                " answered by the leader from its applied state, without a log entry",
                "grabs_settled_total",
            ),
        )
        for name, documentation, attribute in families:
            family = CounterMetricFamily(name, documentation, labels=["shard"])
            for group_id, replica in replicas:
                family.add_metric([shard_label(group_id)], float(getattr(replica, attribute)))
            yield family

    def _peer_counters(self) -> Iterator[Metric]:
        senders = sorted(dict(self.sources.senders).items())
        received = dict(self.sources.received_bytes())
        reconnects = CounterMetricFamily(
            "hongbao_peer_reconnects", "Peer stream reconnect attempts", labels=["peer"]
        )
        sent = CounterMetricFamily(
            "hongbao_peer_sent_bytes", "Raft batch bytes sent to the peer", labels=["peer"]
        )
        got = CounterMetricFamily(
            "hongbao_peer_received_bytes",
            "Raft batch bytes received from the peer",
            labels=["peer"],
        )
        keepalives = CounterMetricFamily(
            "hongbao_peer_keepalives_sent",
            "Empty batches sent to the peer as node-level keepalives (node/liveness.py)",
            labels=["peer"],
        )
        for peer_id, sender in senders:
            reconnects.add_metric([str(peer_id)], float(sender.reconnects))
            sent.add_metric([str(peer_id)], float(sender.sent_bytes))
            keepalives.add_metric([str(peer_id)], float(sender.sent_keepalives))
        for peer_id in sorted(set(received) | {p for p, _ in senders}):
            got.add_metric([str(peer_id)], float(received.get(peer_id, 0)))
        yield from (reconnects, sent, got, keepalives)


def region_state_family(states: Mapping[str, RegionState]) -> GaugeMetricFamily:
    """``hongbao_region_state{region,state}``: 1 for each region's current operator state.

    Shared with the router (its collector follows the cluster state too). No samples
    before the first read of the cluster state: unknown is not ``active``.
    """
    family = GaugeMetricFamily(
        "hongbao_region_state",
        "1 for the region's operator state as this process follows it",
        labels=["region", "state"],
    )
    for region, current in sorted(states.items()):
        for each in REGION_STATES:
            family.add_metric([region, each.value], 1.0 if each is current else 0.0)
    return family


def _slowest_follower_lag(replica: ShardReplica) -> int | None:
    """Entries the slowest voter lacks (None if the progress changed under us)."""
    core = replica.core
    try:
        status = core.status()
    except RuntimeError:  # the loop reset the progress while we read it: skip one sample
        return None
    matches = [peer.match for node, peer in status.peers.items() if node != core.node_id]
    if not matches:
        return 0
    return max(0, int(status.last_index) - int(min(matches)))


@final
class NodeMetrics:
    """The node's registry: the collector plus the two timing histograms."""

    def __init__(self, sources: NodeSources) -> None:
        self.registry = CollectorRegistry(auto_describe=False)
        self.fsync_seconds = Histogram(
            "hongbao_fsync_seconds",
            "Durable LMDB writes (commit and fdatasync of one batch), fsync mode only",
            buckets=FSYNC_BUCKETS_S,
            registry=self.registry,
        )
        self.cycle_seconds = Histogram(
            "hongbao_cycle_seconds",
            "One pass of the node's Ready loop over all its shards",
            buckets=CYCLE_BUCKETS_S,
            registry=self.registry,
        )
        self.collector = NodeCollector(sources)
        self.registry.register(self.collector)
