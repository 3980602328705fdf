"""Draining a region (or one node): traffic first, then leaderships, then the marker.

Rules of this module (DESIGN section 5; operations-asks 1 to 5): a region drain is
checked before anything changes (a known region; every group keeps a quorum of replicas
in the regions that stay active); then (1) ``draining`` is recorded in the meta group,
with the deadline, and the drain waits (bounded) until every node and router follows
that version, so no new work goes there before a leader moves; (2) every leadership
there moves out by :func:`hongbao.ops.transfer.evacuate` to a caught-up replica in an
active region; (3) when none is led there, ``drained`` is recorded. At the deadline the
region stays ``draining`` (``cluster status`` flags it once overdue) and the stuck
groups are named. ``undrain`` is allowed at any time. A node drain uses the same
transfers and changes no cluster state (systemd ExecStop, Kubernetes preStop).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

from hongbao.config.topology import META_GROUP_ID, Topology
from hongbao.meta.state import ClusterState, RegionState
from hongbao.ops.admin_pool import AdminPool
from hongbao.ops.cluster_state import Propagation, read_state, set_region_state, wait_for_version
from hongbao.ops.status import group_name
from hongbao.ops.transfer import EvacuationResult, TransferEvent, evacuate

PROPAGATION_POLLS = 20  # wait at most this many [router] state_poll_ms for every process
PROPAGATION_MIN_S = 2.0


class DrainRefused(RuntimeError):
    """Nothing was changed: unknown region, or draining it would cost some group its quorum."""


@dataclass(slots=True)
class DrainReport:
    region: str
    done: bool = False
    version_draining: int = 0
    propagation: Propagation | None = None
    evacuation: EvacuationResult = field(default_factory=EvacuationResult)
    final_state: str = "draining"
    elapsed_s: float = 0.0

    def to_json(self) -> dict[str, object]:
        propagation = self.propagation
        return {
            "region": self.region,
            "done": self.done,
            "state": self.final_state,
            "cluster_state_version": self.version_draining,
            "propagation": None if propagation is None else {
                "following": propagation.following, "behind": propagation.behind,
                "silent": propagation.silent, "elapsed_s": round(propagation.elapsed_s, 3),
            },
            "moved": [{"shard": group_name(e.group_id), "from": e.leader, "to": e.target,
                       "seconds": round(e.seconds, 3)} for e in self.evacuation.moved],
            "attempts": self.evacuation.attempts,
            "stuck": [s.to_json() for s in self.evacuation.stuck],
            "elapsed_s": round(self.elapsed_s, 3),
        }  # fmt: skip


def quorum_problems(topology: Topology, state: ClusterState, region: str) -> list[str]:
    """The groups that would lack a quorum of replicas in active regions without ``region``."""

    def stays(node_id: int) -> bool:
        name = topology.region_of(node_id)
        return name != region and state.state_of(name) is RegionState.ACTIVE

    problems: list[str] = []
    for group in [*range(topology.shard_count), int(META_GROUP_ID)]:
        replicas = [int(n) for n in topology.replicas_of(group)]
        staying = [n for n in replicas if stays(n)]
        if len(staying) <= len(replicas) // 2:
            problems.append(f"{group_name(group)} would keep {len(staying)} of {len(replicas)} "
                            "replicas in active regions")  # fmt: skip
    return problems


async def drain_region(
    pool: AdminPool,
    region: str,
    *,
    deadline_s: float,
    on_event: Callable[[TransferEvent], None] = lambda event: None,
    on_phase: Callable[[str], None] = lambda text: None,
) -> DrainReport:
    topology = pool.topology
    known = [r.name for r in topology.regions]
    if region not in known:
        raise DrainRefused(f"unknown region {region!r} (regions: {', '.join(known)})")
    started = time.monotonic()
    state, _ = await read_state(pool)
    problems = quorum_problems(topology, state, region)
    if problems:
        raise DrainRefused(
            f"draining {region} would leave {len(problems)} groups without a quorum of "
            f"replicas in active regions ({'; '.join(problems[:2])}"
            + ("; ...)" if len(problems) > 2 else ")")
        )
    report = DrainReport(region)
    deadline_ms = int(time.time() * 1000 + deadline_s * 1000)
    marked = await set_region_state(pool, region, RegionState.DRAINING, deadline_ms=deadline_ms)
    report.version_draining = marked.version
    on_phase(f"{region} marked draining (cluster state version {marked.version})")
    bound_s = max(PROPAGATION_MIN_S, PROPAGATION_POLLS * topology.router.state_poll_ms / 1000)
    bound_s = min(bound_s, max(0.0, deadline_s - (time.monotonic() - started)))
    report.propagation = await wait_for_version(pool, marked.version, bound_s)
    p = report.propagation
    phase = (
        f"{len(p.following)} processes follow version {marked.version} after {p.elapsed_s:.2f} s"
    )
    phase += f"; still behind: {', '.join(p.behind)}" if p.behind else ""
    phase += f"; not answering: {', '.join(p.silent)}" if p.silent else ""
    on_phase(phase)
    leaving = frozenset(int(n.node_id) for n in topology.nodes_in(region))

    def may_take(node_id: int) -> bool:
        name = topology.region_of(node_id)
        return name != region and marked.state_of(name) is RegionState.ACTIVE

    remaining_s = max(0.0, deadline_s - (time.monotonic() - started))
    report.evacuation = await evacuate(
        pool, leaving=leaving, may_take=may_take, deadline_s=remaining_s, on_event=on_event
    )
    report.done = report.evacuation.done
    if report.done:
        current, _ = await read_state(pool)
        if current.state_of(region) is RegionState.DRAINING:  # not undrained meanwhile
            await set_region_state(
                pool, region, RegionState.DRAINED, expected_version=current.version
            )
            report.final_state = "drained"
        else:
            report.final_state = str(current.state_of(region))
        on_phase(f"{region} {report.final_state}: it leads nothing")
    report.elapsed_s = time.monotonic() - started
    return report


async def undrain_region(pool: AdminPool, region: str) -> ClusterState:
    known = [r.name for r in pool.topology.regions]
    if region not in known:
        raise DrainRefused(f"unknown region {region!r} (regions: {', '.join(known)})")
    state = await set_region_state(pool, region, RegionState.ACTIVE)
    bound_s = max(PROPAGATION_MIN_S, PROPAGATION_POLLS * pool.topology.router.state_poll_ms / 1000)
    await wait_for_version(pool, state.version, bound_s)  # so a balance right after sees it
    return state


async def drain_node(
    pool: AdminPool,
    node_id: int,
    *,
    deadline_s: float,
    on_event: Callable[[TransferEvent], None] = lambda event: None,
) -> EvacuationResult:
    """Move every leadership off ``node_id`` (no cluster-state change); prefer targets in
    active regions, as a region drain does."""
    topology = pool.topology
    try:
        topology.node(node_id)
    except KeyError as error:
        raise DrainRefused(str(error.args[0])) from None
    try:
        state, _ = await read_state(pool, linearizable=False, timeout_s=2.0)
    except RuntimeError:
        state = ClusterState("", 0, ())  # no meta group answering: every region counts as active

    def may_take(other: int) -> bool:
        return state.state_of(topology.region_of(other)) is RegionState.ACTIVE

    return await evacuate(
        pool,
        leaving=frozenset({node_id}),
        may_take=may_take,
        deadline_s=deadline_s,
        on_event=on_event,
    )
