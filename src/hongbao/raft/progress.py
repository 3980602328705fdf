"""What a leader knows about each follower (etcd's ``tracker``).

A follower is in one of three states: PROBE (send one append at a time until we find
where our logs match), REPLICATE (stream appends optimistically within a bounded window
of in-flight messages and bytes), SNAPSHOT (a snapshot is on its way; send nothing else).
"""

from __future__ import annotations

import enum
from collections import deque

from hongbao._invariant import invariant
from hongbao.raft.types import LogIndex


class ProgressState(enum.Enum):
    PROBE = "probe"
    REPLICATE = "replicate"
    SNAPSHOT = "snapshot"


class Inflights:
    """A bounded window of in-flight appends: (last index, bytes) per message."""

    __slots__ = ("_bytes", "_window", "bytes_max", "count_max")

    def __init__(self, *, count_max: int, bytes_max: int) -> None:
        invariant(count_max > 0, "inflight count limit must be positive")
        self.count_max = count_max
        self.bytes_max = bytes_max
        self._window: deque[tuple[LogIndex, int]] = deque()
        self._bytes = 0

    def add(self, index: LogIndex, size_bytes: int) -> None:
        invariant(not self.full(), "adding to a full inflight window")
        if self._window:
            invariant(index > self._window[-1][0], "inflight indexes must increase")
        self._window.append((index, size_bytes))
        self._bytes += size_bytes

    def free_le(self, index: LogIndex) -> None:
        """Forget every message whose last index is <= ``index`` (acknowledged)."""
        while self._window and self._window[0][0] <= index:
            self._bytes -= self._window.popleft()[1]

    def free_first_one(self) -> None:
        if self._window:
            self._bytes -= self._window.popleft()[1]

    def full(self) -> bool:
        return len(self._window) >= self.count_max or self._bytes >= self.bytes_max

    def count(self) -> int:
        return len(self._window)

    def reset(self) -> None:
        self._window.clear()
        self._bytes = 0


class Progress:
    __slots__ = (
        "inflights",
        "match",
        "next",
        "pending_snapshot",
        "probe_sent",
        "recent_active",
        "snapshot_elapsed_ticks",
        "state",
    )

    def __init__(self, *, next_index: LogIndex, inflights: Inflights) -> None:
        self.match: LogIndex = 0
        self.next: LogIndex = next_index
        self.state = ProgressState.PROBE
        self.probe_sent = False
        self.pending_snapshot: LogIndex = 0
        self.snapshot_elapsed_ticks = 0
        self.recent_active = False
        self.inflights = inflights

    def _reset_state(self, state: ProgressState) -> None:
        self.probe_sent = False
        self.pending_snapshot = 0
        self.snapshot_elapsed_ticks = 0
        self.state = state
        self.inflights.reset()

    def become_probe(self) -> None:
        if self.state is ProgressState.SNAPSHOT:
            pending = self.pending_snapshot
            self._reset_state(ProgressState.PROBE)
            self.next = max(self.match + 1, pending + 1)
        else:
            self._reset_state(ProgressState.PROBE)
            self.next = self.match + 1

    def become_replicate(self) -> None:
        self._reset_state(ProgressState.REPLICATE)
        self.next = self.match + 1

    def become_snapshot(self, snapshot_index: LogIndex) -> None:
        self._reset_state(ProgressState.SNAPSHOT)
        self.pending_snapshot = snapshot_index

    def sent_entries(self, *, count: int, size_bytes: int) -> None:
        """Record an append just sent that started at ``self.next``."""
        if self.state is ProgressState.REPLICATE:
            if count > 0:
                last = self.next + count - 1
                self.next = last + 1
                self.inflights.add(last, size_bytes)
        elif self.state is ProgressState.PROBE:
            self.probe_sent = True
        else:
            invariant(False, "sending entries to a follower that awaits a snapshot")

    def maybe_update(self, index: LogIndex) -> bool:
        """A follower acknowledged ``index``; ``match`` never moves backwards (pitfall 11)."""
        updated = False
        if self.match < index:
            self.match = index
            updated = True
            self.probe_sent = False
        self.next = max(self.next, index + 1)
        return updated

    def maybe_decrease_to(self, rejected: LogIndex, match_hint: LogIndex) -> bool:
        """A follower rejected the append after ``rejected``; False if the rejection is stale."""
        if self.state is ProgressState.REPLICATE:
            if rejected <= self.match:
                return False
            self.next = self.match + 1  # fall back to probing from what is known to match
            return True
        if self.next - 1 != rejected:
            return False
        self.next = max(min(rejected, match_hint + 1), self.match + 1)
        self.probe_sent = False
        return True

    def is_paused(self) -> bool:
        if self.state is ProgressState.PROBE:
            return self.probe_sent
        if self.state is ProgressState.REPLICATE:
            return self.inflights.full()
        return True
