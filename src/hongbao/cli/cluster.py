"""``hongbao cluster up|status|balance|down`` and ``hongbao node start|stop|kill``.

A thin shell over :mod:`hongbao.ops.cluster`: ``up`` starts every node of the topology
as a detached process (pid files and logs in the data directory), waits until every
shard has a leader and moves leaders to their home regions; ``status`` asks every node
for its Admin.Status; ``balance`` moves leaders home again (after a node came back);
``down`` stops them with SIGTERM, then SIGKILL after a deadline.
"""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path
from typing import NoReturn

import click
from rich.console import Console
from rich.table import Table

from hongbao.cli.common import (
    EXIT_REFUSED,
    EXIT_UNAVAILABLE,
    F,
    config_option,
    json_option,
    load_config,
    print_json,
    stdout_console,
)
from hongbao.client.sdk import ClientOptions, HongbaoClient
from hongbao.config.topology import Topology
from hongbao.ops.cluster import (
    STATUS_TIMEOUT_S,
    STOP_TIMEOUT_S,
    ClusterOpsError,
    ClusterStatus,
    check_can_start,
    cluster_status,
    cluster_up,
    log_path,
    move_leaders_home,
    pid_path,
    spawn_node,
    stop_nodes,
    wait_for_leaders,
    wait_ready,
)
from hongbao.proto.gen.hongbao.v1 import admin_pb2

CLUSTER_HELP_EPILOG = (
    "\b\nExit codes:\n"
    "  0  success\n"
    "  2  usage\n"
    "  3  refused: a node already runs, or a port is taken\n"
    "  4  unavailable: a node did not start, or a shard has no leader\n"
)


def data_dir_option(function: F) -> F:
    return click.option(
        "--data-dir", default="./data", show_default=True, type=click.Path(file_okay=False),
        help="Where the nodes keep their LMDB environments, pid files and logs.",
    )(function)  # fmt: skip


def _refuse(message: str, code: int) -> NoReturn:
    Console(stderr=True, highlight=False, soft_wrap=True).print(f"error: {message}", markup=False)
    raise SystemExit(code)


@click.group(epilog=CLUSTER_HELP_EPILOG)
def cluster() -> None:
    """Start, inspect and stop every node of a topology on this machine."""


@cluster.command("up")
@config_option
@data_dir_option
@click.option("--no-fsync", is_flag=True,
              help="Never fsync (tests and benchmarks only: an OS crash may lose data).")
@json_option
def up(config_path: str, data_dir: str, no_fsync: bool, as_json: bool) -> None:
    """Start every node in the background and wait until every shard has a leader."""
    topology = load_config(config_path)
    try:
        result = cluster_up(Path(config_path), Path(data_dir), no_fsync=no_fsync)
    except ClusterOpsError as error:
        already = "already" in str(error) or "in use" in str(error) or "only 127" in str(error)
        _refuse(str(error), EXIT_REFUSED if already else EXIT_UNAVAILABLE)
    status = _gather(topology)
    if as_json:
        print_json({
            "started": [{"node_id": p.node_id, "pid": p.pid} for p in result.started],
            "leaders_s": round(result.leaders_s, 3),
            "data_dir": str(Path(data_dir).resolve()),
            "placement_warning": result.placement_warning,
            "status": status.to_json(),
        })  # fmt: skip
        return
    out = stdout_console()
    pids = ", ".join(f"node {p.node_id} pid {p.pid}" for p in result.started)
    out.print(f"started {len(result.started)} nodes ({pids}); every shard has a leader "
              f"after {result.leaders_s:.2f} s")  # fmt: skip
    out.print(f"logs and pid files in {Path(data_dir).resolve()}; "
              f"stop with: hongbao cluster down --data-dir {data_dir}")  # fmt: skip
    out.print(status_table(status))
    if result.placement_warning is not None:
        out.print(f"[yellow]warning[/yellow]: {result.placement_warning} (the cluster serves; "
                  "leaders stay where they are)")  # fmt: skip


def _gather(topology: Topology) -> ClusterStatus:
    async def main() -> ClusterStatus:
        options = ClientOptions(timeout_s=STATUS_TIMEOUT_S)
        async with HongbaoClient(topology, options) as client:
            return await cluster_status(client)

    return asyncio.run(main())


def status_table(status: ClusterStatus) -> Table:
    """One row per node, grouped by region: DESIGN section 5's operator view."""
    table = Table(title=f"hongbao cluster ({status.topology.shard_count} shards)")
    for name, justify in (
        ("region", "left"), ("node", "right"), ("address", "left"), ("state", "left"),
        ("shards led", "left"), ("term", "right"), ("commit Σ", "right"),
        ("applied Σ", "right"), ("apply lag", "right"), ("log lag", "right"),
    ):  # fmt: skip
        table.add_column(name, justify=justify)  # type: ignore[arg-type]
    for region in status.topology.regions:
        for node in status.nodes:
            if node.spec.region != region.name:
                continue
            lag = status.log_lag_of(int(node.spec.node_id))
            lag_text = "-" if lag is None else str(lag)
            if node.status is None:
                table.add_row(
                    region.name, str(node.spec.node_id), node.spec.address, "[red]down[/red]",
                    "", "", "", "", "", lag_text,
                )  # fmt: skip
                continue
            shards = node.status.shards
            led = [s.shard_id for s in shards if s.role == admin_pb2.ROLE_LEADER]
            table.add_row(
                region.name, str(node.spec.node_id), node.spec.address, "[green]up[/green]",
                ",".join(map(str, led)) or "-",
                str(max((s.term for s in shards), default=0)),
                str(sum(s.commit_index for s in shards)),
                str(sum(s.applied_index for s in shards)),
                str(sum(s.apply_lag_entries for s in shards)),
                lag_text,
            )  # fmt: skip
    leaderless = status.leaderless_shards()
    if leaderless:
        table.caption = f"[red]shards without a leader: {leaderless}[/red]"
    else:
        table.caption = "every shard has a leader; log lag: entries behind, seen by leaders"
    return table


def shards_table(status: ClusterStatus) -> Table:
    """One row per shard: its leader, term, and each replica's commit/applied index."""
    table = Table(title="shards")
    table.add_column("shard", justify="right")
    table.add_column("leader", justify="right")
    table.add_column("term", justify="right")
    nodes = [n for n in status.nodes]
    for node in nodes:
        table.add_column(f"node {node.spec.node_id} commit/applied", justify="right")
    leaders = status.leaders()
    for shard_id in range(status.topology.shard_count):
        cells: list[str] = []
        term = 0
        for node in nodes:
            if node.status is None:
                cells.append("down")
                continue
            found = [s for s in node.status.shards if s.shard_id == shard_id]
            if not found:
                cells.append("")
                continue
            term = max(term, found[0].term)
            cells.append(f"{found[0].commit_index}/{found[0].applied_index}")
        leader = str(leaders[shard_id]) if shard_id in leaders else "[red]none[/red]"
        table.add_row(str(shard_id), leader, str(term), *cells)
    return table


@cluster.command("status")
@config_option
@click.option("--shards", "per_shard", is_flag=True, help="Also show one row per shard.")
@json_option
def status(config_path: str, per_shard: bool, as_json: bool) -> None:
    """Per region and node: up/down, shards led, term, commit/applied index, log lag."""
    topology = load_config(config_path)
    gathered = _gather(topology)
    if as_json:
        print_json(gathered.to_json())
    else:
        out = stdout_console()
        out.print(status_table(gathered))
        if per_shard:
            out.print(shards_table(gathered))
    if gathered.leaderless_shards():
        raise SystemExit(EXIT_UNAVAILABLE)


@cluster.command("balance")
@config_option
@click.option("--timeout-s", type=click.FloatRange(min=0.1, max=600), default=30.0,
              show_default=True, help="How long to keep retrying leadership transfers.")
@json_option
def balance(config_path: str, timeout_s: float, as_json: bool) -> None:
    """Hand every shard's leadership back to its home region (after a node returns).

    Uses Raft leadership transfer, so no request fails. Shards whose home node is down
    stay where they are. Exit 4 if a live home has not taken office by the deadline.
    """
    topology = load_config(config_path)

    async def main() -> list[int]:
        async with HongbaoClient(topology, ClientOptions(timeout_s=STATUS_TIMEOUT_S)) as client:
            await wait_for_leaders(client, timeout_s)
            return await move_leaders_home(client, timeout_s)

    try:
        moved = asyncio.run(main())
    except ClusterOpsError as error:
        _refuse(str(error), EXIT_UNAVAILABLE)
    if as_json:
        print_json({"moved_shards": moved})
        return
    if moved:
        stdout_console().print(f"moved shards {moved} back to their home regions")
    else:
        stdout_console().print("every shard is led from its home region (or its home is down)")


def _node_ids_in(data_dir: Path) -> list[int]:
    ids: list[int] = []
    for path in data_dir.glob("node-*.pid"):
        suffix = path.name.removeprefix("node-").removesuffix(".pid")
        if suffix.isdigit():
            ids.append(int(suffix))
    return sorted(ids)


@cluster.command("down")
@data_dir_option
@click.option("--timeout-s", type=click.FloatRange(min=0.1, max=600), default=STOP_TIMEOUT_S,
              show_default=True, help="How long to wait after SIGTERM before SIGKILL.")
@json_option
def down(data_dir: str, timeout_s: float, as_json: bool) -> None:
    """Stop every node started by `cluster up` in DATA_DIR: SIGTERM, wait, then SIGKILL."""
    directory = Path(data_dir)
    result = stop_nodes(directory, _node_ids_in(directory), timeout_s=timeout_s)
    if as_json:
        print_json({"stopped": result.stopped, "killed": result.killed,
                    "not_running": result.not_running})  # fmt: skip
        return
    out = stdout_console()
    if not result.stopped and not result.killed:
        out.print(f"no node of {directory.resolve()} was running")
        return
    if result.stopped:
        out.print(f"stopped nodes {result.stopped} cleanly")
    if result.killed:
        out.print(f"[yellow]killed nodes {result.killed}[/yellow]: they ignored SIGTERM for "
                  f"{timeout_s} s (see {log_path(directory, result.killed[0])})")  # fmt: skip


# -- single nodes (attached to the `node` group by commands.register) -------------------


def _node_option(function: F) -> F:
    return click.option("--node", "node_id", required=True, type=int, help="The node's id.")(
        function
    )


@click.command("start")
@_node_option
@config_option
@data_dir_option
@click.option("--no-fsync", is_flag=True, help="Never fsync (tests and benchmarks only).")
def node_start(node_id: int, config_path: str, data_dir: str, no_fsync: bool) -> None:
    """Start one node of a `cluster up` cluster again, detached (after stop or kill)."""
    topology = load_config(config_path)
    directory = Path(data_dir)
    try:
        topology.node(node_id)
        check_can_start(topology, directory, [node_id])
        process = spawn_node(Path(config_path), directory, node_id, no_fsync=no_fsync)
        wait_ready(directory.resolve(), process, 30.0)
    except KeyError as error:
        raise click.BadParameter(str(error.args[0]), param_hint="--node") from error
    except ClusterOpsError as error:
        _refuse(str(error), EXIT_REFUSED if "already" in str(error) else EXIT_UNAVAILABLE)
    stdout_console().print(
        f"node {node_id} started (pid {process.pid}); log {log_path(directory, node_id)}"
    )

    async def leaders() -> None:
        async with HongbaoClient(topology, ClientOptions(timeout_s=STATUS_TIMEOUT_S)) as client:
            await wait_for_leaders(client, 30.0)

    try:
        asyncio.run(leaders())
    except ClusterOpsError as error:
        _refuse(str(error), EXIT_UNAVAILABLE)


def _signal_node(data_dir: str, node_id: int, sig: signal.Signals, verb: str) -> None:
    directory = Path(data_dir)
    if not pid_path(directory, node_id).exists():
        _refuse(f"node {node_id} has no pid file in {directory.resolve()}", EXIT_REFUSED)
    result = stop_nodes(directory, [node_id], sig=sig)
    if result.not_running:
        _refuse(f"node {node_id} was not running", EXIT_REFUSED)
    stdout_console().print(f"node {node_id} {verb}")


@click.command("stop")
@_node_option
@data_dir_option
def node_stop(node_id: int, data_dir: str) -> None:
    """Stop one node cleanly (SIGTERM, then SIGKILL after a deadline)."""
    _signal_node(data_dir, node_id, signal.SIGTERM, "stopped")


@click.command("kill")
@_node_option
@data_dir_option
def node_kill(node_id: int, data_dir: str) -> None:
    """kill -9 one node: no chance to clean up (chaos demos; nothing acknowledged is lost)."""
    _signal_node(data_dir, node_id, signal.SIGKILL, "killed (SIGKILL)")
