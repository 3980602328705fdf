"""One shard's Raft log, hard state and snapshot in the node's LMDB environment.

Rules of this module: :class:`LmdbLogStorage` behaves exactly like
``hongbao.raft.storage.MemoryStorage`` (the shared contract suite checks both). Reads
see what is committed. Every write method takes an optional ``txn``: without it the
write is its own transaction, synced before returning (what the simulator-style runtime
and the contract tests use); with a :class:`WriteBatch` it joins that transaction, and
the in-memory cache (first/last index, last term, hard state, snapshot meta) changes
only if and when the batch commits. Errors are the core's ``Compacted``, ``Unavailable``
and ``SnapshotOutOfDate``; a bad checksum is ``CorruptRecord``; misuse is an invariant.
"""

from __future__ import annotations

import dataclasses
import itertools
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from typing import final

import lmdb

from hongbao._invariant import InvariantViolation, invariant
from hongbao.node.storage import _codec
from hongbao.node.storage._codec import CorruptRecord
from hongbao.node.storage._env import NodeEnv, WriteBatch
from hongbao.raft.storage import Compacted, SnapshotOutOfDate, Unavailable
from hongbao.raft.types import (
    ConfState,
    Entry,
    HardState,
    LogIndex,
    Snapshot,
    SnapshotMeta,
    Term,
)


@final
@dataclass(frozen=True, slots=True)
class _LogState:
    """What a shard's storage keeps in memory; always equal to what is committed."""

    hard_state: HardState
    snapshot_meta: SnapshotMeta
    start_index: LogIndex  # the dummy entry: first_index() - 1
    start_term: Term
    last_index: LogIndex
    last_term: Term


@final
class LmdbLogStorage:
    """A ``WritableLogStorage`` for shard ``shard_id`` of ``env``.

    ``conf_state`` is the bootstrap membership, written on the first open of the shard
    (with its snapshot point at (0, 0)); later opens read what is stored and ignore it.
    """

    def __init__(self, env: NodeEnv, shard_id: int, *, conf_state: ConfState) -> None:
        invariant(not env.in_batch, "open a shard's log outside any write batch")
        env.claim_log(shard_id)
        self._env = env
        self._shard_id = shard_id
        self._log_db = env.db("raft_log")
        self._state_db = env.db("raft_state")
        self._snap_db = env.db("snapshots")
        self._staged: tuple[WriteBatch, _LogState] | None = None
        try:
            self._state = self._open(conf_state)
        except BaseException:
            env.release_log(shard_id)  # e.g. CorruptRecord: a repaired env may retry
            raise

    @property
    def shard_id(self) -> int:
        return self._shard_id

    @property
    def env(self) -> NodeEnv:
        return self._env

    # -- reads (LogStorage) ----------------------------------------------------------------

    def initial_state(self) -> tuple[HardState, ConfState]:
        return self._state.hard_state, self._state.snapshot_meta.conf_state

    def first_index(self) -> LogIndex:
        return self._state.start_index + 1

    def last_index(self) -> LogIndex:
        return self._state.last_index

    def term(self, index: LogIndex) -> Term:
        state = self._state
        self._check_term_range(state, index)
        if index == state.start_index:
            return state.start_term
        if index == state.last_index:
            return state.last_term
        with self._env.read_txn() as txn:
            return self._read_entry(txn, index).term

    def entries(self, *, lo: LogIndex, hi: LogIndex, max_bytes: int | None) -> list[Entry]:
        state = self._state
        if lo <= state.start_index:
            raise Compacted(f"index {lo} is compacted (snapshot at {state.start_index})")
        if hi > state.last_index + 1:
            raise Unavailable(f"index {hi - 1} is beyond the last index {state.last_index}")
        invariant(lo <= hi, f"entries: lo {lo} > hi {hi}")
        out: list[Entry] = []
        if lo == hi:
            return out
        size_bytes = 0
        with self._env.read_txn() as txn, txn.cursor(db=self._log_db) as cursor:
            found = cursor.set_key(_codec.log_key(self._shard_id, lo))
            for index in range(lo, hi):
                key = _codec.log_key(self._shard_id, index)
                if not found or cursor.key() != key:
                    raise CorruptRecord(f"raft_log shard {self._shard_id}: index {index} missing")
                entry = _codec.entry_decode(key, cursor.value())
                size_bytes += entry.size_bytes
                if max_bytes is not None and size_bytes > max_bytes and out:
                    break  # the same rule as raft.storage.limit_size: never fewer than one
                out.append(entry)
                found = cursor.next()
        return out

    def snapshot(self) -> Snapshot:
        meta = self._state.snapshot_meta
        key = self._state_key(_codec.SNAPSHOT_META)
        with self._env.read_txn() as txn:
            record = txn.get(key, db=self._state_db)
            if record is None:
                raise CorruptRecord(f"raft_state shard {self._shard_id}: snapshot meta missing")
            stored, data_bytes, data_crc = _codec.snapshot_meta_decode(key, record)
            invariant(stored == meta, "snapshot meta on disk differs from the cached one")
            chunks = [
                self._read_chunk(txn, chunk) for chunk in range(_codec.chunk_count(data_bytes))
            ]
        data = b"".join(chunks)
        _codec.snapshot_data_check(self._shard_id, data, data_bytes, data_crc)
        return Snapshot(meta, data)

    # -- writes (WritableLogStorage), each optionally inside a write batch ---------------
    # Every check that can refuse a write runs before the first put, so a caller that
    # catches the error may carry on with its batch.

    def append(self, entries: list[Entry], *, txn: WriteBatch | None = None) -> None:
        """Append, replacing any existing suffix from ``entries[0].index`` on."""
        if not entries:
            return
        for previous, entry in itertools.pairwise(entries):
            invariant(entry.index == previous.index + 1, "append: entries are not contiguous")
        state = self._view(txn)
        first = state.start_index + 1
        if entries[-1].index < first:
            return  # entirely compacted away already
        if entries[0].index < first:
            entries = entries[first - entries[0].index :]
        invariant(
            entries[0].index <= state.last_index + 1,
            f"append: gap before index {entries[0].index} (last {state.last_index})",
        )
        items = []
        for entry in entries:
            key = _codec.log_key(self._shard_id, entry.index)
            items.append((key, _codec.entry_encode(key, entry)))
        new_last = entries[-1].index
        with self._batch(txn) as batch:
            if state.last_index > new_last:
                self._delete_entries(batch.txn, new_last + 1, state.last_index)
            with batch.txn.cursor(db=self._log_db) as cursor:
                consumed, added = cursor.putmulti(items)
            invariant(consumed == added == len(items), f"append: {added}/{len(items)} puts")
            last_term = entries[-1].term
            self._stage(batch, dataclasses.replace(state, last_index=new_last, last_term=last_term))

    def set_hard_state(self, hard_state: HardState, *, txn: WriteBatch | None = None) -> None:
        state = self._view(txn)
        invariant(hard_state.term >= state.hard_state.term, "hard state term went backwards")
        with self._batch(txn) as batch:
            self._put_hard_state(batch.txn, hard_state)
            self._stage(batch, dataclasses.replace(state, hard_state=hard_state))

    def apply_snapshot(self, snapshot: Snapshot, *, txn: WriteBatch | None = None) -> None:
        """Replace the whole log with ``snapshot`` (a follower installing the leader's)."""
        state = self._view(txn)
        meta = snapshot.meta
        if meta.index < state.snapshot_meta.index:
            raise SnapshotOutOfDate(
                f"snapshot at {meta.index} is older than {state.snapshot_meta.index}"
            )
        with self._batch(txn) as batch:
            self._delete_entries(batch.txn, 0, _codec.LOG_INDEX_MAX)
            self._write_snapshot(batch.txn, meta, snapshot.data)
            self._put_start(batch.txn, meta.index, meta.term)
            self._stage(
                batch,
                dataclasses.replace(
                    state,
                    snapshot_meta=meta,
                    start_index=meta.index,
                    start_term=meta.term,
                    last_index=meta.index,
                    last_term=meta.term,
                ),
            )

    def create_snapshot(
        self,
        *,
        index: LogIndex,
        conf_state: ConfState,
        data: bytes,
        txn: WriteBatch | None = None,
    ) -> Snapshot:
        """Record a snapshot of the local state machine as of ``index`` (<= last index)."""
        state = self._view(txn)
        if index <= state.snapshot_meta.index:
            raise SnapshotOutOfDate(f"snapshot at {index} is not newer than the one held")
        invariant(index <= state.last_index, f"snapshot index {index} beyond the last entry")
        with self._batch(txn) as batch:
            term = self._term_in(batch.txn, state, index)
            meta = SnapshotMeta(index=index, term=term, conf_state=conf_state)
            self._write_snapshot(batch.txn, meta, data)
            self._stage(batch, dataclasses.replace(state, snapshot_meta=meta))
        return Snapshot(meta, data)

    def compact(self, index: LogIndex, *, txn: WriteBatch | None = None) -> None:
        """Drop entries up to and including ``index`` (which must be <= the snapshot index)."""
        state = self._view(txn)
        if index <= state.start_index:
            return
        invariant(index <= state.snapshot_meta.index, "compact beyond the snapshot index")
        invariant(index <= state.last_index, "compact beyond the last index")
        with self._batch(txn) as batch:
            term = self._term_in(batch.txn, state, index)
            self._delete_entries(batch.txn, state.start_index + 1, index)
            self._put_start(batch.txn, index, term)
            self._stage(batch, dataclasses.replace(state, start_index=index, start_term=term))

    # -- BatchListener: publish staged state only once its transaction commits ---------------

    def batch_committed(self, batch: WriteBatch) -> None:
        self._state = self._unstage(batch)

    def batch_aborted(self, batch: WriteBatch) -> None:
        self._unstage(batch)

    # -- helpers -----------------------------------------------------------------------------

    def _batch(self, txn: WriteBatch | None) -> AbstractContextManager[WriteBatch]:
        if txn is None:
            return self._env.write_batch(sync=True)
        invariant(txn.env is self._env, "write batch of another env")
        return nullcontext(txn)

    def _view(self, txn: WriteBatch | None) -> _LogState:
        """The state as the batch ``txn`` sees it (its own staged writes included)."""
        if txn is None:
            invariant(not self._env.in_batch, "a write batch is already open: pass txn=batch")
        elif self._staged is not None and self._staged[0] is txn:
            return self._staged[1]
        return self._state

    def _stage(self, batch: WriteBatch, state: _LogState) -> None:
        invariant(self._staged is None or self._staged[0] is batch, "staged in another batch")
        invariant(state.start_index <= state.snapshot_meta.index, "log start past snapshot")
        invariant(state.start_index <= state.last_index, "log start past the last index")
        self._staged = (batch, state)
        batch.listen(self)

    def _unstage(self, batch: WriteBatch) -> _LogState:
        staged = self._staged
        if staged is None or staged[0] is not batch:
            raise InvariantViolation(f"shard {self._shard_id}: told about a batch it is not in")
        self._staged = None
        return staged[1]

    def _check_term_range(self, state: _LogState, index: LogIndex) -> None:
        if index < state.start_index:
            raise Compacted(f"index {index} is compacted (snapshot at {state.start_index})")
        if index > state.last_index:
            raise Unavailable(f"index {index} is beyond the last index {state.last_index}")

    def _term_in(self, txn: lmdb.Transaction[bytes], state: _LogState, index: LogIndex) -> Term:
        self._check_term_range(state, index)
        if index == state.start_index:
            return state.start_term
        if index == state.last_index:
            return state.last_term
        return self._read_entry(txn, index).term

    def _read_entry(self, txn: lmdb.Transaction[bytes], index: LogIndex) -> Entry:
        key = _codec.log_key(self._shard_id, index)
        record = txn.get(key, db=self._log_db)
        if record is None:
            raise CorruptRecord(f"raft_log shard {self._shard_id}: index {index} missing")
        entry = _codec.entry_decode(key, record)
        invariant(entry.index == index, "raft_log: entry decoded under another index")
        return entry

    def _delete_entries(self, txn: lmdb.Transaction[bytes], lo: LogIndex, hi: LogIndex) -> None:
        """Delete this shard's entries with index in [lo, hi]."""
        hi_key = _codec.log_key(self._shard_id, hi)
        with txn.cursor(db=self._log_db) as cursor:
            if not cursor.set_range(_codec.log_key(self._shard_id, lo)):
                return
            while cursor.key() and cursor.key() <= hi_key:
                cursor.delete()  # moves to the next record

    def _state_key(self, tag: int) -> bytes:
        return _codec.state_key(self._shard_id, tag)

    def _put_hard_state(self, txn: lmdb.Transaction[bytes], hard_state: HardState) -> None:
        key = self._state_key(_codec.HARD_STATE)
        txn.put(key, _codec.hard_state_encode(key, hard_state), db=self._state_db)

    def _put_start(self, txn: lmdb.Transaction[bytes], index: LogIndex, term: Term) -> None:
        key = self._state_key(_codec.LOG_START)
        txn.put(key, _codec.log_start_encode(key, index, term), db=self._state_db)

    def _write_snapshot(
        self, txn: lmdb.Transaction[bytes], meta: SnapshotMeta, data: bytes
    ) -> None:
        prefix = _codec.shard_prefix(self._shard_id)
        with txn.cursor(db=self._snap_db) as cursor:
            found = cursor.set_range(prefix)
            while found and cursor.key().startswith(prefix):
                found = cursor.delete()
        step = _codec.SNAPSHOT_CHUNK_BYTES_MAX
        for chunk, offset in enumerate(range(0, len(data), step)):
            key = _codec.chunk_key(self._shard_id, chunk)
            txn.put(key, _codec.chunk_encode(key, data[offset : offset + step]), db=self._snap_db)
        key = self._state_key(_codec.SNAPSHOT_META)
        txn.put(key, _codec.snapshot_meta_encode(key, meta, data), db=self._state_db)

    def _read_chunk(self, txn: lmdb.Transaction[bytes], chunk: int) -> bytes:
        key = _codec.chunk_key(self._shard_id, chunk)
        record = txn.get(key, db=self._snap_db)
        if record is None:
            raise CorruptRecord(f"snapshots shard {self._shard_id}: chunk {chunk} missing")
        return _codec.chunk_decode(key, record)

    def _open(self, conf_state: ConfState) -> _LogState:
        with self._env.read_txn() as txn:
            loaded = self._load(txn)
        if loaded is not None:
            return loaded
        meta = SnapshotMeta(index=0, term=0, conf_state=conf_state)
        with self._env.write_batch(sync=True) as batch:
            self._write_snapshot(batch.txn, meta, b"")
            self._put_start(batch.txn, 0, 0)
            self._put_hard_state(batch.txn, HardState())
        return _LogState(HardState(), meta, 0, 0, 0, 0)

    def _load(self, txn: lmdb.Transaction[bytes]) -> _LogState | None:
        """The shard's state from disk, or None for a shard never opened before."""
        records = {
            tag: txn.get(self._state_key(tag), db=self._state_db)
            for tag in (_codec.HARD_STATE, _codec.SNAPSHOT_META, _codec.LOG_START)
        }
        bounds = self._log_bounds(txn)
        if all(record is None for record in records.values()) and bounds is None:
            return None
        hard_state = _codec.hard_state_decode(
            self._state_key(_codec.HARD_STATE), self._present(records, _codec.HARD_STATE)
        )
        meta, _, _ = _codec.snapshot_meta_decode(
            self._state_key(_codec.SNAPSHOT_META), self._present(records, _codec.SNAPSHOT_META)
        )
        start_index, start_term = _codec.log_start_decode(
            self._state_key(_codec.LOG_START), self._present(records, _codec.LOG_START)
        )
        if start_index > meta.index:
            raise CorruptRecord(f"shard {self._shard_id}: log start {start_index} past snapshot")
        last_index, last_term = start_index, start_term
        if bounds is not None:
            first, last = bounds
            if first.index != start_index + 1:
                raise CorruptRecord(
                    f"raft_log shard {self._shard_id}: first entry {first.index},"
                    f" expected {start_index + 1}"
                )
            last_index, last_term = last.index, last.term
        return _LogState(hard_state, meta, start_index, start_term, last_index, last_term)

    def _present(self, records: dict[int, bytes | None], tag: int) -> bytes:
        record = records[tag]
        if record is None:
            raise CorruptRecord(f"raft_state shard {self._shard_id}: record {tag} missing")
        return record

    def _log_bounds(self, txn: lmdb.Transaction[bytes]) -> tuple[Entry, Entry] | None:
        """The first and last entries of this shard on disk (checksums verified), if any."""
        prefix = _codec.shard_prefix(self._shard_id)
        with txn.cursor(db=self._log_db) as cursor:
            if not cursor.set_range(prefix) or not cursor.key().startswith(prefix):
                return None
            first = _codec.entry_decode(cursor.key(), cursor.value())
            if self._shard_id == _codec.SHARD_ID_MAX or not cursor.set_range(
                _codec.shard_prefix(self._shard_id + 1)
            ):
                cursor.last()
            else:
                cursor.prev()
            invariant(cursor.key().startswith(prefix), "raft_log: lost the shard's last entry")
            last = _codec.entry_decode(cursor.key(), cursor.value())
        return first, last
