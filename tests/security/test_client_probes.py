"""The client-side probes of security-probe.md against the shared real cluster.

All closed by part A (none needs a certificate): reflection lists only the client
services; undecodable request bytes are INVALID_ARGUMENT; a Batch whose answer could be
huge (3,000 History(limit=500) in 48 KB) is refused before any of it is read; neither one
connection nor many together can queue more than the node's bound of operations.
"""

from __future__ import annotations

import uuid

import grpc
import pytest
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from hongbao.node.admission import (
    BATCH_RESPONSE_LINES_MAX,
    INFLIGHT_OPERATIONS_NODE_MAX,
    INFLIGHT_OPERATIONS_PER_PEER_MAX,
)
from hongbao.proto.gen.hongbao.v1 import ledger_pb2, ledger_pb2_grpc
from tests.cluster.support import Harness, users_per_shard
from tests.security.conftest import assert_alive
from tests.security.raw_peer import code_of

pytestmark = pytest.mark.cluster

LIVE = (1, 3)


def test_reflection_lists_only_the_client_services(probed: Harness) -> None:
    stub = reflection_pb2_grpc.ServerReflectionStub(probed.channel(1))
    request = reflection_pb2.ServerReflectionRequest(list_services="")
    (answer,) = list(stub.ServerReflectionInfo(iter([request]), timeout=5))
    names = {service.name for service in answer.list_services_response.service}
    assert names == {
        "hongbao.v1.Wallet",
        "hongbao.v1.Envelopes",
        "hongbao.v1.Batch",
        "grpc.health.v1.Health",
        "grpc.reflection.v1alpha.ServerReflection",
    }


@pytest.mark.parametrize("method", ["/hongbao.v1.Wallet/Deposit", "/hongbao.v1.Batch/Execute"])
def test_undecodable_bytes_are_invalid_argument(probed: Harness, method: str) -> None:
    call = probed.channel(1).unary_unary(method)  # no serializer: the bytes go as they are
    with pytest.raises(grpc.RpcError) as refused:
        call(b"\xff\xff\xff\xff not protobuf", timeout=5)
    assert code_of(refused.value) == grpc.StatusCode.INVALID_ARGUMENT
    assert "does not decode" in refused.value.details()  # type: ignore[attr-defined]


def test_undecodable_bytes_on_a_peer_stream_are_invalid_argument(probed: Harness) -> None:
    call = probed.channel(3).stream_stream("/hongbao.v1.Peer/Stream")
    with pytest.raises(grpc.RpcError) as refused:
        list(call(iter([b"\x0a\xff\xff garbage"]), timeout=5))
    assert code_of(refused.value) == grpc.StatusCode.INVALID_ARGUMENT
    assert_alive(probed, *LIVE)


def test_a_batch_that_could_answer_millions_of_lines_is_refused_up_front(
    probed: Harness,
) -> None:
    history = ledger_pb2.HistoryRequest(user_id="mallory", limit=500)
    request = ledger_pb2.ExecuteRequest(
        operations=[ledger_pb2.Operation(history=history) for _ in range(3_000)]
    )
    assert request.ByteSize() < 64 * 1024
    with pytest.raises(grpc.RpcError) as refused:
        probed.batch(1).Execute(request, timeout=10)
    assert code_of(refused.value) == grpc.StatusCode.RESOURCE_EXHAUSTED
    details = refused.value.details()  # type: ignore[attr-defined]
    assert "1500000 lines" in details
    assert f"at most {BATCH_RESPONSE_LINES_MAX}" in details


def test_many_connections_cannot_queue_unbounded_work(probed: Harness) -> None:
    """Three Batches at once, each on its own connection (a client opens as many as it
    likes; the probe sent eight Batches of 10,000): the node admits two, which fill its
    node-wide bound, refuses the third at once with RESOURCE_EXHAUSTED, stays up, and
    applies every admitted deposit exactly once and none of the refused one.

    Not asserted: that no leader moves. With node 2 down and the machine's cores shared,
    that is timing; the note of issue 12 has the measurement behind the bound.
    """
    per_batch = INFLIGHT_OPERATIONS_NODE_MAX // 2
    assert per_batch <= INFLIGHT_OPERATIONS_PER_PEER_MAX
    leaders = probed.leaders()
    shard_id = min(s for s, leader in leaders.items() if leader == 1)
    (user,) = users_per_shard(probed.topology, 1, f"flood-{uuid.uuid4().hex[:8]}-")[shard_id]
    # A local subchannel pool per channel: three real connections, not one shared.
    channels = [
        grpc.insecure_channel(
            probed.topology.node(1).address, options=[("grpc.use_local_subchannel_pool", 1)]
        )
        for _ in range(3)
    ]
    try:
        requests = [
            ledger_pb2.ExecuteRequest(
                operations=[
                    ledger_pb2.Operation(
                        deposit=ledger_pb2.DepositRequest(
                            request_id=f"{user}-{batch}-{n}", user_id=user, amount_fen=1
                        )
                    )
                    for n in range(per_batch)
                ]
            )
            for batch in range(3)
        ]
        calls = [
            ledger_pb2_grpc.BatchStub(channel).Execute.future(request, timeout=120)
            for channel, request in zip(channels, requests, strict=True)
        ]
        answers: list[ledger_pb2.ExecuteResponse | grpc.StatusCode] = []
        for call in calls:
            try:
                answers.append(call.result())
            except grpc.RpcError as error:
                answers.append(code_of(error))
    finally:
        for channel in channels:
            channel.close()
    refused = [a for a in answers if isinstance(a, grpc.StatusCode)]
    assert refused == [grpc.StatusCode.RESOURCE_EXHAUSTED], answers
    admitted = [a for a in answers if isinstance(a, ledger_pb2.ExecuteResponse)]
    deposited = sum(1 for a in admitted for r in a.results if r.WhichOneof("result") == "deposit")
    assert_alive(probed, *LIVE)
    wallet = probed.wallet(probed.leaders()[shard_id])
    balance = wallet.Balance(ledger_pb2.BalanceRequest(user_id=user), timeout=10).balance_fen
    # Deposits answered OUTCOME_UNKNOWN (past the 5 s command deadline) may have applied
    # too; none of the refused Batch did, and none twice (request ids).
    assert deposited <= balance <= 2 * per_batch
