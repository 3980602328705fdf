"""``hongbao cluster up|status|balance|down`` and ``hongbao node start|stop|kill|drain``.

A thin shell over :mod:`hongbao.ops`: ``up`` starts every node and router of the
topology as detached processes (pid files and logs in the data directory), waits until
every shard and the meta group have a leader and moves leaders to their home regions;
``status`` takes one snapshot of the whole cluster from the topology file or from any one
node or router address; ``balance`` moves leaders home (only to caught-up replicas in
active regions); ``down`` stops routers, then nodes: SIGTERM, then SIGKILL after a
deadline. ``node drain`` moves every leadership off one node (systemd ExecStop,
Kubernetes preStop).
"""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path
from typing import NoReturn

import click
import grpc
from click.core import ParameterSource
from rich.console import Console

from hongbao.cli.common import (
    EXIT_REFUSED,
    EXIT_UNAVAILABLE,
    F,
    config_option,
    insecure_flag,
    json_option,
    load_config,
    print_json,
    stdout_console,
)
from hongbao.cli.status_view import print_status
from hongbao.config.topology import META_GROUP_ID, Topology
from hongbao.ops.admin_pool import AdminPool, admin_credentials
from hongbao.ops.balance import move_leaders_home
from hongbao.ops.cluster import (
    STOP_TIMEOUT_S,
    ClusterOpsError,
    check_can_start,
    cluster_down,
    cluster_up,
    log_path,
    pid_path,
    spawn_node,
    stop_nodes,
    wait_ready,
)
from hongbao.ops.drain import DrainRefused, drain_node
from hongbao.ops.status import ClusterStatus, snapshot, wait_for_leaders
from hongbao.ops.transfer import EvacuationResult, TransferEvent
from hongbao.security.tls import TlsError

EXIT_ANOMALY = 5
EXIT_DEADLINE = 3

CLUSTER_HELP_EPILOG = (
    "\b\nExit codes:\n"
    "  0  success\n"
    "  2  usage\n"
    "  3  refused: a node or router already runs, or a port is taken\n"
    "  4  unavailable: a process did not start, no node answered, or a shard has no leader\n"
    "  5  status only: anomalies flagged (double leader, other cluster id, drain overdue...)\n"
)
NODE_DRAIN_EPILOG = (
    "\b\nExit codes:\n"
    "  0  the node leads nothing\n"
    "  2  usage (unknown node)\n"
    "  3  the deadline passed with shards still led there (they are named)\n"
)


def data_dir_option(function: F) -> F:
    return click.option(
        "--data-dir", default="./data", show_default=True, type=click.Path(file_okay=False),
        help="Where the nodes keep their LMDB environments, pid files and logs.",
    )(function)  # fmt: skip


def refuse(message: str, code: int) -> NoReturn:
    Console(stderr=True, highlight=False, soft_wrap=True).print(f"error: {message}", markup=False)
    raise SystemExit(code)


@click.group(epilog=CLUSTER_HELP_EPILOG)
def cluster() -> None:
    """Start, inspect and stop every node and router of a topology on this machine."""


@cluster.command("up", epilog=CLUSTER_HELP_EPILOG)
@config_option
@data_dir_option
@click.option("--no-fsync", is_flag=True,
              help="Never fsync (tests and benchmarks only: an OS crash may lose data).")
@json_option
def up(config_path: str, data_dir: str, no_fsync: bool, as_json: bool) -> None:
    """Start every node and router in the background; wait for leaders; lead from home."""
    topology = load_config(config_path)
    try:
        result = cluster_up(Path(config_path), Path(data_dir), no_fsync=no_fsync)
    except ClusterOpsError as error:
        text = str(error)
        already = "already" in text or "in use" in text or "only 127" in text
        refuse(text, EXIT_REFUSED if already else EXIT_UNAVAILABLE)
    status = gather(topology)
    if as_json:
        print_json({
            "started": [{"node_id": p.node_id, "pid": p.pid} for p in result.started],
            "routers": [{"router_id": p.node_id, "pid": p.pid} for p in result.routers],
            "leaders_s": round(result.leaders_s, 3),
            "data_dir": str(Path(data_dir).resolve()),
            "placement_warning": result.placement_warning,
            "status": status.to_json(),
        })  # fmt: skip
        return
    out = stdout_console()
    pids = ", ".join(f"{p.label} pid {p.pid}" for p in [*result.started, *result.routers])
    out.print(f"started {len(result.started)} nodes and {len(result.routers)} routers ({pids}); "
              f"every shard has a leader after {result.leaders_s:.2f} s")  # fmt: skip
    out.print(f"logs and pid files in {Path(data_dir).resolve()}; "
              f"stop with: hongbao cluster down --data-dir {data_dir}")  # fmt: skip
    print_status(out, status, per_shard=False)
    if result.placement_warning is not None:
        out.print(f"[yellow]warning[/yellow]: {result.placement_warning} (the cluster serves; "
                  "leaders stay where they are)")  # fmt: skip


def gather(topology: Topology) -> ClusterStatus:
    """One snapshot of the cluster the topology file describes."""
    from hongbao.node.server import cluster_id_of

    async def main() -> ClusterStatus:
        async with AdminPool.for_topology(topology) as pool:
            return await snapshot(pool, expected_cluster_id=cluster_id_of(topology))

    return asyncio.run(main())


def gather_from(address: str) -> ClusterStatus:
    """One snapshot, starting from a single node or router address (its Admin.Topology)."""

    async def main() -> ClusterStatus:
        async with AdminPool(None, admin_credentials(None, insecure=insecure_flag())) as pool:
            try:
                _, cluster_id = await pool.fetch_topology(address, timeout_s=2.0)
            except grpc.aio.AioRpcError as error:
                refuse(f"{address} did not answer Admin.Topology: {error.code().name}: "
                       f"{error.details() or ''}", EXIT_UNAVAILABLE)  # fmt: skip
            return await snapshot(pool, expected_cluster_id=cluster_id)

    try:
        return asyncio.run(main())
    except TlsError as error:  # $HONGBAO_CERTS_DIR names a directory without certificates
        raise click.ClickException(str(error)) from error


@cluster.command("status", epilog=CLUSTER_HELP_EPILOG)
@config_option
@click.option("--address", default=None, metavar="HOST:PORT",
              help="Start from this node or router instead of a topology file.")
@click.option("--shards", "per_shard", is_flag=True, help="Also show one row per shard.")
@json_option
def status(config_path: str, address: str | None, per_shard: bool, as_json: bool) -> None:
    """One consistent view: regions and their state, node health, leaders, lag, anomalies."""
    source = click.get_current_context().get_parameter_source("config_path")
    if address is not None and source is ParameterSource.COMMANDLINE:
        raise click.UsageError("give --config or --address, not both")
    gathered = gather_from(address) if address is not None else gather(load_config(config_path))
    if as_json:
        print_json(gathered.to_json())
    else:
        print_status(stdout_console(), gathered, per_shard=per_shard)
    if gathered.leaderless_shards():
        raise SystemExit(EXIT_UNAVAILABLE)
    if gathered.anomalies():
        raise SystemExit(EXIT_ANOMALY)


@cluster.command("balance", epilog=CLUSTER_HELP_EPILOG)
@config_option
@click.option("--timeout-s", type=click.FloatRange(min=0.1, max=600), default=30.0,
              show_default=True, help="How long to keep retrying leadership transfers.")
@json_option
def balance(config_path: str, timeout_s: float, as_json: bool) -> None:
    """Hand every shard's leadership back to its home region (after a node returns).

    Uses Raft leadership transfer, so no request fails. Only to a home replica that has
    caught up (log and applied index) in an active region; others stay where they are.
    Exit 4 if such a home has not taken office by the deadline.
    """
    topology = load_config(config_path)

    async def main() -> list[int]:
        async with AdminPool.for_topology(topology) as pool:
            await wait_for_leaders(pool, timeout_s)
            return await move_leaders_home(pool, timeout_s)

    try:
        moved = asyncio.run(main())
    except ClusterOpsError as error:
        refuse(str(error), EXIT_UNAVAILABLE)
    meta = int(META_GROUP_ID) in moved
    moved = [g for g in moved if g != META_GROUP_ID]
    if as_json:
        print_json({"moved_shards": moved, "meta_moved": meta})
        return
    if moved or meta:
        what = f"shards {moved}" + (" and the meta group" if meta else "")
        stdout_console().print(f"moved {what} back to their home regions")
    else:
        stdout_console().print("every shard is led from its home region (or its home may not lead)")


@cluster.command("down", epilog=CLUSTER_HELP_EPILOG)
@data_dir_option
@click.option("--timeout-s", type=click.FloatRange(min=0.1, max=600), default=STOP_TIMEOUT_S,
              show_default=True, help="How long to wait after SIGTERM before SIGKILL.")
@json_option
def down(data_dir: str, timeout_s: float, as_json: bool) -> None:
    """Stop every router, then every node, started in DATA_DIR: SIGTERM, wait, SIGKILL."""
    directory = Path(data_dir)
    result = cluster_down(directory, timeout_s=timeout_s)
    nodes, routers = result.nodes, result.routers
    if as_json:
        print_json({"stopped": nodes.stopped, "killed": nodes.killed,
                    "not_running": nodes.not_running, "routers_stopped": routers.stopped,
                    "routers_killed": routers.killed})  # fmt: skip
        return
    out = stdout_console()
    if not (nodes.stopped or nodes.killed or routers.stopped or routers.killed):
        out.print(f"no node or router of {directory.resolve()} was running")
        return
    if routers.stopped:
        out.print(f"stopped routers {routers.stopped} cleanly")
    if nodes.stopped:
        out.print(f"stopped nodes {nodes.stopped} cleanly")
    for kind, killed in (("node", nodes.killed), ("router", routers.killed)):
        if killed:
            log = log_path(directory, killed[0], kind)  # type: ignore[arg-type]
            out.print(f"[yellow]killed {kind}s {killed}[/yellow]: they ignored SIGTERM for "
                      f"{timeout_s} s (see {log})")  # fmt: skip


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
        refuse(str(error), EXIT_REFUSED if "already" in str(error) else EXIT_UNAVAILABLE)
    stdout_console().print(
        f"node {node_id} started (pid {process.pid}); log {log_path(directory, node_id)}"
    )

    async def leaders() -> None:
        async with AdminPool.for_topology(topology) as pool:
            await wait_for_leaders(pool, 30.0)

    try:
        asyncio.run(leaders())
    except ClusterOpsError as error:
        refuse(str(error), EXIT_UNAVAILABLE)


def _signal_node(data_dir: str, node_id: int, sig: signal.Signals, verb: str) -> None:
    directory = Path(data_dir)
    if not pid_path(directory, node_id).exists():
        refuse(f"node {node_id} has no pid file in {directory.resolve()}", EXIT_REFUSED)
    result = stop_nodes(directory, [node_id], sig=sig)
    if result.not_running:
        refuse(f"node {node_id} was not running", EXIT_REFUSED)
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


@click.command("drain", epilog=NODE_DRAIN_EPILOG)
@_node_option
@config_option
@click.option("--deadline-s", type=click.FloatRange(min=0.1, max=3600), default=60.0,
              show_default=True, help="Give up (exit 3, stuck shards named) after this long.")
@json_option
def node_drain(node_id: int, config_path: str, deadline_s: float, as_json: bool) -> None:
    """Move every leadership off one node (before it stops; no cluster-state change).

    Each shard goes to a caught-up replica in an active region by Raft leadership
    transfer, each attempt bounded by an election timeout. For systemd ExecStop and the
    Kubernetes preStop hook.
    """
    topology = load_config(config_path)
    try:
        topology.node(node_id)
    except KeyError as error:
        raise click.BadParameter(str(error.args[0]), param_hint="--node") from error
    out = stdout_console()

    def progress(event: TransferEvent) -> None:
        if not as_json:
            out.print(event.describe())

    async def main() -> EvacuationResult:
        async with AdminPool.for_topology(topology) as pool:
            return await drain_node(pool, node_id, deadline_s=deadline_s, on_event=progress)

    try:
        result = asyncio.run(main())
    except DrainRefused as error:
        raise click.BadParameter(str(error), param_hint="--node") from error
    if as_json:
        print_json({"node_id": node_id, "done": result.done, "moved": len(result.moved),
                    "attempts": result.attempts, "elapsed_s": round(result.elapsed_s, 3),
                    "stuck": [s.to_json() for s in result.stuck]})  # fmt: skip
    elif result.done:
        out.print(f"node {node_id} leads nothing ({len(result.moved)} moved in "
                  f"{result.elapsed_s:.2f} s)")  # fmt: skip
    else:
        left = len(result.stuck)
        out.print(f"[red]deadline passed[/red]: {left} shards still led by node {node_id}:")
        for stuck in result.stuck:
            out.print(f"  {stuck.describe()}")
    if not result.done:
        raise SystemExit(EXIT_DEADLINE)
