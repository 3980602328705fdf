"""One LMDB environment per node, and the write batch that commits many shards at once.

Rules of this module: a node owns exactly one :class:`NodeEnv`; every shard's Raft log,
hard state, snapshots and ledger tables live in it, told apart by a big-endian shard
prefix on every key (format in ``_codec``). LMDB admits one writer at a time, so the
runtime persists the Readys of *all* its shards in one :meth:`NodeEnv.write_batch` and pays
for one sync instead of one per shard (group commit). The same batch object is handed to
the ledger (:meth:`WriteBatch.ledger_store`), so applying entries and recording the
applied index commit together.

Durability is explicit, never a side effect of flags nobody reads:

- ``Durability.FSYNC`` (the default) opens LMDB with ``sync=True, metasync=False``: every
  commit fdatasyncs its data pages before it writes the meta page, so the file is never
  corrupt, whatever crashes when. A batch opened with ``sync=True`` (or that called
  :meth:`WriteBatch.request_sync`) then fdatasyncs again, which makes the new meta page
  and so the whole transaction durable before ``write_batch`` returns: that is the Ready's
  ``must_sync``. An unsynced batch survives a process crash and becomes durable with the
  next commit; an OS crash may lose it (only it).
- ``Durability.NO_FSYNC`` never fsyncs (``sync=False``): for tests and benchmarks only.
  It survives a process crash (the page cache holds the writes) but not an OS crash,
  which may lose or corrupt recent transactions.

A failed fsync is fatal (the page cache's state is unknown afterwards): the env refuses
all further work and the node must stop.

Every durable write is timed (:attr:`NodeEnv.on_durable_write`): with ``FSYNC`` a
commit and its sync are one observation, the latency a client's answer waits on, which
is what a slow disk stretches (etcd #12405). ``NO_FSYNC`` writes are not timed.

Not thread-safe: one thread (the node's event loop) uses an env. Nesting write batches
would deadlock on LMDB's writer lock, so it is refused with an invariant instead.
"""

from __future__ import annotations

import enum
import os
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Final, Protocol, final

import lmdb

from hongbao._invariant import invariant
from hongbao.ledger.store import Table
from hongbao.node.storage import _codec
from hongbao.node.storage._ledger import LmdbLedgerStore

MAP_SIZE_BYTES_DEFAULT: Final = 64 << 30
"""The largest the data file may grow. The file is sparse: this costs address space only."""

TABLES_MAX_DEFAULT: Final = 32
READERS_MAX_DEFAULT: Final = 126
SPARE_TXNS_MAX: Final = 4  # read transactions kept for reuse: term() and entries() are hot

RAFT_TABLES: Final = ("meta", "raft_log", "raft_state", "snapshots")
LEDGER_TABLES: Final = tuple(f"ledger.{table.value}" for table in Table)
_FORMAT_KEY: Final = b"format"


class Durability(enum.Enum):
    FSYNC = "fsync"
    NO_FSYNC = "no_fsync"


class StorageFormatError(Exception):
    """The directory holds an environment written by an incompatible version."""


class BatchListener(Protocol):
    """Something that staged in-memory state in a batch and must learn how it ended."""

    def batch_committed(self, batch: WriteBatch) -> None: ...

    def batch_aborted(self, batch: WriteBatch) -> None: ...


@final
@dataclass(slots=True)
class EnvStats:
    """Counters for metrics and tests. Plain mutable counts, owned by the env."""

    commits: int = 0
    fsyncs: int = 0


@final
class WriteBatch:
    """One LMDB write transaction shared by the writes of many shards.

    Obtained from :meth:`NodeEnv.write_batch`; valid only inside its ``with`` block.
    Storages that cache state (first/last index) stage it here and publish it only
    when the transaction commits, so an aborted batch leaves no trace in memory either.
    """

    __slots__ = ("_env", "_listeners", "_open", "_sync", "_txn")

    def __init__(self, env: NodeEnv, txn: lmdb.Transaction[bytes], *, sync: bool) -> None:
        self._env = env
        self._txn = txn
        self._sync = sync
        self._open = True
        self._listeners: dict[int, BatchListener] = {}

    @property
    def txn(self) -> lmdb.Transaction[bytes]:
        invariant(self._open, "write batch used after its with-block ended")
        return self._txn

    @property
    def env(self) -> NodeEnv:
        return self._env

    @property
    def sync_requested(self) -> bool:
        return self._sync

    def request_sync(self) -> None:
        """Make this batch durable on exit (call it when any Ready in it has ``must_sync``)."""
        self._sync = True

    def listen(self, listener: BatchListener) -> None:
        invariant(self._open, "write batch used after its with-block ended")
        self._listeners[id(listener)] = listener

    def ledger_store(self, shard_id: int) -> LmdbLedgerStore:
        """Shard ``shard_id``'s ledger tables inside this transaction (read-your-writes)."""
        return LmdbLedgerStore(self._env.db_handles(), self.txn, shard_id, writable=True)

    def _end(self, *, committed: bool) -> None:
        """Called by the env once the transaction is over: tell the listeners how."""
        self._open = False
        listeners = list(self._listeners.values())
        self._listeners.clear()
        for listener in listeners:
            if committed:
                listener.batch_committed(self)
            else:
                listener.batch_aborted(self)


@final
class NodeEnv:
    """The node's LMDB environment: open it once at start, close it at shutdown."""

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        map_size_bytes: int = MAP_SIZE_BYTES_DEFAULT,
        tables_max: int = TABLES_MAX_DEFAULT,
        readers_max: int = READERS_MAX_DEFAULT,
        durability: Durability = Durability.FSYNC,
    ) -> None:
        invariant(map_size_bytes > 0, "map_size_bytes must be positive")
        needed = len(RAFT_TABLES) + len(LEDGER_TABLES)
        invariant(tables_max >= needed, f"tables_max must be >= {needed}")
        self._path = Path(path)
        self._path.mkdir(parents=True, exist_ok=True)
        self._durability = durability
        self._env = lmdb.open(
            str(self._path),
            map_size=map_size_bytes,
            subdir=True,
            max_dbs=tables_max,
            max_readers=readers_max,
            max_spare_txns=SPARE_TXNS_MAX,
            sync=durability is Durability.FSYNC,
            metasync=False,  # the explicit sync after a synced batch flushes the meta page
            readahead=False,  # random access to a file that may exceed memory
        )
        self._dbs: dict[str, lmdb._Database] = {}
        try:
            with self._env.begin(write=True) as txn:
                for name in RAFT_TABLES + LEDGER_TABLES:
                    self._dbs[name] = self._env.open_db(name.encode(), txn=txn)
                self._check_format(txn)
        except BaseException:
            self._env.close()
            raise
        self._batch: WriteBatch | None = None
        self._failure: BaseException | None = None
        self._closed = False
        self._log_shards: set[int] = set()
        self.stats = EnvStats()
        # Called with the seconds one durable batch took (commit and sync), FSYNC only:
        # the node's fsync histogram and slow-fsync warning. Must be quick and not raise.
        self.on_durable_write: Callable[[float], None] | None = None

    @property
    def path(self) -> Path:
        return self._path

    @property
    def durability(self) -> Durability:
        return self._durability

    @property
    def lmdb_env(self) -> lmdb.Environment:
        """The raw environment, for tools and tests (stat, copy); not for writing."""
        return self._env

    def db(self, name: str) -> lmdb._Database:
        invariant(name in self._dbs, f"no sub-database {name!r}")
        return self._dbs[name]

    def db_handles(self) -> Mapping[str, lmdb._Database]:
        return self._dbs

    @contextmanager
    def write_batch(self, *, sync: bool = False) -> Iterator[WriteBatch]:
        """One write transaction: committed if the block ends normally, else aborted.

        With ``sync`` (or :meth:`WriteBatch.request_sync`) the transaction is durable once
        the block has exited. Without, it survives a process crash at once and an OS crash
        from the next commit on (see the module docstring). Committed state is published
        to the storages' caches before the sync; a failed sync poisons the env.
        """
        self._check_usable()
        invariant(self._batch is None, "a write batch is already open: LMDB has one writer")
        batch = WriteBatch(self, self._env.begin(write=True), sync=sync)
        self._batch = batch
        committed = False
        commit_started_s = 0.0
        try:
            yield batch
            commit_started_s = time.perf_counter()
            batch.txn.commit()
            committed = True
        finally:
            self._batch = None
            if not committed:
                batch._txn.abort()  # a no-op if a failed commit already aborted it
            batch._end(committed=committed)
        self.stats.commits += 1
        if batch.sync_requested:
            self.sync()
        if self._durability is Durability.FSYNC and self.on_durable_write is not None:
            self.on_durable_write(time.perf_counter() - commit_started_s)

    @contextmanager
    def read_txn(self) -> Iterator[lmdb.Transaction[bytes]]:
        """A consistent read-only view of everything committed so far."""
        self._check_usable()
        with self._env.begin(write=False) as txn:
            yield txn

    @contextmanager
    def ledger_reader(self, shard_id: int) -> Iterator[LmdbLedgerStore]:
        """A read-only ledger store for queries (balance, history), on one snapshot."""
        with self.read_txn() as txn:
            yield LmdbLedgerStore(self._dbs, txn, shard_id, writable=False)

    def sync(self) -> None:
        """Make every committed transaction durable now (a no-op with ``NO_FSYNC``)."""
        self._check_usable()
        if self._durability is Durability.NO_FSYNC:
            return
        try:
            self._env.sync(True)
        except BaseException as error:
            self._failure = error  # the page cache may have dropped our writes: stop
            raise
        self.stats.fsyncs += 1

    def claim_log(self, shard_id: int) -> None:
        """Called by ``LmdbLogStorage``: one storage object per shard, or caches diverge."""
        invariant(shard_id not in self._log_shards, f"shard {shard_id}'s log is already open")
        self._log_shards.add(shard_id)

    def release_log(self, shard_id: int) -> None:
        invariant(shard_id in self._log_shards, f"shard {shard_id}'s log is not open")
        self._log_shards.remove(shard_id)

    @property
    def in_batch(self) -> bool:
        return self._batch is not None

    def close(self) -> None:
        invariant(self._batch is None, "closing the env inside a write batch")
        if not self._closed:
            self._closed = True
            self._env.close()

    def __enter__(self) -> NodeEnv:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _check_usable(self) -> None:
        invariant(not self._closed, f"env {self._path} is closed")
        invariant(self._failure is None, f"env {self._path} failed an fsync: restart the node")

    def _check_format(self, txn: lmdb.Transaction[bytes]) -> None:
        meta = self._dbs["meta"]
        stored = txn.get(_FORMAT_KEY, db=meta)
        if stored is None:
            txn.put(_FORMAT_KEY, _codec.FORMAT_VERSION.to_bytes(4, "big"), db=meta)
            return
        version = int.from_bytes(stored, "big")
        if version != _codec.FORMAT_VERSION:
            raise StorageFormatError(
                f"{self._path}: storage format {version}, this build reads {_codec.FORMAT_VERSION}"
            )
