"""Raft's safety invariants, checked incrementally after every step of a simulated run.

Rules of this module: the checker sees only what an outside observer could record (roles
and terms, what each node persisted and applied, what clients were told); it never reads
a core's private state, and it never repairs anything: the first broken rule raises
:class:`Violation`, which ends the run and names the seed.

Why incremental: a run takes thousands of steps and the checks run after each one, so
each check costs O(what changed), not O(log length). The invariants (Raft paper, fig. 3):

- election safety: at most one leader per term, over the whole run;
- log matching: two logs holding an entry with the same index and term hold the same
  entry and, recursively, the same entry before it (checked per persisted entry by
  pinning (index, term) -> (payload, previous term));
- leader completeness: a leader of term T holds every entry committed in a term < T,
  except what its snapshot covers. "Committed in a term <= t" is known whenever a node
  in term t reports commit index c: every index <= c is;
- state machine safety: every node applies a prefix of one global sequence (index ->
  term, payload, digest); a snapshot's digest matches that sequence at its index;
- durability: what a client was told is committed stays in that sequence, and every
  live member eventually applies it;
- reads: a ReadIndex read returns a state at least as new as every write acknowledged
  before the read began;
- membership: what the core says a snapshot taken now must record
  (``applied_conf_state``) is the membership of the state machine it would snapshot.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from hongbao.raft.storage import LogStorage
from hongbao.raft.types import ConfState, Entry, EntryType, LogIndex, NodeId, Term
from hongbao.sim.state_machine import MachineImage


class ViolationKind(enum.Enum):
    ELECTION_SAFETY = "election-safety"
    LOG_MATCHING = "log-matching"
    LEADER_COMPLETENESS = "leader-completeness"
    STATE_MACHINE_SAFETY = "state-machine-safety"
    DURABILITY = "durability"
    STALE_READ = "stale-read"
    MEMBERSHIP = "membership"
    LIVENESS = "liveness"
    DRAIN_TAKEBACK = "drain-takeback"  # a draining replica took leadership back too soon
    CRASH = "crash"  # the core or the runtime raised (an invariant broke inside)


class Violation(Exception):
    def __init__(self, kind: ViolationKind, detail: str) -> None:
        super().__init__(f"{kind.value}: {detail}")
        self.kind = kind
        self.detail = detail


@dataclass(frozen=True, slots=True)
class AppliedRecord:
    term: Term
    type: EntryType
    data: bytes
    digest: bytes


@dataclass(slots=True)
class _Leader:
    term: Term
    log: LogStorage
    verified_index: LogIndex  # indices up to here were checked against the global sequence


class Checker:
    def __init__(self) -> None:
        self.leaders_by_term: dict[Term, NodeId] = {}
        self._current_leaders: dict[NodeId, _Leader] = {}
        self._pinned: dict[tuple[LogIndex, Term], tuple[EntryType, bytes, Term]] = {}
        self.applied: list[AppliedRecord] = []  # the global sequence; index i at i - 1
        self._commit_by_term: dict[Term, LogIndex] = {}
        self._committed_terms: dict[LogIndex, Term] = {}  # pinned by the first node to commit
        self._commit_checked: dict[NodeId, LogIndex] = {}
        self.acked: dict[LogIndex, tuple[Term, bytes]] = {}
        self.max_acked_index: LogIndex = 0

    # -- election safety and leader completeness --------------------------------------------

    def on_role(self, node: NodeId, *, term: Term, is_leader: bool, log: LogStorage) -> bool:
        """Record ``node``'s role after a step; True when it is a leader not seen before."""
        if not is_leader:
            self._current_leaders.pop(node, None)
            return False
        holder = self.leaders_by_term.get(term)
        if holder is not None and holder != node:
            raise Violation(
                ViolationKind.ELECTION_SAFETY, f"nodes {holder} and {node} both lead term {term}"
            )
        current = self._current_leaders.get(node)
        if current is None or current.term != term or current.log is not log:
            current = _Leader(term, log, 0)
            self._current_leaders[node] = current
        self._verify_leader(node, current)
        if holder is None:
            self.leaders_by_term[term] = node
            return True
        return False

    def on_blocked_election(
        self, node: NodeId, *, term: Term, silent_ticks: int, fallback_ticks: int
    ) -> None:
        """A replica that may not campaign won ``term``: only its fallback allows that, and
        the fallback needs ``fallback_ticks`` without hearing a leader (CockroachDB
        #66103: a draining replica must not take leadership back)."""
        if silent_ticks < fallback_ticks:
            raise Violation(
                ViolationKind.DRAIN_TAKEBACK,
                f"node {node} may not campaign but won term {term} {silent_ticks} ticks "
                f"after it last heard a leader (its fallback needs {fallback_ticks})",
            )

    def on_down(self, node: NodeId) -> None:
        """``node`` crashed: it leads nothing any more, and its log may have shrunk."""
        self._current_leaders.pop(node, None)
        self._commit_checked.pop(node, None)

    def on_commit(
        self, node: NodeId, *, term: Term, commit_index: LogIndex, log: LogStorage
    ) -> None:
        """``node``, in ``term``, knows ``commit_index``: every entry of its log up to there
        is committed, and was committed in a term <= ``term``."""
        self._pin_committed(node, commit_index, log)
        if commit_index <= self._commit_by_term.get(term, 0):
            return
        self._commit_by_term[term] = commit_index
        for leader_id in sorted(self._current_leaders):
            leader = self._current_leaders[leader_id]
            if leader.term > term:
                self._verify_leader(leader_id, leader)

    def _pin_committed(self, node: NodeId, commit_index: LogIndex, log: LogStorage) -> None:
        """Two nodes claiming different entries committed at one index is already fatal."""
        checked = self._commit_checked.get(node, 0)
        if commit_index <= checked:
            return
        if commit_index > log.last_index():
            raise Violation(
                ViolationKind.DURABILITY,
                f"node {node} knows index {commit_index} committed but its log ends at "
                f"{log.last_index()}",
            )
        for index in range(max(checked + 1, log.first_index()), commit_index + 1):
            held = log.term(index)
            pinned = self._committed_terms.setdefault(index, held)
            if pinned != held:
                raise Violation(
                    ViolationKind.STATE_MACHINE_SAFETY,
                    f"node {node} holds term {held} at committed index {index}; another "
                    f"node committed term {pinned} there",
                )
        self._commit_checked[node] = commit_index

    def _committed_before(self, term: Term) -> LogIndex:
        return max((c for t, c in self._commit_by_term.items() if t < term), default=0)

    def _verify_leader(self, node: NodeId, leader: _Leader) -> None:
        needed = self._committed_before(leader.term)
        if needed <= leader.verified_index:
            return
        last = leader.log.last_index()
        if last < needed:
            raise Violation(
                ViolationKind.LEADER_COMPLETENESS,
                f"node {node} leads term {leader.term} with last index {last} but index "
                f"{needed} was committed in an earlier term",
            )
        for index in range(max(leader.verified_index + 1, leader.log.first_index()), needed + 1):
            expected = self._committed_terms.get(index)
            held = leader.log.term(index)
            if expected is not None and held != expected:
                raise Violation(
                    ViolationKind.LEADER_COMPLETENESS,
                    f"node {node} leads term {leader.term} holding term {held} at index "
                    f"{index}, but the committed entry there has term {expected}",
                )
        leader.verified_index = needed

    # -- log matching ----------------------------------------------------------------------

    def on_persist(self, node: NodeId, entries: tuple[Entry, ...], *, prev_term: Term) -> None:
        """``node`` wrote ``entries`` (contiguous) after an entry of term ``prev_term``."""
        for entry in entries:
            pinned = (entry.type, entry.data, prev_term)
            key = (entry.index, entry.term)
            existing = self._pinned.setdefault(key, pinned)
            if existing != pinned:
                raise Violation(
                    ViolationKind.LOG_MATCHING,
                    f"node {node} holds a different entry (or predecessor) at index "
                    f"{entry.index} term {entry.term} than another node did",
                )
            prev_term = entry.term

    # -- state machine safety and durability ---------------------------------------------

    def on_apply(self, node: NodeId, entry: Entry, image: MachineImage) -> bool:
        """Check one applied entry; True when it extends the global sequence."""
        index = entry.index
        acked = self.acked.get(index)
        if acked is not None and acked != (entry.term, entry.data):
            raise Violation(
                ViolationKind.DURABILITY,
                f"node {node} applied term {entry.term} at index {index}, where a client was "
                f"told term {acked[0]} committed",
            )
        if index == len(self.applied) + 1:
            self.applied.append(AppliedRecord(entry.term, entry.type, entry.data, image.digest))
            return True
        if index > len(self.applied):
            raise Violation(
                ViolationKind.STATE_MACHINE_SAFETY,
                f"node {node} applied index {index} beyond the global sequence "
                f"({len(self.applied)}) without a snapshot",
            )
        record = self.applied[index - 1]
        if (record.term, record.type, record.data) != (entry.term, entry.type, entry.data):
            raise Violation(
                ViolationKind.STATE_MACHINE_SAFETY,
                f"node {node} applied term {entry.term} at index {index}; another node "
                f"applied term {record.term} there",
            )
        self._check_digest(node, index, image.digest)
        return False

    def on_restore(self, node: NodeId, image: MachineImage) -> None:
        """``node`` installed a snapshot: its state must be a point of the global sequence."""
        index = image.applied_index
        if index > len(self.applied):
            raise Violation(
                ViolationKind.STATE_MACHINE_SAFETY,
                f"node {node} installed a snapshot at {index}, beyond anything applied",
            )
        if index > 0:
            self._check_digest(node, index, image.digest)

    def _check_digest(self, node: NodeId, index: LogIndex, digest: bytes) -> None:
        if self.applied[index - 1].digest != digest:
            raise Violation(
                ViolationKind.STATE_MACHINE_SAFETY,
                f"node {node}'s state at index {index} differs from the global sequence",
            )

    def on_ack(self, index: LogIndex, term: Term, data: bytes) -> None:
        """A client was told that its write (``index``, ``term``) committed."""
        if index > len(self.applied) or self.applied[index - 1].term != term:
            raise Violation(
                ViolationKind.DURABILITY,
                f"write at index {index} term {term} acknowledged but not in the global sequence",
            )
        self.acked[index] = (term, data)
        self.max_acked_index = max(self.max_acked_index, index)

    def check_converged(self, applied_by_member: dict[NodeId, MachineImage]) -> list[NodeId]:
        """Members that have not applied every acknowledged write yet (sorted)."""
        behind = []
        for node in sorted(applied_by_member):
            image = applied_by_member[node]
            if image.applied_index < self.max_acked_index:
                behind.append(node)
            elif image.applied_index > 0:
                self._check_digest(node, image.applied_index, image.digest)
        return behind

    # -- membership --------------------------------------------------------------------------

    def on_applied_conf(
        self, node: NodeId, *, applied_index: LogIndex, core_conf: ConfState,
        machine_conf: ConfState,
    ) -> None:
        """The core's configuration as of ``applied_index`` against the state machine's."""
        if core_conf != machine_conf:
            raise Violation(
                ViolationKind.MEMBERSHIP,
                f"node {node} at applied index {applied_index}: the core would snapshot "
                f"voters={sorted(core_conf.voters)} learners={sorted(core_conf.learners)}, "
                f"the state machine holds voters={sorted(machine_conf.voters)} "
                f"learners={sorted(machine_conf.learners)}",
            )

    # -- reads -----------------------------------------------------------------------------

    def read_floor(self) -> LogIndex:
        """What a read beginning now must see: the newest acknowledged write."""
        return self.max_acked_index

    def on_read_served(
        self, node: NodeId, *, floor: LogIndex, applied_index: LogIndex, digest: bytes
    ) -> None:
        if applied_index < floor:
            raise Violation(
                ViolationKind.STALE_READ,
                f"node {node} served a read at applied index {applied_index}, but index "
                f"{floor} was acknowledged before the read began",
            )
        if applied_index > 0:
            self._check_digest(node, applied_index, digest)
