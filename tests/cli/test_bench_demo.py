"""``hongbao bench --local`` (through the routers, to the nodes, both compared; the
hot-envelope mix) and ``hongbao demo`` run end to end, exit 0 and report real figures."""

from __future__ import annotations

import json
import re

import pytest

from hongbao.bench.hot_envelope import HotOptions, HotResult
from hongbao.bench.model import BenchOptions, BenchReport, RunResult
from tests.cli.conftest import hongbao

SMALL = ("--duration-s", "1.5", "--runs", "1", "--concurrency", "8", "--batch", "50",
         "--latency-samples", "30", "--users", "100", "--no-fsync")  # fmt: skip


def _bench(*args: str) -> dict[str, object]:
    result = hongbao("bench", "--local", *args, "--json", timeout_s=150)
    assert result.returncode == 0, result.stderr
    report: dict[str, object] = json.loads(result.stdout)
    return report


def _check_throughput(report: dict[str, object]) -> None:
    assert isinstance(report["ops_per_s"], float)
    assert report["ops_per_s"] > 0
    assert report["ops_failed"] == 0
    assert report["ops_abandoned"] == 0
    assert report["errors_by_reason"] == {}
    latency = report["latency_ms"]
    assert isinstance(latency, dict)
    for name in ("transfer", "baseline_balance_stale"):
        assert set(latency[name]) == {"p50", "p90", "p99", "max", "count"}
        assert 0 < latency[name]["p50"] <= latency[name]["p99"] <= latency[name]["max"]
        assert latency[name]["count"] > 0


@pytest.mark.cluster
def test_bench_local_goes_through_the_routers_by_default() -> None:
    report = _bench(*SMALL)
    assert "through the routers" in str(report["target"])
    _check_throughput(report)
    assert report["hot_envelope"] is None
    assert isinstance(report["runs"], list)
    assert len(report["runs"]) == 1


@pytest.mark.cluster
def test_bench_compares_routers_and_nodes_in_the_same_run() -> None:
    report = _bench(*SMALL, "--compare-targets")
    targets = report["targets"]
    assert isinstance(targets, dict)
    assert set(targets) == {"routers", "nodes"}
    for target in targets.values():
        _check_throughput(target)
    ratios = report["routers_over_nodes"]
    assert isinstance(ratios, dict)
    for name in ("ops_per_s", "transfer_p50_ms", "baseline_p50_ms"):
        assert isinstance(ratios[name], float)
        assert ratios[name] > 0
    assert ratios["grab_attempts_per_s"] is None


@pytest.mark.cluster
def test_bench_hot_envelope_reports_grabs_per_second_and_time_to_empty() -> None:
    report = _bench("--mix", "hot-envelope", "--grabbers", "150", "--duration-s", "1.5",
                    "--runs", "1", "--latency-samples", "10", "--no-fsync")  # fmt: skip
    hot = report["hot_envelope"]
    assert isinstance(hot, dict)
    assert hot["shares"] == 100
    assert hot["grabbers"] == 150
    assert hot["envelopes"] >= 1
    assert hot["grabs_taken"] == 100 * hot["envelopes"]  # every envelope emptied ...
    assert hot["grabs_empty"] == 50 * hot["envelopes"]  # ... and the rest told "empty"
    assert hot["grabs_failed"] == 0
    assert hot["grabs_abandoned"] == 0
    assert hot["sends_failed"] == 0
    assert hot["envelopes_not_emptied"] == 0
    assert hot["grab_attempts_per_s"] > 0
    empty = hot["time_to_empty_ms"]
    assert 0 < empty["p50"] <= empty["p99"] <= empty["max"]
    assert empty["count"] == hot["envelopes"]
    assert report["errors_by_reason"] == {}  # ENVELOPE_EMPTY is the workload, not an error


def test_bench_refuses_flags_that_do_not_fit() -> None:
    both = hongbao("bench", "--compare-targets", "--target", "nodes")
    assert both.returncode == 2
    assert "--compare-targets" in both.stderr
    few = hongbao("bench", "--mix", "hot-envelope", "--grabbers", "200", "--users", "50")
    assert few.returncode == 2
    assert "at least 201 users" in few.stderr


def test_hot_envelope_figures_are_medians_over_runs() -> None:
    options = BenchOptions(mix="hot-envelope", users=1001, hot=HotOptions())
    runs = []
    for index, (rate, empty_ms) in enumerate([(100.0, [10.0, 30.0]), (300.0, [20.0, 40.0]),
                                               (200.0, [50.0, 60.0])], 1):  # fmt: skip
        hot = HotResult(envelopes=2, grabs_taken=200, grabs_empty=1800,
                        grab_attempts_per_s=rate, empty_ms=empty_ms,
                        all_answered_ms=[m + 5 for m in empty_ms])  # fmt: skip
        runs.append(RunResult(run=index, hot=hot))
    summary = BenchReport(options=options, target="t", runs=runs).hot_json()
    assert summary is not None
    assert summary["grab_attempts_per_s"] == 200.0
    assert summary["time_to_empty_ms"] == {"p50": 20.0, "p99": 40.0, "max": 40.0, "count": 6}
    assert summary["envelopes"] == 6


@pytest.mark.cluster
@pytest.mark.slow
def test_demo_tells_the_story_and_the_audits_pass() -> None:
    result = hongbao("demo", timeout_s=90)
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    assert "talks only to the shenzhen router" in out
    assert "marked draining first" in out
    drained = re.search(r"leaders moved out, drained in ([\d.]+) s: (.*)", out)
    assert drained, out
    assert "shard" in drained.group(2)
    load = re.search(r"the steady load: (\d+) requests in [\d.]+ s, (\d+) failed requests", out)
    assert load, out
    assert int(load.group(1)) > 0
    assert int(load.group(2)) == 0
    assert "shanghai active again" in out
    assert "kill -9" in out
    assert "every shard has a leader again" in out
    assert "switched to the" in out  # its own city's router died with the city
    assert "catches up" in out
    assert "hongbao audit passed" in out
    assert "conservation audit passed" in out
    total = re.search(r"([\d.]+) s in all", out)
    assert total, out
    assert float(total.group(1)) < 60.0


def test_simulated_demo_is_still_reachable() -> None:
    result = hongbao("demo", "--simulated", timeout_s=60)
    assert result.returncode == 0, result.stderr
    assert "invariants held" in result.stdout
