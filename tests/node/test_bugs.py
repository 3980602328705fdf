"""The node's test-only bug switches (``hongbao.node.bugs``): each does its harm when on
and nothing when off.

- ``double-credit-grab``: a cross-shard grab's delivery credits the grabber twice, the
  same on every replica; each shard's books still balance, the cluster audit does not.
- ``ack-before-commit``: the leader answers a client command before its entry commits;
  on real processes, an acknowledged deposit is then lost with its leader.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
import pytest
from click.testing import CliRunner

from hongbao.cli.node import node as node_cli
from hongbao.config.topology import parse_topology
from hongbao.ledger import (
    Acknowledge,
    Batch,
    Command,
    Deposit,
    Fence,
    GetAccount,
    GrabEnvelope,
    MemoryStore,
    Ok,
    SendEnvelope,
    Transfer,
    audit,
    deliver_command,
    encode_batch,
    inbox_seq,
    outbox_destinations,
    pending_outbox,
    query,
)
from hongbao.ledger.records import EnvelopeKind
from hongbao.ledger.results import AccountView, EnvelopeCreated, GrabReceipt
from hongbao.ledger.snapshot import table_digests
from hongbao.node.bugs import NodeBugs
from hongbao.node.runtime import NodeRuntime
from hongbao.node.state_machine import LedgerMachine
from hongbao.node.storage import Durability, NodeEnv
from hongbao.ops.local import LocalCluster, write_topology
from hongbao.proto.gen.hongbao.v1 import admin_pb2, admin_pb2_grpc, ledger_pb2
from hongbao.raft.types import Message, NodeId
from hongbao.raft.types import MessageType as MT
from tests.cluster.support import TEMPLATE, Harness, users_per_shard, wait_for
from tests.ledger.helpers import T0_MS, users_on
from tests.node.topologies import THREE_NODES

# -- double-credit-grab: the state machine, on in-memory shards ---------------------------


@dataclass
class Shards:
    """Two ledger shards, each a LedgerMachine over a MemoryStore, fed encoded entries."""

    double_credit_grab: bool
    count: int = 2
    stores: dict[int, MemoryStore] = field(default_factory=dict)
    machines: dict[int, LedgerMachine] = field(default_factory=dict)
    index: dict[int, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for shard_id in range(self.count):
            machine = LedgerMachine(
                shard_id=shard_id,
                shard_count=self.count,
                limits=None,
                double_credit_grab=self.double_credit_grab,
            )
            self.machines[shard_id] = machine
            self.stores[shard_id] = MemoryStore()
            machine.init(self.stores[shard_id])
            self.index[shard_id] = 0

    def apply(self, shard_id: int, *commands: Command) -> tuple[object, ...]:
        self.index[shard_id] += 1
        data = encode_batch(Batch(ts_ms=T0_MS, commands=commands))
        return self.machines[shard_id].apply_entry(
            self.stores[shard_id], self.index[shard_id], data
        )

    def ok(self, shard_id: int, command: Command) -> Any:
        (result,) = self.apply(shard_id, command)
        assert isinstance(result, Ok), result
        return result.data

    def deliver_all(self) -> None:
        """The courier: every outbox entry delivered to its destination, then acknowledged."""
        for source in range(self.count):
            for destination in outbox_destinations(self.stores[source]):
                entries = pending_outbox(self.stores[source], destination, 100)
                self.apply(destination, *(deliver_command(e) for e in entries))
                seq = inbox_seq(self.stores[destination], source)
                self.ok(source, Acknowledge(destination, seq))

    def balance(self, user_id: str) -> int:
        for store in self.stores.values():
            result = query(store, GetAccount(user_id))
            if isinstance(result, Ok):
                view = result.data
                assert isinstance(view, AccountView)
                return view.balance_fen
        return 0


def cross_shard_grab(shards: Shards) -> tuple[str, str]:
    """Alice (shard 0) sends a 2 x 100 fen envelope; Bob (shard 1) grabs a share of it."""
    (alice,) = users_on(0, shards.count, 1, "alice")
    (bob,) = users_on(1, shards.count, 1, "bob")
    shards.ok(0, Deposit("d-1", alice, 1_000))
    created = shards.ok(0, SendEnvelope("s-1", alice, EnvelopeKind.FIXED, 200, 2))
    assert isinstance(created, EnvelopeCreated)
    receipt = shards.ok(0, GrabEnvelope("g-1", created.envelope_id, bob))
    assert isinstance(receipt, GrabReceipt)
    assert receipt.outbox_seq is not None
    shards.deliver_all()
    return alice, bob


def test_double_credit_grab_credits_a_cross_shard_grab_twice_and_the_audit_fails() -> None:
    shards = Shards(double_credit_grab=True)
    _, bob = cross_shard_grab(shards)
    assert shards.balance(bob) == 200  # one share of 100 fen, credited twice
    report = audit(shards.stores, deep=True)
    assert not report.ok
    assert report.balances_fen + report.escrow_fen + report.undelivered_fen == 1_100
    assert report.deposits_fen - report.withdrawals_fen == 1_000  # 100 fen out of nowhere


def test_without_the_switch_the_grab_is_credited_once_and_the_audit_passes() -> None:
    shards = Shards(double_credit_grab=False)
    _, bob = cross_shard_grab(shards)
    assert shards.balance(bob) == 100
    report = audit(shards.stores, deep=True)
    assert report.ok, report.problems


def test_double_credit_grab_leaves_transfers_alone_and_replicas_identical() -> None:
    first, second = Shards(double_credit_grab=True), Shards(double_credit_grab=True)
    for shards in (first, second):
        alice, _ = cross_shard_grab(shards)
        (carol,) = users_on(1, shards.count, 1, "carol")
        shards.ok(0, Transfer("t-1", alice, carol, 50))
        shards.deliver_all()
        assert shards.balance(carol) == 50  # a transfer's delivery: credited once
    for shard_id in range(first.count):
        assert table_digests(first.stores[shard_id]) == table_digests(second.stores[shard_id])


def test_a_runtime_started_with_double_credit_grab_hands_it_to_every_ledger_shard(
    tmp_path: Path,
) -> None:
    topology = parse_topology({**THREE_NODES, "shard_count": 3})
    for switch in (True, False):
        env = NodeEnv(
            tmp_path / f"n-{switch}", durability=Durability.NO_FSYNC, map_size_bytes=1 << 26
        )
        try:
            runtime = NodeRuntime(
                topology=topology,
                node_id=1,
                env=env,
                node_bugs=NodeBugs(double_credit_grab=switch),
            )
            machines = [replica.machine for replica in runtime.replicas.values()]
            assert len(machines) == 3
            assert all(isinstance(m, LedgerMachine) for m in machines)
            assert {m.double_credit_grab for m in machines} == {switch}  # type: ignore[attr-defined]
        finally:
            env.close()


# -- ack-before-commit: one runtime, its two followers played by the test ------------------


class OneLeader:
    """Node 1 of a 3-node, 1-shard topology as a real NodeRuntime on LMDB."""

    def __init__(self, tmp_path: Path, node_bugs: NodeBugs | None) -> None:
        self.env = NodeEnv(tmp_path / "n1", durability=Durability.NO_FSYNC, map_size_bytes=1 << 26)
        self.runtime = NodeRuntime(
            topology=parse_topology(THREE_NODES), node_id=1, env=self.env, node_bugs=node_bugs
        )
        self.sent: list[Message] = []
        self.runtime.send = lambda to, shard, m: self.sent.append(m)
        self.core = self.runtime.replicas[0].core

    async def cycle(self, n: int = 1, *, ack: bool) -> None:
        """Run ``n`` cycles; the followers grant votes, and acknowledge only with ``ack``."""
        for _ in range(n):
            self.runtime.cycle(1)
            await asyncio.sleep(0)
            sent, self.sent = self.sent, []
            for m in sent:
                if m.type in (MT.PRE_VOTE, MT.VOTE):
                    kind = MT.PRE_VOTE_RESP if m.type is MT.PRE_VOTE else MT.VOTE_RESP
                    self.deliver(type=kind, from_=m.to, term=m.term)
                elif ack and m.type is MT.HEARTBEAT:
                    self.deliver(type=MT.HEARTBEAT_RESP, from_=m.to, term=m.term)
                elif ack and m.type is MT.APP:
                    last = m.entries[-1].index if m.entries else m.index
                    self.deliver(type=MT.APP_RESP, from_=m.to, term=m.term, index=last)

    def deliver(self, **fields: object) -> None:
        fields.setdefault("to", NodeId(1))
        self.runtime.deliver(0, Message(**fields))  # type: ignore[arg-type]

    async def lead(self) -> None:
        """Elected, with its no-op committed and applied."""
        self.core.campaign()
        for _ in range(20):
            await self.cycle(ack=True)
            if self.runtime.replicas[0].is_leader and self.core.applied_index > 0:
                return
        raise AssertionError("node 1 was not elected")

    def balance(self, user_id: str) -> int:
        result = self.runtime.query(0, lambda store: query(store, GetAccount(user_id)))
        return result.data.balance_fen if isinstance(result, Ok) else 0  # type: ignore[union-attr]

    def close(self) -> None:
        self.runtime.stop()
        self.env.close()


def proposed_without_quorum(tmp_path: Path, node_bugs: NodeBugs | None) -> dict[str, object]:
    """A deposit and a request status proposed to a leader whose followers went silent."""

    async def scenario() -> dict[str, object]:
        leader = OneLeader(tmp_path, node_bugs)
        try:
            await leader.lead()
            deposit = leader.runtime.submit(0, Deposit("lost-1", "alice", 100))
            status = leader.runtime.submit(0, Fence("lost-2", "alice"))
            await leader.cycle(3, ack=False)  # proposed and sent; nobody acknowledges
            index = leader.core.last_index
            return {
                "deposit": deposit.result() if deposit.done() else None,
                "status_done": status.done(),
                "uncommitted": leader.core.commit_index < index,
                "applied_balance": leader.balance("alice"),
            }
        finally:
            leader.close()

    return asyncio.run(scenario())


def test_ack_before_commit_answers_a_command_its_quorum_never_acknowledged(
    tmp_path: Path,
) -> None:
    seen = proposed_without_quorum(tmp_path, NodeBugs(ack_before_commit=True))
    assert seen["uncommitted"]
    deposit = seen["deposit"]
    assert isinstance(deposit, Ok)
    assert isinstance(deposit.data, AccountView)
    assert deposit.data.balance_fen == 100  # the dry run's answer...
    assert seen["applied_balance"] == 0  # ...of which nothing was kept
    assert seen["status_done"] is False  # a request status still waits for its commit


def test_without_the_switch_an_uncommitted_command_is_not_answered(tmp_path: Path) -> None:
    seen = proposed_without_quorum(tmp_path, None)
    assert seen["uncommitted"]
    assert seen["deposit"] is None
    assert seen["applied_balance"] == 0


# -- the switch set and the command line ------------------------------------------------------


def test_switches_are_parsed_by_name_and_off_by_default() -> None:
    assert NodeBugs().names == ()
    both = NodeBugs.of(["double-credit-grab", "ack-before-commit"])
    assert both == NodeBugs(ack_before_commit=True, double_credit_grab=True)
    assert set(both.names) == {"ack-before-commit", "double-credit-grab"}
    with pytest.raises(ValueError, match="retry-fresh-id"):
        NodeBugs.of(["retry-fresh-id"])  # a router switch, not a node one


def test_the_node_cli_refuses_an_unknown_switch_and_hides_the_option() -> None:
    runner = CliRunner()
    result = runner.invoke(
        node_cli, ["run", "--config", "x.toml", "--node", "1", "--data-dir", "d", "--bug", "no"]
    )
    assert result.exit_code == 2
    assert "--bug" not in runner.invoke(node_cli, ["run", "--help"]).output


# -- ack-before-commit on real processes: an acknowledged deposit is lost ---------------------

CALL_TIMEOUT_S = 2.0
BUGGY_NODE = 1
LEAD_TIMEOUT_S = 30.0
# A 1 s election timeout (the template's is 300 ms): a leader whose followers just died
# still takes proposals for that long, a window no loaded test machine can miss, and
# leaderships do not flap under the load of parallel test runs.
TIMING = {"tick_ms": 10, "election_timeout_ticks": 100, "heartbeat_interval_ticks": 5}


@contextlib.contextmanager
def cluster_with_bug_on_node_1(root: Path) -> Iterator[Harness]:
    """Three nodes, node 1 started with ``--bug ack-before-commit``; killed on every exit."""
    root.mkdir(parents=True, exist_ok=True)
    config = write_topology(root / "topology.toml", template=TEMPLATE, overrides={"timing": TIMING})
    with LocalCluster(config, root / "data", no_fsync=True) as cluster:
        cluster.args_of_node[BUGGY_NODE] = ["--bug", "ack-before-commit"]
        harness = Harness(cluster)
        try:
            cluster.start()
            harness.leaders()
            yield harness
        finally:
            harness.close()


def deposit(harness: Harness, node_id: int, user_id: str, request_id: str) -> int:
    request = ledger_pb2.DepositRequest(request_id=request_id, user_id=user_id, amount_fen=100)
    response = harness.wallet(node_id).Deposit(request, timeout=CALL_TIMEOUT_S)
    return int(response.balance_fen)


def led_by(harness: Harness, node_id: int, prefix: str) -> tuple[int, str]:
    """A shard ``node_id`` leads now (moved to it if it leads none), and a fresh user on it."""

    def probe() -> int | None:
        leaders = harness.leaders()
        mine = [s for s, leader in sorted(leaders.items()) if leader == node_id]
        if mine:
            return mine[0]
        shard_id = min(leaders)
        request = admin_pb2.TransferLeaderRequest(
            shard_id=shard_id, target_node_id=node_id, wait_ms=1_000
        )
        with contextlib.suppress(grpc.RpcError):  # an election may be running: try again
            admin_pb2_grpc.AdminStub(harness.channel(leaders[shard_id])).TransferLeader(
                request, timeout=CALL_TIMEOUT_S
            )
        return None

    shard_id = wait_for(probe, LEAD_TIMEOUT_S, f"node {node_id} to lead a shard")
    return shard_id, users_per_shard(harness.topology, 1, f"{prefix}{shard_id}-")[shard_id][0]


def test_ack_before_commit_acknowledges_a_deposit_that_is_then_lost(tmp_path: Path) -> None:
    with cluster_with_bug_on_node_1(tmp_path) as harness:
        cluster = harness.cluster
        log = cluster.log_path(BUGGY_NODE).read_text()
        assert "WARNING" in log
        assert "--bug ack-before-commit" in log
        assert "--bug" not in cluster.log_path(2).read_text()

        # With the switch: node 1's followers die; a deposit on node 1 is acknowledged.
        shard_id, user = led_by(harness, BUGGY_NODE, "a")
        assert deposit(harness, BUGGY_NODE, user, "warm-up") == 100  # the channel is up
        cluster.kill(2)
        cluster.kill(3)
        assert deposit(harness, BUGGY_NODE, user, "acked-then-lost") == 200
        # Its entry exists on node 1 alone: with node 1 gone, the others never see it.
        cluster.kill(BUGGY_NODE)
        cluster.start([2, 3])
        leaders = harness.leaders()
        leader = leaders[shard_id]
        balance = harness.wallet(leader).Balance(
            ledger_pb2.BalanceRequest(user_id=user), timeout=CALL_TIMEOUT_S
        )
        assert balance.balance_fen == 100  # the warm-up only: the acknowledged one is gone
        status = harness.wallet(leader).RequestStatus(
            ledger_pb2.RequestStatusRequest(request_id="acked-then-lost", user_id=user),
            timeout=CALL_TIMEOUT_S,
        )
        assert status.outcome == ledger_pb2.REQUEST_OUTCOME_NOT_APPLIED

        # Without it (node 2): the same loss of the followers, and the deposit fails.
        shard_id, user = led_by(harness, 2, "b")
        assert deposit(harness, 2, user, "warm-up-2") == 100
        cluster.kill(3)
        with pytest.raises(grpc.RpcError) as failed:
            deposit(harness, 2, user, "never-acked")
        assert failed.value.code() in (
            grpc.StatusCode.DEADLINE_EXCEEDED,
            grpc.StatusCode.UNAVAILABLE,
        )
