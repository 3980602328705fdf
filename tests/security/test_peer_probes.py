"""The Peer probes of security-probe.md, with the same bytes, against real node processes.

Each test sends what the probe sent (raw generated stubs, no credentials) and checks that
the node keeps running, the cluster keeps its leaders and terms, the money does not move,
and the refusal is in the node's log. The cluster is shared (tests/security/conftest.py:
node 2 is down, so forgers claiming node 2 reach the per-message checks).

Closed by part A (validation), with no certificate:
- HUP (a local type), a message from node 99, SNAP without its snapshot, garbage behind a
  valid CRC-32, a heartbeat at term 2^64 - 1: refused whatever the sender.
- a forged APPEND at term + 1 (money from nothing), forged heartbeats at term + 1, a forged
  TIMEOUT_NOW, an APPEND at the current term from "the other follower": refused while the
  real leader holds its lease / is the known leader of the term.
- an APPEND claimed from the real leader while the leader's own stream is open: refused
  (one stream per node).
- a forged Peer.Deliver (10^9 fen; 19 of them past 2^63 - 1): refused, because every
  credit must match the source shard's outbox as the destination node's own replica of
  the source applied it; the next real credit is then applied, not dropped.

Needs part B (an authenticated sender; part B adds the TLS versions of these tests): the
same forged APPEND, TIMEOUT_NOW or higher-term message claimed from the node that may
send it at a moment it may (the real leader while its stream is down, or right after an
election, before any lease), a forced (transfer) vote request, and Admin.TransferLeader.
"""

from __future__ import annotations

import uuid

import grpc
import pytest

from hongbao.proto.gen.hongbao.v1 import ledger_pb2, peer_pb2
from hongbao.proto.gen.hongbao.v1 import raft_pb2 as MT
from tests.cluster.support import Harness, users_per_shard, wait_for
from tests.security.conftest import FORGED_NODE, assert_alive, log_size, wait_logged
from tests.security.raw_peer import (
    Prober,
    code_of,
    deposit_entry,
    garbage_snapshot_chunk,
    message,
)

pytestmark = pytest.mark.cluster

LIVE = (1, 3)
T0_MS = 1_800_000_000_000


def user_on(harness: Harness, shard_id: int, tag: str) -> str:
    return users_per_shard(harness.topology, 1, f"{tag}-{uuid.uuid4().hex[:8]}-")[shard_id][0]


def shard_led_by(harness: Harness, node_id: int) -> int:
    return min(s for s, leader in harness.leaders().items() if leader == node_id)


def follower_of(harness: Harness, shard_id: int) -> int:
    leader = harness.leaders()[shard_id]
    return next(n for n in LIVE if n != leader)


def replica(harness: Harness, node_id: int, shard_id: int) -> tuple[int, int, int]:
    """(term, last index, commit index) of one replica, from its node's Status."""
    status = harness.status(node_id)
    assert status is not None
    (shard,) = [s for s in status.shards if s.shard_id == shard_id]
    return int(shard.term), int(shard.last_index), int(shard.commit_index)


def has_no_account(harness: Harness, shard_id: int, user_id: str) -> bool:
    stub = harness.wallet(harness.leaders()[shard_id])
    try:
        stub.Balance(ledger_pb2.BalanceRequest(user_id=user_id), timeout=5)
    except grpc.RpcError as error:
        return code_of(error) == grpc.StatusCode.NOT_FOUND
    return False


def balance_fen(harness: Harness, shard_id: int, user_id: str) -> int | None:
    stub = harness.wallet(harness.leaders()[shard_id])
    try:
        return int(stub.Balance(ledger_pb2.BalanceRequest(user_id=user_id), timeout=5).balance_fen)
    except grpc.RpcError:
        return None


def unchanged(harness: Harness, leaders: dict[int, int], terms: dict[tuple[int, int], int]) -> None:
    assert_alive(harness, *LIVE)
    assert harness.leaders() == leaders
    assert harness.terms() == terms


def refused_without_harm(
    harness: Harness,
    prober: Prober,
    node_id: int,
    shard_id: int,
    forged: MT.Message,
    reason: str,
) -> None:
    """Send one forged message to ``node_id``: it is refused for ``reason`` (in the node's
    log), and every live node, leader and term is as it was."""
    marks = {n: log_size(harness, n) for n in LIVE}
    leaders, terms = harness.leaders(), harness.terms()
    assert prober.send(node_id, FORGED_NODE, (shard_id, forged)).code == grpc.StatusCode.OK
    wait_logged(harness, node_id, reason, after=marks[node_id])
    unchanged(harness, leaders, terms)


def test_an_append_claimed_from_the_live_leader_is_refused(probed: Harness, prober: Prober) -> None:
    """The stream claims the shard's real leader, whose own stream is open: refused."""
    marks = {node_id: log_size(probed, node_id) for node_id in LIVE}
    shard_id = shard_led_by(probed, 1)
    follower = follower_of(probed, shard_id)
    term, last, _ = replica(probed, follower, shard_id)
    mallory = user_on(probed, shard_id, "mallory")
    entry = deposit_entry(
        term=term, index=last + 1, user_id=mallory, amount_fen=4_000_000, ts_ms=T0_MS
    )
    forged = message(
        MT.MESSAGE_TYPE_APP,
        to=follower,
        from_=1,
        term=term,
        log_term=term,
        index=last,
        commit=last + 1,
        entries=[entry],
    )
    answer = prober.send(follower, 1, (shard_id, forged))
    assert answer.code == grpc.StatusCode.ALREADY_EXISTS, answer
    wait_logged(probed, follower, "duplicate_stream", after=marks[follower])
    assert has_no_account(probed, shard_id, mallory)


def test_hup_to_each_node_stops_nothing(probed: Harness, prober: Prober) -> None:
    marks = {node_id: log_size(probed, node_id) for node_id in LIVE}
    leaders, terms = probed.leaders(), probed.terms()
    for node_id in LIVE:
        answer = prober.send(
            node_id, FORGED_NODE, (0, message(MT.MESSAGE_TYPE_HUP, to=node_id, from_=FORGED_NODE))
        )
        assert answer.code == grpc.StatusCode.OK, answer
        wait_logged(probed, node_id, "local_type", after=marks[node_id])
    unchanged(probed, leaders, terms)


def test_a_message_from_node_99_stops_nothing(probed: Harness, prober: Prober) -> None:
    term, _, commit = replica(probed, 1, 0)
    forged = message(MT.MESSAGE_TYPE_HEARTBEAT, to=1, from_=99, term=term, commit=commit)
    refused_without_harm(probed, prober, 1, 0, forged, "sender_mismatch")


def test_a_snap_without_its_snapshot_stops_nothing(probed: Harness, prober: Prober) -> None:
    term, _, _ = replica(probed, 3, 0)
    forged = message(MT.MESSAGE_TYPE_SNAP, to=3, from_=FORGED_NODE, term=term)
    refused_without_harm(probed, prober, 3, 0, forged, "snap_not_chunked")


def test_garbage_behind_a_valid_crc_is_refused_before_it_replaces_anything(
    probed: Harness, prober: Prober
) -> None:
    marks = {node_id: log_size(probed, node_id) for node_id in LIVE}
    leaders, terms = probed.leaders(), probed.terms()
    shard_id = shard_led_by(probed, 3)
    term, last, _ = replica(probed, 1, shard_id)
    chunk = garbage_snapshot_chunk(
        shard_id=shard_id, to=1, from_=FORGED_NODE, term=term, index=last + 1_000
    )
    answer = prober.stream(1, [prober.batch(to=1, claiming=FORGED_NODE, chunks=[chunk])])
    assert answer.code == grpc.StatusCode.OK, answer
    (ack,) = [a for batch_ack in answer.acks for a in batch_ack.snapshot_acks]
    assert ack.status == peer_pb2.SNAPSHOT_CHUNK_STATUS_REJECTED
    assert "not a ledger snapshot" in ack.message
    wait_logged(probed, 1, "snapshot_rejected", after=marks[1])
    unchanged(probed, leaders, terms)
    assert replica(probed, 1, shard_id)[1] >= last  # its log was not replaced


def test_a_heartbeat_at_term_2_64_minus_1_changes_no_term(probed: Harness, prober: Prober) -> None:
    shard_id = shard_led_by(probed, 1)
    forged = message(MT.MESSAGE_TYPE_HEARTBEAT, to=3, from_=FORGED_NODE, term=2**64 - 1)
    refused_without_harm(probed, prober, 3, shard_id, forged, "out_of_bounds")


def test_a_forged_append_at_term_plus_one_creates_no_money(probed: Harness, prober: Prober) -> None:
    """5,000,000 fen for mallory, term + 1, to every live replica of shard 5."""
    marks = {node_id: log_size(probed, node_id) for node_id in LIVE}
    leaders, terms = probed.leaders(), probed.terms()
    shard_id = 5
    mallory = user_on(probed, shard_id, "mallory")
    for node_id in LIVE:
        term, last, _ = replica(probed, node_id, shard_id)
        entry = deposit_entry(
            term=term + 1, index=last + 1, user_id=mallory, amount_fen=5_000_000, ts_ms=T0_MS
        )
        forged = message(
            MT.MESSAGE_TYPE_APP,
            to=node_id,
            from_=FORGED_NODE,
            term=term + 1,
            log_term=term,
            index=last,
            commit=last + 1,
            entries=[entry],
        )
        assert prober.send(node_id, FORGED_NODE, (shard_id, forged)).code == grpc.StatusCode.OK
    for node_id in LIVE:
        wait_logged(probed, node_id, "lease_held", after=marks[node_id])
    unchanged(probed, leaders, terms)
    assert has_no_account(probed, shard_id, mallory)


def test_an_append_from_the_other_follower_does_not_diverge_replicas(
    probed: Harness, prober: Prober
) -> None:
    """At the current term, claimed from a follower, to the other follower; then a real
    deposit at the same index through the leader. The teardown audit compares digests."""
    marks = {node_id: log_size(probed, node_id) for node_id in LIVE}
    shard_id = shard_led_by(probed, 1)
    term, last, _ = replica(probed, 3, shard_id)
    mallory = user_on(probed, shard_id, "mallory")
    entry = deposit_entry(
        term=term, index=last + 1, user_id=mallory, amount_fen=3_000_000, ts_ms=T0_MS
    )
    forged = message(
        MT.MESSAGE_TYPE_APP,
        to=3,
        from_=FORGED_NODE,
        term=term,
        log_term=term,
        index=last,
        commit=last,
        entries=[entry],
    )
    assert prober.send(3, FORGED_NODE, (shard_id, forged)).code == grpc.StatusCode.OK
    wait_logged(probed, 3, "not_the_leader", after=marks[3])
    request = ledger_pb2.DepositRequest(request_id=uuid.uuid4().hex, user_id=mallory, amount_fen=7)
    assert probed.wallet(1).Deposit(request, timeout=5).balance_fen == 7
    assert balance_fen(probed, shard_id, mallory) == 7


def test_a_forged_timeout_now_moves_no_leader(probed: Harness, prober: Prober) -> None:
    shard_id = shard_led_by(probed, 1)
    term, _, _ = replica(probed, 3, shard_id)
    forged = message(MT.MESSAGE_TYPE_TIMEOUT_NOW, to=3, from_=FORGED_NODE, term=term)
    refused_without_harm(probed, prober, 3, shard_id, forged, "not_the_leader")


def test_forged_heartbeats_at_term_plus_one_depose_no_leader(
    probed: Harness, prober: Prober
) -> None:
    """Heartbeats at term + 1 to the leader and its follower, between real writes."""
    marks = {node_id: log_size(probed, node_id) for node_id in LIVE}
    leaders, terms = probed.leaders(), probed.terms()
    shard_id = shard_led_by(probed, 3)
    user = user_on(probed, shard_id, "writer")
    for round_number in range(40):
        for node_id in LIVE:
            term, _, _ = replica(probed, node_id, shard_id)
            forged = message(
                MT.MESSAGE_TYPE_HEARTBEAT, to=node_id, from_=FORGED_NODE, term=term + 1
            )
            prober.send(node_id, FORGED_NODE, (shard_id, forged))
        request = ledger_pb2.DepositRequest(
            request_id=f"{user}-{round_number}", user_id=user, amount_fen=1
        )
        assert probed.wallet(3).Deposit(request, timeout=5).balance_fen == round_number + 1
    wait_logged(probed, 3, "lease_held", after=marks[3])
    unchanged(probed, leaders, terms)


def test_a_forged_deliver_neither_credits_nor_costs_a_real_credit(
    probed: Harness, prober: Prober
) -> None:
    """10^9 fen forged from another shard to shard 5 (seq 1), and 19 forged credits past
    2^63 - 1 fen: refused; the next real transfer on that route still reaches its payee."""
    marks = {node_id: log_size(probed, node_id) for node_id in LIVE}
    leaders = probed.leaders()
    destination = 5  # and a source shard led elsewhere, so that a Deliver crosses nodes
    source = next(s for s, n in sorted(leaders.items()) if n != leaders[destination])
    mallory = user_on(probed, destination, "mallory")
    to, claiming = leaders[destination], leaders[source]
    code = prober.deliver(
        to, claiming=claiming, source=source, destination=destination, credits=[(1, mallory, 10**9)]
    )
    assert code != grpc.StatusCode.OK
    huge = [(seq, mallory, 5 * 10**17) for seq in range(1, 20)]
    assert (
        prober.deliver(to, claiming=claiming, source=source, destination=destination, credits=huge)
        != grpc.StatusCode.OK
    )
    wait_logged(probed, to, "deliver_unconfirmed", after=marks[to])
    payer, payee = user_on(probed, source, "payer"), user_on(probed, destination, "payee")
    source_wallet = probed.wallet(leaders[source])
    source_wallet.Deposit(
        ledger_pb2.DepositRequest(request_id=uuid.uuid4().hex, user_id=payer, amount_fen=700),
        timeout=5,
    )
    transfer = ledger_pb2.TransferRequest(
        request_id=uuid.uuid4().hex, from_user_id=payer, to_user_id=payee, amount_fen=600
    )
    source_wallet.Transfer(transfer, timeout=5)
    wait_for(
        lambda: balance_fen(probed, destination, payee) == 600, 10, "the real credit to arrive"
    )
    assert has_no_account(probed, destination, mallory)
    assert_alive(probed, *LIVE)
