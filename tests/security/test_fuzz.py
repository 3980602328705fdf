"""Fuzzing the node's hostile-input paths (issue 12 item 6): no crash, no stop, no state
change on a refusal, and no money from nothing.

Random bytes, structured messages and mutations of valid ones go through the functions the
node itself runs (see fuzz_targets.py). ``make test`` runs a quick profile
(FUZZ_EXAMPLES, default 60 examples per target, each a sequence of inputs); ``make fuzz``
runs a long one and prints the figures (inputs tried, crashes, stops, state changes on
refusal) in the pytest summary.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hongbao.node.peer_guard import INDEX_MAX, TERM_MAX
from hongbao.proto.gen.hongbao.v1 import peer_pb2, raft_pb2
from tests.ledger.helpers import Cluster
from tests.security import fuzz_targets as targets

EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "60"))
FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


@contextlib.contextmanager
def quiet() -> Iterator[None]:
    """Refusals are the expected outcome here: keep their warnings out of the output."""
    logger = logging.getLogger("hongbao.node")
    level = logger.level
    logger.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        logger.setLevel(level)


edges = st.sampled_from([0, 1, 2, 3, 7, TERM_MAX - 1, TERM_MAX, INDEX_MAX + 1, 2**63, 2**64 - 1])
small = st.one_of(st.integers(0, 12), edges)
node_ids = st.sampled_from([0, 1, 2, 3, 4, 99, 2**32, 2**64 - 1])
message_types = st.sampled_from(list(raft_pb2.MessageType.values()))


@st.composite
def raft_messages(draw: st.DrawFn) -> raft_pb2.Message:
    index = draw(small)
    entries = [
        raft_pb2.Entry(
            term=draw(small),
            index=draw(st.one_of(st.just(min(index + 1 + n, 2**64 - 1)), small)),
            type=draw(st.sampled_from([0, 1, 7])),  # type: ignore[arg-type]
            data=draw(st.one_of(st.just(targets.valid_batch_bytes()), st.binary(max_size=40))),
        )
        for n in range(draw(st.integers(0, 3)))
    ]
    pb = raft_pb2.Message(
        type=draw(message_types),  # type: ignore[arg-type]
        to=draw(node_ids),
        term=draw(small),
        log_term=draw(small),
        index=index,
        commit=draw(small),
        reject=draw(st.booleans()),
        reject_hint=draw(small),
        entries=entries,
        context=draw(st.binary(max_size=300)),
    )
    setattr(pb, "from_", draw(node_ids))  # noqa: B010
    if draw(st.booleans()):
        conf = raft_pb2.ConfState(voters=draw(st.lists(node_ids, max_size=4)))
        meta = raft_pb2.SnapshotMeta(index=draw(small), term=draw(small), conf_state=conf)
        pb.snapshot.CopyFrom(raft_pb2.Snapshot(meta=meta, data=draw(st.binary(max_size=64))))
    return pb


@st.composite
def raft_batches(draw: st.DrawFn) -> bytes:
    sender = draw(st.sampled_from([2, 3, 2, 3, 1, 99]))
    messages = [
        peer_pb2.ShardMessage(shard_id=draw(st.sampled_from([0, 0, 0, 1, 2**31])), message=m)
        for m in draw(st.lists(raft_messages(), max_size=4))
    ]
    chunks = []
    for _ in range(draw(st.integers(0, 2))):
        data = draw(st.binary(max_size=64))
        chunks.append(
            peer_pb2.SnapshotChunk(
                shard_id=draw(st.sampled_from([0, 1])),
                snapshot_index=draw(small),
                snapshot_term=draw(small),
                offset=draw(st.sampled_from([0, 0, 8, 2**40])),
                data=data,
                last=draw(st.booleans()),
                total_size_bytes=draw(st.sampled_from([len(data), 0, 2**20, 2**62])),
                crc32=draw(st.integers(0, 2**32 - 1)),
                message=draw(raft_messages()),
            )
        )
    batch = peer_pb2.RaftBatch(
        cluster_id=draw(st.sampled_from([targets.CLUSTER_ID, targets.CLUSTER_ID, "other"])),
        from_node_id=sender,
        to_node_id=draw(st.sampled_from([1, 1, 1, 2])),
        batch_seq=draw(st.integers(1, 5)),
        messages=messages,
        snapshot_chunks=chunks,
    )
    return batch.SerializeToString()


@st.composite
def mutated(draw: st.DrawFn, seed: st.SearchStrategy[bytes]) -> bytes:
    """``seed`` bytes with a few flips, insertions and deletions."""
    data = bytearray(draw(seed))
    for _ in range(draw(st.integers(1, 4))):
        if not data:
            data.extend(draw(st.binary(min_size=1, max_size=4)))
            continue
        at = draw(st.integers(0, len(data) - 1))
        action = draw(st.sampled_from(["flip", "insert", "delete"]))
        if action == "flip":
            data[at] ^= 1 << draw(st.integers(0, 7))
        elif action == "insert":
            data[at:at] = draw(st.binary(min_size=1, max_size=4))
        else:
            del data[at]
    return bytes(data)


BAD = ("crashes", "stops", "state_changes_on_refusal", "staging_leaks", "money_from_nothing")


@contextlib.contextmanager
def nothing_bad() -> Iterator[None]:
    """Fails the example if it added to any of the counts that must stay 0."""
    before = {name: targets.TALLY[name] for name in BAD}
    with quiet():
        yield
    added = {name: targets.TALLY[name] - before[name] for name in BAD}
    assert not any(added.values()), (added, targets.TALLY)


def inputs(structured: st.SearchStrategy[bytes]) -> st.SearchStrategy[bytes]:
    return st.one_of(structured, mutated(structured), st.binary(max_size=200))


@FUZZ
@given(st.lists(inputs(raft_batches()), min_size=1, max_size=6), st.integers(0, 2**16))
def test_peer_batches(batches: list[bytes], seed: int) -> None:
    node = targets.PeerNode(seed)
    with nothing_bad():
        for data in batches:
            targets.feed_peer_batch(node, data)


@st.composite
def deliver_requests(draw: st.DrawFn, real: list[bytes]) -> bytes:
    commands = draw(
        st.lists(
            st.one_of(
                st.sampled_from(real), mutated(st.sampled_from(real)), st.binary(max_size=60)
            ),
            max_size=4,
        )
    )
    request = peer_pb2.DeliverRequest(
        cluster_id="fuzz",
        from_node_id=draw(st.sampled_from([2, 2, 1, 3, 99])),
        source_shard=draw(st.sampled_from([1, 1, 0, 5])),
        destination_shard=draw(st.sampled_from([0, 0, 1, 7])),
        commands=commands,
    )
    return request.SerializeToString()


_, REAL_DELIVERIES = targets.deliver_world()


@FUZZ
@given(st.lists(inputs(deliver_requests(REAL_DELIVERIES)), min_size=1, max_size=5))
def test_peer_deliveries(requests: list[bytes]) -> None:
    cluster, _ = targets.deliver_world()
    with nothing_bad():
        for data in requests:
            targets.feed_deliver(cluster, data)


@FUZZ
@given(
    st.lists(
        st.tuples(st.integers(0, 4), st.binary(max_size=120)),
        min_size=1,
        max_size=6,
    ),
    st.lists(inputs(st.just(targets.valid_batch_bytes())), max_size=4),
)
def test_ledger_requests_and_entries(
    requests: list[tuple[int, bytes]], entries: list[bytes]
) -> None:
    cluster = Cluster(shard_count=2)
    with nothing_bad():
        for kind, data in requests:
            targets.feed_ledger_request(cluster, kind, data)
        for data in entries:
            targets.feed_ledger_commands(cluster, data)
