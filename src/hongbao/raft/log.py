"""The core's view of the log: durable storage plus the unstable tail, and the commit
and apply pointers (``applied <= committed <= last_index`` always holds).

Rules of this module: it never decides *whether* to commit (that is the leader's quorum
logic in ``core``), only *how* to move the pointers safely; every move is checked.
"""

from __future__ import annotations

from hongbao._invariant import fail, invariant
from hongbao.raft.storage import Compacted, LogStorage, Unavailable, limit_size
from hongbao.raft.types import Entry, LogIndex, Snapshot, Term
from hongbao.raft.unstable import Unstable


class RaftLog:
    __slots__ = ("applied", "committed", "committed_bytes_per_ready_max", "storage", "unstable")

    def __init__(
        self, storage: LogStorage, *, applied: LogIndex, committed_bytes_per_ready_max: int
    ) -> None:
        self.storage = storage
        self.unstable = Unstable(offset=storage.last_index() + 1)
        snapshot_index = storage.first_index() - 1
        self.committed: LogIndex = snapshot_index
        self.applied: LogIndex = max(applied, snapshot_index)
        self.committed_bytes_per_ready_max = committed_bytes_per_ready_max

    # -- indexes and terms ---------------------------------------------------------------

    def first_index(self) -> LogIndex:
        index = self.unstable.maybe_first_index()
        return index if index is not None else self.storage.first_index()

    def last_index(self) -> LogIndex:
        index = self.unstable.maybe_last_index()
        return index if index is not None else self.storage.last_index()

    def term(self, index: LogIndex) -> Term | None:
        """The term at ``index``, or None if it is compacted away or beyond the log."""
        if index < self.first_index() - 1 or index > self.last_index():
            return None
        term = self.unstable.maybe_term(index)
        if term is not None:
            return term
        try:
            return self.storage.term(index)
        except (Compacted, Unavailable):
            return None

    def last_term(self) -> Term:
        term = self.term(self.last_index())
        invariant(term is not None, "the term of the last entry is always known")
        assert term is not None  # for the type checker
        return term

    def match_term(self, index: LogIndex, term: Term) -> bool:
        return self.term(index) == term

    def is_up_to_date(self, last_index: LogIndex, last_term: Term) -> bool:
        """Raft §5.4.1: compare the last *term* first, then the last index."""
        our_term = self.last_term()
        return last_term > our_term or (last_term == our_term and last_index >= self.last_index())

    def find_conflict(self, entries: tuple[Entry, ...]) -> LogIndex:
        """The first index whose term differs from ours (or is new); 0 if all match."""
        for entry in entries:
            if not self.match_term(entry.index, entry.term):
                return entry.index
        return 0

    def find_conflict_by_term(self, index: LogIndex, term: Term) -> tuple[LogIndex, Term]:
        """The largest index <= ``index`` whose term is <= ``term`` (the fast-backtrack hint)."""
        while index > 0:
            our_term = self.term(index)
            if our_term is None:
                return index, 0
            if our_term <= term:
                return index, our_term
            index -= 1
        return 0, 0

    # -- appending -----------------------------------------------------------------------

    def maybe_append(
        self, *, index: LogIndex, log_term: Term, commit: LogIndex, entries: tuple[Entry, ...]
    ) -> tuple[LogIndex, tuple[Entry, ...]] | None:
        """Follower side of AppendEntries: None on mismatch, else the new last matching index
        and the entries actually written (from the first conflict on; often none).

        Only a real conflict truncates (raft-pitfalls 9); the commit index never passes the
        last entry known to match the leader's (raft-pitfalls 13).
        """
        if not self.match_term(index, log_term):
            return None
        last_new = index + len(entries)
        conflict = self.find_conflict(entries)
        written: tuple[Entry, ...] = ()
        if conflict:
            invariant(conflict > self.committed, f"conflict at {conflict} <= commit")
            written = entries[conflict - index - 1 :]
            self.append(list(written))
        self.commit_to(min(commit, last_new))
        return last_new, written

    def append(self, entries: list[Entry]) -> LogIndex:
        if entries:
            invariant(entries[0].index - 1 >= self.committed, "append would overwrite commits")
            invariant(entries[0].index <= self.last_index() + 1, "append leaves a gap")
            self.unstable.truncate_and_append(entries)
        return self.last_index()

    # -- reading entries -----------------------------------------------------------------

    def slice(self, lo: LogIndex, hi: LogIndex, max_bytes: int | None) -> list[Entry]:
        """Entries [lo, hi): from storage below the unstable offset, then from the tail."""
        if lo >= hi:
            return []
        if lo < self.first_index():
            raise Compacted(f"index {lo} is compacted")
        if hi > self.last_index() + 1:
            fail(f"slice [{lo}, {hi}) beyond the last index")
        result: list[Entry] = []
        offset = self.unstable.offset
        if lo < offset:
            stored_hi = min(hi, offset)
            result = self.storage.entries(lo=lo, hi=stored_hi, max_bytes=max_bytes)
            if len(result) < stored_hi - lo:
                return result  # the size limit cut it short
        if hi > offset:
            start = max(lo, offset) - offset
            result.extend(self.unstable.entries[start : hi - offset])
        return limit_size(result, max_bytes)

    def entries_from(self, index: LogIndex, max_bytes: int | None) -> list[Entry]:
        if index > self.last_index():
            return []
        return self.slice(index, self.last_index() + 1, max_bytes)

    def has_pending_snapshot(self) -> bool:
        return self.unstable.snapshot is not None

    def snapshot(self) -> Snapshot:
        if self.unstable.snapshot is not None:
            return self.unstable.snapshot
        return self.storage.snapshot()

    def next_committed_entries(self) -> list[Entry]:
        """Committed, not yet applied entries, within the per-Ready byte budget.

        Entries may still be unstable: the Ready contract persists them before applying.
        """
        if self.has_pending_snapshot():
            return []
        lo = max(self.applied + 1, self.first_index())
        if self.committed + 1 <= lo:
            return []
        return self.slice(lo, self.committed + 1, self.committed_bytes_per_ready_max)

    # -- moving pointers -----------------------------------------------------------------

    def commit_to(self, index: LogIndex) -> None:
        if index <= self.committed:
            return  # the commit index never moves backwards
        invariant(
            index <= self.last_index(),
            f"commit {index} beyond last index {self.last_index()}: was the log lost?",
        )
        self.committed = index

    def maybe_commit(self, index: LogIndex, term: Term, *, any_term: bool = False) -> bool:
        """Commit ``index`` if it is of ``term`` (raft-pitfalls 14; ``any_term`` is the bug)."""
        if index > self.committed and (any_term or self.term(index) == term):
            self.commit_to(index)
            return True
        return False

    def applied_to(self, index: LogIndex) -> None:
        if index > self.committed:
            fail(f"applied {index} beyond commit {self.committed}")
        if index < self.applied:
            fail(f"applied went backwards: {index} < {self.applied}")
        self.applied = index

    def stable_to(self, index: LogIndex, term: Term) -> None:
        self.unstable.stable_to(index, term)

    def stable_snap_to(self, index: LogIndex) -> None:
        self.unstable.stable_snap_to(index)

    def restore(self, snapshot: Snapshot) -> None:
        invariant(snapshot.meta.index > self.committed, "restore would move commit backwards")
        self.committed = snapshot.meta.index
        self.unstable.restore(snapshot)
