"""A node's life as an operator's tools see it: health, reflection, SIGTERM, restart.

Load balancers and probes ask the standard gRPC health service; grpcurl and friends ask
reflection. SIGTERM must end a node cleanly (exit code 0) and a restarted node must come
back with everything it had applied, serving the same answers.
"""

from __future__ import annotations

import asyncio
import time

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from hongbao.client.sdk import HongbaoClient
from hongbao.ledger.sharding import shard_for_user
from hongbao.net.channels import RECONNECT_BACKOFF_MS_MAX
from hongbao.node.server import CLIENT_SERVICE_NAMES, SERVICE_NAMES
from hongbao.proto.gen.hongbao.v1 import admin_pb2, ledger_pb2
from tests.cluster.support import Harness, wait_for

pytestmark = pytest.mark.cluster


def health_of(channel: grpc.Channel, service: str) -> int:
    request = health_pb2.HealthCheckRequest(service=service)
    response = health_pb2_grpc.HealthStub(channel).Check(request, timeout=5)
    return int(response.status)


def test_every_service_reports_serving(cluster: Harness) -> None:
    for node_id in cluster.cluster.node_ids:
        channel = cluster.channel(node_id)
        assert health_of(channel, "") == health_pb2.HealthCheckResponse.SERVING
        for service in SERVICE_NAMES:
            assert health_of(channel, service) == health_pb2.HealthCheckResponse.SERVING
        unknown = health_pb2.HealthCheckRequest(service="hongbao.v1.NoSuchService")
        with pytest.raises(grpc.RpcError) as caught:
            health_pb2_grpc.HealthStub(channel).Check(unknown, timeout=5)
        assert caught.value.code() == grpc.StatusCode.NOT_FOUND  # type: ignore[attr-defined]


def test_reflection_lists_the_public_services(cluster: Harness) -> None:
    stub = reflection_pb2_grpc.ServerReflectionStub(cluster.channel(1))
    request = reflection_pb2.ServerReflectionRequest(list_services="")
    responses = list(stub.ServerReflectionInfo(iter([request]), timeout=5))
    listed = {s.name for s in responses[0].list_services_response.service}
    assert set(CLIENT_SERVICE_NAMES) <= listed
    assert "grpc.health.v1.Health" in listed
    assert not listed & {"hongbao.v1.Peer", "hongbao.v1.Admin"}  # issue 12: not to clients


def test_sigterm_exits_cleanly_and_a_restart_keeps_what_was_applied(cluster: Harness) -> None:
    node_id = 2
    user = "lifecycle-user"
    shard_id = shard_for_user(user, cluster.topology.shard_count)
    leader = cluster.leaders()[shard_id]
    request = ledger_pb2.DepositRequest(request_id="lifecycle-1", user_id=user, amount_fen=4321)
    assert cluster.wallet(leader).Deposit(request, timeout=5).balance_fen == 4321
    stale = ledger_pb2.BalanceRequest(user_id=user, stale_ok=True)

    def applied_on_node() -> bool:
        return cluster.wallet(node_id).Balance(stale, timeout=5).balance_fen == 4321

    wait_for(applied_on_node, 10.0, f"node {node_id} to apply the deposit")

    assert cluster.cluster.stop(node_id) == 0  # SIGTERM: a clean exit, not a crash
    cluster.forget_channel(node_id)
    cluster.cluster.start([node_id])
    # Right after the restart, before it hears from any leader, the node answers from
    # what it had applied and persisted.
    assert cluster.wallet(node_id).Balance(stale, timeout=5).balance_fen == 4321
    # The retry of the same request is answered from the idempotency table, not re-applied.
    leader = cluster.leaders()[shard_id]
    assert cluster.wallet(leader).Deposit(request, timeout=5).balance_fen == 4321
    assert health_of(cluster.channel(node_id), "") == health_pb2.HealthCheckResponse.SERVING


def test_a_client_reaches_a_node_soon_after_it_returns(cluster: Harness) -> None:
    # gRPC's default reconnect back-off grows to 120 s: after a node had been down for a
    # while, a client would keep failing fast against it long after it came back, and a
    # leader moved home to it would be unreachable. The client caps the back-off.
    node_id = 3
    down_s = 6.0  # long enough for the default back-off to have grown past 3 s
    slack_s = 1.5  # scheduling on a busy 2-core machine

    async def status(client: HongbaoClient) -> bool:
        try:
            await client.stubs(node_id).admin.Status(admin_pb2.StatusRequest(), timeout=0.5)
        except grpc.aio.AioRpcError:
            return False
        return True

    async def scenario() -> float:
        async with HongbaoClient(cluster.topology) as client:
            assert await status(client)
            assert cluster.cluster.stop(node_id) == 0
            deadline = time.monotonic() + down_s
            while time.monotonic() < deadline:  # keep failing: the back-off grows
                assert not await status(client)
                await asyncio.sleep(0.2)
            cluster.cluster.start([node_id])
            back = time.monotonic()
            limit_s = RECONNECT_BACKOFF_MS_MAX / 1000 + slack_s
            while not await status(client):
                assert time.monotonic() - back < limit_s, "the client did not reconnect"
                await asyncio.sleep(0.05)
            return time.monotonic() - back

    reconnect_s = asyncio.run(scenario())
    assert reconnect_s < RECONNECT_BACKOFF_MS_MAX / 1000 + slack_s
    cluster.forget_channel(node_id)
    cluster.leaders()  # the shared cluster is whole again for the next module
