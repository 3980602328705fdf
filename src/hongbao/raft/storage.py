"""The storage seam of the Raft core, and its in-memory twin.

Rules of this module: the core only *reads* storage through :class:`LogStorage`; the
runtime writes it (``append``, ``set_hard_state``, ``apply_snapshot``, ``compact``,
``create_snapshot``) while handling a ``Ready``. Every implementation (this in-memory one,
the LMDB one in ``hongbao.node``) must pass the shared contract suite in
``tests/raft/storage_contract.py``.

Index layout (etcd's): the storage keeps a *snapshot point* ``(snap_index, snap_term)``
and the entries after it. ``first_index() == snap_index + 1``; ``term(snap_index)`` is
known (raft-pitfalls 20) but the entry itself is gone. A fresh storage has its snapshot
point at (0, 0) and the bootstrap membership as its conf state.
"""

from __future__ import annotations

import itertools
from typing import Protocol, runtime_checkable

from hongbao._invariant import fail, invariant
from hongbao.raft.types import ConfState, Entry, HardState, LogIndex, Snapshot, SnapshotMeta, Term


class StorageError(Exception):
    """Base of the errors a storage reports to the core."""


class Compacted(StorageError):
    """The requested index is at or below the snapshot point: send a snapshot instead."""


class Unavailable(StorageError):
    """The requested index is beyond the last entry."""


class SnapshotOutOfDate(StorageError):
    """A snapshot older than the one already held was offered."""


@runtime_checkable
class LogStorage(Protocol):
    """What the core reads. Returned lists are fresh: the caller may keep them."""

    def initial_state(self) -> tuple[HardState, ConfState]:
        """The persisted hard state and the membership as of the snapshot point."""
        ...

    def entries(self, *, lo: LogIndex, hi: LogIndex, max_bytes: int | None) -> list[Entry]:
        """Entries in [lo, hi), at least one if any, stopping before ``max_bytes``.

        Raises :class:`Compacted` if ``lo <= snap_index``, :class:`Unavailable` if
        ``hi > last_index() + 1``.
        """
        ...

    def term(self, index: LogIndex) -> Term:
        """Term of the entry at ``index``; valid for ``snap_index <= index <= last_index``."""
        ...

    def first_index(self) -> LogIndex: ...

    def last_index(self) -> LogIndex: ...

    def snapshot(self) -> Snapshot:
        """The most recent snapshot (the bootstrap one, with empty data, if none was made)."""
        ...


@runtime_checkable
class WritableLogStorage(LogStorage, Protocol):
    """What the runtime writes while handling a ``Ready``."""

    def append(self, entries: list[Entry]) -> None:
        """Append, replacing any existing suffix from ``entries[0].index`` on."""
        ...

    def set_hard_state(self, hard_state: HardState) -> None: ...

    def apply_snapshot(self, snapshot: Snapshot) -> None:
        """Replace the whole log with ``snapshot`` (a follower installing the leader's)."""
        ...

    def create_snapshot(self, *, index: LogIndex, conf_state: ConfState, data: bytes) -> Snapshot:
        """Record a snapshot of the local state machine as of ``index`` (<= last index)."""
        ...

    def compact(self, index: LogIndex) -> None:
        """Drop entries up to and including ``index`` (which must be <= the snapshot index)."""
        ...


def limit_size(entries: list[Entry], max_bytes: int | None) -> list[Entry]:
    """The longest prefix within ``max_bytes``, but never fewer than one entry."""
    if max_bytes is None or not entries:
        return entries
    total = 0
    for count, entry in enumerate(entries):
        total += entry.size_bytes
        if total > max_bytes and count > 0:
            return entries[:count]
    return entries


class MemoryStorage:
    """In-memory :class:`WritableLogStorage`: the twin used by tests and the simulator."""

    def __init__(self, conf_state: ConfState) -> None:
        self._hard_state = HardState()
        self._snapshot = Snapshot(SnapshotMeta(index=0, term=0, conf_state=conf_state))
        # _entries[0] is a dummy standing for the snapshot point.
        self._entries: list[Entry] = [Entry(term=0, index=0)]

    # -- reads ---------------------------------------------------------------------------

    def initial_state(self) -> tuple[HardState, ConfState]:
        return self._hard_state, self._snapshot.meta.conf_state

    def entries(self, *, lo: LogIndex, hi: LogIndex, max_bytes: int | None) -> list[Entry]:
        offset = self._entries[0].index
        if lo <= offset:
            raise Compacted(f"index {lo} is compacted (snapshot at {offset})")
        if hi > self.last_index() + 1:
            raise Unavailable(f"index {hi - 1} is beyond the last index {self.last_index()}")
        if lo > hi:
            fail(f"entries: lo {lo} > hi {hi}")
        return limit_size(self._entries[lo - offset : hi - offset], max_bytes)

    def term(self, index: LogIndex) -> Term:
        offset = self._entries[0].index
        if index < offset:
            raise Compacted(f"index {index} is compacted (snapshot at {offset})")
        if index - offset >= len(self._entries):
            raise Unavailable(f"index {index} is beyond the last index {self.last_index()}")
        return self._entries[index - offset].term

    def first_index(self) -> LogIndex:
        return self._entries[0].index + 1

    def last_index(self) -> LogIndex:
        return self._entries[0].index + len(self._entries) - 1

    def snapshot(self) -> Snapshot:
        return self._snapshot

    # -- writes --------------------------------------------------------------------------

    def set_hard_state(self, hard_state: HardState) -> None:
        invariant(hard_state.term >= self._hard_state.term, "hard state term went backwards")
        self._hard_state = hard_state

    def append(self, entries: list[Entry]) -> None:
        if not entries:
            return
        first = self.first_index()
        for previous, entry in itertools.pairwise(entries):
            invariant(entry.index == previous.index + 1, "append: entries are not contiguous")
        if entries[-1].index < first:
            return  # entirely compacted away already
        if entries[0].index < first:
            entries = entries[first - entries[0].index :]
        offset = entries[0].index - self._entries[0].index
        invariant(offset <= len(self._entries), f"append: gap before index {entries[0].index}")
        del self._entries[offset:]
        self._entries.extend(entries)

    def apply_snapshot(self, snapshot: Snapshot) -> None:
        if snapshot.meta.index < self._snapshot.meta.index:
            raise SnapshotOutOfDate(
                f"snapshot at {snapshot.meta.index} is older than {self._snapshot.meta.index}"
            )
        self._snapshot = snapshot
        self._entries = [Entry(term=snapshot.meta.term, index=snapshot.meta.index)]

    def create_snapshot(self, *, index: LogIndex, conf_state: ConfState, data: bytes) -> Snapshot:
        if index <= self._snapshot.meta.index:
            raise SnapshotOutOfDate(f"snapshot at {index} is not newer than the one held")
        invariant(index <= self.last_index(), f"snapshot index {index} beyond the last entry")
        meta = SnapshotMeta(index=index, term=self.term(index), conf_state=conf_state)
        self._snapshot = Snapshot(meta, data)
        return self._snapshot

    def compact(self, index: LogIndex) -> None:
        offset = self._entries[0].index
        if index <= offset:
            return
        invariant(index <= self._snapshot.meta.index, "compact beyond the snapshot index")
        invariant(index <= self.last_index(), "compact beyond the last index")
        del self._entries[: index - offset]
        # _entries[0] is now the entry at ``index``: it becomes the dummy (its term is kept).
        self._entries[0] = Entry(term=self._entries[0].term, index=index)
