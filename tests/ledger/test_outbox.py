"""Cross-shard delivery: in order, exactly once, duplicates ignored, gaps refused."""

from __future__ import annotations

from dataclasses import replace

import pytest

from hongbao.ledger import (
    Acknowledge,
    Deposit,
    GetInboxSeq,
    Limits,
    Reason,
    SetLimits,
    Transfer,
    deliver_command,
    inbox_seq,
    outbox_destinations,
    pending_outbox,
    query,
)
from hongbao.ledger import outbox as outbox_module
from hongbao.ledger.audit import audit
from hongbao.ledger.results import AckReceipt, DeliveryReceipt, InboxPosition, LimitsView

from .helpers import Cluster, ok, refused


def three_transfers() -> tuple[Cluster, str, str]:
    c = Cluster(shard_count=2, limits=Limits(outbox_batch_max=2))
    (alice,) = c.users(0, 1)
    (bob,) = c.users(1, 1)
    c.one(0, Deposit(c.rid(), alice, 1_000))
    for amount in (100, 200, 300):
        c.one(0, Transfer(c.rid(), alice, bob, amount))
    return c, alice, bob


def test_deliveries_apply_in_order_exactly_once() -> None:
    c, _, bob = three_transfers()
    entries = pending_outbox(c.stores[0], 1, 10)
    assert [(e.seq, e.amount_fen, e.user_id) for e in entries] == [
        (1, 100, bob),
        (2, 200, bob),
        (3, 300, bob),
    ]
    first, second, third = (deliver_command(e) for e in entries)
    results = c.apply(1, third, second, first, first, second, first)
    refused(results[0], Reason.SEQUENCE_GAP)
    refused(results[1], Reason.SEQUENCE_GAP)
    assert [ok(r, DeliveryReceipt).applied for r in results[2:]] == [True, False, True, False]
    assert inbox_seq(c.stores[1], 0) == 2
    assert ok(c.one(1, third), DeliveryReceipt).applied
    assert ok(c.one(1, third), DeliveryReceipt).applied is False
    assert c.audit().undelivered_fen == 0


def test_acknowledge_drops_delivered_entries_in_bounded_steps() -> None:
    c, _, _ = three_transfers()
    assert outbox_destinations(c.stores[0]) == [1]
    c.apply(1, *(deliver_command(e) for e in pending_outbox(c.stores[0], 1, 10)))
    report = c.audit()
    assert report.undelivered_fen == 0  # delivered, not yet acknowledged: counted once
    refused(c.one(0, Acknowledge(1, 4)), Reason.ACK_BEYOND_OUTBOX)
    step = ok(c.one(0, Acknowledge(1, 3)), AckReceipt)
    assert (step.acked_seq, step.dropped_count, step.dropped_fen) == (2, 2, 300)  # at most 2
    assert [e.seq for e in pending_outbox(c.stores[0], 1, 10)] == [3]
    rest = ok(c.one(0, Acknowledge(1, 3)), AckReceipt)
    assert (rest.acked_seq, rest.dropped_count) == (3, 1)
    stale = ok(c.one(0, Acknowledge(1, 1)), AckReceipt)
    assert (stale.acked_seq, stale.dropped_count) == (3, 0)
    assert outbox_destinations(c.stores[0]) == []
    assert c.audit() == report


def test_a_delivery_is_never_refused_for_a_limit_changed_after_its_debit() -> None:
    c, _, _bob = three_transfers()
    ok(c.one(1, SetLimits(c.rid(), Limits(amount_max_fen=1, daily_outgoing_max_fen=1))), LimitsView)
    c.deliver_all()
    assert c.audit().balances_fen == 1_000


def test_deliveries_to_the_wrong_shard_are_refused() -> None:
    c, alice, _ = three_transfers()
    entry = deliver_command(pending_outbox(c.stores[0], 1, 1)[0])
    refused(c.one(0, entry), Reason.INVALID_SHARD)  # from itself
    refused(c.one(1, replace(entry, user_id=alice)), Reason.WRONG_SHARD)
    refused(c.one(1, replace(entry, source_shard=2)), Reason.INVALID_SHARD)


def test_inbox_position_query() -> None:
    c, _, _ = three_transfers()
    c.deliver_all()
    position = ok(query(c.stores[1], GetInboxSeq(0), now_ms=0), InboxPosition)
    assert position == InboxPosition(0, 3)
    refused(query(c.stores[1], GetInboxSeq(7), now_ms=0), Reason.INVALID_SHARD)


def test_the_audit_catches_a_courier_that_applies_duplicates(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    c, _, _ = three_transfers()
    first = deliver_command(pending_outbox(c.stores[0], 1, 1)[0])
    c.one(1, first)
    monkeypatch.setattr(outbox_module, "inbox_seq", lambda store, source: first.seq - 1)
    c.one(1, first)  # the broken destination applies it a second time
    report = audit(c.stores)
    assert not report.ok
    assert any("conservation" in problem for problem in report.problems)
