"""What ``hongbao demo --geo`` measures: round trips through the proxies, and commit latency.

Why these two: a cross-city cluster's write latency is set by the round trip from a
shard's leader to the nearest majority of its replicas, so the demo shows both figures
side by side. The round trip is measured, not assumed: a gRPC health check from the demo
process through a link's proxy (``Link.listen``) crosses the link's upstream toxic one
way and its downstream toxic back, exactly as a request of the dialer would. Commit
latency is single deposits, one at a time, by a client in the region, through that
region's router, on a user whose shard is led in the region: the router's link to its own
city's node is not delayed, so what the deposit waits for beyond local work is its
leader's quorum round trip.
"""

from __future__ import annotations

import math
import statistics
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Final, final

from grpc_health.v1 import health_pb2

from hongbao.chaos.net import Link
from hongbao.client.sdk import HongbaoClient
from hongbao.config.topology import Topology
from hongbao.demo.geo import GeoLatency
from hongbao.ops.admin_pool import AdminPool

RTT_SAMPLES: Final = 9
RTT_SAMPLES_MAX: Final = 1_000
COMMIT_SAMPLES: Final = 40
BASELINE_SAMPLES: Final = 20  # the same deposits before the latency goes on
COMMIT_SAMPLES_MAX: Final = 10_000
PROBE_TIMEOUT_S: Final = 5.0
HEALTH_CHECK_PATH: Final = "/grpc.health.v1.Health/Check"
COMMIT_AMOUNT_FEN: Final = 100  # 1 yuan a deposit


@final
@dataclass(frozen=True, slots=True)
class RttCell:
    """One ordered region pair: the link measured, its median round trip, the configured one."""

    source_region: str
    target_region: str
    link_name: str
    measured_ms: float
    configured_ms: int  # one way there + one way back, from the latency file


@final
@dataclass(frozen=True, slots=True)
class RttMatrix:
    regions: tuple[str, ...]
    cells: tuple[RttCell, ...]
    samples: int

    def cell(self, source_region: str, target_region: str) -> RttCell:
        for cell in self.cells:
            if (cell.source_region, cell.target_region) == (source_region, target_region):
                return cell
        raise KeyError(f"no measurement from {source_region} to {target_region}")

    def measured_ms(self, source_region: str, target_region: str) -> float:
        return self.cell(source_region, target_region).measured_ms

    def lines(self, latency: GeoLatency) -> list[str]:
        """The matrix as text: measured round trip (configured there + back) per cell."""
        width = max(12, *(len(r) + 2 for r in self.regions))
        header = "from \\ to".ljust(width) + "".join(r.ljust(20) for r in self.regions)
        rows = [header.rstrip()]
        for source in self.regions:
            row = source.ljust(width)
            for target in self.regions:
                cell = self.cell(source, target)
                if source == target:
                    there = back = 0
                else:
                    there = latency.one_way_ms[(source, target)]
                    back = latency.one_way_ms[(target, source)]
                row += f"{cell.measured_ms:5.1f} ({there}+{back})".ljust(20)
            rows.append(row.rstrip())
        return rows


@final
@dataclass(frozen=True, slots=True)
class CommitLatency:
    """Single deposits of one region's client through its router, on shards it leads."""

    region: str
    samples_ms: tuple[float, ...]
    baseline_ms: tuple[float, ...]  # the same, before the latency went on
    quorum_rtt_configured_ms: float
    quorum_rtt_measured_ms: float

    @property
    def p50_ms(self) -> float:
        return percentile(self.samples_ms, 50)

    @property
    def p99_ms(self) -> float:
        return percentile(self.samples_ms, 99)

    @property
    def baseline_p50_ms(self) -> float:
        return percentile(self.baseline_ms, 50)


def percentile(samples: Sequence[float], rank: float) -> float:
    """Nearest-rank percentile (a value that was measured, never an interpolation)."""
    if not samples:
        raise ValueError("no samples")
    ordered = sorted(samples)
    index = max(0, math.ceil(rank / 100 * len(ordered)) - 1)
    return ordered[min(index, len(ordered) - 1)]


def probe_links(links: Iterable[Link], regions: Sequence[str]) -> dict[tuple[str, str], Link]:
    """One link per ordered region pair: a node's link when there is one (the path Raft
    takes), else a router's (within a city of one node, the only link there is)."""
    chosen: dict[tuple[str, str], Link] = {}
    for link in sorted(links, key=lambda k: (k.source_node is None, k.name)):
        pair = (link.source_region, link.target_region)
        if pair[0] in regions and pair[1] in regions:
            chosen.setdefault(pair, link)
    return chosen


async def round_trips_ms(pool: AdminPool, address: str, samples: int) -> list[float]:
    """``samples`` health checks through ``address``, one at a time, after one to warm the
    connection up (its TCP and HTTP/2 set-up cross the proxy too); milliseconds each."""
    if not 0 < samples <= RTT_SAMPLES_MAX:
        raise ValueError(f"samples must be in 1..{RTT_SAMPLES_MAX}")
    check = pool.channel(address).unary_unary(
        HEALTH_CHECK_PATH,
        request_serializer=health_pb2.HealthCheckRequest.SerializeToString,
        response_deserializer=health_pb2.HealthCheckResponse.FromString,
    )
    request = health_pb2.HealthCheckRequest(service="")
    await check(request, timeout=PROBE_TIMEOUT_S)
    measured: list[float] = []
    for _ in range(samples):
        started = time.perf_counter()
        await check(request, timeout=PROBE_TIMEOUT_S)
        measured.append((time.perf_counter() - started) * 1000)
    return measured


async def measure_matrix(
    pool: AdminPool, links: Iterable[Link], latency: GeoLatency, regions: Sequence[str],
    *, samples: int = RTT_SAMPLES,
) -> RttMatrix:  # fmt: skip
    """The median round trip of every ordered region pair, through one of its links."""
    chosen = probe_links(links, regions)
    cells: list[RttCell] = []
    for source in regions:
        for target in regions:
            link = chosen.get((source, target))
            if link is None:
                raise RuntimeError(f"no link from {source} to {target} to measure")
            measured = await round_trips_ms(pool, link.listen, samples)
            cells.append(RttCell(source, target, link.name, statistics.median(measured),
                                 latency.round_trip_ms(source, target)))  # fmt: skip
    return RttMatrix(tuple(regions), tuple(cells), samples)


def nearest_quorum_ms(
    topology: Topology, region: str, round_trip_ms: Callable[[str, str], float]
) -> tuple[float, str]:
    """The round trip a leader in ``region`` waits for before a write commits, and the
    region it waits for: the k-th nearest other replica, k = the acknowledgements a
    majority needs besides the leader's own (with 3 replicas in 3 cities: the nearest
    other city). The slowest of the region's home shards; (0, "") when it leads none or
    its shards have one replica."""
    worst: tuple[float, str] = (0.0, "")
    for placement in topology.placements:
        if placement.home_region != region:
            continue
        leader = topology.home_leader_of(placement.shard_id)
        others = sorted(
            (round_trip_ms(region, topology.node(n).region), topology.node(n).region)
            for n in placement.replicas if n != leader
        )  # fmt: skip
        needed = len(placement.replicas) // 2  # acknowledgements besides the leader's own
        if needed and others[needed - 1][0] > worst[0]:
            worst = others[needed - 1]
    return worst


async def commit_latencies_ms(client: HongbaoClient, user: str, samples: int) -> list[float]:
    """``samples`` single deposits of COMMIT_AMOUNT_FEN to ``user``, one at a time, after
    one to warm the path up; milliseconds from the call to its acknowledgement."""
    if not 0 < samples <= COMMIT_SAMPLES_MAX:
        raise ValueError(f"samples must be in 1..{COMMIT_SAMPLES_MAX}")
    await client.deposit(user, COMMIT_AMOUNT_FEN)
    measured: list[float] = []
    for _ in range(samples):
        started = time.perf_counter()
        await client.deposit(user, COMMIT_AMOUNT_FEN)
        measured.append((time.perf_counter() - started) * 1000)
    return measured
