"""The rows of a shard's tables: their records and how their keys are spelled.

Rules of this module: one place decides the bytes of every key (so the LMDB store, the
snapshot and the audit agree), and every value is a registered record encoded by the
codec. Integers inside keys are fixed-width big-endian so byte order is numeric order.
Records are immutable; a change is a new record written over the old one.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import TypeVar

from hongbao._invariant import InvariantViolation
from hongbao.ledger.codec import decode, encode, registered
from hongbao.ledger.store import LedgerStore, Table

T = TypeVar("T")

SEQ_MAX = 2**64 - 1
SEPARATOR = b"\x00"  # never inside user, envelope or request ids (their formats exclude it)


class EnvelopeKind(enum.StrEnum):
    LUCKY = "lucky"  # shares drawn at grab time by the double-average rule
    FIXED = "fixed"  # every share is total / count exactly


class EnvelopeStatus(enum.StrEnum):
    OPEN = "open"  # shares remain and the TTL has not passed
    EMPTY = "empty"  # every share was grabbed; nothing left in escrow
    EXPIRED = "expired"  # the TTL passed; the remainder went back to the sender


class CreditKind(enum.StrEnum):
    """Why money crosses shards (carried by outbox entries and deliveries)."""

    TRANSFER = "transfer"
    GRAB = "grab"


class TxKind(enum.StrEnum):
    """What a journal transaction records."""

    DEPOSIT = "deposit"
    WITHDRAW = "withdraw"
    TRANSFER = "transfer"
    ENVELOPE_SEND = "envelope_send"
    ENVELOPE_GRAB = "envelope_grab"
    ENVELOPE_REFUND = "envelope_refund"
    SETTLEMENT = "settlement"


@registered("shard_identity")
@dataclass(frozen=True, slots=True)
class ShardIdentity:
    shard_id: int
    shard_count: int


MONEY_FIELDS = (
    "balances_fen",
    "escrow_fen",
    "outbox_fen",
    "deposits_fen",
    "withdrawals_fen",
    "delivered_in_fen",
    "settled_out_fen",
)
"""The money totals of :class:`ShardState`: checked per command, encoded wide."""


@registered("shard_state", wide_ints=MONEY_FIELDS)
@dataclass(frozen=True, slots=True)
class ShardState:
    """Counters and running totals of one shard, rewritten once per applied batch.

    The totals make the audit cheap and are checked after every command:
    ``balances + escrow + outbox == deposits - withdrawals + delivered_in - settled_out``.
    The money totals are sums over every user, and the cumulative ones only ever grow
    (money that goes in and out again still counts), so they are encoded as wide integers:
    a 64-bit total could overflow within a shard's life at high limits.
    """

    clock_ms: int = 0  # the largest batch ts_ms applied: the shard's time never goes back
    envelope_seq_last: int = 0
    journal_seq_last: int = 0
    idempotency_ordinal_last: int = 0
    idempotency_count: int = 0
    malformed_entries: int = 0  # committed log entries that did not decode (skipped)
    balances_fen: int = 0
    escrow_fen: int = 0
    outbox_fen: int = 0  # in outbox entries not yet acknowledged
    deposits_fen: int = 0
    withdrawals_fen: int = 0
    delivered_in_fen: int = 0  # credited here from other shards' outboxes
    settled_out_fen: int = 0  # dropped from this shard's outbox after acknowledgement

    def conserved(self) -> bool:
        held = self.balances_fen + self.escrow_fen + self.outbox_fen
        net_in = self.deposits_fen - self.withdrawals_fen
        return held == net_in + self.delivered_in_fen - self.settled_out_fen


@registered("account")
@dataclass(frozen=True, slots=True)
class Account:
    user_id: str
    balance_fen: int
    frozen: bool
    outgoing_day: int  # the UTC+8 day number ``outgoing_fen`` belongs to
    outgoing_fen: int  # money moved out by the user on ``outgoing_day``
    # The seq of the wallet's newest statement line: its lines are numbered 1, 2, 3 ...
    # in apply order, with no gap (the API's ``Posting.seq``; see :class:`HistoryEntry`).
    postings_last: int = 0


@registered("posting")
@dataclass(frozen=True, slots=True)
class Posting:
    """One leg of a journal transaction. Accounts: ``u:{user}``, ``@world``,
    ``@escrow:{envelope}``, ``@outbox:{shard}``, ``@inbox:{shard}``, ``@settled:{shard}``."""

    account: str
    delta_fen: int


@registered("journal_tx")
@dataclass(frozen=True, slots=True)
class JournalTx:
    seq: int
    at_ms: int
    kind: TxKind
    ref: str  # the request id, envelope id or outbox range that caused it
    postings: tuple[Posting, ...]  # sums to zero: double entry


@registered("history_entry")
@dataclass(frozen=True, slots=True)
class HistoryEntry:
    """One line of a user's statement: a wallet's leg of a journal transaction.

    ``seq`` is the wallet's own numbering (1, 2, 3 ... with no gap, what ``ledger.proto``
    promises a statement); ``journal_seq`` names the shard journal's transaction the line
    is a leg of, which the deep audit checks it against. Both are assigned while a batch
    applies, from counters in the log's state, so every replica numbers alike.
    """

    seq: int
    journal_seq: int
    at_ms: int
    kind: TxKind
    ref: str
    delta_fen: int  # positive in, negative out
    balance_fen: int  # after this line
    counterparty: str  # the other leg's account


@registered("envelope")
@dataclass(frozen=True, slots=True)
class Envelope:
    envelope_id: str
    envelope_seq: int
    sender_user_id: str
    kind: EnvelopeKind
    total_fen: int
    share_count: int
    share_cap_fen: int  # no share may exceed this (2 x initial average; fixed: the share)
    remaining_fen: int  # in escrow
    remaining_count: int  # shares not grabbed
    refunded_fen: int
    status: EnvelopeStatus
    created_at_ms: int
    expires_at_ms: int
    seed: str  # hex; private to the state machine: lucky draws are unpredictable to grabbers


@registered("grab")
@dataclass(frozen=True, slots=True)
class Grab:
    ordinal: int  # 1 for the first grab
    user_id: str
    amount_fen: int
    at_ms: int


@registered("outbox_entry")
@dataclass(frozen=True, slots=True)
class OutboxEntry:
    source_shard: int
    destination_shard: int
    seq: int  # per (source, destination), from 1, no gaps
    user_id: str
    amount_fen: int
    kind: CreditKind
    ref: str
    created_at_ms: int


@registered("outbox_cursor")
@dataclass(frozen=True, slots=True)
class OutboxCursor:
    destination_shard: int
    last_seq: int  # the last seq assigned toward this destination
    acked_seq: int  # every seq <= this has been dropped


# -- keys ---------------------------------------------------------------------------------------


def u32(value: int) -> bytes:
    return value.to_bytes(4, "big")


def u64(value: int) -> bytes:
    return value.to_bytes(8, "big")


META_APPLIED_INDEX = b"applied_index"
META_IDENTITY = b"identity"
META_LIMITS = b"limits"
META_STATE = b"state"
META_OUTBOX_PREFIX = b"outbox/"


def meta_outbox_key(destination_shard: int) -> bytes:
    return META_OUTBOX_PREFIX + u32(destination_shard)


def account_key(user_id: str) -> bytes:
    return user_id.encode("ascii")


def history_prefix(user_id: str) -> bytes:
    return user_id.encode("ascii") + SEPARATOR


def history_key(user_id: str, posting_seq: int) -> bytes:
    """Inverted per-wallet seq: a forward scan of the user's prefix reads the newest lines
    first, and starting at ``history_key(user, n)`` reads line n and the older ones."""
    return history_prefix(user_id) + u64(SEQ_MAX - posting_seq)


def journal_key(journal_seq: int) -> bytes:
    return u64(journal_seq)


def envelope_key(envelope_id: str) -> bytes:
    return envelope_id.encode("ascii")


def expiry_key(expires_at_ms: int, envelope_seq: int) -> bytes:
    return u64(expires_at_ms) + u64(envelope_seq)


def grabs_prefix(envelope_id: str) -> bytes:
    return envelope_id.encode("ascii") + SEPARATOR


def grab_key(envelope_id: str, ordinal: int) -> bytes:
    return grabs_prefix(envelope_id) + u32(ordinal)


def grabber_key(envelope_id: str, user_id: str) -> bytes:
    return grabs_prefix(envelope_id) + user_id.encode("ascii")


def outbox_prefix(destination_shard: int) -> bytes:
    return u32(destination_shard)


def outbox_key(destination_shard: int, seq: int) -> bytes:
    return u32(destination_shard) + u64(seq)


def inbox_key(source_shard: int) -> bytes:
    return u32(source_shard)


# -- typed access -------------------------------------------------------------------------------


def row(data: bytes, cls: type[T]) -> T:
    """A row the ledger wrote itself, decoded and type-checked (the audit also re-checks
    canonical form; the hot path trusts the store's own checksum for that)."""
    return decode(data, cls, canonical=False)


def load(store: LedgerStore, table: Table, key: bytes, cls: type[T]) -> T | None:
    """The record under ``key``, decoded and type-checked, or None."""
    data = store.get(table, key)
    return None if data is None else row(data, cls)


def load_required(store: LedgerStore, table: Table, key: bytes, cls: type[T]) -> T:
    record = load(store, table, key, cls)
    if record is None:
        raise InvariantViolation(f"{table}/{key!r}: required {cls.__name__} row is missing")
    return record


def save(store: LedgerStore, table: Table, key: bytes, record: object) -> None:
    store.put(table, key, encode(record))
