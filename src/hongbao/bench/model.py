"""The bench's options, per-run results and report (medians over runs), and their JSON.

Rules of this module: plain data and arithmetic, no I/O. Percentiles are nearest-rank;
figures over several runs are medians of the per-run figures, never pooled samples
(one slow run cannot hide in a pool, and each run's figure stays comparable).
"""

from __future__ import annotations

import math
import statistics
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field

from hongbao.bench.cpu import KINDS, CpuUse
from hongbao.bench.hot_envelope import HotOptions, HotResult

MIXES = ("deposit", "transfer", "envelope", "mixed", "hot-envelope")
HOT_MIX = "hot-envelope"
FUND_FEN = 1_000_000  # 10,000 yuan per bench user: far more than a run can spend
ENVELOPE_SHARES = 10
ENVELOPE_TOTAL_FEN = 100
QUIET_TIMEOUT_S = 15.0


@dataclass(frozen=True, slots=True)
class BenchOptions:
    duration_s: float = 10.0
    concurrency: int = 64
    batch: int = 100
    mix: str = "mixed"
    runs: int = 3
    users: int = 1000
    latency_samples: int = 200
    latency_budget_s: float = 10.0
    ops_max: int = 10_000_000
    tail_s: float = 10.0
    seed: int | None = None
    hot: HotOptions = field(default_factory=HotOptions)
    processes: int = 1  # the bench client's worker processes for the throughput phase

    def __post_init__(self) -> None:
        if self.mix not in MIXES:
            raise ValueError(f"mix must be one of {', '.join(MIXES)}")
        if self.duration_s <= 0 or self.concurrency < 1 or self.batch < 1 or self.runs < 1:
            raise ValueError("duration, concurrency, batch and runs must be positive")
        if self.users < ENVELOPE_SHARES + 2:
            raise ValueError(f"at least {ENVELOPE_SHARES + 2} users")
        if self.mix == HOT_MIX and self.users < self.hot.grabbers + 1:
            raise ValueError(f"hot-envelope: at least {self.hot.grabbers + 1} users (grabbers + 1)")
        if self.processes < 1 or (self.processes > 1 and self.mix == HOT_MIX):
            raise ValueError("processes: at least 1, and only 1 with the hot-envelope mix")
        if self.processes > self.concurrency:
            raise ValueError("processes cannot exceed concurrency (callers spread over them)")


@dataclass(frozen=True, slots=True)
class Percentiles:
    p50: float
    p90: float
    p99: float
    max: float
    count: int

    @staticmethod
    def of(samples_ms: Sequence[float]) -> Percentiles:
        if not samples_ms:
            return Percentiles(math.nan, math.nan, math.nan, math.nan, 0)
        ordered = sorted(samples_ms)

        def rank(q: float) -> float:  # nearest-rank percentile
            return ordered[max(0, math.ceil(q * len(ordered)) - 1)]

        return Percentiles(
            p50=round(rank(0.50), 3),
            p90=round(rank(0.90), 3),
            p99=round(rank(0.99), 3),
            max=round(ordered[-1], 3),
            count=len(ordered),
        )


@dataclass(slots=True)
class RunResult:
    run: int
    ops_ok: int = 0
    ops_failed: int = 0
    ops_abandoned: int = 0
    retries: int = 0  # operations the client sent again (NOT_LEADER, OVERLOADED, timeouts)
    calls: int = 0
    throughput_s: float = 0.0
    ops_per_s: float = 0.0
    errors_by_reason: dict[str, int] = field(default_factory=dict)
    transfer_ms: Percentiles | None = None
    transfer_same_shard_ms: Percentiles | None = None
    transfer_cross_shard_ms: Percentiles | None = None
    baseline_ms: Percentiles | None = None
    quiet_before_latency: bool = True
    phases_s: dict[str, float] = field(default_factory=dict)
    hot: HotResult | None = None  # the hot-envelope mix's figures
    cpu: CpuUse | None = None  # the throughput phase's CPU by process kind (None: not measured)


@dataclass(slots=True)
class BenchReport:
    options: BenchOptions
    target: str
    runs: list[RunResult]

    @property
    def errors_by_reason(self) -> dict[str, int]:
        total: Counter[str] = Counter()
        for run in self.runs:
            total.update(run.errors_by_reason)
        return dict(sorted(total.items()))

    def median_ops_per_s(self) -> float:
        return round(statistics.median(r.ops_per_s for r in self.runs), 1)

    def median_latency(self, pick: Callable[[RunResult], Percentiles | None]) -> Percentiles:
        chosen = [p for p in (pick(r) for r in self.runs) if p is not None and p.count]
        if not chosen:
            return Percentiles.of(())
        return Percentiles(
            p50=round(statistics.median(p.p50 for p in chosen), 3),
            p90=round(statistics.median(p.p90 for p in chosen), 3),
            p99=round(statistics.median(p.p99 for p in chosen), 3),
            max=round(statistics.median(p.max for p in chosen), 3),
            count=sum(p.count for p in chosen),
        )

    def to_json(self) -> dict[str, object]:
        transfer = self.median_latency(lambda r: r.transfer_ms)
        baseline = self.median_latency(lambda r: r.baseline_ms)
        ratio = transfer.p50 / baseline.p50 if baseline.p50 and baseline.p50 > 0 else None
        return {
            "target": self.target,
            "options": asdict(self.options),
            "ops_per_s": self.median_ops_per_s(),
            "ops_ok": sum(r.ops_ok for r in self.runs),
            "ops_failed": sum(r.ops_failed for r in self.runs),
            "ops_abandoned": sum(r.ops_abandoned for r in self.runs),
            "errors_by_reason": self.errors_by_reason,
            "latency_ms": {
                "transfer": asdict(transfer),
                "transfer_same_shard": asdict(
                    self.median_latency(lambda r: r.transfer_same_shard_ms)
                ),
                "transfer_cross_shard": asdict(
                    self.median_latency(lambda r: r.transfer_cross_shard_ms)
                ),
                "baseline_balance_stale": asdict(baseline),
            },
            "transfer_p50_over_baseline_p50": None if ratio is None else round(ratio, 2),
            "hot_envelope": self.hot_json(),
            "cpu": self.cpu_json(),
            "runs": [_run_json(r) for r in self.runs],
        }

    def cpu_json(self) -> dict[str, object] | None:
        """The throughput phase's CPU, medians over runs: seconds, cores and µs per
        operation by kind (and ``total`` per operation); None where unknown."""
        uses = [r.cpu for r in self.runs if r.cpu is not None]
        if not uses:
            return None
        kinds = [k for k in KINDS if any(k in use.cpu_s for use in uses)]
        unknown: dict[str, str] = {}
        for use in uses:
            unknown.update(use.unknown)
        per_op = [use.us_per_op() for use in uses]
        cores = [use.cores() for use in uses]
        return {
            "window_s": round(statistics.median(use.window_s for use in uses), 3),
            "ops": sum(use.ops for use in uses),
            "cpu_s": {k: _median_known([use.cpu_s.get(k) for use in uses], 3) for k in kinds},
            "cores": {k: _median_known([c.get(k) for c in cores], 3) for k in kinds},
            "us_per_op": {
                k: _median_known([p.get(k) for p in per_op], 1) for k in ("total", *kinds)
            },
            "unknown": dict(sorted(unknown.items())),
        }

    def hot_json(self) -> dict[str, object] | None:
        """The hot-envelope figures, medians over runs; None for the other mixes."""
        hot = [r.hot for r in self.runs if r.hot is not None]
        if not hot:
            return None
        empty = [Percentiles.of(h.empty_ms) for h in hot]
        answered = [Percentiles.of(h.all_answered_ms) for h in hot]
        return {
            "shares": self.options.hot.shares,
            "grabbers": self.options.hot.grabbers,
            "envelopes_in_flight": self.options.hot.in_flight,
            "grab_attempts_per_s": round(statistics.median(h.grab_attempts_per_s for h in hot), 1),
            "time_to_empty_ms": _median_of(empty),
            "time_to_answer_all_ms": _median_of(answered),
            "envelopes": sum(h.envelopes for h in hot),
            "envelopes_not_emptied": sum(h.envelopes_not_emptied for h in hot),
            "envelopes_abandoned": sum(h.envelopes_abandoned for h in hot),
            "grabs_taken": sum(h.grabs_taken for h in hot),
            "grabs_empty": sum(h.grabs_empty for h in hot),
            "grabs_failed": sum(h.grabs_failed for h in hot),
            "grabs_abandoned": sum(h.grabs_abandoned for h in hot),
            "sends_failed": sum(h.sends_failed for h in hot),
        }


def _median_known(values: Sequence[float | None], digits: int) -> float | None:
    """The median of the known values; None when none is known."""
    known = [v for v in values if v is not None]
    return round(statistics.median(known), digits) if known else None


def _median_of(per_run: Sequence[Percentiles]) -> dict[str, float | int]:
    """Per-run percentiles over envelopes, then the median of each over runs."""
    chosen = [p for p in per_run if p.count]
    if not chosen:
        return asdict(Percentiles.of(()))
    return {
        "p50": round(statistics.median(p.p50 for p in chosen), 3),
        "p99": round(statistics.median(p.p99 for p in chosen), 3),
        "max": round(statistics.median(p.max for p in chosen), 3),
        "count": sum(p.count for p in chosen),
    }


def _run_json(run: RunResult) -> dict[str, object]:
    data = asdict(run)
    if run.hot is not None:  # per-envelope samples are summarised, not listed
        hot = data["hot"]
        hot["time_to_empty_ms"] = asdict(Percentiles.of(run.hot.empty_ms))
        hot["grab_attempts_per_s"] = round(run.hot.grab_attempts_per_s, 1)
        del hot["empty_ms"], hot["all_answered_ms"]
    if run.cpu is not None:
        data["cpu"]["us_per_op"] = run.cpu.us_per_op()
        data["cpu"]["cores"] = run.cpu.cores()
    data["ops_per_s"] = round(run.ops_per_s, 1)
    data["throughput_s"] = round(run.throughput_s, 3)
    return data
