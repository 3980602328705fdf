"""Translation between the ``hongbao.v1`` API and the ledger's commands, queries and results.

Rules of this module: pure functions, no I/O. The ledger speaks its own refusal codes
(:class:`hongbao.ledger.reasons.Reason`); :data:`REASON_TO_ERROR` is the one place where
they become API reasons, and an import-time check keeps it exhaustive.
"""

from __future__ import annotations

import base64
import binascii
import re
from typing import TypeVar

from hongbao._invariant import invariant
from hongbao.ledger.commands import (
    Command,
    Deposit,
    Fence,
    Freeze,
    GrabEnvelope,
    SendEnvelope,
    Transfer,
    Unfreeze,
    Withdraw,
)
from hongbao.ledger.reasons import Reason
from hongbao.ledger.records import EnvelopeKind, EnvelopeStatus, HistoryEntry, TxKind
from hongbao.ledger.results import (
    AccountView,
    EnvelopeCreated,
    EnvelopeView,
    GrabReceipt,
    HistoryView,
    Rejected,
    RequestStatusView,
    TransferReceipt,
)
from hongbao.node.errors import ErrorReason, HongbaoError, error_to_proto, make_error
from hongbao.proto.gen.hongbao.v1 import ledger_pb2

T = TypeVar("T")
R, E = Reason, ErrorReason
REASON_TO_ERROR: dict[Reason, ErrorReason] = {
    R.AMOUNT_NOT_POSITIVE: E.INVALID_AMOUNT,
    R.AMOUNT_TOO_LARGE: E.AMOUNT_TOO_LARGE,
    R.MALFORMED_USER_ID: E.MALFORMED_ID,
    R.MALFORMED_REQUEST_ID: E.MALFORMED_ID,
    R.MALFORMED_ENVELOPE_ID: E.MALFORMED_ID,
    R.SAME_ACCOUNT: E.INVALID_REQUEST,
    R.SHARE_COUNT_OUT_OF_RANGE: E.LIMIT_EXCEEDED,
    R.ENVELOPE_TOTAL_TOO_SMALL: E.INVALID_AMOUNT,
    R.ENVELOPE_TOTAL_TOO_LARGE: E.AMOUNT_TOO_LARGE,
    R.FIXED_TOTAL_NOT_DIVISIBLE: E.INVALID_AMOUNT,
    R.LIMIT_OUT_OF_RANGE: E.LIMIT_EXCEEDED,
    R.INVALID_LIMITS: E.INVALID_REQUEST,
    R.INVALID_SHARD: E.INVALID_REQUEST,
    R.INVALID_SEQUENCE: E.INVALID_REQUEST,
    R.WRONG_SHARD: E.INVALID_REQUEST,
    R.BATCH_TOO_LARGE: E.LIMIT_EXCEEDED,
    R.TIME_IN_FUTURE: E.INVALID_REQUEST,
    R.REQUEST_ID_REUSED: E.REQUEST_ID_REUSED,
    R.ACK_BEYOND_OUTBOX: E.INVALID_REQUEST,
    R.INSUFFICIENT_FUNDS: E.INSUFFICIENT_FUNDS,
    R.ACCOUNT_FROZEN: E.ACCOUNT_FROZEN,
    R.DAILY_LIMIT_EXCEEDED: E.DAILY_LIMIT_EXCEEDED,
    R.ENVELOPE_EXPIRED: E.ENVELOPE_EXPIRED,
    R.ENVELOPE_EMPTY: E.ENVELOPE_EMPTY,
    R.ALREADY_GRABBED: E.ALREADY_GRABBED,
    R.SEQUENCE_GAP: E.INVALID_REQUEST,
    R.HOLDINGS_LIMIT_EXCEEDED: E.LIMIT_EXCEEDED,
    R.REQUEST_FENCED: E.REQUEST_FENCED,
    R.ACCOUNT_NOT_FOUND: E.NOT_FOUND,
    R.ENVELOPE_NOT_FOUND: E.NOT_FOUND,
}
invariant(set(REASON_TO_ERROR) == set(Reason), "every ledger Reason needs an API reason")

_KINDS = {
    ledger_pb2.ENVELOPE_KIND_LUCKY: EnvelopeKind.LUCKY,
    ledger_pb2.ENVELOPE_KIND_FIXED: EnvelopeKind.FIXED,
}
_KINDS_OUT = {kind: number for number, kind in _KINDS.items()}
_STATES = {
    EnvelopeStatus.OPEN: ledger_pb2.ENVELOPE_STATE_OPEN,
    EnvelopeStatus.EMPTY: ledger_pb2.ENVELOPE_STATE_EMPTY,
    EnvelopeStatus.EXPIRED: ledger_pb2.ENVELOPE_STATE_EXPIRED,
}


def rejected_error(rejected: Rejected, shard_id: int | None = None) -> HongbaoError:
    return make_error(
        REASON_TO_ERROR[rejected.reason],
        f"{rejected.reason.value}: {rejected.message}",
        shard_id=shard_id,
    )


def invalid(message: str, reason: ErrorReason = ErrorReason.INVALID_REQUEST) -> HongbaoError:
    return make_error(reason, message)


# -- requests to commands -------------------------------------------------------------------


def deposit_command(request: ledger_pb2.DepositRequest) -> Command:
    return Deposit(request.request_id, request.user_id, request.amount_fen)


def withdraw_command(request: ledger_pb2.WithdrawRequest) -> Command:
    return Withdraw(request.request_id, request.user_id, request.amount_fen)


def transfer_command(request: ledger_pb2.TransferRequest) -> Command:
    return Transfer(
        request.request_id, request.from_user_id, request.to_user_id, request.amount_fen
    )


def freeze_command(request: ledger_pb2.FreezeRequest) -> Command:
    return Freeze(request.request_id, request.user_id)


def unfreeze_command(request: ledger_pb2.UnfreezeRequest) -> Command:
    return Unfreeze(request.request_id, request.user_id)


def send_command(request: ledger_pb2.SendRequest) -> Command:
    kind = _KINDS.get(request.kind)
    if kind is None:
        raise invalid("kind must be ENVELOPE_KIND_LUCKY or ENVELOPE_KIND_FIXED")
    return SendEnvelope(
        request.request_id, request.sender_user_id, kind, request.total_fen, request.count
    )


def grab_command(request: ledger_pb2.GrabRequest) -> Command:
    return GrabEnvelope(request.request_id, request.envelope_id, request.user_id)


def fence_command(request: ledger_pb2.RequestStatusRequest) -> Command:
    return Fence(request.request_id, request.user_id)


# -- results to responses -------------------------------------------------------------------


def expect(data: object, kind: type[T]) -> T:
    invariant(isinstance(data, kind), f"expected {kind.__name__}, got {type(data).__name__}")
    return data  # type: ignore[return-value]


def balance_response(view: AccountView) -> ledger_pb2.BalanceResponse:
    return ledger_pb2.BalanceResponse(
        balance_fen=view.balance_fen,
        frozen=view.frozen,
        daily_outgoing_fen=view.outgoing_today_fen,
    )


def transfer_response(receipt: TransferReceipt) -> ledger_pb2.TransferResponse:
    return ledger_pb2.TransferResponse(
        from_balance_fen=receipt.from_balance_fen, cross_shard=receipt.outbox_seq is not None
    )


def send_response(created: EnvelopeCreated) -> ledger_pb2.SendResponse:
    return ledger_pb2.SendResponse(
        envelope_id=created.envelope_id,
        sender_balance_fen=created.sender_balance_fen,
        expires_at_ms=created.expires_at_ms,
    )


def grab_response(receipt: GrabReceipt) -> ledger_pb2.GrabResponse:
    return ledger_pb2.GrabResponse(
        amount_fen=receipt.amount_fen,
        ordinal=receipt.ordinal,
        remaining_count=receipt.remaining_count,
        cross_shard=receipt.outbox_seq is not None,
    )


# -- history pages ---------------------------------------------------------------------------
#
# A page token is opaque to clients: urlsafe base64 (no padding) of a small versioned
# struct, [version u8][user id length u8][user id][per-wallet seq u64], where the seq is
# the last line of the page it continues (the next page holds the lines below it). It is
# checked strictly (its one spelling, its version, its length, its user), so a token
# never means something its server did not write.

PAGE_TOKEN_VERSION = 1
PAGE_TOKEN_CHARS_MAX = 128  # 1 + 1 + 64 + 8 bytes is 99 characters


def page_token(user_id: str, last_seq: int) -> str:
    user = user_id.encode("ascii")
    invariant(len(user) <= 255 and last_seq > 0, f"no token for {user_id!r} at {last_seq}")
    raw = bytes((PAGE_TOKEN_VERSION, len(user))) + user + last_seq.to_bytes(8, "big")
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def history_before_seq(user_id: str, token: str) -> int:
    """The seq a HistoryRequest's ``page_token`` continues below (0 for no token).

    Raises INVALID_REQUEST for a malformed token or one of another user.
    """
    if not token:
        return 0
    if len(token) > PAGE_TOKEN_CHARS_MAX or not _TOKEN_CHARS.fullmatch(token):
        raise invalid("page_token is malformed: not a token this server gave")
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
    except (ValueError, binascii.Error):
        raise invalid("page_token is malformed: not base64") from None
    if len(raw) < 10 or raw[0] != PAGE_TOKEN_VERSION or len(raw) != 10 + raw[1]:
        raise invalid("page_token is malformed: unknown version or length")
    user, seq = raw[2:-8], int.from_bytes(raw[-8:], "big")
    if seq < 1 or not user.isascii() or page_token(user.decode("ascii"), seq) != token:
        raise invalid("page_token is malformed: not in its canonical form")
    if user.decode("ascii") != user_id:
        raise invalid("page_token belongs to another user's history")
    return seq


_TOKEN_CHARS = re.compile(r"[A-Za-z0-9_-]+")


def history_response(view: HistoryView) -> ledger_pb2.HistoryResponse:
    """One page, newest first; a next token unless its last line is the wallet's first.

    Lines are numbered 1..N without gaps, so "nothing older" is exactly "the last line
    here is line 1" (or the page is empty): no look-ahead read is needed.
    """
    entries = view.entries
    token = page_token(view.user_id, entries[-1].seq) if entries and entries[-1].seq > 1 else ""
    return ledger_pb2.HistoryResponse(
        postings=[_posting(entry) for entry in entries], next_page_token=token
    )


def _posting(entry: HistoryEntry) -> ledger_pb2.Posting:
    return ledger_pb2.Posting(
        seq=entry.seq,
        ts_ms=entry.at_ms,
        kind=_posting_kind(entry),
        amount_fen=entry.delta_fen,
        balance_fen=entry.balance_fen,
        counterparty=entry.counterparty,
        ref=entry.ref,
    )


# A posting's kind is its cause on either shard (ledger.proto, PostingKind): a credit
# delivered from another shard is journalled with the kind of what sent it (the outbox
# carries it), so it reads TRANSFER_IN or ENVELOPE_GRAB here too. SETTLEMENT moves money
# between a shard's internal outbox accounts only and never reaches a wallet's statement.
_POSTING_KINDS: dict[TxKind, ledger_pb2.PostingKind] = {
    TxKind.DEPOSIT: ledger_pb2.POSTING_KIND_DEPOSIT,
    TxKind.WITHDRAW: ledger_pb2.POSTING_KIND_WITHDRAW,
    TxKind.ENVELOPE_SEND: ledger_pb2.POSTING_KIND_ENVELOPE_SEND,
    TxKind.ENVELOPE_GRAB: ledger_pb2.POSTING_KIND_ENVELOPE_GRAB,
    TxKind.ENVELOPE_REFUND: ledger_pb2.POSTING_KIND_ENVELOPE_REFUND,
    TxKind.SETTLEMENT: ledger_pb2.POSTING_KIND_SETTLEMENT,
}
invariant(set(_POSTING_KINDS) | {TxKind.TRANSFER} == set(TxKind), "every TxKind needs a kind")


def _posting_kind(entry: HistoryEntry) -> ledger_pb2.PostingKind:
    if entry.kind is TxKind.TRANSFER:
        if entry.delta_fen < 0:
            return ledger_pb2.POSTING_KIND_TRANSFER_OUT
        return ledger_pb2.POSTING_KIND_TRANSFER_IN
    return _POSTING_KINDS[entry.kind]


def envelope_response(view: EnvelopeView) -> ledger_pb2.ShowResponse:
    best = view.best_luck_ordinal or 0  # None: a fixed envelope, or no grab yet
    return ledger_pb2.ShowResponse(
        envelope=ledger_pb2.Envelope(
            envelope_id=view.envelope_id,
            sender_user_id=view.sender_user_id,
            kind=_KINDS_OUT[view.kind],
            total_fen=view.total_fen,
            count=view.share_count,
            created_at_ms=view.created_at_ms,
            expires_at_ms=view.expires_at_ms,
            state=_STATES[view.status],
            remaining_fen=view.remaining_fen,
            remaining_count=view.remaining_count,
            refunded_fen=view.refunded_fen,
            grabs=[
                ledger_pb2.EnvelopeGrab(
                    ordinal=g.ordinal, user_id=g.user_id, amount_fen=g.amount_fen, ts_ms=g.at_ms
                )
                for g in view.grabs
            ],
            best_luck_ordinal=best,
            expiry_pending=view.expiry_pending,
        )
    )


# -- request status ------------------------------------------------------------------------


def request_status_response(view: RequestStatusView) -> ledger_pb2.RequestStatusResponse:
    """APPLIED with the first result in the shape of its request's answer, or NOT_APPLIED."""
    if not view.applied:
        return ledger_pb2.RequestStatusResponse(outcome=ledger_pb2.REQUEST_OUTCOME_NOT_APPLIED)
    return ledger_pb2.RequestStatusResponse(
        outcome=ledger_pb2.REQUEST_OUTCOME_APPLIED, result=first_result(view)
    )


def first_result(view: RequestStatusView) -> ledger_pb2.OperationResult:
    """An applied id's first result as an OperationResult (empty for a SetLimits)."""
    if view.first_rejected is not None:
        error = rejected_error(view.first_rejected)
        return ledger_pb2.OperationResult(error=error_to_proto(error))
    data = view.first_ok
    pb = ledger_pb2
    match data:
        case AccountView() if view.command == "deposit":
            return pb.OperationResult(deposit=pb.DepositResponse(balance_fen=data.balance_fen))
        case AccountView() if view.command == "withdraw":
            return pb.OperationResult(withdraw=pb.WithdrawResponse(balance_fen=data.balance_fen))
        case AccountView() if view.command == "freeze":
            return pb.OperationResult(freeze=pb.FreezeResponse(frozen=data.frozen))
        case AccountView() if view.command == "unfreeze":
            return pb.OperationResult(unfreeze=pb.UnfreezeResponse(frozen=data.frozen))
        case TransferReceipt():
            return pb.OperationResult(transfer=transfer_response(data))
        case EnvelopeCreated():
            return pb.OperationResult(send=send_response(data))
        case GrabReceipt():
            return pb.OperationResult(grab=grab_response(data))
    return pb.OperationResult()  # SetLimits: its answer has no place in OperationResult
