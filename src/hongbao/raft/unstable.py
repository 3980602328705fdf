"""The tail of the log that is not yet durable (etcd's ``unstable``).

Entries appended by the core live here until the runtime has persisted them and called
``advance``; a snapshot received from the leader waits here until it is installed.
Everything at or after ``offset`` is authoritative: the storage may still hold older,
superseded entries at those indexes until the runtime overwrites them.
"""

from __future__ import annotations

from hongbao._invariant import invariant
from hongbao.raft.types import Entry, LogIndex, Snapshot, Term


class Unstable:
    __slots__ = ("entries", "offset", "snapshot")

    def __init__(self, offset: LogIndex) -> None:
        self.snapshot: Snapshot | None = None
        self.entries: list[Entry] = []
        self.offset: LogIndex = offset  # index of entries[0], or of the next entry

    def maybe_first_index(self) -> LogIndex | None:
        if self.snapshot is not None:
            return self.snapshot.meta.index + 1
        return None

    def maybe_last_index(self) -> LogIndex | None:
        if self.entries:
            return self.offset + len(self.entries) - 1
        if self.snapshot is not None:
            return self.snapshot.meta.index
        return None

    def maybe_term(self, index: LogIndex) -> Term | None:
        if index < self.offset:
            if self.snapshot is not None and self.snapshot.meta.index == index:
                return self.snapshot.meta.term
            return None
        last = self.maybe_last_index()
        if last is None or index > last:
            return None
        return self.entries[index - self.offset].term

    def stable_to(self, index: LogIndex, term: Term) -> None:
        """Entries up to ``index`` are durable, unless they were replaced since (term differs)."""
        if index < self.offset or self.maybe_term(index) != term:
            return
        del self.entries[: index + 1 - self.offset]
        self.offset = index + 1

    def stable_snap_to(self, index: LogIndex) -> None:
        if self.snapshot is not None and self.snapshot.meta.index == index:
            self.snapshot = None

    def restore(self, snapshot: Snapshot) -> None:
        self.offset = snapshot.meta.index + 1
        self.entries = []
        self.snapshot = snapshot

    def truncate_and_append(self, entries: list[Entry]) -> None:
        first = entries[0].index
        if first == self.offset + len(self.entries):
            self.entries.extend(entries)
        elif first <= self.offset:
            # Replace everything unstable; the storage's suffix is overwritten on persist.
            self.offset = first
            self.entries = list(entries)
        else:
            del self.entries[first - self.offset :]
            self.entries.extend(entries)
        invariant(
            self.entries[-1].index == self.offset + len(self.entries) - 1,
            "unstable entries are not contiguous",
        )
