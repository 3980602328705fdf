"""The configuration history of one replica (raft-pitfalls 23).

A configuration is in force as soon as its conf-change entry is in the log, committed or
not. The history keeps the configuration at the snapshot point and after every
conf-change entry still in the log, so that truncating the log can fall back to the
configuration at its new end, and a snapshot can record the configuration as of the
applied index.
"""

from __future__ import annotations

from hongbao._invariant import invariant
from hongbao.raft.confchange import ConfChange, ConfChangeError, apply_change
from hongbao.raft.types import ConfState, Entry, EntryType, LogIndex


class ConfHistory:
    __slots__ = ("_points",)

    def __init__(self, *, base_index: LogIndex, base: ConfState) -> None:
        self._points: list[tuple[LogIndex, ConfState]] = [(base_index, base)]

    @property
    def current(self) -> ConfState:
        return self._points[-1][1]

    @property
    def last_change_index(self) -> LogIndex:
        """Index of the newest conf-change entry (or the snapshot point if none is left)."""
        return self._points[-1][0]

    def at(self, index: LogIndex) -> ConfState:
        """The configuration in force once the log up to ``index`` is applied."""
        conf = self._points[0][1]
        for point_index, candidate in self._points:
            if point_index <= index:
                conf = candidate
        return conf

    def written(self, entries: tuple[Entry, ...]) -> bool:
        """``entries`` were just written from ``entries[0].index`` on; True if conf changed."""
        if not entries:
            return False
        changed = self.truncate_from(entries[0].index)
        for entry in entries:
            if entry.type is EntryType.CONF_CHANGE:
                self.push(entry)
                changed = True
        return changed

    def truncate_from(self, index: LogIndex) -> bool:
        changed = False
        while len(self._points) > 1 and self._points[-1][0] >= index:
            self._points.pop()
            changed = True
        return changed

    def push(self, entry: Entry) -> None:
        invariant(entry.type is EntryType.CONF_CHANGE, "push of a non-conf entry")
        invariant(entry.index > self._points[-1][0], "conf changes must come in log order")
        current = self.current
        try:
            new_conf = apply_change(current, ConfChange.decode(entry.data))
        except ConfChangeError:
            new_conf = current  # an invalid change is a no-op, identically on every replica
        self._points.append((entry.index, new_conf))

    def reset(
        self,
        *,
        base_index: LogIndex,
        base: ConfState,
        applied_index: LogIndex,
        applied: ConfState | None,
    ) -> None:
        """A snapshot at ``base_index`` replaced the log; it is not applied yet.

        Until it is (the runtime's ``advance``), the state machine is still at
        ``applied_index`` with the configuration ``applied``: that stays the answer of
        ``at(applied_index)``, so a snapshot the runtime takes in between records the
        membership of the state it holds. ``prune`` drops it once the snapshot is applied.
        """
        self._points = [(base_index, base)]
        if applied is not None and applied_index < base_index:
            self._points.insert(0, (applied_index, applied))

    def prune(self, applied: LogIndex) -> None:
        """Forget points that no snapshot at or after ``applied`` can need."""
        while len(self._points) > 1 and self._points[1][0] <= applied:
            self._points.pop(0)
