"""Every request gets an answer, and a "maybe" is never turned into a "no".

The runtime must resolve each client future (no request hangs to its deadline) through
truncation, leadership lost and regained within one cycle, and shutdown; and the client
must keep OUTCOME_UNKNOWN once any attempt may have applied a command (pitfall 16), even
if later attempts are refused with NOT_LEADER.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from hongbao.config.topology import parse_topology
from hongbao.ledger import Deposit
from hongbao.node.errors import ErrorReason, HongbaoError, RetryableError
from hongbao.node.runtime import NodeRuntime
from hongbao.node.storage import Durability, NodeEnv
from hongbao.raft.errors import ProposalDropped
from hongbao.raft.types import Entry, Message, NodeId
from hongbao.raft.types import MessageType as MT
from tests.node.topologies import ONE_NODE, THREE_NODES


class Harness:
    """Node 1 as a real NodeRuntime on LMDB; nodes 2 and 3 are played by the test."""

    def __init__(self, tmp_path: Path, topology_data: dict = THREE_NODES) -> None:
        self.topology = parse_topology(topology_data)
        self.env = NodeEnv(tmp_path / "n1", durability=Durability.NO_FSYNC, map_size_bytes=1 << 26)
        self.runtime = NodeRuntime(topology=self.topology, node_id=1, env=self.env)
        self.sent: list[Message] = []
        self.runtime.send = lambda to, shard, m: self.sent.append(m)
        self.core = self.runtime.replicas[0].core

    def take(self) -> list[Message]:
        sent, self.sent = self.sent, []
        return sent

    def deliver(self, **fields: object) -> None:
        fields.setdefault("to", NodeId(1))
        self.runtime.deliver(0, Message(**fields))  # type: ignore[arg-type]

    async def cycle(
        self, n: int = 1, *, grant_votes: bool = True, ack: bool = False, ticks: int = 0
    ) -> None:
        for _ in range(n):
            self.runtime.cycle(ticks)
            await asyncio.sleep(0)
            for m in self.take():
                if grant_votes and m.type in (MT.PRE_VOTE, MT.VOTE):
                    kind = MT.PRE_VOTE_RESP if m.type is MT.PRE_VOTE else MT.VOTE_RESP
                    self.deliver(type=kind, from_=m.to, term=m.term)
                if ack and m.type is MT.HEARTBEAT:
                    self.deliver(
                        type=MT.HEARTBEAT_RESP, from_=m.to, term=m.term, context=m.context
                    )
                if ack and m.type is MT.APP:
                    last = m.entries[-1].index if m.entries else m.index
                    self.deliver(type=MT.APP_RESP, from_=m.to, term=m.term, index=last)

    async def win(self, *, ack: bool = True) -> None:
        """Node 1 campaigns until it leads (votes granted; appends acknowledged if ``ack``)."""
        self.core.campaign()
        for _ in range(20):
            await self.cycle(ack=ack)
            if self.runtime.replicas[0].is_leader:
                return
        raise AssertionError("node 1 was not elected")

    async def elect(self) -> None:
        """Node 1 leads, and its term's no-op has applied: it may propose at once.

        (A leader of the ledger evaluates nothing before every entry of earlier terms has
        applied: node/speculate.py.)
        """
        await self.win()
        term_start = self.core.last_index
        for _ in range(20):
            if self.core.applied_index >= term_start:
                return
            await self.cycle(ack=True)
        raise AssertionError("node 1's no-op did not apply")

    def close(self) -> None:
        self.env.close()


def test_inflight_entry_overwritten_at_same_index_is_resolved(tmp_path: Path) -> None:
    """An ex-leader whose uncommitted tail was truncated by another leader, elected again,
    proposes a new entry at an index still held in ``inflight`` by its old term's entry.
    ``inflight[index] = ...`` silently replaces the old InflightEntry: its futures are never
    resolved (the client waits for the full deadline), although the old entry is gone."""

    async def scenario() -> tuple[asyncio.Future, asyncio.Future, asyncio.Future]:
        h = Harness(tmp_path)
        try:
            await h.elect()
            term1 = h.core.term
            noop = h.core.last_index
            old = []
            for n in range(3):  # three entries, uncommitted (no follower acks them)
                old.append(h.runtime.submit(0, Deposit(f"old{n}", "alice", 100)))
                await h.cycle()
            assert h.core.last_index == noop + 3
            # Node 2 wins term+1 with a shorter log: node 1's tail beyond noop+1 goes.
            h.deliver(
                type=MT.APP, from_=NodeId(2), term=term1 + 1, index=noop, log_term=term1,
                entries=(Entry(term=term1 + 1, index=noop + 1),), commit=0,
            )
            await h.cycle()
            assert not h.runtime.replicas[0].is_leader
            assert h.core.last_index == noop + 1
            # Node 1 is elected again: no-op at noop+2, the new command at noop+3, which is
            # exactly the index of old[2] (term1).
            await h.elect()
            new = h.runtime.submit(0, Deposit("new", "alice", 100))
            await h.cycle()
            # Everything commits and is applied.
            await h.cycle(10, ack=True, ticks=1)
            return old[1], old[2], new
        finally:
            h.close()

    old_mid, old_last, new = asyncio.run(scenario())
    assert new.done()
    assert not new.exception()
    assert old_mid.done()  # overwritten by the other term's entry at the same index: resolved
    assert old_last.done(), "the overwritten in-flight entry's future was orphaned (hangs)"


def test_read_is_answered_when_leadership_is_lost_and_regained_in_one_cycle(
    tmp_path: Path,
) -> None:
    """The leader steps down and is re-elected (a later term) while one cycle's inbound
    messages are stepped. The Ready's soft state is unchanged (still leader, still node 1),
    so ``_after_advance`` fails nothing, and ``lost_leadership`` is ignored. The core reset
    its ReadOnly queue, so the read's context is never acknowledged: the read hangs."""

    async def scenario() -> asyncio.Future:
        h = Harness(tmp_path)
        try:
            await h.elect()
            await h.cycle(5, ack=True, ticks=1)  # commit the no-op so reads are served at once
            term1 = h.core.term
            barrier = h.runtime.read_barrier(0)
            await h.cycle(grant_votes=False)  # heartbeats carrying the read's context go out
            assert not barrier.done()
            h.take()
            # In one batch of inbound messages: deposed by node 2, then (transfer) back.
            h.deliver(type=MT.HEARTBEAT, from_=NodeId(2), term=term1 + 1, commit=0)
            h.deliver(type=MT.TIMEOUT_NOW, from_=NodeId(2), term=term1 + 1)
            h.deliver(type=MT.VOTE_RESP, from_=NodeId(2), term=term1 + 2)
            await h.cycle(ack=True)
            assert h.runtime.replicas[0].is_leader
            assert h.core.term == term1 + 2
            await h.cycle(20, ack=True, ticks=1)  # followers answer everything from now on
            return barrier
        finally:
            h.close()

    barrier = asyncio.run(scenario())
    assert barrier.done(), "the read was orphaned by a leadership change within one cycle"


def test_submit_after_stop_is_refused_not_left_hanging(tmp_path: Path) -> None:
    """``stop()`` fails every waiter, but the gRPC server keeps serving for its grace
    period and ``submit``/``read_barrier`` still accept work (the core still says leader)
    that no cycle will ever run: each such request hangs to its deadline."""

    async def scenario() -> list[object]:
        h = Harness(tmp_path, ONE_NODE)
        try:
            await h.elect()
            h.runtime.stop()
            outcomes: list[object] = []
            for call in (
                lambda: h.runtime.submit(0, Deposit("late", "alice", 100)),
                lambda: h.runtime.read_barrier(0),
            ):
                try:
                    future = call()
                except HongbaoError as error:
                    outcomes.append(error)
                    continue
                await asyncio.sleep(0)
                outcomes.append(future.exception() if future.done() else "hanging")
            return outcomes
        finally:
            h.close()

    outcomes = asyncio.run(scenario())
    assert "hanging" not in outcomes, outcomes


def test_control_read_is_answered_without_a_leadership_change(tmp_path: Path) -> None:
    """Control for the test above: without a leadership change the harness answers reads."""

    async def scenario() -> asyncio.Future:
        h = Harness(tmp_path)
        try:
            await h.elect()
            await h.cycle(5, ack=True, ticks=1)
            barrier = h.runtime.read_barrier(0)
            await h.cycle(20, ack=True, ticks=1)
            return barrier
        finally:
            h.close()

    barrier = asyncio.run(scenario())
    assert barrier.done()
    assert barrier.exception() is None


# -- client: an attempt that may have applied must not end as a definite failure ----------

from types import SimpleNamespace  # noqa: E402

import grpc  # noqa: E402

from hongbao.client.sdk import ClientOptions, HongbaoClient  # noqa: E402
from hongbao.node.errors import (  # noqa: E402
    LeaderHint,
    error_from_proto,
    error_to_proto,
    make_error,
    to_rpc_status,
)
from hongbao.proto.gen.hongbao.v1 import ledger_pb2  # noqa: E402


def _rpc_error(error: HongbaoError) -> grpc.aio.AioRpcError:
    status = to_rpc_status(error)
    return grpc.aio.AioRpcError(
        error.code,
        grpc.aio.Metadata(),
        grpc.aio.Metadata(("grpc-status-details-bin", status.SerializeToString())),
        details=status.message,
    )


def _answers() -> list[HongbaoError]:
    """First attempt: the leader proposed the command, then lost track of it (maybe
    applied); every later attempt: a node that does not lead (a truthful NOT_LEADER about
    that attempt only)."""
    unknown = make_error(ErrorReason.OUTCOME_UNKNOWN, "no result before the deadline", shard_id=0)
    not_leader = make_error(
        ErrorReason.NOT_LEADER, "not the leader", shard_id=0, leader_hint=LeaderHint(0, "")
    )
    return [unknown] + [not_leader] * 10


def test_client_call_keeps_outcome_unknown_after_later_not_leader() -> None:
    async def scenario() -> HongbaoError:
        client = HongbaoClient(parse_topology(THREE_NODES), ClientOptions(attempts_max=3))
        answers = _answers()

        async def deposit(request: object, timeout: float) -> object:
            raise _rpc_error(answers.pop(0))

        stubs = SimpleNamespace(wallet=SimpleNamespace(Deposit=deposit))
        client.stubs = lambda node_id: stubs  # type: ignore[method-assign]
        with pytest.raises(HongbaoError) as raised:
            await client.deposit("alice", 100, request_id="r" * 32)
        return raised.value

    error = asyncio.run(scenario())
    assert error.outcome_unknown, f"the deposit may have been applied, the client says {error!r}"


def test_client_batch_keeps_outcome_unknown_after_later_not_leader() -> None:
    async def scenario() -> HongbaoError:
        client = HongbaoClient(parse_topology(THREE_NODES), ClientOptions(attempts_max=3))
        answers = _answers()

        async def execute(request: ledger_pb2.ExecuteRequest, timeout: float) -> object:
            error = error_to_proto(answers.pop(0))
            return ledger_pb2.ExecuteResponse(results=[ledger_pb2.OperationResult(error=error)])

        stubs = SimpleNamespace(batch=SimpleNamespace(Execute=execute))
        client.stubs = lambda node_id: stubs  # type: ignore[method-assign]
        op = ledger_pb2.Operation(
            deposit=ledger_pb2.DepositRequest(request_id="r" * 32, user_id="alice", amount_fen=1)
        )
        [result] = await client.execute([(0, op)])
        assert result.WhichOneof("result") == "error"
        return error_from_proto(result.error)

    error = asyncio.run(scenario())
    assert error.outcome_unknown, f"the deposit may have been applied, the client says {error!r}"


def test_a_refusal_by_the_leader_itself_makes_the_client_back_off(tmp_path: Path) -> None:
    # The core refuses a proposal or read before it enters the log when this leader is
    # too busy (uncommitted bytes, pending reads). NOT_LEADER naming ourselves would send
    # the client straight back without a pause; UNAVAILABLE makes it back off.
    async def scenario() -> HongbaoError:
        h = Harness(tmp_path, ONE_NODE)
        try:
            await h.elect()
            replica = h.runtime.replicas[0]
            refused = ProposalDropped("too many uncommitted bytes", NodeId(1))
            return h.runtime.dropped_error(replica, refused)
        finally:
            h.close()

    error = asyncio.run(scenario())
    assert error.reason is ErrorReason.UNAVAILABLE
    assert isinstance(error, RetryableError)
    assert not error.outcome_unknown  # nothing entered the log: a definite "not applied"


def test_a_command_whose_caller_gave_up_before_the_cycle_is_never_proposed(
    tmp_path: Path,
) -> None:
    """Under overload, requests wait in the shard's queue past their callers' deadlines.
    A caller that gives up (a cancelled call, a passed deadline) must take its queued
    command with it: proposing it anyway is work nobody waits for, and a queue of such
    work is how a busy cluster collapses (every request times out behind dead ones)."""
    from hongbao.ledger import machine
    from hongbao.ledger.commands import GetAccount
    from hongbao.ledger.results import Rejected
    from hongbao.node.ledger_service import LedgerFront

    async def scenario() -> tuple[int, int, int]:
        h = Harness(tmp_path, ONE_NODE)
        try:
            await h.elect()
            replica = h.runtime.replicas[0]
            front = LedgerFront(h.runtime)
            before = replica.proposals_total
            gone = asyncio.ensure_future(front.mutate(Deposit("gone-1", "alice", 100)))
            await asyncio.sleep(0)  # queued in the shard
            assert len(replica.pending) == 1
            gone.cancel()
            await asyncio.sleep(0)
            kept = asyncio.ensure_future(front.mutate(Deposit("kept-1", "bob", 100)))
            await asyncio.sleep(0)
            await h.cycle(3, ack=True)
            await asyncio.wait_for(kept, 5)
            def account(user: str) -> object:
                return h.runtime.query(
                    0, lambda store: machine.query(store, GetAccount(user), now_ms=0)
                )

            balances = [account("alice"), account("bob")]
            return before, replica.proposals_total, balances
        finally:
            h.close()

    before, after, (alice, bob) = asyncio.run(scenario())
    assert after - before == 1  # one entry, holding only the command still awaited
    assert bob.data.balance_fen == 100
    assert isinstance(alice, Rejected), alice  # no such wallet: the abandoned deposit never ran
