"""Following the cluster state: a node acts on its own region's operator state.

Rules of this module: every ``[router] state_poll_ms`` the node reads the cluster state
(its own meta replica's applied state when it has one, else ``Admin.ClusterState`` of a
meta replica, its own region's first, each call bounded by a deadline), so its view is
at most about one poll (plus the meta group's replication) old. On a change of its own
region's state it acts, and logs it at info:

- not ``active``: health NOT_SERVING for the client services (Wallet, Envelopes, Batch),
  so a load balancer in front of the node stops sending it work; the overall "" service
  stays SERVING (the process is fine, and Admin and Peer still work);
- every replica of the node may campaign only while the region may lead, so a draining
  region takes no leadership back (``RaftCore.set_campaign_allowed``).

A failed read changes nothing: the last state known stays in force (and its age grows).

Every region's change is logged (event ``region_state_changed``), not only our own: a
node's log then tells when it learnt of a drain elsewhere. :meth:`ClusterFollower.
region_states` is what ``hongbao_region_state`` exposes: the state as followed here.
"""

from __future__ import annotations

import asyncio
import logging
import time

import grpc
from grpc_health.v1 import health, health_pb2

from hongbao.logs import event
from hongbao.meta.state import ClusterState, RegionState, from_proto
from hongbao.net.channels import channel_options, open_channel
from hongbao.node.cluster_guard import CLUSTER_ID_METADATA_KEY
from hongbao.node.runtime import NodeRuntime
from hongbao.proto.gen.hongbao.v1 import admin_pb2, admin_pb2_grpc

log = logging.getLogger(__name__)

READ_TIMEOUT_MS_MAX = 2_000
"""One remote ClusterState call waits at most this long (and at most one poll period)."""
MESSAGE_BYTES_MAX = 4 << 20


class ClusterFollower:
    """Reads the cluster state every poll and applies its own region's part to the node."""

    def __init__(
        self,
        runtime: NodeRuntime,
        *,
        client_services: tuple[str, ...],
        health_servicer: health.aio.HealthServicer | None = None,
        credentials: grpc.ChannelCredentials | None = None,
        poll_ms: int | None = None,
    ) -> None:
        self.runtime = runtime
        self.topology = runtime.topology
        self.region = self.topology.region_of(runtime.node_id)
        self.client_services = client_services
        self.health_servicer = health_servicer
        self.credentials = credentials
        self.poll_ms = poll_ms or self.topology.router.state_poll_ms
        self.state: ClusterState | None = None
        self.read_at_s = 0.0  # time.monotonic() of the last successful read
        self.answered_by = 0  # the node whose state we hold (ours when we have a replica)
        self.meta_leader = 0  # the meta leader as the answering node knew it
        self.serving: bool | None = None  # what the client services were last set to
        self._channels: dict[str, grpc.aio.Channel] = {}

    # -- the loop --------------------------------------------------------------------------

    async def run(self) -> None:
        try:
            while True:
                await self.poll_once()
                await asyncio.sleep(self.poll_ms / 1000)
        finally:
            await self.close()

    async def poll_once(self) -> ClusterState | None:
        """Read the state once and act on a change; the state read, or None."""
        state, answered_by = await self.read()
        if state is None:
            return None
        previous, self.state = self.state, state
        self.read_at_s = time.monotonic()
        self.answered_by = answered_by
        if previous is None or previous.version != state.version or self.serving is None:
            await self.apply(previous, state)
        return state

    def region_states(self) -> dict[str, RegionState]:
        """Each region's operator state as this node last read it (empty: never read)."""
        state = self.state  # one reference: a scrape thread sees one consistent state
        if state is None:
            return {}
        return {region.name: state.state_of(region.name) for region in self.topology.regions}

    def age_ms(self) -> int:
        """How old the state held is (0 when never read: then ``state`` is None)."""
        if self.state is None:
            return 0
        return int((time.monotonic() - self.read_at_s) * 1000)

    # -- acting on the state -----------------------------------------------------------------

    async def apply(self, previous: ClusterState | None, state: ClusterState) -> None:
        for region in self.topology.regions:
            now = state.state_of(region.name)
            before = previous.state_of(region.name) if previous is not None else None
            if before is not now:
                ours = " (this node's region)" if region.name == self.region else ""
                event(log, "region_state_changed", f"node {self.runtime.node_id}: region"
                      f" {region.name}{ours} is {now.value} (cluster state version"
                      f" {state.version})", state_region=region.name, state=now.value,
                      previous=before.value if before is not None else None,
                      version=state.version)  # fmt: skip
        self.runtime.set_campaign_allowed(state.may_lead(self.region))
        serving = state.takes_traffic(self.region)
        if serving != self.serving:
            await self._set_client_health(serving)
            self.serving = serving

    async def _set_client_health(self, serving: bool) -> None:
        if self.health_servicer is None:
            return
        status = (
            health_pb2.HealthCheckResponse.SERVING
            if serving
            else health_pb2.HealthCheckResponse.NOT_SERVING
        )
        for name in self.client_services:
            await self.health_servicer.set(name, status)

    # -- reading -------------------------------------------------------------------------------

    async def read(self) -> tuple[ClusterState | None, int]:
        """(state, answering node id): the local meta replica's, else a remote one's."""
        local = self.runtime.meta_state()
        if local is not None:
            return local, self.runtime.node_id
        timeout_s = min(READ_TIMEOUT_MS_MAX, max(self.poll_ms, 100)) / 1000
        for node_id in self.meta_nodes_in_order():
            address = self.topology.dial_address(node_id)
            stub = admin_pb2_grpc.AdminStub(self._channel(address))
            try:
                response = await stub.ClusterState(
                    admin_pb2.ClusterStateRequest(linearizable=False),
                    timeout=timeout_s,
                    metadata=((CLUSTER_ID_METADATA_KEY, self.runtime.cluster_id),),
                )
            except grpc.aio.AioRpcError as error:
                log.debug("node %d: no cluster state from node %d: %s", self.runtime.node_id,
                          node_id, error.code().name)  # fmt: skip
                continue
            if response.cluster_id != self.runtime.cluster_id:
                log.warning(
                    "node %d: node %d answered for cluster %r, not %r; ignored",
                    self.runtime.node_id,
                    node_id,
                    response.cluster_id,
                    self.runtime.cluster_id,
                )
                continue
            self.meta_leader = int(response.meta_leader_node_id)
            return from_proto(response), node_id
        return None, 0

    def meta_nodes_in_order(self) -> list[int]:
        """The meta replicas, the one in our own region first (the nearest)."""
        replicas = [int(n) for n in self.topology.meta_replicas]
        return sorted(replicas, key=lambda n: self.topology.region_of(n) != self.region)

    def _channel(self, address: str) -> grpc.aio.Channel:
        channel = self._channels.get(address)
        if channel is None:
            channel = open_channel(address, self.credentials, channel_options(MESSAGE_BYTES_MAX))
            self._channels[address] = channel
        return channel

    async def close(self) -> None:
        channels, self._channels = list(self._channels.values()), {}
        for channel in channels:
            await channel.close()
