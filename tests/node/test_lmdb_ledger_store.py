"""LmdbLedgerStore: the ledger's tables on LMDB, checked against the in-memory twin."""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hongbao._invariant import InvariantViolation
from hongbao.ledger import machine
from hongbao.ledger.store import LedgerStore, MemoryStore, Table, iterate
from hongbao.node.storage import (
    CorruptRecord,
    Durability,
    LmdbLogStorage,
    NodeEnv,
    WriteBatch,
    _codec,
)
from hongbao.raft.types import HardState
from tests.ledger.store_contract import CHECKS, _keys_are_bounded_bytes
from tests.node.conftest import Envs
from tests.raft.storage_contract import CONF, ents

SHARDS = (0, 1, 2)
# Few distinct bytes, including the extremes, so prefixes and neighbours collide often.
keys = st.lists(st.sampled_from([0, 1, 0x7F, 0xFF]), min_size=1, max_size=4).map(bytes)
tables = st.sampled_from([Table.ACCOUNTS, Table.OUTBOX, Table.META])
operations = st.lists(
    st.one_of(
        st.tuples(st.just("put"), st.sampled_from(SHARDS), tables, keys, st.binary(max_size=8)),
        st.tuples(st.just("delete"), st.sampled_from(SHARDS), tables, keys, st.just(b"")),
        st.tuples(st.just("commit"), st.just(0), tables, keys, st.just(b"")),
    ),
    max_size=60,
)


def same_rows(left: LedgerStore, right: LedgerStore, table: Table, prefix: bytes) -> None:
    for start in (b"", prefix, prefix + b"\x01"):
        for limit in (1, 2, 100):
            got = left.scan(table, prefix=prefix, start=start, limit=limit)
            assert got == right.scan(table, prefix=prefix, start=start, limit=limit)


@settings(max_examples=60, deadline=None)
@given(operations, keys)
def test_matches_the_memory_store(
    ops: list[tuple[str, int, Table, bytes, bytes]], probe: bytes
) -> None:
    models = {shard: MemoryStore() for shard in SHARDS}
    with tempfile.TemporaryDirectory() as directory:
        env = NodeEnv(Path(directory), durability=Durability.NO_FSYNC, map_size_bytes=1 << 26)
        try:
            position = 0
            while position < len(ops):
                with env.write_batch() as batch:  # several transactions per example
                    for kind, shard, table, key, value in ops[position:]:
                        position += 1
                        if kind == "commit":
                            break
                        store = batch.ledger_store(shard)
                        assert isinstance(store, LedgerStore)
                        if kind == "put":
                            store.put(table, key, value)
                            models[shard].put(table, key, value)
                        else:
                            store.delete(table, key)
                            models[shard].delete(table, key)
                        assert store.get(table, key) == models[shard].get(table, key)
            for shard in SHARDS:
                with env.ledger_reader(shard) as reader:
                    for table in (Table.ACCOUNTS, Table.OUTBOX, Table.META):
                        assert list(iterate(reader, table, page_size=2)) == list(
                            iterate(models[shard], table)
                        )
                        same_rows(reader, models[shard], table, probe[:1])
                        assert reader.get(table, probe) == models[shard].get(table, probe)
        finally:
            env.close()


NEIGHBOUR_KEYS = (b"\x00", b"a", b"b", b"b\x00", b"\xff\xff", b"k" * 100)


def fill_neighbours(batch: WriteBatch, shard_id: int) -> None:
    """Rows in every table of the shards around ``shard_id``: a leak would show in scans."""
    for neighbour in (shard_id - 1, shard_id + 1):
        store = batch.ledger_store(neighbour)
        for table in Table:
            for key in NEIGHBOUR_KEYS:
                store.put(table, key, b"neighbour")


@pytest.mark.parametrize("check", [c for c in CHECKS if c is not _keys_are_bounded_bytes])
def test_meets_the_ledger_store_contract(envs: Envs, check: Callable[[LedgerStore], None]) -> None:
    env = envs.open()
    with env.write_batch() as batch:
        fill_neighbours(batch, 3)
        check(batch.ledger_store(3))
    expected = sorted((key, b"neighbour") for key in NEIGHBOUR_KEYS)
    for neighbour in (2, 4):
        with env.ledger_reader(neighbour) as reader:
            for table in Table:
                assert reader.scan(table, limit=100) == expected, (neighbour, table)


def test_meets_the_contracts_key_bound(envs: Envs) -> None:
    with envs.open().write_batch() as batch:
        _keys_are_bounded_bytes(batch.ledger_store(3))


def test_applying_and_the_applied_index_commit_together(envs: Envs) -> None:
    env = envs.open(durability=Durability.FSYNC)
    log = LmdbLogStorage(env, 1, conf_state=CONF)
    log.append(ents(1, 3, 1))
    with env.write_batch(sync=True) as batch:
        store = batch.ledger_store(1)
        machine.init_shard(store, shard_id=1, shard_count=4)
        machine.apply_entry(store, index=1, data=b"")

    def apply_then_fail() -> None:
        with env.write_batch() as batch:
            machine.apply_entry(batch.ledger_store(1), index=2, data=b"")
            log.set_hard_state(HardState(term=1, commit=3), txn=batch)
            raise RuntimeError("crash between apply and commit")

    with pytest.raises(RuntimeError, match="crash between"):
        apply_then_fail()
    env = envs.reopen(env)
    with env.ledger_reader(1) as reader:
        assert machine.applied_index(reader) == 1
    with env.ledger_reader(2) as other_shard:
        assert machine.applied_index(other_shard) == 0
    assert LmdbLogStorage(env, 1, conf_state=CONF).initial_state()[0].commit == 0


def test_a_reader_cannot_write(envs: Envs) -> None:
    env = envs.open()
    with env.ledger_reader(0) as reader, pytest.raises(InvariantViolation, match="read-only"):
        reader.put(Table.ACCOUNTS, b"alice", b"1")


def test_keys_leave_room_for_the_shard_prefix(envs: Envs) -> None:
    env = envs.open()
    with env.write_batch() as batch:
        store = batch.ledger_store(0)
        store.put(Table.ACCOUNTS, b"k" * _codec.LEDGER_KEY_BYTES_MAX, b"ok")
        with pytest.raises(InvariantViolation, match="at most 507"):
            store.put(Table.ACCOUNTS, b"k" * (_codec.LEDGER_KEY_BYTES_MAX + 1), b"no")


def test_a_corrupt_row_is_detected(envs: Envs) -> None:
    env = envs.open()
    with env.write_batch() as batch:
        batch.ledger_store(5).put(Table.ACCOUNTS, b"alice", b"balance 100")
    db = env.db("ledger.accounts")
    key = _codec.shard_prefix(5) + b"alice"
    with env.lmdb_env.begin(write=True) as txn:
        record = txn.get(key, db=db)
        assert record is not None
        txn.put(key, record.replace(b"100", b"900"), db=db)
    with env.ledger_reader(5) as reader, pytest.raises(CorruptRecord, match=r"ledger\.accounts"):
        reader.get(Table.ACCOUNTS, b"alice")
