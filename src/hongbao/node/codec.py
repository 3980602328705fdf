"""The wire codec: the ONLY place that converts the Raft core's data to protobuf and back.

Rules of this module:

- It maps ``hongbao.raft.types`` (Entry, ConfState, HardState, SnapshotMeta, Snapshot,
  Message) to the ``hongbao.v1`` messages of ``raft.proto`` and ``peer.proto`` field for
  field, and back, with nothing else: no I/O, no policy. The core never sees protobuf
  and no other module maps these types.
- It sits on the hot path of every Raft message, so conversions are direct: keyword
  constructors, dict and tuple lookups built once at import, no reflection per call.
- Decoding trusts nothing from the wire: an unknown enum value, a reserved node id or an
  overlapping membership raises :class:`CodecError`, never a bare ``KeyError``.
- Snapshot payloads are chunked here (:func:`snapshot_to_chunks`) and assembled here
  (:class:`SnapshotAssembler`) by the scheme documented in ``peer.proto``: the SNAP
  message rides the last chunk, and reaches the core only once the payload is whole.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, replace
from typing import Final, cast, final

from hongbao._invariant import InvariantViolation, invariant, maybe
from hongbao.proto.gen.hongbao.v1 import peer_pb2, raft_pb2
from hongbao.raft.types import (
    ConfState,
    Entry,
    EntryType,
    HardState,
    Message,
    MessageType,
    NodeId,
    Snapshot,
    SnapshotMeta,
)

__all__ = [
    "CodecError",
    "SnapshotAssembler",
    "StagingBudget",
    "batch_from_proto",
    "batch_to_proto",
    "conf_state_from_proto",
    "conf_state_to_proto",
    "entry_from_proto",
    "entry_to_proto",
    "hard_state_from_proto",
    "hard_state_to_proto",
    "message_from_proto",
    "message_to_proto",
    "rejected_ack",
    "snapshot_from_proto",
    "snapshot_to_chunks",
    "snapshot_to_proto",
]


class CodecError(ValueError):
    """Bytes or a protobuf message that do not decode to valid Raft data."""


# The proto enums mirror the Python ones by name (see raft.proto); a member missing on
# either side fails here, at import, rather than on the first message of that type. The
# casts only tell mypy that these ints are members of the generated enum types.
_TYPE_TO_PB: Final[dict[MessageType, raft_pb2.MessageType]] = {
    member: cast(raft_pb2.MessageType, raft_pb2.MessageType.Value("MESSAGE_TYPE_" + member.name))
    for member in MessageType
}
_TYPE_FROM_PB: Final[dict[int, MessageType]] = {
    number: member for member, number in _TYPE_TO_PB.items()
}
invariant(
    len(raft_pb2.MessageType.keys()) == len(MessageType) + 1,
    "raft.proto MessageType has members that raft.types.MessageType lacks",
)
_ENTRY_TYPE_TO_PB: Final[dict[EntryType, raft_pb2.EntryType]] = {
    member: cast(raft_pb2.EntryType, raft_pb2.EntryType.Value("ENTRY_TYPE_" + member.name))
    for member in EntryType
}
_ENTRY_TYPE_FROM_PB: Final[dict[int, EntryType]] = {
    number: member for member, number in _ENTRY_TYPE_TO_PB.items()
}
invariant(
    len(raft_pb2.EntryType.keys()) == len(EntryType),
    "raft.proto EntryType has members that raft.types.EntryType lacks",
)

_SNAP: Final[int] = _TYPE_TO_PB[MessageType.SNAP]


# ---- Entry, HardState, ConfState, Snapshot ----


def entry_to_proto(entry: Entry) -> raft_pb2.Entry:
    return raft_pb2.Entry(
        term=entry.term, index=entry.index, type=_ENTRY_TYPE_TO_PB[entry.type], data=entry.data
    )


def entry_from_proto(pb: raft_pb2.Entry) -> Entry:
    try:
        entry_type = _ENTRY_TYPE_FROM_PB[pb.type]
    except KeyError:
        raise CodecError(f"unknown entry type {pb.type}") from None
    return Entry(term=pb.term, index=pb.index, type=entry_type, data=pb.data)


def hard_state_to_proto(hard_state: HardState) -> raft_pb2.HardState:
    return raft_pb2.HardState(term=hard_state.term, vote=hard_state.vote, commit=hard_state.commit)


def hard_state_from_proto(pb: raft_pb2.HardState) -> HardState:
    return HardState(term=pb.term, vote=NodeId(pb.vote), commit=pb.commit)


def conf_state_to_proto(conf_state: ConfState) -> raft_pb2.ConfState:
    # Sorted, so that equal memberships always encode to equal bytes.
    return raft_pb2.ConfState(
        voters=sorted(conf_state.voters), learners=sorted(conf_state.learners)
    )


def conf_state_from_proto(pb: raft_pb2.ConfState) -> ConfState:
    voters = frozenset(NodeId(n) for n in pb.voters)
    learners = frozenset(NodeId(n) for n in pb.learners)
    maybe(len(voters) < len(pb.voters))  # duplicates collapse; harmless for a set
    try:
        return ConfState(voters=voters, learners=learners)
    except ValueError as error:
        raise CodecError(f"invalid conf state: {error}") from None


def snapshot_to_proto(snapshot: Snapshot) -> raft_pb2.Snapshot:
    meta = snapshot.meta
    return raft_pb2.Snapshot(
        meta=raft_pb2.SnapshotMeta(
            index=meta.index, term=meta.term, conf_state=conf_state_to_proto(meta.conf_state)
        ),
        data=snapshot.data,
    )


def snapshot_from_proto(pb: raft_pb2.Snapshot) -> Snapshot:
    meta = pb.meta
    return Snapshot(
        meta=SnapshotMeta(
            index=meta.index, term=meta.term, conf_state=conf_state_from_proto(meta.conf_state)
        ),
        data=pb.data,
    )


# ---- Message ----


def message_to_proto(message: Message) -> raft_pb2.Message:
    """Encode ``message`` whole, snapshot data included (peers chunk it: see below)."""
    snapshot = message.snapshot
    pb = raft_pb2.Message(
        type=_TYPE_TO_PB[message.type],
        to=message.to,
        from_=message.from_,
        term=message.term,
        log_term=message.log_term,
        index=message.index,
        commit=message.commit,
        reject=message.reject,
        reject_hint=message.reject_hint,
        snapshot=None if snapshot is None else snapshot_to_proto(snapshot),
        context=message.context,
        quiesce=message.quiesce,
    )
    # Appending in place is a third faster than building a list of Entry messages.
    add_entry = pb.entries.add
    for e in message.entries:
        add_entry(term=e.term, index=e.index, type=_ENTRY_TYPE_TO_PB[e.type], data=e.data)
    return pb


def message_from_proto(pb: raft_pb2.Message) -> Message:
    message_type = _TYPE_FROM_PB.get(pb.type)
    if message_type is None:
        raise CodecError(f"unknown message type {pb.type}")
    try:
        # Positional arguments halve the cost of a frozen dataclass per entry; the order is
        # Entry's (term, index, type, data), which the round-trip tests pin down.
        entries = tuple(
            Entry(e.term, e.index, _ENTRY_TYPE_FROM_PB[e.type], e.data) for e in pb.entries
        )
    except KeyError:
        raise CodecError("unknown entry type in message") from None
    return Message(
        type=message_type,
        to=NodeId(pb.to),
        from_=NodeId(pb.from_),
        term=pb.term,
        log_term=pb.log_term,
        index=pb.index,
        entries=entries,
        commit=pb.commit,
        reject=pb.reject,
        reject_hint=pb.reject_hint,
        snapshot=snapshot_from_proto(pb.snapshot) if pb.HasField("snapshot") else None,
        context=pb.context,
        quiesce=pb.quiesce,
    )


# ---- Peer stream batches ----


def batch_to_proto(
    *,
    cluster_id: str,
    from_node_id: int,
    to_node_id: int,
    batch_seq: int,
    messages: Iterable[tuple[int, Message]],
    snapshot_chunks: Iterable[peer_pb2.SnapshotChunk] = (),
) -> peer_pb2.RaftBatch:
    """One RaftBatch for the peer stream; ``messages`` are (shard id, message) pairs."""
    invariant(batch_seq > 0, "batch_seq starts at 1")
    return peer_pb2.RaftBatch(
        cluster_id=cluster_id,
        from_node_id=from_node_id,
        to_node_id=to_node_id,
        batch_seq=batch_seq,
        messages=[
            peer_pb2.ShardMessage(shard_id=shard_id, message=message_to_proto(message))
            for shard_id, message in messages
        ],
        snapshot_chunks=snapshot_chunks,
    )


def batch_from_proto(pb: peer_pb2.RaftBatch) -> list[tuple[int, Message]]:
    """The (shard id, message) pairs of a batch; its snapshot chunks go to an assembler."""
    return [(item.shard_id, message_from_proto(item.message)) for item in pb.messages]


# ---- Snapshot chunks ----


def snapshot_to_chunks(
    *, shard_id: int, message: Message, chunk_size_bytes: int
) -> Iterator[peer_pb2.SnapshotChunk]:
    """Split a SNAP message into chunks of at most ``chunk_size_bytes`` of payload.

    The last chunk carries the message with empty snapshot data, the payload's total size
    and its crc32. An empty payload is one (last) chunk. Chunks are made lazily, so the
    sender holds one at a time besides the payload itself.
    """
    snapshot = message.snapshot
    invariant(message.type is MessageType.SNAP, "only SNAP messages carry a snapshot")
    invariant(chunk_size_bytes > 0, "chunk_size_bytes must be positive")
    if snapshot is None:
        raise InvariantViolation("a SNAP message needs a snapshot")
    data = snapshot.data
    total = len(data)
    meta = snapshot.meta
    offset = 0
    crc32 = 0
    while True:
        end = min(offset + chunk_size_bytes, total)
        last = end == total
        part = data[offset:end]
        crc32 = zlib.crc32(part, crc32)  # incremental: no pass over the whole payload at once
        yield peer_pb2.SnapshotChunk(
            shard_id=shard_id,
            snapshot_index=meta.index,
            snapshot_term=meta.term,
            offset=offset,
            data=part,
            last=last,
            total_size_bytes=total,
            crc32=crc32 if last else 0,
            message=message_to_proto(replace(message, snapshot=Snapshot(meta=meta)))
            if last
            else None,
        )
        if last:
            return
        offset = end


@dataclass(slots=True)
class _Staged:
    snapshot_index: int
    snapshot_term: int
    total_size_bytes: int
    received_bytes: int
    crc32: int
    parts: list[bytes]


@final
class SnapshotAssembler:
    """Stages the chunks of at most one incoming snapshot per shard, in memory.

    Feed every received chunk to :meth:`accept`; send back the ack it returns, and step
    the (shard id, message) it returns, if any, into that shard's core. A payload larger
    than ``snapshot_size_bytes_max`` is refused at its first chunk, and every transfer
    reserves its announced size from ``budget`` (shared by all the streams of a node), so
    staging is bounded in total. A whole payload is passed to ``verify`` (shard id, SNAP
    message) and refused with its answer unless that is None: garbage behind a valid
    CRC-32 never reaches a core. Call :meth:`close` when the stream ends.
    """

    def __init__(
        self,
        *,
        snapshot_size_bytes_max: int,
        budget: StagingBudget | None = None,
        verify: Callable[[int, Message], str | None] = lambda shard_id, message: None,
    ) -> None:
        invariant(snapshot_size_bytes_max > 0, "snapshot_size_bytes_max must be positive")
        self._size_bytes_max = snapshot_size_bytes_max
        self._budget = budget or StagingBudget(total_bytes_max=snapshot_size_bytes_max)
        self._verify = verify
        self._staged: dict[int, _Staged] = {}

    @property
    def staged_bytes(self) -> int:
        return sum(s.received_bytes for s in self._staged.values())

    def abandon(self, shard_id: int) -> None:
        staged = self._staged.pop(shard_id, None)
        if staged is not None:
            self._budget.release(staged.total_size_bytes)

    def close(self) -> None:
        """Drop everything staged (the stream ended) and give its budget back."""
        for shard_id in list(self._staged):
            self.abandon(shard_id)

    def accept(
        self, chunk: peer_pb2.SnapshotChunk
    ) -> tuple[peer_pb2.SnapshotChunkAck, tuple[int, Message] | None]:
        shard_id = chunk.shard_id
        staged = self._staged.get(shard_id)
        if chunk.offset == 0:
            if chunk.total_size_bytes > self._size_bytes_max:
                why = f"{chunk.total_size_bytes} bytes is over {self._size_bytes_max}"
                return self._reject(chunk, f"snapshot of {why}"), None
            maybe(staged is not None)  # a new transfer replaces an abandoned one
            self.abandon(shard_id)
            if not self._budget.reserve(chunk.total_size_bytes):
                why = f"staging {chunk.total_size_bytes} bytes more is over the node's total"
                return self._reject(chunk, f"{why} of {self._budget.total_bytes_max}"), None
            staged = _Staged(
                snapshot_index=chunk.snapshot_index,
                snapshot_term=chunk.snapshot_term,
                total_size_bytes=chunk.total_size_bytes,
                received_bytes=0,
                crc32=0,
                parts=[],
            )
            self._staged[shard_id] = staged
        elif staged is None or not _continues(staged, chunk):
            return self._reject(chunk, "chunk does not continue the staged snapshot"), None
        if staged.received_bytes + len(chunk.data) > staged.total_size_bytes:
            return self._reject(chunk, "chunks exceed the announced size"), None
        staged.parts.append(chunk.data)
        staged.received_bytes += len(chunk.data)
        staged.crc32 = zlib.crc32(chunk.data, staged.crc32)
        if not chunk.last:
            return _ack(chunk, staged.received_bytes, peer_pb2.SNAPSHOT_CHUNK_STATUS_ACCEPTED), None
        self.abandon(shard_id)  # whole now: the budget is released, the parts are ours
        return self._complete(chunk, staged)

    def _complete(
        self, chunk: peer_pb2.SnapshotChunk, staged: _Staged
    ) -> tuple[peer_pb2.SnapshotChunkAck, tuple[int, Message] | None]:
        if staged.received_bytes != staged.total_size_bytes:
            return self._reject(chunk, "snapshot ended short of its announced size"), None
        if staged.crc32 != chunk.crc32:
            return self._reject(chunk, "snapshot crc32 mismatch"), None
        if not chunk.HasField("message") or chunk.message.type != _SNAP:
            return self._reject(chunk, "last chunk lacks its SNAP message"), None
        try:
            message = message_from_proto(chunk.message)
        except CodecError as error:
            return self._reject(chunk, f"bad SNAP message: {error}"), None
        snapshot = message.snapshot
        if snapshot is None or (snapshot.meta.index, snapshot.meta.term) != (
            staged.snapshot_index,
            staged.snapshot_term,
        ):
            return self._reject(chunk, "SNAP message does not match its chunks"), None
        data = b"".join(staged.parts)
        invariant(len(data) == staged.total_size_bytes, "staged parts add up to the size")
        message = replace(message, snapshot=Snapshot(meta=snapshot.meta, data=data))
        problem = self._verify(chunk.shard_id, message)
        if problem is not None:
            return self._reject(chunk, f"snapshot refused: {problem}"), None
        ack = _ack(chunk, staged.received_bytes, peer_pb2.SNAPSHOT_CHUNK_STATUS_COMPLETE)
        return ack, (chunk.shard_id, message)

    def _reject(self, chunk: peer_pb2.SnapshotChunk, why: str) -> peer_pb2.SnapshotChunkAck:
        self.abandon(chunk.shard_id)
        return rejected_ack(chunk, why)


def rejected_ack(chunk: peer_pb2.SnapshotChunk, why: str) -> peer_pb2.SnapshotChunkAck:
    """The REJECTED ack of ``chunk``: its sender aborts the transfer and tells its core."""
    ack = _ack(chunk, 0, peer_pb2.SNAPSHOT_CHUNK_STATUS_REJECTED)
    ack.message = why
    return ack


@final
class StagingBudget:
    """Bytes of snapshot payload staged at once by every stream of a node together.

    A transfer reserves its announced size at its first chunk and releases it when it
    completes, is rejected or abandoned: two streams that start snapshots and never finish
    them hold at most this much between them, not this much each.
    """

    def __init__(self, *, total_bytes_max: int) -> None:
        invariant(total_bytes_max > 0, "total_bytes_max must be positive")
        self.total_bytes_max = total_bytes_max
        self.reserved_bytes = 0

    def reserve(self, size_bytes: int) -> bool:
        if self.reserved_bytes + size_bytes > self.total_bytes_max:
            return False
        self.reserved_bytes += size_bytes
        return True

    def release(self, size_bytes: int) -> None:
        self.reserved_bytes -= size_bytes
        invariant(self.reserved_bytes >= 0, "released more staging than was reserved")


def _continues(staged: _Staged, chunk: peer_pb2.SnapshotChunk) -> bool:
    return (
        staged.snapshot_index == chunk.snapshot_index
        and staged.snapshot_term == chunk.snapshot_term
        and staged.total_size_bytes == chunk.total_size_bytes
        and staged.received_bytes == chunk.offset
    )


def _ack(
    chunk: peer_pb2.SnapshotChunk, next_offset: int, status: peer_pb2.SnapshotChunkStatus
) -> peer_pb2.SnapshotChunkAck:
    return peer_pb2.SnapshotChunkAck(
        shard_id=chunk.shard_id,
        snapshot_index=chunk.snapshot_index,
        snapshot_term=chunk.snapshot_term,
        next_offset=next_offset,
        status=status,
    )
