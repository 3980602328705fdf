"""Wallet rules: balances never below zero, transfers, freeze, the daily limit's day."""

from __future__ import annotations

from hongbao.ledger import (
    Deposit,
    EnvelopeKind,
    Freeze,
    GetAccount,
    GetHistory,
    GrabEnvelope,
    Limits,
    Reason,
    SendEnvelope,
    Transfer,
    Unfreeze,
    Withdraw,
    query,
    shard_clock_ms,
)
from hongbao.ledger.limits import DAY_MS
from hongbao.ledger.records import TxKind
from hongbao.ledger.results import (
    AccountView,
    EnvelopeCreated,
    HistoryView,
    TransferReceipt,
)

from .helpers import Cluster, ok, refused


def balance(c: Cluster, user: str) -> int:
    result = query(c.stores[c.shard_of(user)], GetAccount(user), now_ms=c.now_ms)
    return ok(result, AccountView).balance_fen


def test_deposit_withdraw_to_exactly_zero_and_no_further() -> None:
    c = Cluster()
    (alice,) = c.users(0, 1)
    assert ok(c.one(0, Deposit(c.rid(), alice, 500)), AccountView).balance_fen == 500
    assert ok(c.one(0, Withdraw(c.rid(), alice, 500)), AccountView).balance_fen == 0
    refused(c.one(0, Withdraw(c.rid(), alice, 1)), Reason.INSUFFICIENT_FUNDS)
    assert balance(c, alice) == 0
    c.audit()


def test_same_shard_transfer_is_one_atomic_step() -> None:
    c = Cluster()
    alice, bob = c.users(0, 2)
    c.one(0, Deposit(c.rid(), alice, 1_000))
    receipt = ok(c.one(0, Transfer(c.rid(), alice, bob, 300)), TransferReceipt)
    assert (receipt.outbox_seq, receipt.destination_shard, receipt.from_balance_fen) == (
        None,
        0,
        700,
    )
    assert (balance(c, alice), balance(c, bob)) == (700, 300)
    assert c.audit().undelivered_fen == 0


def test_cross_shard_transfer_goes_through_the_outbox() -> None:
    c = Cluster()
    (alice,) = c.users(0, 1)
    (bob,) = c.users(2, 1)
    c.one(0, Deposit(c.rid(), alice, 1_000))
    first = ok(c.one(0, Transfer(c.rid(), alice, bob, 300)), TransferReceipt)
    second = ok(c.one(0, Transfer(c.rid(), alice, bob, 200)), TransferReceipt)
    assert (first.outbox_seq, second.outbox_seq, first.destination_shard) == (1, 2, 2)
    assert balance(c, alice) == 500
    assert c.audit().undelivered_fen == 500  # conserved while in flight
    assert c.deliver_all() == 2
    assert balance(c, bob) == 500
    assert c.audit().undelivered_fen == 0


def test_frozen_accounts_receive_but_cannot_pay() -> None:
    c = Cluster()
    alice, carol = c.users(0, 2)
    (bob,) = c.users(1, 1)
    for user in (alice, carol):
        c.one(0, Deposit(c.rid(), user, 1_000))
    c.one(1, Deposit(c.rid(), bob, 1_000))
    assert ok(c.one(0, Freeze(c.rid(), alice)), AccountView).frozen
    for command in (
        Withdraw(c.rid(), alice, 1),
        Transfer(c.rid(), alice, carol, 1),
        SendEnvelope(c.rid(), alice, EnvelopeKind.FIXED, 10, 1),
    ):
        refused(c.one(0, command), Reason.ACCOUNT_FROZEN)
    ok(c.one(0, Deposit(c.rid(), alice, 5)), AccountView)
    ok(c.one(0, Transfer(c.rid(), carol, alice, 5)), TransferReceipt)
    ok(c.one(1, Transfer(c.rid(), bob, alice, 5)), TransferReceipt)
    c.deliver_all()
    sent = ok(c.one(0, SendEnvelope(c.rid(), carol, EnvelopeKind.FIXED, 10, 1)), EnvelopeCreated)
    ok(c.one(0, GrabEnvelope(c.rid(), sent.envelope_id, alice)), object)
    assert balance(c, alice) == 1_025
    assert ok(c.one(0, Freeze(c.rid(), alice)), AccountView).frozen  # twice is harmless
    assert not ok(c.one(0, Unfreeze(c.rid(), alice)), AccountView).frozen
    ok(c.one(0, Withdraw(c.rid(), alice, 25)), AccountView)
    c.audit()


def test_daily_limit_resets_at_midnight_china_time() -> None:
    limits = Limits(amount_max_fen=1_000, daily_outgoing_max_fen=1_000)
    midnight_cst = 19_700 * DAY_MS - 8 * 3_600_000  # 00:00 UTC+8 is 16:00 UTC the day before
    c = Cluster(shard_count=1, limits=limits, now_ms=midnight_cst - 60_000)
    (alice,) = c.users(0, 1)
    c.one(0, Deposit(c.rid(), alice, 1_000))
    c.one(0, Deposit(c.rid(), alice, 1_000))
    ok(c.one(0, Withdraw(c.rid(), alice, 600)), AccountView)
    refused(c.one(0, Withdraw(c.rid(), alice, 401)), Reason.DAILY_LIMIT_EXCEEDED)
    late = ok(c.one(0, Withdraw(c.rid(), alice, 400), ts_ms=midnight_cst - 1), AccountView)
    assert late.outgoing_today_fen == 1_000
    refused(
        c.one(0, Withdraw(c.rid(), alice, 1), ts_ms=midnight_cst - 1), Reason.DAILY_LIMIT_EXCEEDED
    )
    fresh = ok(c.one(0, Withdraw(c.rid(), alice, 1_000), ts_ms=midnight_cst), AccountView)
    assert fresh.outgoing_today_fen == 1_000
    assert fresh.outgoing_day == late.outgoing_day + 1
    # A lagging leader's clock cannot reopen yesterday: the shard clock never goes back.
    refused(
        c.one(0, Withdraw(c.rid(), alice, 1), ts_ms=midnight_cst - 5), Reason.INSUFFICIENT_FUNDS
    )
    assert shard_clock_ms(c.stores[0]) == midnight_cst


def test_incoming_money_does_not_count_against_the_daily_limit() -> None:
    limits = Limits(amount_max_fen=1_000, daily_outgoing_max_fen=1_000)
    c = Cluster(shard_count=1, limits=limits)
    alice, bob = c.users(0, 2)
    c.one(0, Deposit(c.rid(), alice, 1_000))
    c.one(0, Transfer(c.rid(), alice, bob, 1_000))
    refused(c.one(0, Withdraw(c.rid(), alice, 1)), Reason.INSUFFICIENT_FUNDS)
    ok(c.one(0, Transfer(c.rid(), bob, alice, 1_000)), TransferReceipt)  # bob's own first payment
    refused(c.one(0, Transfer(c.rid(), alice, bob, 1)), Reason.DAILY_LIMIT_EXCEEDED)


def test_history_is_newest_first_double_entry_with_running_balance() -> None:
    c = Cluster()
    alice, bob = c.users(0, 2)
    c.one(0, Deposit("d1", alice, 1_000))
    c.one(0, Transfer("t1", alice, bob, 300))
    c.one(0, Withdraw("w1", alice, 100))
    view = ok(query(c.stores[0], GetHistory(alice, limit=10), now_ms=0), HistoryView)
    lines = [(e.kind, e.ref, e.delta_fen, e.balance_fen, e.counterparty) for e in view.entries]
    assert lines == [
        (TxKind.WITHDRAW, "w1", -100, 600, "@world"),
        (TxKind.TRANSFER, "t1", -300, 700, f"u:{bob}"),
        (TxKind.DEPOSIT, "d1", 1_000, 1_000, "@world"),
    ]
    two = ok(query(c.stores[0], GetHistory(alice, limit=2), now_ms=0), HistoryView)
    assert two.entries == view.entries[:2]
    bobs = ok(query(c.stores[0], GetHistory(bob, limit=10), now_ms=0), HistoryView)
    assert [(e.delta_fen, e.counterparty) for e in bobs.entries] == [(300, f"u:{alice}")]


def test_queries_refuse_unknown_and_misrouted_users() -> None:
    c = Cluster()
    (nobody,) = c.users(0, 1)
    (elsewhere,) = c.users(1, 1)
    store = c.stores[0]
    refused(query(store, GetAccount(nobody), now_ms=0), Reason.ACCOUNT_NOT_FOUND)
    refused(query(store, GetHistory(nobody, 5), now_ms=0), Reason.ACCOUNT_NOT_FOUND)
    refused(query(store, GetAccount(elsewhere), now_ms=0), Reason.WRONG_SHARD)
    refused(query(store, GetHistory(elsewhere, 5), now_ms=0), Reason.WRONG_SHARD)
    refused(query(store, GetAccount("bad id"), now_ms=0), Reason.MALFORMED_USER_ID)
