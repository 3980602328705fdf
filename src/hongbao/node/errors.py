"""Errors at the API boundary: the ONE table from a hongbao reason to a gRPC status code.

Rules of this module:

- Every failure a client can see has an :class:`ErrorReason` (mirrored name for name
  by ``ErrorReason`` in ``errors.proto``) and exactly one gRPC status code, given by
  :data:`ERROR_TABLE`. Servers raise or abort with a :class:`HongbaoError`; nothing else
  picks status codes, and nothing else parses them back.
- On the wire an error is a gRPC status whose details hold a ``google.rpc.ErrorInfo``
  (domain ``hongbao``, reason = the enum name, metadata ``shard_id``, ``leader_node_id``,
  ``leader_address``), built by :func:`to_grpc_status` and read back by
  :func:`error_from_rpc_error`. In a Batch answer it is an ``hongbao.v1.Error``
  (:func:`error_to_proto`, :func:`error_from_proto`).
- An error without our ErrorInfo (a transport failure, a deadline hit on the client, a
  proxy) gets a reason from its status code alone and ``server_reported = False``: only
  an answer our server built itself proves that a request was not applied.

The hierarchy, with the reasons and codes of each class::

    HongbaoError                reason, message, leader_hint, shard_id, server_reported
    ├── RetryableError          retrying with the SAME request_id may succeed
    │   ├── NotLeaderError      NOT_LEADER                            UNAVAILABLE
    │   ├── UnavailableError    UNAVAILABLE                           UNAVAILABLE
    │   ├── OverloadedError     OVERLOADED                            RESOURCE_EXHAUSTED
    │   └── OutcomeUnknownError OUTCOME_UNKNOWN (maybe applied)       DEADLINE_EXCEEDED
    ├── InvalidArgumentError    INVALID_AMOUNT, AMOUNT_TOO_LARGE,     INVALID_ARGUMENT
    │                           MALFORMED_ID, LIMIT_EXCEEDED, INVALID_REQUEST
    ├── RefusedError            INSUFFICIENT_FUNDS, ACCOUNT_FROZEN,   FAILED_PRECONDITION
    │                           ENVELOPE_EXPIRED, ENVELOPE_EMPTY,
    │                           ALREADY_GRABBED, DAILY_LIMIT_EXCEEDED,
    │                           CLUSTER_MISMATCH, REQUEST_FENCED,
    │                           STALE_VERSION
    ├── RequestIdReusedError    REQUEST_ID_REUSED                     ALREADY_EXISTS
    ├── NotFoundError           NOT_FOUND                             NOT_FOUND
    └── InternalError           INTERNAL (outcome unknown)            INTERNAL

Why these codes. A client that ignores the reason still does the right thing:

- NOT_LEADER is UNAVAILABLE. etcd answers "no leader" with UNAVAILABLE but "not leader"
  with FAILED_PRECONDITION (for leader-only calls such as MoveLeader; its KV requests are
  forwarded inside the cluster, so clients rarely see it); CockroachDB returns
  NotLeaseHolderError in-band in the batch response and its DistSender retries it. Here a
  client does see it, and what it means is what gRPC defines UNAVAILABLE as: the request
  was not executed, the condition is transient, retry (at the hinted leader).
  FAILED_PRECONDITION is kept for final business refusals, so a client can never mistake
  a leader change for "insufficient funds".
- OUTCOME_UNKNOWN is DEADLINE_EXCEEDED, the one code gRPC defines as "may have completed
  even though it failed" (etcd uses UNAVAILABLE for its request timeouts). A deadline hit
  on the client side gets the same reason, so the code alone keeps one meaning: retry
  with the same request_id, and do not assume it was not applied.
- REQUEST_ID_REUSED is ALREADY_EXISTS: the request is well formed; what already exists is
  another request with that id (INVALID_ARGUMENT is for requests wrong in any state).
- DAILY_LIMIT_EXCEEDED is FAILED_PRECONDITION, not RESOURCE_EXHAUSTED: generic retry
  policies retry the latter, and this refusal holds until the next day.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final, Never, TypeVar, cast

import grpc
import grpc.aio
from google.protobuf import any_pb2
from google.rpc import error_details_pb2, status_pb2  # type: ignore[import-untyped]
from grpc_status import rpc_status

from hongbao._invariant import invariant, maybe
from hongbao.proto.gen.hongbao.v1 import errors_pb2

DOMAIN: Final = "hongbao"
"""``ErrorInfo.domain`` of every error this project builds."""

MESSAGE_LENGTH_MAX: Final = 1024
"""Status messages are cut to this many characters: they travel in an HTTP/2 trailer."""


class ErrorReason(enum.StrEnum):
    """Why a request failed; the value is the wire string (``ErrorInfo.reason``)."""

    NOT_LEADER = "NOT_LEADER"
    UNAVAILABLE = "UNAVAILABLE"
    OVERLOADED = "OVERLOADED"
    OUTCOME_UNKNOWN = "OUTCOME_UNKNOWN"
    INVALID_AMOUNT = "INVALID_AMOUNT"
    AMOUNT_TOO_LARGE = "AMOUNT_TOO_LARGE"
    MALFORMED_ID = "MALFORMED_ID"
    LIMIT_EXCEEDED = "LIMIT_EXCEEDED"
    INVALID_REQUEST = "INVALID_REQUEST"
    INSUFFICIENT_FUNDS = "INSUFFICIENT_FUNDS"
    ACCOUNT_FROZEN = "ACCOUNT_FROZEN"
    ENVELOPE_EXPIRED = "ENVELOPE_EXPIRED"
    ENVELOPE_EMPTY = "ENVELOPE_EMPTY"
    ALREADY_GRABBED = "ALREADY_GRABBED"
    DAILY_LIMIT_EXCEEDED = "DAILY_LIMIT_EXCEEDED"
    REQUEST_ID_REUSED = "REQUEST_ID_REUSED"
    NOT_FOUND = "NOT_FOUND"
    CLUSTER_MISMATCH = "CLUSTER_MISMATCH"
    REQUEST_FENCED = "REQUEST_FENCED"
    STALE_VERSION = "STALE_VERSION"
    INTERNAL = "INTERNAL"


invariant(
    {r.value for r in ErrorReason}
    == set(errors_pb2.ErrorReason.keys()) - {"ERROR_REASON_UNSPECIFIED"},
    "ErrorReason differs from hongbao.v1.ErrorReason in errors.proto",
)


@dataclass(frozen=True, slots=True)
class LeaderHint:
    """Where to send a request refused with NOT_LEADER; node_id 0 means none is known."""

    node_id: int
    address: str = ""


class HongbaoError(Exception):
    """A failed hongbao request. Build one with :func:`make_error`, which picks the class."""

    def __init__(
        self,
        reason: ErrorReason,
        message: str = "",
        *,
        leader_hint: LeaderHint | None = None,
        shard_id: int | None = None,
        server_reported: bool = True,
    ) -> None:
        invariant(
            isinstance(self, ERROR_TABLE[reason].error_class),
            f"{reason} must be raised as {ERROR_TABLE[reason].error_class.__name__}",
        )
        super().__init__(message or reason.value)
        self.reason = reason
        self.message = message
        self.leader_hint = leader_hint
        self.shard_id = shard_id
        self.server_reported = server_reported

    @property
    def code(self) -> grpc.StatusCode:
        return ERROR_TABLE[self.reason].code

    @property
    def outcome_unknown(self) -> bool:
        """Whether the request may have been applied even though it failed."""
        return self.reason in _OUTCOME_UNKNOWN_REASONS or not self.server_reported

    def __str__(self) -> str:
        text = f"{self.reason.value}: {self.message}" if self.message else self.reason.value
        if self.leader_hint is not None:
            text += f" (leader {self.leader_hint.node_id} at {self.leader_hint.address or '?'})"
        return text

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self})"


class RetryableError(HongbaoError):
    """Not refused on its merits: retrying with the same request_id may succeed."""


class NotLeaderError(RetryableError):
    """This node does not lead the shard; ``leader_hint`` names the leader it knows of."""


class UnavailableError(RetryableError):
    """No leader, shard not ready, node stopping or unreachable."""


class OverloadedError(RetryableError):
    """A bounded queue was full; retry after a back-off."""


class OutcomeUnknownError(RetryableError):
    """The request may or may not have been applied: retry with the same request_id."""


class InvalidArgumentError(HongbaoError):
    """The request is wrong whatever the state; retrying it unchanged cannot succeed."""


class RefusedError(HongbaoError):
    """A business rule refused the request in the current state (funds, frozen, expired...)."""


class RequestIdReusedError(HongbaoError):
    """The request_id was used before for a different request."""


class NotFoundError(HongbaoError):
    """No such account, envelope, shard or node."""


class InternalError(HongbaoError):
    """A server bug or an unrecognised failure; the outcome is unknown."""


@dataclass(frozen=True, slots=True)
class ErrorRule:
    code: grpc.StatusCode
    error_class: type[HongbaoError]


_R = ErrorReason
_C = grpc.StatusCode
ERROR_TABLE: Final[Mapping[ErrorReason, ErrorRule]] = {
    _R.NOT_LEADER: ErrorRule(_C.UNAVAILABLE, NotLeaderError),
    _R.UNAVAILABLE: ErrorRule(_C.UNAVAILABLE, UnavailableError),
    _R.OVERLOADED: ErrorRule(_C.RESOURCE_EXHAUSTED, OverloadedError),
    _R.OUTCOME_UNKNOWN: ErrorRule(_C.DEADLINE_EXCEEDED, OutcomeUnknownError),
    _R.INVALID_AMOUNT: ErrorRule(_C.INVALID_ARGUMENT, InvalidArgumentError),
    _R.AMOUNT_TOO_LARGE: ErrorRule(_C.INVALID_ARGUMENT, InvalidArgumentError),
    _R.MALFORMED_ID: ErrorRule(_C.INVALID_ARGUMENT, InvalidArgumentError),
    _R.LIMIT_EXCEEDED: ErrorRule(_C.INVALID_ARGUMENT, InvalidArgumentError),
    _R.INVALID_REQUEST: ErrorRule(_C.INVALID_ARGUMENT, InvalidArgumentError),
    _R.INSUFFICIENT_FUNDS: ErrorRule(_C.FAILED_PRECONDITION, RefusedError),
    _R.ACCOUNT_FROZEN: ErrorRule(_C.FAILED_PRECONDITION, RefusedError),
    _R.ENVELOPE_EXPIRED: ErrorRule(_C.FAILED_PRECONDITION, RefusedError),
    _R.ENVELOPE_EMPTY: ErrorRule(_C.FAILED_PRECONDITION, RefusedError),
    _R.ALREADY_GRABBED: ErrorRule(_C.FAILED_PRECONDITION, RefusedError),
    _R.DAILY_LIMIT_EXCEEDED: ErrorRule(_C.FAILED_PRECONDITION, RefusedError),
    _R.REQUEST_ID_REUSED: ErrorRule(_C.ALREADY_EXISTS, RequestIdReusedError),
    _R.NOT_FOUND: ErrorRule(_C.NOT_FOUND, NotFoundError),
    _R.CLUSTER_MISMATCH: ErrorRule(_C.FAILED_PRECONDITION, RefusedError),
    _R.REQUEST_FENCED: ErrorRule(_C.FAILED_PRECONDITION, RefusedError),
    _R.STALE_VERSION: ErrorRule(_C.FAILED_PRECONDITION, RefusedError),
    _R.INTERNAL: ErrorRule(_C.INTERNAL, InternalError),
}
"""The one table: reason -> (gRPC status code, exception class)."""
invariant(set(ERROR_TABLE) == set(ErrorReason), "every ErrorReason needs a row in ERROR_TABLE")

_OUTCOME_UNKNOWN_REASONS: Final = frozenset({_R.OUTCOME_UNKNOWN, _R.INTERNAL})

# For statuses that carry no ErrorInfo of ours: the reason their code alone implies.
_REASON_BY_BARE_CODE: Final[Mapping[grpc.StatusCode, ErrorReason]] = {
    _C.UNAVAILABLE: _R.UNAVAILABLE,
    _C.DEADLINE_EXCEEDED: _R.OUTCOME_UNKNOWN,
    _C.CANCELLED: _R.OUTCOME_UNKNOWN,
    _C.RESOURCE_EXHAUSTED: _R.OVERLOADED,
    _C.INVALID_ARGUMENT: _R.INVALID_REQUEST,
    _C.NOT_FOUND: _R.NOT_FOUND,
}
_CODE_BY_NUMBER: Final[Mapping[int, grpc.StatusCode]] = {c.value[0]: c for c in grpc.StatusCode}


def make_error(
    reason: ErrorReason,
    message: str = "",
    *,
    leader_hint: LeaderHint | None = None,
    shard_id: int | None = None,
    server_reported: bool = True,
) -> HongbaoError:
    """The error of the class that ``reason`` belongs to."""
    maybe(leader_hint is None)  # NOT_LEADER may know no leader; other reasons carry none
    return ERROR_TABLE[reason].error_class(
        reason,
        message,
        leader_hint=leader_hint,
        shard_id=shard_id,
        server_reported=server_reported,
    )


# ---- Server side ----


def to_rpc_status(error: HongbaoError) -> status_pb2.Status:
    """The ``google.rpc.Status`` of ``error``, with its ErrorInfo detail."""
    metadata: dict[str, str] = {}
    if error.shard_id is not None:
        metadata["shard_id"] = str(error.shard_id)
    if error.leader_hint is not None:
        metadata["leader_node_id"] = str(error.leader_hint.node_id)
        metadata["leader_address"] = error.leader_hint.address
    detail = any_pb2.Any()
    detail.Pack(
        error_details_pb2.ErrorInfo(reason=error.reason.value, domain=DOMAIN, metadata=metadata)
    )
    return status_pb2.Status(
        code=error.code.value[0], message=error.message[:MESSAGE_LENGTH_MAX], details=[detail]
    )


def to_grpc_status(error: HongbaoError) -> grpc.Status:
    """For ``context.abort_with_status`` (sync) or ``await context.abort_with_status`` (aio)."""
    return rpc_status.to_status(to_rpc_status(error))


def abort(context: grpc.ServicerContext, error: HongbaoError) -> Never:
    """End the current RPC of a sync servicer with ``error``'s rich status."""
    context.abort_with_status(to_grpc_status(error))


_Request = TypeVar("_Request")
_Response = TypeVar("_Response")


async def abort_async(
    context: grpc.aio.ServicerContext[_Request, _Response], error: HongbaoError
) -> Never:
    """End the current RPC of an asyncio servicer with ``error``'s rich status."""
    await context.abort_with_status(to_grpc_status(error))


# ---- Client side ----


def error_from_rpc_error(error: grpc.RpcError) -> HongbaoError:
    """The HongbaoError behind a failed call, from a sync or an asyncio stub."""
    if isinstance(error, grpc.aio.AioRpcError):
        code, details = error.code(), error.details() or ""
        # AioRpcError has the same sync accessors that rpc_status.from_call reads.
        call = cast(grpc.Call, error)
    elif isinstance(error, grpc.Call):
        code, details, call = error.code(), error.details() or "", error
    else:
        return make_error(_R.INTERNAL, repr(error), server_reported=False)
    try:
        status: status_pb2.Status | None = rpc_status.from_call(call)
    except ValueError:
        status = None  # code or message rewritten on the way (a proxy): trust neither detail
    info = _error_info(status) if status is not None else None
    reason = None if info is None else ErrorReason.__members__.get(info.reason)
    if info is None or reason is None:
        return make_error(
            _REASON_BY_BARE_CODE.get(code, _R.INTERNAL), details, server_reported=False
        )
    maybe(code != ERROR_TABLE[reason].code)  # a server of another version may map differently
    metadata: Mapping[str, str] = info.metadata
    return make_error(
        reason,
        details,
        leader_hint=_leader_hint(metadata),
        shard_id=_int_or_none(metadata.get("shard_id")),
    )


def _error_info(status: status_pb2.Status) -> error_details_pb2.ErrorInfo | None:
    for detail in status.details:
        if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
            info = error_details_pb2.ErrorInfo()
            detail.Unpack(info)
            if info.domain == DOMAIN:
                return info
    return None


def _leader_hint(metadata: Mapping[str, str]) -> LeaderHint | None:
    node_id = _int_or_none(metadata.get("leader_node_id"))
    if node_id is None:
        return None
    return LeaderHint(node_id=node_id, address=metadata.get("leader_address", ""))


def _int_or_none(text: str | None) -> int | None:
    if text is None or not text.isdigit():
        return None
    return int(text)


# ---- In-band errors of a Batch ----


def error_to_proto(error: HongbaoError) -> errors_pb2.Error:
    hint = error.leader_hint
    return errors_pb2.Error(
        reason=cast(errors_pb2.ErrorReason, errors_pb2.ErrorReason.Value(error.reason.value)),
        code=error.code.value[0],
        message=error.message[:MESSAGE_LENGTH_MAX],
        leader_hint=None
        if hint is None
        else errors_pb2.LeaderHint(node_id=hint.node_id, address=hint.address),
        shard_id=error.shard_id,
    )


def error_from_proto(pb: errors_pb2.Error) -> HongbaoError:
    name = errors_pb2.ErrorReason.Name(pb.reason) if pb.reason in _PROTO_REASON_NUMBERS else ""
    reason = ErrorReason.__members__.get(name)
    if reason is None:  # unspecified, or a newer server's reason: judge by the code alone
        code = _CODE_BY_NUMBER.get(pb.code, _C.UNKNOWN)
        reason = _REASON_BY_BARE_CODE.get(code, _R.INTERNAL)
    hint = None
    if pb.HasField("leader_hint"):
        hint = LeaderHint(node_id=pb.leader_hint.node_id, address=pb.leader_hint.address)
    return make_error(
        reason,
        pb.message,
        leader_hint=hint,
        shard_id=pb.shard_id if pb.HasField("shard_id") else None,
    )


_PROTO_REASON_NUMBERS: Final = frozenset(errors_pb2.ErrorReason.values())
