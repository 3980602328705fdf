from hongbao.proto.gen.hongbao.v1 import errors_pb2 as _errors_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class RequestOutcome(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    REQUEST_OUTCOME_UNSPECIFIED: _ClassVar[RequestOutcome]
    REQUEST_OUTCOME_APPLIED: _ClassVar[RequestOutcome]
    REQUEST_OUTCOME_NOT_APPLIED: _ClassVar[RequestOutcome]

class PostingKind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    POSTING_KIND_UNSPECIFIED: _ClassVar[PostingKind]
    POSTING_KIND_DEPOSIT: _ClassVar[PostingKind]
    POSTING_KIND_WITHDRAW: _ClassVar[PostingKind]
    POSTING_KIND_TRANSFER_OUT: _ClassVar[PostingKind]
    POSTING_KIND_TRANSFER_IN: _ClassVar[PostingKind]
    POSTING_KIND_ENVELOPE_SEND: _ClassVar[PostingKind]
    POSTING_KIND_ENVELOPE_GRAB: _ClassVar[PostingKind]
    POSTING_KIND_ENVELOPE_REFUND: _ClassVar[PostingKind]
    POSTING_KIND_SETTLEMENT: _ClassVar[PostingKind]

class EnvelopeKind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    ENVELOPE_KIND_UNSPECIFIED: _ClassVar[EnvelopeKind]
    ENVELOPE_KIND_LUCKY: _ClassVar[EnvelopeKind]
    ENVELOPE_KIND_FIXED: _ClassVar[EnvelopeKind]

class EnvelopeState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    ENVELOPE_STATE_UNSPECIFIED: _ClassVar[EnvelopeState]
    ENVELOPE_STATE_OPEN: _ClassVar[EnvelopeState]
    ENVELOPE_STATE_EMPTY: _ClassVar[EnvelopeState]
    ENVELOPE_STATE_EXPIRED: _ClassVar[EnvelopeState]
REQUEST_OUTCOME_UNSPECIFIED: RequestOutcome
REQUEST_OUTCOME_APPLIED: RequestOutcome
REQUEST_OUTCOME_NOT_APPLIED: RequestOutcome
POSTING_KIND_UNSPECIFIED: PostingKind
POSTING_KIND_DEPOSIT: PostingKind
POSTING_KIND_WITHDRAW: PostingKind
POSTING_KIND_TRANSFER_OUT: PostingKind
POSTING_KIND_TRANSFER_IN: PostingKind
POSTING_KIND_ENVELOPE_SEND: PostingKind
POSTING_KIND_ENVELOPE_GRAB: PostingKind
POSTING_KIND_ENVELOPE_REFUND: PostingKind
POSTING_KIND_SETTLEMENT: PostingKind
ENVELOPE_KIND_UNSPECIFIED: EnvelopeKind
ENVELOPE_KIND_LUCKY: EnvelopeKind
ENVELOPE_KIND_FIXED: EnvelopeKind
ENVELOPE_STATE_UNSPECIFIED: EnvelopeState
ENVELOPE_STATE_OPEN: EnvelopeState
ENVELOPE_STATE_EMPTY: EnvelopeState
ENVELOPE_STATE_EXPIRED: EnvelopeState

class DepositRequest(_message.Message):
    __slots__ = ("request_id", "user_id", "amount_fen")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    USER_ID_FIELD_NUMBER: _ClassVar[int]
    AMOUNT_FEN_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    user_id: str
    amount_fen: int
    def __init__(self, request_id: _Optional[str] = ..., user_id: _Optional[str] = ..., amount_fen: _Optional[int] = ...) -> None: ...

class DepositResponse(_message.Message):
    __slots__ = ("balance_fen",)
    BALANCE_FEN_FIELD_NUMBER: _ClassVar[int]
    balance_fen: int
    def __init__(self, balance_fen: _Optional[int] = ...) -> None: ...

class WithdrawRequest(_message.Message):
    __slots__ = ("request_id", "user_id", "amount_fen")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    USER_ID_FIELD_NUMBER: _ClassVar[int]
    AMOUNT_FEN_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    user_id: str
    amount_fen: int
    def __init__(self, request_id: _Optional[str] = ..., user_id: _Optional[str] = ..., amount_fen: _Optional[int] = ...) -> None: ...

class WithdrawResponse(_message.Message):
    __slots__ = ("balance_fen",)
    BALANCE_FEN_FIELD_NUMBER: _ClassVar[int]
    balance_fen: int
    def __init__(self, balance_fen: _Optional[int] = ...) -> None: ...

class TransferRequest(_message.Message):
    __slots__ = ("request_id", "from_user_id", "to_user_id", "amount_fen")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    FROM_USER_ID_FIELD_NUMBER: _ClassVar[int]
    TO_USER_ID_FIELD_NUMBER: _ClassVar[int]
    AMOUNT_FEN_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    from_user_id: str
    to_user_id: str
    amount_fen: int
    def __init__(self, request_id: _Optional[str] = ..., from_user_id: _Optional[str] = ..., to_user_id: _Optional[str] = ..., amount_fen: _Optional[int] = ...) -> None: ...

class TransferResponse(_message.Message):
    __slots__ = ("from_balance_fen", "cross_shard")
    FROM_BALANCE_FEN_FIELD_NUMBER: _ClassVar[int]
    CROSS_SHARD_FIELD_NUMBER: _ClassVar[int]
    from_balance_fen: int
    cross_shard: bool
    def __init__(self, from_balance_fen: _Optional[int] = ..., cross_shard: _Optional[bool] = ...) -> None: ...

class BalanceRequest(_message.Message):
    __slots__ = ("user_id", "stale_ok")
    USER_ID_FIELD_NUMBER: _ClassVar[int]
    STALE_OK_FIELD_NUMBER: _ClassVar[int]
    user_id: str
    stale_ok: bool
    def __init__(self, user_id: _Optional[str] = ..., stale_ok: _Optional[bool] = ...) -> None: ...

class BalanceResponse(_message.Message):
    __slots__ = ("balance_fen", "frozen", "daily_outgoing_fen")
    BALANCE_FEN_FIELD_NUMBER: _ClassVar[int]
    FROZEN_FIELD_NUMBER: _ClassVar[int]
    DAILY_OUTGOING_FEN_FIELD_NUMBER: _ClassVar[int]
    balance_fen: int
    frozen: bool
    daily_outgoing_fen: int
    def __init__(self, balance_fen: _Optional[int] = ..., frozen: _Optional[bool] = ..., daily_outgoing_fen: _Optional[int] = ...) -> None: ...

class HistoryRequest(_message.Message):
    __slots__ = ("user_id", "limit", "stale_ok", "page_token")
    USER_ID_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    STALE_OK_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    user_id: str
    limit: int
    stale_ok: bool
    page_token: str
    def __init__(self, user_id: _Optional[str] = ..., limit: _Optional[int] = ..., stale_ok: _Optional[bool] = ..., page_token: _Optional[str] = ...) -> None: ...

class HistoryResponse(_message.Message):
    __slots__ = ("postings", "next_page_token")
    POSTINGS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    postings: _containers.RepeatedCompositeFieldContainer[Posting]
    next_page_token: str
    def __init__(self, postings: _Optional[_Iterable[_Union[Posting, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class RequestStatusRequest(_message.Message):
    __slots__ = ("request_id", "user_id")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    USER_ID_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    user_id: str
    def __init__(self, request_id: _Optional[str] = ..., user_id: _Optional[str] = ...) -> None: ...

class RequestStatusResponse(_message.Message):
    __slots__ = ("outcome", "result")
    OUTCOME_FIELD_NUMBER: _ClassVar[int]
    RESULT_FIELD_NUMBER: _ClassVar[int]
    outcome: RequestOutcome
    result: OperationResult
    def __init__(self, outcome: _Optional[_Union[RequestOutcome, str]] = ..., result: _Optional[_Union[OperationResult, _Mapping]] = ...) -> None: ...

class Posting(_message.Message):
    __slots__ = ("seq", "ts_ms", "kind", "amount_fen", "balance_fen", "counterparty", "ref")
    SEQ_FIELD_NUMBER: _ClassVar[int]
    TS_MS_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    AMOUNT_FEN_FIELD_NUMBER: _ClassVar[int]
    BALANCE_FEN_FIELD_NUMBER: _ClassVar[int]
    COUNTERPARTY_FIELD_NUMBER: _ClassVar[int]
    REF_FIELD_NUMBER: _ClassVar[int]
    seq: int
    ts_ms: int
    kind: PostingKind
    amount_fen: int
    balance_fen: int
    counterparty: str
    ref: str
    def __init__(self, seq: _Optional[int] = ..., ts_ms: _Optional[int] = ..., kind: _Optional[_Union[PostingKind, str]] = ..., amount_fen: _Optional[int] = ..., balance_fen: _Optional[int] = ..., counterparty: _Optional[str] = ..., ref: _Optional[str] = ...) -> None: ...

class FreezeRequest(_message.Message):
    __slots__ = ("request_id", "user_id", "note")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    USER_ID_FIELD_NUMBER: _ClassVar[int]
    NOTE_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    user_id: str
    note: str
    def __init__(self, request_id: _Optional[str] = ..., user_id: _Optional[str] = ..., note: _Optional[str] = ...) -> None: ...

class FreezeResponse(_message.Message):
    __slots__ = ("frozen",)
    FROZEN_FIELD_NUMBER: _ClassVar[int]
    frozen: bool
    def __init__(self, frozen: _Optional[bool] = ...) -> None: ...

class UnfreezeRequest(_message.Message):
    __slots__ = ("request_id", "user_id", "note")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    USER_ID_FIELD_NUMBER: _ClassVar[int]
    NOTE_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    user_id: str
    note: str
    def __init__(self, request_id: _Optional[str] = ..., user_id: _Optional[str] = ..., note: _Optional[str] = ...) -> None: ...

class UnfreezeResponse(_message.Message):
    __slots__ = ("frozen",)
    FROZEN_FIELD_NUMBER: _ClassVar[int]
    frozen: bool
    def __init__(self, frozen: _Optional[bool] = ...) -> None: ...

class SendRequest(_message.Message):
    __slots__ = ("request_id", "sender_user_id", "kind", "total_fen", "count")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    SENDER_USER_ID_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    TOTAL_FEN_FIELD_NUMBER: _ClassVar[int]
    COUNT_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    sender_user_id: str
    kind: EnvelopeKind
    total_fen: int
    count: int
    def __init__(self, request_id: _Optional[str] = ..., sender_user_id: _Optional[str] = ..., kind: _Optional[_Union[EnvelopeKind, str]] = ..., total_fen: _Optional[int] = ..., count: _Optional[int] = ...) -> None: ...

class SendResponse(_message.Message):
    __slots__ = ("envelope_id", "sender_balance_fen", "expires_at_ms")
    ENVELOPE_ID_FIELD_NUMBER: _ClassVar[int]
    SENDER_BALANCE_FEN_FIELD_NUMBER: _ClassVar[int]
    EXPIRES_AT_MS_FIELD_NUMBER: _ClassVar[int]
    envelope_id: str
    sender_balance_fen: int
    expires_at_ms: int
    def __init__(self, envelope_id: _Optional[str] = ..., sender_balance_fen: _Optional[int] = ..., expires_at_ms: _Optional[int] = ...) -> None: ...

class GrabRequest(_message.Message):
    __slots__ = ("request_id", "envelope_id", "user_id")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    ENVELOPE_ID_FIELD_NUMBER: _ClassVar[int]
    USER_ID_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    envelope_id: str
    user_id: str
    def __init__(self, request_id: _Optional[str] = ..., envelope_id: _Optional[str] = ..., user_id: _Optional[str] = ...) -> None: ...

class GrabResponse(_message.Message):
    __slots__ = ("amount_fen", "ordinal", "remaining_count", "cross_shard")
    AMOUNT_FEN_FIELD_NUMBER: _ClassVar[int]
    ORDINAL_FIELD_NUMBER: _ClassVar[int]
    REMAINING_COUNT_FIELD_NUMBER: _ClassVar[int]
    CROSS_SHARD_FIELD_NUMBER: _ClassVar[int]
    amount_fen: int
    ordinal: int
    remaining_count: int
    cross_shard: bool
    def __init__(self, amount_fen: _Optional[int] = ..., ordinal: _Optional[int] = ..., remaining_count: _Optional[int] = ..., cross_shard: _Optional[bool] = ...) -> None: ...

class ShowRequest(_message.Message):
    __slots__ = ("envelope_id", "stale_ok")
    ENVELOPE_ID_FIELD_NUMBER: _ClassVar[int]
    STALE_OK_FIELD_NUMBER: _ClassVar[int]
    envelope_id: str
    stale_ok: bool
    def __init__(self, envelope_id: _Optional[str] = ..., stale_ok: _Optional[bool] = ...) -> None: ...

class ShowResponse(_message.Message):
    __slots__ = ("envelope",)
    ENVELOPE_FIELD_NUMBER: _ClassVar[int]
    envelope: Envelope
    def __init__(self, envelope: _Optional[_Union[Envelope, _Mapping]] = ...) -> None: ...

class Envelope(_message.Message):
    __slots__ = ("envelope_id", "sender_user_id", "kind", "total_fen", "count", "created_at_ms", "expires_at_ms", "state", "remaining_fen", "remaining_count", "refunded_fen", "grabs", "best_luck_ordinal", "expiry_pending")
    ENVELOPE_ID_FIELD_NUMBER: _ClassVar[int]
    SENDER_USER_ID_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    TOTAL_FEN_FIELD_NUMBER: _ClassVar[int]
    COUNT_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_MS_FIELD_NUMBER: _ClassVar[int]
    EXPIRES_AT_MS_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    REMAINING_FEN_FIELD_NUMBER: _ClassVar[int]
    REMAINING_COUNT_FIELD_NUMBER: _ClassVar[int]
    REFUNDED_FEN_FIELD_NUMBER: _ClassVar[int]
    GRABS_FIELD_NUMBER: _ClassVar[int]
    BEST_LUCK_ORDINAL_FIELD_NUMBER: _ClassVar[int]
    EXPIRY_PENDING_FIELD_NUMBER: _ClassVar[int]
    envelope_id: str
    sender_user_id: str
    kind: EnvelopeKind
    total_fen: int
    count: int
    created_at_ms: int
    expires_at_ms: int
    state: EnvelopeState
    remaining_fen: int
    remaining_count: int
    refunded_fen: int
    grabs: _containers.RepeatedCompositeFieldContainer[EnvelopeGrab]
    best_luck_ordinal: int
    expiry_pending: bool
    def __init__(self, envelope_id: _Optional[str] = ..., sender_user_id: _Optional[str] = ..., kind: _Optional[_Union[EnvelopeKind, str]] = ..., total_fen: _Optional[int] = ..., count: _Optional[int] = ..., created_at_ms: _Optional[int] = ..., expires_at_ms: _Optional[int] = ..., state: _Optional[_Union[EnvelopeState, str]] = ..., remaining_fen: _Optional[int] = ..., remaining_count: _Optional[int] = ..., refunded_fen: _Optional[int] = ..., grabs: _Optional[_Iterable[_Union[EnvelopeGrab, _Mapping]]] = ..., best_luck_ordinal: _Optional[int] = ..., expiry_pending: _Optional[bool] = ...) -> None: ...

class EnvelopeGrab(_message.Message):
    __slots__ = ("ordinal", "user_id", "amount_fen", "ts_ms")
    ORDINAL_FIELD_NUMBER: _ClassVar[int]
    USER_ID_FIELD_NUMBER: _ClassVar[int]
    AMOUNT_FEN_FIELD_NUMBER: _ClassVar[int]
    TS_MS_FIELD_NUMBER: _ClassVar[int]
    ordinal: int
    user_id: str
    amount_fen: int
    ts_ms: int
    def __init__(self, ordinal: _Optional[int] = ..., user_id: _Optional[str] = ..., amount_fen: _Optional[int] = ..., ts_ms: _Optional[int] = ...) -> None: ...

class Operation(_message.Message):
    __slots__ = ("deposit", "withdraw", "transfer", "balance", "history", "freeze", "unfreeze", "send", "grab", "show")
    DEPOSIT_FIELD_NUMBER: _ClassVar[int]
    WITHDRAW_FIELD_NUMBER: _ClassVar[int]
    TRANSFER_FIELD_NUMBER: _ClassVar[int]
    BALANCE_FIELD_NUMBER: _ClassVar[int]
    HISTORY_FIELD_NUMBER: _ClassVar[int]
    FREEZE_FIELD_NUMBER: _ClassVar[int]
    UNFREEZE_FIELD_NUMBER: _ClassVar[int]
    SEND_FIELD_NUMBER: _ClassVar[int]
    GRAB_FIELD_NUMBER: _ClassVar[int]
    SHOW_FIELD_NUMBER: _ClassVar[int]
    deposit: DepositRequest
    withdraw: WithdrawRequest
    transfer: TransferRequest
    balance: BalanceRequest
    history: HistoryRequest
    freeze: FreezeRequest
    unfreeze: UnfreezeRequest
    send: SendRequest
    grab: GrabRequest
    show: ShowRequest
    def __init__(self, deposit: _Optional[_Union[DepositRequest, _Mapping]] = ..., withdraw: _Optional[_Union[WithdrawRequest, _Mapping]] = ..., transfer: _Optional[_Union[TransferRequest, _Mapping]] = ..., balance: _Optional[_Union[BalanceRequest, _Mapping]] = ..., history: _Optional[_Union[HistoryRequest, _Mapping]] = ..., freeze: _Optional[_Union[FreezeRequest, _Mapping]] = ..., unfreeze: _Optional[_Union[UnfreezeRequest, _Mapping]] = ..., send: _Optional[_Union[SendRequest, _Mapping]] = ..., grab: _Optional[_Union[GrabRequest, _Mapping]] = ..., show: _Optional[_Union[ShowRequest, _Mapping]] = ...) -> None: ...

class OperationResult(_message.Message):
    __slots__ = ("deposit", "withdraw", "transfer", "balance", "history", "freeze", "unfreeze", "send", "grab", "show", "error")
    DEPOSIT_FIELD_NUMBER: _ClassVar[int]
    WITHDRAW_FIELD_NUMBER: _ClassVar[int]
    TRANSFER_FIELD_NUMBER: _ClassVar[int]
    BALANCE_FIELD_NUMBER: _ClassVar[int]
    HISTORY_FIELD_NUMBER: _ClassVar[int]
    FREEZE_FIELD_NUMBER: _ClassVar[int]
    UNFREEZE_FIELD_NUMBER: _ClassVar[int]
    SEND_FIELD_NUMBER: _ClassVar[int]
    GRAB_FIELD_NUMBER: _ClassVar[int]
    SHOW_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    deposit: DepositResponse
    withdraw: WithdrawResponse
    transfer: TransferResponse
    balance: BalanceResponse
    history: HistoryResponse
    freeze: FreezeResponse
    unfreeze: UnfreezeResponse
    send: SendResponse
    grab: GrabResponse
    show: ShowResponse
    error: _errors_pb2.Error
    def __init__(self, deposit: _Optional[_Union[DepositResponse, _Mapping]] = ..., withdraw: _Optional[_Union[WithdrawResponse, _Mapping]] = ..., transfer: _Optional[_Union[TransferResponse, _Mapping]] = ..., balance: _Optional[_Union[BalanceResponse, _Mapping]] = ..., history: _Optional[_Union[HistoryResponse, _Mapping]] = ..., freeze: _Optional[_Union[FreezeResponse, _Mapping]] = ..., unfreeze: _Optional[_Union[UnfreezeResponse, _Mapping]] = ..., send: _Optional[_Union[SendResponse, _Mapping]] = ..., grab: _Optional[_Union[GrabResponse, _Mapping]] = ..., show: _Optional[_Union[ShowResponse, _Mapping]] = ..., error: _Optional[_Union[_errors_pb2.Error, _Mapping]] = ...) -> None: ...

class ExecuteRequest(_message.Message):
    __slots__ = ("operations",)
    OPERATIONS_FIELD_NUMBER: _ClassVar[int]
    operations: _containers.RepeatedCompositeFieldContainer[Operation]
    def __init__(self, operations: _Optional[_Iterable[_Union[Operation, _Mapping]]] = ...) -> None: ...

class ExecuteResponse(_message.Message):
    __slots__ = ("results",)
    RESULTS_FIELD_NUMBER: _ClassVar[int]
    results: _containers.RepeatedCompositeFieldContainer[OperationResult]
    def __init__(self, results: _Optional[_Iterable[_Union[OperationResult, _Mapping]]] = ...) -> None: ...
