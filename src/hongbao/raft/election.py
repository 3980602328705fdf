"""Elections: timers, PreVote, votes and the terms they carry (raft-pitfalls 1-8).

Rules of this part: a node campaigns only while it is promotable (a voter of the
configuration in force, no snapshot pending); it grants a vote only to an up-to-date log,
once per term; and it answers every vote request of an older term with its own term, so
that a candidate that fell behind learns the term and can catch up (the Raft paper's
rule: "reply false if term < currentTerm").

Campaign gating (CockroachDB #66103): a replica of a draining region must not take
leadership back while another caught-up replica exists, even when its log is the longest
(its vote requests would win). While campaigning is not allowed, its election timeout
starts no (pre-)campaign, ``campaign()`` is a no-op and MsgTimeoutNow is ignored; it still
votes and follows. Liveness beats placement: after ``campaign_fallback_timeouts``
consecutive election timeouts without hearing any leader, it campaigns anyway, since it
may be the only replica able to lead (the others' logs too short, or they are down).
"""

from __future__ import annotations

import enum

from hongbao._invariant import invariant
from hongbao.raft.core_state import MT, CoreState
from hongbao.raft.types import NONE, Entry, Message, NodeId, Role

CAMPAIGN_TRANSFER = b"transfer"


class _Campaign(enum.Enum):
    PRE_ELECTION = "pre_election"
    ELECTION = "election"
    TRANSFER = "transfer"


class _VoteResult(enum.Enum):
    PENDING = "pending"
    WON = "won"
    LOST = "lost"


class Elections(CoreState):
    """The election half of the core: everything that decides who leads which term."""

    # -- public API: campaign gating and the leader's view of its quorum -----------------

    @property
    def campaign_allowed(self) -> bool:
        return self._campaign_allowed

    def set_campaign_allowed(self, allowed: bool) -> None:
        """Allow or forbid this replica to seek leadership (see the module docstring).

        Forbidding does not depose a current leader: moving leadership out is the
        drain's job (a transfer), which this only keeps from being undone. It does end a
        campaign in progress (the replica returns to follower in the same term, keeping
        its vote), so that a drain cannot be followed by the drained replica winning an
        election it had started a moment before.
        """
        was_allowed = self._campaign_allowed
        self._campaign_allowed = allowed
        if was_allowed and not allowed and self.role in (Role.PRE_CANDIDATE, Role.CANDIDATE):
            self._become_follower(self.term, NONE)

    def quorum_active(self) -> bool:
        """True on a leader that heard from a quorum of voters (itself included) within the
        last election timeout: what CheckQuorum tracks. False on any other role.

        Why: a leader cut off from its quorum still believes it leads until CheckQuorum
        deposes it (up to two election timeouts); work sent to it meanwhile can only hang
        until the caller's deadline. The runtime asks this to refuse such work at once.
        """
        if self.role is not Role.LEADER:
            return False
        if self._quiesced:
            return True  # the runtime wakes a quiesced leader that hears no quorum of nodes
        voters = self.conf_state.voters
        window_ticks = self.config.election_timeout_ticks
        heard = sum(
            1
            for node in voters
            if node == self.node_id
            or (
                node in self._heard_at_tick
                and self._ticks_total - self._heard_at_tick[node] <= window_ticks
            )
        )
        return heard >= len(voters) // 2 + 1

    def _heard_from_voter(self, node: NodeId) -> None:
        """A leader got a response of its own term from ``node`` (see quorum_active)."""
        self._heard_at_tick[node] = self._ticks_total
        self._heard_since_wake.add(node)

    def _heard_from_leader(self) -> None:
        self._timeouts_without_leader = 0

    # -- timers --------------------------------------------------------------------------

    def _tick_election(self) -> None:
        self._election_elapsed_ticks += 1
        if not self._promotable():
            return
        if self._election_elapsed_ticks >= self._election_timeout_randomized_ticks:
            self._election_elapsed_ticks = 0
            # Bounded: only compared with campaign_fallback_timeouts (<= 1000).
            self._timeouts_without_leader = min(
                self._timeouts_without_leader + 1, self.config.campaign_fallback_timeouts
            )
            if not self._may_campaign_on_timeout():
                # Its lease on the old leader has lapsed too: forget the leader, so that it
                # grants (pre-)votes to a replica that may campaign.
                self.leader_id = NONE
                self._reset_randomized_election_timeout()
                return
            self._step(Message(MT.HUP, from_=self.node_id))

    def _may_campaign_on_timeout(self) -> bool:
        bugs = self.config.bugs
        if self._campaign_allowed or bugs.campaign_while_draining:
            return True
        if bugs.no_campaign_fallback:
            return False
        return self._timeouts_without_leader >= self.config.campaign_fallback_timeouts

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
        granted = sorted(n for n, g in self._votes.items() if g and n != self.node_id)
        self._reset(self.term)
        self.leader_id = self.node_id
        self.role = Role.LEADER
        for voter in granted:  # a vote of this term is a response heard just now
            self._heard_from_voter(voter)
        self._heard_from_leader()  # itself: a later fallback counts from here
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
        elif m.type is MT.VOTE and not self.config.bugs.stale_vote_unanswered:
            # The paper's rule: a candidate of an older term learns ours and can catch up;
            # silence can leave it campaigning in its old term for ever (when it is the one
            # node that can win, and we never send it anything else).
            self._send(MT.VOTE_RESP, to=m.from_, term=self.term, reject=True)

    def _handle_hup(self) -> None:
        """An explicit campaign() or an election timeout that _tick_election let through."""
        if self.role is Role.LEADER:
            return
        if not self._may_campaign_on_timeout():
            return  # campaign(): a draining replica takes no leadership (#66103)
        if self.config.pre_vote:
            self._campaign(_Campaign.PRE_ELECTION)
        else:
            self._campaign(_Campaign.ELECTION)
