"""The cluster's shape, read from a TOML file: cities, nodes, shards and who leads what.

Rules of this module: it only parses and checks configuration and computes placement; it
starts nothing and opens no socket. Every problem in a file is a :class:`TopologyError`
whose message names the file, the place in it (``nodes[2].port``) and what is wrong, so
an operator can fix it without reading code. A topology that loads is consistent: every
shard has ``replication_factor`` replicas in distinct regions and a home (preferred
leader) region among them.

Placement is deterministic. Without an explicit ``[[shards]]`` entry, shard ``s`` has its
home in region ``s mod R`` (so each region leads ``shard_count / R`` shards, +-1: that is
what active-active means), its other replicas in the next regions around the ring
(rotated per lap so that a failed city's leaderships spread over the others), and inside
a region the nodes take home leaderships round-robin and follower replicas by least load.
A ``[[shards]]`` entry replaces the computed placement of that one shard.

Raft node ids inside a group are the nodes' global ids, hence positive (0 is "nobody").
``[limits]`` holds fields of :class:`hongbao.ledger.limits.Limits` (any subset; the rest
keep their defaults); they are the shards' *initial* limits, written into each shard's
state at its creation and changed later only through the log. ``[runtime]`` holds fields
of :class:`hongbao.node.runtime_limits.RuntimeLimits` (any subset, each within its range):
every node process started from the file runs with them (``hongbao node run`` flags, where
they exist, override them for that one process).
"""

from __future__ import annotations

import ipaddress
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from types import MappingProxyType
from typing import NewType, final

from hongbao._invariant import invariant
from hongbao.config._readers import (
    _int,
    _is_int,
    _optional_degrees,
    _optional_port,
    _optional_table,
    _Problem,
    _reject_unknown_keys,
    _str,
    _tables,
    _type_name,
)
from hongbao.config.routers import RouterSettings, RouterSpec, parse_router_settings, parse_routers
from hongbao.ledger.limits import Limits, limits_problem
from hongbao.node.runtime_limits import RUNTIME_LIMIT_RANGES, RuntimeLimits, runtime_limits_problem
from hongbao.raft.types import NodeId

ShardId = NewType("ShardId", int)
"""A shard's number, in ``[0, shard_count)``; also its Raft group's name."""

PORT_MAX = 65_535
SHARD_COUNT_MAX = 65_536  # placement and per-shard state are linear in it

TIMING_DEFAULTS: Mapping[str, int] = MappingProxyType(
    {"tick_ms": 10, "election_timeout_ticks": 10, "heartbeat_interval_ticks": 1}
)

_LIMIT_KEYS = frozenset(field.name for field in fields(Limits))
_TOP_KEYS = frozenset(
    {"shard_count", "replication_factor", "timing", "limits", "regions", "nodes", "shards",
     "tls", "certs_dir", "runtime", "routers", "router", "cluster_id"}
)  # fmt: skip

META_GROUP_ID = ShardId(SHARD_COUNT_MAX)
"""The meta group's Raft group id: past every ledger shard id, so it never collides."""


class TopologyError(ValueError):
    """The topology file is malformed or inconsistent; the message says where and why."""

    def __init__(self, source: str, where: str, problem: str) -> None:
        super().__init__(f"{source}: {where}: {problem}")
        self.source = source
        self.where = where
        self.problem = problem


@final
@dataclass(frozen=True, slots=True)
class Region:
    name: str
    # Where the city is, for the console's map (optional; both or neither).
    latitude: float | None = None
    longitude: float | None = None


@final
@dataclass(frozen=True, slots=True)
class NodeSpec:
    node_id: NodeId
    region: str
    host: str
    port: int
    # Prometheus /metrics of this node, on its host (optional: none without it).
    metrics_port: int | None = None

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def metrics_address(self) -> str | None:
        return None if self.metrics_port is None else f"{self.host}:{self.metrics_port}"


@final
@dataclass(frozen=True, slots=True)
class ShardPlacement:
    """Where one shard lives. ``replicas[0]`` is the home leader when placement was computed."""

    shard_id: ShardId
    replicas: tuple[NodeId, ...]
    home_region: str


@final
@dataclass(frozen=True, slots=True)
class Timing:
    """The runtime alone turns these ticks into milliseconds; the Raft core counts ticks."""

    tick_ms: int
    election_timeout_ticks: int
    heartbeat_interval_ticks: int


@final
@dataclass(frozen=True, slots=True)
class Topology:
    regions: tuple[Region, ...]
    nodes: tuple[NodeSpec, ...]
    shard_count: int
    replication_factor: int
    timing: Timing
    placements: tuple[ShardPlacement, ...]  # placements[s].shard_id == s
    limits: Limits  # the initial limits of every shard
    # Mutual TLS on every link (hongbao.security.tls). The file's ``tls``; when it has
    # none, true unless every host is loopback. ``certs_dir``: absolute, or None.
    tls: bool = False
    certs_dir: str | None = None
    # Each node runtime's bounds and snapshot cadence ([runtime]; node run flags override).
    runtime: RuntimeLimits = field(default_factory=RuntimeLimits)
    # One or more routers per region ([[routers]]; empty when the file has none) and the
    # thresholds they all apply ([router]).
    routers: tuple[RouterSpec, ...] = ()
    router: RouterSettings = field(default_factory=RouterSettings)
    # The file's cluster_id; empty: derived from the cluster's shape (node.server).
    cluster_id: str = ""
    # Where THIS process dials each node, when not at the node's own address: the chaos
    # runner routes every link through its own proxy this way (``--dial-map``). Not part
    # of the cluster's shape; (node id, host:port) pairs, sorted.
    dial_overrides: tuple[tuple[NodeId, str], ...] = ()

    # -- the meta group: a replica on the first node (lowest id) of every region --------

    @property
    def meta_replicas(self) -> tuple[NodeId, ...]:
        """Where the meta group lives; ``meta_replicas[0]`` (first region) is its home."""
        return tuple(min(n.node_id for n in self.nodes_in(r.name)) for r in self.regions)

    def groups_on(self, node_id: int) -> tuple[ShardId, ...]:
        """Every Raft group with a replica on ``node_id``: its shards, then the meta group."""
        shards = self.shards_on(node_id)
        return (*shards, META_GROUP_ID) if node_id in self.meta_replicas else shards

    def routers_in(self, region: str) -> tuple[RouterSpec, ...]:
        return tuple(r for r in self.routers if r.region == region)

    def router_spec(self, router_id: int) -> RouterSpec:
        for spec in self.routers:
            if spec.router_id == router_id:
                return spec
        raise KeyError(f"no router {router_id} in the topology")

    def region_of(self, node_id: int) -> str:
        return self.node(node_id).region

    def node(self, node_id: int) -> NodeSpec:
        for spec in self.nodes:
            if spec.node_id == node_id:
                return spec
        raise KeyError(f"no node {node_id} in the topology")

    def dial_address(self, node_id: int) -> str:
        """The host:port this process connects to for ``node_id`` (its own, or the override)."""
        for overridden, address in self.dial_overrides:
            if overridden == node_id:
                return address
        return self.node(node_id).address

    def placement(self, shard_id: int) -> ShardPlacement:
        if not 0 <= shard_id < self.shard_count:
            raise KeyError(f"no shard {shard_id} (shards are 0..{self.shard_count - 1})")
        placement = self.placements[shard_id]
        invariant(placement.shard_id == shard_id, "placements are not indexed by shard id")
        return placement

    def replicas_of(self, shard_id: int) -> tuple[NodeId, ...]:
        if shard_id == META_GROUP_ID:
            return self.meta_replicas
        return self.placement(shard_id).replicas

    def home_leader_of(self, shard_id: int) -> NodeId:
        """The replica of ``shard_id`` in its home region: the leader when all is well."""
        if shard_id == META_GROUP_ID:
            return self.meta_replicas[0]
        placement = self.placement(shard_id)
        homes = [n for n in placement.replicas if self.node(n).region == placement.home_region]
        invariant(len(homes) == 1, f"shard {shard_id} has {len(homes)} home replicas")
        return homes[0]

    def shards_on(self, node_id: int) -> tuple[ShardId, ...]:
        self.node(node_id)  # raises for an unknown node rather than answering "none"
        return tuple(p.shard_id for p in self.placements if node_id in p.replicas)

    def nodes_in(self, region: str) -> tuple[NodeSpec, ...]:
        return tuple(n for n in self.nodes if n.region == region)


def load_topology(path: str | Path) -> Topology:
    """Read and check the topology file at ``path`` (``certs_dir`` is relative to it)."""
    source = str(path)
    try:
        with open(path, "rb") as file:
            data = tomllib.load(file)
    except OSError as error:
        raise TopologyError(source, "file", f"cannot read: {error}") from error
    except tomllib.TOMLDecodeError as error:
        raise TopologyError(source, "toml", f"not valid TOML: {error}") from error
    topology = parse_topology(data, source=source)
    if topology.certs_dir is not None:
        certs_dir = (Path(path).resolve().parent / topology.certs_dir).resolve()
        topology = replace(topology, certs_dir=str(certs_dir))
    return topology


def parse_topology(data: Mapping[str, object], *, source: str = "<topology>") -> Topology:
    """Check an already decoded TOML document (tests build these from strings)."""
    try:
        return _parse(data)
    except _Problem as problem:
        raise TopologyError(source, problem.where, problem.problem) from None


def _parse(data: Mapping[str, object]) -> Topology:
    _reject_unknown_keys(data, _TOP_KEYS, "top level")
    regions = _parse_regions(data)
    region_names = [r.name for r in regions]
    nodes = _parse_nodes(data, region_names)
    shard_count = _int(data, "shard_count", "top level", minimum=1, maximum=SHARD_COUNT_MAX)
    replication_factor = _int(data, "replication_factor", "top level", minimum=1)
    if replication_factor > len(regions):
        problem = f"{replication_factor} is above the number of regions ({len(regions)})"
        raise _Problem("replication_factor", problem + ": replicas need distinct regions")
    placements = list(compute_placement(regions, nodes, shard_count, replication_factor))
    node_regions = {n.node_id: n.region for n in nodes}
    seen: dict[int, int] = {}
    for position, table in enumerate(_tables(data, "shards", required=False)):
        placement = _parse_shard(
            table, f"shards[{position}]", shard_count, replication_factor, node_regions
        )
        if placement.shard_id in seen:
            earlier = seen[placement.shard_id]
            problem = f"shard {placement.shard_id} is listed twice (also shards[{earlier}])"
            raise _Problem(f"shards[{position}].id", problem)
        seen[placement.shard_id] = position
        placements[placement.shard_id] = placement
    taken = {n.address: f"node {n.node_id}" for n in nodes}
    for n in nodes:
        if n.metrics_address is not None:
            taken[n.metrics_address] = f"node {n.node_id}'s metrics"
    routers = parse_routers(data, region_names, taken)
    return Topology(
        regions=regions,
        nodes=nodes,
        shard_count=shard_count,
        replication_factor=replication_factor,
        timing=_parse_timing(data),
        placements=tuple(placements),
        limits=_parse_limits(data),
        tls=_parse_tls(data, nodes, routers),
        certs_dir=_parse_certs_dir(data),
        runtime=_parse_runtime(data),
        routers=routers,
        router=parse_router_settings(data),
        cluster_id=_parse_cluster_id(data),
    )


def _parse_cluster_id(data: Mapping[str, object]) -> str:
    value = data.get("cluster_id", "")
    if not isinstance(value, str) or (value and not value.replace("-", "").isalnum()):
        raise _Problem("cluster_id", f"must be letters, digits and '-', not {value!r}")
    if len(value) > 64:
        raise _Problem("cluster_id", f"{len(value)} characters: at most 64")
    return value


def is_loopback_host(host: str) -> bool:
    """``localhost`` or a loopback address (127.0.0.0/8, ::1)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _parse_tls(
    data: Mapping[str, object], nodes: Sequence[NodeSpec], routers: Sequence[RouterSpec]
) -> bool:
    """``tls``; absent, true unless every node's and router's host is loopback (secure by
    default: a router on a public address is as exposed as a node)."""
    value = data.get("tls")
    if value is None:
        hosts = [n.host for n in nodes] + [r.host for r in routers]
        return not all(is_loopback_host(host) for host in hosts)
    if not isinstance(value, bool):
        raise _Problem("tls", f"must be true or false, not {_type_name(value)} ({value!r})")
    return value


def _parse_certs_dir(data: Mapping[str, object]) -> str | None:
    value = data.get("certs_dir")
    if value is None:
        return None
    if not isinstance(value, str) or not value.strip():
        raise _Problem("certs_dir", f"must be a directory path, not {value!r}")
    return value


def _parse_regions(data: Mapping[str, object]) -> tuple[Region, ...]:
    regions: list[Region] = []
    for position, table in enumerate(_tables(data, "regions", required=True)):
        where = f"regions[{position}]"
        _reject_unknown_keys(table, frozenset({"name", "latitude", "longitude"}), where)
        name = _str(table, "name", where)
        if any(r.name == name for r in regions):
            raise _Problem(f"{where}.name", f"duplicate region {name!r}")
        latitude = _optional_degrees(table, "latitude", where, 90)
        longitude = _optional_degrees(table, "longitude", where, 180)
        if (latitude is None) != (longitude is None):
            raise _Problem(where, "give both latitude and longitude, or neither")
        regions.append(Region(name, latitude, longitude))
    return tuple(regions)


def _parse_nodes(data: Mapping[str, object], region_names: list[str]) -> tuple[NodeSpec, ...]:
    nodes: list[NodeSpec] = []
    for position, table in enumerate(_tables(data, "nodes", required=True)):
        where = f"nodes[{position}]"
        _reject_unknown_keys(
            table, frozenset({"id", "region", "host", "port", "metrics_port"}), where
        )
        node = NodeSpec(
            node_id=NodeId(_int(table, "id", where, minimum=1)),
            region=_str(table, "region", where),
            host=_str(table, "host", where),
            port=_int(table, "port", where, minimum=1, maximum=PORT_MAX),
            metrics_port=_optional_port(table, "metrics_port", where, PORT_MAX),
        )
        if node.metrics_port == node.port:
            raise _Problem(f"{where}.metrics_port", "must differ from the node's port")
        if node.region not in region_names:
            raise _Problem(
                f"{where}.region",
                f"unknown region {node.region!r} (regions: {', '.join(region_names)})",
            )
        for other_position, other in enumerate(nodes):
            if other.node_id == node.node_id:
                raise _Problem(
                    f"{where}.id",
                    f"duplicate node id {node.node_id} (also nodes[{other_position}])",
                )
            if node.metrics_address is not None and node.metrics_address in (
                other.address,
                other.metrics_address,
            ):
                raise _Problem(
                    f"{where}.metrics_port",
                    f"address {node.metrics_address} also used by nodes[{other_position}]",
                )
            if other.address == node.address or other.metrics_address == node.address:
                raise _Problem(
                    f"{where}.port",
                    f"duplicate address {node.address} "
                    f"(also nodes[{other_position}], id {other.node_id})",
                )
        nodes.append(node)
    for name in region_names:
        if not any(n.region == name for n in nodes):
            raise _Problem("nodes", f"region {name!r} has no node")
    return tuple(nodes)


def _parse_shard(
    table: Mapping[str, object],
    where: str,
    shard_count: int,
    replication_factor: int,
    node_regions: Mapping[NodeId, str],
) -> ShardPlacement:
    _reject_unknown_keys(table, frozenset({"id", "replicas", "home_region"}), where)
    shard_id = _int(table, "id", where, minimum=0, maximum=shard_count - 1)
    raw = table.get("replicas")
    if raw is None:
        raise _Problem(where, "missing key 'replicas'")
    if not isinstance(raw, list) or not all(_is_int(r) for r in raw):
        raise _Problem(f"{where}.replicas", f"must be a list of node ids, not {raw!r}")
    replicas = tuple(NodeId(r) for r in raw)
    if len(replicas) != replication_factor:
        raise _Problem(
            f"{where}.replicas",
            f"{len(replicas)} replicas, but replication_factor is {replication_factor}",
        )
    regions_used: dict[str, int] = {}
    for replica in replicas:
        if replica not in node_regions:
            raise _Problem(f"{where}.replicas", f"unknown node id {replica}")
        region = node_regions[replica]
        if region in regions_used:
            raise _Problem(
                f"{where}.replicas",
                f"shard {shard_id} has two replicas in region "
                f"{region!r} (nodes {regions_used[region]} and {replica})",
            )
        regions_used[region] = replica
    home_region = _str(table, "home_region", where)
    if home_region not in regions_used:
        raise _Problem(
            f"{where}.home_region",
            f"{home_region!r} is not among the regions of "
            f"shard {shard_id}'s replicas ({', '.join(regions_used)})",
        )
    return ShardPlacement(ShardId(shard_id), replicas, home_region)


def _parse_timing(data: Mapping[str, object]) -> Timing:
    table = _optional_table(data, "timing")
    _reject_unknown_keys(table, frozenset(TIMING_DEFAULTS), "timing")
    values = {
        key: _int(table, key, "timing", minimum=1, default=default)
        for key, default in TIMING_DEFAULTS.items()
    }
    timing = Timing(**values)
    # The cores run with CheckQuorum: a leader needs a heartbeat round trip inside one
    # election timeout, or it steps down from a healthy group (RaftConfig.validate).
    if timing.election_timeout_ticks < 2 * timing.heartbeat_interval_ticks:
        raise _Problem(
            "timing.election_timeout_ticks",
            f"{timing.election_timeout_ticks} must be at least twice "
            f"heartbeat_interval_ticks ({timing.heartbeat_interval_ticks})",
        )
    return timing


def _parse_limits(data: Mapping[str, object]) -> Limits:
    table = _optional_table(data, "limits")
    _reject_unknown_keys(table, _LIMIT_KEYS, "limits")
    limits = Limits(**{key: _int(table, key, "limits", minimum=1) for key in table})
    problem = limits_problem(limits)
    if problem is not None:
        raise _Problem("limits", problem)
    return limits


def _parse_runtime(data: Mapping[str, object]) -> RuntimeLimits:
    """``[runtime]``: any subset of RuntimeLimits' fields, each within its range."""
    table = _optional_table(data, "runtime")
    _reject_unknown_keys(table, frozenset(RUNTIME_LIMIT_RANGES), "runtime")
    values = {
        key: _int(table, key, "runtime", minimum=low, maximum=high)
        for key, (low, high) in RUNTIME_LIMIT_RANGES.items()
        if key in table
    }
    limits = RuntimeLimits(**values)
    problem = runtime_limits_problem(limits)
    if problem is not None:
        raise _Problem("runtime", problem)
    return limits


def compute_placement(
    regions: Sequence[Region], nodes: Sequence[NodeSpec], shard_count: int, replication_factor: int
) -> tuple[ShardPlacement, ...]:
    """The default placement (see the module docstring); a pure function of its arguments."""
    region_count = len(regions)
    invariant(1 <= replication_factor <= region_count, "replication factor out of range")
    invariant(shard_count >= 1, "shard_count must be positive")
    # Phase 1: which regions hold each shard. The home goes round the ring.
    shard_regions: list[list[int]] = []
    for shard in range(shard_count):
        home = shard % region_count
        others = [(home + step) % region_count for step in range(1, region_count)]
        if others:
            lap = (shard // region_count) % len(others)
            others = others[lap:] + others[:lap]
        shard_regions.append([home, *others[: replication_factor - 1]])
    # Phase 2: which node inside each region. Homes first, round-robin, so each node
    # leads about as many shards; then followers to the least loaded node, which keeps
    # the replica counts of a region's nodes within one of each other.
    chosen: list[dict[int, NodeId]] = [{} for _ in range(shard_count)]
    for region_index, region in enumerate(regions):
        members = sorted(n.node_id for n in nodes if n.region == region.name)
        invariant(len(members) > 0, f"region {region.name!r} has no node")
        load = dict.fromkeys(members, 0)
        homes = [s for s in range(shard_count) if shard_regions[s][0] == region_index]
        for ordinal, shard in enumerate(homes):
            node_id = members[ordinal % len(members)]
            chosen[shard][region_index] = node_id
            load[node_id] += 1
        for shard in range(shard_count):
            if region_index in shard_regions[shard][1:]:
                node_id = min(members, key=lambda n: (load[n], n))
                chosen[shard][region_index] = node_id
                load[node_id] += 1
    return tuple(
        ShardPlacement(
            shard_id=ShardId(shard),
            replicas=tuple(chosen[shard][r] for r in shard_regions[shard]),
            home_region=regions[shard_regions[shard][0]].name,
        )
        for shard in range(shard_count)
    )
