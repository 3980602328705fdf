"""Every refusal reason, produced by a real scenario, with its error class; and a refusal
changes nothing but the request-id memory (an expired grab also applies the refund)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import pytest

from hongbao.ledger import (
    Acknowledge,
    Command,
    Deliver,
    Deposit,
    EnvelopeKind,
    ErrorClass,
    ExpireEnvelopes,
    Fence,
    Freeze,
    GetHistory,
    GrabEnvelope,
    Limits,
    Reason,
    Rejected,
    SendEnvelope,
    SetLimits,
    Transfer,
    Withdraw,
    books,
    query,
)
from hongbao.ledger.records import CreditKind
from hongbao.ledger.results import EnvelopeCreated

from .helpers import Cluster, money_view, ok

LIMITS = Limits(
    amount_max_fen=10_000,
    daily_outgoing_max_fen=15_000,
    envelope_shares_max=10,
    envelope_share_average_max_fen=1_000,
    envelope_total_max_fen=5_000,
    envelope_ttl_ms=60_000,
    idempotency_results_max=50,
    batch_commands_max=5,
    history_limit_max=10,
    expire_batch_max=5,
    outbox_batch_max=5,
)


class World:
    """Two shards; ``a`` and ``a2`` live on shard 0 with 20,000 fen each, ``b`` on shard 1."""

    def __init__(self) -> None:
        self.c = Cluster(shard_count=2, limits=LIMITS)
        self.a, self.a2, self.nobody = self.c.users(0, 3)
        (self.b,) = self.c.users(1, 1)
        for user in (self.a, self.a2):
            self.run(Deposit(self.rid(), user, 10_000))
            self.run(Deposit(self.rid(), user, 10_000))
        self.c.now_ms += 86_400_000  # a fresh day for the daily limit

    def rid(self) -> str:
        return self.c.rid()

    def run(self, command: Command) -> object:
        return self.c.one(0, command)

    def envelope(self, count: int) -> str:
        sent = self.run(SendEnvelope(self.rid(), self.a, EnvelopeKind.LUCKY, 100, count))
        return ok(sent, EnvelopeCreated).envelope_id  # type: ignore[arg-type]


@dataclass
class Final:
    """The refused command(s), applied as one entry on shard 0."""

    commands: tuple[Command, ...]
    ts_ms: int | None = None


SCENARIOS: dict[Reason, Callable[[World], Final]] = {}


def scenario(reason: Reason) -> Callable[[Callable[[World], Final]], Callable[[World], Final]]:
    def register(build: Callable[[World], Final]) -> Callable[[World], Final]:
        SCENARIOS[reason] = build
        return build

    return register


def one(command: Command, ts_ms: int | None = None) -> Final:
    return Final((command,), ts_ms)


def _deliver(w: World, seq: int) -> Deliver:
    return Deliver(1, seq=seq, user_id=w.a, amount_fen=1, kind=CreditKind.TRANSFER, ref="r")


scenario(Reason.AMOUNT_NOT_POSITIVE)(lambda w: one(Deposit(w.rid(), w.a, 0)))
scenario(Reason.AMOUNT_TOO_LARGE)(lambda w: one(Deposit(w.rid(), w.a, 10_001)))
scenario(Reason.MALFORMED_USER_ID)(lambda w: one(Deposit(w.rid(), "no spaces", 1)))
scenario(Reason.MALFORMED_REQUEST_ID)(lambda w: one(Deposit("has space", w.a, 1)))
scenario(Reason.MALFORMED_ENVELOPE_ID)(lambda w: one(GrabEnvelope(w.rid(), "e00-1", w.a)))
scenario(Reason.SAME_ACCOUNT)(lambda w: one(Transfer(w.rid(), w.a, w.a, 1)))
scenario(Reason.SHARE_COUNT_OUT_OF_RANGE)(
    lambda w: one(SendEnvelope(w.rid(), w.a, EnvelopeKind.LUCKY, 1_000, 11))
)
scenario(Reason.ENVELOPE_TOTAL_TOO_SMALL)(
    lambda w: one(SendEnvelope(w.rid(), w.a, EnvelopeKind.LUCKY, 3, 4))
)
scenario(Reason.ENVELOPE_TOTAL_TOO_LARGE)(
    lambda w: one(SendEnvelope(w.rid(), w.a, EnvelopeKind.LUCKY, 3_001, 3))
)
scenario(Reason.FIXED_TOTAL_NOT_DIVISIBLE)(
    lambda w: one(SendEnvelope(w.rid(), w.a, EnvelopeKind.FIXED, 100, 3))
)
scenario(Reason.LIMIT_OUT_OF_RANGE)(lambda w: one(ExpireEnvelopes(now_ms=0, limit=6)))
scenario(Reason.INVALID_LIMITS)(lambda w: one(SetLimits(w.rid(), Limits(amount_max_fen=0))))
scenario(Reason.INVALID_SHARD)(lambda w: one(Acknowledge(destination_shard=2, up_to_seq=1)))
scenario(Reason.INVALID_SEQUENCE)(lambda w: one(_deliver(w, seq=0)))
scenario(Reason.WRONG_SHARD)(lambda w: one(Deposit(w.rid(), w.b, 1)))
scenario(Reason.BATCH_TOO_LARGE)(lambda w: Final(tuple(Deposit(w.rid(), w.a, 1) for _ in range(6))))
scenario(Reason.TIME_IN_FUTURE)(lambda w: one(ExpireEnvelopes(now_ms=w.c.now_ms + 1, limit=1)))
scenario(Reason.ACK_BEYOND_OUTBOX)(lambda w: one(Acknowledge(destination_shard=1, up_to_seq=1)))
scenario(Reason.SEQUENCE_GAP)(lambda w: one(_deliver(w, seq=2)))
# With the shard's holdings capped at what World deposits (see test_reason); the real
# bound, 2^63 - 1 fen, is reached for real in test_overflow.py.
scenario(Reason.HOLDINGS_LIMIT_EXCEEDED)(lambda w: one(Deposit(w.rid(), w.a, 1)))
scenario(Reason.ACCOUNT_NOT_FOUND)(lambda w: one(Withdraw(w.rid(), w.c.users(0, 4)[3], 1)))
scenario(Reason.ENVELOPE_NOT_FOUND)(lambda w: one(GrabEnvelope(w.rid(), "e0-99", w.a)))


@scenario(Reason.REQUEST_ID_REUSED)
def _reused(w: World) -> Final:
    w.run(Deposit("same", w.a, 1))
    return one(Deposit("same", w.a, 2))


@scenario(Reason.REQUEST_FENCED)
def _fenced(w: World) -> Final:
    w.run(Fence("late", w.a))  # a request status found nothing: "late" is fenced
    return one(Deposit("late", w.a, 1))


@scenario(Reason.INSUFFICIENT_FUNDS)
def _poor(w: World) -> Final:
    w.run(Deposit(w.rid(), w.nobody, 5))
    return one(Transfer(w.rid(), w.nobody, w.b, 6))


@scenario(Reason.ACCOUNT_FROZEN)
def _frozen(w: World) -> Final:
    w.run(Freeze(w.rid(), w.a))
    return one(Withdraw(w.rid(), w.a, 1))


@scenario(Reason.DAILY_LIMIT_EXCEEDED)
def _daily(w: World) -> Final:
    w.run(Withdraw(w.rid(), w.a, 10_000))
    return one(Transfer(w.rid(), w.a, w.b, 5_001))  # 15,001 > 15,000 out today


@scenario(Reason.ENVELOPE_EXPIRED)
def _expired(w: World) -> Final:
    envelope = w.envelope(count=2)
    return one(GrabEnvelope(w.rid(), envelope, w.b), ts_ms=w.c.now_ms + LIMITS.envelope_ttl_ms)


@scenario(Reason.ENVELOPE_EMPTY)
def _empty(w: World) -> Final:
    envelope = w.envelope(count=1)
    w.run(GrabEnvelope(w.rid(), envelope, w.a2))
    return one(GrabEnvelope(w.rid(), envelope, w.b))


@scenario(Reason.ALREADY_GRABBED)
def _twice(w: World) -> Final:
    envelope = w.envelope(count=2)
    w.run(GrabEnvelope(w.rid(), envelope, w.b))
    return one(GrabEnvelope(w.rid(), envelope, w.b))


def test_every_reason_has_a_scenario() -> None:
    assert set(SCENARIOS) == set(Reason)


HOLDINGS_OF_WORLD_FEN = 40_000


@pytest.mark.parametrize("reason", list(Reason), ids=str)
def test_reason(reason: Reason, monkeypatch: pytest.MonkeyPatch) -> None:
    if reason is Reason.HOLDINGS_LIMIT_EXCEEDED:
        monkeypatch.setattr(books, "HOLDINGS_MAX_FEN", HOLDINGS_OF_WORLD_FEN)
    world = World()
    final = SCENARIOS[reason](world)
    before = [money_view(store) for store in world.c.stores.values()]
    results = world.c.apply(0, *final.commands, ts_ms=final.ts_ms)
    refusal = results[0]
    assert isinstance(refusal, Rejected), refusal
    assert refusal.reason is reason, refusal
    assert refusal.message
    world.c.audit()
    after = [money_view(store) for store in world.c.stores.values()]
    if reason is Reason.ENVELOPE_EXPIRED:
        assert after != before  # the grab that noticed the expiry applied the refund
    else:
        assert after == before


def test_error_classes() -> None:
    classes = {reason: reason.error_class for reason in Reason}
    assert classes[Reason.INSUFFICIENT_FUNDS] is ErrorClass.FAILED_PRECONDITION
    assert classes[Reason.ALREADY_GRABBED] is ErrorClass.FAILED_PRECONDITION
    assert classes[Reason.ENVELOPE_NOT_FOUND] is ErrorClass.NOT_FOUND
    assert classes[Reason.ACCOUNT_NOT_FOUND] is ErrorClass.NOT_FOUND
    assert classes[Reason.AMOUNT_TOO_LARGE] is ErrorClass.INVALID_ARGUMENT
    assert classes[Reason.REQUEST_ID_REUSED] is ErrorClass.INVALID_ARGUMENT
    assert {c for c in classes.values()} == set(ErrorClass)
    failed = {r for r, c in classes.items() if c is ErrorClass.FAILED_PRECONDITION}
    assert failed == {
        Reason.INSUFFICIENT_FUNDS,
        Reason.ACCOUNT_FROZEN,
        Reason.DAILY_LIMIT_EXCEEDED,
        Reason.ENVELOPE_EXPIRED,
        Reason.ENVELOPE_EMPTY,
        Reason.ALREADY_GRABBED,
        Reason.SEQUENCE_GAP,
        Reason.HOLDINGS_LIMIT_EXCEEDED,
        Reason.REQUEST_FENCED,
    }


def test_queries_are_validated_too() -> None:
    world = World()
    result = query(world.c.stores[0], GetHistory(world.a, limit=11), now_ms=0)
    assert isinstance(result, Rejected)
    assert result.reason is Reason.LIMIT_OUT_OF_RANGE
