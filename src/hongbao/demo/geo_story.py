"""``hongbao demo --geo``: the demo's story with the three cities tens of milliseconds apart.

Rules of this module: every node-to-node and router-to-node link goes through its own
proxy (:class:`~hongbao.chaos.net.ChaosNet` on a Toxiproxy server: a real
``toxiproxy-server`` on PATH, else the project's own), and every process dials through
its proxies (``--dial-map``). The cluster starts and is bootstrapped with no delay, and
only then does the latency matrix go on: starting under latency is slow and tells
nothing (CockroachDB PR #92231). It then measures and prints what it set: the round trip
of every ordered pair of cities through the proxies, and the commit latency of each
city's writes beside the round trip to its nearest quorum. The rest of the story is told
as before, now across cities. The proxies and the server are removed on every exit.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from hongbao.chaos.net import ChaosNet, ChaosNetError
from hongbao.chaos.toxiproxy import open_toxiproxy, resolve_toxiproxy
from hongbao.client.sdk import ClientOptions, HongbaoClient
from hongbao.config.topology import Topology
from hongbao.demo.geo import GeoLatency
from hongbao.demo.geo_measure import (
    BASELINE_SAMPLES,
    COMMIT_AMOUNT_FEN,
    COMMIT_SAMPLES,
    CommitLatency,
    RttMatrix,
    commit_latencies_ms,
    measure_matrix,
    nearest_quorum_ms,
)
from hongbao.demo.story import LEADERS_TIMEOUT_S, DemoResult, Say, Story
from hongbao.ops.admin_pool import AdminPool
from hongbao.ops.balance import move_leaders_home
from hongbao.ops.local import LocalCluster, topology_ports

SERVER_NAMES = {"binary": "toxiproxy-server", "embedded": "hongbao's Toxiproxy-compatible server",
                "url": "the Toxiproxy server given"}  # fmt: skip


@dataclass(slots=True)
class GeoNet:
    """The proxies of one geo demo and what the processes need to dial through them."""

    net: ChaosNet
    latency: GeoLatency
    server: str  # which Toxiproxy serves the proxies, for the reader
    args_of_node: dict[int, list[str]] = field(default_factory=dict)
    args_of_router: dict[int, list[str]] = field(default_factory=dict)

    def apply_to(self, cluster: LocalCluster) -> None:
        """Make the cluster's processes dial through the proxies (before they start)."""
        for node_id, args in self.args_of_node.items():
            cluster.args_of_node.setdefault(node_id, []).extend(args)
        for router_id, args in self.args_of_router.items():
            cluster.args_of_router.setdefault(router_id, []).extend(args)


@contextlib.contextmanager
def geo_network(
    topology: Topology, latency: GeoLatency, directory: Path, *, toxiproxy: str = "auto"
) -> Iterator[GeoNet]:
    """A Toxiproxy server with a proxy on every link of ``topology`` (no latency yet) and
    the dial maps in ``directory``; the proxies deleted and the server stopped on exit."""
    choice = resolve_toxiproxy(toxiproxy)
    with open_toxiproxy(choice, avoid=topology_ports(topology)) as endpoint:
        net = ChaosNet(topology, endpoint.host, endpoint.port)
        try:
            net.create()
            nodes, routers = net.write_dial_maps(directory)
            yield GeoNet(
                net, latency, SERVER_NAMES.get(endpoint.kind, endpoint.kind),
                args_of_node={n: ["--dial-map", str(p)] for n, p in nodes.items()},
                args_of_router={r: ["--dial-map", str(p)] for r, p in routers.items()},
            )  # fmt: skip
        finally:
            # The server may be gone already (a Ctrl-C reaches a toxiproxy-server child
            # too); stopping it below removes its proxies anyway.
            with contextlib.suppress(ChaosNetError):
                net.destroy()


@dataclass(slots=True)
class GeoDemoResult(DemoResult):
    matrix: RttMatrix | None = None
    commits: list[CommitLatency] = field(default_factory=list)


class GeoStory(Story):
    """The demo's story, with the latency matrix switched on once bootstrap is done."""

    def __init__(
        self,
        cluster: LocalCluster,
        client: HongbaoClient,
        pool: AdminPool,
        say: Say,
        seed: int,
        *,
        geo: GeoNet,
        options: ClientOptions,
        commit_samples: int = COMMIT_SAMPLES,
    ) -> None:
        super().__init__(cluster, client, pool, say, seed)
        self.geo = geo
        self.options = options  # the demo client's, for one client per city
        self.commit_samples = commit_samples
        self.geo_result = GeoDemoResult()
        self.result = self.geo_result

    async def after_bootstrap(self) -> None:
        await self.cities_apart()

    async def cities_apart(self) -> None:
        """Each city's commit latency with no delay, latency on, then the measured matrix
        and each city's commit latency again, beside its nearest quorum's round trip."""
        latency = self.geo.latency
        regions = [r.name for r in self.topology.regions]
        baseline = {region: await self._deposits_ms(region, BASELINE_SAMPLES) for region in regions}
        await asyncio.to_thread(self.geo.net.set_latency, latency.as_float_ms(),
                                float(latency.jitter_ms))  # fmt: skip
        pairs = ", ".join(f"{a}->{b} {ms}" for (a, b), ms in latency.one_way_ms.items())
        self.say(
            f"bootstrap done with no delay (leaders elected, users funded); now the cities "
            f"move apart: one-way latency on all {len(self.geo.net.links)} links, each through "
            f"its own proxy ({self.geo.server}), from {latency.source}: {pairs} ms, jitter "
            f"+/-{latency.jitter_ms} ms"
        )
        matrix = await measure_matrix(self.pool, self.geo.net.links, latency, regions)
        self.geo_result.matrix = matrix
        self.say(f"round trips measured through the proxies, ms (median of {matrix.samples} "
                 "gRPC health checks; configured one way there + back):")  # fmt: skip
        for line in matrix.lines(latency):
            self.say("    " + line)
        for region in regions:
            commits = await self._commit_latency(region, matrix, baseline[region])
            self.geo_result.commits.append(commits)
        self.say(
            "what it means: a write commits when its leader has heard back from a majority, "
            "so with a replica in each city every write pays the round trip to the nearest "
            "other city on top of its local work, and no less: the price of losing no money "
            "when a city goes dark"
        )

    async def _deposits_ms(self, region: str, samples: int) -> list[float]:
        """Single deposits by a client of ``region`` through its router, on a user whose
        shard ``region`` leads (checked: the figure would mean nothing otherwise; a leader
        that moved away, after an election on a busy machine, is moved home first)."""
        user = self.user_led_from(self.node_in(region), f"geo-{region}-")
        shard = self.client.user_shard(user)
        if (await self.leaders()).get(shard) != self.node_in(region):
            await move_leaders_home(self.pool, LEADERS_TIMEOUT_S)
        leader = (await self.leaders()).get(shard)
        if leader is None or self.city_of(leader) != region:
            raise RuntimeError(f"{user}'s shard is not led from {region} (leader {leader})")
        async with HongbaoClient.via_routers(self.topology, self.options, region=region) as own:
            measured = await commit_latencies_ms(own, user, samples)
        self.ledger.users.add(user)
        self.ledger.deposits_fen += (len(measured) + 1) * COMMIT_AMOUNT_FEN
        return measured

    async def _commit_latency(
        self, region: str, matrix: RttMatrix, baseline_ms: list[float]
    ) -> CommitLatency:
        samples = await self._deposits_ms(region, self.commit_samples)
        configured_ms, nearest = nearest_quorum_ms(self.topology, region,
                                                   self.geo.latency.round_trip_ms)  # fmt: skip
        measured_ms, _ = nearest_quorum_ms(self.topology, region, matrix.measured_ms)
        result = CommitLatency(region, tuple(samples), tuple(baseline_ms), configured_ms,
                               measured_ms)  # fmt: skip
        self.say(
            f"{region}: single deposits through the {region} router on a shard led in "
            f"{region}: commit p50 {result.p50_ms:.1f} ms, p99 {result.p99_ms:.1f} ms "
            f"({len(samples)} writes; p50 {result.baseline_p50_ms:.1f} ms before the latency "
            f"went on); round trip to the nearest quorum ({nearest}) {configured_ms:.0f} ms "
            f"configured, {measured_ms:.1f} ms measured"
        )
        return result
