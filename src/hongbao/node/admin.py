"""The Admin gRPC service: status, leadership transfer and the cluster state, for operators.

Rules of this module: it only reads the runtime's cores (status) or asks a core to act
(transfer); it never touches storage. A transfer waits, bounded by ``wait_ms``, for the
shard's leadership to land, so ``region drain`` can move leaders one call at a time; a
target in a region that may not lead is refused. The cluster-state RPCs are
:mod:`hongbao.node.admin_meta`'s; ShardAudit is :mod:`hongbao.node.admin_audit`'s.
"""

from __future__ import annotations

import asyncio
import importlib
import inspect
import time

import grpc

from hongbao import __version__
from hongbao.config.topology import META_GROUP_ID
from hongbao.meta.state import region_state_to_proto
from hongbao.node.admin_meta import MetaAdmin, StaleVersion
from hongbao.node.cluster_follow import ClusterFollower
from hongbao.node.errors import ErrorReason, HongbaoError, abort_async, make_error
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
    def __init__(
        self,
        runtime: NodeRuntime,
        *,
        follower: ClusterFollower | None = None,
        topology_toml: str = "",
        topology_source: str = "",
    ) -> None:
        self.runtime = runtime
        self.meta = MetaAdmin(runtime, follower)
        self.topology_toml = topology_toml  # the text this node was started with
        self.topology_source = topology_source  # the file it came from, on this machine
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
        response = admin_pb2.StatusResponse(
            node_id=runtime.node_id,
            region=spec.region,
            address=spec.address,
            started_at_ms=self.started_at_ms,
            now_ms=int(time.time() * 1000),
            version=__version__,
            shards=[self._shard_status(shard_id) for shard_id in wanted],
            cluster_id=runtime.cluster_id,
        )
        state, _, _ = self.meta.known_state()
        if state is not None:
            response.region_state = region_state_to_proto(state.state_of(spec.region))
            response.cluster_state_version = state.version
        if runtime.meta is not None:
            response.meta_group.CopyFrom(self._shard_status(META_GROUP_ID))
        return response

    def _shard_status(self, shard_id: int) -> admin_pb2.ShardStatus:
        replica = self.runtime.groups[shard_id]
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
        replica = runtime.groups.get(request.shard_id)  # a ledger shard or the meta group
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
        refused = self.meta.transfer_target_problem(int(target))
        if refused is not None:
            await abort_async(context, refused)
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

    # -- the cluster state -------------------------------------------------------------------

    async def ClusterState(
        self,
        request: admin_pb2.ClusterStateRequest,
        context: grpc.aio.ServicerContext[
            admin_pb2.ClusterStateRequest, admin_pb2.ClusterStateResponse
        ],
    ) -> admin_pb2.ClusterStateResponse:
        try:
            return await self.meta.cluster_state(request.linearizable)
        except HongbaoError as error:
            await abort_async(context, error)

    async def SetRegionState(
        self,
        request: admin_pb2.SetRegionStateRequest,
        context: grpc.aio.ServicerContext[
            admin_pb2.SetRegionStateRequest, admin_pb2.ClusterStateResponse
        ],
    ) -> admin_pb2.ClusterStateResponse:
        try:
            return await self.meta.set_region_state(request)
        except HongbaoError as error:
            await abort_async(context, error)
        except StaleVersion as stale:
            await abort_async(context, make_error(ErrorReason.STALE_VERSION, str(stale)))

    async def Topology(
        self,
        request: admin_pb2.TopologyRequest,
        context: grpc.aio.ServicerContext[admin_pb2.TopologyRequest, admin_pb2.TopologyResponse],
    ) -> admin_pb2.TopologyResponse:
        if not self.topology_toml:
            await abort_async(
                context,
                make_error(ErrorReason.NOT_FOUND, "this node was not given its topology text"),
            )
        return admin_pb2.TopologyResponse(
            toml=self.topology_toml,
            cluster_id=self.runtime.cluster_id,
            source=self.topology_source,
        )

    async def ShardAudit(
        self,
        request: admin_pb2.ShardAuditRequest,
        context: grpc.aio.ServicerContext[
            admin_pb2.ShardAuditRequest, admin_pb2.ShardAuditResponse
        ],
    ) -> admin_pb2.ShardAuditResponse:
        try:  # imported lazily: the audit is its own module (absent: UNIMPLEMENTED)
            admin_audit = importlib.import_module("hongbao.node.admin_audit")
        except ImportError:
            await context.abort(grpc.StatusCode.UNIMPLEMENTED, "ShardAudit is not built yet")
        try:
            answer = admin_audit.shard_audit(self.runtime, request)
            if inspect.isawaitable(answer):
                answer = await answer
        except HongbaoError as error:
            await abort_async(context, error)
        response: admin_pb2.ShardAuditResponse = answer
        return response
