"""A small real cluster whose every link runs through a ChaosNet, for the chaos tests.

Rules of this module: every process, proxy and server it starts it also ends, on every
exit path (one context manager, ``finally`` all the way down); every wait is a condition
with a deadline; only 127.0.0.1 (``write_topology`` rewrites the template's addresses).
Generic on purpose: the fault tests and the runner's tests share it.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from hongbao.chaos.net import ChaosNet
from hongbao.chaos.toxiproxy import ThreadedToxiproxy
from hongbao.config.topology import Topology, load_topology
from hongbao.ops.admin_pool import AdminPool
from hongbao.ops.balance import move_leaders_home
from hongbao.ops.local import LocalCluster, free_ports, write_topology
from hongbao.ops.processes import ClusterOpsError
from hongbao.ops.status import ClusterStatus, cluster_status, wait_for_leaders
from tests.chaos.support import EchoServer

REPO = Path(__file__).resolve().parents[2]
TEMPLATE = REPO / "configs" / "local.toml"
LEADERS_TIMEOUT_S = 30.0
BALANCE_ATTEMPTS = 3
POLL_S = 0.05
T = TypeVar("T")


@dataclass(slots=True)
class ChaosCluster:
    """What a test drives: the processes, the proxies, and the server behind them."""

    cluster: LocalCluster
    net: ChaosNet
    server: ThreadedToxiproxy
    node_maps: dict[int, Path]
    router_maps: dict[int, Path]

    @property
    def topology(self) -> Topology:
        return self.cluster.topology

    def status(self) -> ClusterStatus:
        return run_with_pool(self.topology, cluster_status)

    def leaders(self) -> dict[int, int]:
        """shard -> the node claiming it (highest term), ledger shards only."""
        return self.status().leaders()


def run_with_pool(topology: Topology, body: Callable[[AdminPool], Awaitable[T]]) -> T:
    """``body(pool)`` on a fresh event loop with an AdminPool closed afterwards."""

    async def main() -> T:
        async with AdminPool.for_topology(topology) as pool:
            return await body(pool)

    return asyncio.run(main())


def settle(
    topology: Topology,
    *,
    home: bool = True,
    attempts: int = BALANCE_ATTEMPTS,
    home_timeout_s: float = LEADERS_TIMEOUT_S,
) -> None:
    """Every group (meta included) has a leader; with ``home``, led from its home."""

    async def body(pool: AdminPool) -> None:
        await wait_for_leaders(pool, LEADERS_TIMEOUT_S, include_meta=True)
        for attempt in range(attempts if home else 0):
            try:
                await move_leaders_home(pool, home_timeout_s)
                return
            except ClusterOpsError:  # a loaded machine: an election moved one meanwhile
                if attempt + 1 == attempts:
                    raise

    run_with_pool(topology, body)


def wait_for(condition: Callable[[], bool], timeout_s: float, what: str) -> float:
    """Poll ``condition`` until true; AssertionError naming ``what`` at the deadline.
    Returns the seconds it took."""
    started = time.monotonic()
    while not condition():
        if time.monotonic() - started > timeout_s:
            raise AssertionError(f"not within {timeout_s} s: {what}")
        time.sleep(POLL_S)
    return time.monotonic() - started


@contextlib.contextmanager
def echo_topology(
    root: Path, *, template: Path = TEMPLATE
) -> Iterator[tuple[Path, list[EchoServer]]]:
    """``template`` whose node addresses are echo servers (routers: unused ports): a
    ChaosNet on it shows every byte of each direction of each link, with no cluster."""
    root.mkdir(parents=True, exist_ok=True)
    nodes = len(load_topology(template).nodes)
    echoes: list[EchoServer] = []
    try:
        echoes.extend(EchoServer() for _ in range(nodes))
        routers = len(load_topology(template).routers)
        ports = [e.port for e in echoes] + free_ports(routers)
        yield write_topology(root / "topology.toml", template=template, ports=ports), echoes
    finally:
        for echo in echoes:
            echo.close()


@contextlib.contextmanager
def chaos_cluster(
    root: Path,
    *,
    template: Path = TEMPLATE,
    overrides: dict[str, object] | None = None,
    routers: bool = True,
    no_fsync: bool = True,
    home: bool = True,
    seed: int | None = None,
) -> Iterator[ChaosCluster]:
    """``template`` on fresh ports, a ThreadedToxiproxy with a proxy per link, the nodes
    (and routers) started dialing through it, every group led (from home with ``home``).
    Everything is stopped at exit, the test's failure or not."""
    root.mkdir(parents=True, exist_ok=True)
    config = write_topology(root / "topology.toml", template=template, overrides=overrides)
    with ThreadedToxiproxy("127.0.0.1", 0, seed=seed) as server:
        cluster = LocalCluster(config, root / "data", no_fsync=no_fsync)
        net = ChaosNet(cluster.topology, server.host, server.port)
        try:
            with cluster:
                net.create()
                node_maps, router_maps = net.write_dial_maps(root / "dial")
                for node_id, path in node_maps.items():
                    cluster.args_of_node[node_id] = ["--dial-map", str(path)]
                for router_id, path in router_maps.items():
                    cluster.args_of_router[router_id] = ["--dial-map", str(path)]
                cluster.start()
                if routers and cluster.topology.routers:
                    cluster.start_routers()
                settle(cluster.topology, home=home)
                yield ChaosCluster(cluster, net, server, node_maps, router_maps)
        finally:
            with contextlib.suppress(Exception):  # the server goes away with its proxies anyway
                net.destroy()
