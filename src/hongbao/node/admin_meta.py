"""The cluster-state half of the Admin service: reading and changing the meta group's state.

Rules of this module: a linearizable read and every change go to the meta group's leader
(anyone else answers NOT_LEADER with a hint, as for a shard); a non-linearizable read
answers the local meta replica's applied state, or on a node without one the follower's
last poll, saying how old it is (``age_ms``). Every wait is bounded. Invalid requests
are refused before anything is proposed; a refusal decided by the log itself (a stale
``expected_version``) comes back as FAILED_PRECONDITION with both versions named.
"""

from __future__ import annotations

import asyncio
import logging

from hongbao.config.topology import META_GROUP_ID
from hongbao.meta.machine import MetaResult
from hongbao.meta.state import (
    ClusterState,
    RegionState,
    SetRegion,
    region_state_from_proto,
    to_proto,
)
from hongbao.node.cluster_follow import ClusterFollower
from hongbao.node.errors import ErrorReason, HongbaoError, make_error
from hongbao.node.runtime import NodeRuntime
from hongbao.proto.gen.hongbao.v1 import admin_pb2

log = logging.getLogger(__name__)

META_WAIT_MS = 5_000
"""How long a ClusterState read or a SetRegionState waits for the meta group."""
DRAIN_DEADLINE_MS_MAX = 7 * 24 * 3600 * 1000  # a week, as an absolute bound on the field


class StaleVersion(Exception):
    """SetRegionState with an expected_version the log has moved past (FAILED_PRECONDITION)."""


class MetaAdmin:
    """Cluster-state operations of one node (its meta replica, if any, and its follower)."""

    def __init__(self, runtime: NodeRuntime, follower: ClusterFollower | None) -> None:
        self.runtime = runtime
        self.follower = follower

    def meta_leader(self) -> int:
        """The meta leader as far as this node knows (0: none known)."""
        if self.runtime.meta is not None:
            return int(self.runtime.meta.core.leader_id)
        return self.follower.meta_leader if self.follower is not None else 0

    def known_state(self) -> tuple[ClusterState | None, int, int]:
        """(state, answered by, age ms): the freshest this node has without asking anyone."""
        local = self.runtime.meta_state()
        if local is not None:
            return local, self.runtime.node_id, 0
        if self.follower is not None and self.follower.state is not None:
            return self.follower.state, self.follower.answered_by, self.follower.age_ms()
        return None, 0, 0

    def region_state(self, region: str) -> RegionState | None:
        state, _, _ = self.known_state()
        return None if state is None else state.state_of(region)

    async def cluster_state(self, linearizable: bool) -> admin_pb2.ClusterStateResponse:
        runtime = self.runtime
        if linearizable:
            if runtime.meta is None:
                raise runtime.not_leader(META_GROUP_ID, "no replica of the meta group here")
            barrier = runtime.read_barrier(META_GROUP_ID)
            try:
                await asyncio.wait_for(barrier, META_WAIT_MS / 1000)
            except TimeoutError:
                raise make_error(
                    ErrorReason.UNAVAILABLE, "the meta group did not confirm leadership in time"
                ) from None
            state = runtime.meta_state()
            assert state is not None
            return to_proto(state, meta_leader_node_id=self.meta_leader(),
                            answered_by=runtime.node_id)  # fmt: skip
        known, answered_by, age_ms = self.known_state()
        if known is None:
            raise make_error(
                ErrorReason.UNAVAILABLE,
                f"node {runtime.node_id} has not read the cluster state yet; ask a meta"
                f" replica (nodes {', '.join(str(n) for n in runtime.topology.meta_replicas)})",
            )
        leader = self.meta_leader()
        return to_proto(
            known, meta_leader_node_id=leader, answered_by=answered_by or runtime.node_id,
            age_ms=age_ms,
        )  # fmt: skip

    def validate(self, request: admin_pb2.SetRegionStateRequest) -> SetRegion:
        """The command of a SetRegionState request, or INVALID_REQUEST saying why not."""
        regions = [r.name for r in self.runtime.topology.regions]
        if request.region not in regions:
            raise make_error(
                ErrorReason.INVALID_REQUEST,
                f"unknown region {request.region!r} (regions: {', '.join(regions)})",
            )
        state = region_state_from_proto(request.state)
        if state is None:
            raise make_error(
                ErrorReason.INVALID_REQUEST,
                f"state {request.state} is not a region state (active, draining, drained)",
            )
        if not 0 <= request.deadline_ms <= _deadline_ms_max(self.runtime.clock_ms()):
            raise make_error(
                ErrorReason.INVALID_REQUEST,
                f"deadline_ms {request.deadline_ms} is not a time (ms since the epoch) within"
                " a week",
            )
        if request.deadline_ms and state is not RegionState.DRAINING:
            raise make_error(
                ErrorReason.INVALID_REQUEST, "deadline_ms applies to the draining state only"
            )
        return SetRegion(
            region=request.region,
            state=state,
            expected_version=request.expected_version,
            deadline_ms=request.deadline_ms,
            ts_ms=self.runtime.clock_ms(),
        )

    async def set_region_state(
        self, request: admin_pb2.SetRegionStateRequest
    ) -> admin_pb2.ClusterStateResponse:
        """Propose the change on the meta leader and answer the state right after it."""
        command = self.validate(request)
        future = self.runtime.submit_meta(command)
        try:
            result: MetaResult = await asyncio.wait_for(asyncio.shield(future), META_WAIT_MS / 1000)
        except TimeoutError:
            raise make_error(
                ErrorReason.OUTCOME_UNKNOWN,
                "the meta group did not commit the change in time; read the cluster state"
                " to see whether it applied",
            ) from None
        if result.refused:
            if result.stale_version:
                raise StaleVersion(f"refused: {result.refused}; read it again and retry")
            raise make_error(ErrorReason.INVALID_REQUEST, result.refused)
        log.info(
            "cluster state version %d: region %s set to %s",
            result.state.version,
            command.region,
            command.state.value,
        )
        return to_proto(
            result.state, meta_leader_node_id=self.meta_leader(), answered_by=self.runtime.node_id
        )

    def transfer_target_problem(self, target_node_id: int) -> HongbaoError | None:
        """A leadership target in a region that may not lead is refused (CockroachDB #66103)."""
        try:
            region = self.runtime.topology.region_of(target_node_id)
        except KeyError:
            return None  # the core refuses a non-member itself
        state = self.region_state(region)
        if state is None or state is RegionState.ACTIVE:
            return None
        return make_error(
            ErrorReason.INVALID_REQUEST,
            f"node {target_node_id} is in region {region}, which is {state.value}: it takes no"
            " leadership",
        )


def _deadline_ms_max(now_ms: int) -> int:
    return now_ms + DRAIN_DEADLINE_MS_MAX
