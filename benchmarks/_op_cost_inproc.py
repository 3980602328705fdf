"""The in-process half of ``benchmarks/op_cost.py``: each stage's real code, timed alone.

Why in-process: CPU time of one thread (``time.thread_time_ns``) around one stage's real
code is deterministic enough to compare before and after a change, where whole-process
figures mix in gRPC, asyncio and the idle loop. Three real :class:`NodeRuntime` objects
(real LMDB environments in a temporary directory, fsync as asked, the real Raft cores, log
storage and ledger) run in this one thread; their Raft messages go through the real peer
codec (``RaftBatch`` encode and decode) instead of a socket. Node 1 leads every shard, so
the courier hands credits over locally; the Peer.Deliver encoding it would pay for a
remote destination is timed on the same commands separately.

Stages are timed by wrapping the real functions of these objects (instance attributes
only: nothing global is patched): ``machine.apply_entry`` (leader or follower),
``machine.encode_entry``, ``machine.evaluate`` (a ledger leader, once per entry),
``log.append``, the commit part of ``env.write_batch`` and ``runtime.cycle``; "Raft core
and cycle" is the cycle's time less what was timed inside it. The client, router, gRPC
decode, validation and result encoding stages run the real functions on the same
operations in loops of their own.
"""

from __future__ import annotations

import asyncio
import functools
import random
import sys
import tempfile
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from time import thread_time_ns
from typing import Any

from _op_cost_ops import (
    FakeLinks,
    OpSpec,
    build_operation,
    leader_decode,
    make_forwarder,
    make_specs,
    result_encoding,
    run_router,
    sample_answer,
    validation,
)

from hongbao.config.topology import Topology, load_topology
from hongbao.ledger import outbox
from hongbao.ledger.commands import Command, Deposit, SendEnvelope, encode_command
from hongbao.ledger.records import EnvelopeKind, OutboxEntry
from hongbao.ledger.results import (
    EnvelopeCreated,
    Ok,
    Result,
)
from hongbao.ledger.sharding import shard_for_user
from hongbao.ledger.store import LedgerStore
from hongbao.node import ledger_api as api
from hongbao.node.codec import batch_from_proto, batch_to_proto
from hongbao.node.courier import Courier, decode_deliveries
from hongbao.node.ledger_service import LedgerFront
from hongbao.node.replica import ShardReplica
from hongbao.node.runtime import NodeRuntime
from hongbao.node.storage import NodeEnv, WriteBatch
from hongbao.node.storage._env import Durability
from hongbao.node.transport import TransportLimits
from hongbao.proto.gen.hongbao.v1 import ledger_pb2, peer_pb2
from hongbao.raft.types import Message

LEADER = 1
PENDING_MAX = 1_000_000  # outbox entries read at once for the Peer.Deliver encoding
WARM_UP_OPS = 100  # per kind, before each run's measured ones
ROUNDS_MAX = 100_000  # cycles of all nodes before a pump gives up (a stuck group)
FUND_FEN = 5_000_000  # configs/local.toml amount_max_fen: one deposit at most
ENVELOPE_SHARES = 100
ENVELOPE_TOTAL_FEN = ENVELOPE_SHARES * 100

STAGES: tuple[str, ...] = (
    "client encode + decode",
    "router (parse, split, reassemble)",
    "gRPC decode on the leader",
    "validation on the leader",
    "queueing on the leader (submit)",
    "proposal: evaluation and encoding (leader, once)",
    "Raft core and cycle, leader",
    "Raft core and cycle, followers",
    "log append (3 replicas)",
    "peer transport encode/decode",
    "apply on the leader",
    "apply on follower (node 2)",
    "apply on follower (node 3)",
    "result encoding on the leader",
    "LMDB commit, leader",
    "LMDB commit, followers",
    "courier Peer.Deliver encode/decode",
    "courier rounds (outbox, Deliver, Acknowledge)",
)


@dataclass
class Meter:
    """Nanoseconds of thread CPU by (node, what); node 0 is work outside any node."""

    ns: dict[tuple[int, str], int] = field(default_factory=dict)

    def add(self, node: int, what: str, ns: int) -> None:
        self.ns[(node, what)] = self.ns.get((node, what), 0) + ns

    def of(self, node: int, what: str) -> int:
        return self.ns.get((node, what), 0)


class Cluster:
    """Three node runtimes in this thread, messages carried by the real peer codec."""

    def __init__(self, topology: Topology, root: Path, *, fsync: bool) -> None:
        durability = Durability.FSYNC if fsync else Durability.NO_FSYNC
        self.meter = Meter()
        self.runtimes: dict[int, NodeRuntime] = {}
        self.queued: dict[int, list[tuple[int, int, Message]]] = {}
        self._batch_seq = 0
        for spec in topology.nodes:
            node = int(spec.node_id)
            env = NodeEnv(root / f"node-{node}", durability=durability)
            runtime = NodeRuntime(
                topology=topology, node_id=node, env=env, ledger_limits=topology.limits
            )
            self.runtimes[node] = runtime
            self.queued[node] = []
            runtime.send = self._sender(node)
            self._instrument(node, runtime)

    def _sender(self, node: int) -> Callable[[int, int, Message], None]:
        def send(to: int, shard: int, message: Message) -> None:
            self.queued[node].append((to, shard, message))

        return send

    def _instrument(self, node: int, runtime: NodeRuntime) -> None:
        timed(runtime, "cycle", lambda: (node, "cycle"), self)
        _time_commits(runtime.env, node, self)
        for replica in runtime.replicas.values():
            timed(replica.machine, "apply_entry", _role(node, replica), self)
            timed(replica.machine, "encode_entry", lambda: (node, "encode"), self)
            timed(replica.machine, "evaluate", lambda: (node, "evaluate"), self)
            timed(replica.log, "append", lambda: (node, "append"), self)

    def close(self) -> None:
        for runtime in self.runtimes.values():
            runtime.env.close()

    # -- driving ---------------------------------------------------------------------------

    def round(self) -> None:
        """One cycle of every node, each followed by the delivery of what it sent."""
        for node, runtime in self.runtimes.items():
            runtime.cycle(0)
            self._flush(node)

    def _flush(self, sender: int) -> None:
        messages, self.queued[sender] = self.queued[sender], []
        if not messages:
            return
        started = thread_time_ns()
        by_destination: dict[int, list[tuple[int, Message]]] = {}
        for to, shard, message in messages:
            by_destination.setdefault(to, []).append((shard, message))
        decoded = []
        for to, pairs in by_destination.items():
            self._batch_seq += 1
            wire = batch_to_proto(
                cluster_id="op-cost", from_node_id=sender, to_node_id=to,
                batch_seq=self._batch_seq, messages=pairs,
            ).SerializeToString()  # fmt: skip
            decoded.append((to, batch_from_proto(peer_pb2.RaftBatch.FromString(wire))))
        self.meter.add(0, "transport", thread_time_ns() - started)
        for to, items in decoded:
            for shard, message in items:
                self.runtimes[to].deliver(shard, message)

    def settled(self) -> bool:
        """Nothing queued or in flight, and every replica applied what its leader did."""
        if any(self.queued.values()) or any(r._inbound for r in self.runtimes.values()):
            return False
        leader = self.runtimes[LEADER]
        for shard, replica in leader.groups.items():
            if replica.pending or replica.inflight:
                return False
            index = replica.core.applied_index
            if any(r.groups[shard].core.applied_index != index for r in self.runtimes.values()):
                return False
        return True

    def pump(self) -> None:
        for _ in range(ROUNDS_MAX):
            self.round()
            if self.settled():
                return
        raise RuntimeError("the in-process cluster never settled")

    def elect(self) -> None:
        leader = self.runtimes[LEADER]
        for replica in leader.groups.values():
            replica.core.campaign()
        for _ in range(ROUNDS_MAX):
            self.round()
            if all(r.is_leader for r in leader.groups.values()) and self.settled():
                return
        raise RuntimeError(f"node {LEADER} did not win every election")

    def run_commands(self, commands: Sequence[tuple[int, Command]]) -> list[Result]:
        """Submit (shard, command) pairs on the leader and pump until all are answered."""
        leader = self.runtimes[LEADER]
        futures = [leader.submit(shard, command) for shard, command in commands]
        self.pump()
        return [future.result() for future in futures]


def _role(node: int, replica: ShardReplica) -> Callable[[], tuple[int, str]]:
    """The meter key of an apply: leader or follower, as the replica is when it applies."""
    return lambda: (node, "apply leader" if replica.is_leader else "apply follower")


def timed(owner: object, name: str, key: Callable[[], tuple[int, str]], cluster: Cluster) -> None:
    """Replace ``owner.name`` (an instance attribute) with a wrapper that meters it."""
    original = getattr(owner, name)

    def wrapper(*args: Any, **kwargs: Any) -> Any:
        started = thread_time_ns()
        try:
            return original(*args, **kwargs)
        finally:
            node, what = key()
            cluster.meter.add(node, what, thread_time_ns() - started)

    setattr(owner, name, wrapper)


def _time_commits(env: NodeEnv, node: int, cluster: Cluster) -> None:
    """Meter the commit (and sync) that ends each write batch: the code after its yield."""
    original = env.write_batch

    @contextmanager
    def write_batch(*, sync: bool = False) -> Iterator[WriteBatch]:
        manager = original(sync=sync)
        batch = manager.__enter__()
        try:
            yield batch
        except BaseException:
            manager.__exit__(*sys.exc_info())
            raise
        started = thread_time_ns()
        manager.__exit__(None, None, None)
        cluster.meter.add(node, "commit", thread_time_ns() - started)

    setattr(env, "write_batch", write_batch)  # noqa: B010  # an instance attribute only


# -- one kind ---------------------------------------------------------------------------------


@dataclass
class KindRun:
    """What one kind's in-process measurement produced: CPU ns by stage, and shapes."""

    ns: dict[str, int]
    ops: int
    entries: int
    courier_detail_ns: dict[str, int]


def _fund(cluster: Cluster, users: Sequence[str], shard_count: int) -> None:
    commands: list[tuple[int, Command]] = [
        (shard_for_user(u, shard_count), Deposit(f"fund-{u}", u, FUND_FEN)) for u in users
    ]
    for start in range(0, len(commands), 2000):
        _all_ok(cluster.run_commands(commands[start : start + 2000]), "funding")


def _send_envelopes(cluster: Cluster, senders: Sequence[str], count: int, shard_count: int,
                    tag: str) -> list[str]:  # fmt: skip
    commands: list[tuple[int, Command]] = []
    for i in range(count):
        sender = senders[i % len(senders)]
        send = SendEnvelope(f"env-{tag}-{i}", sender, EnvelopeKind.LUCKY, ENVELOPE_TOTAL_FEN,
                            ENVELOPE_SHARES)  # fmt: skip
        commands.append((shard_for_user(sender, shard_count), send))
    results = cluster.run_commands(commands)
    _all_ok(results, "sending envelopes")
    return [api.expect(r.data, EnvelopeCreated).envelope_id for r in results if isinstance(r, Ok)]


def _all_ok(results: Sequence[Result], what: str) -> None:
    refused = [r for r in results if not isinstance(r, Ok)]
    if refused:
        raise RuntimeError(f"{len(refused)} commands refused while {what}: {refused[0]}")


async def measure_kind(cluster: Cluster, topology: Topology, kind: str, ops: int, batch: int,
                       seed: int) -> KindRun:  # fmt: skip
    """Every stage of ``ops`` operations of ``kind`` in client batches of ``batch``."""
    shard_count = topology.shard_count
    rng = random.Random(seed)
    plan = make_specs(kind, ops, shard_count, rng, tag=f"r{seed}")
    _fund(cluster, plan.payers, shard_count)
    envelopes = (
        _send_envelopes(cluster, plan.payers, plan.envelopes, shard_count, f"r{seed}")
        if plan.envelopes else []
    )  # fmt: skip
    specs = plan.bind(envelopes, rng)
    cluster.meter = Meter()
    ns: dict[str, int] = {}
    raws, client_ns = _client_encode(specs, batch)
    links = FakeLinks(sample_answer(kind))
    forwarder = make_forwarder(topology, links)
    ns["router (parse, split, reassemble)"], answers = await run_router(forwarder, raws, links)
    started = thread_time_ns()
    for answer in answers:
        ledger_pb2.ExecuteResponse.FromString(answer)
    ns["client encode + decode"] = client_ns + thread_time_ns() - started
    front = LedgerFront(cluster.runtimes[LEADER])
    decoded, ns["gRPC decode on the leader"] = leader_decode(links.requests)
    ns["validation on the leader"] = validation(front, decoded)
    results, ns["queueing on the leader (submit)"], entries = _replicate(cluster, front, decoded,
                                                                         batch)  # fmt: skip
    ns["result encoding on the leader"] = result_encoding(decoded, results)
    _stage_rows(cluster.meter, ns)
    ns["courier Peer.Deliver encode/decode"] = _deliver_wire(cluster, topology)
    courier_meter = Meter()
    cluster.meter = courier_meter
    ns["courier rounds (outbox, Deliver, Acknowledge)"] = await _courier_rounds(cluster)
    detail = {f"{what} (node {node})": v for (node, what), v in courier_meter.ns.items()}
    return KindRun(ns, len(specs), entries, detail)


def _client_encode(specs: Sequence[OpSpec], batch: int) -> tuple[list[bytes], int]:
    raws: list[bytes] = []
    started = thread_time_ns()
    for start in range(0, len(specs), batch):
        operations = [build_operation(spec) for spec in specs[start : start + batch]]
        raws.append(ledger_pb2.ExecuteRequest(operations=operations).SerializeToString())
    return raws, thread_time_ns() - started


def _replicate(cluster: Cluster, front: LedgerFront, decoded: list[list[Command]],
               batch: int) -> tuple[list[list[Result]], int, int]:  # fmt: skip
    """Submit the parts a round at a time (about ``batch`` commands per shard per round, as
    a leader packs concurrent calls), pump each round; (results, submit ns, entries)."""
    leader = cluster.runtimes[LEADER]
    proposals_before = sum(r.proposals_total for r in leader.replicas.values())
    per_round = max(1, len(front.runtime.replicas) * batch)
    results: list[list[Result]] = []
    submit_ns = 0
    round_parts: list[list[Command]] = []
    queued = 0
    for index, commands in enumerate(decoded):
        round_parts.append(commands)
        queued += len(commands)
        if queued < per_round and index + 1 < len(decoded):
            continue
        routed = [[(front.command_shard(c), c) for c in part] for part in round_parts]
        started = thread_time_ns()  # the routing was timed with the validation
        futures = [[leader.submit(shard, c) for shard, c in part] for part in routed]
        submit_ns += thread_time_ns() - started
        cluster.pump()
        results.extend([f.result() for f in part] for part in futures)
        round_parts, queued = [], 0
    for part in results:
        _all_ok(part, "replicating")
    entries = sum(r.proposals_total for r in leader.replicas.values()) - proposals_before
    return results, submit_ns, entries


def _stage_rows(meter: Meter, ns: dict[str, int]) -> None:
    """The runtime's wrapped timings as report rows (node 1 leads; 2 and 3 follow)."""
    for node in (1, 2, 3):
        inner = sum(meter.of(node, w) for w in ("apply leader", "apply follower", "encode",
                                                "evaluate", "append", "commit"))  # fmt: skip
        rest = meter.of(node, "cycle") - inner
        row = "Raft core and cycle, leader" if node == LEADER else "Raft core and cycle, followers"
        ns[row] = ns.get(row, 0) + rest
        commit_row = "LMDB commit, leader" if node == LEADER else "LMDB commit, followers"
        ns[commit_row] = ns.get(commit_row, 0) + meter.of(node, "commit")
        ns["log append (3 replicas)"] = ns.get("log append (3 replicas)", 0) + meter.of(
            node, "append"
        )
        if node != LEADER:
            ns[f"apply on follower (node {node})"] = meter.of(node, "apply follower")
    ns["apply on the leader"] = meter.of(LEADER, "apply leader")
    # A ledger leader evaluates each batch once and encodes its effects (state_machine.py);
    # what the followers and the leader then pay is the apply rows: writing those effects.
    ns["proposal: evaluation and encoding (leader, once)"] = meter.of(
        LEADER, "encode"
    ) + meter.of(LEADER, "evaluate")
    ns["peer transport encode/decode"] = meter.of(0, "transport")


def _deliver_wire(cluster: Cluster, topology: Topology) -> int:
    """Peer.Deliver's encoding of every pending credit, as a remote destination needs it."""
    leader = cluster.runtimes[LEADER]
    limit = topology.limits.outbox_batch_max
    total_ns = 0
    for source in leader.replicas:
        for destination in leader.query(source, outbox.outbox_destinations):
            entries = leader.query(source, functools.partial(_all_pending, destination))
            started = thread_time_ns()
            for start in range(0, len(entries), limit):
                commands = [outbox.deliver_command(e) for e in entries[start : start + limit]]
                wire = peer_pb2.DeliverRequest(
                    cluster_id="op-cost", from_node_id=LEADER, source_shard=source,
                    destination_shard=destination,
                    commands=[encode_command(c) for c in commands],
                ).SerializeToString()  # fmt: skip
                decode_deliveries(peer_pb2.DeliverRequest.FromString(wire))
            total_ns += thread_time_ns() - started
    return total_ns


def _all_pending(destination: int, store: LedgerStore) -> list[OutboxEntry]:
    return outbox.pending_outbox(store, destination, PENDING_MAX)


async def _courier_rounds(cluster: Cluster) -> int:
    """The real courier (its round per led shard) until every outbox is empty: all CPU but
    this benchmark's own checks of whether the outboxes are empty yet."""
    leader = cluster.runtimes[LEADER]
    courier = Courier(leader, TransportLimits())
    checks_ns = 0

    def outboxes_empty() -> bool:
        nonlocal checks_ns
        started = thread_time_ns()
        empty = not any(leader.query(s, outbox.outbox_destinations) for s in leader.replicas)
        checks_ns += thread_time_ns() - started
        return empty

    started = thread_time_ns()
    for _ in range(ROUNDS_MAX):
        if outboxes_empty():
            return thread_time_ns() - started - checks_ns
        courier.round()  # one courier round, as Courier.run does every 20 ms
        while courier._tasks:
            cluster.round()
            await asyncio.sleep(0)
        cluster.pump()
    raise RuntimeError("the outboxes never drained")


async def run_inprocess(config: Path, kinds: Sequence[str], ops: int, batch: int, seed: int,
                        *, fsync: bool) -> dict[str, KindRun]:  # fmt: skip
    """One run: a fresh in-process cluster, every kind in turn."""
    topology = load_topology(config)
    with tempfile.TemporaryDirectory(prefix="hongbao-op-cost-") as root:
        cluster = Cluster(topology, Path(root), fsync=fsync)
        try:
            cluster.elect()
            for i, kind in enumerate(kinds):  # first calls (caches, imports) are not measured
                await measure_kind(cluster, topology, kind, WARM_UP_OPS, batch, seed + 10 * i + 5)
            return {k: await measure_kind(cluster, topology, k, ops, batch, seed + 10 * i)
                    for i, k in enumerate(kinds)}  # fmt: skip
        finally:
            cluster.close()
