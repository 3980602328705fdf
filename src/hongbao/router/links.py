"""The router's channels to the nodes: one per node, with raw-bytes callables per method.

Why raw callables: ``channel.unary_unary(path)`` without a serializer or deserializer
sends the bytes it is given and returns the bytes the node sent, so the router forwards a
client's request and a node's answer without decoding or re-encoding either.
Every forwarded call carries the cluster id (``hongbao-cluster-id``): a node of another
cluster refuses it with CLUSTER_MISMATCH instead of serving it.

Why :meth:`NodeLinks.forward_while_alive`: a slow node is not a dead one. Under load a
leader's queue (Raft, fsync) holds a Batch part for seconds while it answers other calls
all the time. A fixed per-call timeout of ``forward_timeout_ms`` cut those parts off,
the router sent them again (to a follower, which bounced them back with NOT_LEADER, then
to the back of the same queue) and every resend added to the queue it was waiting in:
64 callers of 100-operation Batches got 150 transfers/s and calls that never finished,
where the same load sent straight to the nodes got 885/s. So a call is cut only when
its node has been *silent* (answered no call at all) for ``silent_s``, and otherwise
waits up to the request's own deadline.
"""

from __future__ import annotations

import asyncio
import time
from typing import Final

import grpc
from grpc.aio import Metadata

from hongbao.config.topology import Topology
from hongbao.net.channels import channel_options, open_channel

CLUSTER_ID_KEY: Final = "hongbao-cluster-id"
MESSAGE_BYTES_MAX: Final = 8 << 20

_NOT_AN_ANSWER: Final = frozenset({grpc.StatusCode.DEADLINE_EXCEEDED, grpc.StatusCode.UNAVAILABLE})
"""Statuses a call may end with although its node never answered it."""

RawCall = grpc.aio.UnaryUnaryMultiCallable[bytes, bytes]


class NodeLinks:
    """Channels opened lazily, one per node, closed by :meth:`close`."""

    def __init__(
        self,
        topology: Topology,
        cluster_id: str,
        credentials: grpc.ChannelCredentials | None,
        message_bytes_max: int = MESSAGE_BYTES_MAX,
    ) -> None:
        self.topology = topology
        self.metadata: tuple[tuple[str, str], ...] = ((CLUSTER_ID_KEY, cluster_id),)
        self._credentials = credentials
        self._options = channel_options(message_bytes_max)
        self._channels: dict[int, grpc.aio.Channel] = {}
        self._calls: dict[tuple[int, str], RawCall] = {}
        self._answered_at_s: dict[int, float] = {}  # monotonic s of each node's last answer

    def channel(self, node_id: int) -> grpc.aio.Channel:
        channel = self._channels.get(node_id)
        if channel is None:
            address = self.topology.dial_address(node_id)
            channel = self._channels[node_id] = open_channel(
                address, self._credentials, self._options
            )
        return channel

    def raw(self, node_id: int, path: str) -> RawCall:
        """The raw-bytes callable of ``path`` on ``node_id``."""
        call = self._calls.get((node_id, path))
        if call is None:
            call = self._calls[(node_id, path)] = self.channel(node_id).unary_unary(
                path, request_serializer=None, response_deserializer=None
            )
        return call

    async def forward(self, node_id: int, path: str, raw: bytes, timeout_s: float) -> bytes:
        """One forwarded call; raises the node's ``grpc.aio.AioRpcError`` as it came."""
        try:
            answer: bytes = await self.raw(node_id, path)(
                raw, timeout=timeout_s, metadata=self.metadata
            )
        except grpc.aio.AioRpcError as error:
            if error.code() not in _NOT_AN_ANSWER:
                self._heard(node_id)
            raise
        self._heard(node_id)
        return answer

    def answered_at_s(self, node_id: int) -> float | None:
        """When ``node_id`` last answered any call (monotonic s), None if it never did."""
        return self._answered_at_s.get(node_id)

    async def forward_while_alive(
        self, node_id: int, path: str, raw: bytes, *, timeout_s: float, silent_s: float
    ) -> bytes:
        """One forwarded call that waits up to ``timeout_s`` as long as ``node_id`` keeps
        answering: it is cut (DEADLINE_EXCEEDED, as gRPC's own deadline would) once the
        node has answered nothing, this call or any other, for ``silent_s``.

        Raises the node's ``grpc.aio.AioRpcError`` as it came, like :meth:`forward`.
        """
        started_s = time.monotonic()
        rpc = self.raw(node_id, path)(raw, timeout=timeout_s, metadata=self.metadata)
        call: asyncio.Future[bytes] = asyncio.ensure_future(rpc)
        try:
            while True:
                heard_s = max(started_s, self._answered_at_s.get(node_id, 0.0))
                wait_s = heard_s + silent_s - time.monotonic()
                if wait_s <= 0.0:
                    raise grpc.aio.AioRpcError(
                        grpc.StatusCode.DEADLINE_EXCEEDED,
                        Metadata(),
                        Metadata(),
                        details=f"node {node_id} answered nothing for {silent_s * 1000:.0f} ms",
                    )
                done, _ = await asyncio.wait((call,), timeout=wait_s)
                if done:
                    answer: bytes = await call
                    self._heard(node_id)
                    return answer
        except grpc.aio.AioRpcError as error:
            if error.code() not in _NOT_AN_ANSWER:
                self._heard(node_id)  # the node refused it: alive
            raise
        finally:
            if not call.done():  # cut, or the caller was cancelled: the RPC ends here too
                rpc.cancel()
                call.cancel()

    def _heard(self, node_id: int) -> None:
        self._answered_at_s[node_id] = time.monotonic()

    async def close(self) -> None:
        for channel in self._channels.values():
            await channel.close()
        self._channels.clear()
        self._calls.clear()
