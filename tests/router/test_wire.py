"""The router's wire helpers agree with protobuf's own encoder and parser."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hongbao.proto.gen.hongbao.v1 import ledger_pb2
from hongbao.router import wire
from hongbao.router.methods import SINGLE_METHODS, services


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.tuples(st.text(max_size=40), st.text(max_size=70), st.integers(0, 2**63 - 1)),
        max_size=30,
    )
)
def test_an_execute_request_built_from_request_bytes_is_protobufs_own(
    deposits: list[tuple[str, str, int]],
) -> None:
    requests = [
        ledger_pb2.DepositRequest(request_id=rid, user_id=user, amount_fen=amount)
        for rid, user, amount in deposits
    ]
    operations = [wire.length_delimited(1, request.SerializeToString()) for request in requests]
    built = wire.repeated_field(1, operations)
    expected = ledger_pb2.ExecuteRequest(
        operations=[ledger_pb2.Operation(deposit=r) for r in requests]
    )
    assert ledger_pb2.ExecuteRequest.FromString(built) == expected
    assert wire.repeated_messages(built, 1) == operations


def test_a_result_oneof_is_read_without_decoding_its_payload() -> None:
    result = ledger_pb2.OperationResult(grab=ledger_pb2.GrabResponse(amount_fen=5, ordinal=2))
    number, payload = wire.oneof_message(result.SerializeToString())
    assert number == 9
    assert ledger_pb2.GrabResponse.FromString(payload).amount_fen == 5
    empty = ledger_pb2.OperationResult(deposit=ledger_pb2.DepositResponse())
    assert wire.oneof_message(empty.SerializeToString()) == (1, b"")


@pytest.mark.parametrize("bad", [b"\x0a\x05ab", b"\x80", b"\x00\x01", b"\x0b"])
def test_malformed_bytes_raise_wire_error(bad: bytes) -> None:
    with pytest.raises(wire.WireError):
        list(wire.records(bad))


def test_every_ledger_method_has_a_route() -> None:
    descriptor = ledger_pb2.DESCRIPTOR
    expected = {
        f"/{service.full_name}/{method.name}"
        for service in descriptor.services_by_name.values()
        for method in service.methods
    }
    served = {f"/{service}/{name}" for service, names in services().items() for name in names}
    assert served == expected
    assert set(SINGLE_METHODS) == expected - {"/hongbao.v1.Batch/Execute"}
