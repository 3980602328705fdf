"""The meta group under mutual TLS: its Raft messages pass the peer binding, so it elects
and commits like a shard, and the state reaches every node."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.meta.test_cluster_state_processes import (
    ACTIVE,
    DRAINING,
    set_state,
    wait_converged,
)
from tests.security.tls_support import TlsCluster, tls_cluster


@pytest.fixture(scope="module")
def secured(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TlsCluster]:
    with tls_cluster(tmp_path_factory.mktemp("meta-tls")) as cluster:
        yield cluster


def test_set_region_state_with_tls(secured: TlsCluster) -> None:
    harness = secured.harness
    drained = set_state(harness, "shanghai", DRAINING)
    wait_converged(harness, drained.version)
    active = set_state(harness, "shanghai", ACTIVE)
    assert active.version == drained.version + 1
    wait_converged(harness, active.version)
    for node_id in harness.running():
        assert secured.log_count(node_id, "no replica of shard 65536") == 0
