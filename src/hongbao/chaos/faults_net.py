"""The faults of the network: toxics on chosen links and streams of the run's ChaosNet.

Streams as ChaosNet names them: ``upstream`` is what the dialer sends, ``downstream``
what the node answers. "Region A's messages never reach region B" is therefore the
upstream of every A->B link plus the downstream of every B->A link, and nothing else
(a one-way cut that is really one-way: Chaos Mesh #4477). A ``timeout`` toxic of 0
drops every byte and never closes: a blackhole, as a dead route looks. Dropped bytes
leave a connection's HTTP/2 framing broken, so the heal of any toxic that drops data
also resets those links' connections (the dialers reconnect to a clean stream).

Each fault records a toxic before it asks for it, so a heal after a failed inject
removes whatever did get added; removing an absent toxic is no error (heal twice).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

from hongbao.chaos.faults import (
    Fault,
    FaultContext,
    Params,
    check_nodes,
    check_regions,
    leaders_of,
    refusals,
    toxic_name,
)
from hongbao.chaos.net import STREAMS, ChaosNet, ChaosNetError, Link
from hongbao.chaos.suite import FaultSpec

LATENCY_MS_MAX: Final = 60_000.0
RATE_KBPS_MAX: Final = 10_000_000.0
NODE_ID_MAX: Final = 1 << 31
SHARD_ID_MAX: Final = 65_535
STALL_MS_DEFAULT: Final = 200  # Linux's minimum TCP retransmission timeout
Toxic = tuple[Link, str]  # (link, stream)


@dataclass(frozen=True, slots=True)
class Plan:
    """What an inject will do: toxics of one type, or links switched off."""

    toxics: list[Toxic] = field(default_factory=list)
    type: str = "timeout"
    attributes: dict[str, int | float] = field(default_factory=dict)
    disable: list[Link] = field(default_factory=list)
    targets: dict[str, Any] = field(default_factory=dict)


@dataclass
class NetFault:
    """A fault made of toxics (or disabled proxies), undone exactly at heal."""

    spec: FaultSpec
    planner: Callable[[FaultContext], Awaitable[Plan]]  # resolves targets at inject time
    reset_at_heal: bool  # the toxic drops bytes: fresh connections after it is gone
    name: str = ""
    added: list[Toxic] = field(default_factory=list)
    disabled: list[Link] = field(default_factory=list)
    broken: dict[str, Link] = field(default_factory=dict)  # to reconnect at heal, by name

    def __post_init__(self) -> None:
        self.name = self.name or toxic_name(self.spec.kind)

    async def inject(self, ctx: FaultContext) -> dict[str, Any]:
        plan = await self.planner(ctx)
        await asyncio.to_thread(self._apply, ctx.net, plan)
        links = sorted({link.name for link, _ in plan.toxics} | {x.name for x in plan.disable})
        ctx.say(f"{self.spec.kind}: {len(links)} links " + _short(links))
        return {**plan.targets, "links": links}

    def _apply(self, net: ChaosNet, plan: Plan) -> None:
        holds = refusals(net)
        for link in plan.disable:
            self.disabled.append(link)
            holds[link.name] += 1
            net.set_enabled([link], False)
        for link, stream in plan.toxics:
            self.added.append((link, stream))
            if self.reset_at_heal:
                self.broken[link.name] = link
            net.add_toxic(link, name=f"{self.name}-{stream}", type=plan.type, stream=stream,
                          attributes=plan.attributes)  # fmt: skip

    async def heal(self, ctx: FaultContext) -> None:
        await asyncio.to_thread(self._heal, ctx.net)

    def _heal(self, net: ChaosNet) -> None:
        """Links whose bytes were dropped are switched off first (their connections go),
        cleaned, then switched on: no byte of a torn stream flows again. A link another
        fault still refuses stays off; a proxy gone from the server is skipped."""
        holds = refusals(net)
        broken = list(self.broken.values())
        _switch(net, broken, enabled=False)
        for link, stream in list(self.added):
            net.remove_toxic(link, f"{self.name}-{stream}")
            self.added.remove((link, stream))
        for link in self.disabled:
            holds[link.name] -= 1
        reopen = {x.name: x for x in [*broken, *self.disabled] if holds[x.name] <= 0}
        _switch(net, reopen.values(), enabled=True)
        self.broken.clear()
        self.disabled.clear()


def _switch(net: ChaosNet, links: Iterable[Link], *, enabled: bool) -> None:
    for link in links:
        try:
            net.set_enabled([link], enabled)
        except ChaosNetError as error:
            if not error.missing:
                raise


def _short(names: Sequence[str], shown: int = 8) -> str:
    more = f" (+{len(names) - shown})" if len(names) > shown else ""
    return ", ".join(names[:shown]) + more


def both(links: Iterable[Link]) -> list[Toxic]:
    return [(link, stream) for link in links for stream in STREAMS]


def touching_regions(net: ChaosNet, regions: Iterable[str]) -> list[Link]:
    chosen = set(regions)
    return [x for x in net.links if x.source_region in chosen or x.target_region in chosen]


def nodes_in(ctx: FaultContext, regions: Iterable[str]) -> list[int]:
    return sorted(int(n.node_id) for r in regions for n in ctx.topology.nodes_in(r))


BLACKHOLE: Final[dict[str, int | float]] = {"timeout": 0}


# -- the kinds ------------------------------------------------------------------------------


def partition_region(spec: FaultSpec, params: Params) -> Fault:
    region = params.string("region")
    mode = params.choice("mode", ("blackhole", "refuse"), "blackhole")

    async def plan(ctx: FaultContext) -> Plan:
        check_regions(ctx.topology, [region])
        others = [r.name for r in ctx.topology.regions if r.name != region]
        links = ctx.net.links_between([region], others) + ctx.net.links_between(others, [region])
        targets = {"region": region, "mode": mode, "nodes": nodes_in(ctx, [region])}
        if mode == "refuse":
            return Plan(disable=links, targets=targets)
        return Plan(toxics=both(links), attributes=BLACKHOLE, targets=targets)

    return NetFault(spec, plan, reset_at_heal=True)


def one_way_partition(spec: FaultSpec, params: Params) -> Fault:
    source = params.string("from")
    target = params.string("to")
    if source == target:
        raise ValueError(f"from and to must be different regions, not both {source!r}")

    async def plan(ctx: FaultContext) -> Plan:
        check_regions(ctx.topology, [source, target])
        toxics = [(x, "upstream") for x in ctx.net.links_between([source], [target])]
        toxics += [(x, "downstream") for x in ctx.net.links_between([target], [source])]
        return Plan(toxics=toxics, attributes=BLACKHOLE, targets={"from": source, "to": target})

    return NetFault(spec, plan, reset_at_heal=True)


def isolate_leaders(spec: FaultSpec, params: Params) -> Fault:
    which = params.one_of("shards", "count")
    chosen = params.integers("shards", 0, SHARD_ID_MAX) if which == "shards" else ()
    count = params.integer("count", 1, SHARD_ID_MAX) if which == "count" else 0
    # Cut off from the other nodes only: the routers still reach it, so a leader that does
    # not know yet that it is alone goes on taking writes it cannot commit.
    peers_only = params.boolean("peers_only", False)

    async def plan(ctx: FaultContext) -> Plan:
        shard_count = ctx.topology.shard_count
        if count > shard_count:
            raise ValueError(f"count {count} is over the {shard_count} shards")
        shards = sorted(ctx.rng.sample(range(shard_count), count)) if count else list(chosen)
        leaders = await leaders_of(ctx, shards)
        nodes, spared = isolable_leaders(leaders, len(ctx.topology.nodes))
        targets: dict[str, object] = {
            "shards": shards,
            "leaders": {str(s): n for s, n in leaders.items()},
            "nodes": nodes,
        }
        if spared:
            targets["spared"] = {str(s): leaders[s] for s in spared}
        links = ctx.net.links_touching_nodes(nodes)
        if peers_only:
            links = [link for link in links if link.source_node is not None]
            targets["peers_only"] = True
        return Plan(toxics=both(links), attributes=BLACKHOLE, targets=targets)

    return NetFault(spec, plan, reset_at_heal=True)


def isolable_leaders(leaders: dict[int, int], node_count: int) -> tuple[list[int], list[int]]:
    """The nodes to isolate for ``leaders`` (shard -> node), and the shards spared.

    At most a minority of the nodes: leadership moves between faults, so shards whose
    leaders were once one node can be led by two of three when the fault comes, and
    isolating those would cut the majority off and stop the whole cluster (that is the
    partition suites' business; a seed's run found the cluster down for 28 s). Shards are
    taken in order; one whose leader would exceed the minority is spared and reported.
    """
    minority = (node_count - 1) // 2
    nodes: list[int] = []
    spared: list[int] = []
    for shard, node in sorted(leaders.items()):
        if node in nodes:
            continue
        if len(nodes) < minority:
            nodes.append(node)
        else:
            spared.append(shard)
    spared = [s for s in spared if leaders[s] not in nodes]
    return sorted(nodes), spared


def latency(spec: FaultSpec, params: Params) -> Fault:
    which = params.one_of("between", "regions")
    if which == "between":
        first, second = params.strings("between", size=2)
        pairs = {(first, second), (second, first)}
        named: tuple[str, ...] = (first, second)
    else:
        named = params.strings("regions")
        if len(named) < 2:
            raise ValueError("regions must name at least 2 (latency is between regions)")
        pairs = {(a, b) for a in named for b in named if a != b}
    delay_ms = params.number("latency_ms", 0.5, LATENCY_MS_MAX)
    jitter_ms = params.number("jitter_ms", 0, LATENCY_MS_MAX, 0.0)
    if jitter_ms > delay_ms:
        raise ValueError(f"jitter_ms ({jitter_ms:g}) must not exceed latency_ms ({delay_ms:g})")

    async def plan(ctx: FaultContext) -> Plan:
        check_regions(ctx.topology, named)
        toxics: list[Toxic] = []
        for link in ctx.net.links:
            if (link.source_region, link.target_region) in pairs:
                toxics.append((link, "upstream"))
            if (link.target_region, link.source_region) in pairs:
                toxics.append((link, "downstream"))
        targets = {"regions": sorted(set(named)), "latency_ms": delay_ms, "jitter_ms": jitter_ms}
        return Plan(toxics=toxics, type="latency", targets=targets,
                    attributes={"latency": delay_ms, "jitter": jitter_ms})  # fmt: skip

    return NetFault(spec, plan, reset_at_heal=False)


def bandwidth(spec: FaultSpec, params: Params) -> Fault:
    regions = params.strings("regions")
    # rate_kbps is kilobits per second; Toxiproxy's rate is KB/s (1000 bytes), an integer.
    rate_kbps = params.number("rate_kbps", 8, RATE_KBPS_MAX)
    rate_kb_s = max(1, round(rate_kbps / 8))

    async def plan(ctx: FaultContext) -> Plan:
        check_regions(ctx.topology, regions)
        links = touching_regions(ctx.net, regions)
        targets = {"regions": list(regions), "rate_kbps": rate_kbps}
        return Plan(toxics=both(links), type="bandwidth", attributes={"rate": rate_kb_s},
                    targets=targets)  # fmt: skip

    return NetFault(spec, plan, reset_at_heal=False)


def reset_peer(spec: FaultSpec, params: Params) -> Fault:
    which = params.one_of("regions", "nodes")
    regions = params.strings("regions") if which == "regions" else ()
    nodes = params.integers("nodes", 1, NODE_ID_MAX) if which == "nodes" else ()
    timeout_ms = params.integer("timeout_ms", 0, 600_000, 0)

    async def plan(ctx: FaultContext) -> Plan:
        if regions:
            check_regions(ctx.topology, regions)
            links = touching_regions(ctx.net, regions)
            targets: dict[str, Any] = {"regions": list(regions)}
        else:
            check_nodes(ctx.topology, nodes)
            links = ctx.net.links_touching_nodes(nodes)
            targets = {"nodes": list(nodes)}
        return Plan(toxics=both(links), type="reset_peer", attributes={"timeout": timeout_ms},
                    targets={**targets, "timeout_ms": timeout_ms})  # fmt: skip

    return NetFault(spec, plan, reset_at_heal=True)


def loss(spec: FaultSpec, params: Params) -> Fault:
    """Over TCP a lost packet is not missing data: it is retransmitted, and everything
    behind it waits. So each chunk is, with ``probability``, held ``stall_ms`` (the
    extension toxic ``loss`` with ``stall``), never dropped (that would corrupt the
    stream, which no network does to TCP)."""
    regions = params.strings("regions")
    probability = params.number("probability", 0.01, 1.0)
    stall_ms = params.integer("stall_ms", 1, 60_000, STALL_MS_DEFAULT)

    async def plan(ctx: FaultContext) -> Plan:
        check_regions(ctx.topology, regions)
        links = touching_regions(ctx.net, regions)
        attributes: dict[str, int | float] = {"percent": round(probability * 100),
                                              "stall": stall_ms}  # fmt: skip
        targets = {"regions": list(regions), "probability": probability, "stall_ms": stall_ms}
        return Plan(toxics=both(links), type="loss", attributes=attributes, targets=targets)

    return NetFault(spec, plan, reset_at_heal=False)


BUILDERS: Final[Mapping[str, Callable[[FaultSpec, Params], Fault]]] = {
    "partition-region": partition_region,
    "one-way-partition": one_way_partition,
    "isolate-leaders": isolate_leaders,
    "latency": latency,
    "bandwidth": bandwidth,
    "reset-peer": reset_peer,
    "loss": loss,
}
