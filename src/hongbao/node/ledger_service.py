"""The ledger's gRPC services on a node: Wallet, Envelopes, Batch, and Peer.Deliver.

Rules of this module: every request is validated before it is proposed (the state
machine validates again), routed to its shard (a user's wallet shard, an envelope's home
shard), refused with NOT_LEADER and a hint off the leader, and answered only after its
entry was applied and committed to LMDB. A command that was proposed but whose outcome
is unknown when the deadline passes is answered OUTCOME_UNKNOWN: the client retries with
the same request id, and the ledger's idempotency makes that safe.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import TypeVar

import grpc
from google.protobuf.message import Message as ProtoMessage

from hongbao.ledger import machine
from hongbao.ledger.commands import (
    Command,
    GetAccount,
    GetHistory,
    GrabEnvelope,
    Query,
    SendEnvelope,
    ShowEnvelope,
    Transfer,
)
from hongbao.ledger.results import (
    AccountView,
    EnvelopeCreated,
    EnvelopeView,
    GrabReceipt,
    HistoryView,
    Ok,
    Rejected,
    RequestStatusView,
    ResultData,
    TransferReceipt,
)
from hongbao.ledger.sharding import parse_envelope_id, shard_for_user
from hongbao.ledger.validate import validate, validate_query
from hongbao.logs import log_context
from hongbao.node import ledger_api as api
from hongbao.node.admission import (
    BATCH_RESPONSE_LINES_MAX,
    InflightBound,
    batch_response_lines,
    batch_too_large,
)
from hongbao.node.courier import Courier, decode_deliveries
from hongbao.node.deliver_guard import credits_to_apply
from hongbao.node.errors import (
    ErrorReason,
    HongbaoError,
    abort_async,
    error_to_proto,
    make_error,
)
from hongbao.node.peer_guard import RefusalLog
from hongbao.node.runtime import NodeRuntime
from hongbao.proto.gen.hongbao.v1 import ledger_pb2, ledger_pb2_grpc, peer_pb2

log = logging.getLogger(__name__)

COMMAND_TIMEOUT_S = 5.0
READ_TIMEOUT_S = 5.0
BATCH_OPERATIONS_MAX = 10_000
BATCH_ADMIT_SLICE = 250  # operations of a Batch started per turn of the event loop
HISTORY_LIMIT_DEFAULT = 50

Response = TypeVar("Response", bound=ProtoMessage)
Context = grpc.aio.ServicerContext[ProtoMessage, ProtoMessage]


class LedgerFront:
    """Shared by the three services: validate, route, propose or read, and translate."""

    def __init__(self, runtime: NodeRuntime) -> None:
        self.runtime = runtime
        self.limits = runtime.topology.limits
        self.inflight = InflightBound()  # per client connection, over the three services
        self.shard_count = runtime.topology.shard_count

    # -- routing -------------------------------------------------------------------------

    def user_shard(self, user_id: str) -> int:
        return shard_for_user(user_id, self.shard_count)

    def envelope_shard(self, envelope_id: str) -> int:
        parsed = parse_envelope_id(envelope_id)
        if parsed is None:
            raise api.invalid(f"malformed envelope id {envelope_id!r}", ErrorReason.MALFORMED_ID)
        shard_id = parsed[0]
        if shard_id >= self.shard_count:
            raise make_error(ErrorReason.NOT_FOUND, f"no envelope {envelope_id!r}")
        return shard_id

    def command_shard(self, command: Command) -> int:
        if isinstance(command, SendEnvelope):
            return self.user_shard(command.sender_user_id)
        if isinstance(command, GrabEnvelope):
            return self.envelope_shard(command.envelope_id)
        if isinstance(command, Transfer):
            return self.user_shard(command.from_user_id)
        user_id = getattr(command, "user_id", None)
        if not isinstance(user_id, str):
            raise api.invalid(f"{type(command).__name__} cannot be sent by a client")
        return self.user_shard(user_id)

    # -- mutations and reads -------------------------------------------------------------

    async def mutate(self, command: Command) -> ResultData:
        rejected = validate(command, self.limits)
        if rejected is not None:
            raise api.rejected_error(rejected)
        shard_id = self.command_shard(command)
        with log_context(shard=shard_id, request_id=getattr(command, "request_id", None)):
            future = self.runtime.submit(shard_id, command)
            try:
                # Not shielded: a caller that gives up (its deadline, a cancelled call, our
                # own timeout) cancels the future, and a command still queued is then never
                # proposed. Under overload that is what keeps the queue from filling with
                # work nobody waits for (a command already proposed still applies, once).
                result = await asyncio.wait_for(future, COMMAND_TIMEOUT_S)
            except TimeoutError:
                log.warning("no result within %.1f s: outcome unknown", COMMAND_TIMEOUT_S)
                raise make_error(
                    ErrorReason.OUTCOME_UNKNOWN,
                    "no result before the deadline; retry with the same request id",
                    shard_id=shard_id,
                ) from None
        return _unwrap(result, shard_id)

    def query_shard(self, query: Query) -> int:
        if isinstance(query, ShowEnvelope):
            return self.envelope_shard(query.envelope_id)
        if isinstance(query, GetAccount | GetHistory):
            return self.user_shard(query.user_id)
        raise api.invalid(f"{type(query).__name__} cannot be sent by a client")

    async def read(self, query: Query, *, stale_ok: bool) -> ResultData:
        """Validate, route, and read: linearizable through ReadIndex unless ``stale_ok``.

        The answer is the applied state at the read point, in the log's time: the node's
        clock decides nothing in it (``machine.query``), so no later answer contradicts it.
        It is passed only to flag envelopes whose expiry is pending; it is the clock the
        runtime stamps proposals with.
        """
        rejected = validate_query(query, self.limits)
        if rejected is not None:
            raise api.rejected_error(rejected)
        shard_id = self.query_shard(query)
        if not stale_ok:
            barrier = self.runtime.read_barrier(shard_id)
            try:
                await asyncio.wait_for(barrier, READ_TIMEOUT_S)
            except TimeoutError:
                raise make_error(
                    ErrorReason.UNAVAILABLE, "could not confirm leadership in time"
                ) from None
        now_ms = self.runtime.clock_ms()
        result = self.runtime.query(
            shard_id, lambda store: machine.query(store, query, now_ms=now_ms)
        )
        return _unwrap(result, shard_id)


def _unwrap(result: Ok | Rejected, shard_id: int) -> ResultData:
    if isinstance(result, Rejected):
        raise api.rejected_error(result, shard_id)
    return result.data


async def _answer(
    inflight: InflightBound,
    context: Context,
    work: Callable[[], Awaitable[Response]],
    count: int = 1,
) -> Response:
    peer = context.peer()
    try:
        inflight.acquire(peer, count)
        try:
            return await work()
        finally:
            inflight.release(peer, count)
    except HongbaoError as error:
        await abort_async(context, error)
        raise  # unreachable: abort raises


class WalletServicer(ledger_pb2_grpc.WalletServicer):
    def __init__(self, front: LedgerFront) -> None:
        self.front = front

    async def deposit(self, request: ledger_pb2.DepositRequest) -> ledger_pb2.DepositResponse:
        view = api.expect(await self.front.mutate(api.deposit_command(request)), AccountView)
        return ledger_pb2.DepositResponse(balance_fen=view.balance_fen)

    async def withdraw(self, request: ledger_pb2.WithdrawRequest) -> ledger_pb2.WithdrawResponse:
        view = api.expect(await self.front.mutate(api.withdraw_command(request)), AccountView)
        return ledger_pb2.WithdrawResponse(balance_fen=view.balance_fen)

    async def transfer(self, request: ledger_pb2.TransferRequest) -> ledger_pb2.TransferResponse:
        data = await self.front.mutate(api.transfer_command(request))
        return api.transfer_response(api.expect(data, TransferReceipt))

    async def balance(self, request: ledger_pb2.BalanceRequest) -> ledger_pb2.BalanceResponse:
        query = GetAccount(request.user_id)
        data = await self.front.read(query, stale_ok=request.stale_ok)
        return api.balance_response(api.expect(data, AccountView))

    async def history(self, request: ledger_pb2.HistoryRequest) -> ledger_pb2.HistoryResponse:
        before_seq = api.history_before_seq(request.user_id, request.page_token)
        limit = request.limit or HISTORY_LIMIT_DEFAULT
        query = GetHistory(request.user_id, limit, before_seq)
        data = await self.front.read(query, stale_ok=request.stale_ok)
        return api.history_response(api.expect(data, HistoryView))

    async def freeze(self, request: ledger_pb2.FreezeRequest) -> ledger_pb2.FreezeResponse:
        view = api.expect(await self.front.mutate(api.freeze_command(request)), AccountView)
        return ledger_pb2.FreezeResponse(frozen=view.frozen)

    async def unfreeze(self, request: ledger_pb2.UnfreezeRequest) -> ledger_pb2.UnfreezeResponse:
        view = api.expect(await self.front.mutate(api.unfreeze_command(request)), AccountView)
        return ledger_pb2.UnfreezeResponse(frozen=view.frozen)

    async def request_status(
        self, request: ledger_pb2.RequestStatusRequest
    ) -> ledger_pb2.RequestStatusResponse:
        """Through the log (a Fence): the answer is final, and NOT_APPLIED fences the id."""
        data = await self.front.mutate(api.fence_command(request))
        return api.request_status_response(api.expect(data, RequestStatusView))

    async def RequestStatus(self, request, context):  # type: ignore[no-untyped-def]
        return await _answer(self.front.inflight, context, lambda: self.request_status(request))

    async def Deposit(self, request, context):  # type: ignore[no-untyped-def]
        return await _answer(self.front.inflight, context, lambda: self.deposit(request))

    async def Withdraw(self, request, context):  # type: ignore[no-untyped-def]
        return await _answer(self.front.inflight, context, lambda: self.withdraw(request))

    async def Transfer(self, request, context):  # type: ignore[no-untyped-def]
        return await _answer(self.front.inflight, context, lambda: self.transfer(request))

    async def Balance(self, request, context):  # type: ignore[no-untyped-def]
        return await _answer(self.front.inflight, context, lambda: self.balance(request))

    async def History(self, request, context):  # type: ignore[no-untyped-def]
        return await _answer(self.front.inflight, context, lambda: self.history(request))

    async def Freeze(self, request, context):  # type: ignore[no-untyped-def]
        return await _answer(self.front.inflight, context, lambda: self.freeze(request))

    async def Unfreeze(self, request, context):  # type: ignore[no-untyped-def]
        return await _answer(self.front.inflight, context, lambda: self.unfreeze(request))


class EnvelopesServicer(ledger_pb2_grpc.EnvelopesServicer):
    def __init__(self, front: LedgerFront) -> None:
        self.front = front

    async def send(self, request: ledger_pb2.SendRequest) -> ledger_pb2.SendResponse:
        data = await self.front.mutate(api.send_command(request))
        return api.send_response(api.expect(data, EnvelopeCreated))

    async def grab(self, request: ledger_pb2.GrabRequest) -> ledger_pb2.GrabResponse:
        data = await self.front.mutate(api.grab_command(request))
        return api.grab_response(api.expect(data, GrabReceipt))

    async def show(self, request: ledger_pb2.ShowRequest) -> ledger_pb2.ShowResponse:
        query = ShowEnvelope(request.envelope_id)
        data = await self.front.read(query, stale_ok=request.stale_ok)
        return api.envelope_response(api.expect(data, EnvelopeView))

    async def Send(self, request, context):  # type: ignore[no-untyped-def]
        return await _answer(self.front.inflight, context, lambda: self.send(request))

    async def Grab(self, request, context):  # type: ignore[no-untyped-def]
        return await _answer(self.front.inflight, context, lambda: self.grab(request))

    async def Show(self, request, context):  # type: ignore[no-untyped-def]
        return await _answer(self.front.inflight, context, lambda: self.show(request))


class BatchServicer(ledger_pb2_grpc.BatchServicer):
    """Many operations per round trip; each gets its own result, in order."""

    def __init__(self, wallet: WalletServicer, envelopes: EnvelopesServicer) -> None:
        self.limits = wallet.front.limits
        self.inflight = wallet.front.inflight
        self.handlers: dict[str, Callable[[ProtoMessage], Awaitable[ProtoMessage]]] = {
            "deposit": wallet.deposit,  # type: ignore[dict-item]
            "withdraw": wallet.withdraw,  # type: ignore[dict-item]
            "transfer": wallet.transfer,  # type: ignore[dict-item]
            "balance": wallet.balance,  # type: ignore[dict-item]
            "history": wallet.history,  # type: ignore[dict-item]
            "freeze": wallet.freeze,  # type: ignore[dict-item]
            "unfreeze": wallet.unfreeze,  # type: ignore[dict-item]
            "send": envelopes.send,  # type: ignore[dict-item]
            "grab": envelopes.grab,  # type: ignore[dict-item]
            "show": envelopes.show,  # type: ignore[dict-item]
        }

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
        return await _answer(self.inflight, context, lambda: self._all(request), count)

    async def _all(self, request: ledger_pb2.ExecuteRequest) -> ledger_pb2.ExecuteResponse:
        # Started a slice at a time, yielding in between: 10,000 operations started in one
        # go held the event loop for half a second, long enough to miss heartbeats.
        operations = request.operations
        tasks: list[asyncio.Task[ledger_pb2.OperationResult]] = []
        for start in range(0, len(operations), BATCH_ADMIT_SLICE):
            tasks.extend(
                asyncio.ensure_future(self._one(op))
                for op in operations[start : start + BATCH_ADMIT_SLICE]
            )
            await asyncio.sleep(0)
        return ledger_pb2.ExecuteResponse(results=await asyncio.gather(*tasks))

    async def _one(self, operation: ledger_pb2.Operation) -> ledger_pb2.OperationResult:
        name = operation.WhichOneof("op")
        if name is None:
            error = api.invalid("an operation must set exactly one request")
            return ledger_pb2.OperationResult(error=error_to_proto(error))
        try:
            response = await self.handlers[name](getattr(operation, name))
        except HongbaoError as error:
            return ledger_pb2.OperationResult(error=error_to_proto(error))
        result = ledger_pb2.OperationResult()
        getattr(result, name).CopyFrom(response)
        return result


async def deliver(
    runtime: NodeRuntime,
    courier: Courier,
    request: peer_pb2.DeliverRequest,
    refusals: RefusalLog,
) -> peer_pb2.DeliverResponse:
    """Peer.Deliver on the destination's leader (see ``courier`` and ``deliver_guard``)."""
    destination = request.destination_shard
    if destination not in runtime.replicas or not runtime.replicas[destination].is_leader:
        raise runtime.not_leader(destination)
    commands = decode_deliveries(request)
    if len(commands) > runtime.topology.limits.outbox_batch_max:
        raise api.invalid("too many deliveries in one call", ErrorReason.LIMIT_EXCEEDED)
    fresh = credits_to_apply(runtime, request, commands, refusals)
    applied_seq = await asyncio.wait_for(
        courier.apply_deliveries(request.source_shard, destination, fresh), COMMAND_TIMEOUT_S
    )
    return peer_pb2.DeliverResponse(applied_seq=applied_seq)


def add_ledger_services(server: grpc.aio.Server, runtime: NodeRuntime) -> None:
    front = LedgerFront(runtime)
    wallet = WalletServicer(front)
    envelopes = EnvelopesServicer(front)
    ledger_pb2_grpc.add_WalletServicer_to_server(wallet, server)
    ledger_pb2_grpc.add_EnvelopesServicer_to_server(envelopes, server)
    ledger_pb2_grpc.add_BatchServicer_to_server(BatchServicer(wallet, envelopes), server)
