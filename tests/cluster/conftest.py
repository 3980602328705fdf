"""Fixtures for the multi-process tests: real ``hongbao node run`` processes on 127.0.0.1."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from tests.cluster.support import Harness, running_cluster


@pytest.fixture(scope="session", autouse=True)
def _node_stacks_on_abort() -> Iterator[None]:
    """Node processes inherit this: on SIGABRT (sent to a hung node) they dump their stacks."""
    previous = os.environ.get("PYTHONFAULTHANDLER")
    os.environ["PYTHONFAULTHANDLER"] = "1"
    yield
    if previous is None:
        del os.environ["PYTHONFAULTHANDLER"]
    else:
        os.environ["PYTHONFAULTHANDLER"] = previous


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Harness]:
    """One 3-node cluster (configs/local.toml, fresh ports, no fsync) shared by a module.

    For modules whose tests leave it running. At teardown it is quiesced, stopped and
    audited: whatever the tests did, the replicas must agree and the money must add up.
    """
    with running_cluster(tmp_path_factory.mktemp("cluster"), no_fsync=True) as harness:
        yield harness
        harness.quiesce_stop_audit()
