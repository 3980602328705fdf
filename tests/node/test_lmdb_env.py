"""LMDB storage beyond the contract: restarts, many shards, group commit, corruption."""

from __future__ import annotations

import lmdb
import pytest

from hongbao._invariant import InvariantViolation
from hongbao.node.storage import (
    CorruptRecord,
    Durability,
    LmdbLogStorage,
    NodeEnv,
    StorageFormatError,
    _codec,
)
from hongbao.raft.types import ConfState, Entry, HardState, NodeId, Snapshot, SnapshotMeta
from tests.node.conftest import Envs
from tests.raft.storage_contract import CONF, ents

SHARD_ID_MAX = (1 << 32) - 1


def fill(env: NodeEnv, shard_id: int, last: int, term: int = 1) -> LmdbLogStorage:
    storage = LmdbLogStorage(env, shard_id, conf_state=CONF)
    storage.append(ents(1, last, term, tag=b"s%d-" % shard_id))
    return storage


def everything(storage: LmdbLogStorage) -> list[object]:
    return list(
        storage.entries(lo=storage.first_index(), hi=storage.last_index() + 1, max_bytes=None)
    )


def raw_get(env: NodeEnv, db: str, key: bytes) -> bytes:
    with env.lmdb_env.begin() as txn:
        value = txn.get(key, db=env.db(db))
    assert value is not None
    return value


def raw_put(env: NodeEnv, db: str, key: bytes, value: bytes) -> None:
    with env.lmdb_env.begin(write=True) as txn:
        txn.put(key, value, db=env.db(db))


def flip_last_byte(record: bytes) -> bytes:
    return record[:-1] + bytes([record[-1] ^ 0x01])


# -- restart -------------------------------------------------------------------------------


def test_reopen_finds_everything(envs: Envs) -> None:
    env = envs.open(durability=Durability.FSYNC)
    logs = {shard: fill(env, shard, 10 + shard) for shard in range(4)}
    logs[1].set_hard_state(HardState(term=3, vote=NodeId(2), commit=9))
    logs[2].create_snapshot(index=8, conf_state=CONF, data=b"two@8")
    logs[2].compact(6)
    leader_snapshot = Snapshot(SnapshotMeta(index=40, term=5, conf_state=CONF), b"three@40")
    logs[3].apply_snapshot(leader_snapshot)
    logs[3].append(ents(41, 42, 5))
    before = {
        shard: (
            log.initial_state(),
            log.first_index(),
            log.last_index(),
            everything(log),
            log.snapshot(),
            log.term(log.first_index() - 1),
        )
        for shard, log in logs.items()
    }
    env = envs.reopen(env)
    for shard, expected in before.items():
        log = LmdbLogStorage(env, shard, conf_state=ConfState(voters=frozenset({NodeId(9)})))
        found = (
            log.initial_state(),
            log.first_index(),
            log.last_index(),
            everything(log),
            log.snapshot(),
            log.term(log.first_index() - 1),
        )
        assert found == expected, shard


def test_shards_at_the_edges_of_the_key_space_stay_apart(envs: Envs) -> None:
    env = envs.open()
    edges = (0, 1, SHARD_ID_MAX - 1, SHARD_ID_MAX)
    for offset, shard in enumerate(edges):
        fill(env, shard, 3 + offset)
    env = envs.reopen(env)
    logs = {shard: LmdbLogStorage(env, shard, conf_state=CONF) for shard in edges}
    for offset, shard in enumerate(edges):
        assert logs[shard].last_index() == 3 + offset
        assert everything(logs[shard]) == ents(1, 3 + offset, 1, tag=b"s%d-" % shard)
    # Replacing one shard's log removes nothing of its neighbours.
    logs[1].apply_snapshot(Snapshot(SnapshotMeta(index=2, term=1, conf_state=CONF)))
    logs[SHARD_ID_MAX].apply_snapshot(Snapshot(SnapshotMeta(index=9, term=2, conf_state=CONF)))
    assert everything(logs[0]) == ents(1, 3, 1, tag=b"s0-")
    assert everything(logs[SHARD_ID_MAX - 1]) == ents(1, 5, 1, tag=b"s%d-" % (SHARD_ID_MAX - 1))
    assert everything(logs[1]) == []


def test_one_storage_per_shard(envs: Envs) -> None:
    env = envs.open()
    LmdbLogStorage(env, 3, conf_state=CONF)
    with pytest.raises(InvariantViolation, match="already open"):
        LmdbLogStorage(env, 3, conf_state=CONF)


def test_a_newer_format_is_refused(envs: Envs) -> None:
    env = envs.open()
    raw_put(env, "meta", b"format", (99).to_bytes(4, "big"))
    env.close()
    with pytest.raises(StorageFormatError, match="storage format 99"):
        envs.open()


# -- group commit --------------------------------------------------------------------------


def test_group_commit_is_one_transaction_and_one_sync(envs: Envs) -> None:
    env = envs.open(durability=Durability.FSYNC)
    logs = [LmdbLogStorage(env, shard, conf_state=CONF) for shard in range(5)]
    txn_before = env.lmdb_env.info()["last_txnid"]
    stats_before = (env.stats.commits, env.stats.fsyncs)
    with env.write_batch() as batch:
        for shard, log in enumerate(logs):
            log.append(ents(1, 3 + shard, 2), txn=batch)
            log.set_hard_state(HardState(term=2, vote=NodeId(1), commit=shard), txn=batch)
            assert log.last_index() == 0  # readers see committed state only
        batch.request_sync()
    assert env.lmdb_env.info()["last_txnid"] == txn_before + 1
    assert (env.stats.commits, env.stats.fsyncs) == (stats_before[0] + 1, stats_before[1] + 1)
    env = envs.reopen(env)
    for shard in range(5):
        log = LmdbLogStorage(env, shard, conf_state=CONF)
        assert everything(log) == ents(1, 3 + shard, 2)
        assert log.initial_state()[0] == HardState(term=2, vote=NodeId(1), commit=shard)


def test_an_aborted_batch_leaves_no_trace(envs: Envs) -> None:
    env = envs.open()
    logs = [fill(env, shard, 4) for shard in range(3)]

    def write_then_fail() -> None:
        with env.write_batch(sync=True) as batch:
            logs[0].append(ents(5, 9, 2), txn=batch)
            logs[1].apply_snapshot(Snapshot(SnapshotMeta(20, 3, CONF), b"x"), txn=batch)
            logs[2].set_hard_state(HardState(term=8), txn=batch)
            raise RuntimeError("the runtime failed before the batch ended")

    with pytest.raises(RuntimeError, match="failed before"):
        write_then_fail()
    assert [log.last_index() for log in logs] == [4, 4, 4]
    assert logs[1].snapshot().meta.index == 0
    assert logs[2].initial_state()[0] == HardState()
    env = envs.reopen(env)
    for shard in range(3):
        assert LmdbLogStorage(env, shard, conf_state=CONF).last_index() == 4


def test_a_batch_reads_its_own_writes(envs: Envs) -> None:
    env = envs.open()
    log = LmdbLogStorage(env, 1, conf_state=CONF)
    with env.write_batch() as batch:
        log.append(ents(1, 6, 1), txn=batch)
        log.append(ents(4, 8, 2), txn=batch)  # overwrites the staged suffix
        snapshot = log.create_snapshot(index=5, conf_state=CONF, data=b"s", txn=batch)
        log.compact(5, txn=batch)
        log.set_hard_state(HardState(term=2, commit=5), txn=batch)
    assert snapshot.meta.term == 2
    assert (log.first_index(), log.last_index(), log.term(5)) == (6, 8, 2)
    assert everything(log) == ents(6, 8, 2)


def test_batches_do_not_nest(envs: Envs) -> None:
    env = envs.open()
    log = LmdbLogStorage(env, 1, conf_state=CONF)
    with env.write_batch() as batch:
        log.append(ents(1, 2, 1), txn=batch)
        with pytest.raises(InvariantViolation, match="already open"), env.write_batch():
            pass
        with pytest.raises(InvariantViolation, match="already open"):
            log.append(ents(3, 3, 1))  # a plain write opens its own batch
    assert log.last_index() == 2


def test_syncs_are_explicit(envs: Envs) -> None:
    env = envs.open(durability=Durability.FSYNC)
    log = LmdbLogStorage(env, 1, conf_state=CONF)
    fsyncs = env.stats.fsyncs
    with env.write_batch() as batch:
        log.append(ents(1, 1, 1), txn=batch)
    assert env.stats.fsyncs == fsyncs  # an unsynced batch: no explicit fsync
    with env.write_batch(sync=True) as batch:
        log.append(ents(2, 2, 1), txn=batch)
    assert env.stats.fsyncs == fsyncs + 1
    log.append(ents(3, 3, 1))  # plain writes are synced
    assert env.stats.fsyncs == fsyncs + 2
    unsynced = envs.open("nosync", durability=Durability.NO_FSYNC)
    with unsynced.write_batch(sync=True):
        pass
    assert unsynced.stats.fsyncs == 0


def test_a_full_map_aborts_the_batch_cleanly(envs: Envs) -> None:
    env = envs.open(map_size_bytes=1 << 20)
    log = LmdbLogStorage(env, 1, conf_state=CONF)
    big = b"x" * 100_000
    index = 0
    with pytest.raises(lmdb.MapFullError):  # noqa: PT012 (the loop runs until the map is full)
        for index in range(1, 100):
            log.append([Entry(term=1, index=index, data=big)])
    assert log.last_index() == index - 1
    assert len(everything(log)) == index - 1
    log.set_hard_state(HardState(term=1, commit=1))  # the env still works after the failure
    log = LmdbLogStorage(envs.reopen(env), 1, conf_state=CONF)
    assert (log.last_index(), log.initial_state()[0].commit) == (index - 1, 1)


def test_writes_after_close_are_refused(envs: Envs) -> None:
    env = envs.open()
    log = LmdbLogStorage(env, 1, conf_state=CONF)
    env.close()
    with pytest.raises(InvariantViolation, match="closed"):
        log.append(ents(1, 1, 1))


# -- corruption ----------------------------------------------------------------------------


def test_a_corrupt_entry_is_detected(envs: Envs) -> None:
    env = envs.open()
    log = fill(env, 7, 5)
    key = _codec.log_key(7, 3)
    raw_put(env, "raft_log", key, flip_last_byte(raw_get(env, "raft_log", key)))
    with pytest.raises(CorruptRecord, match=r"raft_log shard 7 index 3: crc32 mismatch"):
        log.entries(lo=1, hi=6, max_bytes=None)
    with pytest.raises(CorruptRecord, match="index 3"):
        log.term(3)
    assert log.entries(lo=1, hi=3, max_bytes=None) == ents(1, 2, 1, tag=b"s7-")


def test_a_record_under_the_wrong_key_is_detected(envs: Envs) -> None:
    env = envs.open()
    log = fill(env, 7, 5)
    moved = raw_get(env, "raft_log", _codec.log_key(7, 2))
    raw_put(env, "raft_log", _codec.log_key(7, 4), moved)  # a valid record, wrong place
    with pytest.raises(CorruptRecord, match="index 4: crc32 mismatch"):
        log.term(4)


def test_corruption_is_found_when_reopening(envs: Envs) -> None:
    env = envs.open()
    fill(env, 1, 5)
    fill(env, 2, 5).set_hard_state(HardState(term=4))
    last = _codec.log_key(1, 5)
    raw_put(env, "raft_log", last, flip_last_byte(raw_get(env, "raft_log", last)))
    state = _codec.state_key(2, _codec.HARD_STATE)
    raw_put(env, "raft_state", state, flip_last_byte(raw_get(env, "raft_state", state)))
    env = envs.reopen(env)
    with pytest.raises(CorruptRecord, match="raft_log shard 1 index 5"):
        LmdbLogStorage(env, 1, conf_state=CONF)
    with pytest.raises(CorruptRecord, match="raft_state hard state"):
        LmdbLogStorage(env, 2, conf_state=CONF)
    with pytest.raises(CorruptRecord):  # a failed open does not leave the shard claimed
        LmdbLogStorage(env, 2, conf_state=CONF)


def test_a_corrupt_snapshot_chunk_is_detected(envs: Envs) -> None:
    env = envs.open()
    log = fill(env, 3, 5)
    log.create_snapshot(index=5, conf_state=CONF, data=b"z" * (3 << 20))
    key = _codec.chunk_key(3, 1)
    raw_put(env, "snapshots", key, flip_last_byte(raw_get(env, "snapshots", key)))
    with pytest.raises(CorruptRecord, match="snapshots shard 3 chunk 1: crc32 mismatch"):
        log.snapshot()


def test_a_missing_entry_is_detected(envs: Envs) -> None:
    env = envs.open()
    log = fill(env, 3, 5)
    with env.lmdb_env.begin(write=True) as txn:
        txn.delete(_codec.log_key(3, 3), db=env.db("raft_log"))
    with pytest.raises(CorruptRecord, match="index 3 missing"):
        log.entries(lo=2, hi=5, max_bytes=None)
