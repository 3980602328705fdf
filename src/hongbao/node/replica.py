"""One shard replica inside a node: its core, its log, and the requests waiting on it.

Rules of this module: it holds state and bookkeeping only (queues, waiters, their
bounds); the order of I/O belongs to ``runtime``. A client command goes through three
stages, each with a bound: *pending* (queued until the next cycle packs it into an
entry), *in flight* (proposed at (index, term), waiting for that entry to be applied),
*done* (its future resolved with the ledger's result or a typed error).
"""

from __future__ import annotations

import asyncio
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from hongbao.ledger.overlay import Speculation
from hongbao.node.errors import ErrorReason, HongbaoError, make_error
from hongbao.node.state_machine import GroupMachine
from hongbao.node.storage import LmdbLogStorage
from hongbao.raft.core import RaftCore
from hongbao.raft.types import LogIndex, Term


@dataclass(slots=True)
class PendingCommand:
    """A command for the group's machine (a ledger Command, or a meta SetRegion)."""

    command: object
    future: asyncio.Future[Any]


@dataclass(slots=True)
class InflightEntry:
    """A proposed entry: its commands' futures wait until index ``index`` is applied."""

    term: Term
    futures: list[asyncio.Future[Any]]
    # The results of a speculative machine's entry: its leader evaluated them when it
    # proposed, and applying the entry (its effects) gives none (state_machine.py).
    results: tuple[object, ...] | None = None


@dataclass(slots=True)
class PendingRead:
    """A linearizable read: waits for its ReadState, then for the applied index."""

    future: asyncio.Future[LogIndex]
    read_index: LogIndex | None = None


@dataclass
class ShardReplica:
    """One group's replica: a ledger shard, or the meta group (``shard_id`` is the group id)."""

    shard_id: int
    core: RaftCore
    log: LmdbLogStorage
    machine: GroupMachine
    pending: deque[PendingCommand] = field(default_factory=deque)
    inflight: dict[LogIndex, InflightEntry] = field(default_factory=dict)
    reads_unsent: list[PendingRead] = field(default_factory=list)
    reads_by_context: dict[bytes, list[PendingRead]] = field(default_factory=dict)
    reads_confirmed: list[PendingRead] = field(default_factory=list)
    snapshot_index: LogIndex = 0
    # A speculative machine's leader: the writes it proposed that are not applied yet.
    speculation: Speculation = field(default_factory=Speculation)
    # Counters for /metrics (hongbao.metrics.node reads them at scrape time): plain ints
    # bumped on the loop, so the hot path pays an addition, not a metrics library's lock.
    proposals_total: int = 0  # entries this replica proposed as leader
    entries_applied_total: int = 0  # normal entries applied (conf changes excluded)
    snapshot_sends_total: int = 0  # SNAP messages handed to the transport
    snapshot_installs_total: int = 0
    grabs_settled_total: int = 0  # grabs answered from the applied state, no entry
    # The last (leader, term) logged as leader_changed: one line per change, not per cycle.
    logged_leader: tuple[int, int] = (0, 0)

    @property
    def is_leader(self) -> bool:
        return self.core.role.value == "leader"

    def fail_pending(self, error: HongbaoError) -> None:
        """Commands never proposed: definitely not applied, safe to retry anywhere."""
        while self.pending:
            _resolve_error(self.pending.popleft().future, error)

    def resolve_applied(
        self, index: LogIndex, term: Term, results: tuple[object, ...] | None
    ) -> None:
        """Entry ``index`` of ``term`` applied with ``results`` (None: the proposer's)."""
        entry = self.inflight.pop(index, None)
        if entry is None:
            return
        if entry.term != term:
            # Another leader's entry took this index: ours was never committed.
            error = make_error(
                ErrorReason.NOT_LEADER,
                "leadership changed before the command committed; retry",
                shard_id=self.shard_id,
            )
            for future in entry.futures:
                _resolve_error(future, error)
            return
        if results is None:
            results = entry.results or ()
        for future, result in zip(entry.futures, results, strict=False):
            if not future.done():
                future.set_result(result)
        for future in entry.futures[len(results) :]:
            _resolve_error(future, make_error(ErrorReason.INTERNAL, "no result for command"))

    def fail_inflight_up_to(self, index: LogIndex) -> None:
        """Entries skipped by a snapshot: they may or may not have been applied."""
        for entry_index in sorted(i for i in self.inflight if i <= index):
            error = make_error(
                ErrorReason.OUTCOME_UNKNOWN,
                "a snapshot replaced the log before the result was seen; retry with the same"
                " request id",
                shard_id=self.shard_id,
            )
            for future in self.inflight.pop(entry_index).futures:
                _resolve_error(future, error)

    def fail_reads(self, error: HongbaoError) -> None:
        reads = self.reads_unsent + self.reads_confirmed
        for waiting in self.reads_by_context.values():
            reads.extend(waiting)
        self.reads_unsent, self.reads_confirmed, self.reads_by_context = [], [], {}
        for read in reads:
            if not read.future.done():
                read.future.set_exception(error)

    def release_reads(self, applied: LogIndex) -> None:
        still_waiting: list[PendingRead] = []
        for read in self.reads_confirmed:
            if read.read_index is not None and read.read_index <= applied:
                if not read.future.done():
                    read.future.set_result(read.read_index)
            else:
                still_waiting.append(read)
        self.reads_confirmed = still_waiting


def _resolve_error(future: asyncio.Future[Any], error: HongbaoError) -> None:
    if not future.done():
        future.set_exception(error)
