"""The API says what the server does: posting kinds, best luck, and pending expiry.

``ledger.proto`` documents a posting's kind as its cause on either shard (a credit that
crossed shards reads TRANSFER_IN or ENVELOPE_GRAB, with an ``@inbox:<shard>``
counterparty; SETTLEMENT never on a wallet's statement), ``best_luck_ordinal`` as lucky
only (0 for a fixed envelope), and ``expiry_pending`` for an OPEN envelope past its TTL.
``Posting.seq`` is per wallet from 1 (no gap, whatever else the shard's journal holds),
History pages by an opaque ``page_token``, and RequestStatus answers an id's first result
or NOT_APPLIED (fencing it). These run the ledger and translate its answers with the
server's own functions.
"""

from __future__ import annotations

import base64
import random

import pytest

from hongbao.ledger import (
    Deposit,
    EnvelopeKind,
    Fence,
    GetHistory,
    GrabEnvelope,
    Limits,
    Rejected,
    SendEnvelope,
    ShowEnvelope,
    Transfer,
    query,
)
from hongbao.ledger.results import EnvelopeCreated, EnvelopeView, HistoryView, RequestStatusView
from hongbao.node import ledger_api as api
from hongbao.node.errors import ErrorReason, HongbaoError
from hongbao.proto.gen.hongbao.v1 import errors_pb2, ledger_pb2
from tests.ledger.helpers import Cluster, ok

TTL_MS = 60_000


def statement(c: Cluster, user: str) -> list[ledger_pb2.Posting]:
    view = ok(query(c.stores[c.shard_of(user)], GetHistory(user, 10)), HistoryView)
    return list(api.history_response(view).postings)


def test_cross_shard_credits_carry_the_kind_of_their_cause() -> None:
    c = Cluster(shard_count=3, limits=Limits(envelope_ttl_ms=TTL_MS))
    (sender,) = c.users(0, 1)
    (local,) = c.users(0, 1, stem="l")
    (remote,) = c.users(2, 1, stem="r")
    c.one(0, Deposit(c.rid(), sender, 10_000))
    c.one(0, Transfer(c.rid(), sender, remote, 700))
    c.one(0, Transfer(c.rid(), sender, local, 300))
    created = ok(
        c.one(0, SendEnvelope(c.rid(), sender, EnvelopeKind.FIXED, 1_000, 2)), EnvelopeCreated
    )
    c.one(0, GrabEnvelope(c.rid(), created.envelope_id, remote))
    c.one(0, GrabEnvelope(c.rid(), created.envelope_id, local))
    c.deliver_all()
    pb = ledger_pb2
    remote_lines = [(p.kind, p.amount_fen, p.counterparty) for p in statement(c, remote)]
    assert sorted(remote_lines) == sorted(
        [
            (pb.POSTING_KIND_TRANSFER_IN, 700, "@inbox:0"),
            (pb.POSTING_KIND_ENVELOPE_GRAB, 500, "@inbox:0"),
        ]
    )
    local_lines = [(p.kind, p.amount_fen) for p in statement(c, local)]
    assert sorted(local_lines) == sorted(
        [(pb.POSTING_KIND_TRANSFER_IN, 300), (pb.POSTING_KIND_ENVELOPE_GRAB, 500)]
    )
    sender_kinds = {p.kind for p in statement(c, sender)}
    assert sender_kinds == {
        pb.POSTING_KIND_DEPOSIT,
        pb.POSTING_KIND_TRANSFER_OUT,
        pb.POSTING_KIND_ENVELOPE_SEND,
    }
    everyone = statement(c, sender) + statement(c, local) + statement(c, remote)
    assert pb.POSTING_KIND_SETTLEMENT not in {p.kind for p in everyone}
    c.audit()


def test_best_luck_is_lucky_only_and_pending_expiry_reaches_the_api() -> None:
    c = Cluster(shard_count=1, limits=Limits(envelope_ttl_ms=TTL_MS))
    sender, a, b = c.users(0, 3)
    c.one(0, Deposit(c.rid(), sender, 10_000))
    ids = {}
    for kind in EnvelopeKind:
        created = ok(c.one(0, SendEnvelope(c.rid(), sender, kind, 1_000, 4)), EnvelopeCreated)
        ids[kind] = created.envelope_id
        c.one(0, GrabEnvelope(c.rid(), created.envelope_id, a))
        c.one(0, GrabEnvelope(c.rid(), created.envelope_id, b))

    def shown(kind: EnvelopeKind, now_ms: int) -> ledger_pb2.Envelope:
        view = ok(query(c.stores[0], ShowEnvelope(ids[kind]), now_ms=now_ms), EnvelopeView)
        return api.envelope_response(view).envelope

    fixed, lucky = shown(EnvelopeKind.FIXED, c.now_ms), shown(EnvelopeKind.LUCKY, c.now_ms)
    assert fixed.best_luck_ordinal == 0
    biggest = max(lucky.grabs, key=lambda g: (g.amount_fen, -g.ordinal))
    assert lucky.best_luck_ordinal == biggest.ordinal != 0
    assert not lucky.expiry_pending
    late = shown(EnvelopeKind.LUCKY, c.now_ms + TTL_MS)
    assert late.expiry_pending
    assert (late.state, late.refunded_fen, late.remaining_fen) == (
        ledger_pb2.ENVELOPE_STATE_OPEN,
        0,
        lucky.remaining_fen,
    )


# -- Posting.seq per wallet, and History pages ----------------------------------------------


def test_posting_seq_is_per_wallet_from_1_across_shards_traffic() -> None:
    """A user whose credits come from several shards' outboxes sees 1..N, no gap."""
    c = Cluster(shard_count=3)
    (watched,) = c.users(1, 1, stem="w")
    payers = [c.users(shard, 2, stem="p") for shard in range(3)]
    for shard, users in enumerate(payers):
        for user in users:
            c.one(shard, Deposit(c.rid(), user, 10_000))
    c.one(1, Deposit(c.rid(), watched, 1_000))
    for round_number in range(5):
        for shard, users in enumerate(payers):
            c.one(shard, Transfer(c.rid(), users[0], watched, 10 + round_number))
            c.one(shard, Transfer(c.rid(), users[0], users[1], 1))  # other lines, same journals
        c.one(1, Transfer(c.rid(), watched, payers[2][1], 3))
        c.deliver_all()
    view = ok(query(c.stores[1], GetHistory(watched, 500)), HistoryView)
    postings = list(api.history_response(view).postings)
    assert [p.seq for p in postings] == list(range(len(postings), 0, -1))
    assert len(postings) == 1 + 5 * 3 + 5
    assert {p.counterparty for p in postings} >= {"@inbox:0", "@inbox:2"}
    c.audit()


def _page(c: Cluster, user: str, limit: int, token: str) -> ledger_pb2.HistoryResponse:
    before_seq = api.history_before_seq(user, token)
    view = ok(query(c.stores[c.shard_of(user)], GetHistory(user, limit, before_seq)), HistoryView)
    return api.history_response(view)


def test_history_pages_by_token_return_every_posting_once_newest_first() -> None:
    c = Cluster(shard_count=1)
    alice, bob = c.users(0, 2)
    for n in range(23):
        c.one(0, Deposit(c.rid(), alice, 1 + n))
    seen: list[int] = []
    token = ""
    for _ in range(100):
        page = _page(c, alice, 5, token)
        seen.extend(p.seq for p in page.postings)
        c.one(0, Deposit(c.rid(), alice, 1))  # arrives while the client pages
        token = page.next_page_token
        if not token:
            break
    assert seen == list(range(23, 0, -1))
    assert _page(c, alice, 500, "").next_page_token == ""  # all on one page: no token
    c.one(0, Deposit(c.rid(), bob, 1))
    token = _page(c, alice, 5, "").next_page_token
    assert token
    for bad, why in [
        ("!!!", "malformed"),
        (token + "A", "malformed"),
        (token[:-2], "malformed"),
        ("A" * 200, "malformed"),
        (api.page_token(bob, 3), "another user"),
    ]:
        with pytest.raises(HongbaoError) as caught:
            api.history_before_seq(alice, bad)
        assert caught.value.reason is ErrorReason.INVALID_REQUEST
        assert why in caught.value.message


# -- RequestStatus: the first result in the shape of its answer -------------------------------


def test_request_status_reports_the_first_result_or_not_applied() -> None:
    c = Cluster(shard_count=2)
    (alice,) = c.users(0, 1)
    (bob,) = c.users(1, 1)
    c.one(0, Deposit("dep", alice, 1_000))
    c.one(0, Transfer("tr", alice, bob, 10))
    c.one(0, Transfer("poor", alice, bob, 10_000))

    def status(rid: str) -> ledger_pb2.RequestStatusResponse:
        view = ok(c.one(0, Fence(rid, alice)), RequestStatusView)
        return api.request_status_response(view)

    pb = ledger_pb2
    deposit = status("dep")
    assert deposit.outcome == pb.REQUEST_OUTCOME_APPLIED
    assert deposit.result.deposit.balance_fen == 1_000
    transfer = status("tr")
    assert (transfer.result.transfer.from_balance_fen, transfer.result.transfer.cross_shard) == (
        990,
        True,
    )
    poor = status("poor")
    assert poor.outcome == pb.REQUEST_OUTCOME_APPLIED
    assert poor.result.WhichOneof("result") == "error"
    assert poor.result.error.reason == errors_pb2.INSUFFICIENT_FUNDS
    lost = status("lost")
    assert lost.outcome == pb.REQUEST_OUTCOME_NOT_APPLIED
    assert not lost.HasField("result")
    late = c.one(0, Deposit("lost", alice, 1))
    assert isinstance(late, Rejected)
    assert api.rejected_error(late).reason is ErrorReason.REQUEST_FENCED


def test_no_page_token_crashes_the_parser() -> None:
    """Random bytes in base64, cuts and mutations of a real token: each is a canonical
    token of the right user (the token is opaque, not secret: another valid seq is fine)
    or an INVALID_REQUEST, never another exception."""
    rng = random.Random(5)
    real = api.page_token("alice", 12345)
    candidates = [real[:cut] for cut in range(1, len(real))]
    candidates += [
        base64.urlsafe_b64encode(rng.randbytes(rng.randrange(1, 90))).decode().rstrip("=")
        for _ in range(500)
    ]
    for _ in range(500):
        chars = list(real)
        chars[rng.randrange(len(chars))] = rng.choice("AZaz09-_=+/!")
        candidates.append("".join(chars))
    accepted, reasons = 0, set()
    for token in candidates:
        try:
            seq = api.history_before_seq("alice", token)
        except HongbaoError as error:
            reasons.add(error.reason)
            continue
        accepted += 1
        assert api.page_token("alice", seq) == token  # only alice's canonical tokens pass
    assert reasons == {ErrorReason.INVALID_REQUEST}
    assert 0 < accepted < len(candidates)
    assert api.history_before_seq("alice", real) == 12345
