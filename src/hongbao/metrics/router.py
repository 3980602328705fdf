"""A router's Prometheus metrics: requests by method and status, latency, redirects,
retries, and the region states the router follows.

Rules of this module: it holds the figures and knows nothing of gRPC servers or
forwarding; :mod:`hongbao.router.server` and :mod:`hongbao.router.forward` feed it. The
names and labels are the contract the console and the Grafana dashboard read
(``cluster/grafana/hongbao-dashboard.json``): change them only together.

Why every label has a bound: a label value that comes from a client would let a client
grow the registry without end. ``service`` and ``method`` come from the router's fixed
method table (a path outside it is counted as ``other``), ``code`` is a gRPC status
name (17 of them), ``region`` and ``state`` come from the topology and
:class:`~hongbao.meta.state.RegionState`. So a router holds at most
``methods x codes`` request series, whatever its clients send.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Final, final

import grpc
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from hongbao.meta.state import ClusterState, RegionState

REQUEST_SECONDS_BUCKETS: Final = (
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
)  # fmt: skip
"""From a coalesced local write (under a millisecond) to ``request_timeout_ms`` (10 s)."""
OTHER: Final = "other"
METHOD_PATHS_MAX: Final = 64  # methods a router serves; more would be a table bug


def split_path(path: str) -> tuple[str, str]:
    """``("hongbao.v1.Wallet", "Deposit")`` for ``/hongbao.v1.Wallet/Deposit``."""
    service, _, method = path.strip("/").partition("/")
    return (service, method) if service and method else (OTHER, OTHER)


@final
class RouterMetrics:
    """The metrics of one router process, in a registry of its own (never the global
    one: two routers in one test process must not add to each other's figures)."""

    def __init__(self, *, method_paths: Iterable[str], region_names: Iterable[str]) -> None:
        self.registry = CollectorRegistry()
        self._methods: dict[str, tuple[str, str]] = {p: split_path(p) for p in method_paths}
        assert len(self._methods) <= METHOD_PATHS_MAX, "the router's method table grew"
        self._regions = tuple(region_names)
        self.requests = Counter(
            "hongbao_router_requests",
            "Client requests the router answered, by gRPC method and status code.",
            ("service", "method", "code"),
            registry=self.registry,
        )
        self.request_seconds = Histogram(
            "hongbao_router_request_seconds",
            "Time from a client request's arrival to the router's answer, retries included.",
            ("service", "method"),
            buckets=REQUEST_SECONDS_BUCKETS,
            registry=self.registry,
        )
        self.redirects = Counter(
            "hongbao_router_redirects",
            "NOT_LEADER answers naming another replica as leader, which the router followed.",
            registry=self.registry,
        )
        self.retries = Counter(
            "hongbao_router_retries",
            "Forwarded calls sent again after a failed attempt (redirects included).",
            registry=self.registry,
        )
        self.region_state = region_state_gauge(self.registry)
        for service, method in self._methods.values():  # series exist from the start:
            self.requests.labels(service, method, grpc.StatusCode.OK.name)  # rate() sees 0
            self.request_seconds.labels(service, method)
        show_region_states(self.region_state, self._regions, ClusterState.initial("", ()))

    def observe(self, path: str, code: grpc.StatusCode, seconds: float) -> None:
        """One answered request of ``path`` (a method path of the table) and its status."""
        service, method = self._methods.get(path, (OTHER, OTHER))
        self.requests.labels(service, method, code.name).inc()
        self.request_seconds.labels(service, method).observe(max(0.0, seconds))

    def follow(self, state: ClusterState) -> None:
        """The cluster state the router now follows (the region state gauge)."""
        show_region_states(self.region_state, self._regions, state)


def region_state_gauge(registry: CollectorRegistry) -> Gauge:
    """``hongbao_region_state{region,state}``: node and router alike."""
    return Gauge(
        "hongbao_region_state",
        "1 for each region's current operator state (active, draining, drained), as this "
        "process follows the cluster state; 0 for the other states.",
        ("region", "state"),
        registry=registry,
    )


def show_region_states(gauge: Gauge, regions: Iterable[str], state: ClusterState) -> None:
    """Set every (region, state) series: 1 for the region's state, 0 for the others, so a
    query for ``state="draining"`` finds a 0 rather than nothing before a drain."""
    for region in regions:
        current = state.state_of(region)
        for candidate in RegionState:
            gauge.labels(region, candidate.value).set(1 if candidate is current else 0)
