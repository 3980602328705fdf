"""Quiescence: an idle, fully replicated group stops heartbeating (CockroachDB's design).

Why: a node hosts many groups, and each group's leader heartbeats every follower a few
times per election timeout even when nobody writes: with 96 groups that is thousands of
messages a second doing nothing. A quiesced group sends none, and its followers' election
timers stand still instead.

What stands in for the heartbeats is the runtime's node-level liveness: one keepalive
per node pair (``hongbao.node.liveness``). It calls :meth:`Quiescence.unquiesce` on a
quiesced follower whose leader's node falls silent, and on a quiesced leader that hears
fewer than a quorum of its voters' nodes; either then runs its ordinary timers again
(elections, CheckQuorum), so failures are still detected, one liveness timeout later.

Rules of this part (it only changes timers: votes, commits and reads are untouched):

1. A leader quiesces only when the group has nothing in flight: every member's log
   matches its last index, that index is committed and applied and of its own term, no
   read, transfer, snapshot or unstable entry is pending, and a quorum was heard within
   the last election timeout (and, after a wake, truly heard since). It tells its
   followers with a last heartbeat marked ``quiesce``, which carries the commit index.
2. A follower quiesces on such a heartbeat from its leader only when its log ends at the
   commit index it carries (nothing of its own past it).
3. Anything else wakes a quiesced replica: any message other than a repeated quiesce
   heartbeat (a follower) or a heartbeat answer from an up-to-date member (a leader), and
   every API call that has work for the group (propose, read, transfer, campaign,
   unreachable reports). A lost quiesce heartbeat costs one wasted election timeout: the
   unquiesced follower's pre-vote wakes the leader, which heartbeats again.
"""

from __future__ import annotations

from hongbao.raft.core_state import MT, CoreState
from hongbao.raft.progress import ProgressState
from hongbao.raft.types import NONE, Message, Role


class Quiescence(CoreState):
    """The quiescence half of the core (see the module docstring)."""

    @property
    def quiesced(self) -> bool:
        return self._quiesced

    @property
    def idle(self) -> bool:
        """Quiesced with nothing to hand out: its next Ready would be empty.

        Only tick() and keeps-quiet steps touch a quiesced core, and both leave the durable
        and soft state alone; what they may leave is messages (the quiesce heartbeat
        itself, an answer to one), and those make it not idle. The runtime skips idle
        groups in its cycle, so a quiesced core with a message queued must not be idle:
        the quiesce heartbeat would never leave, and every follower would time out.
        """
        return (
            self._quiesced
            and not self._messages
            and not self._read_states
            and self._log.committed == self._log.applied
        )

    def unquiesce(self) -> None:
        """Run the timers again: the runtime's liveness lost a node this group depends on.

        A leader woken so assumes nothing of its followers: it has not heard a quorum of
        their nodes, so it refuses work at once (quorum_active) and CheckQuorum deposes it
        after one election timeout unless they answer.
        """
        self._wake(assume_heard=False)

    def _wake(self, *, assume_heard: bool = True) -> None:
        """Leave quiescence. ``assume_heard``: woken for work (a proposal, a message), not
        because nodes fell silent, so the followers count as heard (see below)."""
        if not self._quiesced:
            return
        self._quiesced = False
        if self.role is Role.LEADER:
            # The runtime kept this group quiet only while it heard a quorum of its voters'
            # nodes: when woken for work, count them as heard now, and give CheckQuorum a
            # full window to confirm it.
            for node, progress in self._progress.items():
                if node != self.node_id:
                    progress.recent_active = assume_heard
                    if assume_heard:
                        self._heard_at_tick[node] = self._ticks_total
            self._election_elapsed_ticks = 0
            self._heartbeat_elapsed_ticks = self.config.heartbeat_interval_ticks  # beat soon
            # Those were assumptions: quiescing again takes a quorum truly heard since now
            # (or a leader cut off would wake, quiesce, wake, ... and never step down).
            self._heard_since_wake = set()

    def _keeps_quiet(self, m: Message) -> bool:
        """``m`` leaves a quiesced replica quiesced (rule 3)."""
        if m.term != self.term:
            return False
        if self.role is Role.LEADER:
            progress = self._progress.get(m.from_)
            return (
                m.type is MT.HEARTBEAT_RESP
                and not m.context
                and progress is not None
                and progress.match == self._log.last_index()
            )
        return m.type is MT.HEARTBEAT and m.quiesce and m.from_ == self.leader_id

    def _may_quiesce(self) -> bool:
        """Rule 1, asked by a leader when its heartbeat is due."""
        log = self._log
        last = log.last_index()
        if not (
            self.config.quiesce
            and self.role is Role.LEADER
            and log.committed == last
            and log.applied == last
            and log.term(last) == self.term
            and not log.unstable.entries
            and not log.has_pending_snapshot()
            and self._leader_transferee == NONE
            and not self._broadcast_pending
            and not self._reads_before_commit
            and self._read_only.pending_count() == 0
            and self.node_id in self.conf_state.voters
        ):
            return False
        for progress in self._progress.values():
            if progress.match != last or progress.state is not ProgressState.REPLICATE:
                return False
        voters = self.conf_state.voters
        heard = len((self._heard_since_wake | {self.node_id}) & voters)
        return heard >= len(voters) // 2 + 1 and self.quorum_active()

    def _quiesce_leader(self) -> None:
        """Rule 1: the last heartbeat, marked, then quiet."""
        self._quiesced = True
        for node in sorted(self._progress):
            if node != self.node_id:
                self._send(MT.HEARTBEAT, to=node, commit=self._log.committed, quiesce=True)

    def _quiesce_follower(self, m: Message) -> None:
        """Rule 2, once the quiesce heartbeat ``m`` was handled (its commit index taken)."""
        self._quiesced = (
            self.config.quiesce
            and self._log.committed == m.commit
            and self._log.last_index() == m.commit
        )
