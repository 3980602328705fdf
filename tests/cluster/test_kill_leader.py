"""kill -9 the leader of a busy shard in the middle of a load; nothing acknowledged is lost.

The cluster runs with fsync (the default durability): that is what a kill -9 tests. A
concurrent load of deposits, same- and cross-shard transfers, envelope sends and grabs
runs from two smart clients: a patient one (the default retries) and an impatient one
(one attempt). A request that still fails with a retryable error (NOT_LEADER,
UNAVAILABLE, OUTCOME_UNKNOWN) is "unknown": maybe applied, maybe not; the impatient
client makes sure there are some. In the middle the leader of the busiest shard is killed, the load
goes on, the node is restarted and the load goes on again. Then:

- every unknown request is looked up in the ledger's idempotency table and retried twice
  with the same request id: a request that had applied answers with its stored result,
  one that had not applies now, and the second retry answers exactly like the first;
- a sample of acknowledged requests is retried too: same answers, nothing applied again;
- after quiescence the cluster is stopped and audited (digests equal on every replica,
  conservation exact, outboxes drained), and every user's statement in LMDB is compared
  posting by posting with the model built from the acknowledged results: each request
  appears exactly once, and nothing else does.
"""

from __future__ import annotations

import asyncio
import random
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from google.protobuf.message import Message

from hongbao.client.sdk import ClientOptions, HongbaoClient, new_request_id
from hongbao.ledger import idempotency
from hongbao.ledger.records import (
    Account,
    Envelope,
    Grab,
    HistoryEntry,
    TxKind,
    account_key,
    envelope_key,
    grabs_prefix,
    history_prefix,
    row,
)
from hongbao.ledger.records import load as load_record
from hongbao.ledger.results import (
    AccountView,
    EnvelopeCreated,
    GrabReceipt,
    Ok,
    Rejected,
    TransferReceipt,
)
from hongbao.ledger.sharding import parse_envelope_id, shard_for_user
from hongbao.ledger.store import LedgerStore, Table, iterate
from hongbao.node import ledger_api
from hongbao.node.errors import HongbaoError, RetryableError
from hongbao.ops.audit import node_dir, read_node
from hongbao.proto.gen.hongbao.v1 import ledger_pb2
from tests.cluster.support import Harness, running_cluster, users_per_shard

pytestmark = pytest.mark.cluster

USERS_PER_SHARD = 3
INITIAL_FEN = 1_000_000
WORKERS_PATIENT = 8
WORKERS_IMPATIENT = 4
ACKS_PER_PHASE = 150
PHASE_TIMEOUT_S = 60.0
RETRY_SAMPLE = 40


@dataclass
class Op:
    kind: str  # deposit | transfer | send | grab
    shard_id: int
    request: Message
    phase: str
    outcome: str = "pending"  # acked | refused | unknown
    response: Message | None = None
    error: HongbaoError | None = None
    applied_before_retry: bool | None = None  # for unknown ones: per the idempotency table

    @property
    def request_id(self) -> str:
        return str(getattr(self.request, "request_id"))  # noqa: B009


RPCS: dict[str, Callable[[Any], Callable[..., Awaitable[Message]]]] = {
    "deposit": lambda s: s.wallet.Deposit,
    "transfer": lambda s: s.wallet.Transfer,
    "send": lambda s: s.envelopes.Send,
    "grab": lambda s: s.envelopes.Grab,
}


@dataclass
class Load:
    client: HongbaoClient
    users: dict[int, list[str]]
    rng: random.Random
    phase: str = "before"
    ops: list[Op] = field(default_factory=list)
    grabbable: dict[str, list[str]] = field(default_factory=dict)  # envelope -> grabbers left
    initial: dict[str, str] = field(default_factory=dict)  # user -> initial deposit's id
    stop: asyncio.Event = field(default_factory=asyncio.Event)

    def acked(self, phase: str | None = None) -> int:
        return sum(1 for op in self.ops if op.outcome == "acked" and phase in (None, op.phase))

    def everyone(self) -> list[str]:
        return [u for shard in sorted(self.users) for u in self.users[shard]]

    def next_op(self) -> Op:
        rng, shards = self.rng, sorted(self.users)
        roll = rng.random()
        rid = new_request_id()
        if roll < 0.2 and self.grabbable:
            envelope_id = rng.choice(sorted(self.grabbable))
            grabbers = self.grabbable[envelope_id]
            grabber = grabbers.pop()
            if not grabbers:
                del self.grabbable[envelope_id]
            request: Message = ledger_pb2.GrabRequest(
                request_id=rid, envelope_id=envelope_id, user_id=grabber
            )
            shard = self.client.envelope_shard(envelope_id)
            return Op("grab", shard, request, self.phase)
        if roll < 0.45:
            user = rng.choice(self.everyone())
            request = ledger_pb2.DepositRequest(
                request_id=rid, user_id=user, amount_fen=rng.randint(1, 1_000)
            )
            return Op("deposit", self.client.user_shard(user), request, self.phase)
        if roll < 0.9:
            if roll < 0.65:  # same shard
                source, target = rng.sample(self.users[rng.choice(shards)], 2)
            else:
                a, b = rng.sample(shards, 2)
                source, target = rng.choice(self.users[a]), rng.choice(self.users[b])
            request = ledger_pb2.TransferRequest(
                request_id=rid,
                from_user_id=source,
                to_user_id=target,
                amount_fen=rng.randint(1, 300),
            )
            return Op("transfer", self.client.user_shard(source), request, self.phase)
        sender = rng.choice(self.everyone())
        lucky = rng.random() < 0.5
        request = ledger_pb2.SendRequest(
            request_id=rid,
            sender_user_id=sender,
            kind=ledger_pb2.ENVELOPE_KIND_LUCKY if lucky else ledger_pb2.ENVELOPE_KIND_FIXED,
            total_fen=3 * rng.randint(100, 300),
            count=3,
        )
        return Op("send", self.client.user_shard(sender), request, self.phase)

    async def execute(self, op: Op, client: HongbaoClient) -> None:
        try:
            op.response = await client.call(op.shard_id, RPCS[op.kind], op.request)
        except HongbaoError as error:
            op.error = error
            retryable = isinstance(error, RetryableError) or error.outcome_unknown
            op.outcome = "unknown" if retryable else "refused"
            return
        op.outcome = "acked"
        if op.kind == "send":
            assert isinstance(op.response, ledger_pb2.SendResponse)
            assert isinstance(op.request, ledger_pb2.SendRequest)
            sender = op.request.sender_user_id
            others = [u for u in self.everyone() if u != sender]
            self.grabbable[op.response.envelope_id] = self.rng.sample(others, 3)

    async def worker(self, client: HongbaoClient) -> None:
        while not self.stop.is_set():
            op = self.next_op()
            self.ops.append(op)
            await self.execute(op, client)

    async def until_acked(self, phase: str, count: int) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + PHASE_TIMEOUT_S
        while self.acked(phase) < count:
            assert loop.time() < deadline, f"only {self.acked(phase)} acks in phase {phase}"
            await asyncio.sleep(0.05)


def expected_response(kind: str, result: Ok | Rejected) -> Message | Rejected:
    """What the API answers for a stored ledger result (ledger_service's translation)."""
    if isinstance(result, Rejected):
        return result
    data = result.data
    if kind == "deposit":
        assert isinstance(data, AccountView)
        return ledger_pb2.DepositResponse(balance_fen=data.balance_fen)
    if kind == "transfer":
        assert isinstance(data, TransferReceipt)
        return ledger_api.transfer_response(data)
    if kind == "send":
        assert isinstance(data, EnvelopeCreated)
        return ledger_api.send_response(data)
    assert isinstance(data, GrabReceipt)
    return ledger_api.grab_response(data)


async def answer(client: HongbaoClient, op: Op) -> Message | HongbaoError:
    try:
        return await client.call(op.shard_id, RPCS[op.kind], op.request)
    except HongbaoError as error:
        return error


def same_answer(got: Message | HongbaoError, want: Message | HongbaoError | Rejected) -> bool:
    if isinstance(want, Rejected):
        return (
            isinstance(got, HongbaoError) and got.reason is ledger_api.REASON_TO_ERROR[want.reason]
        )
    if isinstance(want, HongbaoError):
        return isinstance(got, HongbaoError) and got.reason is want.reason
    return got == want


def stored_result(harness: Harness, op: Op, leader: int) -> Ok | Rejected | None:
    with read_node(node_dir(harness.cluster.data_dir, leader)) as reader:
        record = idempotency.lookup(reader.store(op.shard_id), op.request_id)
    return None if record is None else record.result


def test_kill_leader_mid_load(tmp_path: Path) -> None:
    with running_cluster(tmp_path, no_fsync=False) as harness:
        users = users_per_shard(harness.topology, USERS_PER_SHARD, "kill-")
        load, victim = asyncio.run(load_with_kill(harness, users))
        refused = [(op.kind, op.request, op.error) for op in load.ops if op.outcome == "refused"]
        assert not refused, f"the load was designed never to be refused: {refused[:5]}"
        assert load.acked("down") >= ACKS_PER_PHASE  # served with the leader dead
        assert harness.cluster.is_running(victim)
        views = harness.wait_quiescent()  # the restarted node has caught up, too
        assert all(victim in view.replicas for view in views.values())

        unknown = [op for op in load.ops if op.outcome == "unknown"]
        # The impatient client (one attempt) must have hit the dead leader at least once.
        assert any(op.phase == "down" for op in unknown), "no request was caught by the kill"
        stored = {
            op.request_id: stored_result(harness, op, views[op.shard_id].leader) for op in unknown
        }
        asyncio.run(retry_with_same_ids(harness, load, unknown, stored))
        assert all(op.outcome == "acked" for op in load.ops)

        report = harness.quiesce_stop_audit()
        model = Model.of(load)
        balances = check_ledger_against_model(harness, victim, model)
        ledger = report.ledger
        assert ledger is not None
        assert ledger.accounts == len(model.statements)
        assert ledger.balances_fen == sum(balances.values())
        assert ledger.escrow_fen == model.escrow_fen()
        assert ledger.undelivered_fen == 0


async def load_with_kill(harness: Harness, users: dict[int, list[str]]) -> tuple[Load, int]:
    """Load before, during and after the leader of the busiest shard is down; the victim."""
    topology = harness.topology
    patient = HongbaoClient(topology)
    impatient = HongbaoClient(topology, ClientOptions(timeout_s=2.0, attempts_max=1))
    async with patient, impatient:
        load = Load(patient, users, random.Random(20_240_207))
        load.initial = {user: new_request_id() for user in load.everyone()}
        await asyncio.gather(
            *(patient.deposit(u, INITIAL_FEN, rid) for u, rid in load.initial.items())
        )
        workers = [asyncio.create_task(load.worker(patient)) for _ in range(WORKERS_PATIENT)]
        workers += [asyncio.create_task(load.worker(impatient)) for _ in range(WORKERS_IMPATIENT)]
        try:
            await load.until_acked("before", ACKS_PER_PHASE)
            views = await asyncio.to_thread(harness.shard_views)
            assert views is not None
            busiest = max(views.values(), key=lambda v: v.leader_status.commit_index)
            victim = busiest.leader
            assert victim != 0
            load.phase = "down"
            await asyncio.to_thread(harness.cluster.kill, victim)  # kill -9
            harness.forget_channel(victim)
            await load.until_acked("down", ACKS_PER_PHASE)
            await asyncio.to_thread(harness.cluster.start, [victim])
            load.phase = "after"
            await load.until_acked("after", ACKS_PER_PHASE)
        finally:
            load.stop.set()
            await asyncio.gather(*workers)
    return load, victim


async def retry_with_same_ids(
    harness: Harness, load: Load, unknown: list[Op], stored: dict[str, Ok | Rejected | None]
) -> None:
    """Retry each unknown request twice, and a sample of acknowledged ones once."""
    acked_sample = random.Random(7).sample(
        [op for op in load.ops if op.outcome == "acked"], min(RETRY_SAMPLE, load.acked())
    )
    async with HongbaoClient(harness.topology) as client:
        for op in unknown:
            prior = stored[op.request_id]
            op.applied_before_retry = prior is not None
            first = await answer(client, op)
            second = await answer(client, op)
            if prior is not None:  # it had applied: the retry gets the stored result
                want = expected_response(op.kind, prior)
                assert same_answer(first, want), (op.kind, op.request, first, want)
            assert same_answer(second, first), (op.kind, op.request, first, second)
            assert isinstance(first, Message), (op.request, first)
            op.outcome, op.response = "acked", first
        for op in acked_sample:
            again = await answer(client, op)
            assert op.response is not None
            assert same_answer(again, op.response), (op.kind, op.request, again)


Statement = Counter[tuple[TxKind, str, int]]  # (kind, ref, delta) -> how many postings


@dataclass
class Model:
    """Every user's statement and every envelope, from the acknowledged results alone."""

    statements: dict[str, Statement]
    envelopes: dict[str, tuple[str, int, int]]  # id -> sender, total, count
    grabs: dict[str, set[tuple[str, int]]]  # envelope id -> (grabber, fen)

    @classmethod
    def of(cls, load: Load) -> Model:
        model = cls(
            {u: Counter({(TxKind.DEPOSIT, r, INITIAL_FEN): 1}) for u, r in load.initial.items()},
            {},
            {},
        )
        for op in load.ops:
            model.add(op.request, op.response)
        return model

    def add(self, request: Message, response: Message | None) -> None:
        statements = self.statements
        if isinstance(request, ledger_pb2.DepositRequest):
            posting = (TxKind.DEPOSIT, request.request_id, request.amount_fen)
            statements[request.user_id][posting] += 1
        elif isinstance(request, ledger_pb2.TransferRequest):
            fen = request.amount_fen
            statements[request.from_user_id][(TxKind.TRANSFER, request.request_id, -fen)] += 1
            statements[request.to_user_id][(TxKind.TRANSFER, request.request_id, fen)] += 1
        elif isinstance(request, ledger_pb2.SendRequest):
            assert isinstance(response, ledger_pb2.SendResponse)
            eid, total = response.envelope_id, request.total_fen
            statements[request.sender_user_id][(TxKind.ENVELOPE_SEND, eid, -total)] += 1
            self.envelopes[eid] = (request.sender_user_id, total, request.count)
        else:
            assert isinstance(request, ledger_pb2.GrabRequest)
            assert isinstance(response, ledger_pb2.GrabResponse)
            eid, fen = request.envelope_id, response.amount_fen
            statements[request.user_id][(TxKind.ENVELOPE_GRAB, eid, fen)] += 1
            self.grabs.setdefault(eid, set()).add((request.user_id, fen))

    def escrow_fen(self) -> int:
        sent = sum(total for _, total, _ in self.envelopes.values())
        return sent - sum(fen for held in self.grabs.values() for _, fen in held)


def check_ledger_against_model(harness: Harness, node_id: int, model: Model) -> dict[str, int]:
    """Compare the stopped node's LMDB posting by posting with the model; the balances.

    One replica per shard suffices: the audit proved every replica byte-identical.
    """
    balances: dict[str, int] = {}
    shard_count = harness.topology.shard_count
    with read_node(node_dir(harness.cluster.data_dir, node_id)) as reader:
        for user, expected in model.statements.items():
            store = reader.store(shard_for_user(user, shard_count))
            account = load_record(store, Table.ACCOUNTS, account_key(user), Account)
            assert account is not None, user
            balances[user] = account.balance_fen
            actual = statement(store, user)
            assert actual == expected, (
                f"{user}: missing {expected - actual}, extra {actual - expected}"
            )
            assert account.balance_fen == sum(delta * n for (_, _, delta), n in expected.items())
        for eid, (sender, total, count) in model.envelopes.items():
            parsed = parse_envelope_id(eid)
            assert parsed is not None
            store = reader.store(parsed[0])
            envelope = load_record(store, Table.ENVELOPES, envelope_key(eid), Envelope)
            assert envelope is not None, eid
            got = (envelope.sender_user_id, envelope.total_fen, envelope.share_count)
            assert got == (sender, total, count), eid
            held = grab_rows(store, eid)
            assert held == model.grabs.get(eid, set()), (eid, held, model.grabs.get(eid))
    return balances


def statement(store: LedgerStore, user: str) -> Statement:
    entries = (
        row(value, HistoryEntry)
        for _, value in iterate(store, Table.HISTORY, prefix=history_prefix(user))
    )
    return Counter((entry.kind, entry.ref, entry.delta_fen) for entry in entries)


def grab_rows(store: LedgerStore, envelope_id: str) -> set[tuple[str, int]]:
    return {
        (grab.user_id, grab.amount_fen)
        for grab in (
            row(value, Grab)
            for _, value in iterate(store, Table.GRABS, prefix=grabs_prefix(envelope_id))
        )
    }
