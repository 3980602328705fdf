"""Why the ledger refuses a command: one enum of machine-readable reasons.

Rules of this module: every refusal the state machine can return has exactly one member
here, and every member belongs to one :class:`ErrorClass`, which the gRPC edge maps to a
status code one-to-one (INVALID_ARGUMENT, FAILED_PRECONDITION, NOT_FOUND). A client may
retry a FAILED_PRECONDITION after the state changes; an INVALID_ARGUMENT never succeeds.
"""

from __future__ import annotations

import enum


class ErrorClass(enum.StrEnum):
    INVALID_ARGUMENT = "INVALID_ARGUMENT"
    FAILED_PRECONDITION = "FAILED_PRECONDITION"
    NOT_FOUND = "NOT_FOUND"


class Reason(enum.StrEnum):
    # INVALID_ARGUMENT: the command is wrong whatever the state.
    AMOUNT_NOT_POSITIVE = "AMOUNT_NOT_POSITIVE"
    AMOUNT_TOO_LARGE = "AMOUNT_TOO_LARGE"
    MALFORMED_USER_ID = "MALFORMED_USER_ID"
    MALFORMED_REQUEST_ID = "MALFORMED_REQUEST_ID"
    MALFORMED_ENVELOPE_ID = "MALFORMED_ENVELOPE_ID"
    SAME_ACCOUNT = "SAME_ACCOUNT"
    SHARE_COUNT_OUT_OF_RANGE = "SHARE_COUNT_OUT_OF_RANGE"
    ENVELOPE_TOTAL_TOO_SMALL = "ENVELOPE_TOTAL_TOO_SMALL"
    ENVELOPE_TOTAL_TOO_LARGE = "ENVELOPE_TOTAL_TOO_LARGE"
    FIXED_TOTAL_NOT_DIVISIBLE = "FIXED_TOTAL_NOT_DIVISIBLE"
    LIMIT_OUT_OF_RANGE = "LIMIT_OUT_OF_RANGE"
    INVALID_LIMITS = "INVALID_LIMITS"
    INVALID_SHARD = "INVALID_SHARD"
    INVALID_SEQUENCE = "INVALID_SEQUENCE"
    WRONG_SHARD = "WRONG_SHARD"
    BATCH_TOO_LARGE = "BATCH_TOO_LARGE"
    TIME_IN_FUTURE = "TIME_IN_FUTURE"
    REQUEST_ID_REUSED = "REQUEST_ID_REUSED"
    ACK_BEYOND_OUTBOX = "ACK_BEYOND_OUTBOX"
    # FAILED_PRECONDITION: the state does not allow it now.
    INSUFFICIENT_FUNDS = "INSUFFICIENT_FUNDS"
    ACCOUNT_FROZEN = "ACCOUNT_FROZEN"
    DAILY_LIMIT_EXCEEDED = "DAILY_LIMIT_EXCEEDED"
    ENVELOPE_EXPIRED = "ENVELOPE_EXPIRED"
    ENVELOPE_EMPTY = "ENVELOPE_EMPTY"
    ALREADY_GRABBED = "ALREADY_GRABBED"
    SEQUENCE_GAP = "SEQUENCE_GAP"
    HOLDINGS_LIMIT_EXCEEDED = "HOLDINGS_LIMIT_EXCEEDED"
    REQUEST_FENCED = "REQUEST_FENCED"  # a request status answered "not applied" for the id
    # NOT_FOUND
    ACCOUNT_NOT_FOUND = "ACCOUNT_NOT_FOUND"
    ENVELOPE_NOT_FOUND = "ENVELOPE_NOT_FOUND"

    @property
    def error_class(self) -> ErrorClass:
        return _CLASS_OF[self]


_FAILED_PRECONDITION = frozenset(
    {
        Reason.INSUFFICIENT_FUNDS,
        Reason.ACCOUNT_FROZEN,
        Reason.DAILY_LIMIT_EXCEEDED,
        Reason.ENVELOPE_EXPIRED,
        Reason.ENVELOPE_EMPTY,
        Reason.ALREADY_GRABBED,
        Reason.SEQUENCE_GAP,
        Reason.HOLDINGS_LIMIT_EXCEEDED,
        Reason.REQUEST_FENCED,
    }
)
_NOT_FOUND = frozenset({Reason.ACCOUNT_NOT_FOUND, Reason.ENVELOPE_NOT_FOUND})
_CLASS_OF: dict[Reason, ErrorClass] = {
    reason: (
        ErrorClass.FAILED_PRECONDITION
        if reason in _FAILED_PRECONDITION
        else ErrorClass.NOT_FOUND
        if reason in _NOT_FOUND
        else ErrorClass.INVALID_ARGUMENT
    )
    for reason in Reason
}
