"""Batch.Execute on a node: many operations per round trip, each with its own result.

Why a path of its own: a Batch is how load arrives (clients and routers coalesce into
it), so its per-operation cost is the node's cost. The mutations of a Batch are
validated, routed and queued in one synchronous pass, and the call then waits once for
all of their results, with one deadline: no task, coroutine chain or timer per operation
(those were most of a transfer's CPU on the node). Reads (balance, history, show) keep
the per-request path, since each needs its own ReadIndex barrier.

Semantics are those of the single calls (``ledger_service``): an operation refused at
the boundary answers its error in band; one still queued when the deadline passes (or
the call is cancelled) is dropped from the queue and answers OUTCOME_UNKNOWN (an entry
already proposed still applies, once: retrying with the same request id is safe).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Final

import grpc
from google.protobuf.message import Message as ProtoMessage

from hongbao.ledger.commands import Command
from hongbao.ledger.results import (
    AccountView,
    EnvelopeCreated,
    GrabReceipt,
    Result,
    ResultData,
    TransferReceipt,
)
from hongbao.node import ledger_api as api
from hongbao.node.admission import BATCH_RESPONSE_LINES_MAX, batch_response_lines, batch_too_large
from hongbao.node.errors import ErrorReason, HongbaoError, abort_async, error_to_proto, make_error
from hongbao.node.ledger_service import (
    COMMAND_TIMEOUT_S,
    HISTORY_LIMIT_DEFAULT,
    EnvelopesServicer,
    LedgerFront,
    WalletServicer,
    answer_bounded,
    unwrap,
)
from hongbao.proto.gen.hongbao.v1 import ledger_pb2, ledger_pb2_grpc

log = logging.getLogger(__name__)

BATCH_OPERATIONS_MAX: Final = 10_000
BATCH_ADMIT_SLICE: Final = 250  # operations admitted per turn of the event loop
Context = grpc.aio.ServicerContext[ProtoMessage, ProtoMessage]


@dataclass(frozen=True, slots=True)
class Mutation:
    """How one kind of Batch operation becomes a command, and its result an answer."""

    command: Callable[[Any], Command]
    result_kind: type[ResultData]
    response: Callable[[Any], ProtoMessage]


MUTATIONS: Final[dict[str, Mutation]] = {
    "deposit": Mutation(
        api.deposit_command,
        AccountView,
        lambda v: ledger_pb2.DepositResponse(balance_fen=v.balance_fen),
    ),
    "withdraw": Mutation(
        api.withdraw_command,
        AccountView,
        lambda v: ledger_pb2.WithdrawResponse(balance_fen=v.balance_fen),
    ),
    "transfer": Mutation(api.transfer_command, TransferReceipt, api.transfer_response),
    "freeze": Mutation(
        api.freeze_command, AccountView, lambda v: ledger_pb2.FreezeResponse(frozen=v.frozen)
    ),
    "unfreeze": Mutation(
        api.unfreeze_command, AccountView, lambda v: ledger_pb2.UnfreezeResponse(frozen=v.frozen)
    ),
    "send": Mutation(api.send_command, EnvelopeCreated, api.send_response),
    "grab": Mutation(api.grab_command, GrabReceipt, api.grab_response),
}


@dataclass(slots=True)
class _Queued:
    position: int
    name: str
    mutation: Mutation
    shard_id: int
    future: asyncio.Future[Result]


class BatchServicer(ledger_pb2_grpc.BatchServicer):
    """Many operations per round trip; each gets its own result, in order."""

    def __init__(self, wallet: WalletServicer, envelopes: EnvelopesServicer) -> None:
        self.front: LedgerFront = wallet.front
        self.limits = wallet.front.limits
        self.inflight = wallet.front.inflight
        self.reads: dict[str, Callable[[ProtoMessage], Awaitable[ProtoMessage]]] = {
            "balance": wallet.balance,  # type: ignore[dict-item]
            "history": wallet.history,  # type: ignore[dict-item]
            "show": envelopes.show,  # type: ignore[dict-item]
        }
        kinds = {f.name for f in ledger_pb2.Operation.DESCRIPTOR.oneofs_by_name["op"].fields}
        assert kinds == set(MUTATIONS) | set(self.reads), "each op kind: a mutation or a read"

    async def Execute(
        self,
        request: ledger_pb2.ExecuteRequest,
        context: Context,
    ) -> ledger_pb2.ExecuteResponse:
        count = len(request.operations)
        if count > BATCH_OPERATIONS_MAX:
            error = make_error(
                ErrorReason.LIMIT_EXCEEDED,
                f"{count} operations; at most {BATCH_OPERATIONS_MAX} per call",
            )
            await abort_async(context, error)
        lines = batch_response_lines(request, self.limits, HISTORY_LIMIT_DEFAULT)
        if lines > BATCH_RESPONSE_LINES_MAX:
            await abort_async(context, batch_too_large(lines))
        return await answer_bounded(self.inflight, context, lambda: self._all(request), count)

    async def _all(self, request: ledger_pb2.ExecuteRequest) -> ledger_pb2.ExecuteResponse:
        operations = request.operations
        results: list[ledger_pb2.OperationResult | None] = [None] * len(operations)
        queued: list[_Queued] = []
        reads: list[tuple[int, asyncio.Task[ledger_pb2.OperationResult]]] = []
        for position, operation in enumerate(operations):
            if position and position % BATCH_ADMIT_SLICE == 0:
                # 10,000 operations admitted in one go held the event loop long enough to
                # miss heartbeats: yield between slices.
                await asyncio.sleep(0)
            name = operation.WhichOneof("op")
            if name is None:
                error = api.invalid("an operation must set exactly one request")
                results[position] = _error(error)
                continue
            mutation = MUTATIONS.get(name)
            if mutation is None:
                task = asyncio.ensure_future(self._read(name, getattr(operation, name)))
                reads.append((position, task))
                continue
            try:
                shard_id, future = self.front.submit(mutation.command(getattr(operation, name)))
            except HongbaoError as error:
                results[position] = _error(error)
                continue
            queued.append(_Queued(position, name, mutation, shard_id, future))
        try:
            if queued:
                await self._wait(queued)
            for position, task in reads:
                results[position] = await task
        except asyncio.CancelledError:
            for _, task in reads:  # the caller gave up: its reads are nobody's business
                task.cancel()
            raise
        for item in queued:
            results[item.position] = _answer(item)
        assert all(r is not None for r in results), "every operation has its result"
        return ledger_pb2.ExecuteResponse(results=results)  # type: ignore[arg-type]

    async def _wait(self, queued: list[_Queued]) -> None:
        futures = [item.future for item in queued]
        try:
            _, pending = await asyncio.wait(futures, timeout=COMMAND_TIMEOUT_S)
        except asyncio.CancelledError:
            for future in futures:  # the caller gave up: drop what is still queued
                future.cancel()
            raise
        if pending:
            log.warning(
                "%d of %d operations without a result within %.1f s: outcome unknown",
                len(pending), len(futures), COMMAND_TIMEOUT_S,
            )  # fmt: skip
            for future in pending:
                future.cancel()

    async def _read(self, name: str, request: ProtoMessage) -> ledger_pb2.OperationResult:
        try:
            response = await self.reads[name](request)
        except HongbaoError as error:
            return _error(error)
        result = ledger_pb2.OperationResult()
        getattr(result, name).CopyFrom(response)
        return result


def _answer(item: _Queued) -> ledger_pb2.OperationResult:
    future = item.future
    if future.cancelled():
        return _error(
            make_error(
                ErrorReason.OUTCOME_UNKNOWN,
                "no result before the deadline; retry with the same request id",
                shard_id=item.shard_id,
            )
        )
    try:
        data = unwrap(future.result(), item.shard_id)
        response = item.mutation.response(api.expect(data, item.mutation.result_kind))
    except HongbaoError as error:
        return _error(error)
    result = ledger_pb2.OperationResult()
    getattr(result, item.name).CopyFrom(response)
    return result


def _error(error: HongbaoError) -> ledger_pb2.OperationResult:
    return ledger_pb2.OperationResult(error=error_to_proto(error))
