"""A smart asyncio client: routes each request to its shard's leader and retries safely.

Rules of this module: a request is retried only when that cannot apply it twice. Every
mutation carries a request id, so a retry after NOT_LEADER, a broken connection or an
OUTCOME_UNKNOWN answer (the same id, again) is answered from the ledger's idempotency
table if the first attempt did apply. A refusal (insufficient funds, a bad amount) is
final and raised at once. Leaders are learnt from NOT_LEADER hints; without a hint the
client tries the shard's next replica. Every call has a deadline and a bounded number
of attempts.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import TypeVar

import grpc
from google.protobuf.message import Message as ProtoMessage

from hongbao.config.topology import Topology
from hongbao.ledger.sharding import parse_envelope_id, shard_for_user
from hongbao.net.channels import channel_options, open_channel
from hongbao.node.errors import (
    ErrorReason,
    HongbaoError,
    RetryableError,
    error_from_proto,
    error_from_rpc_error,
    error_to_proto,
    make_error,
)
from hongbao.proto.gen.hongbao.v1 import admin_pb2, admin_pb2_grpc, ledger_pb2, ledger_pb2_grpc
from hongbao.security.tls import ClientCredentials, client_credentials

Response = TypeVar("Response", bound=ProtoMessage)
BACKOFF_S_MIN = 0.02
BACKOFF_S_MAX = 0.5


@dataclass(frozen=True, slots=True)
class ClientOptions:
    timeout_s: float = 5.0
    attempts_max: int = 10
    grpc_message_bytes_max: int = 8 << 20
    # Mutual TLS: None takes the certificates directory of a ``tls = true`` topology
    # (hongbao.security.tls); ignored when the topology says ``tls = false``.
    credentials: ClientCredentials | None = None


class _Stubs:
    """The ledger stubs ride one channel, Admin another when its identity differs."""

    def __init__(self, ledger: grpc.aio.Channel, admin: grpc.aio.Channel) -> None:
        self.wallet = ledger_pb2_grpc.WalletStub(ledger)
        self.envelopes = ledger_pb2_grpc.EnvelopesStub(ledger)
        self.batch = ledger_pb2_grpc.BatchStub(ledger)
        self.admin = admin_pb2_grpc.AdminStub(admin)


def new_request_id() -> str:
    return uuid.uuid4().hex


class HongbaoClient:
    def __init__(self, topology: Topology, options: ClientOptions | None = None) -> None:
        self.topology = topology
        self.options = options or ClientOptions()
        self._leaders = {s: int(topology.home_leader_of(s)) for s in range(topology.shard_count)}
        self._channels: dict[int, list[grpc.aio.Channel]] = {}
        credentials: ClientCredentials | None = None
        if topology.tls:  # raises TlsError when the certificates are missing or bad
            credentials = self.options.credentials or client_credentials(topology)
        self._ledger_credentials = (
            credentials.ledger.channel_credentials() if credentials is not None else None
        )
        self._admin_credentials = self._ledger_credentials
        if credentials is not None and not credentials.one_identity:
            self._admin_credentials = credentials.admin.channel_credentials()
        self._stubs: dict[int, _Stubs] = {}
        self.retries = 0

    async def close(self) -> None:
        for channels in self._channels.values():
            for channel in channels:
                await channel.close()
        self._channels.clear()
        self._stubs.clear()

    async def __aenter__(self) -> HongbaoClient:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    def stubs(self, node_id: int) -> _Stubs:
        stubs = self._stubs.get(node_id)
        if stubs is None:
            address = self.topology.node(node_id).address
            options = channel_options(self.options.grpc_message_bytes_max)
            ledger = open_channel(address, self._ledger_credentials, options)
            admin = ledger
            if self._admin_credentials is not self._ledger_credentials:
                admin = open_channel(address, self._admin_credentials, options)
            self._channels[node_id] = [ledger] if admin is ledger else [ledger, admin]
            stubs = self._stubs[node_id] = _Stubs(ledger, admin)
        return stubs

    # -- routing -------------------------------------------------------------------------

    def user_shard(self, user_id: str) -> int:
        return shard_for_user(user_id, self.topology.shard_count)

    def envelope_shard(self, envelope_id: str) -> int:
        parsed = parse_envelope_id(envelope_id)
        if parsed is None or parsed[0] >= self.topology.shard_count:
            raise make_error(ErrorReason.MALFORMED_ID, f"malformed envelope id {envelope_id!r}")
        return parsed[0]

    def leader_guess(self, shard_id: int) -> int:
        return self._leaders[shard_id]

    def _learn(self, shard_id: int, error: HongbaoError, tried: int) -> None:
        hint = error.leader_hint
        if hint is not None and hint.node_id and hint.node_id != tried:
            self._leaders[shard_id] = hint.node_id
            return
        replicas = [int(n) for n in self.topology.replicas_of(shard_id)]
        position = replicas.index(tried) if tried in replicas else -1
        self._leaders[shard_id] = replicas[(position + 1) % len(replicas)]

    async def call(
        self,
        shard_id: int,
        rpc: Callable[[_Stubs], Callable[..., Awaitable[Response]]],
        request: ProtoMessage,
    ) -> Response:
        """Send ``request`` to the leader of ``shard_id``, following hints and retrying."""
        last: HongbaoError | None = None
        backoff_s = BACKOFF_S_MIN
        for _ in range(self.options.attempts_max):
            node_id = self._leaders[shard_id]
            try:
                method = rpc(self.stubs(node_id))
                return await method(request, timeout=self.options.timeout_s)
            except grpc.aio.AioRpcError as rpc_error:
                error = error_from_rpc_error(rpc_error)
            if not isinstance(error, RetryableError):
                raise error
            # Once an attempt may have applied the command, the answer stays "maybe": a
            # later NOT_LEADER says nothing about that earlier attempt.
            if last is None or not last.outcome_unknown or error.outcome_unknown:
                last = error
            self.retries += 1
            self._learn(shard_id, error, node_id)
            hint = error.leader_hint
            if error.reason is not ErrorReason.NOT_LEADER or hint is None or not hint.node_id:
                # No leader named (an election is running, or a node is down): back off,
                # or every attempt is spent in the milliseconds before a leader exists.
                await asyncio.sleep(backoff_s)
                backoff_s = min(2 * backoff_s, BACKOFF_S_MAX)
        assert last is not None
        raise last

    # -- wallet --------------------------------------------------------------------------

    async def deposit(self, user_id: str, amount_fen: int, request_id: str = "") -> int:
        request = ledger_pb2.DepositRequest(
            request_id=request_id or new_request_id(), user_id=user_id, amount_fen=amount_fen
        )
        response = await self.call(self.user_shard(user_id), lambda s: s.wallet.Deposit, request)
        return int(response.balance_fen)

    async def withdraw(self, user_id: str, amount_fen: int, request_id: str = "") -> int:
        request = ledger_pb2.WithdrawRequest(
            request_id=request_id or new_request_id(), user_id=user_id, amount_fen=amount_fen
        )
        response = await self.call(self.user_shard(user_id), lambda s: s.wallet.Withdraw, request)
        return int(response.balance_fen)

    async def transfer(
        self, from_user_id: str, to_user_id: str, amount_fen: int, request_id: str = ""
    ) -> ledger_pb2.TransferResponse:
        request = ledger_pb2.TransferRequest(
            request_id=request_id or new_request_id(),
            from_user_id=from_user_id,
            to_user_id=to_user_id,
            amount_fen=amount_fen,
        )
        shard_id = self.user_shard(from_user_id)
        return await self.call(shard_id, lambda s: s.wallet.Transfer, request)

    async def balance(self, user_id: str, *, stale_ok: bool = False) -> ledger_pb2.BalanceResponse:
        request = ledger_pb2.BalanceRequest(user_id=user_id, stale_ok=stale_ok)
        return await self.call(self.user_shard(user_id), lambda s: s.wallet.Balance, request)

    async def history(self, user_id: str, limit: int = 50) -> ledger_pb2.HistoryResponse:
        request = ledger_pb2.HistoryRequest(user_id=user_id, limit=limit)
        return await self.call(self.user_shard(user_id), lambda s: s.wallet.History, request)

    async def freeze(self, user_id: str, *, frozen: bool, request_id: str = "") -> bool:
        shard_id = self.user_shard(user_id)
        rid = request_id or new_request_id()
        if frozen:
            response = await self.call(
                shard_id,
                lambda s: s.wallet.Freeze,
                ledger_pb2.FreezeRequest(request_id=rid, user_id=user_id),
            )
        else:
            response = await self.call(
                shard_id,
                lambda s: s.wallet.Unfreeze,
                ledger_pb2.UnfreezeRequest(request_id=rid, user_id=user_id),
            )
        return bool(response.frozen)

    # -- envelopes -----------------------------------------------------------------------

    async def send_envelope(
        self,
        sender_user_id: str,
        total_fen: int,
        count: int,
        *,
        lucky: bool = True,
        request_id: str = "",
    ) -> ledger_pb2.SendResponse:
        kind = ledger_pb2.ENVELOPE_KIND_LUCKY if lucky else ledger_pb2.ENVELOPE_KIND_FIXED
        request = ledger_pb2.SendRequest(
            request_id=request_id or new_request_id(),
            sender_user_id=sender_user_id,
            kind=kind,
            total_fen=total_fen,
            count=count,
        )
        shard_id = self.user_shard(sender_user_id)
        return await self.call(shard_id, lambda s: s.envelopes.Send, request)

    async def grab(
        self, envelope_id: str, user_id: str, request_id: str = ""
    ) -> ledger_pb2.GrabResponse:
        request = ledger_pb2.GrabRequest(
            request_id=request_id or new_request_id(), envelope_id=envelope_id, user_id=user_id
        )
        shard_id = self.envelope_shard(envelope_id)
        return await self.call(shard_id, lambda s: s.envelopes.Grab, request)

    async def show(self, envelope_id: str, *, stale_ok: bool = False) -> ledger_pb2.Envelope:
        request = ledger_pb2.ShowRequest(envelope_id=envelope_id, stale_ok=stale_ok)
        shard_id = self.envelope_shard(envelope_id)
        response: ledger_pb2.ShowResponse = await self.call(
            shard_id, lambda s: s.envelopes.Show, request
        )
        return response.envelope

    # -- batches -------------------------------------------------------------------------

    async def execute(
        self, operations: Sequence[tuple[int, ledger_pb2.Operation]]
    ) -> list[ledger_pb2.OperationResult]:
        """Run (shard, operation) pairs: one Batch.Execute per leader, NOT_LEADER retried."""
        results: list[ledger_pb2.OperationResult | None] = [None] * len(operations)
        todo = list(range(len(operations)))
        maybe_applied: set[int] = set()  # positions an attempt may have applied
        backoff_s = BACKOFF_S_MIN
        for _ in range(self.options.attempts_max):
            if not todo:
                break
            by_node: dict[int, list[int]] = {}
            for position in todo:
                by_node.setdefault(self._leaders[operations[position][0]], []).append(position)
            rounds = [
                self._execute_on(node, positions, operations, results, maybe_applied)
                for node, positions in sorted(by_node.items())
            ]
            todo = sorted(p for again in await asyncio.gather(*rounds) for p in again)
            if todo:  # the same back-off as call(): enough attempts to outlast an election
                await asyncio.sleep(backoff_s)
                backoff_s = min(2 * backoff_s, BACKOFF_S_MAX)
        for position in todo:
            if position in maybe_applied:
                error = make_error(
                    ErrorReason.OUTCOME_UNKNOWN,
                    "an earlier attempt may have applied it; retry with the same request id",
                )
            else:
                error = make_error(ErrorReason.UNAVAILABLE, "no leader answered in time")
            results[position] = ledger_pb2.OperationResult(error=error_to_proto(error))
        return [r if r is not None else ledger_pb2.OperationResult() for r in results]

    async def _execute_on(
        self,
        node_id: int,
        positions: list[int],
        operations: Sequence[tuple[int, ledger_pb2.Operation]],
        results: list[ledger_pb2.OperationResult | None],
        maybe_applied: set[int],
    ) -> list[int]:
        request = ledger_pb2.ExecuteRequest(operations=[operations[p][1] for p in positions])
        try:
            response = await self.stubs(node_id).batch.Execute(
                request, timeout=self.options.timeout_s
            )
        except grpc.aio.AioRpcError as rpc_error:
            error = error_from_rpc_error(rpc_error)
            if not isinstance(error, RetryableError):
                raise error from None
            for position in positions:
                self._learn(operations[position][0], error, node_id)
            if error.outcome_unknown:  # e.g. the deadline passed: the node may have applied
                maybe_applied.update(positions)
            self.retries += len(positions)
            return positions
        again: list[int] = []
        for position, result in zip(positions, response.results, strict=True):
            if result.WhichOneof("result") == "error":
                error = error_from_proto(result.error)
                if isinstance(error, RetryableError):
                    self._learn(operations[position][0], error, node_id)
                    if error.outcome_unknown:
                        maybe_applied.add(position)
                    again.append(position)
                    self.retries += 1
                    continue
            results[position] = result
        return again

    async def status(self, node_id: int) -> admin_pb2.StatusResponse:
        response: admin_pb2.StatusResponse = await self.stubs(node_id).admin.Status(
            admin_pb2.StatusRequest(), timeout=self.options.timeout_s
        )
        return response
