"""Request status (Fence): the first outcome of a request id is final.

An id the shard remembers answers "applied" with its first result (a refusal included);
an unknown id answers "not applied" and is fenced in the same apply, so a late retry of
it is refused (REQUEST_FENCED) and cannot make that answer false. Fenced ids age out with
the idempotency window, like every remembered id.
"""

from __future__ import annotations

from hongbao.ledger import (
    Deposit,
    Fence,
    Limits,
    Reason,
    Transfer,
    Withdraw,
    idempotency,
)
from hongbao.ledger.books import read_state
from hongbao.ledger.results import AccountView, RequestStatusView, TransferReceipt

from .helpers import Cluster, all_but_time, money_view, ok, refused


def test_an_applied_id_answers_its_first_result() -> None:
    c = Cluster(shard_count=2)
    (alice,) = c.users(0, 1)
    (bob,) = c.users(1, 1)
    first = ok(c.one(0, Deposit("dep", alice, 500)), AccountView)
    status = ok(c.one(0, Fence("dep", alice)), RequestStatusView)
    assert (status.applied, status.command, status.first_ok) == (True, "deposit", first)
    assert status.first_rejected is None
    receipt = ok(c.one(0, Transfer("tr", alice, bob, 100)), TransferReceipt)
    status = ok(c.one(0, Fence("tr", alice)), RequestStatusView)
    assert (status.command, status.first_ok) == ("transfer", receipt)
    before = all_but_time(c.stores[0])
    again = c.one(0, Fence("tr", alice))
    assert ok(again, RequestStatusView) == status
    assert all_but_time(c.stores[0]) == before  # asking again about an applied id: nothing
    c.audit()


def test_a_refusal_is_a_result_too() -> None:
    c = Cluster(shard_count=1)
    (alice,) = c.users(0, 1)
    c.one(0, Deposit(c.rid(), alice, 5))
    first = refused(c.one(0, Withdraw("wd", alice, 10)), Reason.INSUFFICIENT_FUNDS)
    status = ok(c.one(0, Fence("wd", alice)), RequestStatusView)
    assert (status.applied, status.command, status.first_rejected) == (True, "withdraw", first)
    assert status.first_ok is None


def test_an_unknown_id_is_fenced_and_a_late_retry_is_refused() -> None:
    c = Cluster(shard_count=1)
    (alice,) = c.users(0, 1)
    c.one(0, Deposit(c.rid(), alice, 1_000))
    money_before = money_view(c.stores[0])
    status = ok(c.one(0, Fence("lost", alice)), RequestStatusView)
    assert (status.applied, status.command) == (False, "")
    assert money_view(c.stores[0]) == money_before  # fencing moves no money
    late = refused(c.one(0, Withdraw("lost", alice, 100)), Reason.REQUEST_FENCED)
    assert "fenced" in late.message
    assert ok(c.one(0, Fence("lost", alice)), RequestStatusView) == status  # still final
    assert money_view(c.stores[0]) == money_before
    c.audit()


def test_status_in_the_same_batch_as_the_command_sees_the_order() -> None:
    c = Cluster(shard_count=1)
    (alice,) = c.users(0, 1)
    results = c.apply(0, Fence("a", alice), Deposit("a", alice, 1), Deposit("b", alice, 1))
    assert not ok(results[0], RequestStatusView).applied
    refused(results[1], Reason.REQUEST_FENCED)
    status = ok(c.one(0, Fence("b", alice)), RequestStatusView)
    assert status.applied


def test_status_on_the_wrong_shard_or_malformed_is_refused_and_fences_nothing() -> None:
    c = Cluster(shard_count=2)
    (alice,) = c.users(0, 1)
    (bob,) = c.users(1, 1)
    refused(c.one(0, Fence("x", bob)), Reason.WRONG_SHARD)
    refused(c.one(0, Fence("x", "bad user")), Reason.MALFORMED_USER_ID)
    refused(c.one(0, Fence("has space", alice)), Reason.MALFORMED_REQUEST_ID)
    assert read_state(c.stores[0]).idempotency_count == 0
    ok(c.one(0, Deposit("x", alice, 1)), AccountView)  # "x" was not fenced here


def test_fenced_ids_age_out_with_the_idempotency_window() -> None:
    limits = Limits(idempotency_results_max=2, idempotency_retention_ms=1_000)
    c = Cluster(shard_count=1, limits=limits)
    (alice,) = c.users(0, 1)
    c.one(0, Deposit(c.rid(), alice, 100))
    assert not ok(c.one(0, Fence("old", alice)), RequestStatusView).applied
    c.now_ms += 5_000
    for _ in range(4):  # newer ids push the fenced one out once it is past the retention
        c.one(0, Deposit(c.rid(), alice, 1))
    assert idempotency.lookup(c.stores[0], "old") is None
    ok(c.one(0, Deposit("old", alice, 1)), AccountView)  # forgotten: the id is usable again
