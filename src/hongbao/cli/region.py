"""``hongbao region drain|undrain|stop|start``: a city as the operator's unit.

A thin shell over :mod:`hongbao.ops.drain` and :mod:`hongbao.ops.regions`. ``drain``
records ``draining`` in the replicated cluster state (so every router stops sending new
work there and the region's nodes turn NOT_SERVING for client services), moves every
leadership out to caught-up replicas in active regions, printing each move, and records
``drained``; ``undrain`` makes the region active again at any time; ``stop`` ends the
region's node and router processes (``--kill``: kill -9, the outage drill); ``start``
brings them back, waits until they caught up, marks the region active, then moves
leaders home.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

import click

from hongbao.cli.cluster import data_dir_option, refuse
from hongbao.cli.common import (
    F,
    config_option,
    json_option,
    load_config,
    print_json,
    stdout_console,
)
from hongbao.ops.admin_pool import AdminPool
from hongbao.ops.cluster_state import MetaRefused, MetaUnavailable
from hongbao.ops.drain import DrainRefused, DrainReport, drain_region, undrain_region
from hongbao.ops.processes import ClusterOpsError
from hongbao.ops.regions import start_region, stop_region
from hongbao.ops.transfer import TransferEvent

EXIT_DEADLINE = 3
EXIT_REFUSED = 4
EXIT_UNAVAILABLE = 5

REGION_HELP_EPILOG = (
    "\b\nExit codes:\n"
    "  0  success (drain: no shard is led in the region any more)\n"
    "  2  usage: a bad option or argument\n"
    "  3  drain: the deadline passed with shards still led there (named; the region\n"
    "     stays draining, `cluster status` says so); start: it did not catch up in time\n"
    "  4  refused, nothing changed: unknown region; a drain that would leave a shard\n"
    "     without a quorum of replicas in active regions; a process already running\n"
    "  5  unavailable: the meta group has no leader, or a process did not start\n"
)


def _region_argument(function: F) -> F:
    return click.argument("name", metavar="NAME")(function)


@click.group(epilog=REGION_HELP_EPILOG)
def region() -> None:
    """Drain, undrain, stop and start a whole region (city)."""


@region.command("drain", epilog=REGION_HELP_EPILOG)
@_region_argument
@config_option
@click.option("--deadline-s", type=click.FloatRange(min=0.1, max=86_400), default=120.0,
              show_default=True,
              help="Give up after this long: exit 3, stuck shards named, still draining.")
@json_option
def drain(name: str, config_path: str, deadline_s: float, as_json: bool) -> None:
    """Move every leadership out of region NAME; it takes no new work meanwhile.

    \b
    1. records `draining` (with the deadline) in the cluster state and waits until every
       node and router follows it, so no new work goes there before a leader moves;
    2. moves each shard's (and the meta group's) leadership to a caught-up replica in an
       active region, each attempt bounded by an election timeout, then the next one;
    3. records `drained` once it leads nothing.
    """
    topology = load_config(config_path)
    out = stdout_console()

    def event(step: TransferEvent) -> None:
        if not as_json:
            out.print(step.describe())

    def phase(text: str) -> None:
        if not as_json:
            out.print(f"[bold]{text}[/bold]")

    async def main() -> DrainReport:
        async with AdminPool.for_topology(topology) as pool:
            return await drain_region(
                pool, name, deadline_s=deadline_s, on_event=event, on_phase=phase
            )

    report = _run(main)
    if as_json:
        print_json(report.to_json())
    elif report.done:
        moved = len(report.evacuation.moved)
        out.print(f"{name} {report.final_state}: {moved} leaderships moved in "
                  f"{report.elapsed_s:.2f} s")  # fmt: skip
    else:
        stuck = report.evacuation.stuck
        out.print(f"[red]deadline passed[/red] after {report.elapsed_s:.1f} s: {len(stuck)} "
                  f"shards still led in {name} (it stays draining; `hongbao region undrain "
                  f"{name}` reverts it):")  # fmt: skip
        for item in stuck:
            out.print(f"  {item.describe()}")
    if not report.done:
        raise SystemExit(EXIT_DEADLINE)


def _run(main: Callable[[], Coroutine[Any, Any, DrainReport]]) -> DrainReport:
    """Run a drain coroutine function; its refusals and failures become exit codes."""
    try:
        return asyncio.run(main())
    except DrainRefused as error:
        refuse(str(error), EXIT_REFUSED)
    except MetaRefused as error:
        refuse(f"the meta group refused: {error}", EXIT_REFUSED)
    except MetaUnavailable as error:
        refuse(str(error), EXIT_UNAVAILABLE)


@region.command("undrain", epilog=REGION_HELP_EPILOG)
@_region_argument
@config_option
@json_option
def undrain(name: str, config_path: str, as_json: bool) -> None:
    """Make region NAME active again, whether its drain finished or not.

    Leaders stay where they are; `hongbao cluster balance` brings them home.
    """
    topology = load_config(config_path)

    async def main() -> int:
        async with AdminPool.for_topology(topology) as pool:
            return (await undrain_region(pool, name)).version

    try:
        version = asyncio.run(main())
    except DrainRefused as error:
        refuse(str(error), EXIT_REFUSED)
    except MetaRefused as error:
        refuse(f"the meta group refused: {error}", EXIT_REFUSED)
    except MetaUnavailable as error:
        refuse(str(error), EXIT_UNAVAILABLE)
    if as_json:
        print_json({"region": name, "state": "active", "cluster_state_version": version})
        return
    stdout_console().print(f"{name} is active (cluster state version {version}); "
                           "bring its leaders home with `hongbao cluster balance`")  # fmt: skip


@region.command("stop", epilog=REGION_HELP_EPILOG)
@_region_argument
@config_option
@data_dir_option
@click.option("--kill", is_flag=True, help="kill -9 instead of SIGTERM (the outage drill).")
@json_option
def stop(name: str, config_path: str, data_dir: str, kill: bool, as_json: bool) -> None:
    """Stop region NAME's node and router processes (drain it first for maintenance)."""
    topology = load_config(config_path)
    try:
        result = stop_region(Path(data_dir), topology, name, kill=kill)
    except KeyError as error:
        refuse(str(error.args[0]), EXIT_REFUSED)
    nodes, routers = result.nodes, result.routers
    if as_json:
        print_json({"region": name, "kill": kill,
                    "nodes": {"stopped": nodes.stopped, "killed": nodes.killed,
                              "not_running": nodes.not_running},
                    "routers": {"stopped": routers.stopped, "killed": routers.killed,
                                "not_running": routers.not_running}})  # fmt: skip
        return
    out = stdout_console()
    verb = "killed (SIGKILL)" if kill else "stopped"
    out.print(f"{name}: nodes {nodes.stopped + nodes.killed} and routers "
              f"{routers.stopped + routers.killed} {verb}")  # fmt: skip
    if nodes.not_running or routers.not_running:
        out.print(f"not running: nodes {nodes.not_running}, routers {routers.not_running}")


@region.command("start", epilog=REGION_HELP_EPILOG)
@_region_argument
@config_option
@data_dir_option
@click.option("--no-fsync", is_flag=True, help="Never fsync (tests and benchmarks only).")
@click.option("--timeout-s", type=click.FloatRange(min=1, max=3600), default=120.0,
              show_default=True, help="How long its replicas may take to catch up.")
@json_option
def start(
    name: str, config_path: str, data_dir: str, no_fsync: bool, timeout_s: float, as_json: bool
) -> None:
    """Start region NAME again: catch up, mark it active, then move leaders home."""
    load_config(config_path)
    try:
        result = start_region(
            Path(config_path), Path(data_dir), name, no_fsync=no_fsync, timeout_s=timeout_s
        )
    except KeyError as error:
        refuse(str(error.args[0]), EXIT_REFUSED)
    except ClusterOpsError as error:
        text = str(error)
        refused = "already" in text or "in use" in text
        catch_up = "did not catch up" in text
        refuse(text, EXIT_REFUSED if refused else EXIT_DEADLINE if catch_up else EXIT_UNAVAILABLE)
    except MetaUnavailable as error:
        refuse(str(error), EXIT_UNAVAILABLE)
    if as_json:
        print_json({"region": name, "nodes": result.started_nodes,
                    "routers": result.started_routers, "catch_up_s": round(result.catch_up_s, 3),
                    "marked_active": result.marked_active, "moved_home": result.moved_home,
                    "balance_warning": result.balance_warning})  # fmt: skip
        return
    out = stdout_console()
    out.print(f"{name}: nodes {result.started_nodes} caught up in {result.catch_up_s:.2f} s "
              f"({len(result.catch_up_targets)} replicas); routers {result.started_routers} "
              "started")  # fmt: skip
    out.print(f"{name} is active; moved home: {result.moved_home or 'nothing'}")
    if result.balance_warning:
        out.print(f"[yellow]warning[/yellow]: {result.balance_warning}")
