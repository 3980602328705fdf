"""Availability and latency over time, from a chaos run's history alone.

Why from the history: the figures must be recomputable from a stored run
(``hongbao chaos check``), and the history is what the clients saw, which is what
availability means. Every figure here is a pure function of the ops and ``run.json``.

Definitions (times are seconds since the run's start; ops are bucketed by the second in
which they completed, ``floor(complete_s)``; latency is ``complete_s - invoke_s``):

- *served*: an operation the cluster answered through its ledger: ``ok``, or a business
  refusal the ledger applied (``history.REFUSALS``, e.g. ``ENVELOPE_EMPTY``). A refusal is
  a committed answer, so it proves the shard had a quorum; counting it as a failure would
  make a healthy run of the red-envelope workload look partly unavailable.
- *availability* (per second and for the whole run): served / completed operations.
- *throughput*: ``ok`` operations per second. Latency percentiles are of ``ok`` ops
  (nearest-rank method: the p-th percentile of n sorted values is value
  ``ceil(p / 100 * n)``), so they are exact values from the history, never interpolated.
- *unavailability window*: the longest stretch with no served operation. The whole
  run's is measured over the workload window ``[workload_start_s, workload_end_s]``; a
  fault's over ``[injected, end of its recovery second]`` (or to the workload's end when
  it never recovered), cluster-wide and per router region (a region's window runs until
  that region's own ok/s is back to half its own baseline).
- *baseline*: the median ok/s over the whole seconds of the 10 s before the first fault
  (within the workload window); when there are none (a fault at the very start), the 10 s
  before this fault; else the median of the fault-free whole seconds.
- *recovery*: after the heal (the fault's own, else the runner's ``heal_all_s``), the
  first whole second, from the one holding the heal, whose ok count is at least half the
  baseline; ``recovery_s`` is from the heal to that second's start (0 when the heal's own
  second already qualifies). None when no whole second of workload follows the heal
  (healed at the end: not measurable) or when throughput never came back.
"""

from __future__ import annotations

import bisect
import itertools
import math
import statistics
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Final

from hongbao.chaos.history import REFUSALS, Op
from hongbao.chaos.run_info import FaultRecord, RunInfo
from hongbao.chaos.verdict import CONTEXT_OPS_MAX, OFFENDING_MAX, CheckResult, Offense

CHECK_NAME: Final = "availability"
BASELINE_WINDOW_S: Final = 10.0
RECOVERED_SHARE: Final = 0.5  # of the baseline's ok/s
PERCENTILES: Final = (50, 90, 99)
CODES_PER_SECOND_MAX: Final = 32  # distinct error keys per second; the rest is "other"
SECONDS_MAX: Final = 7 * 24 * 3600  # per-second rows of one run, a week at most
NO_REGION: Final = "(none)"
_SCAN_MAX: Final = 100_000  # ops looked through for the served op around a window


@dataclass(slots=True)
class FaultImpact:
    """What one fault of the schedule did to the workload."""

    index: int
    kind: str
    injected_s: float | None
    healed_s: float | None  # its own heal, else the runner's heal_all_s; None: never
    targets: dict[str, Any]
    longest_unavailable_s: float  # no served op, from injection until recovery
    longest_unavailable_by_region: dict[str, float]
    recovery_s: float | None  # heal -> throughput back to half the baseline; see module
    baseline_ok_s: float | None = None  # the ok/s it was judged against
    unavailable_from_s: float | None = None  # where the longest window began
    recovery_measurable: bool = False  # a whole second of workload followed the heal
    context: list[dict[str, Any]] = field(default_factory=list)  # ops around the window


@dataclass(slots=True)
class Metrics:
    requests: int
    ok: int
    failed: int  # status fail, refusals included
    indeterminate: int
    failures_by_code: dict[str, int]  # "CODE/REASON" (or "CODE") -> count, every non-ok op
    latency_ms: dict[str, float]  # p50, p90, p99, max of ok ops (0.0 when none)
    per_second: list[dict[str, Any]]  # see _second_row
    faults: list[FaultImpact]
    longest_unavailable_s: float  # over the workload window
    refused: int = 0  # applied business refusals (a subset of failed)
    availability: float | None = None  # served / completed, whole run; None: no ops
    longest_unavailable_from_s: float | None = None
    longest_unavailable_context: list[dict[str, Any]] = field(default_factory=list)
    regions: list[str] = field(default_factory=list)
    workload_window_s: tuple[float, float] = (0.0, 0.0)


@dataclass(slots=True)
class _Run:
    """What every fault's figures are computed from, computed once."""

    info: RunInfo
    ops: list[Op]  # by completion time
    times_s: list[float]  # their completion times
    served_s: list[float]
    served_s_by_region: dict[str, list[float]]
    regions: list[str]
    ok_of_second: dict[int, int]
    ok_of_second_by_region: dict[str, dict[int, int]]
    start_s: float
    end_s: float
    first_fault_s: float | None


def analyse(history: Sequence[Op], info: RunInfo) -> Metrics:
    """Every figure of the run; pure, O(n log n) in the number of ops."""
    ops = sorted(history, key=lambda op: (op.complete_s, op.op_id))
    start_s, end_s = workload_window(ops, info)
    regions = sorted({_region(op) for op in ops})
    served = [op for op in ops if is_served(op)]
    by_region: dict[str, list[float]] = defaultdict(list)
    for op in served:
        by_region[_region(op)].append(op.complete_s)
    rows = _per_second(ops, regions, start_s, end_s)
    injected = [f.injected_s for f in info.faults if f.injected_s is not None]
    run = _Run(
        info=info,
        ops=ops,
        times_s=[op.complete_s for op in ops],
        served_s=[op.complete_s for op in served],
        served_s_by_region=by_region,
        regions=regions,
        ok_of_second={row["t"]: row["ok"] for row in rows},
        ok_of_second_by_region={
            region: {row["t"]: row["by_region"][region]["ok"] for row in rows} for region in regions
        },
        start_s=start_s,
        end_s=end_s,
        first_fault_s=min(injected) if injected else None,
    )
    gap_s, gap_from_s = longest_gap(run.served_s, start_s, end_s)
    statuses = Counter(op.status for op in ops)
    errors = Counter(error_key(op) for op in ops if op.status != "ok")
    return Metrics(
        requests=len(ops),
        ok=statuses["ok"],
        failed=statuses["fail"],
        indeterminate=statuses["info"],
        failures_by_code=dict(sorted(errors.items())),
        latency_ms=latency_summary(sorted(_latency_ms(op) for op in ops if op.status == "ok")),
        per_second=rows,
        faults=[_impact(run, fault) for fault in info.faults],
        longest_unavailable_s=_round(gap_s),
        refused=sum(1 for op in ops if op.status == "fail" and op.reason in REFUSALS),
        availability=_ratio(len(served), len(ops)),
        longest_unavailable_from_s=_maybe_round(gap_from_s),
        longest_unavailable_context=_window_context(run, gap_from_s, gap_s),
        regions=regions,
        workload_window_s=(_round(start_s), _round(end_s)),
    )


def is_served(op: Op) -> bool:
    """The cluster answered it through its ledger: ok or an applied business refusal."""
    return op.status == "ok" or (op.status == "fail" and op.reason in REFUSALS)


def error_key(op: Op) -> str:
    """``CODE/REASON`` of a non-ok op (``CODE`` when it carried no reason)."""
    code = op.code or "UNKNOWN"
    return f"{code}/{op.reason}" if op.reason else code


def workload_window(ops: Sequence[Op], info: RunInfo) -> tuple[float, float]:
    """``[workload_start_s, workload_end_s]``; the end falls back to the last completion
    when the runner did not record one (an interrupted run)."""
    start_s = info.workload_start_s
    end_s = info.workload_end_s
    if end_s <= start_s:
        end_s = max((op.complete_s for op in ops), default=start_s)
    return start_s, max(start_s, end_s)


def percentile(sorted_values: Sequence[float], p: float) -> float:
    """Nearest-rank percentile of already sorted values (ValueError when empty)."""
    if not sorted_values:
        raise ValueError("percentile of no values")
    rank = math.ceil(p / 100 * len(sorted_values))
    return sorted_values[min(max(rank, 1), len(sorted_values)) - 1]


def latency_summary(sorted_ms: Sequence[float]) -> dict[str, float]:
    if not sorted_ms:
        return {"p50": 0.0, "p90": 0.0, "p99": 0.0, "max": 0.0}
    summary = {f"p{p}": _round(percentile(sorted_ms, p)) for p in PERCENTILES}
    summary["max"] = _round(sorted_ms[-1])
    return summary


def longest_gap(times_s: Sequence[float], from_s: float, to_s: float) -> tuple[float, float | None]:
    """The longest stretch of ``[from_s, to_s]`` holding none of the sorted ``times_s``,
    as (length, where it starts); (0.0, None) for an empty window."""
    if to_s <= from_s:
        return 0.0, None
    low = bisect.bisect_right(times_s, from_s)
    high = bisect.bisect_left(times_s, to_s)
    points = [from_s, *times_s[low:high], to_s]
    best_s, best_from_s = 0.0, from_s
    for before, after in itertools.pairwise(points):
        if after - before > best_s:
            best_s, best_from_s = after - before, before
    return best_s, best_from_s


def _per_second(
    ops: Sequence[Op], regions: Sequence[str], start_s: float, end_s: float
) -> list[dict[str, Any]]:
    first_s, last_s = math.floor(start_s), math.floor(end_s)
    if ops:  # sorted by completion: prepare's ops come before the workload's clock
        first_s = min(first_s, math.floor(ops[0].complete_s))
        last_s = max(last_s, math.floor(ops[-1].complete_s))
    last_s = min(last_s, first_s + SECONDS_MAX - 1)
    buckets: dict[int, list[Op]] = defaultdict(list)
    for op in ops:
        second = math.floor(op.complete_s)
        if first_s <= second <= last_s:
            buckets[second].append(op)
    return [_second_row(t, buckets.get(t, []), regions) for t in range(first_s, last_s + 1)]


def _second_row(t: int, ops: Sequence[Op], regions: Sequence[str]) -> dict[str, Any]:
    """One second: counts by status (refused is a subset of fail), by region, errors by
    key, availability (None when nothing completed) and ok latency (None when no ok)."""
    by_region = {r: {"ok": 0, "refused": 0, "fail": 0, "info": 0} for r in regions}
    errors: Counter[str] = Counter()
    latencies_ms: list[float] = []
    for op in ops:
        counts = by_region[_region(op)]
        counts[op.status] += 1
        if op.status == "ok":
            latencies_ms.append(_latency_ms(op))
        else:
            errors[error_key(op)] += 1
            if op.status == "fail" and op.reason in REFUSALS:
                counts["refused"] += 1
    totals = {
        key: sum(c[key] for c in by_region.values()) for key in ("ok", "refused", "fail", "info")
    }
    served = totals["ok"] + totals["refused"]
    latencies_ms.sort()
    return {
        "t": t,
        **totals,
        "served": served,
        "completed": len(ops),
        "availability": _ratio(served, len(ops)),
        "p50_ms": _round(percentile(latencies_ms, 50)) if latencies_ms else None,
        "p99_ms": _round(percentile(latencies_ms, 99)) if latencies_ms else None,
        "by_region": by_region,
        "errors": _capped(errors),
    }


def _impact(run: _Run, fault: FaultRecord) -> FaultImpact:
    healed_s = None if fault.injected_s is None else _heal_of(fault, run.info)
    impact = FaultImpact(
        index=fault.index,
        kind=fault.kind,
        injected_s=fault.injected_s,
        healed_s=healed_s,
        targets=dict(fault.targets),
        longest_unavailable_s=0.0,
        longest_unavailable_by_region={},
        recovery_s=None,
    )
    if fault.injected_s is None:
        return impact
    start_s = max(fault.injected_s, run.start_s)
    cluster = _recovery(run, run.ok_of_second, fault.injected_s, healed_s)
    impact.baseline_ok_s = cluster.baseline
    impact.recovery_measurable = cluster.measurable
    if cluster.second is not None and healed_s is not None:
        impact.recovery_s = _round(max(0.0, cluster.second - healed_s))
    gap_s, gap_from_s = longest_gap(run.served_s, start_s, cluster.window_end_s)
    impact.longest_unavailable_s = _round(gap_s)
    impact.unavailable_from_s = _maybe_round(gap_from_s)
    for region in run.regions:  # each region until its own throughput is back
        own = _recovery(run, run.ok_of_second_by_region[region], fault.injected_s, healed_s)
        region_gap_s, _ = longest_gap(run.served_s_by_region[region], start_s, own.window_end_s)
        impact.longest_unavailable_by_region[region] = _round(region_gap_s)
    impact.context = _window_context(run, gap_from_s, gap_s)
    return impact


@dataclass(frozen=True, slots=True)
class _Recovery:
    baseline: float | None  # ok/s before the fault
    second: int | None  # the first whole second back to RECOVERED_SHARE of it
    measurable: bool  # a whole second of workload followed the heal
    window_end_s: float  # where its unavailability window ends


def _recovery(
    run: _Run, ok_of_second: dict[int, int], fault_s: float, healed_s: float | None
) -> _Recovery:
    baseline = _baseline(run, ok_of_second, fault_s)
    if healed_s is None:
        return _Recovery(baseline, None, False, run.end_s)
    seconds = [s for s in range(math.floor(healed_s), math.floor(run.end_s)) if s + 1 <= run.end_s]
    if baseline is not None and baseline > 0:
        for second in seconds:
            if ok_of_second.get(second, 0) >= RECOVERED_SHARE * baseline:
                end_s = min(run.end_s, max(healed_s, second + 1.0))
                return _Recovery(baseline, second, True, end_s)
    return _Recovery(baseline, None, bool(seconds), run.end_s)


def _baseline(run: _Run, ok_of_second: dict[int, int], fault_s: float) -> float | None:
    for before_s in (run.first_fault_s, fault_s):
        if before_s is None:
            continue
        from_s = max(run.start_s, before_s - BASELINE_WINDOW_S)
        seconds = _whole_seconds(from_s, min(before_s, run.end_s))
        if seconds:
            return float(statistics.median(ok_of_second.get(s, 0) for s in seconds))
    quiet = [
        s
        for s in _whole_seconds(run.start_s, run.end_s)
        if not any(_active(f, run.info, s, s + 1.0) for f in run.info.faults)
    ]
    return float(statistics.median(ok_of_second.get(s, 0) for s in quiet)) if quiet else None


def _whole_seconds(from_s: float, to_s: float) -> list[int]:
    return [s for s in range(math.ceil(from_s), math.floor(to_s)) if s + 1.0 <= to_s]


def _heal_of(fault: FaultRecord, info: RunInfo) -> float | None:
    return fault.healed_s if fault.healed_s is not None else info.heal_all_s


def _active(fault: FaultRecord, info: RunInfo, from_s: float, to_s: float) -> bool:
    healed_s = _heal_of(fault, info)
    if fault.injected_s is None:
        return False
    return fault.injected_s < to_s and (healed_s is None or healed_s > from_s)


def _window_context(run: _Run, gap_from_s: float | None, gap_s: float) -> list[dict[str, Any]]:
    """The last served op before a window, its first failures, the first served after."""
    if gap_from_s is None or gap_s <= 0:
        return []
    ops = run.ops
    low = bisect.bisect_right(run.times_s, gap_from_s)
    high = bisect.bisect_left(run.times_s, gap_from_s + gap_s)
    lowest = max(-1, low - 1 - _SCAN_MAX)
    before = next((ops[i] for i in range(low - 1, lowest, -1) if is_served(ops[i])), None)
    inside = ops[low:high][: CONTEXT_OPS_MAX - 2]  # none of them served: it is the gap
    after = next((op for op in ops[high : high + _SCAN_MAX] if is_served(op)), None)
    return [asdict(op) for op in (before, *inside, after) if op is not None]


def availability_check(metrics: Metrics, expect: dict[str, Any]) -> CheckResult:
    """The suite's ``[expect]`` thresholds against the figures (missing: not judged)."""
    max_gap_s = _threshold(expect, "max_unavailable_s")
    min_share = _threshold(expect, "min_availability")
    max_recovery_s = _threshold(expect, "max_recovery_s")
    offending: list[Offense] = []
    if metrics.requests == 0:
        offending.append(Offense(why="the workload completed no operation at all"))
    if max_gap_s is not None and metrics.longest_unavailable_s > max_gap_s:
        offending.append(
            Offense(
                why=f"no request succeeded for {metrics.longest_unavailable_s:.3f} s from "
                f"{_s(metrics.longest_unavailable_from_s)} (limit {max_gap_s:g} s)",
                context=metrics.longest_unavailable_context,
                evidence={
                    "longest_unavailable_s": metrics.longest_unavailable_s,
                    "from_s": metrics.longest_unavailable_from_s,
                    "limit_s": max_gap_s,
                },
            )
        )
    share = metrics.availability
    if min_share is not None and share is not None and share < min_share:
        offending.append(
            Offense(
                why=f"availability {share:.4f} of {metrics.requests} requests, below {min_share:g}",
                evidence={
                    "availability": share,
                    "requests": metrics.requests,
                    "failures_by_code": metrics.failures_by_code,
                    "limit": min_share,
                },
            )
        )
    if max_recovery_s is not None:
        offending.extend(_recovery_offenses(metrics, max_recovery_s))
    recoveries = {str(f.index): f.recovery_s for f in metrics.faults}
    summary = (
        f"{metrics.requests} requests, availability {_share(share)}, longest unavailability "
        f"{metrics.longest_unavailable_s:.3f} s, recovery per fault "
        f"{_recoveries(metrics.faults)}; limits: " + _limits(max_gap_s, min_share, max_recovery_s)
    )
    return CheckResult(
        name=CHECK_NAME,
        ok=not offending,
        summary=summary,
        offending=offending[:OFFENDING_MAX],
        details={
            "requests": metrics.requests,
            "availability": share,
            "longest_unavailable_s": metrics.longest_unavailable_s,
            "recovery_s": recoveries,
            "unavailable_s": {str(f.index): f.longest_unavailable_s for f in metrics.faults},
            "expect": {
                "max_unavailable_s": max_gap_s,
                "min_availability": min_share,
                "max_recovery_s": max_recovery_s,
            },
            "offenses": len(offending),
        },
    )


def _recovery_offenses(metrics: Metrics, limit_s: float) -> list[Offense]:
    offenses = []
    for fault in metrics.faults:
        if fault.injected_s is None or not fault.recovery_measurable:
            continue  # never injected, or healed when the workload ended: nothing to judge
        evidence = {
            "fault": fault.index,
            "kind": fault.kind,
            "targets": fault.targets,
            "healed_s": fault.healed_s,
            "baseline_ok_s": fault.baseline_ok_s,
            "recovery_s": fault.recovery_s,
            "limit_s": limit_s,
        }
        label = f"fault {fault.index} ({fault.kind})"
        if fault.baseline_ok_s is None or fault.baseline_ok_s <= 0:
            why = f"{label}: no baseline throughput to recover to (no ok before it)"
        elif fault.recovery_s is None:
            why = (
                f"{label}: throughput never came back to {RECOVERED_SHARE:.0%} of "
                f"{fault.baseline_ok_s:g} ok/s after the heal at {_s(fault.healed_s)}"
            )
        elif fault.recovery_s > limit_s:
            why = (
                f"{label}: took {fault.recovery_s:.3f} s after the heal at "
                f"{_s(fault.healed_s)} to recover (limit {limit_s:g} s)"
            )
        else:
            continue
        offenses.append(Offense(why=why, context=fault.context, evidence=evidence))
    return offenses


def _threshold(expect: dict[str, Any], key: str) -> float | None:
    value = expect.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"expect.{key} must be a number, not {value!r}")
    return float(value)


def _limits(max_gap_s: float | None, min_share: float | None, max_rec_s: float | None) -> str:
    parts = [
        f"max_unavailable_s={max_gap_s:g}" if max_gap_s is not None else "",
        f"min_availability={min_share:g}" if min_share is not None else "",
        f"max_recovery_s={max_rec_s:g}" if max_rec_s is not None else "",
    ]
    return ", ".join(p for p in parts if p) or "none"


def _recoveries(faults: Sequence[FaultImpact]) -> str:
    return "[" + ", ".join(recovery_text(f) for f in faults) + "]" if faults else "(no faults)"


def recovery_text(fault: FaultImpact) -> str:
    """How a fault's recovery reads in a summary or a table."""
    if fault.injected_s is None:
        return "not injected"
    if not fault.recovery_measurable:
        return "n/a (healed at the end)"
    return "never" if fault.recovery_s is None else f"{fault.recovery_s:.3f} s"


def _capped(errors: Counter[str]) -> dict[str, int]:
    common = errors.most_common()
    kept = dict(sorted(common[:CODES_PER_SECOND_MAX]))
    rest = sum(n for _, n in common[CODES_PER_SECOND_MAX:])
    if rest:
        kept["other"] = rest
    return kept


def _region(op: Op) -> str:
    return op.region or NO_REGION


def _latency_ms(op: Op) -> float:
    return max(0.0, (op.complete_s - op.invoke_s) * 1000.0)


def _ratio(part: int, whole: int) -> float | None:
    return None if whole == 0 else round(part / whole, 6)


def _round(value: float) -> float:
    return round(value, 3)


def _maybe_round(value: float | None) -> float | None:
    return None if value is None else _round(value)


def _s(value: float | None) -> str:
    return "?" if value is None else f"{value:.3f} s"


def _share(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.4f}"
