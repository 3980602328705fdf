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
Each step is logged at info (:func:`hongbao.logs.event`: ``drain_started``,
``drain_propagated``, ``drain_finished``, ``region_undrained``, ``node_drain_*``) in the
process that runs it, beside the progress lines the caller prints.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from hongbao.config.topology import META_GROUP_ID, Topology
from hongbao.logs import event
from hongbao.meta.state import ClusterState, RegionState
from hongbao.ops.admin_pool import AdminPool
from hongbao.ops.cluster_state import Propagation, read_state, set_region_state, wait_for_version
from hongbao.ops.status import group_name
from hongbao.ops.transfer import EvacuationResult, TransferEvent, evacuate

log = logging.getLogger(__name__)

PROPAGATION_POLLS = 20  # wait at most this many [router] state_poll_ms for every process
PROPAGATION_MIN_S = 2.0
STUCK_LOGGED_MAX = 8  # groups named in one log line (the report has them all)


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
    text = f"{region} marked draining (cluster state version {marked.version})"
    on_phase(text)
    event(log, "drain_started", f"{text}, deadline {deadline_s:.1f} s", region=region,
          version=marked.version, deadline_s=deadline_s)  # fmt: skip
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
    event(log, "drain_propagated", f"{region}: {phase}", region=region,
          version=marked.version, following=len(p.following), behind=",".join(p.behind),
          silent=",".join(p.silent))  # fmt: skip
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
    _log_drained(report)
    return report


def _log_drained(report: DrainReport) -> None:
    evacuation = report.evacuation
    stuck = "; ".join(s.describe() for s in evacuation.stuck[:STUCK_LOGGED_MAX])
    message = (
        f"{report.region} {report.final_state} after {report.elapsed_s:.2f} s: "
        f"{len(evacuation.moved)} leaderships moved in {evacuation.attempts} attempts"
        + (f"; still led there at the deadline: {stuck}" if evacuation.stuck else "")
    )
    event(
        log,
        "drain_finished",
        message,
        region=report.region,
        done=report.done,
        state=report.final_state,
        moved=len(evacuation.moved),
        attempts=evacuation.attempts,
        stuck=len(evacuation.stuck),
        elapsed_s=round(report.elapsed_s, 3),
    )


async def undrain_region(pool: AdminPool, region: str) -> ClusterState:
    known = [r.name for r in pool.topology.regions]
    if region not in known:
        raise DrainRefused(f"unknown region {region!r} (regions: {', '.join(known)})")
    state = await set_region_state(pool, region, RegionState.ACTIVE)
    event(
        log,
        "region_undrained",
        f"{region} marked active (cluster state version {state.version})",
        region=region,
        version=state.version,
    )
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

    event(
        log,
        "node_drain_started",
        f"moving every leadership off node {node_id} (deadline {deadline_s:.1f} s)",
        node_id=node_id,
        deadline_s=deadline_s,
    )
    result = await evacuate(
        pool,
        leaving=frozenset({node_id}),
        may_take=may_take,
        deadline_s=deadline_s,
        on_event=on_event,
    )
    stuck = "; ".join(s.describe() for s in result.stuck[:STUCK_LOGGED_MAX])
    event(
        log,
        "node_drain_finished",
        f"node {node_id} {'leads nothing' if result.done else 'still leads: ' + stuck} after "
        f"{result.elapsed_s:.2f} s ({len(result.moved)} moved)",
        node_id=node_id,
        done=result.done,
        moved=len(result.moved),
        stuck=len(result.stuck),
    )
    return result
