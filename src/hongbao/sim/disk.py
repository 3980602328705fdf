"""A simulated disk: what the core reads now versus what survives a crash.

Rules of this module: every write lands at once in ``volatile`` (the page cache: the
``MemoryStorage`` the core reads) and joins an ordered list of unsynced writes; ``sync``
replays that list onto ``durable``. A crash throws the unsynced list away and rebuilds
``volatile`` from ``durable``. So a runtime that acknowledges before it syncs loses, on a
crash, exactly what a real one would (raft-pitfalls 2).

Why the state machine's image is a write too: it joins the same ordered list as the log,
so after a crash the durable applied index never exceeds the durable commit index (the
hard state that committed an entry is always written before the entry's effects).
"""

from __future__ import annotations

from dataclasses import dataclass

from hongbao._invariant import invariant
from hongbao.raft.storage import MemoryStorage
from hongbao.raft.types import ConfState, Entry, HardState, LogIndex, Snapshot
from hongbao.sim.config import UNSYNCED_WRITES_MAX
from hongbao.sim.state_machine import MachineImage


@dataclass(frozen=True, slots=True)
class WriteEntries:
    entries: tuple[Entry, ...]


@dataclass(frozen=True, slots=True)
class WriteHardState:
    hard_state: HardState


@dataclass(frozen=True, slots=True)
class WriteSnapshot:
    """A follower installs a leader's snapshot (replaces the whole log)."""

    snapshot: Snapshot


@dataclass(frozen=True, slots=True)
class CreateSnapshot:
    """The runtime snapshots its own state machine and compacts the log behind it."""

    index: LogIndex
    conf_state: ConfState
    data: bytes
    compact_index: LogIndex


@dataclass(frozen=True, slots=True)
class WriteMachine:
    image: MachineImage


Write = WriteEntries | WriteHardState | WriteSnapshot | CreateSnapshot | WriteMachine


class SimDisk:
    def __init__(self, bootstrap: ConfState) -> None:
        self._bootstrap = bootstrap
        self.volatile = MemoryStorage(bootstrap)
        self._durable = MemoryStorage(bootstrap)
        self.machine_durable = MachineImage.initial(bootstrap)
        self._machine_volatile = self.machine_durable
        self._unsynced: list[Write] = []

    @property
    def unsynced_count(self) -> int:
        return len(self._unsynced)

    def write(self, write: Write) -> None:
        """Apply ``write`` to what the core sees; it is durable only after :meth:`sync`."""
        self._machine_volatile = _apply(self.volatile, write, self._machine_volatile)
        self._unsynced.append(write)
        if len(self._unsynced) > UNSYNCED_WRITES_MAX:
            self.sync()  # the page cache writes back on its own when it is this full

    def sync(self) -> None:
        for write in self._unsynced:
            self.machine_durable = _apply(self._durable, write, self.machine_durable)
        self._unsynced.clear()
        invariant(
            self._durable.last_index() == self.volatile.last_index(),
            "after a sync the durable log must equal the volatile one",
        )

    def crash(self) -> int:
        """Lose every unsynced write; return how many were lost."""
        lost = len(self._unsynced)
        self._unsynced.clear()
        self.volatile = self._rebuild()
        self._machine_volatile = self.machine_durable
        return lost

    def _rebuild(self) -> MemoryStorage:
        """A fresh volatile storage holding exactly what is durable."""
        storage = MemoryStorage(self._bootstrap)
        snapshot = self._durable.snapshot()
        if snapshot.meta.index > 0:
            storage.apply_snapshot(snapshot)
        first, last = self._durable.first_index(), self._durable.last_index()
        if last >= first:
            storage.append(self._durable.entries(lo=first, hi=last + 1, max_bytes=None))
        storage.set_hard_state(self._durable.initial_state()[0])
        return storage


def _apply(storage: MemoryStorage, write: Write, machine: MachineImage) -> MachineImage:
    """Apply one write to one storage; returns the state machine image after it."""
    if isinstance(write, WriteEntries):
        storage.append(list(write.entries))
    elif isinstance(write, WriteHardState):
        storage.set_hard_state(write.hard_state)
    elif isinstance(write, WriteSnapshot):
        storage.apply_snapshot(write.snapshot)
    elif isinstance(write, CreateSnapshot):
        storage.create_snapshot(index=write.index, conf_state=write.conf_state, data=write.data)
        storage.compact(write.compact_index)
    else:
        return write.image
    return machine
