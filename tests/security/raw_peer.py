"""A hostile process's tools: Peer.Stream batches and Deliver calls from the generated stubs.

Rules of this module: it builds exactly the bytes security-probe.md describes, with
nothing from the node's own codec or guards (only the generated ``hongbao.proto.gen``
classes and the ledger's public command encoding, as a prober compiled from the .proto
files would), and sends them with a plain synchronous gRPC channel and no credentials.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import grpc

from hongbao.config.topology import Topology
from hongbao.ledger.commands import Batch, Deliver, Deposit, encode_batch, encode_command
from hongbao.ledger.records import CreditKind
from hongbao.node.server import cluster_id_of
from hongbao.proto.gen.hongbao.v1 import peer_pb2, peer_pb2_grpc, raft_pb2

MT = raft_pb2
STREAM_TIMEOUT_S = 5.0


def message(
    kind: int,
    *,
    to: int,
    from_: int,
    term: int = 0,
    log_term: int = 0,
    index: int = 0,
    commit: int = 0,
    entries: Sequence[raft_pb2.Entry] = (),
    snapshot: raft_pb2.Snapshot | None = None,
) -> raft_pb2.Message:
    pb = raft_pb2.Message(
        type=kind,  # type: ignore[arg-type]
        to=to,
        term=term,
        log_term=log_term,
        index=index,
        commit=commit,
        entries=entries,
        snapshot=snapshot,
    )
    setattr(pb, "from_", from_)  # noqa: B010  # the field's Python name
    return pb


def deposit_entry(
    *, term: int, index: int, user_id: str, amount_fen: int, ts_ms: int
) -> raft_pb2.Entry:
    """A log entry holding one Deposit, encoded as the ledger encodes its batches."""
    data = encode_batch(
        Batch(ts_ms=ts_ms, commands=(Deposit(f"forged-{index}", user_id, amount_fen),))
    )
    return raft_pb2.Entry(term=term, index=index, type=raft_pb2.ENTRY_TYPE_NORMAL, data=data)


def code_of(error: grpc.RpcError) -> grpc.StatusCode:
    """The status code of a failed call (UNKNOWN for an error that is not a call)."""
    return error.code() if isinstance(error, grpc.Call) else grpc.StatusCode.UNKNOWN


@dataclass
class StreamAnswer:
    acks: list[peer_pb2.RaftAck]
    code: grpc.StatusCode
    details: str


class Prober:
    """Sends raw peer traffic to the nodes of one topology, claiming any node id."""

    def __init__(self, topology: Topology) -> None:
        self.topology = topology
        self.cluster_id = cluster_id_of(topology)  # derivable from the file, as the probe says
        self._channels: dict[int, grpc.Channel] = {}

    def channel(self, node_id: int) -> grpc.Channel:
        if node_id not in self._channels:
            address = self.topology.node(node_id).address
            self._channels[node_id] = grpc.insecure_channel(address)
        return self._channels[node_id]

    def close(self) -> None:
        for channel in self._channels.values():
            channel.close()
        self._channels.clear()

    def batch(
        self,
        *,
        to: int,
        claiming: int,
        messages: Iterable[tuple[int, raft_pb2.Message]] = (),
        chunks: Iterable[peer_pb2.SnapshotChunk] = (),
        seq: int = 1,
    ) -> peer_pb2.RaftBatch:
        return peer_pb2.RaftBatch(
            cluster_id=self.cluster_id,
            from_node_id=claiming,
            to_node_id=to,
            batch_seq=seq,
            messages=[peer_pb2.ShardMessage(shard_id=s, message=m) for s, m in messages],
            snapshot_chunks=list(chunks),
        )

    def stream(self, to: int, batches: Sequence[peer_pb2.RaftBatch]) -> StreamAnswer:
        """Open one Peer.Stream to ``to``, send ``batches``, close; what came back."""
        stub = peer_pb2_grpc.PeerStub(self.channel(to))
        call = stub.Stream(iter(batches), timeout=STREAM_TIMEOUT_S)
        acks: list[peer_pb2.RaftAck] = []
        try:
            acks.extend(call)
        except grpc.RpcError as error:
            return StreamAnswer(acks, code_of(error), getattr(error, "details", lambda: "")())
        return StreamAnswer(acks, grpc.StatusCode.OK, "")

    def send(self, to: int, claiming: int, *pairs: tuple[int, raft_pb2.Message]) -> StreamAnswer:
        return self.stream(to, [self.batch(to=to, claiming=claiming, messages=pairs)])

    def deliver(
        self,
        to: int,
        *,
        claiming: int,
        source: int,
        destination: int,
        credits: Sequence[tuple[int, str, int]],
    ) -> grpc.StatusCode:
        """A Peer.Deliver of (seq, user, amount_fen) credits; its status code."""
        commands = [
            encode_command(
                Deliver(
                    source,
                    seq=seq,
                    user_id=user,
                    amount_fen=fen,
                    kind=CreditKind.TRANSFER,
                    ref=f"forged-{seq}",
                )
            )
            for seq, user, fen in credits
        ]
        request = peer_pb2.DeliverRequest(
            cluster_id=self.cluster_id,
            from_node_id=claiming,
            source_shard=source,
            destination_shard=destination,
            commands=commands,
        )
        try:
            peer_pb2_grpc.PeerStub(self.channel(to)).Deliver(request, timeout=STREAM_TIMEOUT_S)
        except grpc.RpcError as error:
            return code_of(error)
        return grpc.StatusCode.OK


def garbage_snapshot_chunk(
    *, shard_id: int, to: int, from_: int, term: int, index: int, size_bytes: int = 4096
) -> peer_pb2.SnapshotChunk:
    """One last chunk: a right size and CRC-32, a SNAP message, and garbage for a payload."""
    payload = bytes(range(256)) * (size_bytes // 256)
    snap = message(
        MT.MESSAGE_TYPE_SNAP,
        to=to,
        from_=from_,
        term=term,
        snapshot=raft_pb2.Snapshot(
            meta=raft_pb2.SnapshotMeta(
                index=index, term=term, conf_state=raft_pb2.ConfState(voters=[1, 2, 3])
            )
        ),
    )
    return peer_pb2.SnapshotChunk(
        shard_id=shard_id,
        snapshot_index=index,
        snapshot_term=term,
        offset=0,
        data=payload,
        last=True,
        total_size_bytes=len(payload),
        crc32=zlib.crc32(payload),
        message=snap,
    )
