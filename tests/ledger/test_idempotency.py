"""Retries: the first answer again and not a byte changed; a reused id is refused."""

from __future__ import annotations

from hongbao.ledger import (
    Deposit,
    EnvelopeKind,
    Limits,
    Reason,
    SendEnvelope,
    SetLimits,
    Table,
    Withdraw,
)
from hongbao.ledger.books import read_state
from hongbao.ledger.results import AccountView, EnvelopeCreated

from .helpers import Cluster, all_but_time, ok, refused


def test_a_retry_returns_the_first_result_and_changes_nothing() -> None:
    c = Cluster(shard_count=1)
    (alice,) = c.users(0, 1)
    deposit = Deposit("dep-1", alice, 700)
    send = SendEnvelope("env-1", alice, EnvelopeKind.LUCKY, 300, 3)
    overdraw = Withdraw("wd-1", alice, 10_000)
    first = c.apply(0, deposit, send, overdraw)
    refused(first[2], Reason.INSUFFICIENT_FUNDS)
    before = all_but_time(c.stores[0])
    c.now_ms += 5_000
    again = c.apply(0, overdraw, send, deposit)
    assert again == first[::-1]
    assert ok(again[1], EnvelopeCreated).envelope_id == "e0-1"
    assert all_but_time(c.stores[0]) == before  # only the applied index and the clock moved
    assert read_state(c.stores[0]).idempotency_count == 3


def test_retries_inside_one_batch() -> None:
    c = Cluster(shard_count=1)
    (alice,) = c.users(0, 1)
    deposit = Deposit("dep-1", alice, 700)
    results = c.apply(0, deposit, deposit, deposit)
    assert results[0] == results[1] == results[2]
    assert ok(results[0], AccountView).balance_fen == 700


def test_a_reused_request_id_is_refused_and_the_first_answer_stays() -> None:
    c = Cluster(shard_count=1)
    (alice,) = c.users(0, 1)
    first = c.one(0, Deposit("dep-1", alice, 700))
    refused(c.one(0, Deposit("dep-1", alice, 701)), Reason.REQUEST_ID_REUSED)
    refused(c.one(0, Withdraw("dep-1", alice, 1)), Reason.REQUEST_ID_REUSED)
    assert c.one(0, Deposit("dep-1", alice, 700)) == first


RETENTION_MS = Limits().idempotency_retention_ms


def test_the_window_forgets_the_oldest_ids_first() -> None:
    c = Cluster(shard_count=1, limits=Limits(idempotency_results_max=3))
    (alice,) = c.users(0, 1)
    for n in range(3):
        c.one(0, Deposit(f"dep-{n}", alice, 1))
    c.now_ms += RETENTION_MS  # dep-0..dep-2 are now old enough to be forgotten
    c.one(0, Deposit("dep-3", alice, 1))
    assert read_state(c.stores[0]).idempotency_count == 3
    # dep-3..dep-1 are remembered: retries change nothing.
    assert ok(c.one(0, Deposit("dep-1", alice, 1)), AccountView).balance_fen == 2
    # dep-0 was evicted: beyond the window a retry is a new request (size it accordingly).
    assert ok(c.one(0, Deposit("dep-0", alice, 1)), AccountView).balance_fen == 5


def test_no_id_is_forgotten_within_the_retention_however_many_come_after() -> None:
    # A burst of newer requests must not push out one a client may still retry: the
    # table grows past idempotency_results_max until the old ids age out.
    c = Cluster(shard_count=1, limits=Limits(idempotency_results_max=3))
    (alice,) = c.users(0, 1)
    first = c.one(0, Deposit("dep-0", alice, 1))
    c.now_ms += RETENTION_MS - 1
    c.apply(0, *(Deposit(f"burst-{n}", alice, 1) for n in range(20)))
    assert read_state(c.stores[0]).idempotency_count == 21
    assert c.one(0, Deposit("dep-0", alice, 1)) == first  # answered, not applied again
    c.now_ms += 1  # dep-0 is now RETENTION_MS old: the next ids may evict it
    c.one(0, Deposit("after-0", alice, 1))
    assert ok(c.one(0, Deposit("dep-0", alice, 1)), AccountView).balance_fen == 23
    assert read_state(c.stores[0]).idempotency_count <= 22


def test_shrinking_the_window_drains_it_a_few_ids_per_command() -> None:
    c = Cluster(shard_count=1, limits=Limits(idempotency_results_max=100))
    (alice,) = c.users(0, 1)
    c.apply(0, *(Deposit(f"dep-{n}", alice, 1) for n in range(30)))
    c.now_ms += RETENTION_MS
    c.one(0, SetLimits("shrink", Limits(idempotency_results_max=2)))
    counts = []
    for n in range(5):
        c.one(0, Deposit(f"more-{n}", alice, 1))
        counts.append(read_state(c.stores[0]).idempotency_count)
    # SetLimits's own record already evicts 8; then 8 per new id until only ids within
    # the retention are left (SetLimits's and the new ones), which are kept.
    assert counts == [16, 9, 4, 5, 6]
    c.now_ms += RETENTION_MS
    c.one(0, Deposit("later", alice, 1))
    assert read_state(c.stores[0]).idempotency_count == 2
    assert c.stores[0].row_count(Table.IDEMPOTENCY) == 2
    assert c.stores[0].row_count(Table.IDEMPOTENCY_ORDER) == 2
