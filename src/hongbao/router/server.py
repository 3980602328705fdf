"""The router process: one gRPC server that serves the ledger services by forwarding them.

Rules of this module: it wires the parts together and owns the process lifetime; routing
is :mod:`hongbao.client.routing`, forwarding :mod:`hongbao.router.forward`. The router is
stateless: it may be killed at any moment, and a client's retry through another router
(the same request id) is safe. It serves hongbao.v1 Wallet, Envelopes and Batch (generic
handlers on raw bytes: nothing is decoded that need not be), Admin.ClusterState (from its
last poll) and Admin.Topology (Admin's other methods answer UNIMPLEMENTED), gRPC health,
and reflection of the ledger services. Every request is bounded: at most
``inflight_requests_max`` at once (beyond: OVERLOADED), each within
``request_timeout_ms`` or the client's own deadline. Every answered ledger request is
counted by method and status code, with its latency (:mod:`hongbao.metrics.router`),
served on the router's ``metrics_port`` when the topology names one.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, Final

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from hongbao.client.routing import CallFailed, Deadline, Routing
from hongbao.config.routers import RouterSpec
from hongbao.config.topology import Topology
from hongbao.meta.state import ClusterState, to_proto
from hongbao.metrics import MetricsServer, start_metrics_server
from hongbao.metrics.router import RouterMetrics
from hongbao.node import bugs
from hongbao.node.errors import ErrorReason, HongbaoError, abort_async, make_error
from hongbao.node.server import CLIENT_SERVICE_NAMES, cluster_id_of
from hongbao.node.server_options import ServerLimits, server_options
from hongbao.proto.gen.hongbao.v1 import admin_pb2, admin_pb2_grpc
from hongbao.router.forward import Forwarder, answerable
from hongbao.router.links import CLUSTER_ID_KEY, NodeLinks
from hongbao.router.methods import BATCH_EXECUTE, SINGLE_METHODS, Method, services
from hongbao.router.probe import Prober
from hongbao.router.state import StateFollower
from hongbao.security.identity import Identity, Role
from hongbao.security.interceptor import RoleInterceptor
from hongbao.security.tls import TlsFiles, certs_dir_of, load_files

log = logging.getLogger(__name__)

SHUTDOWN_GRACE_S: Final = 2.0
RESTART_PAUSE_S: Final = 0.5
ANSWER_MARGIN_MS_MAX: Final = 250
"""The router answers at most this long before the client's deadline..."""
ANSWER_MARGIN_FRACTION: Final = 0.1
"""...and at most this share of the client's time earlier (short deadlines stay usable)."""
STATUS_DETAILS_KEY: Final = "grpc-status-details-bin"
Context = grpc.aio.ServicerContext[bytes, bytes]
Work = Callable[[bytes, Deadline], Awaitable[bytes]]


def answer_before_ms(client_remaining_ms: float) -> float:
    """The router's own deadline inside a client's: early enough that its answer (a node's
    result, or per-operation errors for a Batch's unfinished parts) reaches the client
    before the client gives up. Answering at the client's deadline instead meant the
    client saw DEADLINE_EXCEEDED, took the router for dead and sent the whole Batch again
    through another region's router."""
    margin_ms = min(ANSWER_MARGIN_MS_MAX, client_remaining_ms * ANSWER_MARGIN_FRACTION)
    return max(0.0, client_remaining_ms - margin_ms)


def router_files(topology: Topology, router_id: int) -> TlsFiles:
    return load_files(certs_dir_of(topology), Identity(Role.ROUTER, str(router_id)))


class RouterAdmin(admin_pb2_grpc.AdminServicer):
    """Admin.ClusterState (as last polled) and Admin.Topology; the rest is UNIMPLEMENTED."""

    def __init__(self, router: RouterServer) -> None:
        self.router = router

    async def ClusterState(
        self,
        request: admin_pb2.ClusterStateRequest,
        context: grpc.aio.ServicerContext[
            admin_pb2.ClusterStateRequest, admin_pb2.ClusterStateResponse
        ],
    ) -> admin_pb2.ClusterStateResponse:
        follower = self.router.follower
        return to_proto(
            follower.state,
            meta_leader_node_id=follower.meta_leader_node_id,
            answered_by=0,
            age_ms=max(0, follower.age_ms()),
        )

    async def Topology(
        self,
        request: admin_pb2.TopologyRequest,
        context: grpc.aio.ServicerContext[admin_pb2.TopologyRequest, admin_pb2.TopologyResponse],
    ) -> admin_pb2.TopologyResponse:
        source = self.router.config_path
        text = source.read_text() if source is not None else ""
        return admin_pb2.TopologyResponse(
            toml=text, cluster_id=self.router.cluster_id, source=str(source or "")
        )


class RouterServer:
    def __init__(
        self,
        *,
        topology: Topology,
        spec: RouterSpec,
        config_path: Path | None = None,
        router_bugs: bugs.RouterBugs | None = None,
    ) -> None:
        self.topology = topology
        self.spec = spec
        self.config_path = config_path
        self.settings = topology.router
        self.cluster_id = cluster_id_of(topology)
        self.tls: TlsFiles | None = router_files(topology, spec.router_id) if topology.tls else None
        dial = self.tls.channel_credentials() if self.tls is not None else None
        self.routing = Routing(topology, self.settings, region=spec.region)
        self.links = NodeLinks(topology, self.cluster_id, dial)
        self.metrics = RouterMetrics(
            method_paths=[*SINGLE_METHODS, BATCH_EXECUTE],
            region_names=[r.name for r in topology.regions],
        )
        self.metrics_server: MetricsServer | None = None
        self.forwarder = Forwarder(
            self.routing,
            self.links,
            self.settings,
            topology.limits,
            router_bugs,
            metrics=self.metrics,
        )
        if router_bugs is not None:  # BUG SWITCH: say so loudly
            bugs.announce(log, f"router {spec.router_id}", router_bugs.names)
        self.follower = StateFollower(
            self.routing,
            self.links,
            cluster_id=self.cluster_id,
            poll_ms=self.settings.state_poll_ms,
            on_change=self._followed,
        )
        self.prober = Prober(self.routing, self.links)
        self.health = health.aio.HealthServicer()
        self.server = grpc.aio.server(
            options=server_options(ServerLimits()),
            interceptors=[RoleInterceptor()] if self.tls is not None else [],
        )
        self.inflight = 0
        self.refused_overloaded = 0
        self.port = 0
        self._tasks: list[asyncio.Task[None]] = []

    # -- the ledger services -------------------------------------------------------------

    def _add_services(self) -> None:
        handlers = []
        for service, names in services().items():
            methods: dict[str, grpc.RpcMethodHandler[Any, Any]] = {}
            for name in names:
                path = f"/{service}/{name}"
                method = SINGLE_METHODS.get(path)
                work = self.forwarder.batch if method is None else self._single(method)
                methods[name] = grpc.unary_unary_rpc_method_handler(
                    self._handler(path, work),
                    request_deserializer=None,
                    response_serializer=None,
                )
            handlers.append(grpc.method_handlers_generic_handler(service, methods))
        self.server.add_generic_rpc_handlers(tuple(handlers))
        admin_pb2_grpc.add_AdminServicer_to_server(RouterAdmin(self), self.server)
        health_pb2_grpc.add_HealthServicer_to_server(self.health, self.server)
        reflection.enable_server_reflection(
            (*CLIENT_SERVICE_NAMES, health.SERVICE_NAME, reflection.SERVICE_NAME), self.server
        )

    def _single(self, method: Method) -> Work:
        async def work(raw: bytes, deadline: Deadline) -> bytes:
            return await self.forwarder.single(method, raw, deadline)

        return work

    def _handler(self, path: str, work: Work) -> Callable[[bytes, Context], Awaitable[bytes]]:
        """The gRPC handler of ``path``: the answer, or the status it fails with, counted
        with its latency (every exit: an answer, an error, a cancelled call)."""

        async def handle(raw: bytes, context: Context) -> bytes:
            started_s = time.perf_counter()
            code: grpc.StatusCode | None = grpc.StatusCode.UNKNOWN  # an unexpected exception

            def observe(final: grpc.StatusCode) -> None:
                nonlocal code
                code = None  # counted once
                self.metrics.observe(path, final, time.perf_counter() - started_s)

            try:
                answer = await self._serve(work, raw, context)
                code = grpc.StatusCode.OK  # counted in finally, before the answer is sent
                return answer
            except CallFailed as failed:
                # Counted before the abort: grpc.aio's abort sends the status at once, and a
                # client that scrapes right after its error must find it counted.
                observe(_code_of(failed))
                await self._fail(context, failed)
            except HongbaoError as error:
                observe(error.code)
                await abort_async(context, error)
            except asyncio.CancelledError:
                code = grpc.StatusCode.CANCELLED  # the client went away, or the server stops
                raise
            finally:
                if code is not None:
                    observe(code)
            raise AssertionError("unreachable: abort raises")

        return handle

    async def _serve(self, work: Work, raw: bytes, context: Context) -> bytes:
        """One request within the router's bounds; raises what the client is answered."""
        settings = self.settings
        if self.inflight >= settings.inflight_requests_max:
            self.refused_overloaded += 1
            raise make_error(
                ErrorReason.OVERLOADED,
                f"this router has {self.inflight} requests in flight; at most "
                f"{settings.inflight_requests_max}: back off and retry",
            )
        self.inflight += 1
        try:
            self._check_cluster_id(context)
            deadline_ms = float(settings.request_timeout_ms)
            remaining_s = context.time_remaining()
            if remaining_s is not None:
                deadline_ms = min(deadline_ms, answer_before_ms(remaining_s * 1000.0))
            return await work(raw, Deadline(deadline_ms))
        finally:
            self.inflight -= 1

    def _followed(self, state: ClusterState) -> None:
        self.metrics.follow(state)

    def _check_cluster_id(self, context: Context) -> None:
        for key, value in context.invocation_metadata() or ():
            if key == CLUSTER_ID_KEY and value != self.cluster_id:
                raise make_error(
                    ErrorReason.CLUSTER_MISMATCH,
                    f"this router serves cluster {self.cluster_id!r}, not {value!r}",
                )

    async def _fail(self, context: Context, failed: CallFailed) -> None:
        """A node's status as it came (code, message, rich details), or the router's own."""
        cause = failed.cause
        if isinstance(cause, grpc.aio.AioRpcError) and failed.error.server_reported:
            trailer = tuple(
                (key, value)
                for key, value in (cause.trailing_metadata() or ())
                if key == STATUS_DETAILS_KEY
            )
            await context.abort(cause.code(), cause.details() or "", trailing_metadata=trailer)
        await abort_async(context, answerable(failed, failed.error.shard_id))

    # -- lifetime ------------------------------------------------------------------------

    async def start(self) -> None:
        self._add_services()
        if self.spec.metrics_port is not None:  # first: a router told to serve metrics
            self.metrics_server = start_metrics_server(  # does not start without (OSError)
                self.metrics.registry, self.spec.host, self.spec.metrics_port
            )
        address = f"{self.spec.host}:{self.spec.port}"
        if self.tls is not None:
            self.port = self.server.add_secure_port(address, self.tls.server_credentials())
        else:
            self.port = self.server.add_insecure_port(address)
        if self.port == 0:
            self._close_metrics()
            raise OSError(f"cannot listen on {address}")
        await self.follower.poll_once()  # the first view before the first request
        await self.server.start()
        self._tasks.append(
            asyncio.create_task(self._keep("cluster state follower", self.follower.run))
        )
        self._tasks.append(asyncio.create_task(self._keep("node prober", self.prober.run)))
        for name in ("", *CLIENT_SERVICE_NAMES):
            await self.health.set(name, health_pb2.HealthCheckResponse.SERVING)
        security = f"mutual TLS as {self.tls.identity.uri}" if self.tls else "WITHOUT TLS"
        metrics = self.metrics_server.url if self.metrics_server is not None else "no metrics"
        log.info(
            "router %d (%s) serving on %s:%d, %s, %s",
            self.spec.router_id, self.spec.region, self.spec.host, self.port, security, metrics,
        )  # fmt: skip

    async def _keep(self, name: str, work: Callable[[], Awaitable[None]]) -> None:
        """A background loop that must not die: a failure is logged and it restarts."""
        while True:
            try:
                await work()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("router %d: the %s failed; restarting", self.spec.router_id, name)
                await asyncio.sleep(RESTART_PAUSE_S)

    def stats(self) -> dict[str, int]:
        forwarded = self.forwarder.counters
        coalesced = self.forwarder.coalescer.counters if self.forwarder.coalescer else None
        return {
            "requests": forwarded.requests,
            "batches": forwarded.batches,
            "batch_parts": forwarded.batch_parts,
            "retries": forwarded.retries,
            "fresh_id_retries": forwarded.fresh_id_retries,
            "singles_forwarded": coalesced.singles_forwarded if coalesced else 0,
            "coalesced_batches": coalesced.batches_forwarded if coalesced else 0,
            "operations_coalesced": coalesced.operations_coalesced if coalesced else 0,
            "refused_overloaded": self.refused_overloaded,
            "cluster_state_version": self.follower.state.version,
        }

    async def stop(self) -> None:
        await self.health.enter_graceful_shutdown()
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        await self.server.stop(SHUTDOWN_GRACE_S)
        if self.forwarder.coalescer is not None:
            await self.forwarder.coalescer.close()
        await self.links.close()
        await asyncio.to_thread(self._close_metrics)  # blocks up to its poll (~0.5 s)
        log.info("router %d stopped: %s", self.spec.router_id,
                 " ".join(f"{k}={v}" for k, v in self.stats().items()))  # fmt: skip

    def _close_metrics(self) -> None:
        if self.metrics_server is not None:
            self.metrics_server.close()

    async def serve_until_signal(self, on_ready: Callable[[], None] | None = None) -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await self.start()
        if on_ready is not None:
            on_ready()
        try:
            await stop.wait()
        finally:
            await self.stop()


def _code_of(failed: CallFailed) -> grpc.StatusCode:
    """The status :meth:`RouterServer._fail` answers ``failed`` with."""
    cause = failed.cause
    if isinstance(cause, grpc.aio.AioRpcError) and failed.error.server_reported:
        return cause.code()
    return answerable(failed, failed.error.shard_id).code
