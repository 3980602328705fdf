"""Forwarding: one client request (or one Batch) to the shard leaders, with the routing
rules of :mod:`hongbao.client.routing` and the client's bytes as they came.

Rules of this module: the request is parsed only to route it; what goes to a node is the
client's bytes, and what comes back to the client is the node's bytes. A node's error is
passed back unchanged too (status code, message and the ``grpc-status-details-bin``
trailer with its ErrorInfo: reason, shard, leader hint), except where the router's own
retries apply: NOT_LEADER is followed, a node or region that does not answer is replaced
by the shard's next replica, each forwarded call has ``forward_timeout_ms`` and the whole
request ``request_timeout_ms`` (or the client's own deadline, if shorter). Retries send
the same bytes, so the same request id: nothing is applied twice (unless the router
runs with the test-only ``retry-fresh-id`` switch, :mod:`hongbao.node.bugs`).
``forward_timeout_ms`` bounds how long a node may stay *silent*, not how long one call
may take: a busy leader that keeps answering is waited for until the request's deadline (see
:meth:`hongbao.router.links.NodeLinks.forward_while_alive` for the collapse it avoids).

What it counts (:class:`~hongbao.metrics.router.RouterMetrics`): a *retry* is every
attempt after a request's (or a Batch part's) first; a *redirect* is a retry that goes
to the node a NOT_LEADER answer named. Its debug lines carry the shard and, for a single
request, the client's request id (:func:`hongbao.logs.log_context`).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable
from dataclasses import dataclass
from typing import Final, TypeVar

import grpc

from hongbao.client.routing import (
    Attempt,
    CallFailed,
    Deadline,
    RetryPolicy,
    Routing,
    hinted_elsewhere,
    run_call,
)
from hongbao.config.routers import RouterSettings
from hongbao.ledger.limits import Limits
from hongbao.logs import log_context
from hongbao.metrics.router import RouterMetrics
from hongbao.node import bugs
from hongbao.node.admission import BATCH_RESPONSE_LINES_MAX
from hongbao.node.errors import (
    ErrorReason,
    HongbaoError,
    RetryableError,
    error_from_proto,
    error_from_rpc_error,
    error_to_proto,
    make_error,
)
from hongbao.proto.gen.hongbao.v1 import errors_pb2, ledger_pb2
from hongbao.router import wire
from hongbao.router.coalesce import Coalescer
from hongbao.router.links import NodeLinks
from hongbao.router.methods import BATCH_EXECUTE, Method, route_operation

log = logging.getLogger(__name__)
T = TypeVar("T")

BATCH_OPERATIONS_MAX: Final = 10_000  # as a node: hongbao.node.ledger_service
HISTORY_LIMIT_DEFAULT: Final = 50
_ERROR_FIELD: Final = ledger_pb2.OperationResult.DESCRIPTOR.fields_by_name["error"].number
_OPS: Final = 1  # ExecuteRequest.operations / ExecuteResponse.results


def error_of(exc: BaseException) -> HongbaoError | None:
    if isinstance(exc, HongbaoError):
        return exc
    if isinstance(exc, grpc.aio.AioRpcError):
        return error_from_rpc_error(exc)
    return None


def answerable(failed: CallFailed, shard_id: int | None) -> HongbaoError:
    """The error the router answers with when it cannot pass a node's status through: one
    the router built, or a failure no server reported (a refused connection, a deadline),
    which may have applied the request."""
    error = failed.error
    if error.server_reported:
        return error
    reason = ErrorReason.OUTCOME_UNKNOWN if error.outcome_unknown else error.reason
    return make_error(reason, error.message or reason.value, shard_id=shard_id)


@dataclass(slots=True)
class ForwardCounters:
    requests: int = 0
    batches: int = 0
    batch_parts: int = 0
    retries: int = 0
    fresh_id_retries: int = 0  # requests sent on under a new id (the retry-fresh-id bug)


class Forwarder:
    def __init__(
        self,
        routing: Routing,
        links: NodeLinks,
        settings: RouterSettings,
        limits: Limits,
        router_bugs: bugs.RouterBugs | None = None,
        *,
        metrics: RouterMetrics | None = None,
    ) -> None:
        self.routing = routing
        self.metrics = metrics
        self.links = links
        self.settings = settings
        self.limits = limits
        self.bugs = router_bugs or bugs.RouterBugs()  # test-only switches: all off
        self.policy = RetryPolicy(attempts_max=_attempts_max(settings))
        self.counters = ForwardCounters()
        self.coalescer: Coalescer | None = None
        if settings.coalesce_wait_ms > 0 and settings.coalesce_batch_max > 1:
            self.coalescer = Coalescer(
                links.forward,
                wait_ms=settings.coalesce_wait_ms,
                batch_max=settings.coalesce_batch_max,
            )

    def _retried(self) -> None:
        self.counters.retries += 1

    def _counted(self, shard_id: int, attempt: Attempt[T]) -> Attempt[T]:
        """``attempt``, counting its retries and redirects for the metrics, and logging
        each failed attempt at debug."""
        sent = 0
        hinted: int | None = None  # the leader the last failure named, if it will be followed

        async def counted(node_id: int, timeout_s: float) -> T:
            nonlocal sent, hinted
            sent += 1
            if sent > 1 and self.metrics is not None:
                self.metrics.retries.inc()
                if node_id == hinted:
                    self.metrics.redirects.inc()
            hinted = None
            try:
                return await attempt(node_id, timeout_s)
            except Exception as exc:
                error = error_of(exc)
                if error is not None:
                    if hinted_elsewhere(error, node_id) and self.routing.follows_hint(
                        shard_id, error
                    ):
                        hinted = error.leader_hint.node_id if error.leader_hint else None
                    log.debug("attempt %d at node %d: %s", sent, node_id, error)
                raise

        return counted

    async def single(self, method: Method, raw: bytes, deadline: Deadline) -> bytes:
        """The node's answer bytes; raises :class:`CallFailed` with what to answer."""
        self.counters.requests += 1
        routed = method.routed(self.routing, raw)
        with log_context(shard=routed.shard_id, request_id=routed.request_id or None):
            try:
                answer = await self._single(method, raw, routed.shard_id, routed.stale_ok, deadline)
            except CallFailed as failed:
                log.debug("%s failed: %s", method.path, failed.error)
                raise
            log.debug("%s forwarded and answered", method.path)
            return answer

    async def _single(
        self, method: Method, raw: bytes, shard_id: int, stale_ok: bool, deadline: Deadline
    ) -> bytes:
        coalescer = self.coalescer if method.coalesce else None
        lines = self.limits.envelope_shares_max if method.path.endswith("/Show") else 1

        def attempt(node_id: int, timeout_s: float) -> Awaitable[bytes]:
            if coalescer is not None:
                return coalescer.submit(
                    node_id, method.path, raw, method.operation_field, lines, timeout_s
                )
            return self.links.forward_while_alive(
                node_id, method.path, raw, timeout_s=deadline.remaining_s(), silent_s=timeout_s
            )

        chosen: Attempt[bytes] = attempt
        if self.bugs.retry_fresh_id and _name(method) in bugs.FRESH_ID_OPERATIONS:
            chosen = self._renewing_id(method, raw)  # BUG SWITCH retry-fresh-id
        return await run_call(
            self.routing,
            shard_id,
            self._counted(shard_id, chosen),
            deadline=deadline,
            policy=self.policy,
            forward_timeout_ms=self.settings.forward_timeout_ms,
            stale_ok=stale_ok,
            error_of=error_of,
            on_retry=self._retried,
        )

    def _renewing_id(self, method: Method, raw: bytes) -> Attempt[bytes]:
        """BUG SWITCH retry-fresh-id, one request: every attempt is cut at its share of
        ``forward_timeout_ms`` (a slow answer too), and after the first attempt whose
        outcome is unknown the request goes on under a fresh request id."""
        sent = [raw]

        async def attempt(node_id: int, timeout_s: float) -> bytes:
            try:
                return await self.links.forward(node_id, method.path, sent[-1], timeout_s)
            except grpc.aio.AioRpcError as rpc_error:
                if len(sent) == 1 and error_from_rpc_error(rpc_error).outcome_unknown:
                    sent.append(bugs.request_with_fresh_id(method.request_class, raw))
                    self.counters.fresh_id_retries += 1
                raise

        return attempt

    async def batch(self, raw: bytes, deadline: Deadline) -> bytes:
        """A client's Batch: split by shard, the parts forwarded in parallel, the results
        put back in the client's order. Raises HongbaoError for a Batch refused whole."""
        self.counters.batches += 1
        try:
            chunks = wire.repeated_messages(raw, _OPS)
            operations = [ledger_pb2.Operation.FromString(chunk) for chunk in chunks]
        except Exception as error:  # WireError, DecodeError
            raise make_error(
                ErrorReason.INVALID_REQUEST,
                f"{BATCH_EXECUTE}: the request does not decode: {error}",
            ) from None
        if len(chunks) > BATCH_OPERATIONS_MAX:
            raise make_error(
                ErrorReason.LIMIT_EXCEEDED,
                f"{len(chunks)} operations; at most {BATCH_OPERATIONS_MAX} per call",
            )
        lines = sum(_lines(op, self.limits) for op in operations)
        if lines > BATCH_RESPONSE_LINES_MAX:
            raise make_error(
                ErrorReason.OVERLOADED,
                f"this Batch could answer {lines} lines (history limits and envelope shares);"
                f" at most {BATCH_RESPONSE_LINES_MAX} per call: split it or ask for smaller"
                " limits",
            )
        results: list[bytes | None] = [None] * len(chunks)
        by_shard: dict[int, list[int]] = {}
        for position, operation in enumerate(operations):
            try:
                shard_id = route_operation(self.routing, operation)
            except HongbaoError as error:
                results[position] = _error_result(error)
                continue
            by_shard.setdefault(shard_id, []).append(position)
        await asyncio.gather(
            *(
                self._part(shard_id, positions, chunks, results, deadline)
                for shard_id, positions in by_shard.items()
            )
        )
        return wire.repeated_field(_OPS, [r if r is not None else b"" for r in results])

    async def _part(
        self,
        shard_id: int,
        positions: list[int],
        chunks: list[bytes],
        results: list[bytes | None],
        deadline: Deadline,
    ) -> None:
        """One shard's operations, retried until each has a final result."""
        self.counters.batch_parts += 1
        pending = list(positions)
        maybe_applied: set[int] = set()
        renewed: set[int] = set()  # positions the retry-fresh-id bug sent on under a new id

        async def attempt(node_id: int, timeout_s: float) -> None:
            nonlocal pending
            request = wire.repeated_field(_OPS, [chunks[p] for p in pending])
            try:
                answer = await self._send_part(node_id, request, timeout_s, deadline)
            except grpc.aio.AioRpcError as rpc_error:
                error = error_from_rpc_error(rpc_error)
                if error.outcome_unknown:
                    maybe_applied.update(pending)
                    if self.bugs.retry_fresh_id:  # BUG SWITCH retry-fresh-id
                        self._renew_ids(pending, chunks, renewed)
                raise error from None
            parts = wire.repeated_messages(answer, _OPS)
            if len(parts) != len(pending):
                raise make_error(
                    ErrorReason.INTERNAL,
                    f"node {node_id} answered {len(parts)} results to {len(pending)} operations",
                    server_reported=False,
                )
            pending, retry = _collect(pending, parts, results, maybe_applied)
            if self.bugs.retry_fresh_id:  # BUG SWITCH retry-fresh-id
                self._renew_ids([p for p in pending if p in maybe_applied], chunks, renewed)
            if retry is not None:
                raise retry

        try:
            with log_context(shard=shard_id):
                await run_call(
                    self.routing,
                    shard_id,
                    self._counted(shard_id, attempt),
                    deadline=deadline,
                    policy=self.policy,
                    forward_timeout_ms=self.settings.forward_timeout_ms,
                    error_of=error_of,
                    on_retry=self._retried,
                )
        except CallFailed as failed:
            final = answerable(failed, shard_id)
            unknown = make_error(
                ErrorReason.OUTCOME_UNKNOWN,
                "an earlier attempt may have applied it; retry with the same request id",
                shard_id=shard_id,
            )
            for position in pending:
                chosen = (
                    unknown if position in maybe_applied and not final.outcome_unknown else final
                )
                results[position] = _error_result(chosen)

    async def _send_part(
        self, node_id: int, request: bytes, timeout_s: float, deadline: Deadline
    ) -> bytes:
        if self.bugs.retry_fresh_id:  # BUG SWITCH: cut a slow answer too
            return await self.links.forward(node_id, BATCH_EXECUTE, request, timeout_s)
        return await self.links.forward_while_alive(
            node_id, BATCH_EXECUTE, request, timeout_s=deadline.remaining_s(), silent_s=timeout_s
        )

    def _renew_ids(self, positions: list[int], chunks: list[bytes], renewed: set[int]) -> None:
        """BUG SWITCH retry-fresh-id, a Batch part: the mutations among ``positions`` whose
        outcome is unknown go on under a fresh request id (once each)."""
        for position in positions:
            if position not in renewed:
                renewed.add(position)
                fresh = bugs.operation_with_fresh_id(chunks[position])
                if fresh != chunks[position]:
                    chunks[position] = fresh
                    self.counters.fresh_id_retries += 1


def _name(method: Method) -> str:
    """``deposit`` for /hongbao.v1.Wallet/Deposit: the Batch operation's name."""
    return method.path.rsplit("/", 1)[-1].lower()


def _collect(
    pending: list[int], parts: list[bytes], results: list[bytes | None], maybe_applied: set[int]
) -> tuple[list[int], HongbaoError | None]:
    """Keep each final result of a part's answer; return what to send again, and why."""
    again: list[int] = []
    retry: HongbaoError | None = None
    for position, part in zip(pending, parts, strict=True):
        number, payload = wire.oneof_message(part)
        if number == _ERROR_FIELD:
            error = error_from_proto(errors_pb2.Error.FromString(payload))
            if isinstance(error, RetryableError):
                if error.outcome_unknown:
                    maybe_applied.add(position)
                again.append(position)
                retry = _prefer(retry, error)
                continue
        results[position] = part
    return again, retry


def _prefer(kept: HongbaoError | None, error: HongbaoError) -> HongbaoError:
    """Which in-band error steers the retry: one naming a leader beats one that does not."""
    if kept is None or (kept.leader_hint is None and error.leader_hint is not None):
        return error
    return kept


def _error_result(error: HongbaoError) -> bytes:
    return ledger_pb2.OperationResult(error=error_to_proto(error)).SerializeToString()


def _lines(operation: ledger_pb2.Operation, limits: Limits) -> int:
    name = operation.WhichOneof("op")
    if name == "history":
        wanted = operation.history.limit or HISTORY_LIMIT_DEFAULT
        return min(wanted, limits.history_limit_max)
    if name == "show":
        return limits.envelope_shares_max
    return 1


def _attempts_max(settings: RouterSettings) -> int:
    """Enough attempts to outlast an election within the request's deadline."""
    return max(10, settings.request_timeout_ms // 100)
