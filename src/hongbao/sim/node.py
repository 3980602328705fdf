"""A simulated node: one real Raft core, a simulated disk and a tiny state machine.

Rules of this module: it follows the ``Ready`` contract exactly (persist, sync when
``must_sync``, hand the messages out, apply the snapshot then the committed entries,
serve the reads that became answerable, advance) and reports what it did as a
:class:`ReadyOutcome`; it never looks at other nodes, the network or the checker.

The one deliberate deviation is ``DeliberateBugs.ack_before_persist``: the node then
never syncs, so its acknowledgements leave while the entries they vouch for are still in
the page cache, and a crash loses them (raft-pitfalls 2).

A node can be armed to crash inside its next Ready (:class:`CrashPoint`): after writing
but before syncing, after persisting but before sending, after sending but before
applying, or after applying but before ``advance``. A real runtime dies at any of these
points; each leaves a different mix of what is durable, what was sent and what applied.
"""

from __future__ import annotations

import enum
import random
from dataclasses import dataclass, replace

from hongbao._invariant import InvariantViolation, invariant
from hongbao.raft.config import RaftConfig
from hongbao.raft.core import RaftCore
from hongbao.raft.types import ConfState, Entry, Message, NodeId, ReadState, Ready, Term
from hongbao.sim.config import PENDING_READS_PER_NODE_MAX
from hongbao.sim.disk import (
    CreateSnapshot,
    SimDisk,
    WriteEntries,
    WriteHardState,
    WriteMachine,
    WriteSnapshot,
)
from hongbao.sim.state_machine import MachineImage, StateMachine


class CrashPoint(enum.Enum):
    WRITTEN = "written"  # written to the page cache, not synced, nothing sent
    PERSISTED = "persisted"  # synced as must_sync says, nothing sent
    SENT = "sent"  # persisted and sent, nothing applied
    APPLIED = "applied"  # applied and answered (the state not synced), no advance()


@dataclass(frozen=True, slots=True)
class AppliedEntry:
    entry: Entry
    image: MachineImage  # the state right after applying ``entry``


@dataclass(frozen=True, slots=True)
class ServedRead:
    context: bytes
    image: MachineImage  # the state the read returned


@dataclass(frozen=True, slots=True)
class ReadyOutcome:
    """What one Ready round did, for the cluster to route and the checker to judge."""

    messages: tuple[Message, ...]
    persisted: tuple[Entry, ...]  # entries now in the log (compacted ones left out)
    prev_term: Term  # term of the entry just before ``persisted[0]``
    synced: bool
    restored: MachineImage | None
    applied: tuple[AppliedEntry, ...]
    served: tuple[ServedRead, ...]
    lost_leadership: bool
    crashed_at: CrashPoint | None = None  # the node must crash now, at this point


class SimNode:
    def __init__(
        self,
        *,
        node_id: NodeId,
        region: int,
        bootstrap: ConfState,
        raft_config: RaftConfig,
        rng: random.Random,
    ) -> None:
        self.node_id = node_id
        self.region = region
        self._raft_config = replace(raft_config, node_id=node_id)
        self._rng = rng
        self.disk = SimDisk(bootstrap)
        self.machine = StateMachine(self.disk.machine_durable)
        self.core: RaftCore | None = None
        self.incarnation = 0
        self._pending_reads: list[ReadState] = []
        self.crash_point: CrashPoint | None = None  # armed by the fault injector
        self.start()

    @property
    def alive(self) -> bool:
        return self.core is not None

    def live_core(self) -> RaftCore:
        if self.core is None:
            raise InvariantViolation(f"node {self.node_id} is down")
        return self.core

    # -- lifecycle -------------------------------------------------------------------------

    def start(self) -> MachineImage | None:
        """(Re)start from what is durable; returns the image restored from a snapshot, if any."""
        invariant(self.core is None, f"node {self.node_id} is already running")
        self.machine = StateMachine(self.disk.machine_durable)
        restored = None
        snapshot = self.disk.volatile.snapshot()
        if snapshot.meta.index > self.machine.applied_index:
            # The snapshot install was synced but the state machine write after it was not.
            restored = self.machine.restore(snapshot)
        config = replace(self._raft_config, applied_index=self.machine.applied_index)
        self.core = RaftCore(config, self.disk.volatile, self._rng)
        self.incarnation += 1
        self._pending_reads = []
        self.crash_point = None
        return restored

    def crash(self) -> int:
        """Stop at once; every unsynced write is lost. Returns how many writes were lost."""
        self.core = None
        self._pending_reads = []
        return self.disk.crash()

    # -- the Ready loop --------------------------------------------------------------------

    def handle_ready(self) -> ReadyOutcome | None:
        core = self.live_core()
        if not core.has_ready():
            return None
        point, self.crash_point = self.crash_point, None
        ready = core.ready()
        persisted, prev_term = self._write(ready)
        if point is CrashPoint.WRITTEN:
            return _crashed(point, (), persisted, prev_term, synced=False)
        synced = ready.must_sync and not self._raft_config.bugs.ack_before_persist
        if synced:
            self.disk.sync()
        if point is CrashPoint.PERSISTED:
            return _crashed(point, (), persisted, prev_term, synced=synced)
        if point is CrashPoint.SENT:
            return _crashed(point, ready.messages, persisted, prev_term, synced=synced)
        restored = None
        if ready.snapshot is not None:
            restored = self.machine.restore(ready.snapshot)
        applied = tuple(
            AppliedEntry(entry, self.machine.apply(entry)) for entry in ready.committed_entries
        )
        if restored is not None or applied:
            self.disk.write(WriteMachine(self.machine.image))
        self._pending_reads.extend(ready.read_states)
        served = self._serve_reads()
        # Beyond the bound the oldest clients time out (their reads are simply never served).
        del self._pending_reads[: max(0, len(self._pending_reads) - PENDING_READS_PER_NODE_MAX)]
        if point is None:
            core.advance(ready)
        return ReadyOutcome(
            messages=ready.messages,
            persisted=persisted,
            prev_term=prev_term,
            synced=synced,
            restored=restored,
            applied=applied,
            served=served,
            lost_leadership=ready.lost_leadership,
            crashed_at=point,
        )

    def _write(self, ready: Ready) -> tuple[tuple[Entry, ...], Term]:
        """Write the Ready's snapshot, entries and hard state (not synced yet)."""
        disk = self.disk
        if ready.snapshot is not None:
            disk.write(WriteSnapshot(ready.snapshot))
        persisted: tuple[Entry, ...] = ()
        prev_term: Term = 0
        if ready.entries:
            disk.write(WriteEntries(ready.entries))
            first = disk.volatile.first_index()
            persisted = tuple(e for e in ready.entries if e.index >= first)
            if persisted:
                prev_term = disk.volatile.term(persisted[0].index - 1)
        if ready.hard_state is not None:
            disk.write(WriteHardState(ready.hard_state))
        return persisted, prev_term

    def _serve_reads(self) -> tuple[ServedRead, ...]:
        applied = self.machine.applied_index
        ready_now = [r for r in self._pending_reads if r.index <= applied]
        if not ready_now:
            return ()
        self._pending_reads = [r for r in self._pending_reads if r.index > applied]
        return tuple(ServedRead(r.context, self.machine.image) for r in ready_now)

    # -- runtime snapshots -----------------------------------------------------------------

    def maybe_snapshot(self, *, interval_entries: int, compaction_lag_max: int) -> bool:
        """Snapshot the state machine and compact the log once enough has been applied."""
        image = self.machine.image
        storage = self.disk.volatile
        if image.applied_index - storage.snapshot().meta.index < interval_entries:
            return False
        lag = self._rng.randint(0, compaction_lag_max)
        compact_index = max(storage.first_index() - 1, image.applied_index - lag)
        self.disk.write(
            CreateSnapshot(
                index=image.applied_index,
                conf_state=image.conf_state,
                data=image.encode(),
                compact_index=compact_index,
            )
        )
        return True


def _crashed(
    point: CrashPoint,
    messages: tuple[Message, ...],
    persisted: tuple[Entry, ...],
    prev_term: Term,
    *,
    synced: bool,
) -> ReadyOutcome:
    """The part of a Ready that happened before the node died at ``point``."""
    return ReadyOutcome(
        messages=messages,
        persisted=persisted,
        prev_term=prev_term,
        synced=synced,
        restored=None,
        applied=(),
        served=(),
        lost_leadership=False,
        crashed_at=point,
    )
