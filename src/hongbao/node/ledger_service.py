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
from hongbao.ledger.envelope import settled_grab
from hongbao.ledger.results import (
    AccountView,
    EnvelopeCreated,
    EnvelopeView,
    GrabReceipt,
    HistoryView,
    Ok,
    Rejected,
    RequestStatusView,
    Result,
    ResultData,
    TransferReceipt,
)
from hongbao.ledger.sharding import parse_envelope_id, shard_for_user
from hongbao.ledger.validate import validate, validate_query
from hongbao.logs import log_context
from hongbao.node import ledger_api as api
from hongbao.node.admission import (
    InflightBound,
)
from hongbao.node.courier import Courier, decode_deliveries
from hongbao.node.deliver_guard import credits_to_apply
from hongbao.node.errors import (
    ErrorReason,
    HongbaoError,
    abort_async,
    make_error,
)
from hongbao.node.peer_guard import RefusalLog
from hongbao.node.runtime import NodeRuntime
from hongbao.proto.gen.hongbao.v1 import ledger_pb2, ledger_pb2_grpc, peer_pb2

log = logging.getLogger(__name__)

COMMAND_TIMEOUT_S = 5.0
READ_TIMEOUT_S = 5.0
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

    def submit(self, command: Command) -> tuple[int, asyncio.Future[Result]]:
        """Validate, route and queue ``command``: its shard and the future of its result.
        Raises the refusal (invalid, NOT_LEADER, OVERLOADED, ...) at once."""
        rejected = validate(command, self.limits)
        if rejected is not None:
            raise api.rejected_error(rejected)
        shard_id = self.command_shard(command)
        if isinstance(command, GrabEnvelope):
            settled = self._settled_grab(shard_id, command)
            if settled is not None:
                return shard_id, settled
        return shard_id, self.runtime.submit(shard_id, command)

    def _settled_grab(self, shard_id: int, command: GrabEnvelope) -> asyncio.Future[Result] | None:
        """A grab the leader's applied state already decides (an envelope empty, expired or
        already grabbed by this user: :func:`hongbao.ledger.envelope.settled_grab`),
        answered without a log entry; None when it must be proposed. Only on the leader,
        so that every other case keeps its NOT_LEADER hint and the router's routing."""
        replica = self.runtime.groups.get(shard_id)
        if replica is None or not replica.is_leader:
            return None
        refusal = self.runtime.query(shard_id, lambda store: settled_grab(store, command))
        if refusal is None:
            return None
        replica.grabs_settled_total += 1
        future: asyncio.Future[Result] = asyncio.get_running_loop().create_future()
        future.set_result(refusal)
        return future

    async def mutate(self, command: Command) -> ResultData:
        shard_id, future = self.submit(command)
        with log_context(shard=shard_id, request_id=getattr(command, "request_id", None)):
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
        return unwrap(result, shard_id)

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
        return unwrap(result, shard_id)


def unwrap(result: Ok | Rejected, shard_id: int) -> ResultData:
    if isinstance(result, Rejected):
        raise api.rejected_error(result, shard_id)
    return result.data


async def answer_bounded(
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
        return await answer_bounded(
            self.front.inflight, context, lambda: self.request_status(request)
        )

    async def Deposit(self, request, context):  # type: ignore[no-untyped-def]
        return await answer_bounded(self.front.inflight, context, lambda: self.deposit(request))

    async def Withdraw(self, request, context):  # type: ignore[no-untyped-def]
        return await answer_bounded(self.front.inflight, context, lambda: self.withdraw(request))

    async def Transfer(self, request, context):  # type: ignore[no-untyped-def]
        return await answer_bounded(self.front.inflight, context, lambda: self.transfer(request))

    async def Balance(self, request, context):  # type: ignore[no-untyped-def]
        return await answer_bounded(self.front.inflight, context, lambda: self.balance(request))

    async def History(self, request, context):  # type: ignore[no-untyped-def]
        return await answer_bounded(self.front.inflight, context, lambda: self.history(request))

    async def Freeze(self, request, context):  # type: ignore[no-untyped-def]
        return await answer_bounded(self.front.inflight, context, lambda: self.freeze(request))

    async def Unfreeze(self, request, context):  # type: ignore[no-untyped-def]
        return await answer_bounded(self.front.inflight, context, lambda: self.unfreeze(request))


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
        return await answer_bounded(self.front.inflight, context, lambda: self.send(request))

    async def Grab(self, request, context):  # type: ignore[no-untyped-def]
        return await answer_bounded(self.front.inflight, context, lambda: self.grab(request))

    async def Show(self, request, context):  # type: ignore[no-untyped-def]
        return await answer_bounded(self.front.inflight, context, lambda: self.show(request))


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
