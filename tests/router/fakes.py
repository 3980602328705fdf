"""In-process fake nodes and an in-process router, for the forwarding tests.

A fake node is a gRPC server with one generic handler: it records every call (method,
request bytes, metadata) and answers with what its ``behaviour`` returns for it: response
bytes, or a HongbaoError it aborts with (its rich status, as a real node would send).
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import grpc

from hongbao.config.routers import RouterSpec
from hongbao.config.topology import Topology, parse_topology
from hongbao.node.bugs import RouterBugs
from hongbao.node.errors import HongbaoError, to_grpc_status
from hongbao.ops.local import free_ports
from hongbao.router.server import RouterServer

REGIONS = ("shenzhen", "shanghai", "tianjin")


@dataclass
class Seen:
    method: str
    raw: bytes
    metadata: dict[str, str]


Behaviour = Callable[[str, bytes], bytes | HongbaoError]
Delay = Callable[[str, bytes], Awaitable[None]]
"""Awaited before the behaviour answers: a busy node's queue, a hang."""


@dataclass
class FakeNode:
    node_id: int
    port: int
    behaviour: Behaviour
    seen: list[Seen] = field(default_factory=list)
    server: grpc.aio.Server | None = None
    delay: Delay | None = None

    def calls(self, method_suffix: str) -> list[Seen]:
        return [s for s in self.seen if s.method.endswith(method_suffix)]

    async def start(self) -> None:
        node = self

        class Handler(grpc.GenericRpcHandler):
            def service(
                self, details: grpc.HandlerCallDetails
            ) -> grpc.RpcMethodHandler[Any, Any] | None:
                method = details.method

                async def unary(raw: bytes, context: grpc.aio.ServicerContext[Any, Any]) -> bytes:
                    metadata = {k: str(v) for k, v in (context.invocation_metadata() or ())}
                    node.seen.append(Seen(method, raw, metadata))
                    if node.delay is not None:
                        await node.delay(method, raw)
                    answer = node.behaviour(method, raw)
                    if isinstance(answer, HongbaoError):
                        await context.abort_with_status(to_grpc_status(answer))
                    assert isinstance(answer, bytes)
                    return answer

                return grpc.unary_unary_rpc_method_handler(unary)

        self.server = grpc.aio.server()
        self.server.add_generic_rpc_handlers((Handler(),))
        self.server.add_insecure_port(f"127.0.0.1:{self.port}")
        await self.server.start()

    async def stop(self) -> None:
        if self.server is not None:
            await self.server.stop(0)
            self.server = None


def fake_topology(ports: list[int], router: dict[str, int] | None = None) -> Topology:
    return parse_topology(
        {
            "shard_count": 6,
            "replication_factor": 3,
            "tls": False,
            "regions": [{"name": name} for name in REGIONS],
            "nodes": [
                {"id": i + 1, "region": name, "host": "127.0.0.1", "port": ports[i]}
                for i, name in enumerate(REGIONS)
            ],
            "router": router or {},
        }
    )


@dataclass
class Rig:
    topology: Topology
    nodes: dict[int, FakeNode]
    router: RouterServer
    channel: grpc.aio.Channel

    def raw(self, path: str) -> grpc.aio.UnaryUnaryMultiCallable[bytes, bytes]:
        return self.channel.unary_unary(path, request_serializer=None, response_deserializer=None)


@contextlib.asynccontextmanager
async def rig(
    behaviours: dict[int, Behaviour],
    *,
    router_settings: dict[str, int] | None = None,
    started: tuple[int, ...] = (1, 2, 3),
    region: str = "shenzhen",
    delay: Delay | None = None,
    router_bugs: RouterBugs | None = None,
) -> AsyncIterator[Rig]:
    """Three fake nodes (those in ``started`` listening) and a router in front of them."""
    ports = free_ports(3)
    topology = fake_topology(ports, router_settings)
    nodes = {
        n: FakeNode(n, ports[n - 1], behaviours.get(n, lambda m, r: b""), delay=delay)
        for n in (1, 2, 3)
    }
    router: RouterServer | None = None
    channel: grpc.aio.Channel | None = None
    try:
        for node_id in started:
            await nodes[node_id].start()
        spec = RouterSpec(router_id=1, region=region, host="127.0.0.1", port=0)
        router = RouterServer(topology=topology, spec=spec, router_bugs=router_bugs)
        await router.start()
        channel = grpc.aio.insecure_channel(f"127.0.0.1:{router.port}")
        yield Rig(topology, nodes, router, channel)
    finally:
        if channel is not None:
            await channel.close()
        if router is not None:
            await router.stop()
        for node in nodes.values():
            await node.stop()
