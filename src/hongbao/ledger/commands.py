"""What goes into the Raft log: commands, batches of them, and the read-only queries.

Rules of this module: plain frozen records and their byte encoding, nothing else. Two kinds
of mutating command exist:

* *client commands* carry a ``request_id``: the state machine remembers each one's result
  and answers a retry with it (see ``idempotency``);
* *system commands* (:class:`ExpireEnvelopes`, :class:`Deliver`, :class:`Acknowledge`) are
  proposed by the node runtime itself and are idempotent by construction (an envelope
  expires once; a delivery is numbered; an acknowledgement only moves forward), so they do
  not spend the bounded request-id window.

A log entry holds one :class:`Batch`: the leader's clock reading ``ts_ms`` plus commands.
The state machine's only notion of time is that reading. Encoding: ``hongbao.ledger.codec``
(canonical MessagePack behind a version byte; the module docstring there says why).
"""

from __future__ import annotations

import hashlib
import typing
from dataclasses import dataclass
from typing import TypeAlias

from hongbao.ledger.codec import CodecError, decode, decode_union, encode, registered
from hongbao.ledger.limits import Limits
from hongbao.ledger.records import CreditKind, EnvelopeKind

BATCH_FORMAT_VERSION = 1
TS_MS_MAX = 2**53
"""Latest batch timestamp accepted (year ~287,000): keeps every derived time (an envelope's
expiry is ts + TTL) far inside the 64-bit integers the codec and keys allow."""

# -- wallet -------------------------------------------------------------------------------------


@registered("deposit")
@dataclass(frozen=True, slots=True)
class Deposit:
    request_id: str
    user_id: str
    amount_fen: int


@registered("withdraw")
@dataclass(frozen=True, slots=True)
class Withdraw:
    request_id: str
    user_id: str
    amount_fen: int


@registered("transfer")
@dataclass(frozen=True, slots=True)
class Transfer:
    """Applied on the payer's shard; crosses shards through the outbox when it must."""

    request_id: str
    from_user_id: str
    to_user_id: str
    amount_fen: int


@registered("freeze")
@dataclass(frozen=True, slots=True)
class Freeze:
    request_id: str
    user_id: str


@registered("unfreeze")
@dataclass(frozen=True, slots=True)
class Unfreeze:
    request_id: str
    user_id: str


# -- envelopes ----------------------------------------------------------------------------------


@registered("send_envelope")
@dataclass(frozen=True, slots=True)
class SendEnvelope:
    """Applied on the sender's shard, which becomes the envelope's home."""

    request_id: str
    sender_user_id: str
    kind: EnvelopeKind
    total_fen: int
    share_count: int


@registered("grab_envelope")
@dataclass(frozen=True, slots=True)
class GrabEnvelope:
    """Applied on the envelope's shard (named in its id); the grabber may live anywhere."""

    request_id: str
    envelope_id: str
    user_id: str


@registered("expire_envelopes")
@dataclass(frozen=True, slots=True)
class ExpireEnvelopes:
    """Refund up to ``limit`` envelopes whose expiry is at or before ``now_ms``.

    The leader proposes it periodically with its clock; ``now_ms`` may not be ahead of the
    batch's own timestamp (the state machine refuses that: TIME_IN_FUTURE).
    """

    now_ms: int
    limit: int


# -- cross-shard --------------------------------------------------------------------------------


@registered("deliver")
@dataclass(frozen=True, slots=True)
class Deliver:
    """One outbox entry of ``source_shard``, applied on the credited user's shard."""

    source_shard: int
    seq: int
    user_id: str
    amount_fen: int
    kind: CreditKind
    ref: str


@registered("acknowledge")
@dataclass(frozen=True, slots=True)
class Acknowledge:
    """On the source shard: ``destination_shard`` has applied every seq <= ``up_to_seq``."""

    destination_shard: int
    up_to_seq: int


# -- operations ---------------------------------------------------------------------------------


@registered("set_limits")
@dataclass(frozen=True, slots=True)
class SetLimits:
    """Replace the shard's limits (through the log, so every replica changes at once)."""

    request_id: str
    limits: Limits


@registered("fence")
@dataclass(frozen=True, slots=True)
class Fence:
    """What became of ``request_id``, asked on the shard of ``user_id`` (the user the
    request was about): through the log, so the answer is final.

    If the shard remembers the id, the answer is its first result (a refusal is a result
    too). If not, the same apply remembers the id as *fenced* and answers "not applied";
    from then on any command carrying the id is refused (REQUEST_FENCED), so a late retry
    cannot make that answer false. A fenced id ages out of the idempotency window like any
    other remembered id (``Limits.idempotency_retention_ms``): past it, the id is unknown
    again. Asking twice gives the same answer and changes nothing the second time.
    """

    request_id: str
    user_id: str


ClientCommand: TypeAlias = (
    Deposit
    | Withdraw
    | Transfer
    | Freeze
    | Unfreeze
    | SendEnvelope
    | GrabEnvelope
    | SetLimits
    | Fence
)
SystemCommand: TypeAlias = ExpireEnvelopes | Deliver | Acknowledge
Command: TypeAlias = ClientCommand | SystemCommand
CLIENT_COMMAND_TYPES: tuple[type, ...] = typing.get_args(ClientCommand)
COMMAND_TYPES: tuple[type, ...] = (*CLIENT_COMMAND_TYPES, *typing.get_args(SystemCommand))


@registered("batch")
@dataclass(frozen=True, slots=True)
class Batch:
    """The payload of one Raft log entry."""

    ts_ms: int
    commands: tuple[Command, ...]
    version: int = BATCH_FORMAT_VERSION

    def __post_init__(self) -> None:
        if self.version != BATCH_FORMAT_VERSION:
            raise ValueError(f"unsupported batch format version {self.version}")
        if not 0 <= self.ts_ms <= TS_MS_MAX:
            raise ValueError(f"ts_ms must be in 0..{TS_MS_MAX}, got {self.ts_ms}")


# -- queries (read-only; served from a read transaction, never logged) --------------------------


@registered("get_account")
@dataclass(frozen=True, slots=True)
class GetAccount:
    user_id: str


@registered("get_history")
@dataclass(frozen=True, slots=True)
class GetHistory:
    """The newest ``limit`` lines of a statement below ``before_seq`` (0: the newest).

    A page boundary is a per-wallet seq, not a position: lines that arrive while a client
    pages get higher seqs, so walking down from one page's last seq returns every line
    exactly once, however many arrive meanwhile.
    """

    user_id: str
    limit: int
    before_seq: int = 0


@registered("show_envelope")
@dataclass(frozen=True, slots=True)
class ShowEnvelope:
    envelope_id: str


@registered("get_inbox_seq")
@dataclass(frozen=True, slots=True)
class GetInboxSeq:
    source_shard: int


Query: TypeAlias = GetAccount | GetHistory | ShowEnvelope | GetInboxSeq


# -- bytes --------------------------------------------------------------------------------------


def encode_batch(batch: Batch) -> bytes:
    return encode(batch)


def decode_batch(data: bytes) -> Batch:
    """Raises :class:`CodecError` for anything but a canonical batch."""
    return decode(data, Batch)


def encode_command(command: Command) -> bytes:
    return encode(command)


def decode_command(data: bytes) -> Command:
    value = decode_union(data, Command)
    if not isinstance(value, COMMAND_TYPES):
        raise CodecError(f"{type(value).__name__} is not a command")
    return typing.cast(Command, value)


def encode_query(query: Query) -> bytes:
    return encode(query)


def decode_query(data: bytes) -> Query:
    return typing.cast(Query, decode_union(data, Query))


def fingerprint(command: Command) -> str:
    """A short digest of the command's encoding: tells a retry from a reused request id."""
    return hashlib.blake2b(encode(command), digest_size=16, person=b"hongbao.cmd").hexdigest()
