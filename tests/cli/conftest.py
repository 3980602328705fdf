"""Fixtures for the CLI tests: a topology on fresh ports, and a running cluster for a module."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from hongbao.client.sdk import HongbaoClient
from hongbao.ops.cluster import wait_for_leaders
from hongbao.ops.local import LocalCluster, write_topology

REPO = Path(__file__).resolve().parents[2]
TEMPLATE = REPO / "configs" / "local.toml"
HONGBAO = [sys.executable, "-m", "hongbao.cli"]


def hongbao(*args: str, timeout_s: float = 120.0) -> subprocess.CompletedProcess[str]:
    """Run the real command line in a child process (its own event loop, its own exit)."""
    return subprocess.run(
        [*HONGBAO, *args],
        capture_output=True,
        text=True,
        timeout=timeout_s,
        cwd=REPO,
        env={**os.environ, "COLUMNS": "200"},
        check=False,
    )


@pytest.fixture
def topology_path(tmp_path: Path) -> Path:
    """configs/local.toml with fresh 127.0.0.1 ports."""
    return write_topology(tmp_path / "topology.toml", template=TEMPLATE)


async def _leaders(cluster: LocalCluster) -> None:
    async with HongbaoClient(cluster.topology) as client:
        await wait_for_leaders(client, 30.0)


@pytest.fixture(scope="module")
def running(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A 3-node cluster (no fsync) for the module; yields its topology file."""
    directory = tmp_path_factory.mktemp("cli-cluster")
    path = write_topology(directory / "topology.toml", template=TEMPLATE)
    with LocalCluster(path, directory / "data", no_fsync=True) as cluster:
        cluster.start()
        cluster.start_routers()  # the CLI's clients go through them (configs/local.toml)
        asyncio.run(_leaders(cluster))
        yield path
        cluster.stop_all()
