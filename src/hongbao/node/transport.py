"""Raft traffic between nodes: one long-lived, batched gRPC stream per peer (``peer.proto``).

Rules of this module: delivery is best effort, like a network. Raft tolerates loss,
duplication and reordering, so nothing here retries a message: a full queue drops, a
broken stream drops what it held and reports the peer unreachable, and the cores resend.
Everything runs on the node's one asyncio loop; the runtime is told about arrivals
through :class:`TransportEvents` and never blocks on a peer.

A clean shutdown logs no error: grpc's own task for an inbound stream outlives
``server.stop()`` by a moment (it ends when the core reports the cancelled call), and
``asyncio.run`` cancelling it on exit logs an ERROR with a ``CancelledError`` traceback for
``/hongbao.v1.Peer/Stream``. The node awaits :meth:`PeerServicer.wait_calls_closed` after
``server.stop()`` so those tasks end first.

A peer is untrusted: every message is checked by :mod:`hongbao.node.peer_guard` before it
is handed on, snapshot staging is bounded in total across streams
(:class:`~hongbao.node.codec.StagingBudget`), and a message that does not encode is
dropped with a warning rather than taking the stream down.

Per peer, both halves count for /metrics (plain ints, read at scrape time): the sender
its stream reconnects and the bytes of the batches it encoded, the servicer the bytes of
the batches each peer sent us.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any, Protocol

import grpc

from hongbao._invariant import invariant
from hongbao.net.channels import channel_options, open_channel
from hongbao.node import codec
from hongbao.node.peer_guard import PeerGuard, Refusal, snapshot_problem
from hongbao.proto.gen.hongbao.v1 import peer_pb2, peer_pb2_grpc
from hongbao.raft.types import Message, MessageType
from hongbao.security.binding import PeerBinding
from hongbao.security.identity import peer_identity

log = logging.getLogger(__name__)

ACK_EVERY_BATCHES = 64
CALLS_CLOSED_TIMEOUT_S = 2.0  # after server.stop(): how long the node waits for the streams


@dataclass(frozen=True, slots=True)
class TransportLimits:
    queue_messages_max: int = 20_000
    batch_messages_max: int = 4096
    batch_bytes_max: int = 2 << 20
    snapshot_chunk_bytes: int = 1 << 20
    snapshot_size_bytes_max: int = 1 << 30
    snapshot_staging_bytes_max: int = 1 << 30  # all streams together, not per stream
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

    def heard(self, peer_id: int) -> None: ...

    def snapshot_done(self, shard_id: int, peer_id: int, *, ok: bool) -> None: ...


class PeerSender:
    """The sending half of the stream from this node to one peer."""

    credentials: grpc.ChannelCredentials | None = None  # the node's own, when TLS is on

    def __init__(
        self,
        *,
        node_id: int,
        peer_id: int,
        address: str,
        cluster_id: str,
        limits: TransportLimits,
        events: TransportEvents,
        keepalive_interval_s: float | None = None,
    ) -> None:
        self.node_id = node_id
        self.peer_id = peer_id
        # An empty batch after this long without one: the peer's node-level liveness of
        # us (hongbao.node.liveness), which quiesced groups rely on. None: no keepalives.
        self.keepalive_interval_s = keepalive_interval_s
        self.sent_keepalives = 0
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
        self.unencodable_messages = 0
        self.sent_batches = 0
        self.sent_bytes = 0  # encoded RaftBatch bytes (what gRPC frames, before compression)
        self.reconnects = 0  # streams opened after the first attempt (each follows a break)
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
        first_attempt = True
        while True:
            if not first_attempt:
                self.reconnects += 1
            first_attempt = False
            try:
                async with open_channel(
                    self.address, self.credentials, self.limits.grpc_options()
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
        loop = asyncio.get_running_loop()
        while True:
            if not self._queue:
                self._wakeup.clear()
                if self.keepalive_interval_s is None:
                    await self._wakeup.wait()
                else:
                    timer = loop.call_later(self.keepalive_interval_s, self._wakeup.set)
                    await self._wakeup.wait()
                    timer.cancel()
                    if not self._queue:
                        self.sent_keepalives += 1
                        yield self._batch((), ())
                        continue
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
        try:
            batch = self._encode(messages, chunks)
        except (ValueError, TypeError):
            # One message does not fit the wire (a term or index beyond 64 bits): drop it
            # and say so at warning, instead of losing the stream and every other message.
            encodable = [pair for pair in messages if self._encodes(pair)]
            batch = self._encode(encodable, chunks)
        self.sent_bytes += batch.ByteSize()
        return batch

    def _encode(
        self,
        messages: list[tuple[int, Message]] | tuple[()],
        chunks: tuple[peer_pb2.SnapshotChunk, ...],
    ) -> peer_pb2.RaftBatch:
        return codec.batch_to_proto(
            cluster_id=self.cluster_id,
            from_node_id=self.node_id,
            to_node_id=self.peer_id,
            batch_seq=self._batch_seq,
            messages=messages,
            snapshot_chunks=chunks,
        )

    def _encodes(self, pair: tuple[int, Message]) -> bool:
        shard_id, message = pair
        try:
            codec.message_to_proto(message)
        except (ValueError, TypeError) as error:
            self.dropped_messages += 1
            self.unencodable_messages += 1
            log.warning(
                "shard %d: dropped a %s to node %d that does not encode: %s",
                shard_id,
                message.type.name,
                self.peer_id,
                error,
            )
            return False
        return True


class PeerServicer(peer_pb2_grpc.PeerServicer):
    """The receiving half: hands every message the guard admits to the runtime.

    A batch of another cluster, for another node, or from a node not in the topology ends
    its stream; so does a second stream claiming a node whose first stream is live (see
    :class:`StreamRegistry`). Within a stream each message is checked on its own by
    :class:`~hongbao.node.peer_guard.PeerGuard` and a refused one is dropped, counted and
    logged: nothing a peer sends raises out of here, so nothing stops the node.
    """

    binding: PeerBinding | None = None  # set by the node server when TLS is on

    def __init__(
        self,
        *,
        node_id: int,
        cluster_id: str,
        limits: TransportLimits,
        events: TransportEvents,
        is_known_peer: Callable[[int], bool],
        guard: PeerGuard,
        on_peer_stream: Callable[[int], None] = lambda peer_id: None,
        stream_takeover_ms: int = 1000,
    ) -> None:
        self.node_id = node_id
        self.cluster_id = cluster_id
        self.limits = limits
        self.events = events
        self.is_known_peer = is_known_peer
        self.guard = guard
        self.refusals = guard.log
        self.on_peer_stream = on_peer_stream  # called with the peer's id as its stream opens
        self.received_messages = 0
        # Encoded RaftBatch bytes received, by sending node (only nodes of the topology
        # get past _refusal, so this holds at most one key per peer).
        self.received_bytes: dict[int, int] = {}
        self.staging = codec.StagingBudget(total_bytes_max=limits.snapshot_staging_bytes_max)
        self.streams = StreamRegistry(takeover_ms=stream_takeover_ms)
        # Inbound Stream calls grpc has not finished yet (keyed by their context): see the
        # module docstring. Bounded by the server's own limit on concurrent calls.
        self._open_calls: set[int] = set()
        self._no_open_calls = asyncio.Event()
        self._no_open_calls.set()

    @property
    def open_calls(self) -> int:
        return len(self._open_calls)

    async def wait_calls_closed(self, timeout_s: float = CALLS_CLOSED_TIMEOUT_S) -> int:
        """After ``server.stop()``: wait until grpc has finished every inbound stream.

        Returns how many were still open at the deadline (0 on a clean stop). Without
        this, the loop closes under grpc's per-call tasks and each logs a traceback.
        """
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._no_open_calls.wait(), timeout_s)
        await asyncio.sleep(0)  # the calls' own tasks take their last step
        return len(self._open_calls)

    def _track_call(self, context: grpc.aio.ServicerContext[Any, Any]) -> None:
        key = id(context)
        self._open_calls.add(key)
        self._no_open_calls.clear()

        def closed(_: object) -> None:
            self._open_calls.discard(key)
            if not self._open_calls:
                self._no_open_calls.set()

        # The stubs type the callback as their private _DoneCallback class, not a callable.
        context.add_done_callback(closed)  # type: ignore[arg-type]

    async def Stream(
        self,
        request_iterator: AsyncIterator[peer_pb2.RaftBatch],
        context: grpc.aio.ServicerContext[peer_pb2.RaftBatch, peer_pb2.RaftAck],
    ) -> AsyncIterator[peer_pb2.RaftAck]:
        assembler = codec.SnapshotAssembler(
            snapshot_size_bytes_max=self.limits.snapshot_size_bytes_max,
            budget=self.staging,
            verify=snapshot_problem,
        )
        self._track_call(context)
        slot: _Slot | None = None
        identity = peer_identity(context) if self.binding is not None else None
        try:
            async for batch in request_iterator:
                sender = int(batch.from_node_id)
                if self.binding is not None:  # TLS: only the certificate's node may speak
                    unbound = self.binding.batch_refusal(identity, batch)
                    if unbound:
                        log.warning("refused a peer stream from %s: %s", context.peer(), unbound)
                        await context.abort(grpc.StatusCode.PERMISSION_DENIED, unbound)
                refusal = self._refusal(batch, slot)
                if refusal is not None:
                    reason, detail = refusal
                    self.refusals.refuse(reason, sender, f"{detail} ({context.peer()})")
                    await context.abort(grpc.StatusCode.FAILED_PRECONDITION, detail)
                if slot is None:
                    slot = self.streams.claim(sender)
                    if slot is None:
                        detail = f"node {sender} already has a live stream here"
                        self.refusals.refuse(Refusal.DUPLICATE_STREAM, sender, detail)
                        await context.abort(grpc.StatusCode.ALREADY_EXISTS, detail)
                        return
                    self.on_peer_stream(sender)
                if slot.superseded:
                    return  # a newer stream of that node took over after this one went idle
                slot.touch()
                self.events.heard(sender)
                self.received_bytes[sender] = self.received_bytes.get(sender, 0) + batch.ByteSize()
                self._deliver_messages(sender, batch)
                acks = [
                    self._accept_chunk(sender, chunk, assembler)
                    for chunk in batch.snapshot_chunks
                ]
                # Acks cost a stream write each: send them for snapshot chunks (the sender
                # waits on those) and otherwise only now and then, as a sign of life.
                if acks or batch.batch_seq % ACK_EVERY_BATCHES == 1:
                    yield peer_pb2.RaftAck(batch_seq=batch.batch_seq, snapshot_acks=acks)
        finally:
            assembler.close()
            if slot is not None:
                self.streams.release(slot)

    def _deliver_messages(self, sender: int, batch: peer_pb2.RaftBatch) -> None:
        for item in batch.messages:
            try:
                message = codec.message_from_proto(item.message)
            except (codec.CodecError, ValueError) as error:
                self.refusals.refuse(Refusal.UNDECODABLE, sender, f"bad message: {error}")
                continue
            if self.guard.admit(sender, item.shard_id, message):
                self.received_messages += 1
                self.events.deliver(item.shard_id, message)

    def _accept_chunk(
        self, sender: int, chunk: peer_pb2.SnapshotChunk, assembler: codec.SnapshotAssembler
    ) -> peer_pb2.SnapshotChunkAck:
        problem = self.guard.staging_problem(sender, chunk.shard_id)
        if problem is not None:
            self.refusals.refuse(Refusal.SNAPSHOT_REJECTED, sender, problem)
            return codec.rejected_ack(chunk, problem)
        ack, complete = assembler.accept(chunk)
        if ack.status == peer_pb2.SNAPSHOT_CHUNK_STATUS_REJECTED:
            self.refusals.refuse(Refusal.SNAPSHOT_REJECTED, sender, ack.message)
        if complete is None:
            return ack
        if not self.guard.admit(sender, *complete, chunked=True):
            return codec.rejected_ack(chunk, "the SNAP message was refused")
        self.events.deliver(*complete)
        return ack

    def _refusal(
        self, batch: peer_pb2.RaftBatch, slot: _Slot | None
    ) -> tuple[Refusal, str] | None:
        if batch.cluster_id != self.cluster_id:
            why = f"cluster {batch.cluster_id[:40]!r} is not this node's"
            return Refusal.WRONG_CLUSTER, why
        if batch.to_node_id != self.node_id:
            why = f"batch for node {batch.to_node_id} reached node {self.node_id}"
            return Refusal.WRONG_DESTINATION, why
        if not self.is_known_peer(batch.from_node_id) or batch.from_node_id == self.node_id:
            return Refusal.UNKNOWN_NODE, f"node {batch.from_node_id} is not a peer here"
        if slot is not None and slot.node_id != batch.from_node_id:
            why = f"a stream of node {slot.node_id} claims {batch.from_node_id}"
            return Refusal.SENDER_CHANGED, why
        return None


@dataclass(slots=True)
class _Slot:
    node_id: int
    last_batch_ms: float
    superseded: bool = False

    def touch(self) -> None:
        self.last_batch_ms = time.monotonic() * 1000


class StreamRegistry:
    """At most one inbound stream per peer node: the first one keeps its place.

    Without certificates anyone may open a stream claiming any node id; while the real
    node's stream is live, a second claim is refused, so a forger cannot slip messages in
    beside it. A stream silent for ``takeover_ms`` (a peer whose connection died without
    a reset) yields its place to a new one, so a reconnecting peer is never locked out by
    its own dead stream. A forger who claims a node before the node connects can keep it
    out (a denial of service, not a safety hole): part B's certificates close that.
    """

    def __init__(self, *, takeover_ms: int) -> None:
        self.takeover_ms = takeover_ms
        self._live: dict[int, _Slot] = {}

    def claim(self, node_id: int) -> _Slot | None:
        now_ms = time.monotonic() * 1000
        current = self._live.get(node_id)
        if current is not None and now_ms - current.last_batch_ms < self.takeover_ms:
            return None
        if current is not None:
            current.superseded = True
        slot = _Slot(node_id, now_ms)
        self._live[node_id] = slot
        return slot

    def release(self, slot: _Slot) -> None:
        if self._live.get(slot.node_id) is slot:
            del self._live[slot.node_id]

    def live(self, node_id: int) -> bool:
        return node_id in self._live
