"""Quiescence on real processes: an idle cluster goes quiet, wakes for work, and fails over.

A three-node cluster of configs/local.toml (fresh ports, no fsync), no traffic: every
group on every node reports ``hongbao_shard_quiesced 1`` and the nodes send keepalives.
A deposit to a quiesced shard is answered (the proposal wakes the group). Then the node
leading a quiesced shard is paused with SIGSTOP (its connections stay open, so only
node-level liveness can tell: no heartbeats were flowing): another node takes over and
takes writes. Once quiet again, the leader is killed with SIGKILL (its connections
break too), and again another node takes over. At the end the cluster is audited.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from hongbao.ledger.sharding import shard_for_user
from hongbao.ops.local import wait_until
from hongbao.proto.gen.hongbao.v1 import admin_pb2, ledger_pb2
from tests.cluster.support import Harness, running_cluster, users_per_shard
from tests.node.test_metrics import by_label, scrape, value

pytestmark = pytest.mark.cluster

QUIET_TIMEOUT_S = 20.0
FAILOVER_TIMEOUT_S = 20.0
# Idle cycles come every third of an election timeout: 30 of them are ten election
# timeouts of configs/local.toml, in which a churning group would elect many times.
STABLE_CYCLES = 30


@pytest.fixture
def harness(tmp_path: Path) -> Iterator[Harness]:
    with running_cluster(tmp_path) as running:
        yield running


def metrics_urls(harness: Harness) -> dict[int, str]:
    return {
        int(spec.node_id): f"http://{spec.metrics_address}/metrics"
        for spec in harness.topology.nodes
    }


def all_quiesced(urls: dict[int, str]) -> bool:
    for url in urls.values():
        quiesced = by_label(scrape(url), "hongbao_shard_quiesced", "shard")
        if not quiesced or not all(v == 1.0 for v in quiesced.values()):
            return False
    return True


def deposit(harness: Harness, node_id: int, user: str) -> None:
    request = ledger_pb2.DepositRequest(request_id=uuid.uuid4().hex, user_id=user, amount_fen=100)
    harness.wallet(node_id).Deposit(request, timeout=5.0)


def test_an_idle_cluster_quiesces_wakes_for_a_write_and_fails_over(harness: Harness) -> None:
    urls = metrics_urls(harness)
    shard_count = harness.topology.shard_count
    wait_until(lambda: all_quiesced(urls), QUIET_TIMEOUT_S, "every group on every node to quiesce")
    samples = scrape(urls[1])
    assert set(by_label(samples, "hongbao_shard_quiesced", "shard")) == {
        *(str(s) for s in range(shard_count)),
        "meta",
    }
    # Quiet means stable: over many election timeouts no group holds an election (a
    # quiesce heartbeat that never left once had every follower time out, over and over).
    terms_before = {
        n: by_label(scrape(url), "hongbao_shard_term", "shard") for n, url in urls.items()
    }
    # Let every node run its own clock through the window: cycles counted, not slept.
    cycles_before = {
        n: value(scrape(url), "hongbao_cycle_seconds_count") for n, url in urls.items()
    }
    wait_until(
        lambda: all(
            value(scrape(url), "hongbao_cycle_seconds_count") >= cycles_before[n] + STABLE_CYCLES
            for n, url in urls.items()
        ),
        QUIET_TIMEOUT_S,
        f"every node to run {STABLE_CYCLES} more cycles",
    )
    terms_after = {
        n: by_label(scrape(url), "hongbao_shard_term", "shard") for n, url in urls.items()
    }
    assert terms_after == terms_before
    assert all_quiesced(urls)
    keepalives = by_label(scrape(urls[1]), "hongbao_peer_keepalives_sent_total", "peer")
    assert set(keepalives) == {"2", "3"}
    assert all(v > 0 for v in keepalives.values())

    leaders = harness.leaders()
    user = users_per_shard(harness.topology, 1, "quiet-user-")[0][0]
    assert shard_for_user(user, shard_count) == 0
    deposit(harness, leaders[0], user)  # answered: the proposal woke shard 0
    wait_until(lambda: all_quiesced(urls), QUIET_TIMEOUT_S, "the cluster to go quiet again")

    # SIGSTOP keeps the victim's connections open: only node-level liveness can tell.
    paused = leaders[0]
    harness.cluster.pause(paused)
    try:
        wait_until(lambda: led_by_another(harness, 0, paused), FAILOVER_TIMEOUT_S,
                   "another node to lead shard 0 while its leader is paused")  # fmt: skip
    finally:
        harness.cluster.resume(paused)
    deposit(harness, harness.leaders()[0], user)
    wait_until(lambda: all_quiesced(urls), QUIET_TIMEOUT_S, "the cluster to go quiet again")

    # SIGKILL: the connections break as well.
    victim = harness.leaders()[0]
    harness.cluster.kill(victim)
    wait_until(lambda: led_by_another(harness, 0, victim), FAILOVER_TIMEOUT_S,
               "a survivor to lead shard 0")  # fmt: skip
    deposit(harness, harness.leaders()[0], user)
    harness.cluster.start([victim])
    harness.wait_quiescent()
    harness.quiesce_stop_audit()


def led_by_another(harness: Harness, shard_id: int, node_id: int) -> bool:
    """Another running node leads ``shard_id`` (``node_id`` is paused or dead: not asked)."""
    for other in harness.running():
        status = harness.status(other) if other != node_id else None
        if status is not None and any(
            s.shard_id == shard_id and s.role == admin_pb2.ROLE_LEADER for s in status.shards
        ):
            return True
    return False
