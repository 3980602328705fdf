"""The node's gRPC server limits, the undecodable-bytes answer, and per-peer task restarts.

In-process (a real grpc.aio server on 127.0.0.1): the probe held 20,000 handshaken idle
connections open for ever; undecodable bytes were answered UNKNOWN; a failing background
task for one peer stopped the whole node.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import grpc
import pytest
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from hongbao.config.topology import parse_topology
from hongbao.node import server as server_module
from hongbao.node.server_options import DecodeErrorInterceptor, ServerLimits, server_options
from hongbao.node.storage import Durability
from hongbao.node.supervisor import restarting
from tests.node.topologies import ONE_NODE

DEADLINE_S = 10.0


async def _serve(options: list[tuple[str, int]]) -> tuple[grpc.aio.Server, str]:
    server = grpc.aio.server(options=options, interceptors=[DecodeErrorInterceptor()])
    servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(servicer, server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    await servicer.set("", health_pb2.HealthCheckResponse.SERVING)
    return server, f"127.0.0.1:{port}"


def test_a_handshaken_idle_connection_is_closed() -> None:
    async def scenario() -> grpc.ChannelConnectivity:
        server, address = await _serve(server_options(ServerLimits(connection_idle_ms_max=300)))
        try:
            async with grpc.aio.insecure_channel(address) as channel:
                stub = health_pb2_grpc.HealthStub(channel)
                await stub.Check(health_pb2.HealthCheckRequest(), timeout=5)
                assert channel.get_state() is grpc.ChannelConnectivity.READY
                deadline = asyncio.get_running_loop().time() + DEADLINE_S
                while channel.get_state() is grpc.ChannelConnectivity.READY:
                    assert asyncio.get_running_loop().time() < deadline, "never closed"
                    await asyncio.sleep(0.05)
                return channel.get_state()
        finally:
            await server.stop(None)

    assert asyncio.run(scenario()) is not grpc.ChannelConnectivity.READY


def test_undecodable_bytes_are_answered_invalid_argument() -> None:
    async def scenario() -> tuple[grpc.StatusCode, str]:
        server, address = await _serve(server_options())
        try:
            async with grpc.aio.insecure_channel(address) as channel:
                call = channel.unary_unary("/grpc.health.v1.Health/Check")
                try:
                    await call(b"\xff\xff\xff", timeout=5)
                except grpc.aio.AioRpcError as error:
                    return error.code(), error.details() or ""
                raise AssertionError("garbage was accepted")
        finally:
            await server.stop(None)

    code, details = asyncio.run(scenario())
    assert code is grpc.StatusCode.INVALID_ARGUMENT
    assert "does not decode" in details


def test_the_node_server_uses_the_explicit_limits(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: dict[str, Any] = {}
    real_server = grpc.aio.server

    def spy(**kwargs: Any) -> grpc.aio.Server:
        seen.update(kwargs)
        return real_server(**kwargs)

    monkeypatch.setattr(server_module.grpc.aio, "server", spy)

    async def build() -> None:
        node = server_module.NodeServer(
            topology=parse_topology(ONE_NODE),
            node_id=1,
            data_dir=tmp_path,
            durability=Durability.NO_FSYNC,
        )
        node.env.close()

    asyncio.run(build())
    options = dict(seen["options"])
    for name in (
        "grpc.max_receive_message_length",
        "grpc.max_send_message_length",
        "grpc.max_concurrent_streams",
        "grpc.keepalive_time_ms",
        "grpc.http2.max_pings_without_data",
        "grpc.max_connection_idle_ms",
        "grpc.max_connection_age_ms",
    ):
        assert options[name] > 0, name
    assert any(isinstance(i, DecodeErrorInterceptor) for i in seen["interceptors"])


def test_a_failing_per_peer_task_is_restarted_with_back_off_not_fatal() -> None:
    runs: list[int] = []
    restarts: list[int] = []

    async def flaky() -> None:
        runs.append(1)
        if len(runs) < 4:
            raise RuntimeError("a bug that fires on one peer's input")
        await asyncio.Event().wait()  # the fourth run lives on

    async def scenario() -> None:
        task = asyncio.create_task(
            restarting(
                "stream to node 9", flaky, backoff_ms_min=1, backoff_ms_max=4, restarts=restarts
            )
        )
        deadline = asyncio.get_running_loop().time() + DEADLINE_S
        while len(runs) < 4:
            assert asyncio.get_running_loop().time() < deadline
            await asyncio.sleep(0.01)
        assert not task.done()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(scenario())
    assert len(restarts) == 3
