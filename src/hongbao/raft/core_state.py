"""The state one Raft replica keeps, and the moves every part of the core shares.

Why a base class: the core is one state machine, but its parts (elections in
``election.py``, the read path in ``read_path.py``, replication and the Ready contract in
``core.py``) are separate concepts. They share this state and these low-level moves
(role resets, progress tracking, queueing a message); the methods a part needs from
another part are declared here and defined where they belong.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from hongbao._invariant import fail, invariant
from hongbao.raft.config import RaftConfig
from hongbao.raft.log import RaftLog
from hongbao.raft.membership import ConfHistory
from hongbao.raft.progress import Inflights, Progress
from hongbao.raft.read_only import ReadOnly
from hongbao.raft.storage import LogStorage
from hongbao.raft.types import (
    NONE,
    ConfState,
    Entry,
    EntryType,
    HardState,
    LogIndex,
    Message,
    MessageType,
    NodeId,
    ReadState,
    Role,
    Snapshot,
    SoftState,
    Term,
)

MT = MessageType
MESSAGES_PENDING_MAX = 1 << 20


@dataclass(frozen=True, slots=True)
class PeerStatus:
    match: LogIndex
    next: LogIndex
    state: str
    recent_active: bool


@dataclass(frozen=True, slots=True)
class Status:
    node_id: NodeId
    role: Role
    term: Term
    leader_id: NodeId
    commit_index: LogIndex
    applied_index: LogIndex
    last_index: LogIndex
    conf_state: ConfState
    peers: dict[NodeId, PeerStatus]
    leader_transferee: NodeId


class CoreState:
    """The fields of one replica; single-threaded: the runtime serialises all calls."""

    def __init__(self, config: RaftConfig, storage: LogStorage, rng: random.Random) -> None:
        config.validate()
        self.config = config
        self.node_id = config.node_id
        self._rng = rng
        hard_state, conf_state = storage.initial_state()
        self._log = RaftLog(
            storage,
            applied=config.applied_index,
            committed_bytes_per_ready_max=config.committed_bytes_per_ready_max,
        )
        self.term: Term = hard_state.term
        self.vote: NodeId = hard_state.vote
        self.role = Role.FOLLOWER
        self.leader_id: NodeId = NONE
        self._election_elapsed_ticks = 0
        self._heartbeat_elapsed_ticks = 0
        self._election_timeout_randomized_ticks = 0
        self._votes: dict[NodeId, bool] = {}
        # Campaign gating (a draining region, CockroachDB #66103): see Elections.
        self._campaign_allowed = True
        self._timeouts_without_leader = 0  # consecutive election timeouts, no leader heard
        # Ticks since start (never reset) and, on a leader, the tick each voter was last
        # heard from in this term: what quorum_active() reads.
        self._ticks_total = 0
        self._heard_at_tick: dict[NodeId, int] = {}
        self._progress: dict[NodeId, Progress] = {}
        self._leader_transferee: NodeId = NONE
        # Times the transfer alone: sharing the CheckQuorum counter would let a stream of
        # transfer requests keep an isolated leader from ever stepping down (pitfall 8).
        self._transfer_elapsed_ticks = 0
        # Quiescence (raft/quiesce.py): an idle group's timers stand still.
        self._quiesced = False
        self._heard_since_wake: set[NodeId] = set()  # voters answering since the last wake
        self._uncommitted_bytes = 0
        self._read_only = ReadOnly(config.pending_reads_max)
        self._reads_before_commit: list[Message] = []
        self._messages: list[Message] = []
        self._broadcast_pending = False
        self._read_states: list[ReadState] = []
        self._conf = ConfHistory(base_index=self._log.first_index() - 1, base=conf_state)
        self._load_conf_entries(storage)
        # An applied entry was committed even if the hard state's commit lagged on disk.
        commit = max(hard_state.commit, self._log.applied)
        invariant(commit <= self._log.last_index(), f"commit {commit} beyond the stored log")
        self._log.commit_to(commit)
        invariant(self._log.applied <= self._log.committed, "applied index beyond commit")
        self._prev_hard_state = HardState(self.term, self.vote, self._log.committed)
        self._prev_soft_state = SoftState(NONE, Role.FOLLOWER)
        self._leader_term_at_last_ready: Term | None = None
        self._ready_outstanding = False
        self._become_follower(self.term, NONE)

    def _load_conf_entries(self, storage: LogStorage) -> None:
        """Rebuild the configuration from conf-change entries still in the stored log."""
        first, last = storage.first_index(), storage.last_index()
        if last < first:
            return
        for entry in storage.entries(lo=first, hi=last + 1, max_bytes=None):
            if entry.type is EntryType.CONF_CHANGE:
                self._conf.push(entry)

    # -- public read-only view -----------------------------------------------------------

    @property
    def commit_index(self) -> LogIndex:
        return self._log.committed

    @property
    def applied_index(self) -> LogIndex:
        return self._log.applied

    @property
    def last_index(self) -> LogIndex:
        return self._log.last_index()

    @property
    def conf_state(self) -> ConfState:
        """The configuration in force: the one at the end of the log."""
        return self._conf.current

    @property
    def applied_conf_state(self) -> ConfState:
        """The configuration as of the applied index: what a snapshot taken now records."""
        return self._conf.at(self._log.applied)

    def term_at(self, index: LogIndex) -> Term | None:
        return self._log.term(index)

    def status(self) -> Status:
        peers = {
            node: PeerStatus(pr.match, pr.next, pr.state.value, pr.recent_active)
            for node, pr in sorted(self._progress.items())
        }
        return Status(
            node_id=self.node_id,
            role=self.role,
            term=self.term,
            leader_id=self.leader_id,
            commit_index=self._log.committed,
            applied_index=self._log.applied,
            last_index=self._log.last_index(),
            conf_state=self.conf_state,
            peers=peers,
            leader_transferee=self._leader_transferee,
        )

    def _hard_state(self) -> HardState:
        return HardState(self.term, self.vote, self._log.committed)

    def _soft_state(self) -> SoftState:
        return SoftState(self.leader_id, self.role)

    # -- timers and role transitions ----------------------------------------------------

    def _reset_randomized_election_timeout(self) -> None:
        """Pitfall 6: a fresh random timeout in [timeout, 2 * timeout) at every reset."""
        base = self.config.election_timeout_ticks
        self._election_timeout_randomized_ticks = base + self._rng.randrange(base)

    # -- role transitions ----------------------------------------------------------------

    def _reset(self, term: Term) -> None:
        if self.term != term:
            invariant(term > self.term, f"term going backwards: {self.term} -> {term}")
            self.term = term
            self.vote = NONE
        self.leader_id = NONE
        self._election_elapsed_ticks = 0
        self._heartbeat_elapsed_ticks = 0
        self._reset_randomized_election_timeout()
        self._leader_transferee = NONE
        self._transfer_elapsed_ticks = 0
        self._quiesced = False
        self._heard_since_wake = set()
        self._votes = {}
        self._heard_at_tick = {}
        self._uncommitted_bytes = 0
        self._read_only = ReadOnly(self.config.pending_reads_max)
        self._reads_before_commit = []
        self._progress = {}
        self._sync_progress()

    def _new_progress(self) -> Progress:
        return Progress(
            next_index=self._log.last_index() + 1,
            inflights=Inflights(
                count_max=self.config.inflight_messages_max,
                bytes_max=self.config.inflight_bytes_max,
            ),
        )

    def _sync_progress(self) -> None:
        """Track exactly the members of the configuration in force."""
        members = self.conf_state.members
        for node in [n for n in self._progress if n not in members]:
            del self._progress[node]
        for node in sorted(members):
            if node not in self._progress:
                self._progress[node] = self._new_progress()
        own = self._progress.get(self.node_id)
        if own is not None:
            own.match = max(own.match, self._log.last_index())
            own.recent_active = True

    def _become_follower(self, term: Term, leader: NodeId) -> None:
        self._reset(term)
        self.leader_id = leader
        self.role = Role.FOLLOWER

    # -- provided by the other parts of the core ----------------------------------------

    def _step(self, m: Message) -> None:
        raise NotImplementedError

    def _append_entries(self, entries: list[Entry]) -> None:
        raise NotImplementedError

    def _broadcast_append(self) -> None:
        raise NotImplementedError

    def _broadcast_heartbeat(self, context: bytes) -> None:
        raise NotImplementedError

    def _wake(self, *, assume_heard: bool = True) -> None:
        raise NotImplementedError

    def quorum_active(self) -> bool:
        raise NotImplementedError

    # -- sending -------------------------------------------------------------------------

    def _send(
        self,
        type_: MessageType,
        *,
        to: NodeId,
        term: Term | None = None,
        from_: NodeId | None = None,
        index: LogIndex = 0,
        log_term: Term = 0,
        entries: tuple[Entry, ...] = (),
        commit: LogIndex = 0,
        reject: bool = False,
        reject_hint: LogIndex = 0,
        snapshot: Snapshot | None = None,
        context: bytes = b"",
        quiesce: bool = False,
    ) -> None:
        if to == self.node_id:
            fail(f"node {self.node_id} sending {type_} to itself")
        invariant(len(self._messages) < MESSAGES_PENDING_MAX, "outgoing message queue full")
        self._messages.append(
            Message(
                type=type_,
                to=to,
                from_=self.node_id if from_ is None else from_,
                term=self.term if term is None else term,
                log_term=log_term,
                index=index,
                entries=entries,
                commit=commit,
                reject=reject,
                reject_hint=reject_hint,
                snapshot=snapshot,
                context=context,
                quiesce=quiesce,
            )
        )
