"""Run one seed: a safety phase under faults, then heal everything and demand liveness.

Rules of this module: a seed and a :class:`SimConfig` determine the whole run. One
``random.Random(seed)`` is created here and handed to everything that chooses (network,
faults, workload, the cores' election timers); nothing reads a clock. Any exception out
of a core or the runtime ends the run as a violation too: an invariant broke inside.

Phases (TigerBeetle's VOPR): ``safety_ticks`` ticks with faults and the full workload;
then every partition heals, background loss stops and crashed nodes restart; within
``liveness_ticks_max`` ticks a leader must commit a fresh probe write (the time this takes
is ``ticks_to_recover``) and every member must apply every acknowledged write. Runs with
draining regions add a take-back check at the end (``draining.py``).
"""

from __future__ import annotations

import random
import traceback
from dataclasses import dataclass, field

from hongbao.raft.types import NodeId
from hongbao.sim.checker import Checker, Violation, ViolationKind
from hongbao.sim.cluster import Cluster
from hongbao.sim.config import SimConfig
from hongbao.sim.draining import Drains
from hongbao.sim.faults import FaultInjector
from hongbao.sim.stats import RunStats
from hongbao.sim.trace import Trace
from hongbao.sim.workload import Workload


@dataclass(frozen=True, slots=True)
class SeedResult:
    seed: int
    stats: RunStats  # a finished run's counters: not mutated after the run
    violation_kind: str | None
    violation_detail: str | None
    violation_tick: int | None
    trace_digest: str
    trace_lines: tuple[str, ...] = field(default=())
    error_traceback: str | None = None  # when a core or the runtime raised

    @property
    def ok(self) -> bool:
        return self.violation_kind is None


@dataclass(frozen=True, slots=True)
class TraceOptions:
    enabled: bool = False
    messages: bool = False  # one line per message sent, delivered and dropped


def run_seed(seed: int, config: SimConfig, trace: TraceOptions = TraceOptions()) -> SeedResult:
    rng = random.Random(seed)
    stats = RunStats()
    log = Trace(enabled=trace.enabled, messages=trace.messages)
    checker = Checker()
    violation: Violation | None = None
    error_traceback = None
    tick = 0
    log.emit(0, "sim", "start", _describe_start(seed, config))
    try:
        cluster = Cluster(config=config, rng=rng, trace=log, stats=stats, checker=checker)
        faults = FaultInjector(rng=rng, cluster=cluster, rates=config.faults, stats=stats,
                               trace=log)
        workload = Workload(rng=rng, cluster=cluster, checker=checker, rates=config.workload,
                            stats=stats, trace=log)
        try:
            _safety_phase(cluster, faults, workload, config)
            faults.heal_everything()
            stats.ticks_to_recover = _liveness_phase(cluster, workload, checker, config, log,
                                                     faults.drains)
            if faults.drains is not None:
                cluster.trace_phase("takeback")
                faults.drains.check_takeback(config.liveness_ticks_max)
        finally:
            tick = cluster.now
    except Violation as found:
        violation = found
    except Exception as crashed:  # an invariant or a bug inside a core or the runtime
        violation = Violation(ViolationKind.CRASH, f"{type(crashed).__name__}: {crashed}")
        error_traceback = traceback.format_exc()
    if violation is not None:
        log.emit(tick, "sim", "violation", f"kind={violation.kind.value} {violation.detail}")
    log.emit(tick, "sim", "end", "ok=0" if violation else "ok=1")
    return SeedResult(
        seed=seed,
        stats=stats,
        violation_kind=violation.kind.value if violation else None,
        violation_detail=violation.detail if violation else None,
        violation_tick=tick if violation else None,
        trace_digest=log.digest,
        trace_lines=tuple(log.lines),
        error_traceback=error_traceback,
    )


def _safety_phase(
    cluster: Cluster, faults: FaultInjector, workload: Workload, config: SimConfig
) -> None:
    cluster.trace_phase("safety")
    for _ in range(config.safety_ticks):
        faults.on_tick()
        workload.on_tick()
        cluster.tick()


def _liveness_phase(
    cluster: Cluster,
    workload: Workload,
    checker: Checker,
    config: SimConfig,
    log: Trace,
    drains: Drains | None = None,
) -> int:
    """Ticks from healing until a probe write commits; raises unless all converge in time.

    With draining regions, recovery also needs the leader to be one that may campaign
    (the drain moves it out), unless no live voter may.
    """
    cluster.trace_phase("liveness")
    healed_tick = cluster.now
    behind: list[NodeId] = []
    for _ in range(config.liveness_ticks_max):
        if drains is not None:
            drains.move_leader_out()
        workload.probe()
        cluster.tick()
        if workload.probe_acked_tick is None:
            continue
        leader = cluster.leader()
        if leader is None:
            continue
        if drains is not None and not drains.leader_placed(leader):
            continue
        members = sorted(leader.live_core().conf_state.members)
        behind = checker.check_converged(
            {m: cluster.nodes[m].machine.image for m in members if cluster.nodes[m].alive}
        )
        if not behind:
            recovered = workload.probe_acked_tick - healed_tick
            log.emit(cluster.now, "sim", "recovered", f"ticks={recovered}")
            return recovered
    raise Violation(ViolationKind.LIVENESS, _describe_stuck(cluster, workload, behind, config))


def _describe_stuck(
    cluster: Cluster, workload: Workload, behind: list[NodeId], config: SimConfig
) -> str:
    """Name what is still stuck (TigerBeetle's ``pending()``)."""
    within = f"within {config.liveness_ticks_max} ticks of healing"
    if cluster.leader() is None:
        return f"no leader {within}"
    if workload.probe_acked_tick is None:
        return f"no probe write committed {within}"
    if not behind:
        return f"the leader is still in a draining region {within}"
    return f"members {behind} had not applied every acknowledged write {within}"


def _describe_start(seed: int, config: SimConfig) -> str:
    bugs = ",".join(config.bug_names) or "-"
    return (
        f"seed={seed} nodes={config.node_count} regions={config.region_count} "
        f"ticks={config.safety_ticks} bugs={bugs}"
    )
