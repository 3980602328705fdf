"""LmdbLogStorage: the shared contract (plain, across restarts, through write batches)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from hongbao.node.storage import Durability, LmdbLogStorage, NodeEnv
from hongbao.raft.storage import WritableLogStorage
from hongbao.raft.types import (
    ConfState,
    Entry,
    HardState,
    LogIndex,
    NodeId,
    Snapshot,
    Term,
)
from tests.node.conftest import Envs
from tests.raft.storage_contract import Factory, Reopen, StorageContract, ents

SHARD = 7
# Reopening passes a different bootstrap membership: what is stored must win.
OTHER_CONF = ConfState(voters=frozenset({NodeId(99)}))


class TestLmdbStorage(StorageContract):
    """Shard 7, with neighbours 6 and 8 in the same env that must come out untouched."""

    @pytest.fixture
    def make_storage(self, envs: Envs) -> Iterator[Factory]:
        neighbours: list[tuple[LmdbLogStorage, list[Entry]]] = []

        def make(conf_state: ConfState) -> WritableLogStorage:
            env = envs.open(f"env{len(neighbours)}")
            for shard_id in (SHARD - 1, SHARD + 1):
                neighbour = LmdbLogStorage(env, shard_id, conf_state=conf_state)
                neighbour.append(ents(1, 4, 1, tag=b"n%d" % shard_id))
                neighbours.append((neighbour, ents(1, 4, 1, tag=b"n%d" % shard_id)))
            return LmdbLogStorage(env, SHARD, conf_state=conf_state)

        yield make
        for neighbour, written in neighbours:
            if not neighbour.env.in_batch:
                assert neighbour.entries(lo=1, hi=5, max_bytes=None) == written


class TestLmdbStorageReopened(StorageContract):
    """Every read after a write happens in a freshly opened env: a restart in between."""

    @pytest.fixture
    def make_storage(self, envs: Envs) -> Factory:
        return lambda conf_state: LmdbLogStorage(envs.open(), SHARD, conf_state=conf_state)

    @pytest.fixture
    def reopen(self, envs: Envs) -> Reopen:
        def reopen(storage: WritableLogStorage) -> WritableLogStorage:
            assert isinstance(storage, LmdbLogStorage)
            env = envs.reopen(storage.env)
            return LmdbLogStorage(env, storage.shard_id, conf_state=OTHER_CONF)

        return reopen


class Batched:
    """Routes every write through an explicit, synced write batch (the runtime's path)."""

    def __init__(self, inner: LmdbLogStorage) -> None:
        self.inner = inner

    def initial_state(self) -> tuple[HardState, ConfState]:
        return self.inner.initial_state()

    def entries(self, *, lo: LogIndex, hi: LogIndex, max_bytes: int | None) -> list[Entry]:
        return self.inner.entries(lo=lo, hi=hi, max_bytes=max_bytes)

    def term(self, index: LogIndex) -> Term:
        return self.inner.term(index)

    def first_index(self) -> LogIndex:
        return self.inner.first_index()

    def last_index(self) -> LogIndex:
        return self.inner.last_index()

    def snapshot(self) -> Snapshot:
        return self.inner.snapshot()

    def append(self, entries: list[Entry]) -> None:
        with self.inner.env.write_batch(sync=True) as batch:
            self.inner.append(entries, txn=batch)

    def set_hard_state(self, hard_state: HardState) -> None:
        with self.inner.env.write_batch(sync=True) as batch:
            self.inner.set_hard_state(hard_state, txn=batch)

    def apply_snapshot(self, snapshot: Snapshot) -> None:
        with self.inner.env.write_batch(sync=True) as batch:
            self.inner.apply_snapshot(snapshot, txn=batch)

    def create_snapshot(self, *, index: LogIndex, conf_state: ConfState, data: bytes) -> Snapshot:
        with self.inner.env.write_batch(sync=True) as batch:
            return self.inner.create_snapshot(
                index=index, conf_state=conf_state, data=data, txn=batch
            )

    def compact(self, index: LogIndex) -> None:
        with self.inner.env.write_batch(sync=True) as batch:
            self.inner.compact(index, txn=batch)


class TestLmdbStorageInWriteBatches(StorageContract):
    """Writes join explicit batches, with real fsyncs (``Durability.FSYNC``)."""

    @pytest.fixture
    def make_storage(self, envs: Envs) -> Factory:
        def make(conf_state: ConfState) -> WritableLogStorage:
            env = envs.open(durability=Durability.FSYNC)
            return Batched(LmdbLogStorage(env, SHARD, conf_state=conf_state))

        return make


def test_an_env_opens_with_its_format_and_tables(envs: Envs) -> None:
    env = envs.open()
    assert isinstance(env, NodeEnv)
    with env.lmdb_env.begin() as txn:  # the main database lists the named ones
        names = {key for key, _ in txn.cursor()}
    assert {b"raft_log", b"raft_state", b"snapshots", b"meta", b"ledger.accounts"} <= names
    assert env.durability is Durability.NO_FSYNC
    assert env.lmdb_env.flags()["metasync"] is False  # durability comes from explicit syncs
