"""The node process: one gRPC server (peer, admin, ledger, health, reflection) and the runtime.

Rules of this module: it wires the parts together and owns the process lifetime;
it holds no protocol or ledger logic. SIGTERM and SIGINT stop it cleanly: health turns
NOT_SERVING, queued requests are refused with UNAVAILABLE, in-flight RPCs get a short
grace period, the LMDB environment is closed. SIGKILL loses nothing acknowledged: every
answer was given only after its effects were committed to LMDB.

With a ``metrics_port`` in the topology the node also serves its own Prometheus registry
(:mod:`hongbao.metrics.node`) on ``host:metrics_port``, started before the gRPC server
and closed after it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import Awaitable, Callable
from pathlib import Path

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from hongbao.config.topology import Topology
from hongbao.metrics import MetricsServer, start_metrics_server
from hongbao.metrics.node import NodeMetrics, NodeSources
from hongbao.node import bugs
from hongbao.node.admin import AdminServicer
from hongbao.node.batch_service import BatchServicer
from hongbao.node.cluster_follow import ClusterFollower
from hongbao.node.cluster_guard import ClusterIdInterceptor
from hongbao.node.cluster_guard import cluster_id_of as cluster_id_of  # re-exported
from hongbao.node.courier import Courier
from hongbao.node.errors import HongbaoError, abort_async
from hongbao.node.ledger_service import (
    EnvelopesServicer,
    LedgerFront,
    WalletServicer,
    deliver,
)
from hongbao.node.peer_guard import CoreView, PeerGuard
from hongbao.node.runtime import NodeRuntime, RuntimeLimits
from hongbao.node.server_options import DecodeErrorInterceptor, ServerLimits, server_options
from hongbao.node.storage import Durability, NodeEnv
from hongbao.node.supervisor import restarting
from hongbao.node.transport import PeerSender, PeerServicer, TransportLimits
from hongbao.proto.gen.hongbao.v1 import (
    admin_pb2,
    admin_pb2_grpc,
    ledger_pb2,
    ledger_pb2_grpc,
    peer_pb2,
    peer_pb2_grpc,
)
from hongbao.raft.types import Message
from hongbao.security.binding import PeerBinding
from hongbao.security.identity import peer_identity
from hongbao.security.interceptor import RoleInterceptor
from hongbao.security.tls import TlsFiles, node_files

log = logging.getLogger(__name__)

SHUTDOWN_GRACE_S = 2.0
FIRST_STATE_READ_S = 1.0  # at start: how long to wait for the cluster state, at most
SERVICE_NAMES = (
    ledger_pb2.DESCRIPTOR.services_by_name["Wallet"].full_name,
    ledger_pb2.DESCRIPTOR.services_by_name["Envelopes"].full_name,
    ledger_pb2.DESCRIPTOR.services_by_name["Batch"].full_name,
    admin_pb2.DESCRIPTOR.services_by_name["Admin"].full_name,
    peer_pb2.DESCRIPTOR.services_by_name["Peer"].full_name,
)
CLIENT_SERVICE_NAMES = SERVICE_NAMES[:3]
"""What reflection lists: the ledger services only, never Peer or Admin."""


def _core_of(runtime: NodeRuntime, shard_id: int) -> CoreView | None:
    replica = runtime.groups.get(shard_id)  # the meta group's messages are checked alike
    return None if replica is None else replica.core


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
        if self.binding is not None:  # TLS: only the certificate's node may deliver
            unbound = self.binding.deliver_refusal(peer_identity(context), request)
            if unbound:
                log.warning("refused a Deliver from %s: %s", context.peer(), unbound)
                await context.abort(grpc.StatusCode.PERMISSION_DENIED, unbound)
        if request.cluster_id != self.cluster_id:
            await context.abort(grpc.StatusCode.FAILED_PRECONDITION, "another cluster")
        try:
            return await deliver(self.runtime, self.courier, request, self.refusals)
        except HongbaoError as error:
            await abort_async(context, error)
            raise


class Transport:
    """One :class:`PeerSender` per node this node shares a shard with."""

    def __init__(
        self,
        runtime: NodeRuntime,
        cluster_id: str,
        limits: TransportLimits,
        credentials: grpc.ChannelCredentials | None = None,
    ) -> None:
        topology = runtime.topology
        peers: set[int] = set()
        for shard_id in runtime.groups:
            peers.update(int(n) for n in topology.replicas_of(shard_id))
        peers.discard(runtime.node_id)
        self.senders = {
            peer: PeerSender(
                node_id=runtime.node_id,
                peer_id=peer,
                address=topology.dial_address(peer),
                cluster_id=cluster_id,
                limits=limits,
                events=runtime,
                keepalive_interval_s=runtime.keepalive_interval_s,
            )
            for peer in sorted(peers)
        }
        for sender in self.senders.values():
            sender.credentials = credentials

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
        topology_toml: str = "",
        topology_source: str = "",
        node_bugs: bugs.NodeBugs | None = None,
    ) -> None:
        self.topology = topology
        self.node_id = node_id
        self.spec = topology.node(node_id)
        self.topology_toml = topology_toml  # the file's text, for Admin.Topology
        self.topology_source = topology_source
        self.cluster_id = cluster_id_of(topology)
        self.env = NodeEnv(data_dir / f"node-{node_id}", durability=durability)
        self.runtime = NodeRuntime(
            topology=topology,
            node_id=node_id,
            env=self.env,
            limits=runtime_limits,
            ledger_limits=topology.limits,
            cluster_id=self.cluster_id,
            node_bugs=node_bugs,
        )
        if node_bugs is not None:  # BUG SWITCH: say so loudly
            bugs.announce(log, f"node {node_id}", node_bugs.names)
        self.transport_limits = transport_limits or TransportLimits()
        # TLS (topology.tls): this node's certificate serves, dials peers, and the role
        # interceptor decides who may call what. Raises TlsError when the files are bad.
        self.tls: TlsFiles | None = node_files(topology, node_id) if topology.tls else None
        dial = self.tls.channel_credentials() if self.tls is not None else None
        self.transport = Transport(self.runtime, self.cluster_id, self.transport_limits, dial)
        self.runtime.send = self.transport.send
        self.courier = Courier(self.runtime, self.transport_limits)
        self.courier.cluster_id = self.cluster_id
        self.courier.credentials = dial
        self.health = health.aio.HealthServicer()
        self.follower = ClusterFollower(
            self.runtime,
            client_services=CLIENT_SERVICE_NAMES,
            health_servicer=self.health,
            credentials=dial,
        )
        self.refusals = self.runtime.refusals  # refused peer messages, by reason and sender
        self.guard = PeerGuard(
            node_id=node_id,
            cores=lambda shard_id: _core_of(self.runtime, shard_id),
            election_timeout_ms=int(self.runtime.liveness.timeout_ms),  # an election timeout
            refusals=self.refusals,
            nodes=frozenset(int(spec.node_id) for spec in topology.nodes),
        )
        limits = ServerLimits(message_bytes_max=self.transport_limits.grpc_message_bytes_max)
        self.server = grpc.aio.server(
            options=server_options(limits),
            interceptors=[
                *([RoleInterceptor()] if self.tls is not None else []),
                ClusterIdInterceptor(self.cluster_id),
                DecodeErrorInterceptor(),
            ],
        )
        self._tasks: list[asyncio.Task[None]] = []
        self.peer_servicer: PeerServicer | None = None  # set by _add_services
        self.metrics = self._node_metrics()
        self.metrics_server: MetricsServer | None = None  # set by start() with a metrics_port
        self.restarts: list[int] = []  # one element per restart of a background task

    def _add_services(self) -> None:
        runtime = self.runtime
        peer_servicer = NodePeerServicer(
            runtime=runtime,
            courier=self.courier,
            node_id=self.node_id,
            cluster_id=self.cluster_id,
            limits=self.transport_limits,
            is_known_peer=lambda n: any(s.node_id == n for s in self.topology.nodes),
            on_peer_stream=self.transport.peer_is_back,
            guard=self.guard,
            stream_takeover_ms=self.guard.lease_ms,
        )
        if self.tls is not None:
            peer_servicer.binding = PeerBinding(self.topology)
        peer_pb2_grpc.add_PeerServicer_to_server(peer_servicer, self.server)
        self.peer_servicer = peer_servicer  # stop() waits for its streams (transport.py)
        admin = AdminServicer(
            runtime,
            follower=self.follower,
            topology_toml=self.topology_toml,
            topology_source=self.topology_source,
        )
        admin_pb2_grpc.add_AdminServicer_to_server(admin, self.server)
        add_ledger_services(self.server, runtime)
        health_pb2_grpc.add_HealthServicer_to_server(self.health, self.server)
        reflection.enable_server_reflection(
            (*CLIENT_SERVICE_NAMES, health.SERVICE_NAME, reflection.SERVICE_NAME), self.server
        )

    def _node_metrics(self) -> NodeMetrics:
        """The registry /metrics serves, and the runtime's timing hooks feeding it."""
        metrics = NodeMetrics(
            NodeSources(
                groups=self.runtime.groups,
                senders=self.transport.senders,
                received_bytes=self._received_bytes,
                region_states=self.follower.region_states,
            )
        )
        self.runtime.observe_cycle_s = metrics.cycle_seconds.observe
        self.runtime.observe_fsync_s = metrics.fsync_seconds.observe
        return metrics

    def _received_bytes(self) -> dict[int, int]:
        servicer = self.peer_servicer
        return {} if servicer is None else dict(servicer.received_bytes)

    async def start(self) -> None:
        if self.spec.metrics_port is not None:  # OSError if taken: say so at start, not later
            self.metrics_server = start_metrics_server(
                self.metrics.registry, self.spec.host, self.spec.metrics_port
            )
        self._add_services()
        if self.tls is not None:
            port = self.server.add_secure_port(self.spec.address, self.tls.server_credentials())
        else:
            port = self.server.add_insecure_port(self.spec.address)
        if port == 0:
            raise OSError(f"cannot listen on {self.spec.address}")
        await self.server.start()
        for name in ("", *SERVICE_NAMES):
            await self.health.set(name, health_pb2.HealthCheckResponse.SERVING)
        # Before the runtime campaigns at home: a node of a draining region must not take
        # its leaderships back on a restart (one bounded read; the loop below follows on).
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.follower.poll_once(), FIRST_STATE_READ_S)
        self._spawn(self.runtime.run())  # critical: nothing works without the loop
        for peer_id, sender in self.transport.senders.items():
            self._spawn_restarting(f"node {self.node_id}: stream to node {peer_id}", sender.run)
        self._spawn_restarting(f"node {self.node_id}: courier", self.courier.run)
        self._spawn_restarting(f"node {self.node_id}: cluster state", self.follower.run)
        security = f"mutual TLS as {self.tls.identity.uri}" if self.tls else "WITHOUT TLS"
        log.info("node %d serving on %s, %s", self.node_id, self.spec.address, security)
        if self.metrics_server is not None:
            log.info("node %d metrics on %s", self.node_id, self.metrics_server.url)

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

    def _spawn_restarting(self, name: str, work: Callable[[], Awaitable[None]]) -> None:
        """Per-peer and per-shard work: a failure is logged and restarted, never fatal."""
        self._tasks.append(asyncio.create_task(restarting(name, work, restarts=self.restarts)))

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
        if self.peer_servicer is not None:  # no CancelledError tracebacks at exit
            await self.peer_servicer.wait_calls_closed()
        self.env.close()
        if self.metrics_server is not None:  # its thread only reads; close off the loop
            await asyncio.to_thread(self.metrics_server.close)
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


def add_ledger_services(server: grpc.aio.Server, runtime: NodeRuntime) -> None:
    front = LedgerFront(runtime)
    wallet = WalletServicer(front)
    envelopes = EnvelopesServicer(front)
    ledger_pb2_grpc.add_WalletServicer_to_server(wallet, server)
    ledger_pb2_grpc.add_EnvelopesServicer_to_server(envelopes, server)
    ledger_pb2_grpc.add_BatchServicer_to_server(BatchServicer(wallet, envelopes), server)
