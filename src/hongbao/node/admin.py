"""The Admin gRPC service: per-shard status and leadership transfer, for operators.

Rules of this module: it only reads the runtime's cores (status) or asks a core to act
(transfer); it never touches storage. A transfer waits, bounded by ``wait_ms``, for the
shard's leadership to land, so ``region drain`` can move leaders one call at a time.
"""

from __future__ import annotations

import asyncio
import time

import grpc

from hongbao import __version__
from hongbao.node.errors import ErrorReason, abort_async, make_error
from hongbao.node.runtime import NodeRuntime
from hongbao.proto.gen.hongbao.v1 import admin_pb2, admin_pb2_grpc
from hongbao.raft.errors import ProposalDropped
from hongbao.raft.types import NodeId, Role

TRANSFER_WAIT_MS_MAX = 30_000
TRANSFER_POLL_S = 0.01

_ROLES = {
    Role.FOLLOWER: admin_pb2.ROLE_FOLLOWER,
    Role.PRE_CANDIDATE: admin_pb2.ROLE_PRE_CANDIDATE,
    Role.CANDIDATE: admin_pb2.ROLE_CANDIDATE,
    Role.LEADER: admin_pb2.ROLE_LEADER,
}
_PROGRESS = {
    "probe": admin_pb2.PROGRESS_STATE_PROBE,
    "replicate": admin_pb2.PROGRESS_STATE_REPLICATE,
    "snapshot": admin_pb2.PROGRESS_STATE_SNAPSHOT,
}


class AdminServicer(admin_pb2_grpc.AdminServicer):
    def __init__(self, runtime: NodeRuntime) -> None:
        self.runtime = runtime
        self.started_at_ms = int(time.time() * 1000)

    async def Status(
        self,
        request: admin_pb2.StatusRequest,
        context: grpc.aio.ServicerContext[admin_pb2.StatusRequest, admin_pb2.StatusResponse],
    ) -> admin_pb2.StatusResponse:
        runtime = self.runtime
        wanted = sorted(set(request.shard_ids)) or sorted(runtime.replicas)
        unknown = [s for s in wanted if s not in runtime.replicas]
        if unknown:
            await abort_async(
                context,
                make_error(ErrorReason.NOT_FOUND, f"shards {unknown} have no replica here"),
            )
        spec = runtime.topology.node(runtime.node_id)
        return admin_pb2.StatusResponse(
            node_id=runtime.node_id,
            region=spec.region,
            address=spec.address,
            started_at_ms=self.started_at_ms,
            now_ms=int(time.time() * 1000),
            version=__version__,
            shards=[self._shard_status(shard_id) for shard_id in wanted],
        )

    def _shard_status(self, shard_id: int) -> admin_pb2.ShardStatus:
        replica = self.runtime.replicas[shard_id]
        status = replica.core.status()
        progress = []
        lag_max = 0
        if status.role is Role.LEADER:
            for node, peer in status.peers.items():
                if node == status.node_id:
                    continue
                lag = max(0, status.last_index - peer.match)
                lag_max = max(lag_max, lag)
                progress.append(
                    admin_pb2.ReplicaProgress(
                        node_id=node,
                        match_index=peer.match,
                        next_index=peer.next,
                        lag_entries=lag,
                        state=_PROGRESS[peer.state],
                        recent_active=peer.recent_active,
                        learner=node in status.conf_state.learners,
                    )
                )
        return admin_pb2.ShardStatus(
            shard_id=shard_id,
            role=_ROLES[status.role],
            term=status.term,
            leader_node_id=status.leader_id,
            commit_index=status.commit_index,
            applied_index=status.applied_index,
            last_index=status.last_index,
            snapshot_index=replica.snapshot_index,
            apply_lag_entries=max(0, status.commit_index - status.applied_index),
            log_lag_entries_max=lag_max,
            voters=sorted(status.conf_state.voters),
            learners=sorted(status.conf_state.learners),
            lead_transferee_node_id=status.leader_transferee,
            progress=progress,
        )

    async def TransferLeader(
        self,
        request: admin_pb2.TransferLeaderRequest,
        context: grpc.aio.ServicerContext[
            admin_pb2.TransferLeaderRequest, admin_pb2.TransferLeaderResponse
        ],
    ) -> admin_pb2.TransferLeaderResponse:
        runtime = self.runtime
        replica = runtime.replicas.get(request.shard_id)
        if replica is None:
            await abort_async(
                context,
                make_error(ErrorReason.NOT_FOUND, f"shard {request.shard_id} is not hosted here"),
            )
        if request.wait_ms > TRANSFER_WAIT_MS_MAX:
            await abort_async(
                context,
                make_error(
                    ErrorReason.LIMIT_EXCEEDED, f"wait_ms is at most {TRANSFER_WAIT_MS_MAX}"
                ),
            )
        target = NodeId(request.target_node_id)
        if replica.core.leader_id != target:
            try:
                replica.core.transfer_leadership(target)
            except ProposalDropped as refused:
                reason = ErrorReason.NOT_LEADER
                if replica.is_leader:
                    reason = ErrorReason.INVALID_REQUEST
                    error = make_error(reason, str(refused), shard_id=request.shard_id)
                else:
                    error = runtime.not_leader(request.shard_id)
                await abort_async(context, error)
            runtime.wake()
        deadline = time.monotonic() + request.wait_ms / 1000
        while replica.core.leader_id != target and time.monotonic() < deadline:
            await asyncio.sleep(TRANSFER_POLL_S)
        return admin_pb2.TransferLeaderResponse(
            leader_node_id=replica.core.leader_id, term=replica.core.term
        )
