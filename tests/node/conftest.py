"""Fixtures for storage tests: environments that are always closed and removed."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from hongbao.node.storage import Durability, NodeEnv

TEST_MAP_SIZE_BYTES = 1 << 30


class Envs:
    """Opens ``NodeEnv``s under one directory; :meth:`cleanup` closes them and removes it."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.opened: list[NodeEnv] = []

    def open(
        self,
        name: str = "env",
        *,
        durability: Durability = Durability.NO_FSYNC,
        map_size_bytes: int = TEST_MAP_SIZE_BYTES,
    ) -> NodeEnv:
        env = NodeEnv(self.root / name, durability=durability, map_size_bytes=map_size_bytes)
        self.opened.append(env)
        return env

    def reopen(self, env: NodeEnv) -> NodeEnv:
        """Close ``env`` and open its directory again: a restart, as far as storage knows."""
        env.close()
        return self.open(env.path.name, durability=env.durability)

    def cleanup(self) -> None:
        for env in self.opened:
            if not env.in_batch:
                env.close()
        shutil.rmtree(self.root, ignore_errors=True)


@pytest.fixture
def envs(tmp_path: Path) -> Iterator[Envs]:
    opened = Envs(tmp_path / "envs")
    try:
        yield opened
    finally:
        opened.cleanup()
