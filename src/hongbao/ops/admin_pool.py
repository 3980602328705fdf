"""Admin and health stubs by address, for the operator commands.

Rules of this module: one channel per address, opened on first use and closed together
(``async with``); every call made through it carries a deadline chosen by the caller.
The operator commands talk to nodes *and* routers by address (``cluster status
--address`` starts from one of either), so this is keyed by address, not by node id.
"""

from __future__ import annotations

import os
import tomllib
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2_grpc

from hongbao.config.topology import Topology, parse_topology
from hongbao.net.channels import channel_options, open_channel
from hongbao.proto.gen.hongbao.v1 import admin_pb2, admin_pb2_grpc
from hongbao.security.tls import CERTS_DIR_ENV, client_credentials, client_credentials_from

MESSAGE_BYTES_MAX = 8 << 20


def admin_credentials(
    topology: Topology | None, *, insecure: bool = False
) -> grpc.ChannelCredentials | None:
    """The operator's channel credentials: from the topology when there is one; from
    ``$HONGBAO_CERTS_DIR`` when only an address is known; plaintext with ``insecure``."""
    if insecure:
        return None
    if topology is not None:
        credentials = client_credentials(topology)
        return None if credentials is None else credentials.admin.channel_credentials()
    directory = os.environ.get(CERTS_DIR_ENV)
    if not directory:
        return None
    return client_credentials_from(Path(directory)).admin.channel_credentials()


class AdminPool:
    """Admin and grpc.health stubs of every node and router the commands talk to."""

    def __init__(
        self, topology: Topology | None = None, credentials: grpc.ChannelCredentials | None = None
    ) -> None:
        self._topology = topology
        self.credentials = credentials
        self._channels: dict[str, grpc.aio.Channel] = {}

    @classmethod
    def for_topology(cls, topology: Topology) -> AdminPool:
        return cls(topology, admin_credentials(topology))

    @property
    def topology(self) -> Topology:
        if self._topology is None:
            raise RuntimeError("no topology yet: fetch_topology first")
        return self._topology

    @topology.setter
    def topology(self, topology: Topology) -> None:
        self._topology = topology

    def channel(self, address: str) -> grpc.aio.Channel:
        channel = self._channels.get(address)
        if channel is None:
            options = channel_options(MESSAGE_BYTES_MAX)
            channel = self._channels[address] = open_channel(address, self.credentials, options)
        return channel

    def admin(self, address: str) -> admin_pb2_grpc.AdminStub:
        return admin_pb2_grpc.AdminStub(self.channel(address))

    def health(self, address: str) -> health_pb2_grpc.HealthStub:
        return health_pb2_grpc.HealthStub(self.channel(address))

    def node(self, node_id: int) -> admin_pb2_grpc.AdminStub:
        return self.admin(self.topology.node(node_id).address)

    async def fetch_topology(self, address: str, timeout_s: float) -> tuple[Topology, str]:
        """Ask ``address`` (a node or a router) for the topology it runs with and the
        cluster id it serves; the pool uses that topology from then on."""
        response: admin_pb2.TopologyResponse = await self.admin(address).Topology(
            admin_pb2.TopologyRequest(), timeout=timeout_s
        )
        source = f"{address}:{response.source}"
        topology = parse_topology(tomllib.loads(response.toml), source=source)
        self._topology = topology
        return topology, response.cluster_id

    async def close(self) -> None:
        for channel in self._channels.values():
            await channel.close()
        self._channels.clear()

    async def __aenter__(self) -> AdminPool:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()
