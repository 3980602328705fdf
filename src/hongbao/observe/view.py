"""The cluster view that ``hongbao console`` and ``hongbao top`` both show.

Rules of this module: plain frozen dataclasses, and nothing else. A view is built by
:mod:`hongbao.observe.collect` from one :func:`hongbao.ops.status.snapshot` plus one
scrape of every process's /metrics; it knows no gRPC, no HTTP and no terminal. Rates
(requests per second, fsync latency) are deltas against the previous view, so the raw
counters they came from travel in the view too (``Counters``). ``to_json`` is what the
console's ``/api/view`` serves; its keys are the field names, with units in them.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from hongbao.ops.status import Health


@dataclass(frozen=True, slots=True)
class Flag:
    """An anomaly of ``cluster status`` (double_leader, no_quorum, ...) or slow_disk."""

    kind: str
    message: str


@dataclass(frozen=True, slots=True)
class NodeView:
    node_id: int
    region: str
    address: str
    health: Health
    latency_ms: float
    shards_led: tuple[str, ...]  # "3", "meta"
    apply_lag_entries: int  # committed, not applied, summed over its shards
    log_lag_entries: int | None  # entries behind its leaders (max), None: nobody says
    metrics: str  # "ok", or why there are none ("no metrics port", "unreachable: ...")
    fsync_ms_mean: float | None  # since the previous view (None: no fsync meanwhile)
    fsync_ms_p99: float | None  # a bucket's upper bound, from the histogram's deltas
    slow_disk: bool
    error: str = ""


@dataclass(frozen=True, slots=True)
class RouterView:
    router_id: int
    region: str
    address: str
    up: bool
    metrics: str
    requests_per_s: float | None  # None: no metrics, or no previous view to compare with
    errors_per_s: float | None


@dataclass(frozen=True, slots=True)
class ReplicaView:
    node_id: int
    region: str
    role: str  # leader, follower, candidate, pre_candidate, down
    applied_index: int | None
    lag_entries: int | None  # as the leader sees it (log entries it lacks)


@dataclass(frozen=True, slots=True)
class ShardView:
    shard: str  # "0", "1", ..., "meta"
    leader_node_id: int | None
    leader_region: str | None
    home_region: str
    term: int | None
    commit_index: int | None
    replicas: tuple[ReplicaView, ...]


@dataclass(frozen=True, slots=True)
class DrainShard:
    shard: str
    leader_node_id: int | None
    leader_region: str | None
    moved: bool  # led outside the draining region now


@dataclass(frozen=True, slots=True)
class DrainProgress:
    deadline_ms: int
    shards: tuple[DrainShard, ...]

    @property
    def moved_count(self) -> int:
        return sum(1 for s in self.shards if s.moved)


@dataclass(frozen=True, slots=True)
class RegionView:
    name: str
    state: str  # active, draining, drained, unknown
    latitude: float | None
    longitude: float | None
    since_ms: int
    nodes: tuple[NodeView, ...]
    routers: tuple[RouterView, ...]
    leaders_count: int  # shards (and meta) led from here
    requests_per_s: float | None  # its routers' requests, all codes
    errors_per_s: float | None  # its routers' requests whose code is not OK
    drain: DrainProgress | None  # while draining


@dataclass(frozen=True, slots=True)
class Counters:
    """The raw counters behind the rates, for the next view's deltas."""

    taken_at_s: float  # monotonic
    router_requests: dict[int, tuple[float, float]]  # router id -> (all codes, not OK)
    node_fsync: dict[int, tuple[float, float]]  # node id -> (sum seconds, count)
    node_fsync_buckets: dict[int, tuple[tuple[float, float], ...]]  # (le seconds, count)


@dataclass(frozen=True, slots=True)
class ClusterView:
    cluster_id: str
    cluster_state_version: int | None
    taken_at_ms: int
    interval_s: float | None  # since the previous view; None: the first one
    shard_count: int
    slow_fsync_ms: int
    regions: tuple[RegionView, ...]
    shards: tuple[ShardView, ...]
    flags: tuple[Flag, ...]
    counters: Counters = field(repr=False)

    def region(self, name: str) -> RegionView:
        for region in self.regions:
            if region.name == name:
                return region
        raise KeyError(name)

    def leaders(self) -> dict[str, int | None]:
        return {s.shard: s.leader_node_id for s in self.shards}

    def to_json(self) -> dict[str, object]:
        data = asdict(self)
        del data["counters"]
        for region, view in zip(data["regions"], self.regions, strict=True):
            if view.drain is not None:
                region["drain"]["moved_count"] = view.drain.moved_count
        return data
