"""A real cluster for the console tests: configs/local.toml's three cities, one node
each, and their routers, on fresh 127.0.0.1 ports; everything killed on every exit."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from hongbao.config.topology import Topology
from hongbao.ops.admin_pool import AdminPool
from hongbao.ops.balance import move_leaders_home
from hongbao.ops.local import LocalCluster, write_topology
from hongbao.ops.status import wait_for_leaders

REPO = Path(__file__).resolve().parents[2]
TEMPLATE = REPO / "configs" / "local.toml"
LEADERS_TIMEOUT_S = 30.0


@dataclass
class Running:
    cluster: LocalCluster
    config_path: Path

    @property
    def topology(self) -> Topology:
        return self.cluster.topology


async def _settle(topology: Topology) -> None:
    """Every shard and the meta group led, then led from home (a stable picture)."""
    async with AdminPool.for_topology(topology) as pool:
        await wait_for_leaders(pool, LEADERS_TIMEOUT_S, include_meta=True)
        await move_leaders_home(pool, LEADERS_TIMEOUT_S)
        await wait_for_leaders(pool, LEADERS_TIMEOUT_S, include_meta=True)


@contextlib.contextmanager
def running(root: Path) -> Iterator[Running]:
    config = write_topology(root / "topology.toml", template=TEMPLATE)
    with LocalCluster(config, root / "data", no_fsync=True) as cluster:
        cluster.start()
        cluster.start_routers()
        asyncio.run(_settle(cluster.topology))
        yield Running(cluster, config)


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Running]:
    with running(tmp_path_factory.mktemp("console")) as value:
        yield value
