"""``hongbao bench``: batched throughput and single-transfer latency of a cluster.

A thin shell over :mod:`hongbao.bench.run`: against the cluster of ``--config`` (started with
``hongbao cluster up``), or with ``--local`` on a fresh cluster (nodes, and routers when
they are measured) started here in a temporary directory on free ports and stopped
afterwards. The workload goes through the routers when the topology has them
(``--target``), or to both in the same runs (``--compare-targets``: the router's cost as
a ratio). The table (or ``--json``) reports medians over ``--runs``, with what the
throughput phase cost in CPU: per process kind (nodes, routers, the bench client) and per
operation. ``--local`` knows its cluster's processes; otherwise they are found by the pid
files of ``hongbao cluster up`` in ``--data-dir``, and the cluster's CPU is unknown when
they are not there. ``--processes N`` spreads the bench's callers over N worker processes,
so the client is not what limits the figure.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import click
from rich.console import Console
from rich.table import Table

from hongbao.bench.compare import CompareReport, run_compare
from hongbao.bench.cpu import Processes
from hongbao.bench.hot_envelope import HOT_GRABBERS, HOT_IN_FLIGHT, HotOptions
from hongbao.bench.run import MIXES, BenchOptions, BenchReport, Percentiles, RunResult, run_bench
from hongbao.bench.target import TARGETS, BenchClient, default_target, open_client
from hongbao.bench.throughput import Spread
from hongbao.bench.workers import PROCESSES_MAX, WorkerError, WorkerPool
from hongbao.cli.common import (
    EXIT_UNAVAILABLE,
    config_option,
    json_option,
    load_config,
    print_json,
    stdout_console,
)
from hongbao.client.sdk import ClientOptions, HongbaoClient
from hongbao.config.topology import Topology
from hongbao.node.errors import HongbaoError
from hongbao.ops.cluster import ClusterOpsError, move_leaders_home, wait_for_leaders
from hongbao.ops.local import ClusterError, LocalCluster, write_topology
from hongbao.ops.processes import Kind, running_process

BENCH_TIMEOUT_S = 10.0
LEADERS_TIMEOUT_S = 30.0
DEFAULT_CONCURRENCY = 64


@click.command("bench")
@config_option
@click.option("--duration-s", type=click.FloatRange(min=0.1, max=3600), default=10.0,
              show_default=True, help="Length of the throughput phase of each run.")
@click.option("--concurrency", type=click.IntRange(1, 4096), default=None,
              help=f"Concurrent Batch.Execute calls (default {DEFAULT_CONCURRENCY}); with "
                   f"--mix hot-envelope, envelopes grabbed at once (default {HOT_IN_FLIGHT}).")
@click.option("--batch", type=click.IntRange(1, 10_000), default=100, show_default=True,
              help="Operations per Batch.Execute call.")
@click.option("--mix", type=click.Choice(MIXES), default="mixed", show_default=True,
              help="What the batches contain; hot-envelope: group envelopes of 100 shares, "
                   "each grabbed at once by --grabbers distinct users (single Grab calls).")
@click.option("--grabbers", type=click.IntRange(100, 100_000), default=HOT_GRABBERS,
              show_default=True, help="With --mix hot-envelope: users grabbing each envelope.")
@click.option("--target", type=click.Choice(TARGETS), default=None,
              help="Send the workload through the routers or straight to the nodes "
                   "(default: routers when the topology has [[routers]]).")
@click.option("--compare-targets", is_flag=True,
              help="Measure routers and nodes in the same runs; report routers/nodes.")
@click.option("--runs", type=click.IntRange(1, 100), default=3, show_default=True,
              help="Runs; figures are medians over them.")
@click.option("--latency-samples", type=click.IntRange(0, 100_000), default=200,
              show_default=True, help="Single transfers (and baseline reads) timed per run.")
@click.option("--users", type=click.IntRange(12, 1_000_000), default=None,
              help="Bench users, funded before the first run (default 1000; with "
                   "hot-envelope, grabbers + 1).")
@click.option("--seed", type=int, default=None, help="Seed of the workload's choices.")
@click.option("--local", is_flag=True,
              help="Start a fresh cluster of the topology (nodes, and routers when they are "
                   "measured) on free ports in a temp dir, bench it, stop it.")
@click.option("--no-fsync", is_flag=True, help="With --local: nodes never fsync.")
@click.option("--processes", type=click.IntRange(1, PROCESSES_MAX), default=1,
              show_default=True, help="Worker processes the throughput phase's callers are "
                   "spread over (each its own event loop and channels); 1: this process.")
@click.option("--data-dir", default="./data", show_default=True,
              type=click.Path(file_okay=False),
              help="Without --local: where `hongbao cluster up` wrote its pid files, to "
                   "account the nodes' and routers' CPU.")
@json_option
def bench(
    config_path: str,
    duration_s: float,
    concurrency: int | None,
    batch: int,
    mix: str,
    grabbers: int,
    target: str | None,
    compare_targets: bool,
    runs: int,
    latency_samples: int,
    users: int | None,
    seed: int | None,
    local: bool,
    no_fsync: bool,
    processes: int,
    data_dir: str,
    as_json: bool,
) -> None:
    """Operations committed per second (batched) and single-transfer latency percentiles
    (hot-envelope: grab attempts per second and the time to empty an envelope), through
    the routers or straight to the nodes, or both in the same runs (routers / nodes)."""
    topology = load_config(config_path)  # a usage error before anything starts
    if no_fsync and not local:
        raise click.UsageError("--no-fsync applies to --local only")
    if compare_targets and target is not None:
        raise click.UsageError("--compare-targets measures both targets: drop --target")
    targets = list(TARGETS) if compare_targets else [target or default_target(topology)]
    if "routers" in targets and not topology.routers:
        raise click.UsageError(f"{config_path} names no [[routers]]: use --target nodes")
    options = _options(duration_s, concurrency, batch, mix, grabbers, runs, latency_samples,
                       users, seed, processes)  # fmt: skip
    err = Console(stderr=True, highlight=False, soft_wrap=True)

    def on_run(name: str, run: RunResult) -> None:
        transfer = run.transfer_ms
        p50 = transfer.p50 if transfer is not None else float("nan")
        figure = (
            f"{run.hot.grab_attempts_per_s:,.0f} grab attempts/s, {run.hot.envelopes} envelopes"
            if run.hot is not None else f"{run.ops_per_s:,.0f} ops/s"
        )  # fmt: skip
        err.print(f"run {run.run} ({name}): {figure}; single transfer p50 {p50:.2f} ms; "
                  f"{_cpu_brief(run)}; errors {sum(run.errors_by_reason.values())}, "
                  f"retried {run.retries}, abandoned {run.ops_abandoned}")  # fmt: skip

    try:
        if local:
            result = _bench_local(Path(config_path), options, targets, no_fsync, on_run)
        else:
            where = f"cluster of {config_path}"
            found = _found_processes(topology, Path(data_dir))
            result = _bench_with_workers(topology, options, targets, where, on_run, found)
    except (ClusterOpsError, ClusterError, TimeoutError, HongbaoError, WorkerError) as error:
        err.print(f"error: {error}", markup=False)
        raise SystemExit(EXIT_UNAVAILABLE) from None
    if as_json:
        print_json(result.to_json())
    elif isinstance(result, CompareReport):
        out = stdout_console()
        for report in result.reports.values():
            out.print(report_table(report))
            out.print(cpu_table(report))
        out.print(compare_table(result))
    else:
        out = stdout_console()
        out.print(report_table(result))
        out.print(cpu_table(result))


def _options(
    duration_s: float,
    concurrency: int | None,
    batch: int,
    mix: str,
    grabbers: int,
    runs: int,
    latency_samples: int,
    users: int | None,
    seed: int | None,
    processes: int,
) -> BenchOptions:
    """The bench's options from the flags; a usage error when they do not fit together."""
    hot = mix == "hot-envelope"
    try:
        return BenchOptions(
            duration_s=duration_s,
            concurrency=DEFAULT_CONCURRENCY if hot or concurrency is None else concurrency,
            batch=batch,
            mix=mix,
            runs=runs,
            users=users if users is not None else (grabbers + 1 if hot else 1000),
            latency_samples=latency_samples,
            latency_budget_s=max(5.0, duration_s),
            seed=seed,
            hot=HotOptions(grabbers=grabbers, in_flight=concurrency or HOT_IN_FLIGHT),
            processes=processes,
        )
    except ValueError as error:
        raise click.UsageError(str(error)) from None


async def _bench(
    topology: Topology,
    options: BenchOptions,
    targets: list[str],
    where: str,
    on_run: Callable[[str, RunResult], None],
    *,
    processes: Processes,
    pool: WorkerPool | None,
    leaders_home: bool = False,
) -> BenchReport | CompareReport:
    """Bench ``targets`` (one, or routers and nodes compared) with node-direct admin;
    ``processes``: whose CPU is accounted; ``pool``: the workers of the throughput phase."""
    client_options = ClientOptions(timeout_s=BENCH_TIMEOUT_S)
    clients: dict[str, BenchClient] = {}
    async with HongbaoClient(topology, client_options) as admin:
        try:
            await wait_for_leaders(admin, LEADERS_TIMEOUT_S)
            if leaders_home:  # a fresh local cluster: lead active-active, as `cluster up` does
                await move_leaders_home(admin, LEADERS_TIMEOUT_S)
            for name in targets:
                clients[name] = admin if name == "nodes" else open_client(
                    topology, name, client_options
                )  # fmt: skip
            names = {name: f"{where}, through the {name}" for name in targets}
            spreads: dict[str, Spread] = (
                {} if pool is None else {name: pool.spread(name) for name in targets}
            )
            if len(targets) > 1:
                return await run_compare(clients, admin, options, target_names=names,
                                         on_run=on_run, processes=processes,
                                         spreads=spreads)  # fmt: skip
            (name,) = targets
            return await run_bench(clients[name], options, target=names[name], admin=admin,
                                   on_run=lambda run: on_run(name, run), processes=processes,
                                   spread=spreads.get(name))  # fmt: skip
        finally:
            for client in clients.values():
                if client is not admin:
                    await client.close()


def _bench_local(
    config_path: Path,
    options: BenchOptions,
    targets: list[str],
    no_fsync: bool,
    on_run: Callable[[str, RunResult], None],
) -> BenchReport | CompareReport:
    temporary = Path(tempfile.mkdtemp(prefix="hongbao-bench-"))
    try:
        topology_path = write_topology(temporary / "topology.toml", template=config_path)
        data_dir = temporary / "data"
        with LocalCluster(topology_path, data_dir, no_fsync=no_fsync) as cluster:
            cluster.start()
            routers = ""
            if "routers" in targets:
                cluster.start_routers()
                routers = f" and {len(cluster.router_ids)} routers"
            fsync = "no fsync" if no_fsync else "fsync"
            where = (f"local: {len(cluster.node_ids)} node processes ({fsync}){routers}, "
                     f"{config_path}")  # fmt: skip
            report = _bench_with_workers(cluster.topology, options, targets, where, on_run,
                                         _local_processes(cluster), leaders_home=True)
            cluster.stop_all()  # routers first, then nodes
            return report
    finally:
        shutil.rmtree(temporary, ignore_errors=True)


def _bench_with_workers(
    topology: Topology,
    options: BenchOptions,
    targets: list[str],
    where: str,
    on_run: Callable[[str, RunResult], None],
    cluster: Processes,
    *,
    leaders_home: bool = False,
) -> BenchReport | CompareReport:
    """:func:`_bench`, with ``options.processes`` workers (when more than one) started
    first and ended after; the client's CPU is this process's and the workers'."""
    with _workers(topology, targets, options) as pool:
        client_pids = [os.getpid(), *(pool.pids if pool is not None else [])]
        processes = cluster.with_client(client_pids)
        return asyncio.run(_bench(topology, options, targets, where, on_run,
                                  processes=processes, pool=pool,
                                  leaders_home=leaders_home))  # fmt: skip


@contextlib.contextmanager
def _workers(
    topology: Topology, targets: list[str], options: BenchOptions
) -> Iterator[WorkerPool | None]:
    if options.processes == 1:
        yield None
        return
    client_options = ClientOptions(timeout_s=BENCH_TIMEOUT_S)
    with WorkerPool(topology, client_options, targets, options.processes) as pool:
        yield pool


def _local_processes(cluster: LocalCluster) -> Processes:
    """The pids of the cluster this bench started: it knows them all."""
    pids: dict[str, list[int]] = {"nodes": [p.pid for p in cluster.processes.values()]}
    if cluster.routers:
        pids["routers"] = [p.pid for p in cluster.routers.values()]
    return Processes(pids=pids)


def _found_processes(topology: Topology, data_dir: Path) -> Processes:
    """The topology's nodes and routers by the pid files of `hongbao cluster up` in
    ``data_dir``; a kind of which any process is not found there is unknown."""
    pids: dict[str, list[int]] = {}
    unknown: dict[str, str] = {}
    wanted: list[tuple[str, Kind, list[int]]] = [
        ("nodes", "node", [int(n.node_id) for n in topology.nodes]),
        ("routers", "router", [r.router_id for r in topology.routers]),
    ]
    for kind, pid_kind, ids in wanted:
        if not ids:
            continue
        found: list[int] = []
        for ident in ids:
            try:
                process = running_process(data_dir, ident, pid_kind)
            except ClusterOpsError:
                process = None
            if process is not None:
                found.append(process.pid)
        if len(found) == len(ids):
            pids[kind] = found
        else:
            unknown[kind] = (f"{len(found)} of {len(ids)} {kind} found running by the pid "
                             f"files in {data_dir.resolve()}")  # fmt: skip
    return Processes(pids=pids, unknown=unknown)


def _cpu_brief(run: RunResult) -> str:
    if run.cpu is None:
        return "CPU not measured"
    total = run.cpu.us_per_op()["total"]
    return "CPU per op unknown" if total is None else f"CPU {total:,.0f} µs/op"


def cpu_table(report: BenchReport) -> Table:
    """What the throughput phase cost: CPU by process kind and per operation (medians)."""
    data = report.cpu_json()
    table = Table(title="CPU over the throughput phase (medians over runs)")
    for column in ("processes", "CPU s", "cores", "CPU µs / op"):
        table.add_column(column, justify="left" if column == "processes" else "right")
    if data is None:
        table.add_row("not measured", "-", "-", "-")
        return table
    seconds, cores, per_op = data["cpu_s"], data["cores"], data["us_per_op"]
    unknown = data["unknown"]
    assert isinstance(seconds, dict)
    assert isinstance(cores, dict)
    assert isinstance(per_op, dict)
    assert isinstance(unknown, dict)
    for kind in seconds:
        table.add_row(f"CPU {kind}", _figure(seconds[kind], ".2f"), _figure(cores[kind], ".2f"),
                      _figure(per_op[kind], ",.0f"))  # fmt: skip
    table.add_section()
    table.add_row("[bold]CPU all processes[/bold]", "", "",
                  f"[bold]{_figure(per_op['total'], ',.0f')}[/bold]")  # fmt: skip
    for kind, why in unknown.items():
        table.add_row(f"{kind}: CPU unknown ({why})", "", "", "")
    return table


def _figure(value: object, spec: str) -> str:
    return "unknown" if not isinstance(value, int | float) else format(value, spec)


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
            f"mix {options.mix}, {_shape(options)}, "
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
    hot = report.hot_json()
    if hot is None:
        per_run = ", ".join(f"{r.ops_per_s:,.0f}" for r in report.runs)
        table.add_row(f"[bold]ops/s batched[/bold] (runs: {per_run})",
                      f"[bold]{report.median_ops_per_s():,.0f}[/bold]")  # fmt: skip
    else:
        _hot_rows(table, report, hot)
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


def _shape(options: BenchOptions) -> str:
    if options.mix == "hot-envelope":
        hot = options.hot
        return (f"{hot.shares} shares x {hot.grabbers} grabbers per envelope, "
                f"{hot.in_flight} envelopes at once")  # fmt: skip
    spread = f", over {options.processes} client processes" if options.processes > 1 else ""
    return f"batch {options.batch}, concurrency {options.concurrency}{spread}"


def _hot_rows(table: Table, report: BenchReport, hot: dict[str, Any]) -> None:
    per_run = ", ".join(f"{r.hot.grab_attempts_per_s:,.0f}" for r in report.runs if r.hot)
    table.add_row(f"[bold]grab attempts/s[/bold] (runs: {per_run})",
                  f"[bold]{hot['grab_attempts_per_s']:,.0f}[/bold]")  # fmt: skip
    empty, answered = hot["time_to_empty_ms"], hot["time_to_answer_all_ms"]
    table.add_row("time to empty an envelope (ms)", f"{empty['p50']:.1f}", "",
                  f"{empty['p99']:.1f}", f"{empty['max']:.1f}", str(empty["count"]))  # fmt: skip
    table.add_row("  until every grab is answered", f"{answered['p50']:.1f}", "",
                  f"{answered['p99']:.1f}", f"{answered['max']:.1f}",
                  str(answered["count"]))  # fmt: skip
    table.add_row("grabs: taken / empty / failed / abandoned",
                  f"{hot['grabs_taken']:,} / {hot['grabs_empty']:,} / {hot['grabs_failed']:,} / "
                  f"{hot['grabs_abandoned']:,}")  # fmt: skip
    table.add_row("envelopes not emptied / abandoned",
                  f"{hot['envelopes_not_emptied']} / {hot['envelopes_abandoned']}")


def compare_table(result: CompareReport) -> Table:
    """The router's cost: routers / nodes per figure, the median of per-run ratios."""
    table = Table(title="routers / nodes (same runs; median of per-run ratios)")
    table.add_column("figure")
    table.add_column("routers / nodes", justify="right")
    for name, ratio in result.ratios().items():
        if ratio is not None:
            table.add_row(name, f"{ratio:.3f}")
    return table
