"""Availability and latency figures from hand-built histories: exact numbers, by hand.

The scenario (``outage_run``): a workload from 5 s to 65 s with two regions, each
completing an op every 0.1 s (shenzhen at x.x2, shanghai at x.x7); every tenth shenzhen
op is an applied refusal (ENVELOPE_EMPTY). A partition is injected at 30 s and healed at
40 s, and nothing succeeds from 30 s until 42 s: shenzhen's ops fail UNAVAILABLE
NOT_LEADER, shanghai's time out (info). So, per second outside the outage, 19 ok and 1
refusal; the baseline is 19 ok/s; second 42 is the first back to >= 9.5 ok/s.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest

from hongbao.chaos.history import Op
from hongbao.chaos.metrics import (
    analyse,
    availability_check,
    latency_summary,
    longest_gap,
    percentile,
)
from hongbao.chaos.run_info import FaultRecord, RunInfo

HOSTILE = "<script>alert('boom')</script> & \"quotes\""
Outcome = Callable[[str, float, int], tuple[str, str, str]]  # (status, code, reason)


def run_info(faults: list[FaultRecord], **overrides: object) -> RunInfo:
    info = RunInfo(
        suite="partition-region",
        suite_path="chaos/partition-region.toml",
        seed=42,
        config="/tmp/run/topology.toml",
        template="configs/local.toml",
        rerun="hongbao chaos run chaos/partition-region.toml --seed 42",
        versions={"hongbao": "0.8.0", "python": "3.11", "grpcio": "1.66", "toxiproxy": "2.9.0"},
        toxiproxy="embedded",
        started_at="2026-12-02T07:00:00Z",
        workload_start_s=5.0,
        workload_end_s=65.0,
        heal_all_s=65.5,
        quiet_s=67.0,
        faults=faults,
        suite_expect={"max_unavailable_s": 20.0},
    )
    for key, value in overrides.items():
        setattr(info, key, value)
    return info


def partition(injected_s: float | None = 30.0, healed_s: float | None = 40.0) -> FaultRecord:
    return FaultRecord(
        index=0,
        kind="partition-region",
        params={"region": "shanghai", "mode": "blackhole"},
        planned_at_s=25.0,
        injected_s=injected_s,
        healed_s=healed_s,
        targets={"region": "shanghai", "links": ["n1->n3", "n2->n3"], "note": HOSTILE},
    )


def outage(down_from_s: float, down_to_s: float) -> Outcome:
    """Refusal on every tenth shenzhen op; nothing succeeds in [down_from_s, down_to_s)."""

    def outcome(region: str, t: float, n: int) -> tuple[str, str, str]:
        if down_from_s <= t < down_to_s:
            if region == "shenzhen":
                return "fail", "UNAVAILABLE", "NOT_LEADER"
            return "info", "DEADLINE_EXCEEDED", ""
        if region == "shenzhen" and n % 10 == 0:
            return "fail", "FAILED_PRECONDITION", "ENVELOPE_EMPTY"
        return "ok", "", ""

    return outcome


def history(outcome: Outcome, *, first: int = 50, last: int = 649) -> list[Op]:
    ops: list[Op] = []
    for n in range(first, last + 1):
        for region, offset_s, latency_s in (("shenzhen", 0.02, 0.010), ("shanghai", 0.07, 0.020)):
            t = round(n / 10 + offset_s, 6)
            status, code, reason = outcome(region, t, n)
            slow = region == "shanghai" and n == 500  # one slow op at 50.07 s
            ops.append(
                Op(
                    op_id=len(ops),
                    kind="grab" if reason == "ENVELOPE_EMPTY" else "transfer",
                    request_id=f"c42-{len(ops)}",
                    region=region,
                    args={"from": f"u{n}", "to": f"u{n + 1}", "amount_fen": 100},
                    invoke_s=t - (0.9 if slow else latency_s),
                    complete_s=t,
                    status=status,  # type: ignore[arg-type]
                    code=code,
                    reason=reason,
                    message=HOSTILE if status == "info" else "",
                    result={"from_balance_fen": 1000} if status == "ok" else {},
                )
            )
    return ops


def outage_run() -> tuple[list[Op], RunInfo]:
    return history(outage(30.0, 42.0)), run_info([partition()])


def test_totals_codes_and_latency_percentiles() -> None:
    ops, info = outage_run()
    metrics = analyse(ops, info)
    assert (metrics.requests, metrics.ok, metrics.failed, metrics.indeterminate) == (
        1200,
        912,
        168,
        120,
    )
    assert metrics.refused == 48
    assert metrics.availability == pytest.approx((912 + 48) / 1200)
    assert metrics.failures_by_code == {
        "DEADLINE_EXCEEDED": 120,
        "FAILED_PRECONDITION/ENVELOPE_EMPTY": 48,
        "UNAVAILABLE/NOT_LEADER": 120,
    }
    # 432 ok at 10 ms, 479 at 20 ms, one at 900 ms: nearest rank 456 of 912 is 20 ms.
    assert metrics.latency_ms == {"p50": 20.0, "p90": 20.0, "p99": 20.0, "max": 900.0}
    assert metrics.regions == ["shanghai", "shenzhen"]


def test_unavailability_and_recovery_of_the_fault() -> None:
    ops, info = outage_run()
    metrics = analyse(ops, info)
    [impact] = metrics.faults
    assert impact.baseline_ok_s == 19.0
    assert impact.recovery_s == pytest.approx(2.0)  # heal at 40, second 42 is back
    assert impact.recovery_measurable
    # From the injection (30.0) to the first success after it (shenzhen's 42.02).
    assert impact.longest_unavailable_s == pytest.approx(12.02)
    assert impact.unavailable_from_s == pytest.approx(30.0)
    assert impact.longest_unavailable_by_region == {
        "shanghai": pytest.approx(12.07),
        "shenzhen": pytest.approx(12.02),
    }
    # The whole run's window starts at the last success before it (shanghai's 29.97).
    assert metrics.longest_unavailable_s == pytest.approx(12.05)
    assert metrics.longest_unavailable_from_s == pytest.approx(29.97)
    context = impact.context
    assert context[0]["complete_s"] == pytest.approx(29.97)
    assert context[0]["status"] == "ok"
    assert context[-1]["complete_s"] == pytest.approx(42.02)
    assert context[-1]["reason"] == "ENVELOPE_EMPTY"  # n = 420: a refusal is served too
    assert {op["status"] for op in context[1:-1]} == {"fail", "info"}


def test_per_second_rows() -> None:
    ops, info = outage_run()
    rows = {row["t"]: row for row in analyse(ops, info).per_second}
    assert sorted(rows) == list(range(5, 66))
    steady = rows[20]
    assert (steady["ok"], steady["refused"], steady["fail"], steady["info"]) == (19, 1, 1, 0)
    assert (steady["served"], steady["completed"], steady["availability"]) == (20, 20, 1.0)
    assert (steady["p50_ms"], steady["p99_ms"]) == (20.0, 20.0)  # rank 10 of 9x10 ms, 10x20
    assert steady["by_region"]["shenzhen"] == {"ok": 9, "refused": 1, "fail": 1, "info": 0}
    assert steady["errors"] == {"FAILED_PRECONDITION/ENVELOPE_EMPTY": 1}
    down = rows[35]
    assert (down["ok"], down["fail"], down["info"], down["availability"]) == (0, 10, 10, 0.0)
    assert down["p50_ms"] is None
    assert down["errors"] == {"DEADLINE_EXCEEDED": 10, "UNAVAILABLE/NOT_LEADER": 10}
    assert rows[50]["p99_ms"] == 900.0
    assert rows[65]["completed"] == 0
    assert rows[65]["availability"] is None


def test_a_fault_with_no_impact_recovers_at_once() -> None:
    ops = history(outage(1000.0, 1000.0))
    metrics = analyse(ops, run_info([partition()]))
    [impact] = metrics.faults
    assert impact.recovery_s == 0.0
    assert impact.longest_unavailable_s == pytest.approx(0.05)  # the cadence of successes
    assert metrics.longest_unavailable_s == pytest.approx(0.05)


def test_never_recovered_and_healed_at_the_end() -> None:
    ops = history(outage(30.0, 1000.0))
    never = analyse(ops, run_info([partition()])).faults[0]
    assert never.recovery_s is None
    assert never.recovery_measurable
    assert never.longest_unavailable_s == pytest.approx(35.0)  # to the workload's end
    at_end = analyse(ops, run_info([partition(healed_s=None)])).faults[0]
    assert at_end.healed_s == 65.5  # the runner's heal_all_s
    assert at_end.recovery_s is None
    assert not at_end.recovery_measurable
    assert at_end.longest_unavailable_s == pytest.approx(35.0)


def test_never_injected_fault_has_no_figures() -> None:
    ops, _ = outage_run()
    impact = analyse(ops, run_info([partition(injected_s=None, healed_s=None)])).faults[0]
    assert (impact.longest_unavailable_s, impact.recovery_s) == (0.0, None)
    assert impact.longest_unavailable_by_region == {}
    assert not impact.recovery_measurable


def test_baseline_falls_back_when_the_first_fault_starts_the_run() -> None:
    # A fault from the workload's start: no second before it, so the fault-free seconds.
    ops = history(outage(5.0, 12.0))
    first = FaultRecord(index=0, kind="kill-node", params={}, planned_at_s=0.0,
                        injected_s=5.0, healed_s=10.0, targets={"node": 1})  # fmt: skip
    impact = analyse(ops, run_info([first])).faults[0]
    assert impact.baseline_ok_s == 19.0
    assert impact.recovery_s == pytest.approx(2.0)


def test_one_region_partitioned_shows_per_region() -> None:
    def shanghai_down(region: str, t: float, n: int) -> tuple[str, str, str]:
        if region == "shanghai" and 30.0 <= t < 42.0:
            return "fail", "UNAVAILABLE", "UNAVAILABLE"
        return "ok", "", ""

    impact = analyse(history(shanghai_down), run_info([partition()])).faults[0]
    assert impact.longest_unavailable_by_region["shanghai"] == pytest.approx(12.07)
    assert impact.longest_unavailable_by_region["shenzhen"] == pytest.approx(0.1)
    assert impact.longest_unavailable_s == pytest.approx(0.1)
    assert impact.recovery_s == 0.0  # shenzhen alone keeps half the baseline


def test_empty_history_and_interrupted_run() -> None:
    metrics = analyse([], run_info([partition()], workload_end_s=0.0))
    assert (metrics.requests, metrics.availability) == (0, None)
    assert metrics.latency_ms == {"p50": 0.0, "p90": 0.0, "p99": 0.0, "max": 0.0}
    check = availability_check(metrics, {})
    assert not check.ok
    assert "no operation" in check.offending[0].why


def test_percentile_nearest_rank_and_gaps() -> None:
    values = [float(v) for v in range(1, 101)]
    assert latency_summary(values) == {"p50": 50.0, "p90": 90.0, "p99": 99.0, "max": 100.0}
    assert percentile([7.0], 99) == 7.0
    assert percentile([1.0, 2.0], 50) == 1.0
    with pytest.raises(ValueError, match="no values"):
        percentile([], 50)
    assert longest_gap([2.0, 3.0, 7.5], 1.0, 10.0) == (4.5, 3.0)
    assert longest_gap([], 1.0, 4.0) == (3.0, 1.0)
    assert longest_gap([5.0], 6.0, 6.0) == (0.0, None)


def test_availability_check_passes_within_the_thresholds() -> None:
    metrics = analyse(*outage_run())
    check = availability_check(
        metrics, {"max_unavailable_s": 20.0, "min_availability": 0.75, "max_recovery_s": 5.0}
    )
    assert check.ok, check.summary
    assert check.name == "availability"
    assert "1200 requests" in check.summary
    assert "12.050 s" in check.summary
    assert check.details["recovery_s"] == {"0": pytest.approx(2.0)}
    assert availability_check(metrics, {}).ok


def test_availability_check_fails_on_each_threshold() -> None:
    metrics = analyse(*outage_run())
    gap = availability_check(metrics, {"max_unavailable_s": 10.0})
    assert not gap.ok
    [offense] = gap.offending
    assert "12.050 s" in offense.why
    assert "limit 10 s" in offense.why
    assert offense.context[0]["complete_s"] == pytest.approx(29.97)
    share = availability_check(metrics, {"min_availability": 0.9})
    assert not share.ok
    assert "0.8000" in share.offending[0].why
    slow = availability_check(metrics, {"max_recovery_s": 1.0})
    assert not slow.ok
    assert "took 2.000 s" in slow.offending[0].why
    assert slow.offending[0].evidence["fault"] == 0
    never = availability_check(
        analyse(history(outage(30.0, 1000.0)), run_info([partition()])), {"max_recovery_s": 60}
    )
    assert not never.ok
    assert "never came back" in never.offending[0].why
    with pytest.raises(ValueError, match="max_recovery_s"):
        availability_check(metrics, {"max_recovery_s": "soon"})


def test_a_fault_healed_at_the_end_is_not_judged_on_recovery() -> None:
    ops = history(outage(30.0, 1000.0))
    metrics = analyse(ops, run_info([partition(healed_s=None)]))
    check = availability_check(metrics, {"max_recovery_s": 1.0})
    assert check.ok, check.summary
    assert "n/a" in check.summary
