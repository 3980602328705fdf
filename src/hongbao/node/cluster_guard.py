"""The cluster id: what this node's cluster is called, and refusing calls meant for another.

Rules of this module: a call whose metadata carries ``hongbao-cluster-id`` with another
value than ours is refused, before its handler runs, with CLUSTER_MISMATCH
(FAILED_PRECONDITION, final) naming both ids: a client or router configured with another
cluster's topology that reached this address by mistake must find out at once, not
write into the wrong cluster. A call without the key is accepted (old clients, grpcurl,
health checks). Peer streams also carry the id in their messages (``node.transport``).
"""

from __future__ import annotations

import hashlib
from collections.abc import Awaitable, Callable
from typing import Any, TypeAlias

import grpc

from hongbao.config.topology import Topology
from hongbao.node.errors import ErrorReason, abort_async, make_error

CLUSTER_ID_METADATA_KEY = "hongbao-cluster-id"
Handler: TypeAlias = "grpc.RpcMethodHandler[Any, Any]"


def cluster_id_of(topology: Topology) -> str:
    """The file's ``cluster_id``, or a name derived from the cluster's shape.

    Every replica of the meta group is initialised with it; nodes of another cluster
    refuse our peer streams and requests that carry another id.
    """
    if topology.cluster_id:
        return topology.cluster_id
    shape = ";".join(f"{n.node_id}@{n.address}/{n.region}" for n in topology.nodes)
    shape += f";shards={topology.shard_count};rf={topology.replication_factor}"
    return hashlib.blake2b(shape.encode(), digest_size=8).hexdigest()


def claimed_cluster_id(metadata: object) -> str | None:
    """The ``hongbao-cluster-id`` of a call's metadata, or None when it has none."""
    if not metadata:
        return None
    for item in metadata:  # type: ignore[attr-defined]
        key, value = item[0], item[1]
        if key == CLUSTER_ID_METADATA_KEY:
            return value.decode(errors="replace") if isinstance(value, bytes) else str(value)
    return None


class ClusterIdInterceptor(grpc.aio.ServerInterceptor):
    """Refuses calls that name another cluster (see the module docstring)."""

    def __init__(self, cluster_id: str) -> None:
        self.cluster_id = cluster_id
        self.refused_calls = 0

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[Handler | None]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> Handler | None:
        handler = await continuation(handler_call_details)
        if handler is None:
            return handler
        claimed = claimed_cluster_id(handler_call_details.invocation_metadata)
        if claimed is None or claimed == self.cluster_id:
            return handler
        self.refused_calls += 1
        message = (
            f"this node belongs to cluster {self.cluster_id!r}; the call is for cluster"
            f" {claimed[:80]!r}"
        )
        return _refusing(handler, message)


def _refusing(handler: Handler, message: str) -> Handler:
    """``handler`` with its behaviour replaced by a CLUSTER_MISMATCH refusal."""
    error = make_error(ErrorReason.CLUSTER_MISMATCH, message)

    async def unary(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
        await abort_async(context, error)

    async def streaming(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
        await abort_async(context, error)
        yield  # pragma: no cover - never reached: the abort raises

    replace: Callable[..., Handler] = handler._replace  # type: ignore[attr-defined]
    if handler.unary_unary is not None:
        return replace(unary_unary=unary)
    if handler.stream_unary is not None:
        return replace(stream_unary=unary)
    if handler.unary_stream is not None:
        return replace(unary_stream=streaming)
    return replace(stream_stream=streaming)
