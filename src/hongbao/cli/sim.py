"""``hongbao sim``: run the deterministic simulator over many seeds, or replay one.

A thin shell: it parses options into :class:`~hongbao.sim.options.RunOptions`, runs the
batch (``hongbao.sim.batch``) and renders. The progress bar goes to stderr; the summary
table, the failing seeds with their replay commands and (with ``--json``) one JSON object
as the last line go to stdout. The exit code is 1 when any seed broke an invariant.
"""

from __future__ import annotations

import json
import time

import click
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from hongbao.sim.batch import BatchResult, run_batch
from hongbao.sim.config import BUG_NAMES
from hongbao.sim.options import RunOptions
from hongbao.sim.profiles import PROFILES
from hongbao.sim.runner import SeedResult, TraceOptions, run_seed

JSON_COUNTERS = (
    "elections",
    "commits",
    "reads",
    "transfers",
    "membership_changes",
    "snapshots",
    "crashes",
    "restarts",
    "link_partitions",
    "one_way_partitions",
    "region_partitions",
    "messages_lost",
    "messages_duplicated",
    "messages_reordered",
    "messages_replayed",
    "mid_ready_crashes",
    "messages_refused",
    "quiescences",
    "quiesce_wakes",
    "two_voter_configs",
    "leader_self_removals",
    "drains",
    "drain_transfers",
    "fallback_elections",
    "takeback_checks",
)
FAILURES_SHOWN_MAX = 10


@click.command("sim")
@click.option("--seeds", type=click.IntRange(min=1), default=None, help="Run this many seeds.")
@click.option("--start", type=click.IntRange(min=0), default=0, show_default=True,
              help="First seed of the batch.")
@click.option("--seed", type=click.IntRange(min=0), default=None,
              help="Run (replay) this one seed.")
@click.option("--nodes", type=click.IntRange(1, 64), default=None, help="Nodes (default 5).")
@click.option("--regions", type=click.IntRange(1, 16), default=None,
              help="Regions (default 3).")
@click.option("--ticks", type=click.IntRange(min=0), default=None,
              help="Ticks of the safety phase, with faults (default 300).")
@click.option("--trace", "show_trace", is_flag=True,
              help="With --seed: print the event trace, one event per line.")
@click.option("--json", "as_json", is_flag=True, help="End with one JSON object on stdout.")
@click.option("--jobs", type=click.IntRange(min=0), default=1, show_default=True,
              help="Worker processes (0: one per CPU). Results do not depend on it.")
@click.option("--profile", type=click.Choice(sorted(PROFILES)), default="default",
              hidden=True, help="A named fault profile (see hongbao.sim.profiles).")
@click.option("--bug", "bugs", type=click.Choice(BUG_NAMES), multiple=True, hidden=True,
              help="Switch on a deliberate bug (repeatable), to watch the simulator catch it.")
def sim(
    seeds: int | None,
    start: int,
    seed: int | None,
    nodes: int | None,
    regions: int | None,
    ticks: int | None,
    show_trace: bool,
    as_json: bool,
    jobs: int,
    profile: str,
    bugs: tuple[str, ...],
) -> None:
    """Run the deterministic Raft simulator under faults and check its invariants."""
    options = RunOptions(nodes, regions, ticks, profile, tuple(bugs))
    try:
        options.to_config()  # validates the options before anything runs
    except (ValueError, AssertionError) as invalid:
        raise click.UsageError(str(invalid)) from invalid
    if seed is not None:
        if seeds is not None:
            raise click.UsageError("use either --seed (one run) or --seeds (a batch)")
        _replay(seed, options, show_trace=show_trace, as_json=as_json)
        return
    if show_trace:
        raise click.UsageError("--trace needs --seed")
    _batch(range(start, start + (seeds or 100)), options, jobs=jobs, as_json=as_json)


def _replay(seed: int, options: RunOptions, *, show_trace: bool, as_json: bool) -> None:
    result = run_seed(seed, options.to_config(), TraceOptions(show_trace, messages=show_trace))
    out = Console(highlight=False, soft_wrap=True)
    if show_trace:
        for line in result.trace_lines:
            click.echo(line)
        if result.error_traceback:
            click.echo(result.error_traceback.rstrip())
    batch = BatchResult()
    batch.add(result)
    if not as_json:
        out.print(_summary_table(batch, seconds=None))
    _report(batch, options, out)
    if as_json:
        click.echo(json.dumps(_summary_json(batch, options, seconds=None), sort_keys=True))
    if not result.ok:
        raise SystemExit(1)


def _batch(seeds: range, options: RunOptions, *, jobs: int, as_json: bool) -> None:
    out = Console(highlight=False, soft_wrap=True)
    err = Console(stderr=True)
    progress = Progress(
        TextColumn("[bold]sim"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("violations: {task.fields[violations]}"),
        TimeRemainingColumn(),
        console=err,
        transient=True,
    )
    started = time.perf_counter()
    with progress:
        task = progress.add_task("seeds", total=len(seeds), violations=0)
        violations = 0

        def on_result(result: SeedResult) -> None:
            nonlocal violations
            violations += int(not result.ok)
            progress.update(task, advance=1, violations=violations)

        batch = run_batch(seeds, options.to_config(), jobs=jobs, on_result=on_result)
    seconds = time.perf_counter() - started
    if not as_json:
        out.print(_summary_table(batch, seconds=seconds))
    _report(batch, options, out)
    if as_json:
        click.echo(json.dumps(_summary_json(batch, options, seconds=seconds), sort_keys=True))
    if batch.stats.violations:
        raise SystemExit(1)


def _report(batch: BatchResult, options: RunOptions, out: Console) -> None:
    """Each failing seed, what broke, and the one command that replays it."""
    for result in batch.failures[:FAILURES_SHOWN_MAX]:
        out.print(f"[red]FAIL[/red] seed {result.seed} at tick {result.violation_tick}: "
                  f"{result.violation_kind}: {result.violation_detail}", markup=True)
        out.print(f"  replay: {options.replay_command(result.seed)}", markup=False)
    hidden = batch.stats.violations - min(len(batch.failures), FAILURES_SHOWN_MAX)
    if hidden > 0:
        out.print(f"... and {hidden} more failing seeds", markup=False)


def _summary_table(batch: BatchResult, *, seconds: float | None) -> Table:
    stats = batch.stats
    table = Table(title="hongbao sim", show_header=True)
    table.add_column("what")
    table.add_column("count", justify="right")
    table.add_row("seeds", str(stats.seeds))
    style = "red" if stats.violations else "green"
    table.add_row("violations", f"[{style}]{stats.violations}[/{style}]")
    for name in JSON_COUNTERS:
        table.add_row(name.replace("_", " "), str(stats.totals[name]))
    table.add_row("max ticks to recover", str(stats.max_ticks_to_recover))
    if seconds is not None:
        table.add_row("seeds per second", f"{stats.seeds / max(seconds, 1e-9):.1f}")
    return table


def _summary_json(
    batch: BatchResult, options: RunOptions, *, seconds: float | None
) -> dict[str, object]:
    stats = batch.stats
    summary: dict[str, object] = {
        "seeds": stats.seeds,
        "violations": stats.violations,
        "max_ticks_to_recover": stats.max_ticks_to_recover,
        "seeds_per_second": round(stats.seeds / max(seconds, 1e-9), 2) if seconds else None,
        "failing_seeds": [r.seed for r in batch.failures],
        "replay_commands": [options.replay_command(r.seed) for r in batch.failures],
    }
    summary.update({name: stats.totals[name] for name in JSON_COUNTERS})
    return summary
