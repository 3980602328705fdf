"""``hongbao bench --local`` and ``hongbao demo`` run end to end and exit 0."""

from __future__ import annotations

import json

import pytest

from tests.cli.conftest import hongbao

pytestmark = pytest.mark.cluster


def test_bench_local_reports_throughput_and_latency() -> None:
    result = hongbao("bench", "--local", "--no-fsync", "--duration-s", "2", "--runs", "1",
                     "--concurrency", "8", "--batch", "50", "--latency-samples", "40",
                     "--users", "100", "--json")  # fmt: skip
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["ops_per_s"] > 0
    assert report["ops_ok"] > 0
    assert report["errors_by_reason"] == {}
    latency = report["latency_ms"]
    for name in ("transfer", "baseline_balance_stale"):
        assert set(latency[name]) == {"p50", "p90", "p99", "max", "count"}
        assert 0 < latency[name]["p50"] <= latency[name]["p99"] <= latency[name]["max"]
        assert latency[name]["count"] > 0
    assert report["transfer_p50_over_baseline_p50"] > 0
    assert len(report["runs"]) == 1


@pytest.mark.slow
def test_demo_tells_the_story_and_the_audit_passes() -> None:
    result = hongbao("demo", timeout_s=90)
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    assert "kill -9" in out
    assert "every shard has a leader again" in out
    assert "catches up" in out
    assert "conservation audit passed" in out


def test_simulated_demo_is_still_reachable() -> None:
    result = hongbao("demo", "--simulated", timeout_s=60)
    assert result.returncode == 0, result.stderr
    assert "invariants held" in result.stdout
