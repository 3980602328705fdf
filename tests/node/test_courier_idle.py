"""The courier reads a led shard's outbox only when the shard applied something since it
last found the outbox empty, or at a sweep: an idle node does no outbox reads.

One real NodeRuntime on LMDB (one node, one shard), a clock the test moves, and the
courier's rounds called by hand.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from hongbao.config.topology import parse_topology
from hongbao.ledger import Deposit
from hongbao.node.courier import Courier, CourierLimits
from hongbao.node.runtime import NodeRuntime
from hongbao.node.storage import Durability, NodeEnv
from hongbao.node.transport import TransportLimits
from tests.node.topologies import ONE_NODE

CYCLES_MAX = 100


def test_an_unchanged_empty_outbox_is_read_only_at_sweeps(tmp_path: Path) -> None:
    now_ms = [1_000_000]

    async def scenario() -> list[int]:
        env = NodeEnv(tmp_path / "n1", durability=Durability.NO_FSYNC, map_size_bytes=1 << 26)
        runtime = NodeRuntime(
            topology=parse_topology(ONE_NODE), node_id=1, env=env, clock_ms=lambda: now_ms[0]
        )
        runtime.send = lambda to, shard, m: None
        courier = Courier(runtime, TransportLimits(), CourierLimits(sweep_interval_ms=1000))
        reads: list[int] = []
        try:
            runtime.replicas[0].core.campaign()
            for _ in range(CYCLES_MAX):
                runtime.cycle(0)
                await asyncio.sleep(0)
                if runtime.replicas[0].is_leader:
                    break
            assert runtime.replicas[0].is_leader
            courier.round()  # the first round reads: nothing known yet
            reads.append(courier.outbox_reads)
            for _ in range(5):  # idle rounds, 20 ms apart: no reads
                now_ms[0] += 20
                courier.round()
            reads.append(courier.outbox_reads)
            future = runtime.submit(0, Deposit("d1", "alice", 100))
            for _ in range(CYCLES_MAX):
                runtime.cycle(0)
                await asyncio.sleep(0)
                if future.done():
                    break
            assert future.done()
            courier.round()  # the shard applied an entry: read again
            courier.round()  # and found it empty at that index: not again
            reads.append(courier.outbox_reads)
            now_ms[0] += 1000
            courier.round()  # a sweep reads whatever changed
            reads.append(courier.outbox_reads)
        finally:
            env.close()
        return reads

    assert asyncio.run(scenario()) == [1, 1, 2, 3]
