"""Routers against nodes on one cluster, in the same runs: the router's cost as a ratio.

Rules of this module: both targets share the cluster, the funded users and the runs;
within each run both are measured back to back, in an order that alternates from run to
run (so neither always meets the cluster right after the other's background work). The
cost is reported per run as routers / nodes and summarised as the median of those
per-run ratios, never as a ratio of medians taken at different times. Request ids carry
the target's name, so one target's requests are never answered from the other's.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from hongbao.bench.cpu import Processes
from hongbao.bench.model import BenchOptions, BenchReport, Percentiles, RunResult
from hongbao.bench.run import bench_run, prepare_users
from hongbao.bench.target import TARGETS, BenchClient
from hongbao.bench.throughput import Spread
from hongbao.client.sdk import HongbaoClient

OnRun = Callable[[str, RunResult], None]


@dataclass(slots=True)
class CompareReport:
    options: BenchOptions
    reports: dict[str, BenchReport]  # by target

    def ratios(self) -> dict[str, float | None]:
        """routers / nodes, per figure: the median over runs of each run's ratio."""
        routers, nodes = self.reports["routers"].runs, self.reports["nodes"].runs
        picks: dict[str, Callable[[RunResult], float | None]] = {
            "ops_per_s": lambda r: r.ops_per_s if r.hot is None else None,
            "transfer_p50_ms": lambda r: _p50(r.transfer_ms),
            "baseline_p50_ms": lambda r: _p50(r.baseline_ms),
            "grab_attempts_per_s": lambda r: None if r.hot is None else r.hot.grab_attempts_per_s,
            "time_to_empty_p50_ms": lambda r: (
                None if r.hot is None else _p50(Percentiles.of(r.hot.empty_ms))
            ),
        }
        ratios: dict[str, float | None] = {}
        for name, pick in picks.items():
            per_run = []
            for via_router, direct in zip(routers, nodes, strict=True):
                top, bottom = pick(via_router), pick(direct)
                if top is not None and bottom:
                    per_run.append(top / bottom)
            ratios[name] = round(statistics.median(per_run), 3) if per_run else None
        return ratios

    def to_json(self) -> dict[str, object]:
        return {
            "targets": {name: report.to_json() for name, report in self.reports.items()},
            "routers_over_nodes": self.ratios(),
        }


def _p50(percentiles: Percentiles | None) -> float | None:
    if percentiles is None or not percentiles.count:
        return None
    return percentiles.p50


async def run_compare(
    clients: Mapping[str, BenchClient],
    admin: HongbaoClient,
    options: BenchOptions,
    *,
    target_names: Mapping[str, str],
    on_run: OnRun | None = None,
    processes: Processes | None = None,
    spreads: Mapping[str, Spread] | None = None,
) -> CompareReport:
    """``options.runs`` runs, each measuring every target of ``clients`` (routers, nodes);
    ``processes`` and ``spreads`` (by target) as for :func:`~hongbao.bench.run.bench_run`."""
    if set(clients) != set(TARGETS):
        raise ValueError(f"comparing needs a client for each of {', '.join(TARGETS)}")
    tag, users = await prepare_users(admin, options)
    reports = {
        name: BenchReport(options=options, target=target_names[name], runs=[]) for name in clients
    }
    order = list(TARGETS)
    for index in range(1, options.runs + 1):
        for name in order if index % 2 else reversed(order):
            run = await bench_run(
                clients[name], admin, users, options, index, f"{tag}-{name}",
                processes=processes, spread=(spreads or {}).get(name),
            )  # fmt: skip
            reports[name].runs.append(run)
            if on_run is not None:
                on_run(name, run)
    return CompareReport(options=options, reports=reports)
