"""Checks that need no state: run by the proposer before the log, and again by the machine.

Rules of this module: a pure function of the command and the limits, nothing else (no
shard, no clock, no store). The leader calls :func:`validate` to refuse bad requests
before they cost a log entry; the state machine calls it again for every command it
applies, because a log entry may come from a buggy or older proposer. Checks that need the
shard's identity (``WRONG_SHARD``, ``INVALID_SHARD`` against the shard count) or its
state live in the handlers.
"""

from __future__ import annotations

from hongbao.ledger.commands import (
    Acknowledge,
    Command,
    Deliver,
    Deposit,
    ExpireEnvelopes,
    Fence,
    Freeze,
    GetAccount,
    GetHistory,
    GetInboxSeq,
    GrabEnvelope,
    Query,
    SendEnvelope,
    SetLimits,
    ShowEnvelope,
    Transfer,
    Unfreeze,
    Withdraw,
)
from hongbao.ledger.limits import AMOUNT_CEILING_FEN, Limits, limits_problem
from hongbao.ledger.reasons import Reason
from hongbao.ledger.records import SEQ_MAX, EnvelopeKind
from hongbao.ledger.results import Rejected
from hongbao.ledger.sharding import is_request_id, is_user_id, parse_envelope_id


def validate(command: Command, limits: Limits) -> Rejected | None:
    """The refusal ``command`` earns whatever the state, or None if it may proceed."""
    if not isinstance(command, ExpireEnvelopes | Deliver | Acknowledge) and not is_request_id(
        command.request_id
    ):
        return Rejected(Reason.MALFORMED_REQUEST_ID, "request ids are 1..128 printable ASCII")
    match command:
        case Deposit() | Withdraw():
            return _user(command.user_id) or _amount(command.amount_fen, limits.amount_max_fen)
        case Transfer():
            problem = _user(command.from_user_id) or _user(command.to_user_id)
            if problem is None and command.from_user_id == command.to_user_id:
                problem = Rejected(Reason.SAME_ACCOUNT, "cannot transfer to the same account")
            return problem or _amount(command.amount_fen, limits.amount_max_fen)
        case Freeze() | Unfreeze() | Fence():
            return _user(command.user_id)
        case SendEnvelope():
            return _user(command.sender_user_id) or _envelope(command, limits)
        case GrabEnvelope():
            return _envelope_id(command.envelope_id) or _user(command.user_id)
        case ExpireEnvelopes():
            return _limit(command.limit, limits.expire_batch_max)
        case Deliver():
            problem = _shard(command.source_shard) or _user(command.user_id)
            if problem is None and command.seq < 1:
                problem = Rejected(Reason.INVALID_SEQUENCE, f"seq {command.seq} must be >= 1")
            if problem is None and not is_request_id(command.ref):
                problem = Rejected(Reason.MALFORMED_REQUEST_ID, "delivery ref is malformed")
            return problem or _amount(command.amount_fen, AMOUNT_CEILING_FEN)
        case Acknowledge():
            problem = _shard(command.destination_shard)
            if problem is None and command.up_to_seq < 0:
                problem = Rejected(Reason.INVALID_SEQUENCE, "up_to_seq must be >= 0")
            return problem
        case SetLimits():
            why = limits_problem(command.limits)
            return None if why is None else Rejected(Reason.INVALID_LIMITS, why)


def validate_query(query: Query, limits: Limits) -> Rejected | None:
    match query:
        case GetAccount():
            return _user(query.user_id)
        case GetHistory():
            problem = _user(query.user_id) or _limit(query.limit, limits.history_limit_max)
            if problem is None and not 0 <= query.before_seq <= SEQ_MAX:
                problem = Rejected(Reason.INVALID_SEQUENCE, f"before_seq {query.before_seq}")
            return problem
        case ShowEnvelope():
            return _envelope_id(query.envelope_id)
        case GetInboxSeq():
            return _shard(query.source_shard)


def _user(user_id: str) -> Rejected | None:
    if is_user_id(user_id):
        return None
    return Rejected(Reason.MALFORMED_USER_ID, f"user id {user_id[:80]!r} is malformed")


def _envelope_id(envelope_id: str) -> Rejected | None:
    if parse_envelope_id(envelope_id) is not None:
        return None
    return Rejected(Reason.MALFORMED_ENVELOPE_ID, f"envelope id {envelope_id[:80]!r} is malformed")


def _amount(amount_fen: int, amount_max_fen: int) -> Rejected | None:
    if amount_fen <= 0:
        return Rejected(Reason.AMOUNT_NOT_POSITIVE, f"amount {amount_fen} fen must be positive")
    if amount_fen > amount_max_fen:
        return Rejected(Reason.AMOUNT_TOO_LARGE, f"amount {amount_fen} > {amount_max_fen} fen")
    return None


def _limit(limit: int, limit_max: int) -> Rejected | None:
    if 1 <= limit <= limit_max:
        return None
    return Rejected(Reason.LIMIT_OUT_OF_RANGE, f"limit {limit} is outside 1..{limit_max}")


def _shard(shard_id: int) -> Rejected | None:
    if shard_id >= 0:
        return None
    return Rejected(Reason.INVALID_SHARD, f"shard {shard_id} is negative")


def _envelope(command: SendEnvelope, limits: Limits) -> Rejected | None:
    count, total_fen = command.share_count, command.total_fen
    if not 1 <= count <= limits.envelope_shares_max:
        return Rejected(
            Reason.SHARE_COUNT_OUT_OF_RANGE,
            f"{count} shares is outside 1..{limits.envelope_shares_max}",
        )
    if total_fen <= 0:
        return Rejected(Reason.AMOUNT_NOT_POSITIVE, f"total {total_fen} fen must be positive")
    if total_fen < count:
        return Rejected(
            Reason.ENVELOPE_TOTAL_TOO_SMALL, f"{total_fen} fen cannot give {count} shares 1 fen"
        )
    total_max_fen = min(
        limits.envelope_total_max_fen, count * limits.envelope_share_average_max_fen
    )
    if total_fen > total_max_fen:
        return Rejected(
            Reason.ENVELOPE_TOTAL_TOO_LARGE,
            f"total {total_fen} fen > {total_max_fen} fen for {count} shares",
        )
    if command.kind is EnvelopeKind.FIXED and total_fen % count != 0:
        return Rejected(
            Reason.FIXED_TOTAL_NOT_DIVISIBLE,
            f"a fixed envelope's total ({total_fen}) must divide into {count} equal shares",
        )
    return None
