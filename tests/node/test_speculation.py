"""A ledger leader evaluates each entry once, ahead of what it has applied (effect replication).

Against a real NodeRuntime on LMDB (node 1; the test plays nodes 2 and 3): entries
proposed back to back, none acknowledged yet, each see the writes of the ones before
(a deposit then a withdrawal of that very money); every entry in the log is effects, and
applying them leaves the balance the results promised. A leader that lost its unapplied
entries to another leader forgets their writes when it is elected again: the money of a
truncated deposit cannot be spent. A leader re-elected over its own unapplied entries waits
for them before it evaluates (else it pays the same money twice). An evaluation too big for
one entry is split.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from hongbao.ledger import Deposit, Ok, Reason, Rejected, Withdraw, query
from hongbao.ledger.commands import GetAccount
from hongbao.ledger.effects import is_effects
from hongbao.ledger.results import AccountView
from hongbao.node import speculate
from hongbao.raft.types import Entry, NodeId
from hongbao.raft.types import MessageType as MT
from tests.node.test_runtime_failures import Harness


def balance(h: Harness, user_id: str) -> int | None:
    result = h.runtime.query(0, lambda store: query(store, GetAccount(user_id)))
    if isinstance(result, Rejected):
        assert result.reason is Reason.ACCOUNT_NOT_FOUND, result
        return None
    assert isinstance(result, Ok)
    assert isinstance(result.data, AccountView)
    return result.data.balance_fen


def test_entries_in_flight_see_each_other_and_apply_as_effects(tmp_path: Path) -> None:
    async def scenario() -> tuple[object, object, int | None, list[bytes]]:
        h = Harness(tmp_path)
        try:
            await h.elect()
            first = h.core.last_index + 1
            deposit = h.runtime.submit(0, Deposit("d-1", "alice", 700))
            await h.cycle()  # proposed, not acknowledged
            withdraw = h.runtime.submit(0, Withdraw("w-1", "alice", 700))
            await h.cycle()
            assert h.core.last_index == first + 1
            assert h.core.applied_index < first
            assert h.runtime.replicas[0].speculation.layer_count == 2
            await h.cycle(10, ack=True, ticks=1)
            log = h.runtime.replicas[0].log
            entries = [e.data for e in log.entries(lo=first, hi=first + 2, max_bytes=None)]
            assert h.runtime.replicas[0].speculation.layer_count == 0  # applied: all gone
            return deposit.result(), withdraw.result(), balance(h, "alice"), entries
        finally:
            h.close()

    deposited, withdrawn, final_fen, entries = asyncio.run(scenario())
    assert isinstance(deposited, Ok), deposited
    assert isinstance(withdrawn, Ok), withdrawn  # it saw the deposit, not yet applied
    assert final_fen == 0
    assert all(is_effects(data) for data in entries)


def test_a_truncated_entry_s_writes_are_forgotten_by_the_next_term(tmp_path: Path) -> None:
    async def scenario() -> tuple[object, int | None]:
        h = Harness(tmp_path)
        try:
            await h.elect()
            term1, start = h.core.term, h.core.last_index
            lost = []
            for n in range(3):  # proposed at start + 1 .. start + 3, never acknowledged
                lost.append(h.runtime.submit(0, Deposit(f"d-lost-{n}", "alice", 500)))
                await h.cycle()
            assert h.runtime.replicas[0].speculation.layer_count == 3
            # Node 2 leads term1 + 1 and overwrites index start + 1: the deposits are gone.
            # Node 1's next term starts at start + 2, below the last of them.
            h.deliver(
                type=MT.APP, from_=NodeId(2), term=term1 + 1, index=start, log_term=term1,
                entries=(Entry(term=term1 + 1, index=start + 1),), commit=start + 1,
            )  # fmt: skip
            await h.cycle()
            assert lost[0].done()
            assert lost[0].exception() is not None
            await h.elect()  # term1 + 2
            spend = h.runtime.submit(0, Withdraw("w-1", "alice", 500))
            await h.cycle(10, ack=True, ticks=1)
            return spend.result(), balance(h, "alice")
        finally:
            h.close()

    spent, final_fen = asyncio.run(scenario())
    assert isinstance(spent, Rejected), spent
    assert spent.reason is Reason.ACCOUNT_NOT_FOUND, spent
    assert final_fen is None


def test_an_entry_too_big_is_split_and_every_command_still_applies(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(speculate, "ENTRY_BYTES_MAX", 400)  # a few deposits: effects

    async def scenario() -> tuple[list[object], list[int], int | None]:
        h = Harness(tmp_path)
        try:
            await h.elect()
            first = h.core.last_index + 1
            futures = [h.runtime.submit(0, Deposit(f"d-{n}", "alice", 10)) for n in range(12)]
            for _ in range(40):
                await h.cycle(ack=True, ticks=1)
                if all(f.done() for f in futures):
                    break
            log = h.runtime.replicas[0].log
            sizes = [
                len(e.data) for e in log.entries(lo=first, hi=h.core.last_index + 1, max_bytes=None)
            ]
            return [f.result() for f in futures], sizes, balance(h, "alice")
        finally:
            h.close()

    results, sizes, final_fen = asyncio.run(scenario())
    assert all(isinstance(result, Ok) for result in results), results
    assert final_fen == 120
    assert len(sizes) > 1, "the twelve deposits should not fit one entry"
    assert max(sizes) <= 400, sizes


def test_a_new_leader_evaluates_nothing_before_its_earlier_terms_entries_apply(
    tmp_path: Path,
) -> None:
    """The wait rule of node/speculate.py. A withdrawal of term 1 is in the log, not yet
    applied, when node 1 leads a later term and is asked to withdraw the same money again. Its
    new term's speculation is empty, so evaluated at once against the applied state (where
    the money is still there) the second withdrawal would succeed too: 500 fen paid out
    twice. It must wait until the first has applied, and then be refused."""

    async def scenario() -> tuple[object, int, int | None, int]:
        h = Harness(tmp_path)
        try:
            await h.elect()
            term1 = h.core.term
            funded = h.runtime.submit(0, Deposit("d-1", "alice", 500))
            await h.cycle(10, ack=True, ticks=1)
            assert isinstance(funded.result(), Ok)
            applied = h.core.applied_index
            h.runtime.submit(0, Withdraw("w-1", "alice", 500))
            await h.cycle()  # proposed at applied + 1, never acknowledged in term 1
            assert h.core.last_index == applied + 1
            # Node 2 leads term1 + 1 and keeps that entry; then node 1 is elected again,
            # with nothing acknowledged yet: the withdrawal and the no-op are unapplied.
            h.deliver(
                type=MT.APP, from_=NodeId(2), term=term1 + 1, index=applied + 1,
                log_term=term1, entries=(), commit=applied,
            )  # fmt: skip
            await h.cycle()
            assert not h.runtime.replicas[0].is_leader
            await h.win(ack=False)  # votes granted, appends never acknowledged
            assert h.core.applied_index == applied
            again = h.runtime.submit(0, Withdraw("w-2", "alice", 500))
            await h.cycle()
            waited = h.core.last_index  # the no-op's index if w-2 waited
            await h.cycle(10, ack=True, ticks=1)
            assert h.core.applied_index == h.core.last_index
            return again.result(), waited, balance(h, "alice"), applied + 2
        finally:
            h.close()

    again_result, waited_at, final_fen, noop_index = asyncio.run(scenario())
    assert waited_at == noop_index, "w-2 was evaluated before the earlier term's entry applied"
    assert isinstance(again_result, Rejected), again_result
    assert again_result.reason is Reason.INSUFFICIENT_FUNDS, again_result
    assert final_fen == 0
