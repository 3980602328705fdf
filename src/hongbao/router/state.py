"""The router's view of the cluster state: polled from the meta replicas, bounded in age.

Rules of this module: every ``state_poll_ms`` the router asks a meta replica (its own
region's first, then the others in ``topology.meta_replicas`` order) for
``Admin.ClusterState`` and hands the answer to :class:`~hongbao.client.routing.Routing`,
which stops guessing nodes of regions that do not take traffic. When no replica answers,
the last state is kept (initially: every region active) and its age grows; a node that
does not implement ClusterState yet is logged once and treated the same way. The state
never goes backwards: an answer with a lower version than the one held is ignored.
Each state taken is handed to ``on_change`` (the router's region state metric), and a
change of a region's state is logged at info (``region_state_followed``).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Final

import grpc

from hongbao.client.routing import Routing
from hongbao.logs import event
from hongbao.meta.state import ClusterState, from_proto
from hongbao.proto.gen.hongbao.v1 import admin_pb2
from hongbao.router.links import NodeLinks

log = logging.getLogger(__name__)

CLUSTER_STATE_PATH: Final = "/hongbao.v1.Admin/ClusterState"
POLL_TIMEOUT_MS_MAX: Final = 1_000


class StateFollower:
    def __init__(
        self,
        routing: Routing,
        links: NodeLinks,
        *,
        cluster_id: str,
        poll_ms: int,
        on_change: Callable[[ClusterState], None] = lambda state: None,
    ) -> None:
        topology = routing.topology
        self.routing = routing
        self.links = links
        self.poll_s = poll_ms / 1000.0
        self.timeout_s = min(POLL_TIMEOUT_MS_MAX, max(poll_ms, 100)) / 1000.0
        region_names = tuple(r.name for r in topology.regions)
        self.state = ClusterState.initial(cluster_id, region_names)
        self.on_change = on_change
        routing.cluster_state = self.state
        on_change(self.state)
        replicas = [int(n) for n in topology.meta_replicas]
        own = [n for n in replicas if topology.region_of(n) == routing.region]
        self.order = own + [n for n in replicas if n not in own]
        self.read_at_ms: float | None = None  # monotonic ms of the last answer
        self.meta_leader_node_id = 0
        self.polls = 0
        self.failed_polls = 0
        self._unimplemented_logged = False

    def age_ms(self) -> int:
        if self.read_at_ms is None:
            return -1
        return int(time.monotonic() * 1000.0 - self.read_at_ms)

    async def poll_once(self) -> bool:
        """One read of the cluster state; True when a replica answered."""
        self.polls += 1
        request = admin_pb2.ClusterStateRequest().SerializeToString()
        for node_id in self.order:
            try:
                raw = await self.links.forward(node_id, CLUSTER_STATE_PATH, request, self.timeout_s)
                answer = admin_pb2.ClusterStateResponse.FromString(raw)
            except grpc.aio.AioRpcError as error:
                unimplemented = error.code() is grpc.StatusCode.UNIMPLEMENTED
                if unimplemented and not self._unimplemented_logged:
                    self._unimplemented_logged = True
                    log.warning(
                        "node %d does not serve Admin.ClusterState: the last state is kept "
                        "(every region active until one does)",
                        node_id,
                    )
                continue
            except Exception as error:  # a garbled answer: try the next replica
                log.debug("cluster state from node %d: %s", node_id, error)
                continue
            self._take(answer)
            return True
        self.failed_polls += 1
        return False

    def _take(self, answer: admin_pb2.ClusterStateResponse) -> None:
        self.read_at_ms = time.monotonic() * 1000.0 - max(0, answer.age_ms)
        self.meta_leader_node_id = int(answer.meta_leader_node_id)
        state = from_proto(answer)
        if not state.regions or state.version < self.state.version:
            return
        if state.version == self.state.version:
            self.state = state
            self.routing.cluster_state = state
            return
        changed = [
            f"{r.name}={r.state.value}"
            for r in state.regions
            if self.state.state_of(r.name) is not r.state
        ]
        self.state = state
        self.routing.cluster_state = state
        self.on_change(state)
        event(
            log,
            "region_state_followed",
            f"cluster state version {state.version}: {', '.join(changed) or '-'}",
            version=state.version,
            changed=",".join(changed),
        )

    async def run(self) -> None:
        while True:
            await self.poll_once()
            await asyncio.sleep(self.poll_s)
