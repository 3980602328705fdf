"""Batch.Execute on one node: every operation its own answer, in order, whatever the mix.

The Batch path queues a whole batch's mutations in one pass and waits once for them all
(``node.batch_service``); these tests hold it to the answers the single calls give: the
refusals at the boundary in band, reads beside mutations, a caller that gives up takes
its still-queued commands with it, and a deadline answers OUTCOME_UNKNOWN, never a "no".
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import grpc
import pytest

from hongbao.node import batch_service
from hongbao.node.batch_service import BatchServicer
from hongbao.node.errors import ErrorReason, error_from_proto
from hongbao.node.ledger_service import EnvelopesServicer, LedgerFront, WalletServicer
from hongbao.proto.gen.hongbao.v1 import ledger_pb2
from tests.node.test_runtime_failures import Harness
from tests.node.topologies import ONE_NODE

CYCLES_MAX = 200


class FakeContext:
    """What the servicer asks of a gRPC context: the peer, and abort."""

    def peer(self) -> str:
        return "ipv4:127.0.0.1:1"

    async def abort_with_status(self, status: Any) -> None:
        raise grpc.RpcError(status.details)


def servicer(h: Harness) -> BatchServicer:
    front = LedgerFront(h.runtime)
    return BatchServicer(WalletServicer(front), EnvelopesServicer(front))


async def run_to_end(h: Harness, call: asyncio.Future[Any]) -> Any:
    """Cycle the node (acknowledging as its peers would) until ``call`` is answered."""
    for _ in range(CYCLES_MAX):
        if call.done():
            return call.result()
        await h.cycle(ack=True)
    raise AssertionError(f"no answer within {CYCLES_MAX} cycles")


def op(**request: Any) -> ledger_pb2.Operation:
    return ledger_pb2.Operation(**request)


def reason(result: ledger_pb2.OperationResult) -> ErrorReason:
    assert result.WhichOneof("result") == "error", result
    return error_from_proto(result.error).reason


def test_a_mixed_batch_answers_each_operation_in_order(tmp_path: Path) -> None:
    operations = [
        op(deposit=ledger_pb2.DepositRequest(request_id="d1", user_id="alice", amount_fen=500)),
        op(),  # sets no request
        op(deposit=ledger_pb2.DepositRequest(request_id="d2", user_id="bob", amount_fen=-3)),
        op(transfer=ledger_pb2.TransferRequest(
            request_id="t1", from_user_id="alice", to_user_id="bob", amount_fen=120)),
        op(withdraw=ledger_pb2.WithdrawRequest(request_id="w1", user_id="bob", amount_fen=1)),
        op(balance=ledger_pb2.BalanceRequest(user_id="alice")),
        op(send=ledger_pb2.SendRequest(request_id="s1", sender_user_id="alice",
           kind=ledger_pb2.ENVELOPE_KIND_LUCKY, total_fen=100, count=2)),
        op(deposit=ledger_pb2.DepositRequest(request_id="d1", user_id="alice", amount_fen=500)),
    ]  # fmt: skip

    async def scenario() -> ledger_pb2.ExecuteResponse:
        h = Harness(tmp_path, ONE_NODE)
        try:
            await h.elect()
            call = asyncio.ensure_future(
                servicer(h).Execute(
                    ledger_pb2.ExecuteRequest(operations=operations),
                    FakeContext(),  # type: ignore[arg-type]
                )
            )
            response: ledger_pb2.ExecuteResponse = await run_to_end(h, call)
            return response
        finally:
            h.close()

    results = list(asyncio.run(scenario()).results)
    assert len(results) == len(operations)
    assert results[0].deposit.balance_fen == 500
    assert reason(results[1]) is ErrorReason.INVALID_REQUEST
    assert results[2].WhichOneof("result") == "error"  # a negative amount never queues
    assert results[3].WhichOneof("result") == "transfer"
    assert results[3].transfer.from_balance_fen == 380
    # bob's wallet was created by the transfer in the same batch, applied in order
    assert results[4].withdraw.balance_fen == 119
    assert results[5].WhichOneof("result") == "balance"
    assert results[6].send.envelope_id
    assert results[6].send.sender_balance_fen == 280
    # the same request id again in the same batch: the first answer, not a second deposit
    assert results[7].deposit.balance_fen == 500


def test_a_caller_that_gives_up_takes_its_queued_commands_with_it(tmp_path: Path) -> None:
    deposits = [
        op(deposit=ledger_pb2.DepositRequest(request_id=f"g{i}", user_id="carol", amount_fen=1))
        for i in range(5)
    ]

    async def scenario() -> tuple[int, int]:
        h = Harness(tmp_path, ONE_NODE)
        try:
            await h.elect()
            replica = h.runtime.replicas[0]
            call = asyncio.ensure_future(
                servicer(h).Execute(
                    ledger_pb2.ExecuteRequest(operations=deposits),
                    FakeContext(),  # type: ignore[arg-type]
                )
            )
            await asyncio.sleep(0)  # admitted: five commands queued, none proposed
            queued = len(replica.pending)
            call.cancel()
            with pytest.raises(asyncio.CancelledError):
                await call
            before = replica.proposals_total
            await h.cycle(3, ack=True)
            return queued, replica.proposals_total - before
        finally:
            h.close()

    queued, proposed = asyncio.run(scenario())
    assert queued == 5
    assert proposed == 0  # nobody waits for them: never proposed


def test_no_result_before_the_deadline_is_outcome_unknown(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(batch_service, "COMMAND_TIMEOUT_S", 0.05)
    deposits = [
        op(deposit=ledger_pb2.DepositRequest(request_id=f"u{i}", user_id="dave", amount_fen=1))
        for i in range(3)
    ]

    async def scenario() -> list[ledger_pb2.OperationResult]:
        h = Harness(tmp_path, ONE_NODE)
        try:
            await h.elect()
            response = await servicer(h).Execute(  # the node never cycles: no commit
                ledger_pb2.ExecuteRequest(operations=deposits),
                FakeContext(),  # type: ignore[arg-type]
            )
            return list(response.results)
        finally:
            h.close()

    results = asyncio.run(scenario())
    assert [reason(r) for r in results] == [ErrorReason.OUTCOME_UNKNOWN] * 3


def test_grabs_the_applied_state_decides_are_answered_without_a_log_entry(
    tmp_path: Path,
) -> None:
    """An empty envelope, a second grab by the same user: the leader answers from its
    applied state (counted), proposes nothing, and a retry of the grab that took the share
    still gets its receipt through the log."""
    setup = [
        op(deposit=ledger_pb2.DepositRequest(request_id="d1", user_id="alice", amount_fen=500)),
        op(send=ledger_pb2.SendRequest(request_id="s1", sender_user_id="alice",
           kind=ledger_pb2.ENVELOPE_KIND_LUCKY, total_fen=100, count=1)),
    ]  # fmt: skip

    def grab(request_id: str, user: str, envelope_id: str) -> ledger_pb2.Operation:
        return op(grab=ledger_pb2.GrabRequest(
            request_id=request_id, envelope_id=envelope_id, user_id=user))  # fmt: skip

    async def scenario() -> tuple[list[ledger_pb2.OperationResult], int, int, bool]:
        h = Harness(tmp_path, ONE_NODE)
        try:
            await h.elect()
            batch = servicer(h)

            async def execute(operations: list[ledger_pb2.Operation]) -> Any:
                request = ledger_pb2.ExecuteRequest(operations=operations)
                call = asyncio.ensure_future(batch.Execute(request, FakeContext()))  # type: ignore[arg-type]
                return await run_to_end(h, call)

            sent = (await execute(setup)).results[1].send.envelope_id
            await execute([grab("g1", "bob", sent)])  # takes the only share
            replica = h.runtime.replicas[0]
            proposed = replica.proposals_total
            request = ledger_pb2.ExecuteRequest(operations=[
                grab("g2", "carol", sent), grab("g3", "bob", sent), grab("g4", "dave", sent),
            ])  # fmt: skip
            call = asyncio.ensure_future(batch.Execute(request, FakeContext()))  # type: ignore[arg-type]
            for _ in range(3):  # no cycle of the node: answered from the applied state
                await asyncio.sleep(0)
            answered_at_once = call.done()
            results = list((await run_to_end(h, call)).results)
            settled_without_entry = replica.proposals_total - proposed
            retry = (await execute([grab("g1", "bob", sent)])).results[0]
            return [*results, retry], settled_without_entry, replica.grabs_settled_total, (
                answered_at_once
            )
        finally:
            h.close()

    results, new_entries, settled, answered_at_once = asyncio.run(scenario())
    assert [reason(r) for r in results[:3]] == [
        ErrorReason.ENVELOPE_EMPTY, ErrorReason.ALREADY_GRABBED, ErrorReason.ENVELOPE_EMPTY
    ]
    assert answered_at_once
    assert new_entries == 0
    assert settled == 3
    assert results[3].grab.amount_fen == 100  # the retry's first answer, from the log
