"""A node may speak only for itself, and only about shards it replicates.

Rules of this module: with TLS on, the certificate of a Peer stream or a Deliver names
the node at the other end. Every batch on the stream, every Raft message and snapshot in
it, and every Deliver must then claim that node as their sender, and concern a shard that
node replicates: node 2's certificate cannot carry votes, appends or credits "from node 1",
nor messages of a shard node 2 has no replica of. The checks read the wire messages as
they are, before anything is decoded or reaches a core; a refusal is a reason, and the
servicer ends the call with PERMISSION_DENIED.

Without TLS there is no certificate and nothing here applies (``--insecure`` said so).
"""

from __future__ import annotations

from hongbao.config.topology import META_GROUP_ID, Topology
from hongbao.proto.gen.hongbao.v1 import peer_pb2, raft_pb2
from hongbao.security.identity import Identity


class PeerBinding:
    """The checks of one node's server, built once from its topology."""

    def __init__(self, topology: Topology) -> None:
        self._replicas: dict[int, frozenset[int]] = {
            placement.shard_id: frozenset(int(n) for n in placement.replicas)
            for placement in topology.placements
        }
        # The meta group is a Raft group like a shard, on the first node of each region.
        self._replicas[META_GROUP_ID] = frozenset(int(n) for n in topology.meta_replicas)

    def replicates(self, node_id: int, shard_id: int) -> bool:
        replicas = self._replicas.get(shard_id)
        return replicas is not None and node_id in replicas

    def batch_refusal(self, identity: Identity | None, batch: peer_pb2.RaftBatch) -> str:
        """Why ``batch`` may not come from ``identity``, or "" when it may."""
        node_id = _node_of(identity)
        if node_id is None:
            return _not_a_node(identity)
        if batch.from_node_id != node_id:
            return f"a batch claiming node {batch.from_node_id} on node {node_id}'s certificate"
        for shard_message in batch.messages:
            problem = self._message_refusal(node_id, shard_message.shard_id, shard_message.message)
            if problem:
                return problem
        for chunk in batch.snapshot_chunks:
            if chunk.HasField("message"):
                problem = self._message_refusal(node_id, chunk.shard_id, chunk.message)
            else:
                problem = self._shard_refusal(node_id, chunk.shard_id)
            if problem:
                return problem
        return ""

    def deliver_refusal(self, identity: Identity | None, request: peer_pb2.DeliverRequest) -> str:
        """Why this Deliver may not come from ``identity``, or "" when it may."""
        node_id = _node_of(identity)
        if node_id is None:
            return _not_a_node(identity)
        if request.from_node_id != node_id:
            return f"a Deliver claiming node {request.from_node_id} on node {node_id}'s certificate"
        return self._shard_refusal(node_id, request.source_shard)

    def _message_refusal(self, node_id: int, shard_id: int, message: raft_pb2.Message) -> str:
        sender = int(message.from_)
        if sender != node_id:
            return f"a message from node {sender} on node {node_id}'s certificate"
        return self._shard_refusal(node_id, shard_id)

    def _shard_refusal(self, node_id: int, shard_id: int) -> str:
        if self.replicates(node_id, shard_id):
            return ""
        return f"node {node_id} has no replica of shard {shard_id}"


def _node_of(identity: Identity | None) -> int | None:
    return identity.node_id if identity is not None else None


def _not_a_node(identity: Identity | None) -> str:
    shown = identity.uri if identity is not None else "no certificate"
    return f"only nodes may send peer traffic ({shown})"
