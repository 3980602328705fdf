"""The routers of a topology (``[[routers]]``) and their settings (``[router]``).

Rules of this module: parsing and checking only, like the rest of :mod:`hongbao.config`.
A router is stateless; what the file fixes is where each one listens, which region it
serves, and the thresholds every router applies the same way: how long a forwarded call
may take, how long concurrent single requests wait to be coalesced into one batch, when
a node that stopped answering counts as ``suspect`` and then ``down``, and how often the
cluster state is polled (the bound on how stale a router's view of a drain may be).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields
from typing import final

from hongbao.config._readers import (
    _int,
    _optional_port,
    _optional_table,
    _Problem,
    _reject_unknown_keys,
    _str,
    _tables,
)

PORT_MAX = 65_535


@final
@dataclass(frozen=True, slots=True)
class RouterSpec:
    router_id: int
    region: str
    host: str
    port: int
    # Prometheus /metrics of this router, on its host (optional: none without it).
    metrics_port: int | None = None

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def metrics_address(self) -> str | None:
        return None if self.metrics_port is None else f"{self.host}:{self.metrics_port}"


@final
@dataclass(frozen=True, slots=True)
class RouterSettings:
    """``[router]``: every field is a bound (ms or a count) and named with its unit."""

    forward_timeout_ms: int = 2_000  # a node silent this long in a forwarded call is given up on
    request_timeout_ms: int = 10_000  # a client's request inside the router, retries included
    coalesce_wait_ms: int = 1  # concurrent single requests of one shard wait this long at most
    coalesce_batch_max: int = 200  # ...and are forwarded in batches of at most this many
    suspect_after_ms: int = 1_000  # no answer from a node for this long: suspect
    down_after_ms: int = 3_000  # ...and this long: down (tried last, probed in the background)
    state_poll_ms: int = 100  # the cluster state is re-read this often (staleness bound)
    inflight_requests_max: int = 10_000  # client requests in the router at once


ROUTER_SETTING_RANGES: Mapping[str, tuple[int, int]] = {
    "forward_timeout_ms": (10, 600_000),
    "request_timeout_ms": (10, 3_600_000),
    "coalesce_wait_ms": (0, 1_000),
    "coalesce_batch_max": (1, 10_000),
    "suspect_after_ms": (1, 3_600_000),
    "down_after_ms": (1, 3_600_000),
    "state_poll_ms": (10, 60_000),
    "inflight_requests_max": (1, 1_000_000),
}
assert set(ROUTER_SETTING_RANGES) == {f.name for f in fields(RouterSettings)}


def parse_router_settings(data: Mapping[str, object]) -> RouterSettings:
    table = _optional_table(data, "router")
    _reject_unknown_keys(table, frozenset(ROUTER_SETTING_RANGES), "router")
    values = {
        key: _int(table, key, "router", minimum=low, maximum=high)
        for key, (low, high) in ROUTER_SETTING_RANGES.items()
        if key in table
    }
    settings = RouterSettings(**values)
    if settings.down_after_ms < settings.suspect_after_ms:
        raise _Problem(
            "router.down_after_ms",
            f"{settings.down_after_ms} is below suspect_after_ms ({settings.suspect_after_ms})",
        )
    if settings.request_timeout_ms < settings.forward_timeout_ms:
        raise _Problem(
            "router.request_timeout_ms",
            f"{settings.request_timeout_ms} is below forward_timeout_ms "
            f"({settings.forward_timeout_ms})",
        )
    return settings


def parse_routers(
    data: Mapping[str, object], region_names: Sequence[str], taken: Mapping[str, str]
) -> tuple[RouterSpec, ...]:
    """``[[routers]]`` (optional). ``taken``: address -> what already listens there."""
    routers: list[RouterSpec] = []
    used = dict(taken)
    for position, table in enumerate(_tables(data, "routers", required=False)):
        where = f"routers[{position}]"
        _reject_unknown_keys(
            table, frozenset({"id", "region", "host", "port", "metrics_port"}), where
        )
        router = RouterSpec(
            router_id=_int(table, "id", where, minimum=1),
            region=_str(table, "region", where),
            host=_str(table, "host", where),
            port=_int(table, "port", where, minimum=1, maximum=PORT_MAX),
            metrics_port=_optional_port(table, "metrics_port", where, PORT_MAX),
        )
        if router.region not in region_names:
            raise _Problem(
                f"{where}.region",
                f"unknown region {router.region!r} (regions: {', '.join(region_names)})",
            )
        if any(r.router_id == router.router_id for r in routers):
            raise _Problem(f"{where}.id", f"duplicate router id {router.router_id}")
        if router.address in used:
            raise _Problem(
                f"{where}.port", f"duplicate address {router.address} (also {used[router.address]})"
            )
        used[router.address] = f"router {router.router_id}"
        if router.metrics_address is not None:
            if router.metrics_address in used:
                raise _Problem(
                    f"{where}.metrics_port",
                    f"duplicate address {router.metrics_address} "
                    f"(also {used[router.metrics_address]})",
                )
            used[router.metrics_address] = f"router {router.router_id}'s metrics"
        routers.append(router)
    if routers:
        missing = [name for name in region_names if not any(r.region == name for r in routers)]
        if missing:
            raise _Problem("routers", f"region(s) {', '.join(missing)} have no router")
    return tuple(routers)
