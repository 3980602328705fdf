"""Concurrent single requests for one node, forwarded as one Batch.Execute.

Why: a node commits a Batch's operations together (one log entry, one fsync for many),
so callers that send one request at a time pay a round trip and a commit each unless
someone batches for them. The first request to arrive for a node opens a window of
``coalesce_wait_ms``; every request for the same node that arrives in it joins, up to
``coalesce_batch_max`` operations (or :data:`LINES_MAX` answer lines); then the window is
forwarded as one Batch. A window that holds a single request is forwarded as that request
itself, unchanged, so a lone caller pays only the wait.

The batch is built from the clients' bytes (``Operation`` records around each request,
:mod:`hongbao.router.wire`) and each caller gets its own result's bytes back, or its
in-band error as a :class:`HongbaoError`, or the whole call's failure. Retrying is the
caller's business (:func:`hongbao.client.routing.run_call`): a NOT_LEADER for one
operation sends only that one elsewhere.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Final

from hongbao.node.admission import BATCH_RESPONSE_LINES_MAX
from hongbao.node.errors import ErrorReason, error_from_proto, make_error
from hongbao.proto.gen.hongbao.v1 import errors_pb2, ledger_pb2
from hongbao.router import wire
from hongbao.router.methods import BATCH_EXECUTE

LINES_MAX: Final = BATCH_RESPONSE_LINES_MAX
"""A window closes before its worst-case answer could exceed a node's Batch bound."""
_ERROR_FIELD: Final = ledger_pb2.OperationResult.DESCRIPTOR.fields_by_name["error"].number
_OPERATIONS_FIELD: Final = 1  # ExecuteRequest.operations / ExecuteResponse.results

Forward = Callable[[int, str, bytes, float], Awaitable[bytes]]


@dataclass(slots=True)
class _Waiter:
    path: str
    raw: bytes
    operation: bytes  # the Operation record around ``raw``
    lines: int
    timeout_s: float
    future: asyncio.Future[bytes]


@dataclass(slots=True)
class _Window:
    waiters: list[_Waiter] = field(default_factory=list)
    lines: int = 0
    timer: asyncio.TimerHandle | None = None


@dataclass(slots=True)
class CoalesceCounters:
    singles_forwarded: int = 0  # windows of one request, forwarded as it was
    batches_forwarded: int = 0  # windows of several, forwarded as one Batch.Execute
    operations_coalesced: int = 0  # requests that rode in those batches


class Coalescer:
    def __init__(self, forward: Forward, *, wait_ms: int, batch_max: int) -> None:
        self.forward = forward
        self.wait_s = wait_ms / 1000.0
        self.batch_max = batch_max
        self.counters = CoalesceCounters()
        self._windows: dict[int, _Window] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    async def submit(
        self,
        node_id: int,
        path: str,
        raw: bytes,
        operation_field: int,
        lines: int,
        timeout_s: float,
    ) -> bytes:
        """The answer's bytes for one request sent to ``node_id``; raises its error."""
        future: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()
        waiter = _Waiter(
            path, raw, wire.length_delimited(operation_field, raw), lines, timeout_s, future
        )
        window = self._windows.get(node_id)
        if window is not None and window.lines + lines > LINES_MAX:
            self._flush(node_id)
            window = None
        if window is None:
            window = self._windows[node_id] = _Window()
            window.timer = asyncio.get_running_loop().call_later(self.wait_s, self._flush, node_id)
        window.waiters.append(waiter)
        window.lines += lines
        if len(window.waiters) >= self.batch_max:
            self._flush(node_id)
        try:
            return await asyncio.wait_for(asyncio.shield(future), timeout_s)
        except TimeoutError:
            raise make_error(
                ErrorReason.OUTCOME_UNKNOWN,
                "the node did not answer before the deadline; retry with the same request id",
            ) from None

    def _flush(self, node_id: int) -> None:
        window = self._windows.pop(node_id, None)
        if window is None:
            return
        if window.timer is not None:
            window.timer.cancel()
        task = asyncio.create_task(self._send(node_id, window.waiters))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _send(self, node_id: int, waiters: list[_Waiter]) -> None:
        timeout_s = max(w.timeout_s for w in waiters)
        if len(waiters) == 1:
            self.counters.singles_forwarded += 1
            waiter = waiters[0]
            try:
                answer = await self.forward(node_id, waiter.path, waiter.raw, timeout_s)
            except Exception as error:  # the caller's retry loop reads it
                _fail(waiter, error)
            else:
                if not waiter.future.done():
                    waiter.future.set_result(answer)
            return
        self.counters.batches_forwarded += 1
        self.counters.operations_coalesced += len(waiters)
        request = b"".join(
            wire.varint((_OPERATIONS_FIELD << 3) | wire.WIRE_LEN)
            + wire.varint(len(w.operation))
            + w.operation
            for w in waiters
        )
        try:
            answer = await self.forward(node_id, BATCH_EXECUTE, request, timeout_s)
            results = wire.repeated_messages(answer, _OPERATIONS_FIELD)
            if len(results) != len(waiters):
                raise make_error(
                    ErrorReason.INTERNAL,
                    f"node {node_id} answered {len(results)} results to {len(waiters)} operations",
                )
        except Exception as error:
            for waiter in waiters:
                _fail(waiter, error)
            return
        for waiter, result in zip(waiters, results, strict=True):
            if waiter.future.done():
                continue
            try:
                number, payload = wire.oneof_message(result)
                if number == _ERROR_FIELD:
                    waiter.future.set_exception(
                        error_from_proto(errors_pb2.Error.FromString(payload))
                    )
                else:
                    waiter.future.set_result(payload)
            except Exception as error:  # a malformed result: this caller's answer only
                _fail(waiter, error)

    async def close(self) -> None:
        for node_id in list(self._windows):
            self._flush(node_id)
        for task in list(self._tasks):
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task


def _fail(waiter: _Waiter, error: BaseException) -> None:
    if not waiter.future.done():
        waiter.future.set_exception(error)
        # A caller that gave up never reads it: mark it retrieved, or asyncio logs an
        # ERROR "exception was never retrieved" with nothing for an operator to do.
        waiter.future.exception()
