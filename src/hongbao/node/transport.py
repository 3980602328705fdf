"""Raft traffic between nodes: one long-lived, batched gRPC stream per peer (``peer.proto``).

Rules of this module: delivery is best effort, like a network. Raft tolerates loss,
duplication and reordering, so nothing here retries a message: a full queue drops, a
broken stream drops what it held and reports the peer unreachable, and the cores resend.
Everything runs on the node's one asyncio loop; the runtime is told about arrivals
through :class:`TransportEvents` and never blocks on a peer.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Protocol

import grpc

from hongbao._invariant import invariant
from hongbao.channel_options import channel_options
from hongbao.node import codec
from hongbao.proto.gen.hongbao.v1 import peer_pb2, peer_pb2_grpc
from hongbao.raft.types import Message, MessageType

log = logging.getLogger(__name__)

ACK_EVERY_BATCHES = 64


@dataclass(frozen=True, slots=True)
class TransportLimits:
    queue_messages_max: int = 20_000
    batch_messages_max: int = 4096
    batch_bytes_max: int = 2 << 20
    snapshot_chunk_bytes: int = 1 << 20
    snapshot_size_bytes_max: int = 1 << 30
    grpc_message_bytes_max: int = 8 << 20
    reconnect_backoff_ms_min: int = 50
    reconnect_backoff_ms_max: int = 1000

    def __post_init__(self) -> None:
        invariant(self.batch_bytes_max < self.grpc_message_bytes_max, "batch exceeds gRPC limit")
        invariant(
            self.snapshot_chunk_bytes < self.grpc_message_bytes_max, "chunk exceeds gRPC limit"
        )

    def grpc_options(self) -> list[tuple[str, int]]:
        return channel_options(self.grpc_message_bytes_max)


class TransportEvents(Protocol):
    """What the transport tells the runtime. Called on the event loop, never blocking."""

    def deliver(self, shard_id: int, message: Message) -> None: ...

    def unreachable(self, peer_id: int) -> None: ...

    def snapshot_done(self, shard_id: int, peer_id: int, *, ok: bool) -> None: ...


class PeerSender:
    """The sending half of the stream from this node to one peer."""

    def __init__(
        self,
        *,
        node_id: int,
        peer_id: int,
        address: str,
        cluster_id: str,
        limits: TransportLimits,
        events: TransportEvents,
    ) -> None:
        self.node_id = node_id
        self.peer_id = peer_id
        self.address = address
        self.cluster_id = cluster_id
        self.limits = limits
        self.events = events
        self._queue: deque[tuple[int, Message]] = deque()
        self._wakeup = asyncio.Event()
        self._retry_now = asyncio.Event()
        self._batch_seq = 0
        self._snapshots_in_flight: set[tuple[int, int]] = set()  # (shard, snapshot index)
        self.dropped_messages = 0
        self.sent_batches = 0
        self.connected = False

    def send(self, shard_id: int, message: Message) -> None:
        if len(self._queue) >= self.limits.queue_messages_max:
            self.dropped_messages += 1
            return
        self._queue.append((shard_id, message))
        self._wakeup.set()

    async def run(self) -> None:
        """Keep a stream open to the peer until cancelled, reconnecting with back-off."""
        backoff_ms = self.limits.reconnect_backoff_ms_min
        while True:
            try:
                async with grpc.aio.insecure_channel(
                    self.address, options=self.limits.grpc_options()
                ) as channel:
                    stub = peer_pb2_grpc.PeerStub(channel)
                    call = stub.Stream(self._batches())
                    async for ack in call:
                        self.connected = True
                        backoff_ms = self.limits.reconnect_backoff_ms_min
                        self._handle_ack(ack)
            except asyncio.CancelledError:
                raise
            except grpc.aio.AioRpcError as error:
                log.debug("stream to node %d broke: %s", self.peer_id, error.code())
            except Exception:  # a bug in our own code: log it loudly, keep the node alive
                log.exception("stream to node %d failed", self.peer_id)
            self._stream_broken()
            self._retry_now.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._retry_now.wait(), backoff_ms / 1000)
            if self._retry_now.is_set():
                backoff_ms = self.limits.reconnect_backoff_ms_min
            else:
                backoff_ms = min(2 * backoff_ms, self.limits.reconnect_backoff_ms_max)

    def peer_is_back(self) -> None:
        """The peer just opened a stream to us, so it is up: end the back-off and reconnect.

        Without this a restarted node waits out the rest of our back-off (up to
        ``reconnect_backoff_ms_max``) before the leaders here send it anything.
        """
        if not self.connected:
            self._retry_now.set()

    def _stream_broken(self) -> None:
        self.connected = False
        self.dropped_messages += len(self._queue)
        self._queue.clear()
        self.events.unreachable(self.peer_id)
        for shard_id, _ in sorted(self._snapshots_in_flight):
            self.events.snapshot_done(shard_id, self.peer_id, ok=False)
        self._snapshots_in_flight.clear()

    def _handle_ack(self, ack: peer_pb2.RaftAck) -> None:
        for chunk_ack in ack.snapshot_acks:
            key = (chunk_ack.shard_id, chunk_ack.snapshot_index)
            if chunk_ack.status == peer_pb2.SNAPSHOT_CHUNK_STATUS_COMPLETE:
                self._snapshots_in_flight.discard(key)
                self.events.snapshot_done(chunk_ack.shard_id, self.peer_id, ok=True)
            elif chunk_ack.status == peer_pb2.SNAPSHOT_CHUNK_STATUS_REJECTED:
                self._snapshots_in_flight.discard(key)
                log.warning("node %d rejected a snapshot: %s", self.peer_id, chunk_ack.message)
                self.events.snapshot_done(chunk_ack.shard_id, self.peer_id, ok=False)

    async def _batches(self) -> AsyncIterator[peer_pb2.RaftBatch]:
        while True:
            if not self._queue:
                self._wakeup.clear()
                await self._wakeup.wait()
            messages, snapshots = self._take_batch()
            if messages:
                yield self._batch(messages, ())
            for shard_id, message in snapshots:
                for chunk in codec.snapshot_to_chunks(
                    shard_id=shard_id,
                    message=message,
                    chunk_size_bytes=self.limits.snapshot_chunk_bytes,
                ):
                    yield self._batch((), (chunk,))

    def _take_batch(self) -> tuple[list[tuple[int, Message]], list[tuple[int, Message]]]:
        messages: list[tuple[int, Message]] = []
        snapshots: list[tuple[int, Message]] = []
        size_bytes = 0
        while self._queue and len(messages) < self.limits.batch_messages_max:
            shard_id, message = self._queue[0]
            if messages and size_bytes + message.size_bytes > self.limits.batch_bytes_max:
                break
            self._queue.popleft()
            if message.type is MessageType.SNAP and message.snapshot is not None:
                self._snapshots_in_flight.add((shard_id, message.snapshot.meta.index))
                snapshots.append((shard_id, message))
                continue
            messages.append((shard_id, message))
            size_bytes += message.size_bytes
        return messages, snapshots

    def _batch(
        self,
        messages: list[tuple[int, Message]] | tuple[()],
        chunks: tuple[peer_pb2.SnapshotChunk, ...],
    ) -> peer_pb2.RaftBatch:
        self._batch_seq += 1
        self.sent_batches += 1
        return codec.batch_to_proto(
            cluster_id=self.cluster_id,
            from_node_id=self.node_id,
            to_node_id=self.peer_id,
            batch_seq=self._batch_seq,
            messages=messages,
            snapshot_chunks=chunks,
        )


class PeerServicer(peer_pb2_grpc.PeerServicer):
    """The receiving half: hands every message of every shard to the runtime."""

    def __init__(
        self,
        *,
        node_id: int,
        cluster_id: str,
        limits: TransportLimits,
        events: TransportEvents,
        is_known_peer: Callable[[int], bool],
        on_peer_stream: Callable[[int], None] = lambda peer_id: None,
    ) -> None:
        self.node_id = node_id
        self.cluster_id = cluster_id
        self.limits = limits
        self.events = events
        self.is_known_peer = is_known_peer
        self.on_peer_stream = on_peer_stream  # called with the peer's id as its stream opens
        self.received_messages = 0

    async def Stream(
        self,
        request_iterator: AsyncIterator[peer_pb2.RaftBatch],
        context: grpc.aio.ServicerContext[peer_pb2.RaftBatch, peer_pb2.RaftAck],
    ) -> AsyncIterator[peer_pb2.RaftAck]:
        assembler = codec.SnapshotAssembler(
            snapshot_size_bytes_max=self.limits.snapshot_size_bytes_max
        )
        opened = False
        async for batch in request_iterator:
            problem = self._refusal(batch)
            if problem:
                await context.abort(grpc.StatusCode.FAILED_PRECONDITION, problem)
            if not opened:
                opened = True
                self.on_peer_stream(batch.from_node_id)
            try:
                pairs = codec.batch_from_proto(batch)
            except codec.CodecError as error:
                await context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"bad batch: {error}")
            for shard_id, message in pairs:
                self.received_messages += 1
                self.events.deliver(shard_id, message)
            acks = []
            for chunk in batch.snapshot_chunks:
                ack, complete = assembler.accept(chunk)
                acks.append(ack)
                if complete is not None:
                    self.events.deliver(*complete)
            # Acks cost a stream write each: send them for snapshot chunks (the sender
            # waits on those) and otherwise only now and then, as a sign of life.
            if acks or batch.batch_seq % ACK_EVERY_BATCHES == 1:
                yield peer_pb2.RaftAck(batch_seq=batch.batch_seq, snapshot_acks=acks)

    def _refusal(self, batch: peer_pb2.RaftBatch) -> str:
        if batch.cluster_id != self.cluster_id:
            return f"cluster {batch.cluster_id!r} is not this node's {self.cluster_id!r}"
        if batch.to_node_id != self.node_id:
            return f"batch for node {batch.to_node_id} reached node {self.node_id}"
        if not self.is_known_peer(batch.from_node_id):
            return f"node {batch.from_node_id} is not in the topology"
        return ""
