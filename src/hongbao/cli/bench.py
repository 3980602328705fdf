"""``hongbao bench``: batched throughput and single-transfer latency of a cluster.

A thin shell over :mod:`hongbao.bench.run`: against the cluster of ``--config`` (started with
``hongbao cluster up``), or with ``--local`` on a fresh three-node cluster started here in
a temporary directory on free ports and stopped afterwards. The table (or ``--json``)
reports medians over ``--runs``.
"""

from __future__ import annotations

import asyncio
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

import click
from rich.console import Console
from rich.table import Table

from hongbao.bench.run import MIXES, BenchOptions, BenchReport, Percentiles, RunResult, run_bench
from hongbao.cli.common import (
    EXIT_UNAVAILABLE,
    config_option,
    json_option,
    load_config,
    print_json,
    stdout_console,
)
from hongbao.client.sdk import ClientOptions, HongbaoClient
from hongbao.config.topology import Topology, load_topology
from hongbao.node.errors import HongbaoError
from hongbao.ops.cluster import ClusterOpsError, move_leaders_home, wait_for_leaders
from hongbao.ops.local import ClusterError, LocalCluster, write_topology

BENCH_TIMEOUT_S = 10.0


@click.command("bench")
@config_option
@click.option("--duration-s", type=click.FloatRange(min=0.1, max=3600), default=10.0,
              show_default=True, help="Length of the throughput phase of each run.")
@click.option("--concurrency", type=click.IntRange(1, 4096), default=64, show_default=True,
              help="Concurrent Batch.Execute calls.")
@click.option("--batch", type=click.IntRange(1, 10_000), default=100, show_default=True,
              help="Operations per Batch.Execute call.")
@click.option("--mix", type=click.Choice(MIXES), default="mixed", show_default=True,
              help="What the batches contain.")
@click.option("--runs", type=click.IntRange(1, 100), default=3, show_default=True,
              help="Runs; figures are medians over them.")
@click.option("--latency-samples", type=click.IntRange(0, 100_000), default=200,
              show_default=True, help="Single transfers (and baseline reads) timed per run.")
@click.option("--users", type=click.IntRange(12, 1_000_000), default=1000, show_default=True,
              help="Bench users, funded before the first run.")
@click.option("--seed", type=int, default=None, help="Seed of the workload's choices.")
@click.option("--local", is_flag=True,
              help="Start a fresh cluster of the topology on free ports in a temp dir, "
                   "bench it, stop it.")
@click.option("--no-fsync", is_flag=True, help="With --local: nodes never fsync.")
@json_option
def bench(
    config_path: str,
    duration_s: float,
    concurrency: int,
    batch: int,
    mix: str,
    runs: int,
    latency_samples: int,
    users: int,
    seed: int | None,
    local: bool,
    no_fsync: bool,
    as_json: bool,
) -> None:
    """Operations committed per second (batched) and single-transfer latency percentiles."""
    load_config(config_path)  # a usage error before anything starts
    if no_fsync and not local:
        raise click.UsageError("--no-fsync applies to --local only")
    options = BenchOptions(
        duration_s=duration_s,
        concurrency=concurrency,
        batch=batch,
        mix=mix,
        runs=runs,
        users=users,
        latency_samples=latency_samples,
        latency_budget_s=max(5.0, duration_s),
        seed=seed,
    )
    err = Console(stderr=True, highlight=False, soft_wrap=True)

    def on_run(run: RunResult) -> None:
        transfer = run.transfer_ms
        p50 = transfer.p50 if transfer is not None else float("nan")
        err.print(f"run {run.run}: {run.ops_per_s:,.0f} ops/s; single transfer p50 "
                  f"{p50:.2f} ms; errors {sum(run.errors_by_reason.values())}, retried "
                  f"{run.retries}, abandoned {run.ops_abandoned}")  # fmt: skip

    try:
        if local:
            report = _bench_local(Path(config_path), options, no_fsync=no_fsync, on_run=on_run)
        else:
            topology = load_topology(config_path)
            report = asyncio.run(_bench(topology, options, f"cluster of {config_path}", on_run))
    except (ClusterOpsError, ClusterError, TimeoutError, HongbaoError) as error:
        err.print(f"error: {error}", markup=False)
        raise SystemExit(EXIT_UNAVAILABLE) from None
    if as_json:
        print_json(report.to_json())
    else:
        stdout_console().print(report_table(report))


async def _bench(
    topology: Topology,
    options: BenchOptions,
    target: str,
    on_run: Callable[[RunResult], None],
    *,
    leaders_home: bool = False,
) -> BenchReport:
    client_options = ClientOptions(timeout_s=BENCH_TIMEOUT_S)
    async with HongbaoClient(topology, client_options) as client:
        await wait_for_leaders(client, 30.0)
        if leaders_home:  # a fresh local cluster: lead active-active, as `cluster up` does
            await move_leaders_home(client, 30.0)
        return await run_bench(client, options, target=target, on_run=on_run)


def _bench_local(
    config_path: Path, options: BenchOptions, *, no_fsync: bool, on_run: Callable[[RunResult], None]
) -> BenchReport:
    temporary = Path(tempfile.mkdtemp(prefix="hongbao-bench-"))
    try:
        topology_path = write_topology(temporary / "topology.toml", template=config_path)
        with LocalCluster(topology_path, temporary / "data", no_fsync=no_fsync) as cluster:
            cluster.start()
            fsync = "no fsync" if no_fsync else "fsync"
            target = f"local: {len(cluster.node_ids)} node processes ({fsync}), {config_path}"
            report = asyncio.run(
                _bench(cluster.topology, options, target, on_run, leaders_home=True)
            )
            cluster.stop_all()
            return report
    finally:
        shutil.rmtree(temporary, ignore_errors=True)


def _latency_row(table: Table, name: str, p: Percentiles) -> None:
    if not p.count:
        table.add_row(name, "-", "-", "-", "-", "0")
        return
    table.add_row(name, f"{p.p50:.2f}", f"{p.p90:.2f}", f"{p.p99:.2f}", f"{p.max:.2f}",
                  str(p.count))  # fmt: skip


def report_table(report: BenchReport) -> Table:
    data = report.to_json()
    options = report.options
    table = Table(
        title=f"hongbao bench: {report.target}",
        caption=(
            f"mix {options.mix}, batch {options.batch}, concurrency {options.concurrency}, "
            f"{options.duration_s:g} s x {options.runs} runs; medians over runs"
        ),
    )
    for column in ("latency (ms)", "p50", "p90", "p99", "max", "samples"):
        table.add_column(column, justify="left" if column == "latency (ms)" else "right")
    _latency_row(table, "single transfer", report.median_latency(lambda r: r.transfer_ms))
    _latency_row(table, "  same shard", report.median_latency(lambda r: r.transfer_same_shard_ms))
    _latency_row(
        table, "  cross shard", report.median_latency(lambda r: r.transfer_cross_shard_ms)
    )
    _latency_row(table, "baseline: stale balance read", report.median_latency(
        lambda r: r.baseline_ms))  # fmt: skip
    table.add_section()
    ratio = data["transfer_p50_over_baseline_p50"]
    table.add_row("transfer p50 / baseline p50", "-" if ratio is None else f"{ratio}x")
    per_run = ", ".join(f"{r.ops_per_s:,.0f}" for r in report.runs)
    table.add_row(f"[bold]ops/s batched[/bold] (runs: {per_run})",
                  f"[bold]{report.median_ops_per_s():,.0f}[/bold]")  # fmt: skip
    errors = report.errors_by_reason
    table.add_row(
        "errors by reason",
        ", ".join(f"{k} {v}" for k, v in errors.items()) if errors else "none",
    )
    abandoned = sum(r.ops_abandoned for r in report.runs)
    retries = sum(r.retries for r in report.runs)
    table.add_row("ops abandoned at the tail (not counted)", f"{abandoned:,}")
    table.add_row("ops the client retried", f"{retries:,}")
    return table
