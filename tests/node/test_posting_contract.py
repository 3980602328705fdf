"""The API says what the server does: posting kinds, best luck, and pending expiry.

``ledger.proto`` documents a posting's kind as its cause on either shard (a credit that
crossed shards reads TRANSFER_IN or ENVELOPE_GRAB, with an ``@inbox:<shard>``
counterparty; SETTLEMENT never on a wallet's statement), ``best_luck_ordinal`` as lucky
only (0 for a fixed envelope), and ``expiry_pending`` for an OPEN envelope past its TTL.
These run the ledger and translate its answers with the server's own functions.
"""

from __future__ import annotations

from hongbao.ledger import (
    Deposit,
    EnvelopeKind,
    GetHistory,
    GrabEnvelope,
    Limits,
    SendEnvelope,
    ShowEnvelope,
    Transfer,
    query,
)
from hongbao.ledger.results import EnvelopeCreated, EnvelopeView, HistoryView
from hongbao.node import ledger_api as api
from hongbao.proto.gen.hongbao.v1 import ledger_pb2
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
