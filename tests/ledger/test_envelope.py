"""Envelopes: shares, ids, cross-shard grabs, exactly-once expiry, show and best luck."""

from __future__ import annotations

from dataclasses import replace

from hongbao.ledger import (
    Deposit,
    EnvelopeKind,
    EnvelopeStatus,
    ExpireEnvelopes,
    Freeze,
    GetAccount,
    GrabEnvelope,
    Limits,
    Reason,
    SendEnvelope,
    ShowEnvelope,
    query,
)
from hongbao.ledger.envelope import _view
from hongbao.ledger.records import Envelope, Grab
from hongbao.ledger.results import (
    AccountView,
    EnvelopeCreated,
    EnvelopeView,
    ExpiryReport,
    GrabReceipt,
)

from .helpers import Cluster, ok, refused

TTL_MS = 60_000


def setup(shard_count: int = 3, funds: int = 100_000) -> tuple[Cluster, str]:
    c = Cluster(shard_count=shard_count, limits=Limits(envelope_ttl_ms=TTL_MS))
    (sender,) = c.users(0, 1)
    c.one(0, Deposit(c.rid(), sender, funds))
    return c, sender


def send(c: Cluster, sender: str, kind: EnvelopeKind, total: int, count: int) -> str:
    result = c.one(0, SendEnvelope(c.rid(), sender, kind, total, count))
    return ok(result, EnvelopeCreated).envelope_id


def show(c: Cluster, envelope_id: str, now_ms: int | None = None) -> EnvelopeView:
    result = query(c.stores[0], ShowEnvelope(envelope_id), now_ms=now_ms or c.now_ms)
    return ok(result, EnvelopeView)


def balance(c: Cluster, user: str) -> int:
    result = query(c.stores[c.shard_of(user)], GetAccount(user), now_ms=c.now_ms)
    return ok(result, AccountView).balance_fen


def grabbers(c: Cluster, count: int) -> list[str]:
    return [u for shard in range(c.shard_count) for u in c.users(shard, count, stem="g")]


def test_ids_name_the_shard_and_count_up() -> None:
    c, sender = setup()
    first = send(c, sender, EnvelopeKind.LUCKY, 100, 2)
    second = send(c, sender, EnvelopeKind.FIXED, 100, 2)
    assert (first, second) == ("e0-1", "e0-2")


def test_fixed_envelope_pays_equal_shares() -> None:
    c, sender = setup()
    envelope = send(c, sender, EnvelopeKind.FIXED, 600, 3)
    users = grabbers(c, 1)
    amounts = [
        ok(c.one(0, GrabEnvelope(c.rid(), envelope, user)), GrabReceipt).amount_fen
        for user in users
    ]
    assert amounts == [200, 200, 200]
    assert show(c, envelope).status is EnvelopeStatus.EMPTY
    assert show(c, envelope).best_luck_ordinal is None  # no luck in a fixed envelope
    c.audit()


def test_lucky_envelope_pays_exactly_its_total_across_shards() -> None:
    c, sender = setup()
    envelope = send(c, sender, EnvelopeKind.LUCKY, 10_000, 9)
    users = grabbers(c, 3)
    receipts = [ok(c.one(0, GrabEnvelope(c.rid(), envelope, u)), GrabReceipt) for u in users]
    assert sum(r.amount_fen for r in receipts) == 10_000
    assert all(1 <= r.amount_fen <= 2 * 10_000 // 9 for r in receipts)
    assert [r.ordinal for r in receipts] == list(range(1, 10))
    assert sum(r.outbox_seq is not None for r in receipts) == 6  # two thirds live elsewhere
    late = c.users(1, 4)[3]
    refused(c.one(0, GrabEnvelope(c.rid(), envelope, late)), Reason.ENVELOPE_EMPTY)
    assert c.audit().undelivered_fen > 0
    c.deliver_all()
    assert sum(balance(c, u) for u in users) == 10_000
    view = show(c, envelope)
    assert (view.grabbed_count, view.grabbed_fen, view.remaining_fen) == (9, 10_000, 0)
    assert [g.user_id for g in view.grabs] == users
    c.audit()


def test_expiry_refunds_exactly_once_whoever_notices_first() -> None:
    c, sender = setup()
    envelope = send(c, sender, EnvelopeKind.LUCKY, 1_000, 4)
    (grabber,) = c.users(0, 2)[1:]
    taken = ok(c.one(0, GrabEnvelope(c.rid(), envelope, grabber)), GrabReceipt).amount_fen
    expires = show(c, envelope).expires_at_ms
    nothing = ok(c.one(0, ExpireEnvelopes(expires - 1, 10), ts_ms=expires - 1), ExpiryReport)
    assert nothing.envelope_ids == ()
    swept = ok(c.one(0, ExpireEnvelopes(expires, 10), ts_ms=expires), ExpiryReport)
    assert (swept.envelope_ids, swept.refunded_fen) == ((envelope,), 1_000 - taken)
    again = ok(c.one(0, ExpireEnvelopes(expires, 10), ts_ms=expires + 5), ExpiryReport)
    assert again.envelope_ids == ()
    refused(c.one(0, GrabEnvelope(c.rid(), envelope, c.users(1, 1)[0])), Reason.ENVELOPE_EXPIRED)
    assert balance(c, sender) == 100_000 - taken
    c.audit()


def test_a_grab_after_the_ttl_refunds_lazily_and_the_sweep_skips_it() -> None:
    c, sender = setup()
    envelope = send(c, sender, EnvelopeKind.FIXED, 900, 3)
    expires = show(c, envelope).expires_at_ms
    late = c.one(0, GrabEnvelope(c.rid(), envelope, c.users(1, 1)[0]), ts_ms=expires)
    refused(late, Reason.ENVELOPE_EXPIRED)
    assert balance(c, sender) == 100_000
    sweep = ok(c.one(0, ExpireEnvelopes(expires, 10), ts_ms=expires), ExpiryReport)
    assert sweep.envelope_ids == ()
    assert show(c, envelope).refunded_fen == 900
    c.audit()


def test_show_past_the_ttl_reports_the_applied_state_and_claims_no_refund() -> None:
    """A read decides nothing: until a log entry expires it, the envelope is OPEN with its
    escrow, flagged expiry_pending; the refund is what the expiring entry applies."""
    c, sender = setup()
    envelope = send(c, sender, EnvelopeKind.LUCKY, 1_000, 3)
    c.one(0, GrabEnvelope(c.rid(), envelope, c.users(0, 2)[1]))
    before = show(c, envelope)
    expires = before.expires_at_ms
    assert not show(c, envelope, now_ms=expires - 1).expiry_pending
    pending = show(c, envelope, now_ms=expires)
    assert pending == replace(before, expiry_pending=True)
    assert (pending.status, pending.refunded_fen) == (EnvelopeStatus.OPEN, 0)
    # A grab stamped before the TTL still lands after that read, and the read stays true.
    late = ok(c.one(0, GrabEnvelope(c.rid(), envelope, sender), ts_ms=expires - 1), GrabReceipt)
    assert late.ordinal == 2
    swept = ok(c.one(0, ExpireEnvelopes(expires, 1), ts_ms=expires), ExpiryReport)
    after = show(c, envelope, now_ms=expires)
    assert (after.status, after.refunded_fen, after.expiry_pending) == (
        EnvelopeStatus.EXPIRED,
        pending.remaining_fen - late.amount_fen,
        False,
    )
    assert swept.refunded_fen == after.refunded_fen
    assert balance(c, sender) == 100_000 - 1_000 + late.amount_fen + after.refunded_fen


def test_show_flags_pending_expiry_by_the_shard_clock_even_for_a_lagging_reader() -> None:
    c, sender = setup()
    envelope = send(c, sender, EnvelopeKind.FIXED, 900, 3)
    expires = show(c, envelope).expires_at_ms
    c.one(0, Deposit(c.rid(), sender, 1), ts_ms=expires + 5)  # the shard clock passes it
    shown = show(c, envelope, now_ms=expires - 10_000)
    assert (shown.status, shown.expiry_pending, shown.refunded_fen) == (
        EnvelopeStatus.OPEN,
        True,
        0,
    )


def test_sweep_is_bounded_and_goes_in_expiry_order() -> None:
    c, sender = setup()
    ids = [send(c, sender, EnvelopeKind.FIXED, 10, 1) for _ in range(3)]
    later = c.now_ms + TTL_MS
    first = ok(c.one(0, ExpireEnvelopes(later, 2), ts_ms=later), ExpiryReport)
    second = ok(c.one(0, ExpireEnvelopes(later, 2), ts_ms=later), ExpiryReport)
    assert (first.envelope_ids, second.envelope_ids) == (tuple(ids[:2]), (ids[2],))


def test_a_frozen_sender_still_gets_the_refund() -> None:
    c, sender = setup()
    envelope = send(c, sender, EnvelopeKind.FIXED, 500, 5)
    c.one(0, Freeze(c.rid(), sender))
    expires = show(c, envelope).expires_at_ms
    ok(c.one(0, ExpireEnvelopes(expires, 5), ts_ms=expires), ExpiryReport)
    assert balance(c, sender) == 100_000


def test_sender_may_grab_their_own_envelope_once() -> None:
    c, sender = setup()
    envelope = send(c, sender, EnvelopeKind.FIXED, 200, 2)
    ok(c.one(0, GrabEnvelope(c.rid(), envelope, sender)), GrabReceipt)
    refused(c.one(0, GrabEnvelope(c.rid(), envelope, sender)), Reason.ALREADY_GRABBED)


def test_grab_and_show_refuse_envelopes_of_other_shards() -> None:
    c, _ = setup()
    refused(c.one(0, GrabEnvelope(c.rid(), "e1-1", "someone")), Reason.WRONG_SHARD)
    refused(query(c.stores[0], ShowEnvelope("e1-1"), now_ms=0), Reason.WRONG_SHARD)
    refused(query(c.stores[0], ShowEnvelope("e0-7"), now_ms=0), Reason.ENVELOPE_NOT_FOUND)
    refused(query(c.stores[0], ShowEnvelope("x"), now_ms=0), Reason.MALFORMED_ENVELOPE_ID)


def test_best_luck_is_the_largest_share_and_ties_go_to_the_earliest() -> None:
    envelope = Envelope("e0-1", 1, "s", EnvelopeKind.LUCKY, 100, 4, 50, 0, 0, 0,
                        EnvelopeStatus.EMPTY, 0, 1, "00")  # fmt: skip
    grabs = (Grab(1, "a", 20, 5), Grab(2, "b", 30, 6), Grab(3, "c", 30, 7), Grab(4, "d", 20, 8))
    assert _view(envelope, grabs, expiry_pending=False).best_luck_ordinal == 2
    assert _view(envelope, (), expiry_pending=False).best_luck_ordinal is None
    fixed = replace(envelope, kind=EnvelopeKind.FIXED)
    assert _view(fixed, grabs, expiry_pending=False).best_luck_ordinal is None
