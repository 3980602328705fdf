"""Stopping and starting a whole region's processes (``region stop`` / ``region start``).

Rules of this module (operations-asks 6; TiKV #15874): a region that starts again earns
its leaderships back. Its nodes start; each of their replicas must apply up to the
commit index its group's leader had when the node came up (by log or by snapshot);
only then is the region marked ``active``; only then do leaders move home, and
:func:`hongbao.ops.balance.move_leaders_home` picks no replica that has not caught up.
Every wait has a deadline. Stops and starts are logged at info (``region_stopped``,
``region_caught_up``, ``region_started``) in the process that runs them.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import time
from dataclasses import dataclass, field
from pathlib import Path

from hongbao.config.topology import Topology, load_topology
from hongbao.logs import event
from hongbao.meta.state import RegionState
from hongbao.ops.admin_pool import AdminPool
from hongbao.ops.balance import move_leaders_home
from hongbao.ops.cluster_state import read_state, set_region_state, wait_for_version
from hongbao.ops.processes import (
    ClusterOpsError,
    StopResult,
    check_can_start,
    spawn_node,
    spawn_router,
    stop_processes,
    wait_ready,
)
from hongbao.ops.status import cluster_status, group_name, wait_for_leaders

log = logging.getLogger(__name__)

POLL_S = 0.05
PROPAGATION_S = 5.0  # how long the region's nodes may take to see it active again


def check_region(topology: Topology, region: str) -> None:
    known = [r.name for r in topology.regions]
    if region not in known:
        raise KeyError(f"unknown region {region!r} (regions: {', '.join(known)})")


@dataclass(frozen=True, slots=True)
class RegionStopResult:
    nodes: StopResult
    routers: StopResult


def stop_region(
    data_dir: Path, topology: Topology, region: str, *, kill: bool = False
) -> RegionStopResult:
    """SIGTERM (or, with ``kill``, SIGKILL) the region's routers and nodes."""
    check_region(topology, region)
    sig = signal.SIGKILL if kill else signal.SIGTERM
    routers = stop_processes(
        data_dir, [r.router_id for r in topology.routers_in(region)], kind="router", sig=sig
    )
    nodes = stop_processes(
        data_dir, [int(n.node_id) for n in topology.nodes_in(region)], kind="node", sig=sig
    )
    event(
        log,
        "region_stopped",
        f"{region} stopped ({sig.name}): nodes {_ids(nodes.stopped)} stopped, "
        f"{_ids(nodes.killed)} killed, {_ids(nodes.not_running)} not running; routers "
        f"{_ids(routers.stopped + routers.killed)}",
        region=region,
        signal=sig.name,
        nodes_stopped=len(nodes.stopped),
        nodes_killed=len(nodes.killed),
    )
    return RegionStopResult(nodes=nodes, routers=routers)


def _ids(ids: list[int]) -> str:
    return ",".join(str(i) for i in ids) or "none"


@dataclass(slots=True)
class RegionStartResult:
    started_nodes: list[int] = field(default_factory=list)
    started_routers: list[int] = field(default_factory=list)
    catch_up_targets: dict[str, int] = field(default_factory=dict)  # "node 1 shard 3" -> index
    catch_up_s: float = 0.0
    marked_active: bool = False
    moved_home: list[int] = field(default_factory=list)
    balance_warning: str | None = None


def start_region(
    config_path: Path,
    data_dir: Path,
    region: str,
    *,
    no_fsync: bool = False,
    timeout_s: float = 60.0,
) -> RegionStartResult:
    topology = load_topology(config_path)
    check_region(topology, region)
    data_dir = data_dir.resolve()
    node_ids = [int(n.node_id) for n in topology.nodes_in(region)]
    router_ids = [r.router_id for r in topology.routers_in(region)]
    check_can_start(topology, data_dir, node_ids, router_ids)
    result = RegionStartResult()
    for node_id in node_ids:
        process = spawn_node(config_path, data_dir, node_id, no_fsync=no_fsync)
        result.started_nodes.append(node_id)
        wait_ready(data_dir, process)
    asyncio.run(_catch_up_and_activate(topology, region, node_ids, timeout_s, result))
    for router_id in router_ids:
        process = spawn_router(config_path, data_dir, router_id)
        result.started_routers.append(router_id)
        wait_ready(data_dir, process)
    event(
        log,
        "region_started",
        f"{region} started: nodes {_ids(result.started_nodes)}, routers "
        f"{_ids(result.started_routers)}; caught up in {result.catch_up_s:.2f} s; "
        f"{'marked active; ' if result.marked_active else ''}"
        f"{len(result.moved_home)} leaderships moved home"
        + (f" ({result.balance_warning})" if result.balance_warning else ""),
        region=region,
        catch_up_s=round(result.catch_up_s, 3),
        marked_active=result.marked_active,
        moved_home=len(result.moved_home),
    )
    return result


async def _catch_up_and_activate(
    topology: Topology,
    region: str,
    node_ids: list[int],
    timeout_s: float,
    result: RegionStartResult,
) -> None:
    deadline = time.monotonic() + timeout_s
    async with AdminPool.for_topology(topology) as pool:
        status = await wait_for_leaders(pool, timeout_s, include_meta=True)
        targets: dict[tuple[int, int], int] = {}
        for node_id in node_ids:
            for group in topology.groups_on(node_id):
                lead = status.leader_replica(int(group))
                if lead is not None:
                    targets[(node_id, int(group))] = int(lead.commit_index)
        result.catch_up_targets = {f"node {n} {group_name(g)}": i for (n, g), i in targets.items()}
        started = time.monotonic()
        while True:
            status = await cluster_status(pool)
            behind: list[str] = []
            for (node_id, group_id), index in targets.items():
                replica = status.replica(node_id, group_id)
                if replica is None or int(replica.applied_index) < index:
                    applied = "?" if replica is None else str(replica.applied_index)
                    behind.append(f"node {node_id} {group_name(group_id)} at {applied} of {index}")
            if not behind:
                break
            if time.monotonic() > deadline:
                raise ClusterOpsError(
                    f"{region} did not catch up in {timeout_s} s: " + "; ".join(behind[:6])
                )
            await asyncio.sleep(POLL_S)
        result.catch_up_s = time.monotonic() - started
        event(log, "region_caught_up", f"{region}'s replicas applied their groups' commit "
              f"indexes in {result.catch_up_s:.2f} s", region=region,
              replicas=len(targets))  # fmt: skip
        state, _ = await read_state(pool)
        if state.state_of(region) is not RegionState.ACTIVE:
            marked = await set_region_state(pool, region, RegionState.ACTIVE)
            result.marked_active = True
            await wait_for_version(pool, marked.version, PROPAGATION_S)
        try:
            result.moved_home = await move_leaders_home(pool, max(1.0, deadline - time.monotonic()))
        except ClusterOpsError as error:
            result.balance_warning = str(error)
