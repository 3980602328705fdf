"""Random operation sequences: LmdbLogStorage must stay equal to MemoryStorage throughout.

Operations are drawn valid for the current state (the contract suite covers the refusals);
some are grouped into one write batch, and the env is sometimes reopened in between.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from hongbao.node.storage import Durability, LmdbLogStorage, NodeEnv, WriteBatch
from hongbao.raft.storage import MemoryStorage
from hongbao.raft.types import Entry, HardState, NodeId, Snapshot, SnapshotMeta
from tests.raft.storage_contract import CONF, CONF_2

SHARD = 3
STEPS_MAX = 40


def assert_same(lmdb_log: LmdbLogStorage, model: MemoryStorage) -> None:
    assert lmdb_log.initial_state() == model.initial_state()
    first, last = model.first_index(), model.last_index()
    assert (lmdb_log.first_index(), lmdb_log.last_index()) == (first, last)
    assert lmdb_log.snapshot() == model.snapshot()
    for index in range(first - 1, last + 1):
        assert lmdb_log.term(index) == model.term(index)
    for max_bytes in (None, 0, 60):
        got = lmdb_log.entries(lo=first, hi=last + 1, max_bytes=max_bytes)
        assert got == model.entries(lo=first, hi=last + 1, max_bytes=max_bytes)


def step(
    data: st.DataObject, log: LmdbLogStorage, model: MemoryStorage, batch: WriteBatch | None
) -> None:
    """One random valid write, applied to both (the LMDB one maybe inside ``batch``)."""
    # Inside a batch the LMDB storage's public reads lag; the model is the staged view.
    first, last = model.first_index(), model.last_index()
    snap_index = model.snapshot().meta.index
    kinds = ["append", "append", "hard_state", "apply_snapshot"]
    if last > snap_index:
        kinds.append("create_snapshot")
    if snap_index >= first:
        kinds.append("compact")
    kind = data.draw(st.sampled_from(kinds))
    if kind == "append":
        start = data.draw(st.integers(max(1, first - 2), last + 1))
        count = data.draw(st.integers(0, 4))
        if max(start, first) <= snap_index:
            # Raft never truncates at or below its snapshot (snapshots hold only committed
            # entries); keep only what lies entirely below the first index (a no-op).
            count = max(0, min(count, first - start))
        term = data.draw(st.integers(1, 5))
        entries = [
            Entry(term=term, index=i, data=b"%d:%d" % (term, i))
            for i in range(start, start + count)
        ]
        log.append(entries, txn=batch)
        model.append(entries)
    elif kind == "hard_state":
        current = model.initial_state()[0]
        hard_state = HardState(
            term=current.term + data.draw(st.integers(0, 2)),
            vote=NodeId(data.draw(st.integers(0, 3))),
            commit=data.draw(st.integers(0, max(last, 0))),
        )
        log.set_hard_state(hard_state, txn=batch)
        model.set_hard_state(hard_state)
    elif kind == "create_snapshot":
        index = data.draw(st.integers(snap_index + 1, last))
        conf = data.draw(st.sampled_from([CONF, CONF_2]))
        made = log.create_snapshot(index=index, conf_state=conf, data=b"s%d" % index, txn=batch)
        assert made == model.create_snapshot(index=index, conf_state=conf, data=b"s%d" % index)
    elif kind == "compact":
        index = data.draw(st.integers(first - 1, snap_index))
        log.compact(index, txn=batch)
        model.compact(index)
    else:
        index = data.draw(st.integers(snap_index, last + 5))
        meta = SnapshotMeta(index=index, term=data.draw(st.integers(1, 6)), conf_state=CONF_2)
        snapshot = Snapshot(meta, b"leader %d" % index)
        log.apply_snapshot(snapshot, txn=batch)
        model.apply_snapshot(snapshot)


@settings(max_examples=80, deadline=None)
@given(st.data())
def test_lmdb_matches_memory_storage(data: st.DataObject) -> None:
    model = MemoryStorage(CONF)
    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory)
        env = NodeEnv(path, durability=Durability.NO_FSYNC, map_size_bytes=1 << 26)
        try:
            log = LmdbLogStorage(env, SHARD, conf_state=CONF)
            for _ in range(data.draw(st.integers(1, STEPS_MAX))):
                mode = data.draw(st.sampled_from(["plain", "batch", "reopen"]))
                if mode == "reopen":
                    env.close()
                    env = NodeEnv(path, durability=Durability.NO_FSYNC, map_size_bytes=1 << 26)
                    log = LmdbLogStorage(env, SHARD, conf_state=CONF_2)
                elif mode == "batch":
                    with env.write_batch() as batch:
                        for _ in range(data.draw(st.integers(1, 4))):
                            step(data, log, model, batch)
                else:
                    step(data, log, model, None)
                assert_same(log, model)
        finally:
            env.close()
