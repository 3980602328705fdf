"""Operating a running cluster: ``cluster up`` and ``cluster down``.

Rules of this module: ``up`` starts every node and every router of the topology as a
detached process (:mod:`hongbao.ops.processes`: pid files, logs, ready files in the data
directory), waits until every shard and the meta group have a leader, then leads each
shard from its home region (:mod:`hongbao.ops.balance`). On any failure what it started
is stopped again. ``down`` stops routers first (no new work), then nodes. Status, drain
and balance live in their own modules; the names other packages import from here are
re-exported below.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from pathlib import Path

from hongbao.config.topology import Topology, load_topology
from hongbao.ops.admin_pool import AdminPool
from hongbao.ops.balance import move_leaders_home
from hongbao.ops.processes import (
    LOOPBACK,
    POLL_S,
    READY_TIMEOUT_S,
    STOP_TIMEOUT_S,
    ClusterOpsError,
    ManagedProcess,
    NodeProcess,
    StopResult,
    check_can_start,
    ids_in,
    log_path,
    log_tail,
    pid_alive,
    pid_path,
    port_in_use,
    read_pid_file,
    ready_path,
    running_node,
    running_process,
    spawn_node,
    spawn_router,
    stop_nodes,
    stop_processes,
    wait_ready,
)
from hongbao.ops.status import (
    LEADERS_TIMEOUT_S,
    STATUS_TIMEOUT_S,
    ClusterStatus,
    NodeStatus,
    cluster_status,
    wait_for_leaders,
    wait_for_quiet,
)

__all__ = [
    "LEADERS_TIMEOUT_S", "LOOPBACK", "POLL_S", "READY_TIMEOUT_S", "STATUS_TIMEOUT_S",
    "STOP_TIMEOUT_S", "ClusterOpsError", "ClusterStatus", "DownResult", "ManagedProcess",
    "NodeProcess", "NodeStatus", "StopResult", "UpResult", "check_can_start", "cluster_down",
    "cluster_status", "cluster_up", "ids_in", "log_path", "log_tail", "move_leaders_home",
    "pid_alive", "pid_path", "port_in_use", "read_pid_file", "ready_path", "running_node",
    "running_process", "spawn_node", "spawn_router", "stop_nodes", "stop_processes",
    "wait_for_leaders", "wait_for_quiet", "wait_ready",
]  # fmt: skip


@dataclass(slots=True)
class UpResult:
    started: list[ManagedProcess] = field(default_factory=list)  # nodes
    routers: list[ManagedProcess] = field(default_factory=list)
    leaders_s: float = 0.0
    placement_warning: str | None = None  # leaders not all home: serving, but not balanced


def cluster_up(
    config_path: Path,
    data_dir: Path,
    *,
    no_fsync: bool = False,
    ready_timeout_s: float = READY_TIMEOUT_S,
    leaders_timeout_s: float = LEADERS_TIMEOUT_S,
) -> UpResult:
    """Start every node and router detached, wait until every group has a leader, then
    hand each shard's leadership to its home region (whichever replica won the first
    election, each city ends up leading its own shards).

    On any failure the processes this call started are stopped again before it raises.
    """
    topology = load_topology(config_path)
    data_dir.mkdir(parents=True, exist_ok=True)
    data_dir = data_dir.resolve()
    node_ids = [int(n.node_id) for n in topology.nodes]
    router_ids = [r.router_id for r in topology.routers]
    check_can_start(topology, data_dir, node_ids, router_ids)
    result = UpResult()
    try:
        for node_id in node_ids:
            result.started.append(spawn_node(config_path, data_dir, node_id, no_fsync=no_fsync))
        for router_id in router_ids:
            result.routers.append(spawn_router(config_path, data_dir, router_id))
        for process in [*result.started, *result.routers]:
            wait_ready(data_dir, process, ready_timeout_s)
        started = time.monotonic()
        result.placement_warning = asyncio.run(_wait_leaders_once(topology, leaders_timeout_s))
        result.leaders_s = time.monotonic() - started
    except BaseException:
        stop_processes(data_dir, [p.node_id for p in result.routers], kind="router")
        stop_nodes(data_dir, [p.node_id for p in result.started])
        raise
    return result


async def _wait_leaders_once(topology: Topology, timeout_s: float) -> str | None:
    """Wait for a leader everywhere (required), then move leaders home (best effort).

    Returns why leadership is not all at home, or None when it is.
    """
    async with AdminPool.for_topology(topology) as pool:
        await wait_for_leaders(pool, timeout_s, include_meta=True)
        try:
            await move_leaders_home(pool, timeout_s)
        except ClusterOpsError as error:
            return str(error)
    return None


@dataclass(frozen=True, slots=True)
class DownResult:
    nodes: StopResult
    routers: StopResult


def cluster_down(data_dir: Path, *, timeout_s: float = STOP_TIMEOUT_S) -> DownResult:
    """Stop every router, then every node, that has a pid file in ``data_dir``."""
    routers = stop_processes(
        data_dir, ids_in(data_dir, "router"), kind="router", timeout_s=timeout_s
    )
    nodes = stop_nodes(data_dir, ids_in(data_dir, "node"), timeout_s=timeout_s)
    return DownResult(nodes=nodes, routers=routers)
