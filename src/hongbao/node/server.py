"""The node process: one gRPC server (peer, admin, ledger, health, reflection) and the runtime.

Rules of this module: it wires the parts together and owns the process lifetime;
it holds no protocol or ledger logic. SIGTERM and SIGINT stop it cleanly: health turns
NOT_SERVING, queued requests are refused with UNAVAILABLE, in-flight RPCs get a short
grace period, the LMDB environment is closed. SIGKILL loses nothing acknowledged: every
answer was given only after its effects were committed to LMDB.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import signal
from collections.abc import Awaitable, Callable
from pathlib import Path

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from hongbao.node.admin import AdminServicer
from hongbao.node.courier import Courier
from hongbao.node.errors import HongbaoError, abort_async
from hongbao.node.ledger_service import add_ledger_services, deliver
from hongbao.node.runtime import NodeRuntime, RuntimeLimits
from hongbao.node.storage import Durability, NodeEnv
from hongbao.node.transport import PeerSender, PeerServicer, TransportLimits
from hongbao.proto.gen.hongbao.v1 import (
    admin_pb2,
    admin_pb2_grpc,
    ledger_pb2,
    peer_pb2,
    peer_pb2_grpc,
)
from hongbao.raft.types import Message
from hongbao.topology import Topology

log = logging.getLogger(__name__)

SHUTDOWN_GRACE_S = 2.0
SERVICE_NAMES = (
    ledger_pb2.DESCRIPTOR.services_by_name["Wallet"].full_name,
    ledger_pb2.DESCRIPTOR.services_by_name["Envelopes"].full_name,
    ledger_pb2.DESCRIPTOR.services_by_name["Batch"].full_name,
    admin_pb2.DESCRIPTOR.services_by_name["Admin"].full_name,
    peer_pb2.DESCRIPTOR.services_by_name["Peer"].full_name,
)


def cluster_id_of(topology: Topology) -> str:
    """A name for the cluster derived from its shape: nodes of another cluster refuse us."""
    shape = ";".join(f"{n.node_id}@{n.address}/{n.region}" for n in topology.nodes)
    shape += f";shards={topology.shard_count};rf={topology.replication_factor}"
    return hashlib.blake2b(shape.encode(), digest_size=8).hexdigest()


class NodePeerServicer(PeerServicer):
    """The peer service with the courier's Deliver method added."""

    def __init__(self, *, runtime: NodeRuntime, courier: Courier, **kwargs: object) -> None:
        super().__init__(events=runtime, **kwargs)  # type: ignore[arg-type]
        self.runtime = runtime
        self.courier = courier

    async def Deliver(
        self,
        request: peer_pb2.DeliverRequest,
        context: grpc.aio.ServicerContext[peer_pb2.DeliverRequest, peer_pb2.DeliverResponse],
    ) -> peer_pb2.DeliverResponse:
        if request.cluster_id != self.cluster_id:
            await context.abort(grpc.StatusCode.FAILED_PRECONDITION, "another cluster")
        try:
            return await deliver(self.runtime, self.courier, request)
        except HongbaoError as error:
            await abort_async(context, error)
            raise


class Transport:
    """One :class:`PeerSender` per node this node shares a shard with."""

    def __init__(self, runtime: NodeRuntime, cluster_id: str, limits: TransportLimits) -> None:
        topology = runtime.topology
        peers: set[int] = set()
        for shard_id in runtime.replicas:
            peers.update(int(n) for n in topology.replicas_of(shard_id))
        peers.discard(runtime.node_id)
        self.senders = {
            peer: PeerSender(
                node_id=runtime.node_id,
                peer_id=peer,
                address=topology.node(peer).address,
                cluster_id=cluster_id,
                limits=limits,
                events=runtime,
            )
            for peer in sorted(peers)
        }

    def send(self, to: int, shard_id: int, message: Message) -> None:
        sender = self.senders.get(to)
        if sender is not None:
            sender.send(shard_id, message)

    def peer_is_back(self, peer_id: int) -> None:
        sender = self.senders.get(peer_id)
        if sender is not None:
            sender.peer_is_back()


class NodeServer:
    def __init__(
        self,
        *,
        topology: Topology,
        node_id: int,
        data_dir: Path,
        durability: Durability = Durability.FSYNC,
        runtime_limits: RuntimeLimits | None = None,
        transport_limits: TransportLimits | None = None,
    ) -> None:
        self.topology = topology
        self.node_id = node_id
        self.spec = topology.node(node_id)
        self.env = NodeEnv(data_dir / f"node-{node_id}", durability=durability)
        self.runtime = NodeRuntime(
            topology=topology,
            node_id=node_id,
            env=self.env,
            limits=runtime_limits,
            ledger_limits=topology.limits,
        )
        self.transport_limits = transport_limits or TransportLimits()
        self.cluster_id = cluster_id_of(topology)
        self.transport = Transport(self.runtime, self.cluster_id, self.transport_limits)
        self.runtime.send = self.transport.send
        self.courier = Courier(self.runtime, self.transport_limits)
        self.courier.cluster_id = self.cluster_id
        self.health = health.aio.HealthServicer()
        self.server = grpc.aio.server(options=self.transport_limits.grpc_options())
        self._tasks: list[asyncio.Task[None]] = []

    def _add_services(self) -> None:
        runtime = self.runtime
        peer_pb2_grpc.add_PeerServicer_to_server(
            NodePeerServicer(
                runtime=runtime,
                courier=self.courier,
                node_id=self.node_id,
                cluster_id=self.cluster_id,
                limits=self.transport_limits,
                is_known_peer=lambda n: any(s.node_id == n for s in self.topology.nodes),
                on_peer_stream=self.transport.peer_is_back,
            ),
            self.server,
        )
        admin_pb2_grpc.add_AdminServicer_to_server(AdminServicer(runtime), self.server)
        add_ledger_services(self.server, runtime)
        health_pb2_grpc.add_HealthServicer_to_server(self.health, self.server)
        reflection.enable_server_reflection(
            (*SERVICE_NAMES, health.SERVICE_NAME, reflection.SERVICE_NAME), self.server
        )

    async def start(self) -> None:
        self._add_services()
        port = self.server.add_insecure_port(self.spec.address)
        if port == 0:
            raise OSError(f"cannot listen on {self.spec.address}")
        await self.server.start()
        self._spawn(self.runtime.run())
        for sender in self.transport.senders.values():
            self._spawn(sender.run())
        self._spawn(self.courier.run())
        for name in ("", *SERVICE_NAMES):
            await self.health.set(name, health_pb2.HealthCheckResponse.SERVING)
        log.info("node %d serving on %s", self.node_id, self.spec.address)

    def _spawn(self, work: Awaitable[None]) -> None:
        async def guarded() -> None:
            try:
                await work
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("node %d: a background task failed; stopping", self.node_id)
                raise

        self._tasks.append(asyncio.create_task(guarded()))

    async def stop(self) -> None:
        await self.health.enter_graceful_shutdown()
        self.runtime.stop()
        # The runtime answers nothing any more: end the peer streams and the courier first.
        # Our outgoing streams are the peers' in-flight RPCs: closing them now lets peers
        # that stop at the same time (cluster down) finish at once instead of waiting out
        # the whole grace period below for a stream that never ends by itself.
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        await self.server.stop(SHUTDOWN_GRACE_S)
        self.env.close()
        log.info("node %d stopped", self.node_id)

    async def serve_until_signal(self, on_ready: Callable[[], None] | None = None) -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await self.start()
        if on_ready is not None:
            on_ready()
        failed = asyncio.create_task(self._first_failure())
        waiter = asyncio.create_task(stop.wait())
        await asyncio.wait({failed, waiter}, return_when=asyncio.FIRST_COMPLETED)
        waiter.cancel()
        failed.cancel()
        await self.stop()

    async def _first_failure(self) -> None:
        """Returns when a background task dies: the node must not limp on without it."""
        while True:
            for task in self._tasks:
                if task.done() and not task.cancelled() and task.exception() is not None:
                    return
            await asyncio.sleep(0.1)
