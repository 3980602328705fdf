"""Three NodeRuntimes on LMDB in one process, wired by an in-memory network the test drives.

Rules of this module: nothing listens and nothing sleeps; a test advances the cluster by
cycles (each ticking every core once) and waits on conditions with a bounded number of
cycles. A node can be cut off (its messages in both directions are dropped).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import Any

from hongbao.config.topology import META_GROUP_ID, Topology, parse_topology
from hongbao.node.runtime import NodeRuntime, RuntimeLimits
from hongbao.node.storage import Durability, NodeEnv
from hongbao.raft.types import Message

CYCLES_MAX = 2_000


class Net:
    def __init__(
        self,
        tmp_path: Path,
        topology_data: dict[str, Any],
        limits: RuntimeLimits | None = None,
    ) -> None:
        self.topology: Topology = parse_topology(topology_data)
        self.envs: dict[int, NodeEnv] = {}
        self.runtimes: dict[int, NodeRuntime] = {}
        self.cut: set[int] = set()
        for spec in self.topology.nodes:
            node_id = spec.node_id
            env = NodeEnv(
                tmp_path / f"n{node_id}", durability=Durability.NO_FSYNC, map_size_bytes=1 << 26
            )
            self.envs[node_id] = env
            runtime = NodeRuntime(topology=self.topology, node_id=node_id, env=env, limits=limits)
            runtime.send = self._sender(node_id)
            self.runtimes[node_id] = runtime

    def _sender(self, sender: int) -> Callable[[int, int, Message], None]:
        def send(to: int, group_id: int, message: Message) -> None:
            if sender in self.cut or to in self.cut or to not in self.runtimes:
                return
            self.runtimes[to].heard(sender)  # as the transport does for every batch
            self.runtimes[to].deliver(group_id, message)

        return send

    def start(self) -> None:
        """What ``NodeRuntime.run`` does first: home groups campaign at once."""
        for runtime in self.runtimes.values():
            runtime._campaign_home_shards()

    async def cycle(self, count: int = 1, ticks: int = 1) -> None:
        for _ in range(count):
            for runtime in self.runtimes.values():
                runtime.cycle(ticks)
            await asyncio.sleep(0)

    async def until(self, condition: Callable[[], bool], what: str) -> None:
        for _ in range(CYCLES_MAX):
            if condition():
                return
            await self.cycle()
        raise AssertionError(f"not within {CYCLES_MAX} cycles: {what}")

    async def settle(self, future: asyncio.Future[Any], what: str) -> Any:
        await self.until(future.done, what)
        return future.result()

    def meta_leader(self) -> int:
        leaders = [n for n, r in self.runtimes.items() if r.groups[META_GROUP_ID].is_leader]
        return leaders[0] if len(leaders) == 1 else 0

    def close(self) -> None:
        for runtime in self.runtimes.values():
            runtime.stop()
        for env in self.envs.values():
            env.close()
