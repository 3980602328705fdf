"""Failover through routers: a killed router (the SDK moves to another region's), and a
killed shard leader (the router finds the new leaders; nothing is applied twice)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from hongbao.client.sdk import ClientOptions, HongbaoClient, new_request_id
from hongbao.node.errors import HongbaoError
from tests.router.conftest import Routed, routed_cluster

pytestmark = pytest.mark.cluster
FAILOVER_S_MAX = 10.0  # generous on a loaded 2-core machine; typically ~1 s


@pytest.fixture(scope="module")
def routed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Routed]:
    with routed_cluster(Path(tmp_path_factory.mktemp("failover"))) as value:
        yield value


def test_the_sdk_fails_over_when_its_own_router_is_killed_and_comes_home(
    routed: Routed,
) -> None:
    topology = routed.harness.topology
    own = topology.routers_in("shenzhen")[0]

    async def main() -> None:
        options = ClientOptions(timeout_s=2.0, attempts_max=10, router_home_retry_s=0.2)
        async with HongbaoClient.via_routers(topology, options, region="shenzhen") as c:
            assert await c.deposit("fo-a", 10) == 10
            assert c.via_router == own
            routed.routers.kill(own.router_id)
            assert await c.deposit("fo-a", 10) == 20
            assert c.via_router is not None
            assert c.via_router.region != "shenzhen"
            assert c.router_failovers >= 1
            assert (await c.balance("fo-a")).balance_fen == 20
            routed.routers.start(own)  # it comes back: the client returns to it
            deadline = time.monotonic() + 10
            while c.via_router != own:
                assert time.monotonic() < deadline, "the client never went back home"
                await c.balance("fo-a")
                await asyncio.sleep(0.05)
            assert (await c.balance("fo-a")).balance_fen == 20

    asyncio.run(main())


def test_killing_a_shard_leader_fails_over_and_applies_nothing_twice(routed: Routed) -> None:
    harness = routed.harness
    topology = harness.topology
    leaders = harness.leaders()
    victim = leaders[0]
    victim_shards = {s for s, n in leaders.items() if n == victim}
    router_region = topology.region_of(victim)  # the victim's own region's router
    users = [f"kl-{i}" for i in range(48)]
    acked: dict[str, int] = dict.fromkeys(users, 0)
    first_ok_after_kill: dict[int, float] = {}
    killed_at: list[float] = []

    async def worker(c: HongbaoClient, user: str, count: int) -> None:
        shard_id = c.user_shard(user)
        for _ in range(count):
            rid = new_request_id()
            deadline = time.monotonic() + 30
            while True:  # the same request id until it is acknowledged
                try:
                    await c.deposit(user, 1, request_id=rid)
                    break
                except HongbaoError:
                    assert time.monotonic() < deadline, f"{user}: no answer for 30 s"
                    await asyncio.sleep(0.05)
            acked[user] += 1
            if killed_at and shard_id in victim_shards:
                first_ok_after_kill.setdefault(shard_id, time.monotonic())
            await asyncio.sleep(0.01)

    async def main() -> None:
        options = ClientOptions(timeout_s=2.0, attempts_max=20)
        async with HongbaoClient.via_routers(topology, options, region=router_region) as c:
            load = [asyncio.create_task(worker(c, u, 30)) for u in users]
            await asyncio.sleep(0.5)
            harness.cluster.kill(victim)
            killed_at.append(time.monotonic())
            await asyncio.gather(*load)
            for user in users:
                assert (await c.balance(user)).balance_fen == acked[user] == 30

    asyncio.run(main())
    assert set(first_ok_after_kill) == victim_shards
    worst_s = max(first_ok_after_kill.values()) - killed_at[0]
    timing = topology.timing
    election_s = timing.tick_ms * timing.election_timeout_ticks / 1000
    print(f"failover: {worst_s:.2f} s = {worst_s / election_s:.1f} election timeouts")
    assert worst_s < FAILOVER_S_MAX
