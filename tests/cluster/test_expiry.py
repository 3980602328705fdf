"""Envelope expiry on real processes: a short TTL from the topology's [limits].

The leaders' couriers sweep expired envelopes (ExpireEnvelopes, with the leader's clock):
the unclaimed remainder goes back to the sender through the log, without any grab to
trigger it, and a grab after that is refused with FAILED_PRECONDITION ENVELOPE_EXPIRED.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import grpc
import pytest

from hongbao.node.errors import ErrorReason
from hongbao.proto.gen.hongbao.v1 import ledger_pb2
from hongbao.proto.gen.hongbao.v1 import ledger_pb2_grpc as stubs
from tests.cluster.support import Harness, running_cluster, users_per_shard, wait_for
from tests.cluster.test_bad_input import (
    assert_no_account,
    assert_refused,
    balance,
    deposit,
    on_leader,
    rid,
    show,
    wait_balance,
)

pytestmark = pytest.mark.cluster

TTL_MS = 2_000
EXPIRY_TIMEOUT_S = 20.0


@pytest.fixture(scope="module")
def short_ttl(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Harness]:
    root = tmp_path_factory.mktemp("short-ttl")
    with running_cluster(root, limits={"envelope_ttl_ms": TTL_MS}) as harness:
        assert harness.topology.limits.envelope_ttl_ms == TTL_MS
        yield harness
        report = harness.quiesce_stop_audit()
        assert report.ledger is not None
        assert report.ledger.escrow_fen == 0  # everything expired or was grabbed


def test_expired_envelope_refunds_the_sender_and_refuses_grabs(short_ttl: Harness) -> None:
    harness = short_ttl
    shard_id = 4
    tag = uuid.uuid4().hex[:6]
    users = users_per_shard(harness.topology, 2, f"ttl-{tag}-")
    sender, late = users[shard_id]
    early = users[(shard_id + 1) % harness.topology.shard_count][0]
    assert deposit(harness, sender, 10_000) == 10_000

    def send(total: int, count: int) -> ledger_pb2.SendResponse:
        request = ledger_pb2.SendRequest(
            request_id=rid(),
            sender_user_id=sender,
            kind=ledger_pb2.ENVELOPE_KIND_LUCKY,
            total_fen=total,
            count=count,
        )
        return on_leader(harness, shard_id, lambda ch: stubs.EnvelopesStub(ch).Send(request))

    def grab(envelope_id: str, user: str) -> ledger_pb2.GrabResponse:
        request = ledger_pb2.GrabRequest(request_id=rid(), envelope_id=envelope_id, user_id=user)
        return on_leader(harness, shard_id, lambda ch: stubs.EnvelopesStub(ch).Grab(request))

    partly = send(1_000, 3)
    untouched = send(500, 2)
    emptied = send(300, 1)
    for sent in (partly, untouched, emptied):
        created = show(harness, sent.envelope_id, shard_id).created_at_ms
        assert sent.expires_at_ms - created == TTL_MS
    assert balance(harness, sender).balance_fen == 10_000 - 1_800
    share = grab(partly.envelope_id, early).amount_fen
    assert grab(emptied.envelope_id, early).amount_fen == 300
    wait_balance(harness, early, share + 300)
    refund = (1_000 - share) + 500
    expected_sender = 10_000 - 1_800 + refund

    def refunded() -> bool:
        views = [show(harness, s.envelope_id, shard_id) for s in (partly, untouched)]
        return (
            all(v.state == ledger_pb2.ENVELOPE_STATE_EXPIRED for v in views)
            and balance(harness, sender).balance_fen == expected_sender
        )

    wait_for(refunded, EXPIRY_TIMEOUT_S, "the expired envelopes to be refunded", poll_s=0.1)
    after = show(harness, partly.envelope_id, shard_id)
    assert (after.remaining_fen, after.refunded_fen, after.remaining_count) == (
        0,
        1_000 - share,
        2,
    )
    assert [(g.user_id, g.amount_fen) for g in after.grabs] == [(early, share)]
    assert show(harness, untouched.envelope_id, shard_id).refunded_fen == 500
    still_empty = show(harness, emptied.envelope_id, shard_id)
    assert still_empty.state == ledger_pb2.ENVELOPE_STATE_EMPTY
    assert still_empty.refunded_fen == 0
    # The refund went through the log: the sender's statement shows it.
    history = on_leader(
        harness,
        shard_id,
        lambda ch: stubs.WalletStub(ch).History(ledger_pb2.HistoryRequest(user_id=sender)),
    )
    refunds = {
        p.ref: p.amount_fen
        for p in history.postings
        if p.kind == ledger_pb2.POSTING_KIND_ENVELOPE_REFUND
    }
    assert refunds == {partly.envelope_id: 1_000 - share, untouched.envelope_id: 500}

    # Grabs after expiry are refused and change nothing.
    for envelope_id in (partly.envelope_id, untouched.envelope_id):
        before = show(harness, envelope_id, shard_id)
        request = ledger_pb2.GrabRequest(request_id=rid(), envelope_id=envelope_id, user_id=late)
        assert_refused(
            harness,
            shard_id,
            lambda ch, r=request: stubs.EnvelopesStub(ch).Grab(r),
            grpc.StatusCode.FAILED_PRECONDITION,
            ErrorReason.ENVELOPE_EXPIRED,
        )
        assert show(harness, envelope_id, shard_id) == before
    again = ledger_pb2.GrabRequest(request_id=rid(), envelope_id=partly.envelope_id, user_id=early)
    assert_refused(
        harness,
        shard_id,
        lambda ch: stubs.EnvelopesStub(ch).Grab(again),
        grpc.StatusCode.FAILED_PRECONDITION,
        ErrorReason.ALREADY_GRABBED,
    )
    assert_no_account(harness, late)
    assert balance(harness, sender).balance_fen == expected_sender
    assert balance(harness, early).balance_fen == share + 300
