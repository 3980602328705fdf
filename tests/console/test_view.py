"""collect_view on a real cluster: regions, leaders, replicas, throughput, metrics."""

from __future__ import annotations

import asyncio

from hongbao.client.sdk import ClientOptions, HongbaoClient
from hongbao.observe.collect import collect_view
from hongbao.observe.scrape import Scraper
from hongbao.observe.view import ClusterView
from hongbao.ops.admin_pool import AdminPool
from tests.console.conftest import Running

DEPOSITS = 40


async def _two_views_around_deposits(live: Running) -> tuple[ClusterView, ClusterView]:
    topology = live.topology
    async with AdminPool.for_topology(topology) as pool, Scraper() as scraper:
        first = await collect_view(topology, pool, scraper, None)
        options = ClientOptions(timeout_s=5.0)
        async with HongbaoClient.via_routers(topology, options, region="shanghai") as client:
            for i in range(DEPOSITS):
                await client.deposit(f"view-user-{i}", 100, request_id=f"view-dep-{i}")
        second = await collect_view(topology, pool, scraper, first)
    return first, second


def test_the_view_shows_every_region_leader_replica_and_the_traffic(live: Running) -> None:
    first, view = asyncio.run(_two_views_around_deposits(live))
    topology = live.topology
    assert [r.name for r in view.regions] == ["shenzhen", "shanghai", "tianjin"]
    shanghai = view.region("shanghai")
    assert (shanghai.latitude, shanghai.longitude) == (31.23, 121.47)
    assert {r.state for r in view.regions} == {"active"}
    for region in view.regions:
        assert [n.health for n in region.nodes] == ["up"]
        assert len(region.routers) == 1
        assert region.routers[0].up
    # Every shard and the meta group has a leader, at home after the fixture's balance.
    assert len(view.shards) == topology.shard_count + 1
    for shard in view.shards:
        assert shard.leader_node_id is not None, shard
        assert shard.leader_region == shard.home_region
        assert len(shard.replicas) == 3
        roles = sorted(r.role for r in shard.replicas)
        assert roles == ["follower", "follower", "leader"], shard
        assert all(r.applied_index is not None for r in shard.replicas)
    assert sum(r.leaders_count for r in view.regions) == topology.shard_count + 1
    assert not [f for f in view.flags if f.kind != "slow_disk"]
    # Throughput: the first view has no rate (nothing to compare with), the second one
    # saw the deposits through shanghai's router, all OK.
    assert first.interval_s is None
    assert first.region("shanghai").requests_per_s is None
    assert view.interval_s is not None
    for region in view.regions:
        assert region.routers[0].metrics == "ok", region.routers[0]
    assert shanghai.requests_per_s is not None
    sent_per_s = DEPOSITS / view.interval_s
    assert 0.9 * sent_per_s <= shanghai.requests_per_s <= 1.1 * sent_per_s + 1
    assert shanghai.errors_per_s == 0
    assert view.region("tianjin").requests_per_s == 0
    data = view.to_json()
    assert data["regions"][1]["name"] == "shanghai"  # type: ignore[index]
    assert "counters" not in data
