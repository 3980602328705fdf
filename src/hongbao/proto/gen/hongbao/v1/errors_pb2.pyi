from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class ErrorReason(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    ERROR_REASON_UNSPECIFIED: _ClassVar[ErrorReason]
    NOT_LEADER: _ClassVar[ErrorReason]
    UNAVAILABLE: _ClassVar[ErrorReason]
    OVERLOADED: _ClassVar[ErrorReason]
    OUTCOME_UNKNOWN: _ClassVar[ErrorReason]
    INVALID_AMOUNT: _ClassVar[ErrorReason]
    AMOUNT_TOO_LARGE: _ClassVar[ErrorReason]
    MALFORMED_ID: _ClassVar[ErrorReason]
    LIMIT_EXCEEDED: _ClassVar[ErrorReason]
    INVALID_REQUEST: _ClassVar[ErrorReason]
    INSUFFICIENT_FUNDS: _ClassVar[ErrorReason]
    ACCOUNT_FROZEN: _ClassVar[ErrorReason]
    ENVELOPE_EXPIRED: _ClassVar[ErrorReason]
    ENVELOPE_EMPTY: _ClassVar[ErrorReason]
    ALREADY_GRABBED: _ClassVar[ErrorReason]
    DAILY_LIMIT_EXCEEDED: _ClassVar[ErrorReason]
    REQUEST_ID_REUSED: _ClassVar[ErrorReason]
    NOT_FOUND: _ClassVar[ErrorReason]
    CLUSTER_MISMATCH: _ClassVar[ErrorReason]
    REQUEST_FENCED: _ClassVar[ErrorReason]
    STALE_VERSION: _ClassVar[ErrorReason]
    INTERNAL: _ClassVar[ErrorReason]
ERROR_REASON_UNSPECIFIED: ErrorReason
NOT_LEADER: ErrorReason
UNAVAILABLE: ErrorReason
OVERLOADED: ErrorReason
OUTCOME_UNKNOWN: ErrorReason
INVALID_AMOUNT: ErrorReason
AMOUNT_TOO_LARGE: ErrorReason
MALFORMED_ID: ErrorReason
LIMIT_EXCEEDED: ErrorReason
INVALID_REQUEST: ErrorReason
INSUFFICIENT_FUNDS: ErrorReason
ACCOUNT_FROZEN: ErrorReason
ENVELOPE_EXPIRED: ErrorReason
ENVELOPE_EMPTY: ErrorReason
ALREADY_GRABBED: ErrorReason
DAILY_LIMIT_EXCEEDED: ErrorReason
REQUEST_ID_REUSED: ErrorReason
NOT_FOUND: ErrorReason
CLUSTER_MISMATCH: ErrorReason
REQUEST_FENCED: ErrorReason
STALE_VERSION: ErrorReason
INTERNAL: ErrorReason

class LeaderHint(_message.Message):
    __slots__ = ("node_id", "address")
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    ADDRESS_FIELD_NUMBER: _ClassVar[int]
    node_id: int
    address: str
    def __init__(self, node_id: _Optional[int] = ..., address: _Optional[str] = ...) -> None: ...

class Error(_message.Message):
    __slots__ = ("reason", "code", "message", "leader_hint", "shard_id")
    REASON_FIELD_NUMBER: _ClassVar[int]
    CODE_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    LEADER_HINT_FIELD_NUMBER: _ClassVar[int]
    SHARD_ID_FIELD_NUMBER: _ClassVar[int]
    reason: ErrorReason
    code: int
    message: str
    leader_hint: LeaderHint
    shard_id: int
    def __init__(self, reason: _Optional[_Union[ErrorReason, str]] = ..., code: _Optional[int] = ..., message: _Optional[str] = ..., leader_hint: _Optional[_Union[LeaderHint, _Mapping]] = ..., shard_id: _Optional[int] = ...) -> None: ...
