"""What the state machine answers: one result per command or query.

Rules of this module: a result is :class:`Ok` with a typed view, or :class:`Rejected` with
a :class:`~hongbao.ledger.reasons.Reason` and a human message. Results are stored (the
idempotency table keeps each client command's first answer), so they are registered
records with a canonical encoding, like everything else the ledger writes.
"""

from __future__ import annotations

import typing
from dataclasses import dataclass
from typing import TypeAlias

from hongbao.ledger.codec import decode_union, encode, registered
from hongbao.ledger.limits import Limits
from hongbao.ledger.reasons import ErrorClass, Reason
from hongbao.ledger.records import EnvelopeKind, EnvelopeStatus, Grab, HistoryEntry


@registered("account_view")
@dataclass(frozen=True, slots=True)
class AccountView:
    user_id: str
    balance_fen: int
    frozen: bool
    outgoing_day: int
    outgoing_today_fen: int


@registered("transfer_receipt")
@dataclass(frozen=True, slots=True)
class TransferReceipt:
    from_user_id: str
    to_user_id: str
    amount_fen: int
    from_balance_fen: int
    destination_shard: int
    outbox_seq: int | None  # None when both wallets are on this shard (credited already)


@registered("envelope_created")
@dataclass(frozen=True, slots=True)
class EnvelopeCreated:
    envelope_id: str
    total_fen: int
    share_count: int
    sender_balance_fen: int
    expires_at_ms: int


@registered("grab_receipt")
@dataclass(frozen=True, slots=True)
class GrabReceipt:
    envelope_id: str
    user_id: str
    ordinal: int
    amount_fen: int
    remaining_count: int
    remaining_fen: int
    destination_shard: int
    outbox_seq: int | None  # None when the grabber's wallet is on this shard


@registered("expiry_report")
@dataclass(frozen=True, slots=True)
class ExpiryReport:
    envelope_ids: tuple[str, ...]
    refunded_fen: int


@registered("delivery_receipt")
@dataclass(frozen=True, slots=True)
class DeliveryReceipt:
    source_shard: int
    seq: int
    applied: bool  # False: a duplicate, acknowledged and ignored


@registered("ack_receipt")
@dataclass(frozen=True, slots=True)
class AckReceipt:
    destination_shard: int
    acked_seq: int  # may be below the requested seq: at most outbox_batch_max per command
    dropped_count: int
    dropped_fen: int


@registered("limits_view")
@dataclass(frozen=True, slots=True)
class LimitsView:
    limits: Limits


@registered("history_view")
@dataclass(frozen=True, slots=True)
class HistoryView:
    user_id: str
    entries: tuple[HistoryEntry, ...]  # newest first


@registered("envelope_view")
@dataclass(frozen=True, slots=True)
class EnvelopeView:
    envelope_id: str
    sender_user_id: str
    kind: EnvelopeKind
    total_fen: int
    share_count: int
    grabbed_count: int
    grabbed_fen: int
    remaining_count: int
    remaining_fen: int
    refunded_fen: int
    status: EnvelopeStatus
    created_at_ms: int
    expires_at_ms: int
    grabs: tuple[Grab, ...]  # in grab order
    best_luck_ordinal: int | None  # lucky envelopes: largest share, ties to the earliest
    # OPEN, but its TTL passed by the reader's clock: the next sweep or grab expires it and
    # decides the refund (a read decides nothing: see hongbao.ledger.envelope)
    expiry_pending: bool = False


@registered("inbox_position")
@dataclass(frozen=True, slots=True)
class InboxPosition:
    source_shard: int
    seq: int  # the last seq applied from ``source_shard`` (0: none yet)


FirstData: TypeAlias = AccountView | TransferReceipt | EnvelopeCreated | GrabReceipt | LimitsView
"""What a client command's first result may carry (what a request status reports)."""


@registered("request_status")
@dataclass(frozen=True, slots=True)
class RequestStatusView:
    """The answer to a :class:`~hongbao.ledger.commands.Fence`: final once given.

    ``applied``: the id's first result is ``first_ok`` or ``first_rejected`` (one of them),
    of a command of codec tag ``command`` ("deposit", "transfer" ...). Not applied: the id
    is fenced from now on, and ``command`` is empty.
    """

    request_id: str
    applied: bool
    command: str
    first_ok: FirstData | None
    first_rejected: Rejected | None


ResultData: TypeAlias = (
    AccountView
    | TransferReceipt
    | EnvelopeCreated
    | GrabReceipt
    | ExpiryReport
    | DeliveryReceipt
    | AckReceipt
    | LimitsView
    | HistoryView
    | EnvelopeView
    | InboxPosition
    | RequestStatusView
)


@registered("ok")
@dataclass(frozen=True, slots=True)
class Ok:
    data: ResultData


@registered("rejected")
@dataclass(frozen=True, slots=True)
class Rejected:
    reason: Reason
    message: str

    @property
    def error_class(self) -> ErrorClass:
        return self.reason.error_class


Result: TypeAlias = Ok | Rejected


def encode_result(result: Result) -> bytes:
    return encode(result)


def decode_result(data: bytes) -> Result:
    return typing.cast(Result, decode_union(data, Result))  # the tag was checked against Result
