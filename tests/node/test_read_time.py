"""Reads and time: an answer about expiry or a day counter is never contradicted later.

A command is stamped with the leader's clock when it is proposed, but applied only once it
commits; a linearizable read served in between sees the state without it. These tests
play that race with a controlled clock on a real NodeRuntime (node 1; nodes 2 and 3 are
played by the test, which acknowledges heartbeats, so reads are confirmed, but holds the
appends back, so the command stays uncommitted until the read has answered).

The reader's wall clock is the same controlled clock (``time.time`` is patched too), as it
is on a real node: the bug was a read deciding expiry by it.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from hongbao.ledger import (
    Deposit,
    EnvelopeKind,
    EnvelopeStatus,
    GetAccount,
    GrabEnvelope,
    Ok,
    Rejected,
    Result,
    SendEnvelope,
    ShowEnvelope,
    Withdraw,
)
from hongbao.ledger.books import day_of
from hongbao.ledger.limits import DAY_MS, DAY_OFFSET_MS
from hongbao.ledger.results import AccountView, EnvelopeCreated, EnvelopeView, GrabReceipt
from hongbao.node.ledger_service import LedgerFront
from hongbao.raft.types import MessageType as MT
from tests.node.test_runtime_failures import Harness

T0_MS = 1_700_000_000_000
ROUNDS_MAX = 50  # cycles to wait for a read or a commit: a bound, not a sleep


@dataclass
class Clock:
    now_ms: int

    def __call__(self) -> int:
        return self.now_ms


class ReadRace:
    """The harness, its clock, the client front, and two ways to drive cycles."""

    def __init__(self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        self.h = Harness(tmp_path)
        self.clock = Clock(T0_MS)
        self.h.runtime.clock_ms = self.clock
        monkeypatch.setattr(time, "time", lambda: self.clock.now_ms / 1000)
        self.front = LedgerFront(self.h.runtime)

    async def start(self) -> None:
        await self.h.elect()
        await self.h.cycle(5, ack=True, ticks=1)  # the no-op commits: reads can be served

    async def commit(self, command: object) -> Result:
        future = self.h.runtime.submit(0, command)  # type: ignore[arg-type]
        for _ in range(ROUNDS_MAX):
            await self.h.cycle(ack=True)
            if future.done():
                return future.result()
        raise AssertionError(f"{command} did not commit")

    async def read_holding_appends(self, query: object) -> object:
        """Serve a linearizable read while no append is acknowledged (heartbeats are)."""
        task = asyncio.ensure_future(self.front.read(query, stale_ok=False))  # type: ignore[arg-type]
        await asyncio.sleep(0)  # the read registers its barrier
        for _ in range(ROUNDS_MAX):
            self.h.runtime.cycle(1)
            await asyncio.sleep(0)
            for m in self.h.take():
                if m.type is MT.HEARTBEAT:
                    self.h.deliver(
                        type=MT.HEARTBEAT_RESP, from_=m.to, term=m.term, context=m.context
                    )
            if task.done():
                return task.result()
        raise AssertionError("the read was never confirmed")


def test_a_grab_stamped_before_expiry_and_applied_after_a_show_has_a_consistent_order(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Issue 11: the Show answered EXPIRED with a refund, then the grab took a share."""

    async def scenario() -> tuple[EnvelopeView, Result, EnvelopeView]:
        race = ReadRace(tmp_path, monkeypatch)
        try:
            await race.start()
            await race.commit(Deposit("d1", "alice", 10_000))
            sent = await race.commit(SendEnvelope("s1", "alice", EnvelopeKind.LUCKY, 1_000, 3))
            assert isinstance(sent, Ok)
            assert isinstance(sent.data, EnvelopeCreated)
            envelope_id, expires_ms = sent.data.envelope_id, sent.data.expires_at_ms
            first = await race.commit(GrabEnvelope("g1", envelope_id, "bob"))
            assert isinstance(first, Ok)
            race.clock.now_ms = expires_ms - 2
            grab = race.h.runtime.submit(0, GrabEnvelope("g2", envelope_id, "carol"))
            await race.h.cycle(grant_votes=False)  # proposed and stamped; not committed
            assert not grab.done()
            race.clock.now_ms = expires_ms + 1
            shown = await race.read_holding_appends(ShowEnvelope(envelope_id))
            assert not grab.done(), "the read must be served before the grab commits"
            for _ in range(ROUNDS_MAX):
                await race.h.cycle(ack=True, ticks=1)
                if grab.done():
                    break
            final = await race.read_holding_appends(ShowEnvelope(envelope_id))
            assert isinstance(shown, EnvelopeView)
            assert isinstance(final, EnvelopeView)
            return shown, grab.result(), final
        finally:
            race.h.close()

    shown, grab, final = asyncio.run(scenario())
    assert_consistent_order(shown, grab, final)
    # With reads deciding nothing, this race resolves one way: the Show came first.
    assert (shown.status, shown.refunded_fen, shown.expiry_pending) == (
        EnvelopeStatus.OPEN,
        0,
        True,
    )
    assert isinstance(grab, Ok)
    assert isinstance(grab.data, GrabReceipt)
    assert grab.data.ordinal == 2


def assert_consistent_order(shown: EnvelopeView, grab: Result, final: EnvelopeView) -> None:
    """Some order of (Show, grab) explains both answers and the final state.

    Grab first: the Show includes its share. Show first: the Show described a state the
    grab then changed, so it claimed nothing the grab contradicts: it was OPEN, and every
    share and refund it reported is still so in the final state.
    """
    assert final.grabs[: len(shown.grabs)] == shown.grabs, "a reported grab disappeared"
    if shown.status is not EnvelopeStatus.OPEN:  # a closed envelope is final
        assert (final.status, final.refunded_fen, final.grabs) == (
            shown.status,
            shown.refunded_fen,
            shown.grabs,
        ), f"the Show said {shown.status} refunded {shown.refunded_fen}; then: {final}"
    if isinstance(grab, Ok):
        assert isinstance(grab.data, GrabReceipt)
        ordinal = grab.data.ordinal
        seen_by_show = ordinal <= len(shown.grabs)
        assert seen_by_show or shown.status is EnvelopeStatus.OPEN, (
            f"grab {ordinal} succeeded after a Show answered {shown.status}"
        )
        assert any(g.ordinal == ordinal and g.user_id == "carol" for g in final.grabs)
    else:
        assert isinstance(grab, Rejected)
        assert all(g.user_id != "carol" for g in final.grabs)
    if final.status is EnvelopeStatus.EXPIRED:
        assert final.refunded_fen == final.total_fen - final.grabbed_fen


def test_a_payment_stamped_before_midnight_and_applied_after_a_balance_keeps_days_in_order(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Balance read past midnight by the node's clock answered the new day (nothing spent);
    then a withdrawal stamped before midnight was applied in the old day: time ran back."""
    midnight_ms = (day_of(T0_MS) + 1) * DAY_MS - DAY_OFFSET_MS

    async def scenario() -> tuple[AccountView, AccountView]:
        race = ReadRace(tmp_path, monkeypatch)
        try:
            await race.start()
            await race.commit(Deposit("d1", "alice", 10_000))
            await race.commit(Withdraw("w1", "alice", 900))
            race.clock.now_ms = midnight_ms - 1
            late = race.h.runtime.submit(0, Withdraw("w2", "alice", 50))
            await race.h.cycle(grant_votes=False)
            race.clock.now_ms = midnight_ms + 1
            balance = await race.read_holding_appends(GetAccount("alice"))
            assert not late.done()
            for _ in range(ROUNDS_MAX):
                await race.h.cycle(ack=True, ticks=1)
                if late.done():
                    break
            result = late.result()
            assert isinstance(balance, AccountView)
            assert isinstance(result, Ok)
            assert isinstance(result.data, AccountView)
            return balance, result.data
        finally:
            race.h.close()

    balance, withdrawn = asyncio.run(scenario())
    # The withdrawal is ordered after the Balance: its day cannot be an earlier one, and
    # on the same day its running total includes what the Balance reported.
    assert balance.outgoing_day <= withdrawn.outgoing_day, (balance, withdrawn)
    if balance.outgoing_day == withdrawn.outgoing_day:
        assert withdrawn.outgoing_today_fen == balance.outgoing_today_fen + 50
    assert (balance.outgoing_day, balance.outgoing_today_fen) == (day_of(T0_MS), 900)
