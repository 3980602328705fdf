"""The apply loop: entries, the applied index, batches, limits through the log, the clock."""

from __future__ import annotations

import pytest

from hongbao._invariant import InvariantViolation
from hongbao.ledger import (
    Batch,
    Deposit,
    ExpireEnvelopes,
    Limits,
    MemoryStore,
    Reason,
    SetLimits,
    Withdraw,
    applied_index,
    apply_batch,
    apply_entry,
    encode_batch,
    init_shard,
    set_applied_index,
    shard_clock_ms,
    state_digest,
)
from hongbao.ledger.books import read_limits, read_state
from hongbao.ledger.results import AccountView, ExpiryReport, LimitsView

from .helpers import Cluster, ok, refused


def fresh(shard_count: int = 1) -> MemoryStore:
    store = MemoryStore()
    init_shard(store, shard_id=0, shard_count=shard_count)
    return store


def test_init_refuses_bad_identity_limits_and_double_init() -> None:
    with pytest.raises(ValueError, match="out of range"):
        init_shard(MemoryStore(), shard_id=2, shard_count=2)
    with pytest.raises(ValueError, match="unusable"):
        init_shard(MemoryStore(), shard_id=0, shard_count=1, limits=Limits(envelope_ttl_ms=0))
    with pytest.raises(ValueError, match="unusable"):
        init_shard(MemoryStore(), shard_id=0, shard_count=1, limits=Limits(amount_max_fen=True))
    store = fresh()
    with pytest.raises(InvariantViolation):
        init_shard(store, shard_id=0, shard_count=1)


def test_applied_index_moves_forward_with_every_entry() -> None:
    store = fresh()
    assert applied_index(store) == 0
    noop = apply_entry(store, index=1, data=b"")
    assert noop.results == ()
    assert noop.malformed is None
    batch = encode_batch(Batch(5, (Deposit("r", "alice", 1),)))
    assert len(apply_entry(store, index=2, data=batch).results) == 1
    assert applied_index(store) == 2
    with pytest.raises(InvariantViolation):
        set_applied_index(store, 2)


def test_malformed_entries_are_counted_and_skipped() -> None:
    store = fresh()
    digest_before = state_digest(store)
    entry = apply_entry(store, index=1, data=b'{"t":"batch"}')
    assert entry.malformed is not None
    assert read_state(store).malformed_entries == 1
    assert state_digest(store) != digest_before


def test_an_oversized_batch_is_refused_whole() -> None:
    store = fresh()
    init_limits = read_limits(store)
    commands = tuple(
        Deposit(f"r{n}", "alice", 1) for n in range(init_limits.batch_commands_max + 1)
    )
    digest = state_digest(store)
    results = apply_batch(store, Batch(5, commands))
    assert {r.reason for r in results} == {Reason.BATCH_TOO_LARGE}  # type: ignore[union-attr]
    assert state_digest(store) == digest


def test_limits_change_through_the_log() -> None:
    c = Cluster(shard_count=1)
    (alice,) = c.users(0, 1)
    c.one(0, Deposit(c.rid(), alice, 10_000))
    new = Limits(amount_max_fen=100, daily_outgoing_max_fen=100)
    assert ok(c.one(0, SetLimits(c.rid(), new)), LimitsView).limits == new
    refused(c.one(0, Withdraw(c.rid(), alice, 101)), Reason.AMOUNT_TOO_LARGE)
    assert read_limits(c.stores[0]) == new


def test_the_shard_clock_never_goes_back() -> None:
    c = Cluster(shard_count=1)
    c.one(0, ExpireEnvelopes(0, 1), ts_ms=5_000)
    assert shard_clock_ms(c.stores[0]) == 5_000
    c.one(0, ExpireEnvelopes(0, 1), ts_ms=3_000)
    assert shard_clock_ms(c.stores[0]) == 5_000
    # now_ms is checked against the shard clock, not the (lagging) batch timestamp.
    ok(c.one(0, ExpireEnvelopes(4_000, 1), ts_ms=3_000), ExpiryReport)


def test_system_commands_do_not_use_the_request_id_window() -> None:
    c = Cluster(shard_count=1)
    c.apply(0, ExpireEnvelopes(0, 1), ExpireEnvelopes(0, 1))
    assert read_state(c.stores[0]).idempotency_count == 0


def test_replicas_applying_the_same_entries_are_byte_identical() -> None:
    a, b = fresh(), fresh()
    entries = [
        encode_batch(Batch(10, (Deposit("r1", "alice", 500), Withdraw("r2", "alice", 100)))),
        b"",
        encode_batch(Batch(7, (Withdraw("r3", "alice", 1_000), Deposit("r1", "alice", 500)))),
    ]
    for index, data in enumerate(entries, start=1):
        assert apply_entry(a, index=index, data=data) == apply_entry(b, index=index, data=data)
    assert state_digest(a) == state_digest(b)
    result = apply_batch(a, Batch(11, (Deposit("r9", "alice", 1),)))
    assert ok(result[0], AccountView).balance_fen == 401
    assert state_digest(a) != state_digest(b)


def test_a_handler_moving_the_wrong_amount_trips_the_per_command_check(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from hongbao.ledger import wallet

    real_move = wallet.move

    def generous_move(books, **kwargs):  # a bug: credits one fen more than asked
        real_move(books, **{**kwargs, "amount_fen": kwargs["amount_fen"] + 1})

    monkeypatch.setattr(wallet, "move", generous_move)
    with pytest.raises(InvariantViolation, match="deposit moved"):
        apply_batch(fresh(), Batch(5, (Deposit("r", "alice", 10),)))
