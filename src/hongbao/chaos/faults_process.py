"""The faults of processes: kill -9, SIGSTOP, a region drained, a region gone dark.

Rules of this module: only the run's own LocalCluster children are signalled, killed
and started (``LocalCluster`` blocks while a node starts, so through
``asyncio.to_thread``); drains and leader moves go through the operator modules
(``ops.drain``, ``ops.balance``) exactly as ``hongbao region drain`` and ``cluster
balance`` run them. A heal that cannot move every leader home in time says so and
returns: the cluster is then correct but unbalanced, which the run's checks judge.
Each fault records what it did before doing it, so heal after a failed inject undoes
the part that happened, and a second heal finds nothing left to do.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from hongbao.chaos.faults import (
    BALANCE_TIMEOUT_S,
    Fault,
    FaultContext,
    Params,
    check_nodes,
    check_regions,
    leaders_of,
)
from hongbao.chaos.suite import FaultSpec
from hongbao.ops.balance import move_leaders_home
from hongbao.ops.drain import drain_region, undrain_region
from hongbao.ops.processes import ClusterOpsError
from hongbao.ops.status import wait_for_leaders

NODE_ID_MAX: Final = 1 << 31
SHARD_ID_MAX: Final = 65_535
DRAIN_DEADLINE_S_DEFAULT: Final = 60.0


@dataclass(frozen=True, slots=True)
class Selector:
    """Which nodes: one by id, a shard's leader (looked up at inject), or a region's."""

    key: str  # "node", "leader_of" or "region"
    value: int | str

    @staticmethod
    def read(params: Params, *keys: str) -> Selector:
        key = params.one_of(*keys)
        if key == "node":
            return Selector(key, params.integer("node", 1, NODE_ID_MAX))
        if key == "leader_of":
            return Selector(key, params.integer("leader_of", 0, SHARD_ID_MAX))
        return Selector(key, params.string("region"))

    async def resolve(self, ctx: FaultContext) -> tuple[list[int], dict[str, Any]]:
        if self.key == "node":
            assert isinstance(self.value, int)
            check_nodes(ctx.topology, [self.value])
            return [self.value], {"nodes": [self.value]}
        if self.key == "leader_of":
            assert isinstance(self.value, int)
            leader = (await leaders_of(ctx, [self.value]))[self.value]
            return [leader], {"leader_of": self.value, "nodes": [leader]}
        assert isinstance(self.value, str)
        check_regions(ctx.topology, [self.value])
        nodes = sorted(int(n.node_id) for n in ctx.topology.nodes_in(self.value))
        return nodes, {"region": self.value, "nodes": nodes}


async def balance(ctx: FaultContext, kind: str) -> list[int]:
    """Every group led, then led from home where allowed; a miss is said, not raised."""
    try:
        await wait_for_leaders(ctx.admin, BALANCE_TIMEOUT_S, include_meta=True)
        moved = await move_leaders_home(ctx.admin, BALANCE_TIMEOUT_S)
    except ClusterOpsError as error:
        ctx.say(f"{kind} heal: leaders not all home: {error}")
        return []
    ctx.say(f"{kind} heal: {len(moved)} groups moved home")
    return moved


async def start_nodes(ctx: FaultContext, node_ids: list[int]) -> None:
    down = [n for n in node_ids if not ctx.cluster.is_running(n)]
    if down:
        await asyncio.to_thread(ctx.cluster.start, down)


@dataclass
class Kill:
    spec: FaultSpec
    selector: Selector
    restart: bool
    killed: list[int] = field(default_factory=list)

    async def inject(self, ctx: FaultContext) -> dict[str, Any]:
        nodes, targets = await self.selector.resolve(ctx)
        for node_id in nodes:
            if ctx.cluster.is_running(node_id):
                self.killed.append(node_id)
                await asyncio.to_thread(ctx.cluster.kill, node_id)
        ctx.say(f"kill: kill -9 nodes {nodes}")
        return {**targets, "restart": self.restart}

    async def heal(self, ctx: FaultContext) -> None:
        if not self.restart or not self.killed:
            return
        ctx.say(f"kill heal: starting nodes {self.killed}")
        await start_nodes(ctx, self.killed)
        self.killed.clear()


@dataclass
class Pause:
    spec: FaultSpec
    selector: Selector
    paused: list[int] = field(default_factory=list)

    async def inject(self, ctx: FaultContext) -> dict[str, Any]:
        nodes, targets = await self.selector.resolve(ctx)
        for node_id in nodes:
            self.paused.append(node_id)
            ctx.cluster.pause(node_id)
        ctx.say(f"pause: SIGSTOP nodes {nodes}")
        return targets

    async def heal(self, ctx: FaultContext) -> None:
        for node_id in list(self.paused):
            if ctx.cluster.is_running(node_id):
                ctx.cluster.resume(node_id)
            self.paused.remove(node_id)


@dataclass
class DrainRegion:
    spec: FaultSpec
    region: str
    deadline_s: float
    marked: bool = False

    async def inject(self, ctx: FaultContext) -> dict[str, Any]:
        check_regions(ctx.topology, [self.region])
        self.marked = True  # drain_region may mark it and then fail
        report = await drain_region(ctx.admin, self.region, deadline_s=self.deadline_s,
                                    on_phase=lambda text: ctx.say(f"drain: {text}"))  # fmt: skip
        moved = len(report.evacuation.moved)
        return {"region": self.region, "done": report.done, "state": report.final_state,
                "moved": moved, "elapsed_s": round(report.elapsed_s, 3)}  # fmt: skip

    async def heal(self, ctx: FaultContext) -> None:
        if not self.marked:
            return
        await undrain_region(ctx.admin, self.region)
        self.marked = False
        ctx.say(f"drain heal: {self.region} active again")
        await balance(ctx, "drain")


@dataclass
class RegionOutage:
    spec: FaultSpec
    region: str
    nodes: list[int] = field(default_factory=list)
    routers: list[int] = field(default_factory=list)

    async def inject(self, ctx: FaultContext) -> dict[str, Any]:
        check_regions(ctx.topology, [self.region])
        cluster = ctx.cluster
        routers = [r.router_id for r in ctx.topology.routers_in(self.region)]
        nodes = sorted(int(n.node_id) for n in ctx.topology.nodes_in(self.region))
        for router_id in routers:
            if cluster.router_running(router_id):
                self.routers.append(router_id)
                await asyncio.to_thread(cluster.kill_router, router_id)
        for node_id in nodes:
            if cluster.is_running(node_id):
                self.nodes.append(node_id)
                await asyncio.to_thread(cluster.kill, node_id)
        ctx.say(f"region-outage: {self.region} dark (nodes {nodes}, routers {routers})")
        return {"region": self.region, "nodes": nodes, "routers": routers}

    async def heal(self, ctx: FaultContext) -> None:
        if not self.nodes and not self.routers:
            return
        ctx.say(f"region-outage heal: starting {self.region} (nodes {self.nodes}, "
                f"routers {self.routers})")  # fmt: skip
        await start_nodes(ctx, self.nodes)
        self.nodes.clear()
        down = [r for r in self.routers if not ctx.cluster.router_running(r)]
        if down:
            await asyncio.to_thread(ctx.cluster.start_routers, down)
        self.routers.clear()
        await balance(ctx, "region-outage")


def kill(spec: FaultSpec, params: Params) -> Fault:
    selector = Selector.read(params, "node", "leader_of", "region")
    return Kill(spec, selector, restart=params.boolean("restart", True))


def pause(spec: FaultSpec, params: Params) -> Fault:
    return Pause(spec, Selector.read(params, "node", "leader_of"))


def drain(spec: FaultSpec, params: Params) -> Fault:
    region = params.string("region")
    deadline_s = params.number("deadline_s", 0.1, 86_400, DRAIN_DEADLINE_S_DEFAULT)
    return DrainRegion(spec, region, deadline_s)


def region_outage(spec: FaultSpec, params: Params) -> Fault:
    return RegionOutage(spec, params.string("region"))


BUILDERS: Final[Mapping[str, Callable[[FaultSpec, Params], Fault]]] = {
    "kill": kill,
    "pause": pause,
    "drain-region": drain,
    "region-outage": region_outage,
}
