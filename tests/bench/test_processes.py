"""``--processes N``: callers split over workers, their counts merged, and a real
``hongbao bench --local`` over two worker processes that reports the CPU of every kind."""

from __future__ import annotations

import re

import pytest

from hongbao.bench.model import BenchOptions
from hongbao.bench.throughput import ThroughputCounts, caller_seeds
from hongbao.bench.workers import split_callers
from tests.cli.conftest import hongbao

FIGURE = r"\s*│\s*([\d.,]+)"
CPU_ROW = re.compile(r"CPU (nodes|routers|client)" + FIGURE * 3)
TOTAL_ROW = re.compile(r"CPU all processes\s*│[\s│]*([\d,]+)")


def test_callers_are_split_evenly_and_keep_their_global_index() -> None:
    ranges = split_callers(64, 3)
    assert [len(r) for r in ranges] == [22, 21, 21]
    assert [i for r in ranges for i in r] == list(range(64))
    with pytest.raises(ValueError, match="processes"):
        split_callers(2, 3)


def test_a_callers_seed_does_not_depend_on_the_spread() -> None:
    options = BenchOptions(seed=7, concurrency=8)
    assert caller_seeds(options, 2) == caller_seeds(options, 2)
    assert caller_seeds(options, 2) != caller_seeds(options, 3)


def test_counts_merge_by_sum_over_the_span_of_all_parts() -> None:
    first = ThroughputCounts(ops_ok=10, ops_failed=1, issued=12, calls=2, retries=1,
                             started_s=5.0, last_done_s=7.0,
                             errors_by_reason={"OVERLOADED": 1})  # fmt: skip
    second = ThroughputCounts(ops_ok=20, issued=20, calls=3, started_s=4.5, last_done_s=6.0,
                              errors_by_reason={"OVERLOADED": 2, "UNAVAILABLE": 1})  # fmt: skip
    merged = ThroughputCounts.merged([first, second])
    assert (merged.ops_ok, merged.ops_failed, merged.issued, merged.calls) == (30, 1, 32, 5)
    assert (merged.started_s, merged.last_done_s) == (4.5, 7.0)
    assert merged.errors_by_reason == {"OVERLOADED": 3, "UNAVAILABLE": 1}


@pytest.mark.cluster
def test_bench_over_two_processes_reports_the_cpu_of_nodes_routers_and_client() -> None:
    result = hongbao(
        "bench", "--local", "--no-fsync", "--duration-s", "1", "--runs", "1",
        "--processes", "2", "--concurrency", "8", "--batch", "50", "--users", "100",
        "--latency-samples", "10", timeout_s=150,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "over 2 client processes" in result.stdout
    rows = {kind: figures for kind, *figures in CPU_ROW.findall(result.stdout)}
    assert set(rows) == {"nodes", "routers", "client"}, result.stdout
    for kind, figures in rows.items():
        seconds, cores, per_op_us = (float(f.replace(",", "")) for f in figures)
        assert seconds > 0, kind
        assert cores > 0, kind
        assert per_op_us > 0, kind
    total = TOTAL_ROW.search(result.stdout)
    assert total is not None, result.stdout
    assert float(total.group(1).replace(",", "")) > 0
    assert "µs/op" in result.stderr  # each run's line says its CPU per operation too


def test_bench_refuses_processes_that_do_not_fit() -> None:
    hot = hongbao("bench", "--mix", "hot-envelope", "--processes", "2")
    assert hot.returncode == 2
    assert "only 1 with the hot-envelope mix" in hot.stderr
    many = hongbao("bench", "--processes", "9", "--concurrency", "8")
    assert many.returncode == 2
    assert "cannot exceed concurrency" in many.stderr
