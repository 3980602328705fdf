"""Plain data that flows in and out of the Raft core.

Rules of this module: records are frozen, slotted dataclasses with no behaviour beyond
small derived properties; nothing here knows about protobuf, gRPC or LMDB. The wire
codec (``hongbao.node.codec``) is the only place that turns these into bytes.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import NewType

NodeId = NewType("NodeId", int)
"""A node's id inside one Raft group. 0 means "nobody" (no vote, no leader)."""

NONE: NodeId = NodeId(0)

Term = int
LogIndex = int


class EntryType(enum.IntEnum):
    NORMAL = 0
    CONF_CHANGE = 1


@dataclass(frozen=True, slots=True)
class Entry:
    """One log entry. An empty NORMAL entry is the leader's no-op of a new term."""

    term: Term
    index: LogIndex
    type: EntryType = EntryType.NORMAL
    data: bytes = b""

    @property
    def size_bytes(self) -> int:
        """Bytes counted against message and in-flight limits (payload plus a fixed header)."""
        return len(self.data) + ENTRY_OVERHEAD_BYTES


ENTRY_OVERHEAD_BYTES = 24


@dataclass(frozen=True, slots=True)
class ConfState:
    """The membership of a group: voters decide, learners only receive the log."""

    voters: frozenset[NodeId]
    learners: frozenset[NodeId] = frozenset()

    def __post_init__(self) -> None:
        if self.voters & self.learners:
            raise ValueError(f"nodes {sorted(self.voters & self.learners)} are voters and learners")
        if NONE in self.voters or NONE in self.learners:
            raise ValueError("node id 0 is reserved for 'nobody'")

    @property
    def members(self) -> frozenset[NodeId]:
        return self.voters | self.learners


@dataclass(frozen=True, slots=True)
class HardState:
    """What must be on disk before any message that depends on it leaves (raft-pitfalls 1)."""

    term: Term = 0
    vote: NodeId = NONE
    commit: LogIndex = 0


@dataclass(frozen=True, slots=True)
class SnapshotMeta:
    index: LogIndex
    term: Term
    conf_state: ConfState


@dataclass(frozen=True, slots=True)
class Snapshot:
    """A state machine image as of ``meta.index``; ``data`` is opaque to the core."""

    meta: SnapshotMeta
    data: bytes = b""


class MessageType(enum.Enum):
    # Local messages: built by the core itself or by the runtime, never sent on the wire.
    HUP = "hup"  # election timer fired: campaign
    BEAT = "beat"  # heartbeat timer fired: the leader broadcasts heartbeats
    CHECK_QUORUM = "check_quorum"  # the leader checks it heard from a quorum
    PROP = "prop"  # a proposal from the application
    TRANSFER_LEADER = "transfer_leader"  # ask the leader to hand over to ``from_``
    READ_INDEX = "read_index"  # a linearizable read, identified by ``context``
    SNAP_STATUS = "snap_status"  # the runtime reports a snapshot send (``reject`` = failed)
    UNREACHABLE = "unreachable"  # the runtime could not reach a peer
    # Wire messages.
    APP = "app"
    APP_RESP = "app_resp"
    VOTE = "vote"
    VOTE_RESP = "vote_resp"
    PRE_VOTE = "pre_vote"
    PRE_VOTE_RESP = "pre_vote_resp"
    SNAP = "snap"
    HEARTBEAT = "heartbeat"
    HEARTBEAT_RESP = "heartbeat_resp"
    TIMEOUT_NOW = "timeout_now"
    READ_INDEX_RESP = "read_index_resp"


LOCAL_MESSAGE_TYPES = frozenset(
    {
        MessageType.HUP,
        MessageType.BEAT,
        MessageType.CHECK_QUORUM,
        MessageType.PROP,
        MessageType.SNAP_STATUS,
        MessageType.UNREACHABLE,
    }
)

RESPONSE_TYPES = frozenset(
    {
        MessageType.APP_RESP,
        MessageType.VOTE_RESP,
        MessageType.PRE_VOTE_RESP,
        MessageType.HEARTBEAT_RESP,
        MessageType.READ_INDEX_RESP,
    }
)


@dataclass(frozen=True, slots=True)
class Message:
    """One Raft message, with etcd's flat field set; the meaning of a field depends on ``type``.

    APP: ``index``/``log_term`` identify the entry before ``entries``; ``commit`` is the
    leader's commit index. APP_RESP: ``index`` is the last index the follower matches, or
    with ``reject`` the rejected ``index`` plus a hint (``reject_hint``, ``log_term``) that
    lets the leader skip back a term at a time. VOTE/PRE_VOTE: ``index``/``log_term`` are
    the candidate's last entry. HEARTBEAT: ``commit`` is min(follower match, commit);
    ``quiesce`` says the leader stops heartbeating this idle group (``raft/quiesce.py``).
    ``context`` carries a ReadIndex request id or the campaign kind.
    """

    type: MessageType
    to: NodeId = NONE
    from_: NodeId = NONE
    term: Term = 0
    log_term: Term = 0
    index: LogIndex = 0
    entries: tuple[Entry, ...] = ()
    commit: LogIndex = 0
    reject: bool = False
    reject_hint: LogIndex = 0
    snapshot: Snapshot | None = None
    context: bytes = b""
    quiesce: bool = False

    @property
    def size_bytes(self) -> int:
        size = 64 + len(self.context) + sum(e.size_bytes for e in self.entries)
        if self.snapshot is not None:
            size += len(self.snapshot.data)
        return size


@dataclass(frozen=True, slots=True)
class ReadState:
    """A ReadIndex answer: once the local applied index reaches ``index``, serve the read."""

    index: LogIndex
    context: bytes


class Role(enum.Enum):
    FOLLOWER = "follower"
    PRE_CANDIDATE = "pre_candidate"
    CANDIDATE = "candidate"
    LEADER = "leader"


@dataclass(frozen=True, slots=True)
class SoftState:
    """Volatile state the runtime may want to know about; never persisted."""

    leader: NodeId
    role: Role


@dataclass(frozen=True, slots=True)
class Ready:
    """Everything the runtime must do, in this order (etcd's ``Ready`` contract):

    1. persist ``snapshot`` (if any), ``entries`` and ``hard_state`` (if any) in one write,
       synced when ``must_sync`` is true;
    2. send ``messages`` (only now: they may depend on what was just persisted);
    3. apply ``snapshot`` to the state machine, then ``committed_entries`` in order, and
       record the applied index in the same transaction as their effects;
    4. call ``RaftCore.advance(ready)``.
    """

    soft_state: SoftState | None
    hard_state: HardState | None
    entries: tuple[Entry, ...]
    snapshot: Snapshot | None
    committed_entries: tuple[Entry, ...]
    messages: tuple[Message, ...]
    read_states: tuple[ReadState, ...]
    must_sync: bool
    # Not part of etcd's Ready: proposals the runtime should answer "maybe" because this
    # node stopped leading while they were uncommitted (raft-pitfalls 16).
    lost_leadership: bool = field(default=False)
