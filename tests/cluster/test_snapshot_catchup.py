"""A node that was down while the others compacted their logs catches up by snapshot.

The nodes run with tiny snapshot thresholds (``--snapshot-interval-entries`` and
``--trailing-entries``). One node is stopped; the others take enough writes that every
shard's leader snapshots and compacts its log past the last entry the stopped node has.
Restarted while the writes go on, the node can only catch up by installing a snapshot of
every shard: it must, its log must say so, and afterwards its replicas must equal the
others byte for byte and the money must add up to exactly the deposits made.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TypeVar

import pytest

from hongbao.client.sdk import HongbaoClient, new_request_id
from hongbao.node.errors import RetryableError
from hongbao.proto.gen.hongbao.v1 import admin_pb2
from tests.cluster.support import Harness, running_cluster, users_per_shard, wait_for

pytestmark = pytest.mark.cluster

SNAPSHOT_INTERVAL = 40
TRAILING = 10
VICTIM = 3
DEPOSIT_FEN = 7
WRITE_TIMEOUT_S = 60.0
SETTLE_TIMEOUT_S = 30.0
CATCH_UP_TIMEOUT_S = 60.0

T = TypeVar("T")


async def settle(call: Callable[[], Awaitable[T]]) -> T:
    """Retry ``call`` (which reuses one request id) until it is answered, within a deadline.

    While a node restarts, the client's own retries may end on NOT_LEADER or UNAVAILABLE;
    the same request id makes retrying here safe: it applies once, whatever happened.
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + SETTLE_TIMEOUT_S
    while True:
        try:
            return await call()
        except RetryableError:
            if loop.time() > deadline:
                raise
            await asyncio.sleep(0.05)


class Writer:
    """Per shard: deposits (one log entry each) and transfers within and across shards."""

    def __init__(self, harness: Harness) -> None:
        self.topology = harness.topology
        self.users = users_per_shard(self.topology, 2, "snap-")
        self.deposited_fen = 0

    async def round(self, client: HongbaoClient, shard_id: int) -> None:
        user, other = self.users[shard_id]
        peer = self.users[(shard_id + 1) % self.topology.shard_count][0]
        for _ in range(10):
            rid = new_request_id()
            await settle(lambda r=rid: client.deposit(user, DEPOSIT_FEN, r))
            self.deposited_fen += DEPOSIT_FEN
        for target in (peer, other):
            rid = new_request_id()
            await settle(lambda r=rid, t=target: client.transfer(user, t, 1, r))

    async def until(self, done: Callable[[HongbaoClient, int], Awaitable[bool]]) -> None:
        """Rounds on every shard at once, each shard until ``done(client, shard)``."""
        async with HongbaoClient(self.topology) as client:

            async def chain(shard_id: int) -> None:
                for _ in range(100):
                    await self.round(client, shard_id)
                    if await done(client, shard_id):
                        return
                raise AssertionError(f"shard {shard_id}: 100 rounds and still not done")

            shards = range(self.topology.shard_count)
            await asyncio.wait_for(asyncio.gather(*map(chain, shards)), WRITE_TIMEOUT_S)


async def leader_status(client: HongbaoClient, shard_id: int) -> admin_pb2.ShardStatus | None:
    status = await client.status(client.leader_guess(shard_id))
    shard = next(s for s in status.shards if s.shard_id == shard_id)
    return shard if shard.role == admin_pb2.ROLE_LEADER else None


def test_down_node_catches_up_by_snapshot(tmp_path: Path) -> None:
    node_args = [
        "--snapshot-interval-entries",
        str(SNAPSHOT_INTERVAL),
        "--trailing-entries",
        str(TRAILING),
    ]
    with running_cluster(tmp_path, node_args=node_args) as harness:
        topology = harness.topology
        assert all(VICTIM in topology.replicas_of(s) for s in range(topology.shard_count))
        writer = Writer(harness)

        async def once(client: HongbaoClient, shard_id: int) -> bool:
            return True

        asyncio.run(writer.until(once))
        views = harness.wait_quiescent()
        victim_before = {s: v.replicas[VICTIM] for s, v in views.items()}
        assert harness.cluster.stop(VICTIM) == 0
        harness.forget_channel(VICTIM)

        # The survivors elect leaders for the victim's shards and take enough writes to
        # compact their logs past everything the victim has.
        harness.leaders()
        gone = {s: int(st.last_index) + TRAILING + 1 for s, st in victim_before.items()}

        async def compacted_past_victim(client: HongbaoClient, shard_id: int) -> bool:
            status = await leader_status(client, shard_id)
            return status is not None and status.snapshot_index > gone[shard_id]

        asyncio.run(writer.until(compacted_past_victim))
        for shard_id, view in harness.wait_quiescent().items():
            for node_id, status in view.replicas.items():
                # Both survivors' logs now start after the victim's last entry.
                first_index = status.snapshot_index - TRAILING + 1
                assert first_index > victim_before[shard_id].last_index + 1, (
                    shard_id,
                    node_id,
                    status.snapshot_index,
                    victim_before[shard_id].last_index,
                )

        # Restart the victim while the writes go on; it must catch up all the same.
        log_offset = harness.cluster.log_path(VICTIM).stat().st_size
        restart_views = harness.shard_views()
        assert restart_views is not None
        to_reach = {s: int(v.leader_status.commit_index) for s, v in restart_views.items()}

        def victim_caught_up() -> bool:
            views = harness.shard_views()
            return views is not None and all(
                VICTIM in v.replicas and v.replicas[VICTIM].applied_index >= to_reach[s]
                for s, v in views.items()
            )

        async def restart_under_load() -> None:
            restarted = asyncio.Event()

            async def until_caught_up(client: HongbaoClient, shard_id: int) -> bool:
                return restarted.is_set() and await asyncio.to_thread(victim_caught_up)

            async def restart() -> None:
                await asyncio.to_thread(harness.cluster.start, [VICTIM])
                restarted.set()

            await asyncio.gather(writer.until(until_caught_up), restart())

        asyncio.run(restart_under_load())
        caught_up = harness.wait_quiescent(CATCH_UP_TIMEOUT_S)
        for shard_id, view in caught_up.items():
            mine = view.replicas[VICTIM]
            assert mine.applied_index == view.leader_status.commit_index
            assert mine.snapshot_index > victim_before[shard_id].last_index

        def installed() -> set[int] | None:
            text = harness.cluster.log_path(VICTIM).read_bytes()[log_offset:].decode()
            shards = {
                int(line.split("shard ", 1)[1].split(":", 1)[0])
                for line in text.splitlines()
                if "installed a snapshot" in line
            }
            return shards if shards == set(range(topology.shard_count)) else None

        wait_for(installed, 5, "the victim's log to report a snapshot install for every shard")

        report = harness.quiesce_stop_audit()
        ledger = report.ledger
        assert ledger is not None
        assert ledger.deposits_fen == writer.deposited_fen
        assert ledger.balances_fen == writer.deposited_fen
        for shard_id in range(topology.shard_count):
            digests = {
                n: report.replica(int(n), shard_id).digest for n in topology.replicas_of(shard_id)
            }
            assert len(set(digests.values())) == 1, (shard_id, digests)
