"""The SDK: an asyncio client that sends each request where it can be served, safely.

Two modes, one API. ``HongbaoClient(topology)`` is node-direct (tests, the bench): it
routes each request to its shard's leader itself, with the rules of
:mod:`hongbao.client.routing` (shared with the router). ``HongbaoClient.via_routers``
talks to a router, its own region's first, and fails over to another region's router
when that one is gone (no answer, or a bare UNAVAILABLE from the router itself); the
router does the shard routing.

Rules of this module: a request is retried only when that cannot apply it twice. Every
mutation carries a request id, so a retry after NOT_LEADER, a broken connection or an
OUTCOME_UNKNOWN answer (the same id, again) is answered from the ledger's idempotency
table if the first attempt did apply. A refusal (insufficient funds, a bad amount) is
final and raised at once. Every attempt has a deadline (``timeout_s``), every call an
overall one (``deadline_s``), and attempts are bounded (``attempts_max``).
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import TypeVar

import grpc
from google.protobuf.message import Message as ProtoMessage

from hongbao.client.endpoints import StubBook, Stubs
from hongbao.client.routing import (
    CallFailed,
    Deadline,
    Outcome,
    RetryPolicy,
    Routing,
    did_not_answer,
    run_call,
)
from hongbao.config.routers import RouterSettings, RouterSpec
from hongbao.config.topology import Topology
from hongbao.node.errors import (
    ErrorReason,
    RetryableError,
    error_from_proto,
    error_from_rpc_error,
    error_to_proto,
    make_error,
)
from hongbao.proto.gen.hongbao.v1 import admin_pb2, ledger_pb2
from hongbao.security.tls import ClientCredentials

Response = TypeVar("Response", bound=ProtoMessage)
CLUSTER_ID_KEY = "hongbao-cluster-id"
TARGETS = ("auto", "routers", "nodes")


@dataclass(frozen=True, slots=True)
class ClientOptions:
    timeout_s: float = 5.0  # one attempt
    attempts_max: int = 10
    deadline_s: float | None = None  # one call, retries included; None: timeout_s * attempts
    grpc_message_bytes_max: int = 8 << 20
    # Mutual TLS: None takes the certificates directory of a ``tls = true`` topology
    # (hongbao.security.tls); ignored when the topology says ``tls = false``.
    credentials: ClientCredentials | None = None
    region: str | None = None  # the caller's region: stale reads prefer it, and its router
    cluster_id_on_node_calls: bool = False  # node-direct calls send hongbao-cluster-id too
    router_home_retry_s: float = 5.0  # after a failover, try the own region's router again

    @property
    def call_deadline_s(self) -> float:
        return (
            self.deadline_s if self.deadline_s is not None else self.timeout_s * self.attempts_max
        )


def new_request_id() -> str:
    return uuid.uuid4().hex


Rpc = Callable[[Stubs], Callable[..., Awaitable[Response]]]


def _raise_hongbao(call: Awaitable[Response]) -> Awaitable[Response]:
    async def translated() -> Response:
        try:
            return await call
        except grpc.aio.AioRpcError as rpc_error:
            raise error_from_rpc_error(rpc_error) from None

    return translated()


class HongbaoClient:
    def __init__(
        self,
        topology: Topology,
        options: ClientOptions | None = None,
        *,
        routers: Sequence[RouterSpec] = (),
    ) -> None:
        """Node-direct without ``routers``; through them (in this order of preference) with."""
        self.topology = topology
        self.options = options or ClientOptions()
        self.routing = Routing(topology, RouterSettings(), region=self.options.region)
        self.policy = RetryPolicy(attempts_max=self.options.attempts_max)
        self._book = StubBook(
            topology, self.options.credentials, self.options.grpc_message_bytes_max
        )
        self.routers = tuple(routers)
        self._router_index = 0
        self._failed_over_at = 0.0  # monotonic s of the last move away from routers[0]
        # Calls through a router name the cluster: a router of another one refuses them
        # (CLUSTER_MISMATCH) instead of serving them. Node-direct calls do too when
        # ``cluster_id_on_node_calls`` (off for now: test doubles of the stubs take no
        # metadata).
        from hongbao.node.server import cluster_id_of  # the one derivation, shared

        self.metadata: tuple[tuple[str, str], ...] = ((CLUSTER_ID_KEY, cluster_id_of(topology)),)
        self._node_kwargs: dict[str, object] = (
            {"metadata": self.metadata} if self.options.cluster_id_on_node_calls else {}
        )
        self.retries = 0
        self.router_failovers = 0

    @classmethod
    def via_routers(
        cls, topology: Topology, options: ClientOptions | None = None, *, region: str | None = None
    ) -> HongbaoClient:
        """A client of the topology's routers: ``region``'s first (default: the options' region,
        else the first router's), then the others in file order. ValueError without any."""
        if not topology.routers:
            raise ValueError("the topology has no [[routers]]")
        chosen = options or ClientOptions()
        home = region or chosen.region or topology.routers[0].region
        own = [r for r in topology.routers if r.region == home]
        others = [r for r in topology.routers if r.region != home]
        return cls(topology, chosen, routers=[*own, *others])

    @classmethod
    def for_target(
        cls,
        topology: Topology,
        options: ClientOptions | None = None,
        *,
        target: str = "auto",
        region: str | None = None,
    ) -> HongbaoClient:
        """``routers``, ``nodes``, or ``auto`` (routers when the topology has them): what
        the CLI and the bench build from a ``--target`` option. ValueError for others."""
        if target not in TARGETS:
            raise ValueError(f"target {target!r}: one of {', '.join(TARGETS)}")
        if target == "routers" or (target == "auto" and topology.routers):
            return cls.via_routers(topology, options, region=region)
        return cls(topology, options)

    @property
    def via_router(self) -> RouterSpec | None:
        """The router calls go to now (None: node-direct)."""
        return self.routers[self._router_index] if self.routers else None

    async def close(self) -> None:
        await self._book.close()

    async def __aenter__(self) -> HongbaoClient:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    def stubs(self, node_id: int) -> Stubs:
        """A node's stubs (node-direct calls and Admin, in both modes)."""
        return self._book.of(self.topology.node(node_id).address)

    # -- routing -------------------------------------------------------------------------

    def user_shard(self, user_id: str) -> int:
        return self.routing.user_shard(user_id)

    def envelope_shard(self, envelope_id: str) -> int:
        return self.routing.envelope_shard(envelope_id)

    def leader_guess(self, shard_id: int) -> int:
        return self.routing.leader_guess(shard_id)

    def _count_retry(self) -> None:
        self.retries += 1

    async def call(
        self,
        shard_id: int,
        rpc: Rpc[Response],
        request: ProtoMessage,
        *,
        stale_ok: bool = False,
    ) -> Response:
        """Send ``request`` for ``shard_id``: to its leader (following hints, retrying), or
        to a router."""
        deadline = Deadline(self.options.call_deadline_s * 1000.0)
        if self.routers:
            return await self._via_routers(rpc, request, deadline)

        def attempt(node_id: int, timeout_s: float) -> Awaitable[Response]:
            return _raise_hongbao(
                rpc(self.stubs(node_id))(request, timeout=timeout_s, **self._node_kwargs)
            )

        try:
            return await run_call(
                self.routing,
                shard_id,
                attempt,
                deadline=deadline,
                policy=self.policy,
                forward_timeout_ms=self.options.timeout_s * 1000.0,
                stale_ok=stale_ok,
                on_retry=self._count_retry,
            )
        except CallFailed as failed:
            raise failed.error from None

    def _maybe_go_home(self) -> None:
        """Back to the own region's router some time after a failover: it may be back, and
        a client should not stay on a far region's router for ever."""
        if self._router_index == 0:
            return
        if time.monotonic() - self._failed_over_at >= self.options.router_home_retry_s:
            self._router_index = 0

    async def _via_routers(
        self, rpc: Rpc[Response], request: ProtoMessage, deadline: Deadline
    ) -> Response:
        """Own router first; another region's at once when this one does not answer."""
        outcome = Outcome()
        tried: set[int] = set()
        backoffs = 0
        self._maybe_go_home()
        for _ in range(self.options.attempts_max):
            if deadline.expired:
                break
            router = self.routers[self._router_index]
            stubs = self._book.of(router.address)
            timeout_s = deadline.attempt_timeout_s(self.options.timeout_s * 1000.0)
            try:
                return await rpc(stubs)(request, timeout=timeout_s, metadata=self.metadata)
            except grpc.aio.AioRpcError as rpc_error:
                error = error_from_rpc_error(rpc_error)
            if not isinstance(error, RetryableError):
                raise error
            outcome.failed(error)
            self.retries += 1
            if did_not_answer(error):  # the router itself is gone: another region's
                tried.add(self._router_index)
                untried = [i for i in range(len(self.routers)) if i not in tried]
                if untried:
                    self._router_index = untried[0]
                    self._failed_over_at = time.monotonic()
                    self.router_failovers += 1
                    continue
                self._router_index = 0  # all gone: start again from our own, after a pause
            tried.clear()
            await asyncio.sleep(
                min(self.policy.backoff_ms(backoffs), deadline.remaining_ms()) / 1e3
            )
            backoffs += 1
        raise outcome.final()

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
        return await self.call(
            self.user_shard(user_id), lambda s: s.wallet.Balance, request, stale_ok=stale_ok
        )

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
            shard_id, lambda s: s.envelopes.Show, request, stale_ok=stale_ok
        )
        return response.envelope

    # -- batches -------------------------------------------------------------------------

    async def execute(
        self, operations: Sequence[tuple[int, ledger_pb2.Operation]]
    ) -> list[ledger_pb2.OperationResult]:
        """Run (shard, operation) pairs, results in order.

        Through a router: one Batch.Execute (the router splits it by shard). Node-direct:
        one Batch.Execute per leader, NOT_LEADER and unanswered parts retried."""
        deadline = Deadline(self.options.call_deadline_s * 1000.0)
        if self.routers:
            request = ledger_pb2.ExecuteRequest(operations=[op for _, op in operations])
            response = await self._via_routers(lambda s: s.batch.Execute, request, deadline)
            return list(response.results)
        results: list[ledger_pb2.OperationResult | None] = [None] * len(operations)
        todo = list(range(len(operations)))
        maybe_applied: set[int] = set()  # positions an attempt may have applied
        backoffs = 0
        for _ in range(self.options.attempts_max):
            if not todo or deadline.expired:
                break
            by_node: dict[int, list[int]] = {}
            for position in todo:
                node_id = self.routing.candidates(operations[position][0])[0]
                by_node.setdefault(node_id, []).append(position)
            timeout_s = deadline.attempt_timeout_s(self.options.timeout_s * 1000.0)
            rounds = [
                self._execute_on(node, positions, operations, results, maybe_applied, timeout_s)
                for node, positions in sorted(by_node.items())
            ]
            todo = sorted(p for again in await asyncio.gather(*rounds) for p in again)
            if todo:  # the same back-off as call(): enough attempts to outlast an election
                delay_ms = min(self.policy.backoff_ms(backoffs), deadline.remaining_ms())
                await asyncio.sleep(delay_ms / 1000.0)
                backoffs += 1
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
        timeout_s: float,
    ) -> list[int]:
        request = ledger_pb2.ExecuteRequest(operations=[operations[p][1] for p in positions])
        try:
            response = await self.stubs(node_id).batch.Execute(
                request, timeout=timeout_s, **self._node_kwargs
            )
        except grpc.aio.AioRpcError as rpc_error:
            error = error_from_rpc_error(rpc_error)
            if not isinstance(error, RetryableError):
                raise error from None
            for position in positions:
                self.routing.learn(operations[position][0], error, node_id)
            if error.outcome_unknown:  # e.g. the deadline passed: the node may have applied
                maybe_applied.update(positions)
            self.retries += len(positions)
            return positions
        self.routing.health.answered(node_id)
        again: list[int] = []
        for position, result in zip(positions, response.results, strict=True):
            if result.WhichOneof("result") == "error":
                error = error_from_proto(result.error)
                if isinstance(error, RetryableError):
                    self.routing.learn(operations[position][0], error, node_id)
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
