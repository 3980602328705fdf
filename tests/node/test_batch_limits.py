"""The node never builds a batch that the ledger or a peer would refuse whole.

A log entry of more commands than the ledger's ``batch_commands_max`` is refused entirely
(deterministically, on every replica), and a ``Peer.Deliver`` of more entries than
``outbox_batch_max`` is refused entirely: a node that built either would turn load into
an outage, or leave cross-shard credits in the outbox for ever.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from types import SimpleNamespace

import pytest

from hongbao.config.topology import parse_topology
from hongbao.ledger import Deposit, Limits, Ok, Transfer, inbox_seq
from hongbao.ledger.commands import Command
from hongbao.ledger.results import Rejected, Result
from hongbao.node import courier as courier_module
from hongbao.node import ledger_service
from hongbao.node.courier import Courier
from hongbao.node.peer_guard import RefusalLog
from hongbao.node.runtime import NodeRuntime
from hongbao.node.storage import Durability, NodeEnv
from hongbao.node.transport import TransportLimits
from tests.ledger.helpers import Cluster
from tests.node.topologies import ONE_NODE

# -- log entries: at most batch_commands_max commands ---------------------


def test_runtime_never_packs_an_entry_the_ledger_refuses_whole(tmp_path: Path) -> None:
    """One more command than batch_commands_max queued in one cycle: the runtime must
    split them over two entries, or every client would get BATCH_TOO_LARGE."""

    async def scenario() -> list[Result]:
        topology = parse_topology(ONE_NODE)
        env = NodeEnv(tmp_path / "node", durability=Durability.NO_FSYNC, map_size_bytes=1 << 28)
        try:
            runtime = NodeRuntime(
                topology=topology, node_id=1, env=env, ledger_limits=topology.limits
            )
            runtime._campaign_home_shards()
            for _ in range(50):
                runtime.cycle(1)
                if runtime.replicas[0].is_leader:
                    break
            assert runtime.replicas[0].is_leader
            futures = [
                runtime.submit(0, Deposit(f"r{n}", f"user{n}", 100))
                for n in range(topology.limits.batch_commands_max + 1)
            ]
            for _ in range(50):
                runtime.cycle(1)
                await asyncio.sleep(0)
                if all(f.done() for f in futures):
                    break
            return [f.result() for f in futures]
        finally:
            env.close()

    results = asyncio.run(scenario())
    refused = [r for r in results if isinstance(r, Rejected)]
    assert not refused, f"{len(refused)} deposits refused, e.g. {refused[0]}"


# -- deliveries: at most outbox_batch_max entries per Peer.Deliver ----------------------------


class _FakeRuntime:
    """Just enough of NodeRuntime for the courier and Peer.Deliver, over a Cluster."""

    def __init__(self, cluster: Cluster, shards: list[int], topology: object, node_id: int):
        self.cluster = cluster
        self.replicas = {s: SimpleNamespace(is_leader=True) for s in shards}
        self.topology = topology
        self.node_id = node_id

    def query(self, shard_id: int, function):  # type: ignore[no-untyped-def]
        return function(self.cluster.stores[shard_id])

    def submit(self, shard_id: int, command: Command) -> asyncio.Future[Result]:
        future: asyncio.Future[Result] = asyncio.get_running_loop().create_future()
        future.set_result(self.cluster.one(shard_id, command))
        return future

    def leader_of(self, shard_id: int) -> int:
        return 2  # the destination shard is led by the other node


def test_courier_batches_are_accepted_by_a_remote_destination(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """outbox_batch_max = 100 in the topology's [limits] and a backlog of 150: the
    destination refuses any Peer.Deliver of more than 100 entries (LIMIT_EXCEEDED), so
    the courier must send at most that many per call, or nothing would ever drain."""
    limits = Limits(outbox_batch_max=100)
    cluster = Cluster(shard_count=2, limits=limits)
    topology = SimpleNamespace(
        limits=limits,
        node=lambda node_id: SimpleNamespace(address=f"127.0.0.1:{7000 + node_id}"),
        dial_address=lambda node_id: f"127.0.0.1:{7000 + node_id}",
        home_leader_of=lambda shard_id: 2,
        shard_count=2,
        replicas_of=lambda shard_id: (1, 2),
    )
    source_runtime = _FakeRuntime(cluster, [0], topology, node_id=1)
    destination_runtime = _FakeRuntime(cluster, [1], topology, node_id=2)
    payers = cluster.users(0, 150, stem="p")
    payees = cluster.users(1, 150, stem="q")
    for payer, payee in zip(payers, payees, strict=True):
        assert isinstance(cluster.one(0, Deposit(cluster.rid(), payer, 10)), Ok)
        assert isinstance(cluster.one(0, Transfer(cluster.rid(), payer, payee, 10)), Ok)

    destination_courier = Courier(destination_runtime, TransportLimits())  # type: ignore[arg-type]

    class FakeStub:
        def __init__(self, channel: object) -> None:
            del channel

        async def Deliver(self, request, timeout):  # type: ignore[no-untyped-def]
            return await ledger_service.deliver(
                destination_runtime,  # type: ignore[arg-type]
                destination_courier,
                request,
                RefusalLog(),
            )

    monkeypatch.setattr(courier_module, "peer_pb2_grpc", SimpleNamespace(PeerStub=FakeStub))
    source_courier = Courier(source_runtime, TransportLimits())  # type: ignore[arg-type]
    monkeypatch.setattr(source_courier, "_channel", lambda address: None)

    async def run_courier() -> None:
        for _ in range(5):  # the courier retries; give it several rounds
            await source_courier._deliver(0, 1)

    asyncio.run(run_courier())
    assert inbox_seq(cluster.stores[1], 0) == 150, "no credit ever reached shard 1"
