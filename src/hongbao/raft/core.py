"""The Raft consensus core: a pure, deterministic state machine (etcd's ``raft`` + ``RawNode``).

Rules of this module: it takes ticks, messages and proposals and hands back a
:class:`~hongbao.raft.types.Ready` of effects; it never does I/O, never reads a clock and
draws randomness only from the ``random.Random`` it was given. Every rule it enforces is
numbered after ``shared/reference/raft-pitfalls.md`` where one applies.

Membership is used as soon as it is in the log (pitfall 23): ``_conf_history`` holds the
configuration at the snapshot point and after each conf-change entry still in the log;
truncating the log pops it back.
"""

from __future__ import annotations

import enum
import random
from dataclasses import dataclass

from hongbao._invariant import fail, invariant
from hongbao.raft.confchange import ConfChange, apply_change
from hongbao.raft.config import RaftConfig
from hongbao.raft.errors import NotLeader, ProposalDropped
from hongbao.raft.log import RaftLog
from hongbao.raft.membership import ConfHistory
from hongbao.raft.progress import Inflights, Progress, ProgressState
from hongbao.raft.read_only import ReadOnly
from hongbao.raft.storage import Compacted, LogStorage
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
    Ready,
    Role,
    Snapshot,
    SoftState,
    Term,
)

MT = MessageType
CAMPAIGN_TRANSFER = b"transfer"
MESSAGES_PENDING_MAX = 1 << 20
PENDING_READS_BEFORE_COMMIT_MAX = 1024


class _Campaign(enum.Enum):
    PRE_ELECTION = "pre_election"
    ELECTION = "election"
    TRANSFER = "transfer"


class _VoteResult(enum.Enum):
    PENDING = "pending"
    WON = "won"
    LOST = "lost"


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


class RaftCore:
    """One replica of one Raft group. Single-threaded: the runtime serialises all calls."""

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
        self._progress: dict[NodeId, Progress] = {}
        self._leader_transferee: NodeId = NONE
        # Times the transfer alone: sharing the CheckQuorum counter would let a stream of
        # transfer requests keep an isolated leader from ever stepping down (pitfall 8).
        self._transfer_elapsed_ticks = 0
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

    # -- public API: inputs --------------------------------------------------------------

    def tick(self) -> None:
        if self.role is Role.LEADER:
            self._tick_heartbeat()
        else:
            self._tick_election()

    def step(self, message: Message) -> None:
        """Feed a message from a peer. Stale, duplicate and unknown messages are ignored."""
        if message.type in _API_ONLY:
            fail(f"{message.type} is not a wire message")
        if message.to != self.node_id:
            return
        self._step(message)

    def campaign(self) -> None:
        self._step(Message(MT.HUP, from_=self.node_id))

    def propose(self, data: bytes) -> tuple[LogIndex, Term]:
        """Append ``data`` as a new entry on the leader; returns its (index, term).

        Raises :class:`NotLeader` or :class:`ProposalDropped`; nothing was appended then.
        """
        self._check_can_propose()
        entry = Entry(term=self.term, index=self._log.last_index() + 1, data=data)
        size = len(data)
        if self._uncommitted_bytes > 0 and self._uncommitted_bytes + size > (
            self.config.uncommitted_bytes_max
        ):
            raise ProposalDropped("too many uncommitted bytes", self.leader_id)
        self._append_entries([entry])
        self._uncommitted_bytes += size
        self._broadcast_pending = True  # sent at ready(): one append per batch
        return entry.index, entry.term

    def propose_conf_change(self, change: ConfChange) -> tuple[LogIndex, Term]:
        """Propose one membership change (raft-pitfalls 23: one at a time)."""
        self._check_can_propose()
        if self._conf.last_change_index > self._log.committed:
            raise ProposalDropped("a membership change is still uncommitted", self.leader_id)
        if self._log.term(self._log.committed) != self.term:
            raise ProposalDropped("no entry of this term is committed yet", self.leader_id)
        apply_change(self.conf_state, change)  # raises ConfChangeError if invalid
        entry = Entry(
            term=self.term,
            index=self._log.last_index() + 1,
            type=EntryType.CONF_CHANGE,
            data=change.encode(),
        )
        self._append_entries([entry])
        self._broadcast_pending = True  # sent at ready(): one append per batch
        return entry.index, entry.term

    def transfer_leadership(self, target: NodeId) -> None:
        if self.role is not Role.LEADER:
            raise NotLeader("only the leader can transfer leadership", self.leader_id)
        if target not in self.conf_state.voters:
            raise ProposalDropped(f"node {target} is not a voter")
        self._handle_transfer_leader(target)

    def read_index(self, context: bytes) -> None:
        """Start a linearizable read; the answer comes as a ReadState in a later Ready."""
        if not context:
            raise ValueError("a read needs a non-empty context to be recognised by")
        if self.role is Role.LEADER:
            if self._read_only.full():
                raise ProposalDropped("too many pending reads", self.leader_id)
            self._leader_read_index(Message(MT.READ_INDEX, from_=NONE, context=context))
            return
        if self.leader_id == NONE or self.role is not Role.FOLLOWER:
            raise NotLeader("no known leader to confirm the read", self.leader_id)
        self._send(MT.READ_INDEX, to=self.leader_id, context=context, term=0)

    def report_unreachable(self, peer: NodeId) -> None:
        progress = self._progress.get(peer)
        if self.role is not Role.LEADER or progress is None:
            return
        if progress.state is ProgressState.REPLICATE:
            progress.become_probe()

    def report_snapshot(self, peer: NodeId, *, ok: bool) -> None:
        progress = self._progress.get(peer)
        if self.role is not Role.LEADER or progress is None:
            return
        if progress.state is not ProgressState.SNAPSHOT:
            return
        if not ok:
            progress.pending_snapshot = 0
        progress.become_probe()
        # Wait for the next heartbeat response before probing again (etcd does the same).
        progress.probe_sent = True

    # -- public API: outputs -------------------------------------------------------------

    def has_ready(self) -> bool:
        invariant(not self._ready_outstanding, "has_ready() while a Ready is outstanding")
        return bool(
            self._messages
            or self._broadcast_pending
            or self._read_states
            or self._log.unstable.entries
            or self._log.has_pending_snapshot()
            or self._hard_state() != self._prev_hard_state
            or self._soft_state() != self._prev_soft_state
            or self._log.committed > self._log.applied
        )

    def ready(self) -> Ready:
        invariant(not self._ready_outstanding, "ready() twice without advance()")
        if self._broadcast_pending:
            # Proposals since the last Ready go out together, many entries per message.
            self._broadcast_pending = False
            self._broadcast_append()
        hard_state = self._hard_state()
        soft_state = self._soft_state()
        entries = tuple(self._log.unstable.entries)
        snapshot = self._log.unstable.snapshot
        was_leader_term = self._leader_term_at_last_ready
        lost = was_leader_term is not None and (
            self.role is not Role.LEADER or self.term != was_leader_term
        )
        hard_changed = hard_state != self._prev_hard_state
        ready = Ready(
            soft_state=soft_state if soft_state != self._prev_soft_state else None,
            hard_state=hard_state if hard_changed else None,
            entries=entries,
            snapshot=snapshot,
            committed_entries=tuple(self._log.next_committed_entries()),
            messages=tuple(self._messages),
            read_states=tuple(self._read_states),
            # Pitfall 2: whatever this Ready acknowledges (entries, a snapshot) is synced first.
            must_sync=bool(entries)
            or snapshot is not None
            or hard_state.term != self._prev_hard_state.term
            or hard_state.vote != self._prev_hard_state.vote,
            lost_leadership=lost,
        )
        self._messages = []
        self._read_states = []
        self._prev_soft_state = soft_state
        self._leader_term_at_last_ready = self.term if self.role is Role.LEADER else None
        self._ready_outstanding = True
        return ready

    def advance(self, ready: Ready) -> None:
        """The runtime has persisted, sent and applied everything in ``ready``."""
        invariant(self._ready_outstanding, "advance() without ready()")
        self._ready_outstanding = False
        if ready.hard_state is not None:
            self._prev_hard_state = ready.hard_state
        if ready.snapshot is not None:
            self._log.stable_snap_to(ready.snapshot.meta.index)
            if ready.snapshot.meta.index > self._log.applied:
                self._log.applied_to(ready.snapshot.meta.index)
        if ready.committed_entries:
            self._log.applied_to(ready.committed_entries[-1].index)
            if self.role is Role.LEADER:
                released = sum(len(e.data) for e in ready.committed_entries)
                self._uncommitted_bytes = max(0, self._uncommitted_bytes - released)
        if ready.entries:
            last = ready.entries[-1]
            self._log.stable_to(last.index, last.term)
        self._conf.prune(self._log.applied)

    def _hard_state(self) -> HardState:
        return HardState(self.term, self.vote, self._log.committed)

    def _soft_state(self) -> SoftState:
        return SoftState(self.leader_id, self.role)

    # -- timers --------------------------------------------------------------------------

    def _tick_election(self) -> None:
        self._election_elapsed_ticks += 1
        if not self._promotable():
            return
        if self._election_elapsed_ticks >= self._election_timeout_randomized_ticks:
            self._election_elapsed_ticks = 0
            self._step(Message(MT.HUP, from_=self.node_id))

    def _tick_heartbeat(self) -> None:
        self._heartbeat_elapsed_ticks += 1
        self._election_elapsed_ticks += 1
        if self._election_elapsed_ticks >= self.config.election_timeout_ticks:
            self._election_elapsed_ticks = 0
            if self.config.check_quorum:
                self._step(Message(MT.CHECK_QUORUM, from_=self.node_id))
        if self.role is not Role.LEADER:
            return
        if self._leader_transferee != NONE:
            self._transfer_elapsed_ticks += 1
            if self._transfer_elapsed_ticks >= self.config.election_timeout_ticks:
                self._leader_transferee = NONE  # pitfall 19: abandon a slow transfer
        self._expire_snapshot_sends()
        if self._heartbeat_elapsed_ticks >= self.config.heartbeat_interval_ticks:
            self._heartbeat_elapsed_ticks = 0
            self._step(Message(MT.BEAT, from_=self.node_id))

    def _expire_snapshot_sends(self) -> None:
        """A snapshot whose outcome was never reported is presumed lost after a while."""
        limit_ticks = 2 * self.config.election_timeout_ticks
        for progress in self._progress.values():
            if progress.state is ProgressState.SNAPSHOT:
                progress.snapshot_elapsed_ticks += 1
                if progress.snapshot_elapsed_ticks >= limit_ticks:
                    progress.pending_snapshot = 0
                    progress.become_probe()

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
        self._votes = {}
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

    def _become_pre_candidate(self) -> None:
        invariant(self.role is not Role.LEADER, "a leader cannot become a pre-candidate")
        # PreVote changes neither the term nor the vote (pitfall 3).
        self._votes = {}
        self.leader_id = NONE
        self._reset_randomized_election_timeout()
        self.role = Role.PRE_CANDIDATE

    def _become_candidate(self) -> None:
        invariant(self.role is not Role.LEADER, "a leader cannot become a candidate")
        self._reset(self.term + 1)
        self.vote = self.node_id
        self.role = Role.CANDIDATE

    def _become_leader(self) -> None:
        invariant(self.role is Role.CANDIDATE, "only a candidate becomes leader")
        self._reset(self.term)
        self.leader_id = self.node_id
        self.role = Role.LEADER
        own = self._progress.get(self.node_id)
        if own is not None:
            own.become_replicate()
        # Pitfall 14: a no-op of the new term lets older entries commit promptly.
        self._append_entries([Entry(term=self.term, index=self._log.last_index() + 1)])

    def _promotable(self) -> bool:
        return self.node_id in self.conf_state.voters and not self._log.has_pending_snapshot()

    # -- elections -----------------------------------------------------------------------

    def _campaign(self, kind: _Campaign) -> None:
        if not self._promotable():
            return
        if kind is _Campaign.PRE_ELECTION:
            self._become_pre_candidate()
            vote_type, vote_term = MT.PRE_VOTE, self.term + 1
        else:
            self._become_candidate()
            vote_type, vote_term = MT.VOTE, self.term
        if self._poll(self.node_id, granted=True) is _VoteResult.WON:
            self._win_campaign(kind)
            return
        context = CAMPAIGN_TRANSFER if kind is _Campaign.TRANSFER else b""
        for voter in sorted(self.conf_state.voters):
            if voter == self.node_id:
                continue
            self._send(
                vote_type,
                to=voter,
                term=vote_term,
                index=self._log.last_index(),
                log_term=self._log.last_term(),
                context=context,
            )

    def _win_campaign(self, kind: _Campaign) -> None:
        if kind is _Campaign.PRE_ELECTION:
            self._campaign(_Campaign.ELECTION)
        else:
            self._become_leader()
            self._broadcast_append()

    def _poll(self, node: NodeId, *, granted: bool) -> _VoteResult:
        voters = self.conf_state.voters
        if node in voters:
            self._votes.setdefault(node, granted)
        yes = sum(1 for n, g in self._votes.items() if g and n in voters)
        no = sum(1 for n, g in self._votes.items() if not g and n in voters)
        quorum = len(voters) // 2 + 1
        if yes >= quorum:
            return _VoteResult.WON
        if no > len(voters) - quorum:
            return _VoteResult.LOST
        return _VoteResult.PENDING

    def _handle_vote_request(self, m: Message) -> None:
        """Pitfalls 4 and 7: grant only to an up-to-date log, once per term."""
        pre = m.type is MT.PRE_VOTE
        can_vote = (
            self.vote == m.from_
            or (self.vote == NONE and self.leader_id == NONE)
            or (pre and m.term > self.term)
        )
        up_to_date = self.config.bugs.vote_without_log_check or self._log.is_up_to_date(
            m.index, m.log_term
        )
        response = MT.PRE_VOTE_RESP if pre else MT.VOTE_RESP
        if can_vote and up_to_date:
            self._send(response, to=m.from_, term=m.term)
            if not pre:
                self._election_elapsed_ticks = 0
                self.vote = m.from_
        else:
            self._send(response, to=m.from_, term=self.term, reject=True)

    # -- the step function ---------------------------------------------------------------

    def _step(self, m: Message) -> None:
        if m.term > self.term:
            if not self._adopt_higher_term(m):
                return
        elif 0 < m.term < self.term:
            self._answer_stale_term(m)
            return
        if m.type is MT.HUP:
            self._handle_hup()
        elif m.type in (MT.VOTE, MT.PRE_VOTE):
            self._handle_vote_request(m)
        elif self.role is Role.LEADER:
            self._step_leader(m)
        elif self.role is Role.FOLLOWER:
            self._step_follower(m)
        else:
            self._step_candidate(m)

    def _adopt_higher_term(self, m: Message) -> bool:
        """Pitfall 3; returns False if the message is to be ignored altogether."""
        if m.type in (MT.VOTE, MT.PRE_VOTE):
            forced = m.context == CAMPAIGN_TRANSFER
            in_lease = (
                (self.config.check_quorum or m.type is MT.PRE_VOTE)
                and self.leader_id != NONE
                and self._election_elapsed_ticks < self.config.election_timeout_ticks
            )
            if in_lease and not forced:
                return False  # pitfall 7: a live leader is known; do not help depose it
        if m.type is MT.PRE_VOTE:
            return True  # never change the term for a pre-vote
        if m.type is MT.PRE_VOTE_RESP and not m.reject:
            return True  # the future term of our own pre-campaign
        leader = m.from_ if m.type in (MT.APP, MT.HEARTBEAT, MT.SNAP) else NONE
        self._become_follower(m.term, leader)
        return True

    def _answer_stale_term(self, m: Message) -> None:
        if (self.config.check_quorum or self.config.pre_vote) and m.type in (
            MT.HEARTBEAT,
            MT.APP,
        ):
            # Tell a deposed leader about the new term so that it steps down.
            self._send(MT.APP_RESP, to=m.from_)
        elif m.type is MT.PRE_VOTE:
            self._send(MT.PRE_VOTE_RESP, to=m.from_, term=self.term, reject=True)

    def _handle_hup(self) -> None:
        if self.role is Role.LEADER:
            return
        if self.config.pre_vote:
            self._campaign(_Campaign.PRE_ELECTION)
        else:
            self._campaign(_Campaign.ELECTION)

    def _step_follower(self, m: Message) -> None:
        if m.type in (MT.APP, MT.HEARTBEAT, MT.SNAP):
            self._election_elapsed_ticks = 0
            self.leader_id = m.from_
            if m.type is MT.APP:
                self._handle_append(m)
            elif m.type is MT.HEARTBEAT:
                self._handle_heartbeat(m)
            else:
                self._handle_snapshot(m)
        elif m.type is MT.TIMEOUT_NOW:
            self._campaign(_Campaign.TRANSFER)
        elif m.type is MT.TRANSFER_LEADER and self.leader_id != NONE:
            self._send(MT.TRANSFER_LEADER, to=self.leader_id, from_=m.from_, term=0)
        elif m.type is MT.READ_INDEX_RESP:
            self._read_states.append(ReadState(m.index, m.context))

    def _step_candidate(self, m: Message) -> None:
        own_response = MT.PRE_VOTE_RESP if self.role is Role.PRE_CANDIDATE else MT.VOTE_RESP
        if m.type in (MT.APP, MT.HEARTBEAT, MT.SNAP):
            self._become_follower(m.term, m.from_)
            self._step_follower(m)
        elif m.type is own_response:
            result = self._poll(m.from_, granted=not m.reject)
            if result is _VoteResult.WON:
                pre = self.role is Role.PRE_CANDIDATE
                self._win_campaign(_Campaign.PRE_ELECTION if pre else _Campaign.ELECTION)
            elif result is _VoteResult.LOST:
                self._become_follower(self.term, NONE)

    # -- follower handlers ---------------------------------------------------------------

    def _handle_append(self, m: Message) -> None:
        if m.index < self._log.committed:
            self._send(MT.APP_RESP, to=m.from_, index=self._log.committed)
            return
        result = self._log.maybe_append(
            index=m.index, log_term=m.log_term, commit=m.commit, entries=m.entries
        )
        if result is not None:
            last_new, appended = result
            self._refresh_conf_after_append(appended)
            self._send(MT.APP_RESP, to=m.from_, index=last_new)
            return
        hint_index = min(m.index, self._log.last_index())
        hint_index, hint_term = self._log.find_conflict_by_term(hint_index, m.log_term)
        self._send(
            MT.APP_RESP,
            to=m.from_,
            index=m.index,
            reject=True,
            reject_hint=hint_index,
            log_term=hint_term,
        )

    def _handle_heartbeat(self, m: Message) -> None:
        self._log.commit_to(m.commit)
        self._send(MT.HEARTBEAT_RESP, to=m.from_, context=m.context)

    def _handle_snapshot(self, m: Message) -> None:
        snapshot = m.snapshot
        invariant(snapshot is not None, "SNAP without a snapshot")
        assert snapshot is not None
        meta = snapshot.meta
        if meta.index <= self._log.committed:
            self._send(MT.APP_RESP, to=m.from_, index=self._log.committed)
            return
        if self._log.match_term(meta.index, meta.term):
            # Pitfall 21: our log already holds the snapshot's last entry: keep what follows.
            self._log.commit_to(meta.index)
            self._send(MT.APP_RESP, to=m.from_, index=self._log.committed)
            return
        self._log.restore(snapshot)
        self._conf.reset(base_index=meta.index, base=meta.conf_state)
        self._sync_progress()
        self._send(MT.APP_RESP, to=m.from_, index=self._log.last_index())

    # -- leader handlers -----------------------------------------------------------------

    def _step_leader(self, m: Message) -> None:
        if m.type is MT.BEAT:
            self._broadcast_heartbeat(self._read_only.last_pending_context())
        elif m.type is MT.CHECK_QUORUM:
            self._check_quorum_active()
        elif m.type is MT.READ_INDEX:
            if not self._read_only.full():
                self._leader_read_index(m)
        elif m.type is MT.TRANSFER_LEADER:
            if m.from_ in self.conf_state.voters:
                self._handle_transfer_leader(m.from_)
        elif m.from_ in self._progress:
            self._step_leader_response(m, self._progress[m.from_])

    def _step_leader_response(self, m: Message, progress: Progress) -> None:
        if m.type is MT.APP_RESP:
            progress.recent_active = True
            if m.reject:
                self._handle_append_rejected(m, progress)
            else:
                self._handle_append_accepted(m, progress)
        elif m.type is MT.HEARTBEAT_RESP:
            progress.recent_active = True
            progress.probe_sent = False
            if progress.state is ProgressState.REPLICATE and progress.inflights.full():
                progress.inflights.free_first_one()
            if progress.match < self._log.last_index():
                self._send_append(m.from_)
            if m.context:
                self._handle_read_ack(m)

    def _handle_append_rejected(self, m: Message, progress: Progress) -> None:
        """Pitfall 10: skip back a whole term at a time using the follower's hint."""
        next_probe = m.reject_hint
        if m.log_term > 0:
            next_probe, _ = self._log.find_conflict_by_term(m.reject_hint, m.log_term)
        if progress.maybe_decrease_to(m.index, next_probe):
            if progress.state is ProgressState.REPLICATE:
                progress.become_probe()
            self._send_append(m.from_)

    def _handle_append_accepted(self, m: Message, progress: Progress) -> None:
        was_paused = progress.is_paused()
        if not progress.maybe_update(m.index):
            return
        if progress.state is ProgressState.PROBE:
            progress.become_replicate()
        elif progress.state is ProgressState.SNAPSHOT:
            if progress.match + 1 >= self._log.first_index():
                progress.become_probe()
                progress.become_replicate()
        else:
            progress.inflights.free_le(m.index)
        if self._maybe_commit():
            self._broadcast_append()
            if self.role is not Role.LEADER:
                return  # the commit removed this leader from the group
        elif was_paused:
            self._send_append(m.from_)
        # Pipelining (pitfall 12): fill the window while there is something to send.
        sends = 0
        while sends < self.config.inflight_messages_max and self._send_append(
            m.from_, send_if_empty=False
        ):
            sends += 1
        if m.from_ == self._leader_transferee and progress.match == self._log.last_index():
            self._send(MT.TIMEOUT_NOW, to=m.from_)

    def _check_quorum_active(self) -> None:
        """Pitfall 8: step down unless a quorum of voters was heard from recently."""
        voters = self.conf_state.voters
        active = sum(
            1
            for node in voters
            if node == self.node_id
            or (node in self._progress and self._progress[node].recent_active)
        )
        if active < len(voters) // 2 + 1:
            self._become_follower(self.term, NONE)
            return
        for node, progress in self._progress.items():
            if node != self.node_id:
                progress.recent_active = False

    def _handle_transfer_leader(self, target: NodeId) -> None:
        if target == self.node_id or target == self._leader_transferee:
            return
        self._transfer_elapsed_ticks = 0  # the transfer must finish within a timeout
        self._leader_transferee = target
        progress = self._progress[target]
        if progress.match == self._log.last_index():
            self._send(MT.TIMEOUT_NOW, to=target)
        else:
            self._send_append(target)

    def _check_can_propose(self) -> None:
        if self.role is not Role.LEADER:
            raise NotLeader(f"node {self.node_id} is not the leader", self.leader_id)
        if self._leader_transferee != NONE:
            raise ProposalDropped("leadership transfer in progress", self._leader_transferee)
        if self.node_id not in self.conf_state.members:
            raise ProposalDropped("this leader is being removed from the group")

    # -- replication ---------------------------------------------------------------------

    def _append_entries(self, entries: list[Entry]) -> None:
        self._log.append(entries)
        self._refresh_conf_after_append(tuple(entries))
        own = self._progress.get(self.node_id)
        if own is not None:
            own.maybe_update(self._log.last_index())
        self._maybe_commit()

    def _maybe_commit(self) -> bool:
        """Pitfall 14: count replicas only for an entry of the current term."""
        if self.role is not Role.LEADER:
            return False
        voters = self.conf_state.voters
        matches = sorted(
            (self._progress[node].match if node in self._progress else 0 for node in voters),
            reverse=True,
        )
        quorum_index = matches[len(voters) // 2]
        committed = self._log.maybe_commit(
            quorum_index, self.term, any_term=self.config.bugs.commit_old_term_by_count
        )
        if committed:
            self._after_leader_commit()
        return committed

    def _after_leader_commit(self) -> None:
        if self._log.term(self._log.committed) == self.term and self._reads_before_commit:
            pending, self._reads_before_commit = self._reads_before_commit, []
            for read in pending:
                self._leader_read_index(read)
        last_conf_index = self._conf.last_change_index
        removed = self.node_id not in self.conf_state.voters
        if removed and last_conf_index <= self._log.committed:
            # Pitfall 25: a leader that removed itself leads until the removal commits.
            self._broadcast_append()
            self._become_follower(self.term, NONE)

    def _broadcast_append(self) -> None:
        """Send every follower what it lacks, filling its in-flight window (pitfall 12)."""
        if self.role is not Role.LEADER:
            return
        for node in sorted(self._progress):
            if node == self.node_id:
                continue
            self._send_append(node)
            sends = 1
            while sends < self.config.inflight_messages_max and self._send_append(
                node, send_if_empty=False
            ):
                sends += 1

    def _send_append(self, to: NodeId, *, send_if_empty: bool = True) -> bool:
        progress = self._progress[to]
        if progress.is_paused():
            return False
        previous_index = progress.next - 1
        previous_term = self._log.term(previous_index)
        try:
            entries = self._log.entries_from(progress.next, self.config.message_size_bytes_max)
        except Compacted:
            entries = None
        if previous_term is None or entries is None:
            return self._send_snapshot(to, progress)
        entries = entries[: self.config.entries_per_message_max]
        if not entries and not send_if_empty:
            return False
        self._send(
            MT.APP,
            to=to,
            index=previous_index,
            log_term=previous_term,
            entries=tuple(entries),
            commit=self._log.committed,
        )
        progress.sent_entries(count=len(entries), size_bytes=sum(e.size_bytes for e in entries))
        return True

    def _send_snapshot(self, to: NodeId, progress: Progress) -> bool:
        if not progress.recent_active:
            return False  # do not ship a whole snapshot to a follower that seems down
        snapshot = self._log.snapshot()
        invariant(snapshot.meta.index > 0, "a compacted log always has a snapshot")
        progress.become_snapshot(snapshot.meta.index)
        self._send(MT.SNAP, to=to, snapshot=snapshot)
        return True

    def _broadcast_heartbeat(self, context: bytes) -> None:
        for node in sorted(self._progress):
            if node == self.node_id:
                continue
            commit = min(self._progress[node].match, self._log.committed)
            self._send(MT.HEARTBEAT, to=node, commit=commit, context=context)

    # -- ReadIndex -----------------------------------------------------------------------

    def _leader_read_index(self, m: Message) -> None:
        voters = self.conf_state.voters
        if voters == frozenset({self.node_id}):
            self._answer_read(m.from_, self._log.committed, m.context)
            return
        if self._log.term(self._log.committed) != self.term:
            # Pitfall 17: a fresh leader must commit an entry of its term first.
            if len(self._reads_before_commit) < PENDING_READS_BEFORE_COMMIT_MAX:
                self._reads_before_commit.append(m)
            return
        requester = NONE if m.from_ in (NONE, self.node_id) else m.from_
        if self._read_only.add_request(
            index=self._log.committed, requester=requester, context=m.context
        ):
            self._read_only.recv_ack(self.node_id, m.context)
            self._broadcast_heartbeat(m.context)

    def _handle_read_ack(self, m: Message) -> None:
        acks = self._read_only.recv_ack(m.from_, m.context)
        if acks is None:
            return
        voters = self.conf_state.voters
        if len(acks & voters) < len(voters) // 2 + 1:
            return
        for status in self._read_only.advance(m.context):
            self._answer_read(status.requester, status.index, status.context)

    def _answer_read(self, requester: NodeId, index: LogIndex, context: bytes) -> None:
        if requester in (NONE, self.node_id):
            self._read_states.append(ReadState(index, context))
        else:
            self._send(MT.READ_INDEX_RESP, to=requester, index=index, context=context)

    # -- membership ----------------------------------------------------------------------

    def _refresh_conf_after_append(self, entries: tuple[Entry, ...]) -> None:
        """``entries`` were just written (from the truncation point on): pitfall 23."""
        if self._conf.written(entries):
            self._sync_progress()
            if self.role is Role.LEADER:
                self._maybe_commit()

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
            )
        )


_API_ONLY = frozenset({MT.HUP, MT.BEAT, MT.CHECK_QUORUM, MT.PROP, MT.SNAP_STATUS, MT.UNREACHABLE})
