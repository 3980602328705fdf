"""The wire codec: every Raft datum survives protobuf unchanged, and bad input is refused."""

from __future__ import annotations

import zlib
from dataclasses import replace

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hongbao.node import codec
from hongbao.node.codec import CodecError, SnapshotAssembler
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

U64_MAX = 2**64 - 1
u64 = st.integers(min_value=0, max_value=U64_MAX)
node_ids = st.one_of(st.integers(0, 9), u64).map(NodeId)
member_ids = st.integers(1, U64_MAX).map(NodeId)

entries = st.builds(
    Entry,
    term=u64,
    index=u64,
    type=st.sampled_from(EntryType),
    data=st.binary(max_size=64),
)


@st.composite
def conf_states(draw: st.DrawFn) -> ConfState:
    voters = draw(st.frozensets(member_ids, max_size=5))
    learners = draw(st.frozensets(member_ids, max_size=3).map(lambda s: s - voters))
    return ConfState(voters=voters, learners=learners)


snapshots = st.builds(
    Snapshot,
    meta=st.builds(SnapshotMeta, index=u64, term=u64, conf_state=conf_states()),
    data=st.binary(max_size=256),
)

messages = st.builds(
    Message,
    type=st.sampled_from(MessageType),
    to=node_ids,
    from_=node_ids,
    term=u64,
    log_term=u64,
    index=u64,
    entries=st.lists(entries, max_size=6).map(tuple),
    commit=u64,
    reject=st.booleans(),
    reject_hint=u64,
    snapshot=st.none() | snapshots,
    context=st.binary(max_size=32),
)


def _snap_message(data: bytes, *, index: int = 7, term: int = 3) -> Message:
    conf = ConfState(voters=frozenset({NodeId(1), NodeId(2), NodeId(3)}))
    meta = SnapshotMeta(index=index, term=term, conf_state=conf)
    return Message(
        type=MessageType.SNAP,
        to=NodeId(2),
        from_=NodeId(1),
        term=term,
        snapshot=Snapshot(meta=meta, data=data),
    )


# ---- Round trips ----


@given(messages)
def test_message_round_trips_through_proto_and_bytes(message: Message) -> None:
    pb = codec.message_to_proto(message)
    assert codec.message_from_proto(pb) == message
    wire = raft_pb2.Message.FromString(pb.SerializeToString())
    assert codec.message_from_proto(wire) == message


@given(entries)
def test_entry_round_trips(entry: Entry) -> None:
    assert codec.entry_from_proto(codec.entry_to_proto(entry)) == entry
    wire = raft_pb2.Entry.FromString(codec.entry_to_proto(entry).SerializeToString())
    assert codec.entry_from_proto(wire) == entry


@given(st.builds(HardState, term=u64, vote=node_ids, commit=u64))
def test_hard_state_round_trips(hard_state: HardState) -> None:
    assert codec.hard_state_from_proto(codec.hard_state_to_proto(hard_state)) == hard_state


@given(snapshots)
def test_snapshot_round_trips(snapshot: Snapshot) -> None:
    assert codec.snapshot_from_proto(codec.snapshot_to_proto(snapshot)) == snapshot


@given(conf_states())
def test_conf_state_encoding_is_canonical(conf_state: ConfState) -> None:
    # Equal sets built in another order must give equal bytes (snapshots are compared).
    rebuilt = ConfState(
        voters=frozenset(sorted(conf_state.voters, reverse=True)),
        learners=frozenset(sorted(conf_state.learners, reverse=True)),
    )
    first = codec.conf_state_to_proto(conf_state).SerializeToString()
    assert first == codec.conf_state_to_proto(rebuilt).SerializeToString()
    assert codec.conf_state_from_proto(codec.conf_state_to_proto(conf_state)) == conf_state


@pytest.mark.parametrize("message_type", list(MessageType))
def test_every_message_type_has_its_own_wire_value(message_type: MessageType) -> None:
    pb = codec.message_to_proto(Message(type=message_type))
    assert raft_pb2.MessageType.Name(pb.type) == "MESSAGE_TYPE_" + message_type.name
    assert codec.message_from_proto(pb).type is message_type


def test_snapshot_presence_survives_an_empty_snapshot() -> None:
    empty = Snapshot(meta=SnapshotMeta(index=0, term=0, conf_state=ConfState(voters=frozenset())))
    message = Message(type=MessageType.SNAP, snapshot=empty)
    assert codec.message_from_proto(codec.message_to_proto(message)).snapshot == empty
    assert (
        codec.message_from_proto(codec.message_to_proto(Message(type=MessageType.APP))).snapshot
        is None
    )


@given(st.lists(st.tuples(st.integers(0, 2**32 - 1), messages), max_size=5))
def test_batch_round_trips(items: list[tuple[int, Message]]) -> None:
    pb = codec.batch_to_proto(
        cluster_id="c1", from_node_id=1, to_node_id=2, batch_seq=9, messages=items
    )
    wire = peer_pb2.RaftBatch.FromString(pb.SerializeToString())
    assert (wire.cluster_id, wire.from_node_id, wire.to_node_id, wire.batch_seq) == ("c1", 1, 2, 9)
    assert codec.batch_from_proto(wire) == items


# ---- Refusals ----


def test_unknown_message_type_is_refused() -> None:
    pb = codec.message_to_proto(Message(type=MessageType.APP))
    pb.type = 99  # type: ignore[assignment]  # proto3 enums are open: a newer peer may send it
    with pytest.raises(CodecError, match="unknown message type 99"):
        codec.message_from_proto(pb)
    pb.type = raft_pb2.MESSAGE_TYPE_UNSPECIFIED
    with pytest.raises(CodecError):
        codec.message_from_proto(pb)


@pytest.mark.parametrize("bad_type", [2, -1, 77])
def test_unknown_entry_type_is_refused(bad_type: int) -> None:
    pb = raft_pb2.Entry(term=1, index=1, type=bad_type)  # type: ignore[arg-type]
    with pytest.raises(CodecError):
        codec.entry_from_proto(pb)
    message = raft_pb2.Message(type=raft_pb2.MESSAGE_TYPE_APP, entries=[pb])
    with pytest.raises(CodecError):
        codec.message_from_proto(message)


@pytest.mark.parametrize(
    ("voters", "learners"),
    [([1, 2], [2]), ([0, 1], []), ([1], [0])],
    ids=["voter-and-learner", "voter-zero", "learner-zero"],
)
def test_invalid_membership_is_refused(voters: list[int], learners: list[int]) -> None:
    pb = raft_pb2.ConfState(voters=voters, learners=learners)
    with pytest.raises(CodecError, match="invalid conf state"):
        codec.conf_state_from_proto(pb)


# ---- Snapshot chunks ----


@given(data=st.binary(max_size=2000), chunk_size_bytes=st.integers(1, 700))
def test_snapshot_chunks_reassemble_to_the_same_message(data: bytes, chunk_size_bytes: int) -> None:
    message = _snap_message(data)
    chunks = list(
        codec.snapshot_to_chunks(shard_id=4, message=message, chunk_size_bytes=chunk_size_bytes)
    )
    assert len(chunks) == max(1, -(-len(data) // chunk_size_bytes))
    assert all(len(c.data) <= chunk_size_bytes for c in chunks)
    assert [c.last for c in chunks] == [False] * (len(chunks) - 1) + [True]
    assert [c.HasField("message") for c in chunks] == [c.last for c in chunks]
    assert chunks[-1].message.snapshot.data == b""  # the payload travels only in chunks

    assembler = SnapshotAssembler(snapshot_size_bytes_max=4096)
    for chunk in chunks[:-1]:
        ack, done = assembler.accept(peer_pb2.SnapshotChunk.FromString(chunk.SerializeToString()))
        assert ack.status == peer_pb2.SNAPSHOT_CHUNK_STATUS_ACCEPTED
        assert ack.next_offset == chunk.offset + len(chunk.data)
        assert done is None
    ack, done = assembler.accept(chunks[-1])
    assert ack.status == peer_pb2.SNAPSHOT_CHUNK_STATUS_COMPLETE
    assert done == (4, message)
    assert assembler.staged_bytes == 0


def _chunks(message: Message, shard_id: int = 1) -> list[peer_pb2.SnapshotChunk]:
    return list(codec.snapshot_to_chunks(shard_id=shard_id, message=message, chunk_size_bytes=4))


def test_assembler_refuses_a_snapshot_over_its_limit() -> None:
    assembler = SnapshotAssembler(snapshot_size_bytes_max=10)
    ack, done = assembler.accept(_chunks(_snap_message(b"x" * 11))[0])
    assert ack.status == peer_pb2.SNAPSHOT_CHUNK_STATUS_REJECTED
    assert "over" in ack.message
    assert done is None


def test_assembler_refuses_a_gap_and_forgets_the_transfer() -> None:
    chunks = _chunks(_snap_message(b"abcdefghijkl"))
    assembler = SnapshotAssembler(snapshot_size_bytes_max=100)
    assembler.accept(chunks[0])
    ack, _ = assembler.accept(chunks[2])
    assert ack.status == peer_pb2.SNAPSHOT_CHUNK_STATUS_REJECTED
    ack, _ = assembler.accept(chunks[1])  # the transfer is gone: only offset 0 restarts it
    assert ack.status == peer_pb2.SNAPSHOT_CHUNK_STATUS_REJECTED
    assert assembler.staged_bytes == 0


def test_assembler_refuses_a_corrupt_payload() -> None:
    chunks = _chunks(_snap_message(b"abcdefgh"))
    chunks[0].data = b"abcX"
    assembler = SnapshotAssembler(snapshot_size_bytes_max=100)
    assembler.accept(chunks[0])
    ack, done = assembler.accept(chunks[1])
    assert ack.status == peer_pb2.SNAPSHOT_CHUNK_STATUS_REJECTED
    assert "crc32" in ack.message
    assert done is None


def test_assembler_refuses_a_last_chunk_whose_message_does_not_match() -> None:
    chunks = _chunks(_snap_message(b"abcd", index=7))
    chunks[-1].message.snapshot.meta.index = 8
    ack, done = SnapshotAssembler(snapshot_size_bytes_max=100).accept(chunks[-1])
    assert ack.status == peer_pb2.SNAPSHOT_CHUNK_STATUS_REJECTED
    assert done is None


def test_assembler_restarts_on_a_new_snapshot_and_keeps_shards_apart() -> None:
    old = _chunks(_snap_message(b"old-old-old", index=5), shard_id=1)
    new_message = _snap_message(b"newer", index=9)
    other_message = _snap_message(b"other shard", index=2)
    assembler = SnapshotAssembler(snapshot_size_bytes_max=100)
    assembler.accept(old[0])
    other = _chunks(other_message, shard_id=2)
    assembler.accept(other[0])

    results = [assembler.accept(chunk)[1] for chunk in _chunks(new_message, shard_id=1)]
    assert results[-1] == (1, new_message)
    results = [assembler.accept(chunk)[1] for chunk in other[1:]]
    assert results[-1] == (2, other_message)


def test_abandon_drops_the_staged_chunks() -> None:
    chunks = _chunks(_snap_message(b"abcdefgh"))
    assembler = SnapshotAssembler(snapshot_size_bytes_max=100)
    assembler.accept(chunks[0])
    assert assembler.staged_bytes == 4
    assembler.abandon(1)
    assert assembler.staged_bytes == 0
    ack, _ = assembler.accept(chunks[1])
    assert ack.status == peer_pb2.SNAPSHOT_CHUNK_STATUS_REJECTED


def test_last_chunk_carries_size_and_checksum() -> None:
    data = bytes(range(10))
    chunks = _chunks(_snap_message(data))
    assert {c.total_size_bytes for c in chunks} == {10}
    assert chunks[-1].crc32 == zlib.crc32(data)
    assert [c.offset for c in chunks] == [0, 4, 8]


def test_only_snap_messages_are_chunked() -> None:
    with pytest.raises(AssertionError):
        next(
            codec.snapshot_to_chunks(
                shard_id=1, message=Message(type=MessageType.APP), chunk_size_bytes=4
            )
        )
    with pytest.raises(AssertionError):
        next(
            codec.snapshot_to_chunks(
                shard_id=1, message=replace(_snap_message(b""), snapshot=None), chunk_size_bytes=4
            )
        )


def test_staging_is_bounded_in_total_across_streams() -> None:
    """Two streams that start a snapshot and never finish hold one budget, not one each."""
    budget = codec.StagingBudget(total_bytes_max=20)
    first = SnapshotAssembler(snapshot_size_bytes_max=16, budget=budget)
    second = SnapshotAssembler(snapshot_size_bytes_max=16, budget=budget)
    ack, _ = first.accept(_chunks(_snap_message(b"a" * 16))[0])
    assert ack.status == peer_pb2.SNAPSHOT_CHUNK_STATUS_ACCEPTED
    ack, _ = second.accept(_chunks(_snap_message(b"b" * 16))[0])
    assert ack.status == peer_pb2.SNAPSHOT_CHUNK_STATUS_REJECTED
    assert "total" in ack.message
    first.close()  # the first stream ended: its reservation is released
    assert budget.reserved_bytes == 0
    ack, _ = second.accept(_chunks(_snap_message(b"b" * 16))[0])
    assert ack.status == peer_pb2.SNAPSHOT_CHUNK_STATUS_ACCEPTED


def test_a_completed_transfer_releases_its_budget() -> None:
    budget = codec.StagingBudget(total_bytes_max=8)
    assembler = SnapshotAssembler(snapshot_size_bytes_max=8, budget=budget)
    results = [assembler.accept(chunk) for chunk in _chunks(_snap_message(b"abcdefgh"))]
    assert results[-1][0].status == peer_pb2.SNAPSHOT_CHUNK_STATUS_COMPLETE
    assert budget.reserved_bytes == 0


def test_a_whole_payload_the_verifier_refuses_never_leaves_the_assembler() -> None:
    """Garbage behind a valid size and CRC-32 is refused at the last chunk."""
    seen: list[tuple[int, bytes]] = []

    def verify(shard_id: int, message: Message) -> str | None:
        assert message.snapshot is not None
        seen.append((shard_id, message.snapshot.data))
        return "not a ledger snapshot"

    assembler = SnapshotAssembler(snapshot_size_bytes_max=100, verify=verify)
    results = [assembler.accept(chunk) for chunk in _chunks(_snap_message(b"garbage!"))]
    ack, done = results[-1]
    assert ack.status == peer_pb2.SNAPSHOT_CHUNK_STATUS_REJECTED
    assert "not a ledger snapshot" in ack.message
    assert done is None
    assert seen == [(1, b"garbage!")]
