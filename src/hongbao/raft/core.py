"""The Raft consensus core: a pure, deterministic state machine (etcd's ``raft`` + ``RawNode``).

Rules of this module: it takes ticks, messages and proposals and hands back a
:class:`~hongbao.raft.types.Ready` of effects; it never does I/O, never reads a clock and
draws randomness only from the ``random.Random`` it was given. Every rule it enforces is
numbered after ``shared/reference/raft-pitfalls.md`` where one applies.

Membership is used as soon as it is in the log (pitfall 23): ``_conf`` holds the
configuration at the snapshot point and after each conf-change entry still in the log;
truncating the log pops it back.

One class in four files, split by concept: ``core_state.py`` (the fields and the moves
every part shares), ``election.py`` (timers, votes, terms), ``read_path.py`` (ReadIndex),
and this module (the public API, the Ready contract, replication and membership).
"""

from __future__ import annotations

from hongbao._invariant import fail, invariant
from hongbao.raft.confchange import ConfChange, apply_change, refuse_unelectable_self_removal
from hongbao.raft.core_state import MT, CoreState, PeerStatus, Status
from hongbao.raft.election import Elections, _Campaign, _VoteResult
from hongbao.raft.errors import NotLeader, ProposalDropped
from hongbao.raft.progress import Progress, ProgressState
from hongbao.raft.quiesce import Quiescence
from hongbao.raft.read_path import ReadPath
from hongbao.raft.storage import Compacted
from hongbao.raft.types import (
    NONE,
    ConfState,
    Entry,
    EntryType,
    LogIndex,
    Message,
    NodeId,
    ReadState,
    Ready,
    Role,
    Term,
)

__all__ = ["CoreState", "PeerStatus", "RaftCore", "Status"]


class RaftCore(Quiescence, Elections, ReadPath):
    """One replica of one Raft group. Single-threaded: the runtime serialises all calls."""

    # -- public API: inputs --------------------------------------------------------------

    def tick(self) -> None:
        self._ticks_total += 1
        if self._quiesced:
            return  # quiesce.py: the runtime's node liveness stands in for the timers
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
        if self._quiesced and not self._keeps_quiet(message):
            self._wake()
        self._step(message)

    def campaign(self) -> None:
        self._wake()
        self._step(Message(MT.HUP, from_=self.node_id))

    def propose(self, data: bytes) -> tuple[LogIndex, Term]:
        """Append ``data`` as a new entry on the leader; returns its (index, term).

        Raises :class:`NotLeader` or :class:`ProposalDropped`; nothing was appended then.
        """
        self._wake()
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
        self._wake()
        self._check_can_propose()
        if self._conf.last_change_index > self._log.committed:
            raise ProposalDropped("a membership change is still uncommitted", self.leader_id)
        if self._log.term(self._log.committed) != self.term:
            raise ProposalDropped("no entry of this term is committed yet", self.leader_id)
        apply_change(self.conf_state, change)  # raises ConfChangeError if invalid
        if not self.config.bugs.leader_removes_itself_from_two:
            refuse_unelectable_self_removal(self.conf_state, self.node_id, change)
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
        self._wake()
        if self.role is not Role.LEADER:
            raise NotLeader("only the leader can transfer leadership", self.leader_id)
        if target not in self.conf_state.voters:
            raise ProposalDropped(f"node {target} is not a voter")
        self._handle_transfer_leader(target)

    def report_unreachable(self, peer: NodeId) -> None:
        self._wake()
        progress = self._progress.get(peer)
        if self.role is not Role.LEADER or progress is None:
            return
        if progress.state is ProgressState.REPLICATE:
            progress.become_probe()

    def report_snapshot(self, peer: NodeId, *, ok: bool) -> None:
        self._wake()
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
        if self.idle:
            return False  # the fast path of an idle node's every cycle (quiesce.py)
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

    # -- timers --------------------------------------------------------------------------

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
            if self._may_quiesce():
                self._quiesce_leader()
            else:
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

    def _step_follower(self, m: Message) -> None:
        if m.type in (MT.APP, MT.HEARTBEAT, MT.SNAP):
            self._election_elapsed_ticks = 0
            self.leader_id = m.from_
            self._heard_from_leader()
            if m.type is MT.APP:
                self._handle_append(m)
            elif m.type is MT.HEARTBEAT:
                self._handle_heartbeat(m)
            else:
                self._handle_snapshot(m)
        elif m.type is MT.TIMEOUT_NOW:
            if self._campaign_allowed or self.config.bugs.campaign_while_draining:
                # A draining replica refuses a transfer to it (#66103).
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
        last_before = self._log.last_index()
        result = self._log.maybe_append(
            index=m.index, log_term=m.log_term, commit=m.commit, entries=m.entries
        )
        if result is not None:
            last_new, appended = result
            if appended and appended[0].index <= last_before:
                self._drop_acks_from(appended[0].index)
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

    def _drop_acks_from(self, index: LogIndex) -> None:
        """Pitfall 2: unsend acknowledgements of entries from ``index`` on, just replaced.

        An acknowledgement queued before the Ready vouches for entries that Ready would
        persist; once a newer leader overwrote them, the Ready persists other entries and
        the acknowledgement would be a lie about this disk. (The vote that elected the
        overwriting leader makes a commit on it unlikely to matter, but the rule is
        simple: never acknowledge what is not about to be persisted.)
        """
        self._messages = [
            queued
            for queued in self._messages
            if queued.type is not MT.APP_RESP or queued.reject or queued.index < index
        ]

    def _handle_heartbeat(self, m: Message) -> None:
        self._log.commit_to(m.commit)
        self._send(MT.HEARTBEAT_RESP, to=m.from_, context=m.context)
        if m.quiesce:
            self._quiesce_follower(m)

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
        self._drop_acks_from(self._log.committed + 1)  # the log past the commit is replaced
        applied_conf: ConfState | None = self._conf.at(self._log.applied)
        self._log.restore(snapshot)
        if self.config.bugs.conf_state_from_unapplied_snapshot:
            applied_conf = None  # the deliberate bug: forget the applied configuration
        self._conf.reset(base_index=meta.index, base=meta.conf_state,
                         applied_index=self._log.applied, applied=applied_conf)
        self._sync_progress()
        self._send(MT.APP_RESP, to=m.from_, index=self._log.last_index())

    # -- leader handlers -----------------------------------------------------------------

    def _step_leader(self, m: Message) -> None:
        if m.type is MT.BEAT:
            self._broadcast_heartbeat(self._read_only.last_pending_context())
        elif m.type is MT.CHECK_QUORUM:
            self._check_quorum_active()
        elif m.type is MT.READ_INDEX:
            if not self._reads_full():
                self._leader_read_index(m)
        elif m.type is MT.TRANSFER_LEADER:
            if m.from_ in self.conf_state.voters:
                self._handle_transfer_leader(m.from_)
        elif m.from_ in self._progress:
            if m.type in (MT.APP_RESP, MT.HEARTBEAT_RESP):
                self._heard_from_voter(m.from_)
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
        self._release_deferred_reads()
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

    # -- membership ----------------------------------------------------------------------

    def _refresh_conf_after_append(self, entries: tuple[Entry, ...]) -> None:
        """``entries`` were just written (from the truncation point on): pitfall 23."""
        if self._conf.written(entries):
            self._sync_progress()
            if self.role is Role.LEADER:
                self._maybe_commit()

_API_ONLY = frozenset({MT.HUP, MT.BEAT, MT.CHECK_QUORUM, MT.PROP, MT.SNAP_STATUS, MT.UNREACHABLE})
