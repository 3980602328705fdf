"""Bad input through the gRPC API gets its status and reason, and changes nothing.

Every request here goes through the raw generated stubs (no smart client), so what is
asserted is exactly what a third-party client sees: the gRPC status code, the hongbao
reason in the ErrorInfo detail, the leader hint. "Changes nothing" is checked two ways:
requests refused before they reach the log (validation, NOT_LEADER, NOT_FOUND of a read)
must not append a single entry to any shard on any node; refusals decided by the state
machine (funds, frozen, envelope state) must leave the balances and envelopes as they were.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import TypeVar

import grpc
import pytest

from hongbao.ledger.limits import REQUEST_ID_BYTES_MAX, USER_ID_BYTES_MAX
from hongbao.ledger.sharding import shard_for_user
from hongbao.node.batch_service import BATCH_OPERATIONS_MAX
from hongbao.node.errors import (
    ErrorReason,
    HongbaoError,
    RetryableError,
    error_from_proto,
    error_from_rpc_error,
)
from hongbao.proto.gen.hongbao.v1 import admin_pb2, admin_pb2_grpc, ledger_pb2
from hongbao.proto.gen.hongbao.v1 import ledger_pb2_grpc as stubs
from tests.cluster.support import Harness, rpc_error, users_per_shard, wait_for

pytestmark = pytest.mark.cluster

R = ErrorReason
C = grpc.StatusCode
T = TypeVar("T")
ATTEMPTS = 5


def rid() -> str:
    return uuid.uuid4().hex


def user_on(harness: Harness, shard_id: int, tag: str) -> str:
    return users_per_shard(harness.topology, 1, f"{tag}-{uuid.uuid4().hex[:8]}-")[shard_id][0]


# -- calling the shard leader with raw stubs ---------------------------------------------


def on_leader(harness: Harness, shard_id: int, call: Callable[[grpc.Channel], T]) -> T:
    """Run ``call`` against the shard's leader; only a leadership change is retried."""
    for _ in range(ATTEMPTS):
        leader = harness.leaders()[shard_id]
        try:
            return call(harness.channel(leader))
        except grpc.RpcError as rpc_error:
            error = error_from_rpc_error(rpc_error)
            if not isinstance(error, RetryableError) or error.outcome_unknown:
                raise
    raise AssertionError(f"shard {shard_id} kept changing leaders")


def refused(
    harness: Harness, shard_id: int, call: Callable[[grpc.Channel], object]
) -> tuple[grpc.StatusCode, HongbaoError]:
    """The status code and error of a call to the shard's leader that must fail."""
    try:
        on_leader(harness, shard_id, call)
    except grpc.RpcError as rpc_error:
        if not isinstance(rpc_error, grpc.Call):
            raise
        return rpc_error.code(), error_from_rpc_error(rpc_error)
    raise AssertionError("the request was accepted; it should have been refused")


def assert_refused(
    harness: Harness,
    shard_id: int,
    call: Callable[[grpc.Channel], object],
    code: grpc.StatusCode,
    reason: ErrorReason,
) -> HongbaoError:
    got_code, error = refused(harness, shard_id, call)
    assert (got_code, error.reason) == (code, reason), f"{got_code} {error}"
    assert error.server_reported
    return error


def appends_nothing(harness: Harness, action: Callable[[], T]) -> T:
    """Run ``action``; no shard's log may grow on any node (an election is retried)."""
    for _ in range(ATTEMPTS):
        harness.wait_quiescent()
        terms, before = harness.terms(), harness.log_positions()
        result = action()
        after, terms_after = harness.log_positions(), harness.terms()
        if terms_after != terms:
            continue  # a new leader's no-op entry is not the request's doing: again
        grew = {k: (before[k], after[k]) for k in before if after[k] != before[k]}
        assert not grew, f"log entries appended by a refused request: {grew}"
        return result
    raise AssertionError("leaders kept changing")


def deposit(harness: Harness, user: str, fen: int, request_id: str = "") -> int:
    shard_id = harness_shard(harness, user)
    request = ledger_pb2.DepositRequest(
        request_id=request_id or rid(), user_id=user, amount_fen=fen
    )
    response = on_leader(harness, shard_id, lambda ch: stubs.WalletStub(ch).Deposit(request))
    return int(response.balance_fen)


def balance(harness: Harness, user: str) -> ledger_pb2.BalanceResponse:
    request = ledger_pb2.BalanceRequest(user_id=user)
    return on_leader(
        harness, harness_shard(harness, user), lambda ch: stubs.WalletStub(ch).Balance(request)
    )


def show(harness: Harness, envelope_id: str, shard_id: int) -> ledger_pb2.Envelope:
    request = ledger_pb2.ShowRequest(envelope_id=envelope_id)
    response = on_leader(harness, shard_id, lambda ch: stubs.EnvelopesStub(ch).Show(request))
    return response.envelope


def assert_no_account(harness: Harness, user: str) -> None:
    request = ledger_pb2.BalanceRequest(user_id=user)
    assert_refused(
        harness,
        harness_shard(harness, user),
        lambda ch: stubs.WalletStub(ch).Balance(request),
        C.NOT_FOUND,
        R.NOT_FOUND,
    )


def harness_shard(harness: Harness, user: str) -> int:
    return shard_for_user(user, harness.topology.shard_count)


def wait_balance(harness: Harness, user: str, fen: int) -> None:
    """Cross-shard credits land through the courier: wait for the balance to show it."""

    def holds() -> bool:
        try:
            return balance(harness, user).balance_fen == fen
        except grpc.RpcError as rpc_error:
            if error_from_rpc_error(rpc_error).reason is R.NOT_FOUND:
                return False  # the first credit has not arrived yet: no account so far
            raise

    wait_for(holds, 10, f"{user} to hold {fen}")


# -- NOT_LEADER ---------------------------------------------------------------------------


def test_not_leader_names_the_actual_leader(cluster: Harness) -> None:
    shard_id = 5
    user = user_on(cluster, shard_id, "nl")
    assert deposit(cluster, user, 700) == 700
    for _ in range(ATTEMPTS):
        leader = cluster.leaders()[shard_id]
        follower = next(int(n) for n in cluster.topology.replicas_of(shard_id) if n != leader)
        request = ledger_pb2.DepositRequest(request_id=rid(), user_id=user, amount_fen=5)
        wallet = stubs.WalletStub(cluster.channel(follower))

        code, error = appends_nothing(
            cluster,
            lambda w=wallet, r=request: rpc_error(lambda: w.Deposit(r, timeout=5)),
        )
        if cluster.leaders()[shard_id] != leader:
            continue  # leadership moved meanwhile: the hint may rightly name another node
        assert code == C.UNAVAILABLE
        assert error.reason is R.NOT_LEADER
        assert error.shard_id == shard_id
        assert error.leader_hint is not None
        assert error.leader_hint.node_id == leader
        assert error.leader_hint.address == cluster.topology.node(leader).address
        # A linearizable read is refused by a follower the same way.
        read = ledger_pb2.BalanceRequest(user_id=user)
        _, read_error = rpc_error(lambda w=wallet, r=read: w.Balance(r, timeout=5))
        assert read_error.reason is R.NOT_LEADER
        assert read_error.leader_hint is not None
        assert read_error.leader_hint.node_id == leader
        # A stale read is allowed on a follower and sees the deposit, not the refusal.
        stale = ledger_pb2.BalanceRequest(user_id=user, stale_ok=True)
        assert stubs.WalletStub(cluster.channel(follower)).Balance(stale).balance_fen == 700
        assert balance(cluster, user).balance_fen == 700
        return
    raise AssertionError("leadership of the shard never held still")


# -- INVALID_ARGUMENT ---------------------------------------------------------------------


def test_bad_amounts_are_invalid_argument(cluster: Harness) -> None:
    shard_id = 1
    user, other = user_on(cluster, shard_id, "amt"), user_on(cluster, 2, "amt-to")
    assert deposit(cluster, user, 10_000) == 10_000
    amount_max = cluster.topology.limits.amount_max_fen

    def dep(fen: int) -> Callable[[grpc.Channel], object]:
        request = ledger_pb2.DepositRequest(request_id=rid(), user_id=user, amount_fen=fen)
        return lambda ch: stubs.WalletStub(ch).Deposit(request)

    def wd(fen: int) -> Callable[[grpc.Channel], object]:
        request = ledger_pb2.WithdrawRequest(request_id=rid(), user_id=user, amount_fen=fen)
        return lambda ch: stubs.WalletStub(ch).Withdraw(request)

    def tr(fen: int) -> Callable[[grpc.Channel], object]:
        request = ledger_pb2.TransferRequest(
            request_id=rid(), from_user_id=user, to_user_id=other, amount_fen=fen
        )
        return lambda ch: stubs.WalletStub(ch).Transfer(request)

    cases = [
        (dep(0), R.INVALID_AMOUNT),
        (dep(-1), R.INVALID_AMOUNT),
        (dep(-(2**63)), R.INVALID_AMOUNT),
        (dep(amount_max + 1), R.AMOUNT_TOO_LARGE),
        (dep(2**63 - 1), R.AMOUNT_TOO_LARGE),
        (wd(0), R.INVALID_AMOUNT),
        (wd(-100), R.INVALID_AMOUNT),
        (wd(amount_max + 1), R.AMOUNT_TOO_LARGE),
        (tr(0), R.INVALID_AMOUNT),
        (tr(-5), R.INVALID_AMOUNT),
        (tr(amount_max + 1), R.AMOUNT_TOO_LARGE),
    ]
    for call, reason in cases:
        appends_nothing(
            cluster,
            lambda c=call, r=reason: assert_refused(cluster, shard_id, c, C.INVALID_ARGUMENT, r),
        )
    assert balance(cluster, user).balance_fen == 10_000
    assert_no_account(cluster, other)


def test_malformed_ids_are_invalid_argument(cluster: Harness) -> None:
    shard_id = 3
    user = user_on(cluster, shard_id, "ids")
    assert deposit(cluster, user, 5_000) == 5_000
    sent = on_leader(
        cluster,
        shard_id,
        lambda ch: stubs.EnvelopesStub(ch).Send(
            ledger_pb2.SendRequest(
                request_id=rid(),
                sender_user_id=user,
                kind=ledger_pb2.ENVELOPE_KIND_FIXED,
                total_fen=1_000,
                count=2,
            )
        ),
    )
    envelope_before = show(cluster, sent.envelope_id, shard_id)
    bad_users = ["", "x" * (USER_ID_BYTES_MAX + 1), "has space", "naïve", "a/b", "semi;colon"]
    bad_envelopes = [
        "",
        "nope",
        "e1-0",
        "e01-1",
        "e1-01",
        "E1-1",
        "e1_1",
        "e-1-1",
        f"{sent.envelope_id} ",
    ]
    bad_request_ids = ["", "has space", "x" * (REQUEST_ID_BYTES_MAX + 1), "tab\tinside", "é"]

    calls: list[Callable[[grpc.Channel], object]] = []
    for bad in bad_users:
        calls += [
            lambda ch, u=bad: stubs.WalletStub(ch).Deposit(
                ledger_pb2.DepositRequest(request_id=rid(), user_id=u, amount_fen=10)
            ),
            lambda ch, u=bad: stubs.WalletStub(ch).Balance(ledger_pb2.BalanceRequest(user_id=u)),
            lambda ch, u=bad: stubs.WalletStub(ch).History(ledger_pb2.HistoryRequest(user_id=u)),
            lambda ch, u=bad: stubs.WalletStub(ch).Transfer(
                ledger_pb2.TransferRequest(
                    request_id=rid(), from_user_id=user, to_user_id=u, amount_fen=10
                )
            ),
            lambda ch, u=bad: stubs.EnvelopesStub(ch).Grab(
                ledger_pb2.GrabRequest(request_id=rid(), envelope_id=sent.envelope_id, user_id=u)
            ),
        ]
    for bad in bad_envelopes:
        calls += [
            lambda ch, e=bad: stubs.EnvelopesStub(ch).Grab(
                ledger_pb2.GrabRequest(request_id=rid(), envelope_id=e, user_id=user)
            ),
            lambda ch, e=bad: stubs.EnvelopesStub(ch).Show(ledger_pb2.ShowRequest(envelope_id=e)),
        ]
    for bad in bad_request_ids:
        calls += [
            lambda ch, r=bad: stubs.WalletStub(ch).Deposit(
                ledger_pb2.DepositRequest(request_id=r, user_id=user, amount_fen=10)
            ),
            lambda ch, r=bad: stubs.WalletStub(ch).Withdraw(
                ledger_pb2.WithdrawRequest(request_id=r, user_id=user, amount_fen=10)
            ),
            lambda ch, r=bad: stubs.WalletStub(ch).Freeze(
                ledger_pb2.FreezeRequest(request_id=r, user_id=user)
            ),
            lambda ch, r=bad: stubs.EnvelopesStub(ch).Grab(
                ledger_pb2.GrabRequest(request_id=r, envelope_id=sent.envelope_id, user_id=user)
            ),
        ]

    def all_refused() -> None:
        for call in calls:
            assert_refused(cluster, shard_id, call, C.INVALID_ARGUMENT, R.MALFORMED_ID)

    appends_nothing(cluster, all_refused)
    assert balance(cluster, user).balance_fen == 4_000
    assert balance(cluster, user).frozen is False
    assert show(cluster, sent.envelope_id, shard_id) == envelope_before


def test_limits_are_invalid_argument(cluster: Harness) -> None:
    shard_id = 4
    user, other = user_on(cluster, shard_id, "lim"), user_on(cluster, shard_id, "lim-to")
    limits = cluster.topology.limits
    assert deposit(cluster, user, 3_000_000) == 3_000_000

    def send(
        total: int, count: int, kind: int = ledger_pb2.ENVELOPE_KIND_LUCKY
    ) -> Callable[[grpc.Channel], object]:
        request = ledger_pb2.SendRequest(
            request_id=rid(), sender_user_id=user, kind=kind, total_fen=total, count=count
        )
        return lambda ch: stubs.EnvelopesStub(ch).Send(request)

    shares_max = limits.envelope_shares_max
    total_max = limits.envelope_total_max_fen
    average_max = limits.envelope_share_average_max_fen
    cases: list[tuple[Callable[[grpc.Channel], object], ErrorReason]] = [
        (send(1_000, shares_max + 1), R.LIMIT_EXCEEDED),
        (send(1_000, 0), R.LIMIT_EXCEEDED),
        (send(total_max + 1, shares_max), R.AMOUNT_TOO_LARGE),
        (send(average_max + 1, 1), R.AMOUNT_TOO_LARGE),
        (send(0, 1), R.INVALID_AMOUNT),
        (send(-100, 1), R.INVALID_AMOUNT),
        (send(5, 10), R.INVALID_AMOUNT),  # less than 1 fen a share
        (send(1_000, 3, ledger_pb2.ENVELOPE_KIND_FIXED), R.INVALID_AMOUNT),  # not divisible
        (send(1_000, 3, ledger_pb2.ENVELOPE_KIND_UNSPECIFIED), R.INVALID_REQUEST),
        (
            lambda ch: stubs.WalletStub(ch).History(
                ledger_pb2.HistoryRequest(user_id=user, limit=limits.history_limit_max + 1)
            ),
            R.LIMIT_EXCEEDED,
        ),
        (
            lambda ch: stubs.WalletStub(ch).Transfer(
                ledger_pb2.TransferRequest(
                    request_id=rid(), from_user_id=user, to_user_id=user, amount_fen=10
                )
            ),
            R.INVALID_REQUEST,
        ),
    ]

    def all_refused() -> None:
        for call, reason in cases:
            assert_refused(cluster, shard_id, call, C.INVALID_ARGUMENT, reason)

    appends_nothing(cluster, all_refused)
    assert balance(cluster, user).balance_fen == 3_000_000
    assert balance(cluster, user).daily_outgoing_fen == 0
    assert_no_account(cluster, other)


def test_batch_over_the_maximum_and_empty_operations(cluster: Harness) -> None:
    shard_id = 6
    user = user_on(cluster, shard_id, "batch")
    assert deposit(cluster, user, 100) == 100
    too_many = ledger_pb2.ExecuteRequest(
        operations=[
            ledger_pb2.Operation(
                deposit=ledger_pb2.DepositRequest(request_id=rid(), user_id=user, amount_fen=1)
            )
            for _ in range(BATCH_OPERATIONS_MAX + 1)
        ]
    )
    appends_nothing(
        cluster,
        lambda: assert_refused(
            cluster,
            shard_id,
            lambda ch: stubs.BatchStub(ch).Execute(too_many, timeout=30),
            C.INVALID_ARGUMENT,
            R.LIMIT_EXCEEDED,
        ),
    )
    assert balance(cluster, user).balance_fen == 100

    # An operation with no request set fails on its own; its neighbours still run.
    mixed = ledger_pb2.ExecuteRequest(
        operations=[
            ledger_pb2.Operation(),
            ledger_pb2.Operation(
                deposit=ledger_pb2.DepositRequest(request_id=rid(), user_id=user, amount_fen=23)
            ),
            ledger_pb2.Operation(
                deposit=ledger_pb2.DepositRequest(request_id=rid(), user_id=user, amount_fen=0)
            ),
        ]
    )
    response = on_leader(cluster, shard_id, lambda ch: stubs.BatchStub(ch).Execute(mixed))
    assert [r.WhichOneof("result") for r in response.results] == ["error", "deposit", "error"]
    empty, bad_amount = (error_from_proto(response.results[i].error) for i in (0, 2))
    assert (empty.reason, empty.code) == (R.INVALID_REQUEST, C.INVALID_ARGUMENT)
    assert response.results[0].error.code == C.INVALID_ARGUMENT.value[0]
    assert (bad_amount.reason, bad_amount.code) == (R.INVALID_AMOUNT, C.INVALID_ARGUMENT)
    assert response.results[1].deposit.balance_fen == 123
    assert balance(cluster, user).balance_fen == 123
    only_empty = ledger_pb2.ExecuteRequest(operations=[ledger_pb2.Operation()])
    answer = appends_nothing(
        cluster, lambda: on_leader(cluster, 0, lambda ch: stubs.BatchStub(ch).Execute(only_empty))
    )
    assert error_from_proto(answer.results[0].error).reason is R.INVALID_REQUEST


# -- FAILED_PRECONDITION ------------------------------------------------------------------


def payments_out(
    user: str, other: str, *, amount_fen: int, envelope_total_fen: int
) -> list[Callable[[grpc.Channel], object]]:
    """The three ways money leaves a wallet: withdraw, transfer, send an envelope."""
    return [
        lambda ch: stubs.WalletStub(ch).Withdraw(
            ledger_pb2.WithdrawRequest(request_id=rid(), user_id=user, amount_fen=amount_fen)
        ),
        lambda ch: stubs.WalletStub(ch).Transfer(
            ledger_pb2.TransferRequest(
                request_id=rid(), from_user_id=user, to_user_id=other, amount_fen=amount_fen
            )
        ),
        lambda ch: stubs.EnvelopesStub(ch).Send(
            ledger_pb2.SendRequest(
                request_id=rid(),
                sender_user_id=user,
                kind=ledger_pb2.ENVELOPE_KIND_LUCKY,
                total_fen=envelope_total_fen,
                count=2,
            )
        ),
    ]


def test_insufficient_funds(cluster: Harness) -> None:
    shard_id = 7
    user, other = user_on(cluster, shard_id, "poor"), user_on(cluster, 8, "poor-to")
    assert deposit(cluster, user, 1_000) == 1_000
    calls = payments_out(user, other, amount_fen=1_001, envelope_total_fen=1_001)
    for call in calls:
        assert_refused(cluster, shard_id, call, C.FAILED_PRECONDITION, R.INSUFFICIENT_FUNDS)
    after = balance(cluster, user)
    assert (after.balance_fen, after.daily_outgoing_fen) == (1_000, 0)
    assert_no_account(cluster, other)
    # Exactly the balance is fine: the refusals above were about the amount alone.
    withdraw = ledger_pb2.WithdrawRequest(request_id=rid(), user_id=user, amount_fen=1_000)
    done = on_leader(cluster, shard_id, lambda ch: stubs.WalletStub(ch).Withdraw(withdraw))
    assert done.balance_fen == 0


def test_frozen_account_cannot_pay(cluster: Harness) -> None:
    shard_id = 9
    user, other = user_on(cluster, shard_id, "frz"), user_on(cluster, 10, "frz-to")
    assert deposit(cluster, user, 50_000) == 50_000
    freeze = ledger_pb2.FreezeRequest(request_id=rid(), user_id=user)
    assert on_leader(cluster, shard_id, lambda ch: stubs.WalletStub(ch).Freeze(freeze)).frozen
    calls = payments_out(user, other, amount_fen=10, envelope_total_fen=100)
    for call in calls:
        assert_refused(cluster, shard_id, call, C.FAILED_PRECONDITION, R.ACCOUNT_FROZEN)
    after = balance(cluster, user)
    assert (after.balance_fen, after.frozen, after.daily_outgoing_fen) == (50_000, True, 0)
    assert_no_account(cluster, other)
    # A frozen account still receives money.
    assert deposit(cluster, user, 5) == 50_005
    unfreeze = ledger_pb2.UnfreezeRequest(request_id=rid(), user_id=user)
    assert not on_leader(
        cluster, shard_id, lambda ch: stubs.WalletStub(ch).Unfreeze(unfreeze)
    ).frozen
    transfer = ledger_pb2.TransferRequest(
        request_id=rid(), from_user_id=user, to_user_id=other, amount_fen=10
    )
    on_leader(cluster, shard_id, lambda ch: stubs.WalletStub(ch).Transfer(transfer))
    wait_balance(cluster, other, 10)


def test_grab_twice_and_grab_empty(cluster: Harness) -> None:
    shard_id = 11
    sender = user_on(cluster, shard_id, "env")
    first, second, late = (user_on(cluster, s, "grab") for s in (0, shard_id, 2))
    assert deposit(cluster, sender, 1_000) == 1_000
    send = ledger_pb2.SendRequest(
        request_id=rid(),
        sender_user_id=sender,
        kind=ledger_pb2.ENVELOPE_KIND_FIXED,
        total_fen=400,
        count=2,
    )
    envelope_id = on_leader(
        cluster, shard_id, lambda ch: stubs.EnvelopesStub(ch).Send(send)
    ).envelope_id

    def grab(user: str) -> Callable[[grpc.Channel], ledger_pb2.GrabResponse]:
        request = ledger_pb2.GrabRequest(request_id=rid(), envelope_id=envelope_id, user_id=user)
        return lambda ch: stubs.EnvelopesStub(ch).Grab(request)

    receipt = on_leader(cluster, shard_id, grab(first))
    assert (receipt.amount_fen, receipt.ordinal, receipt.remaining_count) == (200, 1, 1)
    assert receipt.cross_shard
    wait_balance(cluster, first, 200)
    before = show(cluster, envelope_id, shard_id)
    assert_refused(cluster, shard_id, grab(first), C.FAILED_PRECONDITION, R.ALREADY_GRABBED)
    assert show(cluster, envelope_id, shard_id) == before
    assert balance(cluster, first).balance_fen == 200

    receipt = on_leader(cluster, shard_id, grab(second))
    assert (receipt.amount_fen, receipt.remaining_count, receipt.cross_shard) == (200, 0, False)
    emptied = show(cluster, envelope_id, shard_id)
    assert emptied.state == ledger_pb2.ENVELOPE_STATE_EMPTY
    assert (emptied.remaining_fen, emptied.remaining_count) == (0, 0)
    assert_refused(cluster, shard_id, grab(late), C.FAILED_PRECONDITION, R.ENVELOPE_EMPTY)
    assert_refused(cluster, shard_id, grab(second), C.FAILED_PRECONDITION, R.ALREADY_GRABBED)
    assert show(cluster, envelope_id, shard_id) == emptied
    assert_no_account(cluster, late)
    assert balance(cluster, second).balance_fen == 200
    assert balance(cluster, sender).balance_fen == 600


def test_daily_outgoing_limit(cluster: Harness) -> None:
    shard_id = 2
    user = user_on(cluster, shard_id, "daily")
    limits = cluster.topology.limits
    chunk = limits.amount_max_fen
    rounds = limits.daily_outgoing_max_fen // chunk
    for n in range(1, rounds + 1):
        assert deposit(cluster, user, chunk) == n * chunk
    for _ in range(rounds):
        request = ledger_pb2.WithdrawRequest(request_id=rid(), user_id=user, amount_fen=chunk)
        on_leader(cluster, shard_id, lambda ch, r=request: stubs.WalletStub(ch).Withdraw(r))
    assert deposit(cluster, user, 10) == 10
    over = ledger_pb2.WithdrawRequest(request_id=rid(), user_id=user, amount_fen=1)
    assert_refused(
        cluster,
        shard_id,
        lambda ch: stubs.WalletStub(ch).Withdraw(over),
        C.FAILED_PRECONDITION,
        R.DAILY_LIMIT_EXCEEDED,
    )
    after = balance(cluster, user)
    assert (after.balance_fen, after.daily_outgoing_fen) == (10, rounds * chunk)


# -- NOT_FOUND ----------------------------------------------------------------------------


def test_not_found(cluster: Harness) -> None:
    shard_id = 0
    ghost = user_on(cluster, shard_id, "ghost")
    unknown_envelope = f"e{shard_id}-999999"
    beyond = f"e{cluster.topology.shard_count}-1"  # well formed, but no such shard

    def read_calls() -> None:
        for call in (
            lambda ch: stubs.WalletStub(ch).Balance(ledger_pb2.BalanceRequest(user_id=ghost)),
            lambda ch: stubs.WalletStub(ch).History(ledger_pb2.HistoryRequest(user_id=ghost)),
            lambda ch: stubs.EnvelopesStub(ch).Show(
                ledger_pb2.ShowRequest(envelope_id=unknown_envelope)
            ),
            lambda ch: stubs.EnvelopesStub(ch).Show(ledger_pb2.ShowRequest(envelope_id=beyond)),
            lambda ch: stubs.EnvelopesStub(ch).Grab(
                ledger_pb2.GrabRequest(request_id=rid(), envelope_id=beyond, user_id=ghost)
            ),
        ):
            assert_refused(cluster, shard_id, call, C.NOT_FOUND, R.NOT_FOUND)
        # Admin: a shard this node does not host.
        admin = admin_pb2_grpc.AdminStub(cluster.channel(1))
        code, error = rpc_error(
            lambda: admin.Status(admin_pb2.StatusRequest(shard_ids=[999]), timeout=5)
        )
        assert (code, error.reason) == (C.NOT_FOUND, R.NOT_FOUND)

    appends_nothing(cluster, read_calls)
    # Mutations that the state machine refuses for lack of an account or envelope.
    for call in (
        lambda ch: stubs.WalletStub(ch).Withdraw(
            ledger_pb2.WithdrawRequest(request_id=rid(), user_id=ghost, amount_fen=1)
        ),
        lambda ch: stubs.WalletStub(ch).Transfer(
            ledger_pb2.TransferRequest(
                request_id=rid(), from_user_id=ghost, to_user_id="someone", amount_fen=1
            )
        ),
        lambda ch: stubs.WalletStub(ch).Freeze(
            ledger_pb2.FreezeRequest(request_id=rid(), user_id=ghost)
        ),
        lambda ch: stubs.EnvelopesStub(ch).Grab(
            ledger_pb2.GrabRequest(request_id=rid(), envelope_id=unknown_envelope, user_id=ghost)
        ),
    ):
        assert_refused(cluster, shard_id, call, C.NOT_FOUND, R.NOT_FOUND)
    assert_no_account(cluster, ghost)
    show_again = ledger_pb2.ShowRequest(envelope_id=unknown_envelope)
    assert_refused(
        cluster,
        shard_id,
        lambda ch: stubs.EnvelopesStub(ch).Show(show_again),
        C.NOT_FOUND,
        R.NOT_FOUND,
    )


# -- ALREADY_EXISTS -----------------------------------------------------------------------


def test_request_id_reused_for_another_request(cluster: Harness) -> None:
    shard_id = 10
    user = user_on(cluster, shard_id, "reuse")
    request_id = rid()
    assert deposit(cluster, user, 300, request_id) == 300
    # The same request again is a retry: the first answer, applied once.
    assert deposit(cluster, user, 300, request_id) == 300
    assert balance(cluster, user).balance_fen == 300
    different = [
        lambda ch: stubs.WalletStub(ch).Deposit(
            ledger_pb2.DepositRequest(request_id=request_id, user_id=user, amount_fen=301)
        ),
        lambda ch: stubs.WalletStub(ch).Withdraw(
            ledger_pb2.WithdrawRequest(request_id=request_id, user_id=user, amount_fen=300)
        ),
        lambda ch: stubs.WalletStub(ch).Freeze(
            ledger_pb2.FreezeRequest(request_id=request_id, user_id=user)
        ),
    ]
    for call in different:
        assert_refused(cluster, shard_id, call, C.ALREADY_EXISTS, R.REQUEST_ID_REUSED)
    after = balance(cluster, user)
    assert (after.balance_fen, after.frozen) == (300, False)
    history = on_leader(
        cluster,
        shard_id,
        lambda ch: stubs.WalletStub(ch).History(ledger_pb2.HistoryRequest(user_id=user)),
    )
    assert [(p.ref, p.amount_fen) for p in history.postings] == [(request_id, 300)]
