"""One consistent view of a cluster: every node's Status and every process's cluster state.

Rules of this module: a view is one snapshot, taken by asking every node and router at
once (never stitched from calls made at different moments, CockroachDB #27807), and
every derived figure (health, leaders, lag, anomalies) is computed from that snapshot
alone. Health follows the thresholds the routers use (``[router] suspect_after_ms`` and
``down_after_ms``) and the view says which ones it used. Each call has a deadline.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Literal

import grpc

from hongbao.client.sdk import HongbaoClient
from hongbao.config.routers import RouterSpec
from hongbao.config.topology import META_GROUP_ID, NodeSpec, Topology
from hongbao.meta.state import ClusterState, RegionState, from_proto
from hongbao.ops.admin_pool import AdminPool
from hongbao.proto.gen.hongbao.v1 import admin_pb2, admin_pb2_grpc

STATUS_TIMEOUT_S = 1.0
POLL_S = 0.02
LEADERS_TIMEOUT_S = 30.0

Health = Literal["up", "suspect", "down"]
AdminSource = HongbaoClient | AdminPool


def node_admin(source: AdminSource, node_id: int) -> admin_pb2_grpc.AdminStub:
    """The Admin stub of ``node_id`` through either kind of source."""
    if isinstance(source, AdminPool):
        return source.node(node_id)
    return source.stubs(node_id).admin


def groups_of(status: admin_pb2.StatusResponse) -> list[admin_pb2.ShardStatus]:
    """The ledger shards of a node's Status, then its meta group replica if it has one."""
    groups = list(status.shards)
    if status.HasField("meta_group"):
        groups.append(status.meta_group)
    return groups


def group_name(group_id: int) -> str:
    return "meta" if group_id == META_GROUP_ID else f"shard {group_id}"


@dataclass(frozen=True, slots=True)
class NodeStatus:
    spec: NodeSpec
    status: admin_pb2.StatusResponse | None  # None: did not answer
    error: str = ""
    latency_ms: float = 0.0
    cluster_state: admin_pb2.ClusterStateResponse | None = None

    @property
    def up(self) -> bool:
        return self.status is not None


@dataclass(frozen=True, slots=True)
class RouterStatus:
    spec: RouterSpec
    cluster_state: admin_pb2.ClusterStateResponse | None
    error: str = ""
    latency_ms: float = 0.0


@dataclass(frozen=True, slots=True)
class Anomaly:
    kind: str  # double_leader, no_quorum, no_leader, cluster_mismatch, drain_overdue, ...
    message: str


@dataclass(slots=True)
class ClusterStatus:
    topology: Topology
    nodes: list[NodeStatus]
    routers: list[RouterStatus] = field(default_factory=list)
    expected_cluster_id: str = ""
    taken_at_ms: int = 0

    # -- cluster state --------------------------------------------------------------------

    @property
    def cluster_state(self) -> ClusterState | None:
        """The newest cluster state any process reported (versions only grow)."""
        answers = [n.cluster_state for n in self.nodes if n.cluster_state is not None]
        answers += [r.cluster_state for r in self.routers if r.cluster_state is not None]
        if not answers:
            return None
        return from_proto(max(answers, key=lambda a: int(a.version)))

    def region_state(self, region: str) -> RegionState | None:
        state = self.cluster_state
        return None if state is None else state.state_of(region)

    # -- health ---------------------------------------------------------------------------

    def health_of(self, node: NodeStatus) -> Health:
        """up: answered within suspect_after_ms; suspect: answered later, or silent to us
        but heard by a leader within an election timeout; down: neither."""
        settings = self.topology.router
        if node.status is not None:
            return "up" if node.latency_ms < settings.suspect_after_ms else "suspect"
        node_id = int(node.spec.node_id)
        for other in self._answered():
            for group in groups_of(other):
                if group.role != admin_pb2.ROLE_LEADER:
                    continue
                if any(p.node_id == node_id and p.recent_active for p in group.progress):
                    return "suspect"
        return "down"

    def thresholds(self) -> dict[str, int]:
        settings = self.topology.router
        return {
            "suspect_after_ms": settings.suspect_after_ms,
            "down_after_ms": settings.down_after_ms,
        }

    def _answered(self) -> list[admin_pb2.StatusResponse]:
        return [n.status for n in self.nodes if n.status is not None]

    # -- leadership -----------------------------------------------------------------------

    def group_leaders(self) -> dict[int, int]:
        """group (shard or META_GROUP_ID) -> node that claims it (the highest term wins)."""
        best: dict[int, tuple[int, int]] = {}
        for node in self.nodes:
            if node.status is None:
                continue
            for group in groups_of(node.status):
                if group.role == admin_pb2.ROLE_LEADER:
                    term = int(group.term)
                    if group.shard_id not in best or term > best[group.shard_id][0]:
                        best[group.shard_id] = (term, int(node.spec.node_id))
        return {group: node for group, (_, node) in sorted(best.items())}

    def leaders(self) -> dict[int, int]:
        """shard -> node that reports itself its leader (ledger shards only)."""
        return {g: n for g, n in self.group_leaders().items() if g != META_GROUP_ID}

    def leaderless_shards(self) -> list[int]:
        leaders = self.leaders()
        return [s for s in range(self.topology.shard_count) if s not in leaders]

    def all_groups(self) -> list[int]:
        return [*range(self.topology.shard_count), int(META_GROUP_ID)]

    def replica(self, node_id: int, group_id: int) -> admin_pb2.ShardStatus | None:
        for node in self.nodes:
            if int(node.spec.node_id) == node_id and node.status is not None:
                for group in groups_of(node.status):
                    if group.shard_id == group_id:
                        return group
        return None

    def leader_replica(self, group_id: int) -> admin_pb2.ShardStatus | None:
        leader = self.group_leaders().get(group_id)
        return None if leader is None else self.replica(leader, group_id)

    def log_lag_of(self, node_id: int) -> int | None:
        """How far ``node_id``'s logs are behind, as its groups' leaders see it (max)."""
        lags = [
            int(p.lag_entries)
            for status in self._answered()
            for group in groups_of(status)
            if group.role == admin_pb2.ROLE_LEADER
            for p in group.progress
            if p.node_id == node_id
        ]
        return max(lags) if lags else None

    def leader_skew(self, node_id: int) -> int:
        """Shards led minus shards homed on the node (+2: it leads two it should not)."""
        led = sum(1 for n in self.leaders().values() if n == node_id)
        homed = sum(
            1
            for s in range(self.topology.shard_count)
            if self.topology.home_leader_of(s) == node_id
        )
        return led - homed

    # -- anomalies ------------------------------------------------------------------------

    def anomalies(self) -> list[Anomaly]:
        found: list[Anomaly] = []
        claims: dict[tuple[int, int], list[int]] = {}
        for node in self.nodes:
            if node.status is None:
                continue
            for group in groups_of(node.status):
                if group.role == admin_pb2.ROLE_LEADER:
                    key = (int(group.shard_id), int(group.term))
                    claims.setdefault(key, []).append(int(node.spec.node_id))
        for (group_id, term), claimants in sorted(claims.items()):
            if len(claimants) > 1:
                text = f"{group_name(group_id)}: nodes {claimants} all lead term {term}"
                found.append(Anomaly("double_leader", text))
        reachable = {int(n.spec.node_id) for n in self.nodes if self.health_of(n) != "down"}
        leaders = self.group_leaders()
        for group_id in self.all_groups():
            replicas = [int(r) for r in self.topology.replicas_of(group_id)]
            alive = [r for r in replicas if r in reachable]
            if len(alive) <= len(replicas) // 2:
                text = (
                    f"{group_name(group_id)}: only {len(alive)} of its replicas {replicas} answer"
                )
                found.append(Anomaly("no_quorum", text))
            elif group_id not in leaders:
                found.append(Anomaly("no_leader", f"{group_name(group_id)} has no leader"))
        for node in self.nodes:
            other = "" if node.status is None else node.status.cluster_id
            if other and self.expected_cluster_id and other != self.expected_cluster_id:
                found.append(Anomaly("cluster_mismatch", f"node {node.spec.node_id} "
                                     f"({node.spec.address}) belongs to cluster {other!r}, "
                                     f"not {self.expected_cluster_id!r}"))  # fmt: skip
        state = self.cluster_state
        now_ms = self.taken_at_ms or int(time.time() * 1000)
        for entry in state.regions if state is not None else ():
            if (
                entry.state is RegionState.DRAINING
                and entry.deadline_ms
                and now_ms > entry.deadline_ms
            ):
                overdue_s = (now_ms - entry.deadline_ms) / 1000
                found.append(Anomaly("drain_overdue", f"region {entry.name} is still draining "
                                     f"{overdue_s:.1f} s after its deadline: run `hongbao region "
                                     f"drain {entry.name}` again or `region undrain`"))  # fmt: skip
            if entry.state is RegionState.DRAINED:
                led = [g for g, n in leaders.items() if self.topology.region_of(n) == entry.name]
                if led:
                    found.append(Anomaly("led_while_drained", f"region {entry.name} is drained "
                                         f"but leads {[group_name(g) for g in led]}"))  # fmt: skip
        return found

    # -- the machine-readable view --------------------------------------------------------

    def shard_rows(self) -> list[dict[str, object]]:
        rows: list[dict[str, object]] = []
        leaders = self.group_leaders()
        for group_id in self.all_groups():
            leader = leaders.get(group_id)
            lead = None if leader is None else self.replica(leader, group_id)
            lags = [int(p.lag_entries) for p in lead.progress] if lead is not None else []
            rows.append({
                "shard_id": "meta" if group_id == META_GROUP_ID else group_id,
                "leader_node_id": leader,
                "leader_region": None if leader is None else self.topology.region_of(leader),
                "home_region": self.topology.region_of(int(self.topology.home_leader_of(group_id))),
                "term": None if lead is None else int(lead.term),
                "commit_index": None if lead is None else int(lead.commit_index),
                "applied_index": None if lead is None else int(lead.applied_index),
                "log_lag_entries_max": max(lags, default=0),
            })  # fmt: skip
        return rows

    def node_json(self, node: NodeStatus) -> dict[str, object]:
        node_id = int(node.spec.node_id)
        entry: dict[str, object] = {
            "node_id": node_id,
            "region": node.spec.region,
            "address": node.spec.address,
            "up": node.up,
            "health": self.health_of(node),
            "latency_ms": round(node.latency_ms, 1),
            "log_lag_entries": self.log_lag_of(node_id),
            "leader_skew": self.leader_skew(node_id),
            "cluster_state_version": None,
        }
        if node.status is None:
            entry["error"] = node.error
        else:
            entry["cluster_id"] = node.status.cluster_id
            entry["cluster_state_version"] = int(node.status.cluster_state_version)
            entry["shards_led"] = [
                s.shard_id for s in node.status.shards if s.role == admin_pb2.ROLE_LEADER
            ]
            entry["leads_meta"] = bool(
                node.status.HasField("meta_group")
                and node.status.meta_group.role == admin_pb2.ROLE_LEADER
            )
            entry["apply_lag_entries"] = sum(int(s.apply_lag_entries) for s in node.status.shards)
            entry["shards"] = [_shard_json(s) for s in node.status.shards]
        return entry

    def to_json(self) -> dict[str, object]:
        leaders = self.leaders()
        state = self.cluster_state
        nodes = [self.node_json(node) for node in self.nodes]
        routers = [
            {
                "router_id": r.spec.router_id,
                "region": r.spec.region,
                "address": r.spec.address,
                "up": r.cluster_state is not None,
                "cluster_state_version": None
                if r.cluster_state is None
                else int(r.cluster_state.version),
                **({"error": r.error} if r.cluster_state is None else {}),
            }
            for r in self.routers
        ]  # fmt: skip
        regions = [
            {
                "name": region.name,
                "state": None if state is None else str(state.state_of(region.name)),
                "since_ms": None if state is None or state.region(region.name) is None
                else state.region(region.name).since_ms,  # type: ignore[union-attr]
                "deadline_ms": None if state is None or state.region(region.name) is None
                else state.region(region.name).deadline_ms,  # type: ignore[union-attr]
                "nodes": {str(n.spec.node_id): self.health_of(n) for n in self.nodes
                          if n.spec.region == region.name},
            }
            for region in self.topology.regions
        ]  # fmt: skip
        return {
            "cluster_id": self.expected_cluster_id,
            "cluster_state_version": None if state is None else state.version,
            "taken_at_ms": self.taken_at_ms,
            "thresholds": self.thresholds(),
            "shard_count": self.topology.shard_count,
            "leaders": {str(s): n for s, n in leaders.items()},
            "meta_leader_node_id": self.group_leaders().get(int(META_GROUP_ID)),
            "leaderless_shards": self.leaderless_shards(),
            "regions": regions,
            "nodes": nodes,
            "routers": routers,
            "shards": self.shard_rows(),
            "anomalies": [{"kind": a.kind, "message": a.message} for a in self.anomalies()],
        }


def _shard_json(s: admin_pb2.ShardStatus) -> dict[str, object]:
    return {
        "shard_id": s.shard_id,
        "role": admin_pb2.Role.Name(s.role).removeprefix("ROLE_").lower(),
        "term": s.term,
        "leader_node_id": s.leader_node_id,
        "commit_index": s.commit_index,
        "applied_index": s.applied_index,
        "last_index": s.last_index,
        "apply_lag_entries": s.apply_lag_entries,
        "log_lag_entries_max": s.log_lag_entries_max,
    }


def _rpc_error(error: grpc.aio.AioRpcError) -> str:
    return f"{error.code().name}: {error.details() or ''}"


async def _node_status(source: AdminSource, spec: NodeSpec, timeout_s: float) -> NodeStatus:
    started = time.monotonic()
    try:
        response: admin_pb2.StatusResponse = await node_admin(source, int(spec.node_id)).Status(
            admin_pb2.StatusRequest(), timeout=timeout_s
        )
    except grpc.aio.AioRpcError as error:
        return NodeStatus(spec, None, _rpc_error(error))
    return NodeStatus(spec, response, latency_ms=(time.monotonic() - started) * 1000)


async def cluster_status(source: AdminSource, timeout_s: float = STATUS_TIMEOUT_S) -> ClusterStatus:
    """Every node's Admin.Status, asked at once; a silent node is down. (The quick view
    that waits use; :func:`snapshot` adds the cluster state and the routers.)"""
    topology = source.topology
    nodes = await asyncio.gather(
        *(_node_status(source, spec, timeout_s) for spec in topology.nodes)
    )
    return ClusterStatus(topology, list(nodes), taken_at_ms=int(time.time() * 1000))


async def _state_of(
    pool: AdminPool, address: str, timeout_s: float
) -> tuple[admin_pb2.ClusterStateResponse | None, str]:
    try:
        response: admin_pb2.ClusterStateResponse = await pool.admin(address).ClusterState(
            admin_pb2.ClusterStateRequest(), timeout=timeout_s
        )
    except grpc.aio.AioRpcError as error:
        return None, _rpc_error(error)
    return response, ""


async def snapshot(pool: AdminPool, *, expected_cluster_id: str = "") -> ClusterStatus:
    """The full view: every node's Status and ClusterState and every router's
    ClusterState, all asked at once, each bounded by ``[router] down_after_ms``."""
    topology = pool.topology
    timeout_s = topology.router.down_after_ms / 1000

    async def node(spec: NodeSpec) -> NodeStatus:
        status, (state, _) = await asyncio.gather(
            _node_status(pool, spec, timeout_s), _state_of(pool, spec.address, timeout_s)
        )
        return NodeStatus(spec, status.status, status.error, status.latency_ms, state)

    async def router(spec: RouterSpec) -> RouterStatus:
        started = time.monotonic()
        state, error = await _state_of(pool, spec.address, timeout_s)
        return RouterStatus(spec, state, error, (time.monotonic() - started) * 1000)

    taken_at_ms = int(time.time() * 1000)
    nodes, routers = await asyncio.gather(
        asyncio.gather(*(node(spec) for spec in topology.nodes)),
        asyncio.gather(*(router(spec) for spec in topology.routers)),
    )
    return ClusterStatus(topology, list(nodes), list(routers), expected_cluster_id, taken_at_ms)


async def wait_for_leaders(
    source: AdminSource,
    timeout_s: float = LEADERS_TIMEOUT_S,
    *,
    without: Iterable[int] = (),
    include_meta: bool = False,
) -> ClusterStatus:
    """Poll until every shard (and the meta group, when asked and the nodes host it) has
    a leader on a node not in ``without``; raise ClusterOpsError at the deadline."""
    from hongbao.ops.processes import ClusterOpsError

    excluded = set(without)
    deadline = time.monotonic() + timeout_s
    while True:
        status = await cluster_status(source)
        leaders = status.group_leaders()
        groups = list(range(source.topology.shard_count))
        hosts_meta = any(
            n.status is not None and n.status.HasField("meta_group") for n in status.nodes
        )
        if include_meta and hosts_meta:
            groups.append(int(META_GROUP_ID))
        missing = [g for g in groups if g not in leaders or leaders[g] in excluded]
        if not missing:
            return status
        if time.monotonic() > deadline:
            raise ClusterOpsError(
                f"timed out after {timeout_s} s waiting for leaders of "
                f"{', '.join(group_name(g) for g in missing)}"
            )
        await asyncio.sleep(POLL_S)


async def wait_for_quiet(
    source: AdminSource, timeout_s: float = 10.0, quiet_s: float = 0.2
) -> bool:
    """Wait until the cluster is idle: no log grows for ``quiet_s``, every replica that
    answers has applied its shard's highest known commit index, and no shard lacks a leader.

    True when that happened in time (cross-shard deliveries drained, their acknowledgements
    applied everywhere), else False.
    """
    deadline = time.monotonic() + timeout_s
    previous: tuple[int, ...] | None = None
    since = time.monotonic()
    while time.monotonic() < deadline:
        status = await cluster_status(source)
        shards = [s for n in status.nodes if n.status is not None for s in n.status.shards]
        shape = tuple(int(s.last_index) for s in shards)
        commit: dict[int, int] = {}
        for s in shards:
            commit[s.shard_id] = max(commit.get(s.shard_id, 0), int(s.commit_index))
        settled = not status.leaderless_shards() and all(
            s.applied_index == commit[s.shard_id] for s in shards
        )
        now = time.monotonic()
        if shape != previous or not settled:
            previous, since = shape, now
        elif now - since >= quiet_s:
            return True
        await asyncio.sleep(POLL_S * 2)
    return False
