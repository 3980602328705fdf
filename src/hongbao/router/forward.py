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
from dataclasses import dataclass, replace
from typing import Final, TypeVar

import grpc

from hongbao.client.routing import (
    Attempt,
    CallFailed,
    Deadline,
    RetryPolicy,
    Routing,
    hinted_elsewhere,
    moves_on_at_once,
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
    error_from_rpc_error,
    make_error,
)
from hongbao.proto.gen.hongbao.v1 import ledger_pb2
from hongbao.router import grouped, wire
from hongbao.router.coalesce import Coalescer
from hongbao.router.grouped import OPS as _OPS
from hongbao.router.grouped import Carried, ShardPositions, collect, error_result
from hongbao.router.links import NodeLinks
from hongbao.router.methods import BATCH_EXECUTE, Method, route_operation

log = logging.getLogger(__name__)
T = TypeVar("T")

BATCH_OPERATIONS_MAX: Final = 10_000  # as a node: hongbao.node.ledger_service
HISTORY_LIMIT_DEFAULT: Final = 50


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

    def _hint_followed(self, shard_id: int, error: HongbaoError, node_id: int) -> int | None:
        """The leader a failure at ``node_id`` named, if the next attempt goes there."""
        if hinted_elsewhere(error, node_id) and self.routing.follows_hint(shard_id, error):
            return error.leader_hint.node_id if error.leader_hint else None
        return None

    def _counted(
        self, shard_id: int, attempt: Attempt[T], after: Carried | None = None
    ) -> Attempt[T]:
        """``attempt``, counting its retries and redirects for the metrics, and logging
        each failed attempt at debug. ``after``: a grouped first attempt was already sent
        for this shard, so every attempt here is a retry (and may follow its hint)."""
        sent = 0 if after is None else 1
        # The leader the last failure named, if it will be followed:
        hinted = (
            None if after is None else self._hint_followed(shard_id, after.error, after.node_id)
        )

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
                    hinted = self._hint_followed(shard_id, error, node_id)
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
        put back in the client's order. The first attempt of the shards a node leads goes
        as one call to it (:mod:`hongbao.router.grouped`). Raises HongbaoError for a Batch
        refused whole."""
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
                results[position] = error_result(error)
                continue
            by_shard.setdefault(shard_id, []).append(position)
        parts: list[Awaitable[None]] = []
        for node_id, shards in self._groups(by_shard):
            if len(shards) == 1:
                [(shard_id, positions)] = shards.items()
                parts.append(self._part(shard_id, positions, chunks, results, deadline))
            else:
                parts.append(self._grouped(node_id, shards, chunks, results, deadline))
        await asyncio.gather(*parts)
        return wire.repeated_field(_OPS, [r if r is not None else b"" for r in results])

    def _groups(self, by_shard: ShardPositions) -> list[tuple[int, ShardPositions]]:
        """The shards by the node :func:`run_call` would try first for each. Under the
        retry-fresh-id bug switch, one group per shard: the old path, its tests rely on it."""
        if self.bugs.retry_fresh_id:  # BUG SWITCH retry-fresh-id
            return [(self.routing.candidates(s)[0], {s: p}) for s, p in by_shard.items()]
        groups: dict[int, ShardPositions] = {}
        for shard_id, positions in by_shard.items():
            groups.setdefault(self.routing.candidates(shard_id)[0], {})[shard_id] = positions
        return list(groups.items())

    async def _grouped(
        self,
        node_id: int,
        shards: ShardPositions,
        chunks: list[bytes],
        results: list[bytes | None],
        deadline: Deadline,
    ) -> None:
        """The first attempt of several shards as ONE call to ``node_id`` (one call's
        overhead on the node, not one per shard); what it leaves unfinished goes on shard
        by shard through :meth:`_part`, with what may have applied carried over."""
        if deadline.expired:  # each part answers as run_call does when out of time
            await asyncio.gather(
                *(self._part(s, p, chunks, results, deadline) for s, p in shards.items())
            )
            return
        self.counters.batch_parts += 1
        carried = await self._group_attempt(node_id, shards, chunks, results, deadline)
        for _ in carried:
            self._retried()  # as run_call counts each failed attempt of a part
        await asyncio.gather(
            *(
                self._part(shard_id, after.positions, chunks, results, deadline, after)
                for shard_id, after in carried.items()
            )
        )

    async def _group_attempt(
        self,
        node_id: int,
        shards: ShardPositions,
        chunks: list[bytes],
        results: list[bytes | None],
        deadline: Deadline,
    ) -> dict[int, Carried]:
        """One call to ``node_id`` carrying every operation of ``shards``; the final
        results are kept, a definite failure answered to every position, and the rest
        returned by shard, to be sent again."""
        positions = grouped.in_client_order(shards)
        request = wire.repeated_field(_OPS, [chunks[p] for p in positions])
        timeout_s = deadline.attempt_timeout_s(self.settings.forward_timeout_ms)
        try:
            answer = await self._send_part(node_id, request, timeout_s, deadline)
            parts = wire.repeated_messages(answer, _OPS)
            if len(parts) != len(positions):
                raise make_error(
                    ErrorReason.INTERNAL,
                    f"node {node_id} answered {len(parts)} results to {len(positions)} operations",
                    server_reported=False,
                )
        except Exception as exc:
            error = error_of(exc)
            if error is None:
                raise
            log.debug("%d shards at node %d: %s", len(shards), node_id, error)
            if not isinstance(error, RetryableError):
                for shard_id, shard_positions in shards.items():
                    final = answerable(CallFailed(error, exc), shard_id)
                    self._answer_failed(shard_id, shard_positions, set(), final, results)
                return {}
            return grouped.after_failure(self.routing, node_id, shards, error)
        return grouped.after_answer(self.routing, node_id, shards, parts, results)

    async def _part(
        self,
        shard_id: int,
        positions: list[int],
        chunks: list[bytes],
        results: list[bytes | None],
        deadline: Deadline,
        after: Carried | None = None,
    ) -> None:
        """One shard's operations, retried until each has a final result. ``after``: what
        a grouped first attempt left, so this part's attempts are its retries."""
        self.counters.batch_parts += 1
        pending = list(positions)
        maybe_applied: set[int] = set() if after is None else after.maybe_applied
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
            pending, retry = collect(pending, parts, results, maybe_applied)
            if self.bugs.retry_fresh_id:  # BUG SWITCH retry-fresh-id
                self._renew_ids([p for p in pending if p in maybe_applied], chunks, renewed)
            if retry is not None:
                raise retry

        policy = self.policy
        if after is not None:
            policy = replace(policy, attempts_max=max(1, policy.attempts_max - 1))
            await self._back_off_after(shard_id, after, deadline)
        try:
            with log_context(shard=shard_id):
                await run_call(
                    self.routing,
                    shard_id,
                    self._counted(shard_id, attempt, after),
                    deadline=deadline,
                    policy=policy,
                    forward_timeout_ms=self.settings.forward_timeout_ms,
                    error_of=error_of,
                    on_retry=self._retried,
                )
        except CallFailed as failed:
            self._answer_failed(
                shard_id, pending, maybe_applied, answerable(failed, shard_id), results
            )

    async def _back_off_after(self, shard_id: int, after: Carried, deadline: Deadline) -> None:
        """Wait as :func:`run_call` would have after the grouped attempt's failure: not at
        all to follow a hint or to replace a node that did not answer, else one back-off."""
        if self._hint_followed(shard_id, after.error, after.node_id) is not None:
            return
        others = [n for n in self.routing.candidates(shard_id) if n != after.node_id]
        if moves_on_at_once(after.error) and others:
            return
        delay_ms = min(self.policy.backoff_ms(0), deadline.remaining_ms())
        await asyncio.sleep(delay_ms / 1000.0)

    def _answer_failed(
        self,
        shard_id: int,
        pending: list[int],
        maybe_applied: set[int],
        final: HongbaoError,
        results: list[bytes | None],
    ) -> None:
        """``final`` for each pending position, but OUTCOME_UNKNOWN for one an earlier
        attempt may have applied: a later definite failure says nothing about that one."""
        unknown = make_error(
            ErrorReason.OUTCOME_UNKNOWN,
            "an earlier attempt may have applied it; retry with the same request id",
            shard_id=shard_id,
        )
        for position in pending:
            chosen = unknown if position in maybe_applied and not final.outcome_unknown else final
            results[position] = error_result(chosen)

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
