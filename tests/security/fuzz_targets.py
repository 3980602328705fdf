"""What the fuzzer feeds bytes into: the very functions the node runs on peer and client input.

Rules of this module: each target takes raw bytes, runs them through the node's own code
(the Peer servicer's per-batch path over a real Raft core, Peer.Deliver's checks over a
real ledger, the ledger API's request decoding, the state machine's apply), and records
in :data:`TALLY` what happened. A *crash* is any exception escaping code that must
refuse rather than raise; a *stop* is a core that raised on a message the guard admitted
(the runtime would have logged STEP_FAILED); a *state change on refusal* is a refused
input after which the state differs from before. All three must stay 0.
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, replace

from google.protobuf.message import DecodeError

from hongbao.ledger import machine
from hongbao.ledger.audit import audit
from hongbao.ledger.commands import (
    Batch,
    Deposit,
    Transfer,
    decode_batch,
    encode_batch,
    encode_command,
)
from hongbao.ledger.outbox import deliver_command, pending_outbox
from hongbao.ledger.records import ShardState
from hongbao.ledger.results import Rejected
from hongbao.ledger.store import MemoryStore
from hongbao.node import codec
from hongbao.node import ledger_api as api
from hongbao.node.courier import decode_deliveries
from hongbao.node.deliver_guard import credits_to_apply
from hongbao.node.errors import HongbaoError
from hongbao.node.peer_guard import (
    PeerGuard,
    Refusal,
    RefusalLog,
    snapshot_problem,
    step_checked,
)
from hongbao.node.transport import PeerServicer, TransportLimits
from hongbao.proto.gen.hongbao.v1 import ledger_pb2, peer_pb2
from hongbao.raft.config import RaftConfig
from hongbao.raft.core import RaftCore
from hongbao.raft.storage import MemoryStorage
from hongbao.raft.types import ConfState, Message, NodeId
from tests.ledger.helpers import Cluster, money_view

TALLY: Counter[str] = Counter()
CLUSTER_ID = "fuzz"
ME = 1


def kept(store: MemoryStore) -> tuple[object, ...]:
    """What a refusal must leave as it was: ``money_view``, less the count of malformed
    entries (a skipped entry is counted, on every replica alike, by design)."""
    *tables, state = money_view(store)
    assert isinstance(state, ShardState)
    return (*tables, replace(state, malformed_entries=0))


def _crash(target: str, error: BaseException) -> None:
    TALLY["crashes"] += 1
    TALLY[f"crash:{target}:{type(error).__name__}"] += 1


# -- the Peer stream -------------------------------------------------------------------------


@dataclass
class _Events:
    core: RaftCore
    refusals: RefusalLog
    delivered: int = 0

    def deliver(self, shard_id: int, message: Message) -> None:
        self.delivered += 1
        step_checked(self.core, shard_id, message, self.refusals)  # as the runtime steps

    def unreachable(self, peer_id: int) -> None: ...

    def heard(self, peer_id: int) -> None: ...

    def snapshot_done(self, shard_id: int, peer_id: int, *, ok: bool) -> None: ...


class PeerNode:
    """Node 1's receiving side for shard 0 (voters 1, 2, 3): servicer, guard, real core."""

    def __init__(self, seed: int = 0) -> None:
        conf = ConfState(voters=frozenset(NodeId(n) for n in (1, 2, 3)))
        config = RaftConfig(node_id=NodeId(ME), election_timeout_ticks=10)
        self.core = RaftCore(config, MemoryStorage(conf), random.Random(seed))
        self.refusals = RefusalLog()
        self.guard = PeerGuard(
            node_id=ME,
            cores=lambda shard_id: self.core if shard_id == 0 else None,
            election_timeout_ms=300,
            refusals=self.refusals,
        )
        self.events = _Events(self.core, self.refusals)
        self.servicer = PeerServicer(
            node_id=ME,
            cluster_id=CLUSTER_ID,
            limits=TransportLimits(
                snapshot_size_bytes_max=1 << 16, snapshot_staging_bytes_max=1 << 16
            ),
            events=self.events,
            is_known_peer=lambda n: n in (1, 2, 3),
            guard=self.guard,
        )

    def state(self) -> tuple[object, ...]:
        return (self.core.term, self.core.role, self.core.leader_id, self.core.last_index)


def feed_peer_batch(node: PeerNode, data: bytes) -> None:
    """One RaftBatch's bytes through the servicer's checks, as ``PeerServicer.Stream`` does."""
    TALLY["peer_batches"] += 1
    try:
        batch = peer_pb2.RaftBatch.FromString(data)
    except DecodeError:
        TALLY["refused"] += 1  # gRPC answers INVALID_ARGUMENT (DecodeErrorInterceptor)
        return
    before, delivered_before = node.state(), node.events.delivered
    step_failures = node.refusals.count(Refusal.STEP_FAILED)
    try:
        if node.servicer._refusal(batch, None) is not None:
            TALLY["refused"] += 1
        else:
            sender = int(batch.from_node_id)
            node.servicer._deliver_messages(sender, batch)
            assembler = codec.SnapshotAssembler(
                snapshot_size_bytes_max=1 << 16,
                budget=node.servicer.staging,
                verify=snapshot_problem,
            )
            for chunk in batch.snapshot_chunks:
                node.servicer._accept_chunk(sender, chunk, assembler)
            assembler.close()
    except Exception as error:  # the tally is the assertion
        _crash("peer_batch", error)
        return
    if node.refusals.count(Refusal.STEP_FAILED) != step_failures:
        TALLY["stops"] += 1
    if node.events.delivered == delivered_before and node.state() != before:
        TALLY["state_changes_on_refusal"] += 1
    if node.servicer.staging.reserved_bytes != 0:
        TALLY["staging_leaks"] += 1


# -- Peer.Deliver ----------------------------------------------------------------------------


class _LedgerRuntime:
    """Enough of NodeRuntime for deliver_guard: node 1 leads shard 0 and hosts shard 1."""

    def __init__(self, cluster: Cluster) -> None:
        self.cluster = cluster
        self.node_id = ME
        self.replicas = {0: object(), 1: object()}
        self.topology = _Topology(cluster)

    def leader_of(self, shard_id: int) -> int:
        return 2  # node 2 leads the source shard 1

    def query(self, shard_id: int, function: Callable[[object], object]) -> object:
        return function(self.cluster.stores[shard_id])


class _Topology:
    def __init__(self, cluster: Cluster) -> None:
        self.shard_count = cluster.shard_count
        self.limits = cluster.limits

    def replicas_of(self, shard_id: int) -> tuple[int, ...]:
        return (1, 2, 3)


def deliver_world() -> tuple[Cluster, list[bytes]]:
    """Shard 1 owes shard 0 three credits; the real Deliver commands, encoded."""
    cluster = Cluster(shard_count=2)
    (payer,) = cluster.users(1, 1, "payer")
    payees = cluster.users(0, 3, "payee")
    cluster.one(1, Deposit(cluster.rid(), payer, 1_000))
    for payee in payees:
        cluster.one(1, Transfer(cluster.rid(), payer, payee, 100))
    commands = [
        encode_command(deliver_command(e)) for e in pending_outbox(cluster.stores[1], 0, 10)
    ]
    return cluster, commands


def feed_deliver(cluster: Cluster, data: bytes) -> None:
    """A DeliverRequest's bytes through Peer.Deliver's checks; admitted credits applied."""
    TALLY["delivers"] += 1
    try:
        request = peer_pb2.DeliverRequest.FromString(data)
    except DecodeError:
        TALLY["refused"] += 1
        return
    before = kept(cluster.stores[0])
    runtime = _LedgerRuntime(cluster)
    try:
        commands = decode_deliveries(request)
        fresh = credits_to_apply(runtime, request, commands, RefusalLog())  # type: ignore[arg-type]
    except HongbaoError:
        TALLY["refused"] += 1
        if kept(cluster.stores[0]) != before:
            TALLY["state_changes_on_refusal"] += 1
        return
    except Exception as error:
        _crash("deliver", error)
        return
    if fresh:
        cluster.apply(0, *fresh)
        TALLY["delivers_admitted"] += 1
    report = machine_audit(cluster)
    if report:
        TALLY["money_from_nothing"] += 1


def machine_audit(cluster: Cluster) -> list[str]:
    report = audit(cluster.stores, deep=False)
    return [] if report.ok else list(report.problems)


# -- ledger requests and commands ------------------------------------------------------------

_REQUESTS = (
    (ledger_pb2.DepositRequest, api.deposit_command),
    (ledger_pb2.WithdrawRequest, api.withdraw_command),
    (ledger_pb2.TransferRequest, api.transfer_command),
    (ledger_pb2.SendRequest, api.send_command),
    (ledger_pb2.GrabRequest, api.grab_command),
)


def feed_ledger_request(cluster: Cluster, kind: int, data: bytes) -> None:
    """Request bytes decoded and translated as the ledger service does, then applied."""
    TALLY["ledger_requests"] += 1
    request_type, translate = _REQUESTS[kind % len(_REQUESTS)]
    try:
        request = request_type.FromString(data)
    except DecodeError:
        TALLY["refused"] += 1
        return
    try:
        command = translate(request)  # type: ignore[arg-type]
    except HongbaoError:
        TALLY["refused"] += 1
        return
    except Exception as error:
        _crash("ledger_request", error)
        return
    feed_ledger_commands(cluster, encode_batch(Batch(ts_ms=cluster.now_ms, commands=(command,))))


def feed_ledger_commands(cluster: Cluster, data: bytes) -> None:
    """One committed log entry's bytes applied to shard 0, as every replica applies it."""
    TALLY["ledger_entries"] += 1
    store = cluster.stores[0]
    before = kept(store)
    cluster.log_index[0] += 1
    try:
        applied = machine.apply_entry(store, index=cluster.log_index[0], data=data)
    except Exception as error:
        _crash("ledger_entry", error)
        return
    refused = applied.malformed is not None or all(isinstance(r, Rejected) for r in applied.results)
    if refused:
        TALLY["refused"] += 1
        if kept(store) != before:
            TALLY["state_changes_on_refusal"] += 1
    if machine_audit(cluster):
        TALLY["money_from_nothing"] += 1


def valid_batch_bytes(commands: int = 2) -> bytes:
    return encode_batch(
        Batch(
            ts_ms=1_800_000_000_000,
            commands=tuple(Deposit(f"r{n}", "fuzz-user", 100) for n in range(commands)),
        )
    )


assert decode_batch(valid_batch_bytes())  # the seed entry decodes
