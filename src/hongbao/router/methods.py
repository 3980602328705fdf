"""The ledger methods a router serves: how to find each request's shard, and its slot in
a Batch ``Operation`` (for coalescing).

Rules of this module: one table, :data:`SINGLE_METHODS`, from the gRPC method path to a
:class:`Method`. A request is parsed only to read its routing key (and ``stale_ok``);
what is forwarded is the client's bytes (:mod:`hongbao.router.wire`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final

from google.protobuf.message import DecodeError
from google.protobuf.message import Message as ProtoMessage

from hongbao.client.routing import Routing
from hongbao.node.errors import ErrorReason, make_error
from hongbao.proto.gen.hongbao.v1 import ledger_pb2

BATCH_EXECUTE: Final = "/hongbao.v1.Batch/Execute"
REQUEST_ID_CHARS_MAX: Final = 128  # a node accepts 1..64 bytes


@dataclass(frozen=True, slots=True)
class Method:
    path: str  # /hongbao.v1.Wallet/Deposit
    request_class: type[ProtoMessage]
    key_field: str  # which field holds the routing key
    by_envelope: bool  # the key is an envelope id (else a user id)
    operation_field: int  # the Operation oneof's field number; 0: not a Batch operation
    coalesce: bool  # may ride a coalesced Batch (History's large answers never do)

    def route(self, routing: Routing, raw: bytes) -> tuple[int, bool]:
        """``(shard_id, stale_ok)`` of the request bytes ``raw``; INVALID_REQUEST when they do
        not decode, MALFORMED_ID / NOT_FOUND for a bad envelope id."""
        routed = self.routed(routing, raw)
        return routed.shard_id, routed.stale_ok

    def routed(self, routing: Routing, raw: bytes) -> Routed:
        """The route of ``raw`` and its request id, from the one decode routing needs
        anyway (so the logs' ``request_id`` costs no second parse); errors as :meth:`route`."""
        try:
            request = self.request_class.FromString(raw)
        except (DecodeError, ValueError) as error:
            raise make_error(
                ErrorReason.INVALID_REQUEST, f"{self.path}: the request does not decode: {error}"
            ) from None
        shard_id, stale_ok = route_message(routing, request, self.key_field, self.by_envelope)
        return Routed(shard_id, stale_ok, request_id_of(request))


@dataclass(frozen=True, slots=True)
class Routed:
    shard_id: int
    stale_ok: bool
    request_id: str  # "" when the request has none (reads) or the client sent none


def request_id_of(request: ProtoMessage) -> str:
    """The request's ``request_id`` field, cut to ``REQUEST_ID_CHARS_MAX`` (a log field
    must not grow with what a client sends; a node refuses longer ids anyway)."""
    if "request_id" not in request.DESCRIPTOR.fields_by_name:
        return ""
    return str(getattr(request, "request_id", ""))[:REQUEST_ID_CHARS_MAX]


def route_message(
    routing: Routing, request: ProtoMessage, key_field: str, by_envelope: bool
) -> tuple[int, bool]:
    key = str(getattr(request, key_field))
    stale_ok = bool(getattr(request, "stale_ok", False))
    if by_envelope:
        return routing.envelope_shard(key), stale_ok
    return routing.user_shard(key), stale_ok


def _method(
    service: str,
    name: str,
    request_class: type[ProtoMessage],
    key_field: str,
    operation_field: int,
    *,
    by_envelope: bool = False,
    coalesce: bool = True,
) -> Method:
    return Method(
        f"/hongbao.v1.{service}/{name}",
        request_class,
        key_field,
        by_envelope,
        operation_field,
        coalesce and operation_field != 0,
    )


_pb = ledger_pb2
_OP = ledger_pb2.Operation.DESCRIPTOR.fields_by_name
_METHODS: Final = (
    _method("Wallet", "Deposit", _pb.DepositRequest, "user_id", _OP["deposit"].number),
    _method("Wallet", "Withdraw", _pb.WithdrawRequest, "user_id", _OP["withdraw"].number),
    _method("Wallet", "Transfer", _pb.TransferRequest, "from_user_id", _OP["transfer"].number),
    _method("Wallet", "Balance", _pb.BalanceRequest, "user_id", _OP["balance"].number),
    _method(
        "Wallet", "History", _pb.HistoryRequest, "user_id", _OP["history"].number, coalesce=False
    ),
    _method("Wallet", "Freeze", _pb.FreezeRequest, "user_id", _OP["freeze"].number),
    _method("Wallet", "Unfreeze", _pb.UnfreezeRequest, "user_id", _OP["unfreeze"].number),
    _method("Wallet", "RequestStatus", _pb.RequestStatusRequest, "user_id", 0),
    _method("Envelopes", "Send", _pb.SendRequest, "sender_user_id", _OP["send"].number),
    _method(
        "Envelopes", "Grab", _pb.GrabRequest, "envelope_id", _OP["grab"].number, by_envelope=True
    ),
    _method(
        "Envelopes", "Show", _pb.ShowRequest, "envelope_id", _OP["show"].number, by_envelope=True
    ),
)
SINGLE_METHODS: Final[Mapping[str, Method]] = {m.path: m for m in _METHODS}

# Operation oneof name -> (routing key field, by envelope), for the parts of a Batch.
_OPERATION_KEYS: Final[Mapping[str, tuple[str, bool]]] = {
    "deposit": ("user_id", False),
    "withdraw": ("user_id", False),
    "transfer": ("from_user_id", False),
    "balance": ("user_id", False),
    "history": ("user_id", False),
    "freeze": ("user_id", False),
    "unfreeze": ("user_id", False),
    "send": ("sender_user_id", False),
    "grab": ("envelope_id", True),
    "show": ("envelope_id", True),
}
assert set(_OPERATION_KEYS) == set(_OP)


def route_operation(routing: Routing, operation: ledger_pb2.Operation) -> int:
    """The shard of one Batch operation (INVALID_REQUEST for an empty one)."""
    name = operation.WhichOneof("op")
    if name is None:
        raise make_error(ErrorReason.INVALID_REQUEST, "an operation without a request")
    key_field, by_envelope = _OPERATION_KEYS[name]
    shard_id, _ = route_message(routing, getattr(operation, name), key_field, by_envelope)
    return shard_id


def services() -> Mapping[str, list[str]]:
    """service full name -> its method names, for the generic handlers."""
    by_service: dict[str, list[str]] = {}
    for path in (*SINGLE_METHODS, BATCH_EXECUTE):
        service, name = path.strip("/").split("/")
        by_service.setdefault(service, []).append(name)
    return by_service
