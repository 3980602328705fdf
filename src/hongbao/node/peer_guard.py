"""The checks every Raft message from a peer passes before it reaches a core.

Rules of this module: a peer is untrusted input. :class:`PeerGuard` decides, for each
decoded message of a ``Peer.Stream``, whether it may be stepped; a refused message is
dropped, counted per (reason, sender) in :attr:`PeerGuard.refusals` and logged at warning
(rate-limited per reason and sender: :class:`RefusalLog`); nothing here raises for bad input, so no
message can stop the node. The runtime steps only what the guard let through.

What validation closes, with no certificates:

- local message types (HUP, BEAT, CHECK_QUORUM, PROP, SNAP_STATUS, UNREACHABLE) and
  TRANSFER_LEADER (transfers start on the leader itself, through Admin) are refused;
- a message whose ``from`` is not the node its stream belongs to, whose ``to`` is not
  this node, for a shard not hosted here, or from a node that is not a member of the
  shard's configuration as this replica knows it, unless it is a node of the topology
  sending what a leader sends (a replica behind a membership change must hear its new
  leader; the simulator found a replica refusing the leader it lacked for good);
- terms and indexes at or above :data:`TERM_MAX` / :data:`INDEX_MAX` (2^48), so the core
  can always count one more and the encoder never overflows (the term 2^64 - 1 probe);
- an APPEND whose entries do not follow its index, or carry a term above the message's;
- a SNAP outside the chunked snapshot transfer, a SNAP without its snapshot, and snapshot
  data that is not a ledger snapshot of this very shard as of the snapshot's index
  (:func:`snapshot_problem`, checked before anything is replaced);
- an APPEND, HEARTBEAT, SNAP or TIMEOUT_NOW of the current term from anyone but the leader
  this replica knows for that term (a forged append from "the other follower" at the
  current term), and TIMEOUT_NOW from anyone but that leader;
- any message of a higher term while this replica holds a lease (a follower that heard
  its leader, or a leader that heard a quorum, within one election timeout), except a
  vote request, which the core itself refuses in a lease (raft-pitfalls 7), and a
  leader's append answered from a higher term by a voter it has not heard at its own
  term for an election timeout (a stranded follower: :meth:`PeerGuard._stranded_voter`). This is the
  CheckQuorum rule extended to every message: a forged heartbeat or append at term + 1
  cannot depose a live leader. Dropping a message is always safe in Raft; the cost is
  that a replica cut off from its leader alone follows a new leader up to one election
  timeout later.

What needs part B's certificates (an authenticated sender): a forged message that claims
the very node that may send it, at a moment it may send it: an APPEND "from the real
leader" at the current term, a higher-term message while no lease is held (just after an
election), a forced (transfer) vote request. Against those, :class:`StreamRegistry`
(one inbound stream per peer; a second is refused while the first is live) only stops a
forger while the real peer is connected.
"""

from __future__ import annotations

import enum
import logging
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final, Protocol

from hongbao.config.topology import META_GROUP_ID
from hongbao.ledger.codec import CodecError as LedgerCodecError
from hongbao.ledger.codec import decode
from hongbao.ledger.records import META_APPLIED_INDEX, META_IDENTITY, ShardIdentity
from hongbao.ledger.snapshot import SnapshotError, parse
from hongbao.ledger.store import Table
from hongbao.meta.machine import snapshot_problem as meta_snapshot_problem
from hongbao.raft.types import LOCAL_MESSAGE_TYPES, ConfState, Message, MessageType, Role

log = logging.getLogger(__name__)

TERM_MAX: Final = 1 << 48
"""Terms at or above this are refused: ~2.8e14 elections, never reached by a real cluster,
and far enough below 2^64 that the core can always count on and the wire always encode."""
INDEX_MAX: Final = 1 << 48
"""Log indexes (index, commit, reject hints, entry indexes) at or above this are refused."""
CONTEXT_BYTES_MAX: Final = 256
"""A message context is a ReadIndex or campaign tag (tens of bytes): nothing larger."""
REFUSAL_KEYS_MAX: Final = 4096
"""(reason, sender) pairs counted apart; beyond it, refusals count under sender 0."""
LOG_BURST: Final = 20
LOG_INTERVAL_S: Final = 1.0
"""Refusal warnings: bursts of up to LOG_BURST per (reason, sender), then one per interval."""

_MT = MessageType
_REFUSED_TYPES: Final = LOCAL_MESSAGE_TYPES | {_MT.TRANSFER_LEADER}
_FROM_LEADER: Final = frozenset({_MT.APP, _MT.HEARTBEAT, _MT.SNAP, _MT.TIMEOUT_NOW})
_LEASE_EXEMPT: Final = frozenset({_MT.VOTE, _MT.PRE_VOTE})


class Refusal(enum.StrEnum):
    """Why a peer's message or stream was refused (the counters' first key)."""

    WRONG_CLUSTER = "wrong_cluster"
    WRONG_DESTINATION = "wrong_destination"
    UNKNOWN_NODE = "unknown_node"
    SENDER_CHANGED = "sender_changed"
    DUPLICATE_STREAM = "duplicate_stream"
    UNDECODABLE = "undecodable"
    LOCAL_TYPE = "local_type"
    SNAP_NOT_CHUNKED = "snap_not_chunked"
    SENDER_MISMATCH = "sender_mismatch"
    RECIPIENT_MISMATCH = "recipient_mismatch"
    SHARD_NOT_HOSTED = "shard_not_hosted"
    NOT_A_MEMBER = "not_a_member"
    OUT_OF_BOUNDS = "out_of_bounds"
    MALFORMED_ENTRIES = "malformed_entries"
    NOT_THE_LEADER = "not_the_leader"
    LEASE_HELD = "lease_held"
    BAD_SNAPSHOT = "bad_snapshot"
    SNAPSHOT_REJECTED = "snapshot_rejected"
    STEP_FAILED = "step_failed"
    DELIVER_REFUSED = "deliver_refused"
    DELIVER_UNCONFIRMED = "deliver_unconfirmed"


class CoreView(Protocol):
    """What the guard reads of a shard's core (``RaftCore`` has these attributes)."""

    @property
    def term(self) -> int: ...

    @property
    def role(self) -> Role: ...

    @property
    def leader_id(self) -> int: ...

    @property
    def conf_state(self) -> ConfState: ...


@dataclass(frozen=True, slots=True)
class Verdict:
    reason: Refusal
    detail: str


class RefusalLog:
    """Counts refusals per (reason, sender) and logs them at warning, rate-limited.

    Each (reason, sender) has a bucket of :data:`LOG_BURST` lines that refills by one per
    :data:`LOG_INTERVAL_S`: a handful of refusals are all logged, a flood costs one line
    per interval (with the count of the lines it stood for). The counters count every one.
    """

    def __init__(self, *, clock_s: Callable[[], float] = time.monotonic) -> None:
        self.refusals: Counter[tuple[str, int]] = Counter()
        self._clock_s = clock_s
        self._buckets: dict[tuple[str, int], tuple[float, float, int]] = {}  # tokens, at, muted

    def refuse(self, reason: Refusal, sender: int, detail: str) -> None:
        key = (reason.value, sender)
        if key not in self.refusals and len(self.refusals) >= REFUSAL_KEYS_MAX:
            key = (reason.value, 0)  # claimed ids are the sender's choice: bound the keys
        self.refusals[key] += 1
        now_s = self._clock_s()
        tokens, at_s, muted = self._buckets.get(key, (float(LOG_BURST), now_s, 0))
        tokens = min(float(LOG_BURST), tokens + (now_s - at_s) / LOG_INTERVAL_S)
        if tokens < 1:
            self._buckets[key] = (tokens, now_s, muted + 1)
            return
        self._buckets[key] = (tokens - 1, now_s, 0)
        also = f" (and {muted} more not logged)" if muted else ""
        log.warning(
            "refused from node %d (%s, %d so far%s): %s",
            sender,
            reason.value,
            self.refusals[key],
            also,
            detail[:300],
        )

    def count(self, reason: Refusal | None = None) -> int:
        return sum(n for (r, _), n in self.refusals.items() if reason is None or r == reason)


class PeerGuard:
    """Validates decoded Raft messages against this node's view of each shard."""

    def __init__(
        self,
        *,
        node_id: int,
        cores: Callable[[int], CoreView | None],
        election_timeout_ms: int,
        refusals: RefusalLog,
        clock_ms: Callable[[], float] = lambda: time.monotonic() * 1000,
        nodes: frozenset[int] = frozenset(),
    ) -> None:
        self.node_id = node_id
        # The nodes of the topology (the transport refuses streams from any other). One of
        # them that this replica does not know as a member may still lead it: a replica
        # behind a membership change learns of its new leader only from that leader.
        self.nodes = nodes
        self._cores = cores
        self.lease_ms = election_timeout_ms
        self.log = refusals
        self._clock_ms = clock_ms
        # (shard, peer) -> (term, when): the last message accepted from the peer at the
        # replica's own term. Bounded by shards x members.
        self._heard: dict[tuple[int, int], tuple[int, float]] = {}

    def admit(self, sender: int, shard_id: int, message: Message, *, chunked: bool = False) -> bool:
        """Whether ``message`` (from the stream of node ``sender``) may be stepped."""
        verdict = self.check(sender, shard_id, message, chunked=chunked)
        if verdict is None:
            return True
        self.log.refuse(verdict.reason, sender, f"shard {shard_id}: {verdict.detail}")
        return False

    def staging_problem(self, sender: int, shard_id: int) -> str | None:
        """Why a snapshot chunk of ``shard_id`` from ``sender`` must not even be staged."""
        core = self._cores(shard_id)
        if core is None:
            return f"no replica of shard {shard_id} here"
        if not self._may_send(sender, core, _MT.SNAP):
            return f"node {sender} is not a member of shard {shard_id}"
        return None

    def _may_send(self, sender: int, core: CoreView, kind: MessageType) -> bool:
        """A member may send anything; a node of the topology that is not a member as this
        replica knows it, only what a leader sends (the leadership checks still apply)."""
        if sender in core.conf_state.members:
            return True
        return sender in self.nodes and kind in _FROM_LEADER

    def check(
        self, sender: int, shard_id: int, m: Message, *, chunked: bool = False
    ) -> Verdict | None:
        verdict = _static_problem(sender, self.node_id, m, chunked=chunked)
        if verdict is not None:
            return verdict
        core = self._cores(shard_id)
        if core is None:
            return Verdict(Refusal.SHARD_NOT_HOSTED, f"no replica of shard {shard_id} here")
        if not self._may_send(sender, core, m.type):
            return Verdict(Refusal.NOT_A_MEMBER, f"node {sender} is not a member of the shard")
        verdict = self._leadership_problem(sender, shard_id, m, core)
        if verdict is None and m.term == core.term:
            self._heard[(shard_id, sender)] = (m.term, self._clock_ms())
        return verdict

    def _leadership_problem(
        self, sender: int, shard_id: int, m: Message, core: CoreView
    ) -> Verdict | None:
        if m.term == core.term and m.type in _FROM_LEADER:
            if core.role is Role.LEADER:
                return Verdict(Refusal.NOT_THE_LEADER, f"{m.type.name} to the leader of its term")
            if core.leader_id not in (0, sender) or (
                m.type is _MT.TIMEOUT_NOW and core.leader_id != sender
            ):
                why = f"{m.type.name} of term {m.term} not from its leader {core.leader_id}"
                return Verdict(Refusal.NOT_THE_LEADER, why)
        if m.type is _MT.TIMEOUT_NOW and m.term != core.term:
            return Verdict(Refusal.NOT_THE_LEADER, f"TIMEOUT_NOW of term {m.term} != {core.term}")
        if (
            m.term > core.term
            and m.type not in _LEASE_EXEMPT
            and not self._stranded_voter(shard_id, sender, m, core)
            and self._in_lease(shard_id, core)
        ):
            why = f"{m.type.name} of term {m.term} while a lease of term {core.term} holds"
            return Verdict(Refusal.LEASE_HELD, why)
        return None

    def _stranded_voter(self, shard_id: int, sender: int, m: Message, core: CoreView) -> bool:
        """A voter that answers its leader's appends from a higher term, and has not been
        heard at the leader's term for an election timeout: the leader must step down.

        Such a follower moved its term on (it voted in an election that failed) and can
        neither follow the old term nor win: the other voters, in the leader's lease,
        refuse its pre-votes. Refusing its answer too would strand it for good (a chaos
        run's shard 0 replica stayed 4,000 entries behind until the stop); the core's
        rule, etcd's, is to step down on it, after which an election at a new term takes
        the follower back. A forged answer "from" a voter that keeps answering at the
        leader's term is still refused (part A); one from a voter not heard for an
        election timeout costs one election at most, and part B's certificates close it.
        """
        if core.role is not Role.LEADER or m.type is not _MT.APP_RESP:
            return False
        if sender not in core.conf_state.voters:
            return False
        return not self._heard_recently(shard_id, sender, core.term, self._clock_ms())

    def _in_lease(self, shard_id: int, core: CoreView) -> bool:
        now_ms = self._clock_ms()
        if core.role is Role.FOLLOWER and core.leader_id:
            return self._heard_recently(shard_id, core.leader_id, core.term, now_ms)
        if core.role is Role.LEADER:
            voters = core.conf_state.voters
            heard = sum(
                1
                for voter in voters
                if voter == self.node_id or self._heard_recently(shard_id, voter, core.term, now_ms)
            )
            return heard >= len(voters) // 2 + 1
        return False

    def _heard_recently(self, shard_id: int, peer: int, term: int, now_ms: float) -> bool:
        seen = self._heard.get((shard_id, peer))
        return seen is not None and seen[0] == term and now_ms - seen[1] < self.lease_ms


def _static_problem(sender: int, node_id: int, m: Message, *, chunked: bool) -> Verdict | None:
    """What is wrong with ``m`` whatever the shard's state."""
    if m.type in _REFUSED_TYPES:
        return Verdict(Refusal.LOCAL_TYPE, f"{m.type.name} is not a wire message")
    if m.type is _MT.SNAP and (not chunked or m.snapshot is None):
        return Verdict(Refusal.SNAP_NOT_CHUNKED, "a SNAP travels only whole, in chunks")
    if m.from_ != sender:
        return Verdict(Refusal.SENDER_MISMATCH, f"from {m.from_} on the stream of node {sender}")
    if m.to != node_id:
        return Verdict(Refusal.RECIPIENT_MISMATCH, f"to {m.to} reached node {node_id}")
    if not (
        m.term < TERM_MAX
        and m.log_term < TERM_MAX
        and m.index < INDEX_MAX
        and m.commit < INDEX_MAX
        and m.reject_hint < INDEX_MAX
        and len(m.context) <= CONTEXT_BYTES_MAX
    ):
        return Verdict(Refusal.OUT_OF_BOUNDS, f"term {m.term} or an index is out of bounds")
    if m.snapshot is not None:
        meta = m.snapshot.meta
        if not (meta.term < TERM_MAX and meta.index < INDEX_MAX and meta.term <= m.term):
            return Verdict(Refusal.OUT_OF_BOUNDS, "snapshot term or index out of bounds")
    if m.entries:
        return _entries_problem(m)
    return None


def _entries_problem(m: Message) -> Verdict | None:
    if m.type is not _MT.APP:
        return Verdict(Refusal.MALFORMED_ENTRIES, f"{m.type.name} carries entries")
    previous_term = m.log_term
    for offset, entry in enumerate(m.entries, start=1):
        if entry.index != m.index + offset or entry.index >= INDEX_MAX:
            return Verdict(Refusal.MALFORMED_ENTRIES, f"entry {entry.index} after {m.index}")
        if not previous_term <= entry.term <= m.term:
            return Verdict(Refusal.MALFORMED_ENTRIES, f"entry term {entry.term} out of order")
        previous_term = entry.term
    return None


def snapshot_problem(shard_id: int, message: Message) -> str | None:
    """Why ``message``'s snapshot data must not replace shard ``shard_id``, or None.

    The data must be a whole, checksummed ledger snapshot (``hongbao.ledger.snapshot``) of
    this very shard, as of the index its metadata names: the runtime's install asserts
    both, and an assertion there would stop the node.
    """
    snapshot = message.snapshot
    if snapshot is None:
        return "a SNAP without its snapshot"
    if shard_id == META_GROUP_ID:  # the meta group's snapshot is not a ledger's
        return meta_snapshot_problem(snapshot.data, snapshot.meta.index)
    try:
        tables = parse(snapshot.data)
        meta_rows = dict(tables[Table.META])
        identity = decode(meta_rows.get(META_IDENTITY, b""), ShardIdentity)
    except (SnapshotError, LedgerCodecError, ValueError) as error:
        return f"not a ledger snapshot: {error}"
    if identity.shard_id != shard_id:
        return f"a snapshot of shard {identity.shard_id}, not {shard_id}"
    applied = int.from_bytes(meta_rows.get(META_APPLIED_INDEX, b""), "big")
    if applied != snapshot.meta.index:
        return f"snapshot data as of index {applied}, its metadata says {snapshot.meta.index}"
    return None


class Steppable(Protocol):
    def step(self, message: Message) -> None: ...


def step_checked(core: Steppable, shard_id: int, message: Message, refusals: RefusalLog) -> None:
    """Step ``message`` into ``core`` unless its snapshot is bad; never raise for it.

    The runtime's last line of defence: a SNAP's data is checked again right before the
    core takes it (the core then makes the runtime install it, and nothing may fail after
    that), and a core that raises on a message it was given is logged and counted rather
    than allowed to end the loop every shard of the node runs on.
    """
    sender = int(message.from_)
    if message.type is _MT.SNAP:
        problem = snapshot_problem(shard_id, message)
        if problem is not None:
            refusals.refuse(Refusal.BAD_SNAPSHOT, sender, f"shard {shard_id}: {problem}")
            return
    try:
        core.step(message)
    except Exception:
        log.exception(
            "shard %d: the core failed on a %s from node %d", shard_id, message.type.name, sender
        )
        refusals.refuse(Refusal.STEP_FAILED, sender, f"shard {shard_id}: {message.type.name}")
