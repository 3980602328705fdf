"""The operations ``benchmarks/op_cost.py`` measures, and the router stage's stand-in node.

Why here: both halves of the benchmark (in-process stages and the end-to-end cluster) must
send the same operations: deposits to random users, transfers between two users of one
shard or of two shards, grabs of lucky envelopes of 100 shares by users of every shard (so
most grabs credit another shard, as in production). Users are picked per shard from a
pool, so a kind's shape does not depend on the luck of the hash.
"""

from __future__ import annotations

import math
import random
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from time import thread_time_ns
from typing import Any

from hongbao.client.routing import Deadline, Routing
from hongbao.config.topology import Topology
from hongbao.ledger.commands import Command, Deposit
from hongbao.ledger.results import AccountView, GrabReceipt, Ok, Result, TransferReceipt
from hongbao.ledger.sharding import shard_for_user
from hongbao.ledger.validate import validate
from hongbao.node import ledger_api as api
from hongbao.node.ledger_service import LedgerFront
from hongbao.proto.gen.hongbao.v1 import ledger_pb2
from hongbao.router import wire
from hongbao.router.forward import Forwarder

KINDS = ("deposit", "transfer-same-shard", "transfer-cross-shard", "grab")
USERS_PER_SHARD = 16
GRABBERS = 100  # one envelope's shares: every grabber grabs every envelope once
ENVELOPE_SHARES = 100
DEPOSIT_FEN = 100
TRANSFER_FEN = 1
ROUTER_DEADLINE_MS = 60_000.0


@dataclass(frozen=True, slots=True)
class OpSpec:
    """One operation before it is a protobuf: ``other`` is the payee or the envelope id."""

    kind: str  # deposit | transfer | grab
    request_id: str
    user_id: str
    other: str = ""


@dataclass
class Plan:
    """A kind's users, what to prepare (funded payers, envelopes), and how to pick ops."""

    kind: str
    ops: int
    pools: list[list[str]]  # users of each shard
    payers: list[str] = field(default_factory=list)  # to fund before the measured ops
    envelopes: int = 0  # envelopes to send (by the payers) before the grabs
    grabbers: list[str] = field(default_factory=list)

    def bind(self, envelope_ids: Sequence[str], rng: random.Random) -> list[OpSpec]:
        """The ``ops`` operations, given the envelopes sent for a grab run."""
        ids = [uuid.UUID(int=rng.getrandbits(128)).hex for _ in range(self.ops)]
        shards = len(self.pools)
        if self.kind == "grab":
            grabs = [(e, g) for e in envelope_ids for g in self.grabbers][: self.ops]
            rng.shuffle(grabs)
            return [OpSpec("grab", i, g, e) for i, (e, g) in zip(ids, grabs, strict=True)]
        specs = []
        for request_id in ids:
            shard = rng.randrange(shards)
            user = rng.choice(self.pools[shard])
            if self.kind == "deposit":
                specs.append(OpSpec("deposit", request_id, user))
                continue
            if self.kind == "transfer-same-shard":
                payee = rng.choice([u for u in self.pools[shard] if u != user])
            else:
                other = rng.choice([s for s in range(shards) if s != shard])
                payee = rng.choice(self.pools[other])
            specs.append(OpSpec("transfer", request_id, user, payee))
        return specs


def user_pools(shard_count: int, per_shard: int, tag: str) -> list[list[str]]:
    """``per_shard`` user ids on each shard, named after ``tag`` (fresh users per run)."""
    pools: list[list[str]] = [[] for _ in range(shard_count)]
    counter = 0
    while min(len(p) for p in pools) < per_shard:
        user = f"oc-{tag}-{counter}"
        counter += 1
        pool = pools[shard_for_user(user, shard_count)]
        if len(pool) < per_shard:
            pool.append(user)
    return pools


def make_specs(kind: str, ops: int, shard_count: int, rng: random.Random, *, tag: str) -> Plan:
    pools = user_pools(shard_count, USERS_PER_SHARD, f"{tag}-{kind}")
    if kind == "deposit":
        return Plan(kind, ops, pools)
    if kind.startswith("transfer"):
        payers = [u for pool in pools for u in pool]
        return Plan(kind, ops, pools, payers=payers)
    if kind != "grab":
        raise ValueError(f"unknown kind {kind!r}")
    everyone = [u for pool in pools for u in pool]
    senders = [pool[0] for pool in pools]  # one per shard: envelopes on every shard
    grabbers = rng.sample([u for u in everyone if u not in senders], GRABBERS)
    envelopes = math.ceil(ops / GRABBERS)
    return Plan(kind, ops, pools, payers=senders, envelopes=envelopes, grabbers=grabbers)


def build_operation(spec: OpSpec) -> ledger_pb2.Operation:
    """The client's protobuf for ``spec`` (what the SDK user builds)."""
    if spec.kind == "deposit":
        deposit = ledger_pb2.DepositRequest(
            request_id=spec.request_id, user_id=spec.user_id, amount_fen=DEPOSIT_FEN
        )
        return ledger_pb2.Operation(deposit=deposit)
    if spec.kind == "transfer":
        transfer = ledger_pb2.TransferRequest(
            request_id=spec.request_id, from_user_id=spec.user_id, to_user_id=spec.other,
            amount_fen=TRANSFER_FEN,
        )  # fmt: skip
        return ledger_pb2.Operation(transfer=transfer)
    grab = ledger_pb2.GrabRequest(
        request_id=spec.request_id, envelope_id=spec.other, user_id=spec.user_id
    )
    return ledger_pb2.Operation(grab=grab)


def sample_answer(kind: str) -> bytes:
    """One OperationResult of ``kind`` as a leader answers it (the stand-in node's reply)."""
    result = ledger_pb2.OperationResult()
    if kind == "deposit":
        result.deposit.CopyFrom(ledger_pb2.DepositResponse(balance_fen=123_456))
    elif kind.startswith("transfer"):
        result.transfer.CopyFrom(
            ledger_pb2.TransferResponse(from_balance_fen=9_999_000, cross_shard=True)
        )
    else:
        result.grab.CopyFrom(
            ledger_pb2.GrabResponse(amount_fen=87, ordinal=42, remaining_count=58, cross_shard=True)
        )
    return result.SerializeToString()


class FakeLinks:
    """The router's node links with a stand-in node: answers every part at once with one
    ready-made result per operation, cached per request bytes (so the timed pass pays only
    a dict lookup), and records the parts it was sent (the leaders' input)."""

    def __init__(self, sample: bytes) -> None:
        self.sample = sample
        self.cache: dict[bytes, bytes] = {}
        self.requests: list[bytes] = []
        self.recording = False

    async def forward_while_alive(
        self, node_id: int, path: str, raw: bytes, *, timeout_s: float, silent_s: float
    ) -> bytes:
        if self.recording:
            self.requests.append(raw)
        answer = self.cache.get(raw)
        if answer is None:
            count = len(wire.repeated_messages(raw, 1))
            answer = wire.repeated_field(1, [self.sample] * count)
            self.cache[raw] = answer
        return answer

    async def forward(self, node_id: int, path: str, raw: bytes, timeout_s: float) -> bytes:
        return await self.forward_while_alive(
            node_id, path, raw, timeout_s=timeout_s, silent_s=timeout_s
        )


def make_forwarder(topology: Topology, links: FakeLinks) -> Forwarder:
    """The router's real Forwarder (routing, retries, split, reassembly) over ``links``."""
    routing = Routing(topology, topology.router, region=topology.regions[0].name)
    fake: Any = links  # duck-typed NodeLinks: the two methods the Forwarder calls
    return Forwarder(routing, fake, topology.router, topology.limits)


async def run_router(
    forwarder: Forwarder, raws: Sequence[bytes], links: FakeLinks
) -> tuple[int, list[bytes]]:
    """CPU ns of Forwarder.batch over every client batch (after a warm pass), and answers."""
    for raw in raws:
        await forwarder.batch(raw, Deadline(ROUTER_DEADLINE_MS))
    links.recording = True
    started = thread_time_ns()
    answers = [await forwarder.batch(raw, Deadline(ROUTER_DEADLINE_MS)) for raw in raws]
    elapsed_ns = thread_time_ns() - started
    links.recording = False
    return elapsed_ns, answers


# -- the leader's stages around the runtime: the real functions, timed in loops -------------


def leader_decode(parts: list[bytes]) -> tuple[list[list[Command]], int]:
    converters: dict[str, Callable[[Any], Command]] = {
        "deposit": api.deposit_command,
        "transfer": api.transfer_command,
        "grab": api.grab_command,
    }
    decoded: list[list[Command]] = []
    started = thread_time_ns()
    for raw in parts:
        request = ledger_pb2.ExecuteRequest.FromString(raw)
        commands = []
        for operation in request.operations:
            name = operation.WhichOneof("op")
            assert name is not None
            commands.append(converters[name](getattr(operation, name)))
        decoded.append(commands)
    return decoded, thread_time_ns() - started


def validation(front: LedgerFront, decoded: list[list[Command]]) -> int:
    started = thread_time_ns()
    for commands in decoded:
        for command in commands:
            if validate(command, front.limits) is not None:
                raise RuntimeError(f"refused by validation: {command}")
            front.command_shard(command)
    return thread_time_ns() - started


def result_encoding(decoded: list[list[Command]], results: list[list[Result]]) -> int:
    started = thread_time_ns()
    for commands, part in zip(decoded, results, strict=True):
        answers = []
        for command, result in zip(commands, part, strict=True):
            assert isinstance(result, Ok)
            name, response = _response(command, result)
            answer = ledger_pb2.OperationResult()
            getattr(answer, name).CopyFrom(response)
            answers.append(answer)
        ledger_pb2.ExecuteResponse(results=answers).SerializeToString()
    return thread_time_ns() - started


def _response(command: Command, result: Ok) -> tuple[str, Any]:
    data = result.data
    if isinstance(command, Deposit):
        view = api.expect(data, AccountView)
        return "deposit", ledger_pb2.DepositResponse(balance_fen=view.balance_fen)
    if isinstance(data, TransferReceipt):
        return "transfer", api.transfer_response(data)
    return "grab", api.grab_response(api.expect(data, GrabReceipt))
