"""The error table, and rich statuses across a real gRPC server on 127.0.0.1."""

from __future__ import annotations

import asyncio
import socket
import threading
from collections.abc import Iterator
from concurrent import futures
from dataclasses import dataclass

import grpc
import grpc.aio
import pytest
from google.rpc import error_details_pb2  # type: ignore[import-untyped]

from hongbao._invariant import InvariantViolation
from hongbao.node import errors
from hongbao.node.errors import (
    ERROR_TABLE,
    ErrorReason,
    HongbaoError,
    LeaderHint,
    NotLeaderError,
    OutcomeUnknownError,
    RefusedError,
    RetryableError,
    make_error,
)
from hongbao.proto.gen.hongbao.v1 import errors_pb2, ledger_pb2, ledger_pb2_grpc

HINT = LeaderHint(node_id=3, address="127.0.0.1:7003")
TIMEOUT_S = 5.0

# ---- The table ----


def test_reasons_mirror_the_proto_enum() -> None:
    proto_names = [v.name for v in errors_pb2.ErrorReason.DESCRIPTOR.values][1:]
    assert proto_names == [r.value for r in ErrorReason]


@pytest.mark.parametrize(
    ("reason", "code"),
    [
        (ErrorReason.NOT_LEADER, grpc.StatusCode.UNAVAILABLE),
        (ErrorReason.OUTCOME_UNKNOWN, grpc.StatusCode.DEADLINE_EXCEEDED),
        (ErrorReason.INVALID_AMOUNT, grpc.StatusCode.INVALID_ARGUMENT),
        (ErrorReason.MALFORMED_ID, grpc.StatusCode.INVALID_ARGUMENT),
        (ErrorReason.LIMIT_EXCEEDED, grpc.StatusCode.INVALID_ARGUMENT),
        (ErrorReason.INSUFFICIENT_FUNDS, grpc.StatusCode.FAILED_PRECONDITION),
        (ErrorReason.ALREADY_GRABBED, grpc.StatusCode.FAILED_PRECONDITION),
        (ErrorReason.DAILY_LIMIT_EXCEEDED, grpc.StatusCode.FAILED_PRECONDITION),
        (ErrorReason.REQUEST_ID_REUSED, grpc.StatusCode.ALREADY_EXISTS),
        (ErrorReason.NOT_FOUND, grpc.StatusCode.NOT_FOUND),
    ],
)
def test_status_codes_of_key_reasons(reason: ErrorReason, code: grpc.StatusCode) -> None:
    assert ERROR_TABLE[reason].code is code
    assert make_error(reason).code is code


def test_retry_classes() -> None:
    retryable = {r for r in ErrorReason if isinstance(make_error(r), RetryableError)}
    assert retryable == {
        ErrorReason.NOT_LEADER,
        ErrorReason.UNAVAILABLE,
        ErrorReason.OVERLOADED,
        ErrorReason.OUTCOME_UNKNOWN,
    }
    unknown = {r for r in ErrorReason if make_error(r).outcome_unknown}
    assert unknown == {ErrorReason.OUTCOME_UNKNOWN, ErrorReason.INTERNAL}
    assert make_error(ErrorReason.UNAVAILABLE, server_reported=False).outcome_unknown


def test_an_error_must_be_built_with_the_class_of_its_reason() -> None:
    assert isinstance(make_error(ErrorReason.ENVELOPE_EMPTY), RefusedError)
    with pytest.raises(InvariantViolation):
        NotLeaderError(ErrorReason.INSUFFICIENT_FUNDS)
    with pytest.raises(InvariantViolation):
        HongbaoError(ErrorReason.NOT_FOUND)


def test_str_names_reason_and_leader() -> None:
    error = make_error(ErrorReason.NOT_LEADER, "shard 4 moved", leader_hint=HINT)
    assert str(error) == "NOT_LEADER: shard 4 moved (leader 3 at 127.0.0.1:7003)"
    assert str(make_error(ErrorReason.ENVELOPE_EMPTY)) == "ENVELOPE_EMPTY"


def test_rich_status_carries_error_info() -> None:
    error = make_error(ErrorReason.NOT_LEADER, "x" * 5000, leader_hint=HINT, shard_id=4)
    status = errors.to_rpc_status(error)
    assert status.code == grpc.StatusCode.UNAVAILABLE.value[0]
    assert len(status.message) == errors.MESSAGE_LENGTH_MAX
    info = error_details_pb2.ErrorInfo()
    assert status.details[0].Unpack(info)
    assert (info.domain, info.reason) == ("hongbao", "NOT_LEADER")
    assert dict(info.metadata) == {
        "shard_id": "4",
        "leader_node_id": "3",
        "leader_address": "127.0.0.1:7003",
    }


# ---- In-band (Batch) errors ----


@pytest.mark.parametrize("reason", list(ErrorReason))
def test_batch_error_round_trips(reason: ErrorReason) -> None:
    hint = HINT if reason is ErrorReason.NOT_LEADER else None
    error = make_error(reason, "why", leader_hint=hint, shard_id=0)
    pb = errors_pb2.Error.FromString(errors.error_to_proto(error).SerializeToString())
    assert pb.code == error.code.value[0]
    back = errors.error_from_proto(pb)
    assert type(back) is type(error)
    assert (back.reason, back.message, back.leader_hint, back.shard_id) == (reason, "why", hint, 0)


def test_batch_error_of_an_unknown_reason_falls_back_on_its_code() -> None:
    pb = errors_pb2.Error(reason=999, code=grpc.StatusCode.UNAVAILABLE.value[0])  # type: ignore[arg-type]
    back = errors.error_from_proto(pb)
    assert back.reason is ErrorReason.UNAVAILABLE
    assert back.shard_id is None


# ---- Over a real server ----


@dataclass
class _Wallet(ledger_pb2_grpc.WalletServicer):
    """Balance fails as the user id says: a reason name, "plain", "crash" or "hang"."""

    release: threading.Event

    def Balance(
        self, request: ledger_pb2.BalanceRequest, context: grpc.ServicerContext
    ) -> ledger_pb2.BalanceResponse:
        if request.user_id == "plain":
            context.abort(grpc.StatusCode.UNAVAILABLE, "no details")
        if request.user_id == "crash":
            raise RuntimeError("boom")
        if request.user_id == "hang":
            self.release.wait(TIMEOUT_S)
            return ledger_pb2.BalanceResponse()
        reason = ErrorReason(request.user_id)
        hint = HINT if reason is ErrorReason.NOT_LEADER else None
        errors.abort(context, make_error(reason, f"{reason} for you", leader_hint=hint, shard_id=7))


@pytest.fixture
def wallet_stub() -> Iterator[ledger_pb2_grpc.WalletStub]:
    release = threading.Event()
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    try:
        ledger_pb2_grpc.add_WalletServicer_to_server(_Wallet(release), server)
        port = server.add_insecure_port("127.0.0.1:0")
        server.start()
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            yield ledger_pb2_grpc.WalletStub(channel)
    finally:
        release.set()
        server.stop(grace=None).wait(TIMEOUT_S)


def _balance_error(
    stub: ledger_pb2_grpc.WalletStub, user_id: str, timeout_s: float = TIMEOUT_S
) -> HongbaoError:
    with pytest.raises(grpc.RpcError) as caught:
        stub.Balance(ledger_pb2.BalanceRequest(user_id=user_id), timeout=timeout_s)
    return errors.error_from_rpc_error(caught.value)


def test_not_leader_reaches_the_client_with_its_hint(
    wallet_stub: ledger_pb2_grpc.WalletStub,
) -> None:
    error = _balance_error(wallet_stub, "NOT_LEADER")
    assert isinstance(error, NotLeaderError)
    assert error.code is grpc.StatusCode.UNAVAILABLE
    assert error.leader_hint == HINT
    assert error.shard_id == 7
    assert error.message == "NOT_LEADER for you"
    assert error.server_reported
    assert not error.outcome_unknown


@pytest.mark.parametrize("reason", list(ErrorReason))
def test_every_reason_survives_the_wire(
    wallet_stub: ledger_pb2_grpc.WalletStub, reason: ErrorReason
) -> None:
    error = _balance_error(wallet_stub, reason.value)
    assert type(error) is ERROR_TABLE[reason].error_class
    assert error.reason is reason
    assert error.server_reported


def test_status_without_details_falls_back_on_its_code(
    wallet_stub: ledger_pb2_grpc.WalletStub,
) -> None:
    error = _balance_error(wallet_stub, "plain")
    assert error.reason is ErrorReason.UNAVAILABLE
    assert error.message == "no details"
    assert not error.server_reported
    assert error.outcome_unknown  # only our own answer proves "not applied"


def test_a_servicer_crash_is_internal(wallet_stub: ledger_pb2_grpc.WalletStub) -> None:
    error = _balance_error(wallet_stub, "crash")
    assert error.reason is ErrorReason.INTERNAL
    assert error.outcome_unknown


def test_a_client_deadline_is_outcome_unknown(wallet_stub: ledger_pb2_grpc.WalletStub) -> None:
    error = _balance_error(wallet_stub, "hang", timeout_s=0.05)
    assert isinstance(error, OutcomeUnknownError)
    assert not error.server_reported


def test_an_unreachable_node_is_unavailable() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        error = _balance_error(ledger_pb2_grpc.WalletStub(channel), "anyone")
    assert error.reason is ErrorReason.UNAVAILABLE
    assert isinstance(error, RetryableError)


class _AsyncWallet(ledger_pb2_grpc.WalletServicer):
    async def Balance(
        self,
        request: ledger_pb2.BalanceRequest,
        context: grpc.aio.ServicerContext[ledger_pb2.BalanceRequest, ledger_pb2.BalanceResponse],
    ) -> ledger_pb2.BalanceResponse:
        error = make_error(ErrorReason.NOT_LEADER, "ask 3", leader_hint=HINT, shard_id=1)
        await errors.abort_async(context, error)


def test_asyncio_server_and_client() -> None:
    async def scenario() -> HongbaoError:
        server = grpc.aio.server()
        try:
            ledger_pb2_grpc.add_WalletServicer_to_server(_AsyncWallet(), server)
            port = server.add_insecure_port("127.0.0.1:0")
            await server.start()
            async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
                stub = ledger_pb2_grpc.WalletStub(channel)
                try:
                    await stub.Balance(ledger_pb2.BalanceRequest(user_id="u"), timeout=TIMEOUT_S)
                except grpc.aio.AioRpcError as rpc_error:
                    return errors.error_from_rpc_error(rpc_error)
                raise AssertionError("the call should have failed")
        finally:
            await server.stop(grace=None)

    error = asyncio.run(scenario())
    assert isinstance(error, NotLeaderError)
    assert (error.leader_hint, error.shard_id, error.message) == (HINT, 1, "ask 3")
