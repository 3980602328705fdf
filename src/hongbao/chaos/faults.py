"""The faults a suite schedules: what each breaks, how it is undone, and the last resort.

A fault is built from its suite entry (``build_fault``: every parameter checked, a
ValueError naming the bad or missing one, so a typo fails the suite file, not the run),
then injected and healed by the runner. ``inject`` resolves its targets at that moment
(the leaders of now, the links of a region) and returns them, JSON-able, for the
report; ``heal`` undoes exactly what ``inject`` did, is safe after a failed or partial
inject and safe twice. ``heal_everything`` is what runs on any exit: it undoes every
fault, whoever injected it, from what the cluster and the proxies look like.

Rules of this module: the faults of the network (``faults_net``) only add toxics to and
switch the proxies of the run's ChaosNet; the faults of processes (``faults_process``)
only signal, kill and start the run's own LocalCluster children and use the operator
modules (``ops.drain``, ``ops.balance``) as the commands do. Every wait has a deadline.
ChaosNet blocks, so it is called through ``asyncio.to_thread``.
"""

from __future__ import annotations

import asyncio
import functools
import itertools
import random
import time
import weakref
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, Final, Protocol

from hongbao.chaos.net import ChaosNet
from hongbao.chaos.suite import FaultSpec
from hongbao.config.topology import Topology
from hongbao.meta.state import RegionState
from hongbao.ops.admin_pool import AdminPool
from hongbao.ops.cluster_state import read_state
from hongbao.ops.drain import undrain_region
from hongbao.ops.local import LocalCluster
from hongbao.ops.status import cluster_status

LEADER_LOOKUP_TIMEOUT_S: Final = 15.0  # a shard without a leader this long: inject fails
BALANCE_TIMEOUT_S: Final = 30.0  # leaders moving home at a heal
LIST_ITEMS_MAX: Final = 64  # regions, nodes or shards named by one fault
POLL_S: Final = 0.05

FAULT_KINDS: Final[Mapping[str, str]] = MappingProxyType({
    "partition-region": "cut a region off from the others, both ways (blackhole or refuse)",
    "one-way-partition": "messages from one region never reach another; the reverse works",
    "isolate-leaders": "cut the nodes leading the given shards off from everyone",
    "latency": "added one-way latency (and jitter) between regions",
    "bandwidth": "a bandwidth limit on every link to and from the regions",
    "reset-peer": "connections of the regions or nodes reset (TCP RST) again and again",
    "loss": "chunks of the regions' links held like lost packets awaiting retransmission",
    "kill": "kill -9 a node, a shard's leader or a region's nodes; started again at heal",
    "pause": "SIGSTOP a node or a shard's leader; SIGCONT at heal",
    "drain-region": "drain a region as `region drain` does; undrain and balance at heal",
    "region-outage": "kill -9 every node and router of a region; restart and balance at heal",
})  # fmt: skip
_SERIAL = itertools.count(1)  # distinct toxic names for distinct faults


@dataclass
class FaultContext:
    """Everything a fault may touch during one run."""

    topology: Topology
    cluster: LocalCluster
    net: ChaosNet
    admin: AdminPool  # the operator's view: dials the nodes directly, never a proxy
    rng: random.Random  # seeded by the run
    say: Callable[[str], None]  # one line of progress for the operator


class Fault(Protocol):
    spec: FaultSpec

    async def inject(self, ctx: FaultContext) -> dict[str, Any]: ...

    async def heal(self, ctx: FaultContext) -> None: ...


class HealError(RuntimeError):
    """Some of heal_everything's steps failed (every step was tried); the message lists them."""


# Links switched off by refusing faults still active, per net: the heal of another fault
# that switches links off and on must not reopen one of them.
_REFUSALS: weakref.WeakKeyDictionary[ChaosNet, Counter[str]] = weakref.WeakKeyDictionary()


def refusals(net: ChaosNet) -> Counter[str]:
    """link name -> how many active faults refuse it (switched it off)."""
    return _REFUSALS.setdefault(net, Counter())


def toxic_name(kind: str) -> str:
    return f"chaos-{kind}-{next(_SERIAL)}"


# -- parameters -----------------------------------------------------------------------------

_MISSING: Final = object()


class Params:
    """A fault's parameters, read one by one; ``done`` rejects any left unread."""

    def __init__(self, spec: FaultSpec) -> None:
        self.kind = spec.kind
        self._raw = dict(spec.params)
        self._read: set[str] = set()

    def has(self, key: str) -> bool:
        return key in self._raw

    def _get(self, key: str, default: object) -> object:
        self._read.add(key)
        if key in self._raw:
            return self._raw[key]
        if default is _MISSING:
            raise ValueError(f"missing parameter {key!r}")
        return default

    def string(self, key: str, default: object = _MISSING) -> str:
        value = self._get(key, default)
        if not isinstance(value, str) or not value:
            raise ValueError(f"{key} must be a non-empty string, not {value!r}")
        return value

    def choice(self, key: str, options: Sequence[str], default: str) -> str:
        value = self.string(key, default)
        if value not in options:
            raise ValueError(f"{key} must be one of {', '.join(options)}, not {value!r}")
        return value

    def number(self, key: str, low: float, high: float, default: object = _MISSING) -> float:
        value = self._get(key, default)
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ValueError(f"{key} must be a number, not {value!r}")
        if not low <= value <= high:
            raise ValueError(f"{key} must be in [{low:g}, {high:g}], not {value!r}")
        return float(value)

    def integer(self, key: str, low: int, high: int, default: object = _MISSING) -> int:
        value = self._get(key, default)
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError(f"{key} must be an integer, not {value!r}")
        if not low <= value <= high:
            raise ValueError(f"{key} must be in [{low}, {high}], not {value!r}")
        return value

    def boolean(self, key: str, default: bool) -> bool:
        value = self._get(key, default)
        if not isinstance(value, bool):
            raise ValueError(f"{key} must be true or false, not {value!r}")
        return value

    def strings(self, key: str, *, size: int | None = None) -> tuple[str, ...]:
        value = self._get(key, _MISSING)
        if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
            raise ValueError(f"{key} must be a list of names, not {value!r}")
        return self._sized(key, tuple(value), size)

    def integers(self, key: str, low: int, high: int) -> tuple[int, ...]:
        value = self._get(key, _MISSING)
        if not isinstance(value, list) or not all(
            isinstance(v, int) and not isinstance(v, bool) and low <= v <= high for v in value
        ):
            raise ValueError(f"{key} must be a list of integers in [{low}, {high}], not {value!r}")
        return self._sized(key, tuple(value), None)

    @staticmethod
    def _sized(key: str, items: tuple[Any, ...], size: int | None) -> tuple[Any, ...]:
        if size is not None and len(items) != size:
            raise ValueError(f"{key} must name exactly {size}, not {len(items)}")
        if not 1 <= len(items) <= LIST_ITEMS_MAX:
            raise ValueError(f"{key} must name 1 to {LIST_ITEMS_MAX}, not {len(items)}")
        if len(set(items)) != len(items):
            raise ValueError(f"{key} names one twice: {list(items)}")
        return items

    def one_of(self, *keys: str) -> str:
        """The one key of ``keys`` that is given (exactly one must be)."""
        given = [key for key in keys if key in self._raw]
        if len(given) != 1:
            names = " or ".join(keys)
            raise ValueError(f"give exactly one of {names}" + (f", not {given}" if given else ""))
        return given[0]

    def done(self) -> None:
        unknown = sorted(set(self._raw) - self._read)
        if unknown:
            known = ", ".join(sorted(self._read)) or "none"
            raise ValueError(f"unknown parameter {unknown[0]!r} (known: {known})")


# -- targets, resolved at inject time -------------------------------------------------------


def check_regions(topology: Topology, names: Sequence[str]) -> None:
    known = [r.name for r in topology.regions]
    for name in names:
        if name not in known:
            raise ValueError(f"unknown region {name!r} (regions: {', '.join(known)})")


def check_nodes(topology: Topology, node_ids: Sequence[int]) -> None:
    known = [int(n.node_id) for n in topology.nodes]
    for node_id in node_ids:
        if node_id not in known:
            raise ValueError(f"unknown node {node_id} (nodes: {known})")


def check_shards(topology: Topology, shard_ids: Sequence[int]) -> None:
    for shard_id in shard_ids:
        if not 0 <= shard_id < topology.shard_count:
            raise ValueError(f"no shard {shard_id} (shards 0..{topology.shard_count - 1})")


async def leaders_of(
    ctx: FaultContext, shard_ids: Sequence[int], timeout_s: float = LEADER_LOOKUP_TIMEOUT_S
) -> dict[int, int]:
    """shard -> its leader now (highest term claimed), waiting until each has one."""
    check_shards(ctx.topology, shard_ids)
    deadline = time.monotonic() + timeout_s
    while True:
        leaders = (await cluster_status(ctx.admin)).leaders()
        missing = [s for s in shard_ids if s not in leaders]
        if not missing:
            return {s: leaders[s] for s in shard_ids}
        if time.monotonic() > deadline:
            raise RuntimeError(f"no leader for shards {missing} within {timeout_s} s")
        await asyncio.sleep(POLL_S)


# -- building ---------------------------------------------------------------------------


@functools.cache
def _builders() -> Mapping[str, Callable[[FaultSpec, Params], Fault]]:
    # Imported here: the fault modules import this one (FaultContext, Params).
    from hongbao.chaos import faults_net, faults_process

    return {**faults_net.BUILDERS, **faults_process.BUILDERS}


def build_fault(spec: FaultSpec) -> Fault:
    """The fault of ``spec``; ValueError naming the bad or missing parameter."""
    builder = _builders().get(spec.kind)
    if builder is None:
        raise ValueError(f"unknown fault kind {spec.kind!r} (kinds: {', '.join(FAULT_KINDS)})")
    params = Params(spec)
    fault = builder(spec, params)
    params.done()
    return fault


# -- the last resort ------------------------------------------------------------------------


async def heal_everything(ctx: FaultContext) -> None:
    """Undo every fault, whoever injected it: every toxic removed and every proxy enabled
    (with fresh connections: a blackhole leaves broken streams behind), every node
    SIGCONTed, every node and router of the cluster that is down started again, every
    region not active undrained. Every step is tried; HealError lists what failed."""
    failures: list[str] = []

    async def step(what: str, action: Callable[[], Any]) -> None:
        try:
            result = action()
            if asyncio.iscoroutine(result):
                await result
        except Exception as error:  # the last resort tries every step
            failures.append(f"{what}: {error}")
            ctx.say(f"heal: {what} failed: {error}")

    await step("proxies", lambda: asyncio.to_thread(_heal_net, ctx.net))
    cluster = ctx.cluster
    for node_id in list(cluster.processes):
        await step(f"SIGCONT node {node_id}", functools.partial(cluster.resume, node_id))
    down = [n for n in cluster.processes if not cluster.is_running(n)]
    if down:
        ctx.say(f"heal: starting nodes {down}")
        await step(f"start nodes {down}", lambda: asyncio.to_thread(cluster.start, down))
    routers_down = [r for r in cluster.routers if not cluster.router_running(r)]
    if routers_down:
        ctx.say(f"heal: starting routers {routers_down}")
        await step(f"start routers {routers_down}",
                   lambda: asyncio.to_thread(cluster.start_routers, routers_down))  # fmt: skip
    await step("undrain", lambda: _undrain_all(ctx))
    if failures:
        raise HealError("; ".join(failures))


def _heal_net(net: ChaosNet) -> None:
    """Every proxy off (its connections, maybe torn by a dropping toxic, go), then the
    server's reset: every toxic removed and every proxy on again."""
    try:
        net.set_enabled(net.links, False)
    finally:
        net.heal_all()
        refusals(net).clear()


async def _undrain_all(ctx: FaultContext) -> None:
    state, _ = await read_state(ctx.admin)
    for entry in state.regions:
        if entry.state is not RegionState.ACTIVE:
            ctx.say(f"heal: undraining {entry.name} ({entry.state})")
            await undrain_region(ctx.admin, entry.name)
