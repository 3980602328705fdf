"""ReadIndex contexts never repeat, not even across a restart of the node.

A leader merges a read into a pending one that carries the same context. If a restarted
follower began numbering its reads at 0 again, its new read could be merged into one it
sent before the restart and be answered with that older read index: a stale read.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from hongbao.config.topology import parse_topology
from hongbao.node.runtime import NodeRuntime
from hongbao.node.storage import Durability, NodeEnv
from tests.node.topologies import ONE_NODE

CYCLES_MAX = 50


def first_read_contexts(data_dir: Path, reads: int) -> list[bytes]:
    """Start a runtime on ``data_dir``, serve ``reads`` ReadIndex rounds, record contexts."""

    async def scenario() -> list[bytes]:
        topology = parse_topology(ONE_NODE)
        env = NodeEnv(data_dir, durability=Durability.NO_FSYNC, map_size_bytes=1 << 26)
        try:
            runtime = NodeRuntime(topology=topology, node_id=1, env=env)
            runtime._campaign_home_shards()
            for _ in range(CYCLES_MAX):
                runtime.cycle(1)
                if runtime.replicas[0].is_leader:
                    break
            core = runtime.replicas[0].core
            seen: list[bytes] = []
            read_index = core.read_index

            def recording(context: bytes) -> None:
                seen.append(context)
                read_index(context)

            core.read_index = recording  # type: ignore[method-assign]
            for _ in range(reads):
                barrier = runtime.read_barrier(0)
                for _ in range(CYCLES_MAX):
                    runtime.cycle(1)
                    await asyncio.sleep(0)
                    if barrier.done():
                        break
                assert barrier.done(), "the read was never confirmed"
                barrier.result()
            return seen
        finally:
            env.close()

    return asyncio.run(scenario())


def test_contexts_differ_within_a_run_and_across_restarts(tmp_path: Path) -> None:
    before = first_read_contexts(tmp_path / "node", reads=3)
    after = first_read_contexts(tmp_path / "node", reads=3)  # same data: a restart
    assert len(before) == len(after) == 3
    assert len(set(before + after)) == 6
