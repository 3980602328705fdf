"""Fixtures for the router tests: a real 3-node cluster and its three routers."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.cluster.support import Harness, running_cluster
from tests.router.support import Routers, routers_of


@dataclass
class Routed:
    harness: Harness
    routers: Routers


@pytest.fixture(scope="session", autouse=True)
def _stacks_on_abort() -> Iterator[None]:
    previous = os.environ.get("PYTHONFAULTHANDLER")
    os.environ["PYTHONFAULTHANDLER"] = "1"
    yield
    if previous is None:
        del os.environ["PYTHONFAULTHANDLER"]
    else:
        os.environ["PYTHONFAULTHANDLER"] = previous


@contextlib.contextmanager
def routed_cluster(root: Path) -> Iterator[Routed]:
    """A 3-node cluster with every shard led and its routers serving; all killed on exit."""
    with running_cluster(root) as harness:
        config = harness.cluster.config_path
        with routers_of(config, harness.topology, root) as routers:
            routers.start_all()
            yield Routed(harness, routers)


@pytest.fixture(scope="module")
def routed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Routed]:
    """Nodes and routers shared by a module; the cluster is audited at the end."""
    with routed_cluster(tmp_path_factory.mktemp("routed")) as value:
        yield value
        value.harness.quiesce_stop_audit()
