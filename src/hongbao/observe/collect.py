"""Building a :class:`~hongbao.observe.view.ClusterView` from the admin API and /metrics.

Rules of this module: one view is one :func:`hongbao.ops.status.snapshot` (every node's
Status and every process's cluster state, asked at once) and one scrape of every node's
and router's /metrics, started together. Leaders, health and the anomaly flags are the
ones ``cluster status`` computes (:class:`~hongbao.ops.status.ClusterStatus`), reused,
not recomputed. Rates are deltas of counters against the previous view: per region,
``hongbao_router_requests_total`` of its routers, all codes and those not ``OK``; per
node, ``hongbao_fsync_seconds`` (mean and a p99 bucket bound), flagged ``slow_disk`` over
``[runtime] slow_fsync_ms``. A process without metrics is shown as such.
"""

from __future__ import annotations

import asyncio
import time

from hongbao.config.topology import META_GROUP_ID, Topology
from hongbao.meta.state import RegionState
from hongbao.node.cluster_guard import cluster_id_of
from hongbao.observe.scrape import Scrape, Scraper
from hongbao.observe.view import (
    ClusterView,
    Counters,
    DrainProgress,
    DrainShard,
    Flag,
    NodeView,
    RegionView,
    ReplicaView,
    RouterView,
    ShardView,
)
from hongbao.ops.admin_pool import AdminPool
from hongbao.ops.status import ClusterStatus, NodeStatus, RouterStatus, group_name, snapshot
from hongbao.proto.gen.hongbao.v1 import admin_pb2

REQUESTS = "hongbao_router_requests_total"
FSYNC = "hongbao_fsync_seconds"
SLOW_FSYNC_MS_DEFAULT = 100  # the node runtime's default [runtime] slow_fsync_ms
P99 = 0.99

_ROLES = {
    admin_pb2.ROLE_LEADER: "leader",
    admin_pb2.ROLE_FOLLOWER: "follower",
    admin_pb2.ROLE_CANDIDATE: "candidate",
    admin_pb2.ROLE_PRE_CANDIDATE: "pre_candidate",
}


def slow_fsync_ms_of(topology: Topology) -> int:
    """``[runtime] slow_fsync_ms`` when this version of the runtime limits has it."""
    value = getattr(topology.runtime, "slow_fsync_ms", SLOW_FSYNC_MS_DEFAULT)
    return int(value)


async def collect_view(
    topology: Topology, pool: AdminPool, scraper: Scraper, previous: ClusterView | None
) -> ClusterView:
    """One view of the cluster; ``previous`` (the last one) turns counters into rates."""
    started_s = time.monotonic()
    status, node_scrapes, router_scrapes = await asyncio.gather(
        snapshot(pool, expected_cluster_id=topology.cluster_id or cluster_id_of(topology)),
        scraper.scrape_all([n.metrics_address for n in topology.nodes]),
        scraper.scrape_all([r.metrics_address for r in topology.routers]),
    )
    node_ids = [int(n.node_id) for n in topology.nodes]
    nodes_metrics = dict(zip(node_ids, node_scrapes, strict=True))
    router_ids = [r.router_id for r in topology.routers]
    routers_metrics = dict(zip(router_ids, router_scrapes, strict=True))
    counters = _counters(started_s, nodes_metrics, routers_metrics)
    before = None if previous is None else previous.counters
    interval_s = None if before is None else max(1e-3, started_s - before.taken_at_s)
    slow_ms = slow_fsync_ms_of(topology)
    nodes = {int(n.spec.node_id): _node_view(status, n, nodes_metrics, counters, before, slow_ms)
             for n in status.nodes}  # fmt: skip
    routers = [_router_view(r, routers_metrics[r.spec.router_id], counters, before, interval_s)
               for r in status.routers]  # fmt: skip
    shards = tuple(_shard_views(status))
    state = status.cluster_state
    flags = [Flag(a.kind, a.message) for a in status.anomalies()]
    flags += [
        Flag("slow_disk", f"node {n.node_id} ({n.region}): fsync p99 {n.fsync_ms_p99} ms, "
             f"mean {n.fsync_ms_mean} ms, over slow_fsync_ms {slow_ms}")
        for n in nodes.values() if n.slow_disk
    ]  # fmt: skip
    regions = []
    for region in topology.regions:
        entry = None if state is None else state.region(region.name)
        word = "unknown" if state is None else str(state.state_of(region.name))
        mine = [r for r in routers if r.region == region.name]
        drain = None
        if entry is not None and entry.state is RegionState.DRAINING:
            drain = _drain_progress(status, region.name, entry.deadline_ms)
        regions.append(RegionView(
            name=region.name, state=word, latitude=region.latitude,
            longitude=region.longitude, since_ms=0 if entry is None else entry.since_ms,
            nodes=tuple(v for v in nodes.values() if v.region == region.name),
            routers=tuple(mine),
            leaders_count=sum(1 for s in shards if s.leader_region == region.name),
            requests_per_s=_sum_rates([r.requests_per_s for r in mine]),
            errors_per_s=_sum_rates([r.errors_per_s for r in mine]),
            drain=drain,
        ))  # fmt: skip
    return ClusterView(
        cluster_id=status.expected_cluster_id,
        cluster_state_version=None if state is None else state.version,
        taken_at_ms=status.taken_at_ms,
        interval_s=interval_s,
        shard_count=topology.shard_count,
        slow_fsync_ms=slow_ms,
        regions=tuple(regions),
        shards=shards,
        flags=tuple(flags),
        counters=counters,
    )


def _sum_rates(rates: list[float | None]) -> float | None:
    known = [r for r in rates if r is not None]
    return round(sum(known), 2) if known else None


def _counters(taken_at_s: float, nodes: dict[int, Scrape], routers: dict[int, Scrape]) -> Counters:
    requests: dict[int, tuple[float, float]] = {}
    for router_id, scrape in routers.items():
        if scrape.ok:
            everything = scrape.total(REQUESTS)
            requests[router_id] = (everything, everything - scrape.total(REQUESTS, code="OK"))
    fsync: dict[int, tuple[float, float]] = {}
    buckets: dict[int, tuple[tuple[float, float], ...]] = {}
    for node_id, scrape in nodes.items():
        if scrape.ok and scrape.named(f"{FSYNC}_count"):
            fsync[node_id] = (scrape.total(f"{FSYNC}_sum"), scrape.total(f"{FSYNC}_count"))
            buckets[node_id] = tuple(sorted(
                (float(s.label("le")), s.value) for s in scrape.named(f"{FSYNC}_bucket")
            ))  # fmt: skip
    return Counters(taken_at_s, requests, fsync, buckets)


def _p99_bound_s(buckets: tuple[tuple[float, float], ...], count: float) -> float | None:
    """The smallest bucket bound holding 99 % of ``count`` observations (cumulative)."""
    for bound_s, seen in buckets:
        if seen >= P99 * count:
            return bound_s
    return None


def _node_view(
    status: ClusterStatus,
    node: NodeStatus,
    scrapes: dict[int, Scrape],
    now: Counters,
    before: Counters | None,
    slow_ms: int,
) -> NodeView:
    node_id = int(node.spec.node_id)
    scrape = scrapes[node_id]
    mean_ms = p99_ms = None
    if node_id in now.node_fsync:
        total_s, count = now.node_fsync[node_id]
        buckets = now.node_fsync_buckets[node_id]
        if before is not None and node_id in before.node_fsync:
            old_s, old_count = before.node_fsync[node_id]
            total_s, count = total_s - old_s, count - old_count
            old = dict(before.node_fsync_buckets.get(node_id, ()))
            buckets = tuple((le, seen - old.get(le, 0.0)) for le, seen in buckets)
        if count > 0:
            mean_ms = round(total_s / count * 1000, 2)
            bound_s = _p99_bound_s(buckets, count)
            p99_ms = None if bound_s is None else round(bound_s * 1000, 2)
    slow = (p99_ms is not None and p99_ms > slow_ms) or (mean_ms is not None and mean_ms > slow_ms)
    led = tuple(
        "meta" if g == META_GROUP_ID else str(g)
        for g, n in status.group_leaders().items()
        if n == node_id
    )
    shards = () if node.status is None else node.status.shards
    apply_lag = sum(int(s.apply_lag_entries) for s in shards)
    return NodeView(
        node_id=node_id, region=node.spec.region, address=node.spec.address,
        health=status.health_of(node), latency_ms=round(node.latency_ms, 1), shards_led=led,
        apply_lag_entries=apply_lag, log_lag_entries=status.log_lag_of(node_id),
        metrics="ok" if scrape.ok else scrape.error, fsync_ms_mean=mean_ms,
        fsync_ms_p99=p99_ms, slow_disk=slow, error=node.error,
    )  # fmt: skip


def _router_view(
    router: RouterStatus,
    scrape: Scrape,
    now: Counters,
    before: Counters | None,
    interval_s: float | None,
) -> RouterView:
    router_id = router.spec.router_id
    requests_per_s = errors_per_s = None
    if (
        interval_s is not None
        and before is not None
        and router_id in now.router_requests
        and router_id in before.router_requests
    ):
        (everything, failed), (old_everything, old_failed) = (
            now.router_requests[router_id], before.router_requests[router_id]
        )  # fmt: skip
        # A restarted router starts its counters again from zero: count from there.
        delta = everything - old_everything if everything >= old_everything else everything
        delta_failed = failed - old_failed if failed >= old_failed else failed
        requests_per_s = round(delta / interval_s, 2)
        errors_per_s = round(delta_failed / interval_s, 2)
    return RouterView(
        router_id=router_id, region=router.spec.region, address=router.spec.address,
        up=router.cluster_state is not None, metrics="ok" if scrape.ok else scrape.error,
        requests_per_s=requests_per_s, errors_per_s=errors_per_s,
    )  # fmt: skip


def _shard_views(status: ClusterStatus) -> list[ShardView]:
    topology = status.topology
    leaders = status.group_leaders()
    views = []
    for group_id in status.all_groups():
        leader = leaders.get(group_id)
        lead = None if leader is None else status.replica(leader, group_id)
        lag_of = {} if lead is None else {int(p.node_id): int(p.lag_entries) for p in lead.progress}
        replicas = []
        for node_id in (int(n) for n in topology.replicas_of(group_id)):
            replica = status.replica(node_id, group_id)
            role = "down" if replica is None else _ROLES.get(replica.role, "unknown")
            replicas.append(ReplicaView(
                node_id=node_id, region=topology.region_of(node_id), role=role,
                applied_index=None if replica is None else int(replica.applied_index),
                lag_entries=0 if node_id == leader else lag_of.get(node_id),
            ))  # fmt: skip
        views.append(ShardView(
            shard="meta" if group_id == META_GROUP_ID else str(group_id),
            leader_node_id=leader,
            leader_region=None if leader is None else topology.region_of(leader),
            home_region=topology.region_of(int(topology.home_leader_of(group_id))),
            term=None if lead is None else int(lead.term),
            commit_index=None if lead is None else int(lead.commit_index),
            replicas=tuple(replicas),
        ))  # fmt: skip
    return views


def _drain_progress(status: ClusterStatus, region: str, deadline_ms: int) -> DrainProgress:
    """Each group with a replica in ``region``: is it led elsewhere yet?"""
    topology = status.topology
    leaders = status.group_leaders()
    here = {int(n.node_id) for n in topology.nodes_in(region)}
    shards = []
    for group_id in status.all_groups():
        if not here & {int(n) for n in topology.replicas_of(group_id)}:
            continue
        leader = leaders.get(group_id)
        leader_region = None if leader is None else topology.region_of(leader)
        shards.append(DrainShard(
            shard=group_name(group_id).removeprefix("shard "), leader_node_id=leader,
            leader_region=leader_region, moved=leader is not None and leader_region != region,
        ))  # fmt: skip
    return DrainProgress(deadline_ms=deadline_ms, shards=tuple(shards))
