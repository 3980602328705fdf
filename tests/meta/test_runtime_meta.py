"""The meta group inside real NodeRuntimes (LMDB, in one process): it elects at home,
commits SetRegion on every replica alike, stays out of client routing, and the runtime's
answers are immediate and quiet (a cut-off leader refuses at once; an abandoned future
logs no ERROR)."""

from __future__ import annotations

import asyncio
import gc
import logging
import time
from pathlib import Path
from typing import Any

import grpc
import pytest

from hongbao.config.topology import META_GROUP_ID
from hongbao.ledger import Deposit
from hongbao.ledger.store import MemoryStore
from hongbao.meta.machine import MetaMachine, MetaResult
from hongbao.meta.state import ClusterState, RegionState, SetRegion
from hongbao.node.admin import AdminServicer
from hongbao.node.errors import ErrorReason, HongbaoError
from hongbao.node.peer_guard import snapshot_problem
from hongbao.node.runtime import RuntimeLimits
from hongbao.proto.gen.hongbao.v1 import admin_pb2
from hongbao.raft.types import ConfState, Entry, Message, NodeId, Snapshot, SnapshotMeta
from hongbao.raft.types import MessageType as MT
from tests.meta.inprocess import Net
from tests.node.test_runtime_failures import Harness
from tests.node.topologies import THREE_NODES

CUT_OFF_NOTICED_S = 10.0  # a liveness timeout and an election timeout, with room
FOUR_NODES = {
    **THREE_NODES,
    "shard_count": 2,
    "nodes": [
        *THREE_NODES["nodes"],  # type: ignore[list-item]
        {"id": 4, "region": "shenzhen", "host": "127.0.0.1", "port": 7994},
    ],
}


class Aborted(Exception):
    def __init__(self, code: grpc.StatusCode, details: str) -> None:
        super().__init__(f"{code.name}: {details}")
        self.code, self.details = code, details


class FakeContext:
    """Just enough of a ServicerContext for the Admin handlers: an abort raises."""

    async def abort_with_status(self, status: grpc.Status) -> None:
        raise Aborted(status.code, status.details)

    async def abort(self, code: grpc.StatusCode, details: str = "") -> None:
        raise Aborted(code, details)

    def peer(self) -> str:
        return "ipv4:127.0.0.1:1"


def run(scenario: Any) -> Any:
    return asyncio.run(scenario)


@pytest.fixture
def net(tmp_path: Path) -> Any:
    cluster = Net(tmp_path, THREE_NODES)
    try:
        yield cluster
    finally:
        cluster.close()


def test_the_meta_group_is_hosted_apart_from_the_ledger_shards(net: Net) -> None:
    for runtime in net.runtimes.values():
        assert META_GROUP_ID in runtime.groups
        assert META_GROUP_ID not in runtime.replicas  # never routed to, never polled
        assert runtime.meta is runtime.groups[META_GROUP_ID]
        assert runtime.meta.machine.kind == "meta"
        assert {r.machine.kind for r in runtime.replicas.values()} == {"ledger"}
        state = runtime.meta_state()
        assert state is not None
        assert state.version == 0
        assert [r.name for r in state.regions] == ["shenzhen", "beijing", "shanghai"]
        assert state.cluster_id == runtime.cluster_id
    with pytest.raises(HongbaoError) as refused:
        net.runtimes[1].submit(META_GROUP_ID, Deposit("r1", "alice", 1))
    assert refused.value.reason is ErrorReason.NOT_LEADER


def test_a_node_without_a_meta_replica_hosts_only_its_shards(tmp_path: Path) -> None:
    cluster = Net(tmp_path, FOUR_NODES)
    try:
        node4 = cluster.runtimes[4]
        assert META_GROUP_ID not in cluster.topology.groups_on(4)
        assert node4.meta is None
        assert node4.meta_state() is None
        with pytest.raises(HongbaoError) as refused:
            node4.submit_meta(SetRegion("beijing", RegionState.DRAINING))
        assert refused.value.reason is ErrorReason.NOT_LEADER
        assert refused.value.leader_hint is not None
        assert refused.value.leader_hint.node_id == 0  # unknown: the home node's address
        assert refused.value.leader_hint.address == cluster.topology.node(1).address
    finally:
        cluster.close()


def test_set_region_commits_on_every_replica_alike(net: Net) -> None:
    async def scenario() -> None:
        net.start()
        await net.until(lambda: net.meta_leader() == 1, "node 1 (home) leads the meta group")
        leader = net.runtimes[1]
        result: MetaResult = await net.settle(
            leader.submit_meta(SetRegion("shanghai", RegionState.DRAINING, deadline_ms=5)),
            "the SetRegion to apply",
        )
        assert result.refused == ""
        assert result.state.version == 1
        assert result.state.state_of("shanghai") is RegionState.DRAINING
        await net.until(
            lambda: all(r.meta_state() == result.state for r in net.runtimes.values()),
            "every replica to apply it",
        )
        stale: MetaResult = await net.settle(
            leader.submit_meta(SetRegion("shanghai", RegionState.ACTIVE, expected_version=0 + 5)),
            "the stale SetRegion to apply",
        )
        assert stale.stale_version
        assert stale.state == result.state
        # A follower refuses with a hint naming the leader.
        with pytest.raises(HongbaoError) as refused:
            net.runtimes[2].submit_meta(SetRegion("shanghai", RegionState.ACTIVE))
        assert refused.value.reason is ErrorReason.NOT_LEADER
        assert refused.value.leader_hint is not None
        assert refused.value.leader_hint.node_id == 1
        # A linearizable read on the leader.
        read = leader.read_barrier(META_GROUP_ID)
        assert await net.settle(read, "the meta ReadIndex") >= leader.meta.core.commit_index - 1  # type: ignore[union-attr]

    run(scenario())


def test_admin_answers_for_the_meta_group(net: Net) -> None:
    async def scenario() -> None:
        net.start()
        await net.until(lambda: net.meta_leader() == 1, "node 1 leads the meta group")
        leader = AdminServicer(net.runtimes[1], topology_toml="x = 1\n", topology_source="/t")
        follower = AdminServicer(net.runtimes[2])
        context: Any = FakeContext()

        request = admin_pb2.SetRegionStateRequest(
            region="beijing", state=admin_pb2.REGION_STATE_DRAINING
        )
        call = asyncio.ensure_future(leader.SetRegionState(request, context))
        answer = await net.settle(call, "SetRegionState")
        assert answer.version == 1
        assert answer.meta_leader_node_id == 1
        assert [r.state for r in answer.regions] == [
            admin_pb2.REGION_STATE_ACTIVE,
            admin_pb2.REGION_STATE_DRAINING,
            admin_pb2.REGION_STATE_ACTIVE,
        ]

        stale = admin_pb2.SetRegionStateRequest(
            region="beijing", state=admin_pb2.REGION_STATE_ACTIVE, expected_version=9
        )
        call = asyncio.ensure_future(leader.SetRegionState(stale, context))
        await net.until(call.done, "the stale SetRegionState")
        with pytest.raises(Aborted) as aborted:
            call.result()
        assert aborted.value.code is grpc.StatusCode.FAILED_PRECONDITION
        assert "version 1, not 9" in aborted.value.details

        for bad, why in (
            (admin_pb2.SetRegionStateRequest(region="atlantis", state=1), "unknown region"),
            (admin_pb2.SetRegionStateRequest(region="beijing", state=0), "not a region state"),
            (admin_pb2.SetRegionStateRequest(region="beijing", state=1, deadline_ms=5), "only"),
        ):
            with pytest.raises(Aborted, match=why) as aborted:
                await leader.SetRegionState(bad, context)
            assert aborted.value.code is grpc.StatusCode.INVALID_ARGUMENT

        with pytest.raises(Aborted) as aborted:
            await follower.SetRegionState(request, context)
        assert aborted.value.code is grpc.StatusCode.UNAVAILABLE  # NOT_LEADER
        with pytest.raises(Aborted):
            await follower.ClusterState(admin_pb2.ClusterStateRequest(linearizable=True), context)

        call = asyncio.ensure_future(
            leader.ClusterState(admin_pb2.ClusterStateRequest(linearizable=True), context)
        )
        linearizable = await net.settle(call, "a linearizable ClusterState")
        assert linearizable.version == 1
        await net.until(lambda: net.runtimes[2].meta_state().version == 1, "node 2 applies")  # type: ignore[union-attr]
        local = await follower.ClusterState(admin_pb2.ClusterStateRequest(), context)
        assert (local.version, local.answered_by_node_id, local.age_ms) == (1, 2, 0)

        status = await follower.Status(admin_pb2.StatusRequest(), context)
        assert [s.shard_id for s in status.shards] == [0]  # ledger shards only
        assert status.meta_group.shard_id == META_GROUP_ID
        assert status.meta_group.leader_node_id == 1
        assert status.region_state == admin_pb2.REGION_STATE_DRAINING  # node 2: beijing
        assert status.cluster_state_version == 1
        assert status.cluster_id == net.runtimes[2].cluster_id

        topology = await leader.Topology(admin_pb2.TopologyRequest(), context)
        assert (topology.toml, topology.source) == ("x = 1\n", "/t")
        assert topology.cluster_id == net.runtimes[1].cluster_id

        # A leadership target in the draining region is refused, naming it.
        transfer = admin_pb2.TransferLeaderRequest(shard_id=0, target_node_id=2, wait_ms=0)
        with pytest.raises(Aborted, match="beijing, which is draining") as aborted:
            await leader.TransferLeader(transfer, context)
        assert aborted.value.code is grpc.StatusCode.INVALID_ARGUMENT

    run(scenario())


def test_campaign_gating_reaches_every_core(net: Net) -> None:
    runtime = net.runtimes[2]
    runtime.set_campaign_allowed(False)
    assert all(not r.core.campaign_allowed for r in runtime.groups.values())
    runtime.set_campaign_allowed(True)
    assert all(r.core.campaign_allowed for r in runtime.groups.values())


def test_a_restarted_node_of_a_draining_region_does_not_campaign_at_home(tmp_path: Path) -> None:
    async def scenario() -> None:
        cluster = Net(tmp_path, THREE_NODES)
        try:
            cluster.start()
            await cluster.until(lambda: cluster.meta_leader() == 1, "node 1 leads meta")
            future = cluster.runtimes[1].submit_meta(SetRegion("shenzhen", RegionState.DRAINING))
            await cluster.settle(future, "shenzhen draining")
            await cluster.cycle(5)
        finally:
            cluster.close()
        again = Net(tmp_path, THREE_NODES)  # the same LMDB directories: a restart
        try:
            node1 = again.runtimes[1]
            assert not node1.campaign_allowed
            assert all(not r.core.campaign_allowed for r in node1.groups.values())
            node1._campaign_home_shards()
            assert all(r.core.term == again.runtimes[2].groups[r.shard_id].core.term
                       for r in node1.groups.values())  # fmt: skip
        finally:
            again.close()

    run(scenario())


def test_a_leader_cut_off_from_its_quorum_refuses_at_once(net: Net) -> None:
    async def scenario() -> None:
        net.start()
        await net.until(lambda: net.meta_leader() == 1, "node 1 leads the meta group")
        shard = net.runtimes[1].replicas[0]
        await net.until(lambda: shard.is_leader and shard.core.quorum_active(), "shard 0 leader")
        net.cut.add(1)
        # While it still believes it leads but has heard from no quorum: UNAVAILABLE at once.
        # (A quiesced group learns it from node liveness: a timeout of real time.)
        deadline_s = time.monotonic() + CUT_OFF_NOTICED_S
        while time.monotonic() < deadline_s:
            net.runtimes[1].cycle(1)
            if shard.is_leader and not shard.core.quorum_active():
                break
            await asyncio.sleep(0.002)
        else:
            raise AssertionError("node 1 never saw its quorum go quiet while leading")
        for call in (
            lambda: net.runtimes[1].submit(0, Deposit("r-cut", "alice", 1)),
            lambda: net.runtimes[1].read_barrier(0),
        ):
            with pytest.raises(HongbaoError, match="cut off from a quorum") as refused:
                call()
            assert refused.value.reason is ErrorReason.UNAVAILABLE

    run(scenario())


def test_an_abandoned_command_whose_slot_a_new_leader_took_logs_no_error(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Issue 7 item 8: ``ERROR asyncio: Future exception was never retrieved ...
    leadership changed before the command committed`` after a client gave up."""
    caplog.set_level(logging.ERROR, logger="asyncio")

    async def scenario() -> None:
        h = Harness(tmp_path)
        try:
            await h.elect()
            term1, noop = h.core.term, h.core.last_index
            future = h.runtime.submit(0, Deposit("given-up", "alice", 100))
            await h.cycle()
            assert h.core.last_index == noop + 1  # proposed, never acknowledged
            with pytest.raises(TimeoutError):  # the client's deadline, as ledger_service has it
                await asyncio.wait_for(asyncio.shield(future), 0.01)
            del future  # nobody awaits it any more
            # Node 2 wins term1+1 and commits its own entry at that index.
            h.deliver(
                type=MT.APP, from_=NodeId(2), term=term1 + 1, index=noop, log_term=term1,
                entries=(Entry(term=term1 + 1, index=noop + 1),), commit=noop + 1,
            )  # fmt: skip
            await h.cycle(3)
            assert h.core.applied_index == noop + 1
            assert not h.runtime.replicas[0].inflight  # resolved (with NOT_LEADER)
        finally:
            h.close()

    run(scenario())
    gc.collect()
    never_retrieved = [r for r in caplog.records if "never retrieved" in r.getMessage()]
    assert never_retrieved == []


def test_a_lagging_meta_replica_catches_up_from_a_snapshot(tmp_path: Path) -> None:
    limits = RuntimeLimits(snapshot_interval_entries=3, trailing_entries=0)

    async def scenario() -> None:
        cluster = Net(tmp_path, THREE_NODES, limits)
        try:
            cluster.start()
            await cluster.until(lambda: cluster.meta_leader() == 1, "node 1 leads meta")
            cluster.cut.add(3)
            leader = cluster.runtimes[1]
            for n in range(6):
                state = RegionState.DRAINING if n % 2 == 0 else RegionState.ACTIVE
                await cluster.settle(leader.submit_meta(SetRegion("beijing", state)), "applied")
            meta = leader.groups[META_GROUP_ID]
            assert meta.snapshot_index > 0
            assert (
                meta.log.first_index() > cluster.runtimes[3].groups[META_GROUP_ID].core.last_index
            )
            image = leader.meta_state()
            assert image is not None
            assert image.version == 6
            cluster.cut.discard(3)
            await cluster.until(
                lambda: cluster.runtimes[3].meta_state() == leader.meta_state(),
                "node 3 to catch up (it can only do so from a snapshot)",
            )
            assert cluster.runtimes[3].groups[META_GROUP_ID].snapshot_index > 0
        finally:
            cluster.close()

    run(scenario())


def test_the_peer_guard_checks_meta_snapshots_as_meta_snapshots() -> None:
    machine, store = MetaMachine(ClusterState.initial("c", ("a",))), MemoryStore()
    machine.init(store)
    machine.apply_entry(store, 1, b"")
    image = machine.dump(store)

    def snap(data: bytes, index: int) -> Message:
        meta = SnapshotMeta(index=index, term=1, conf_state=ConfState(voters=frozenset()))
        return Message(type=MT.SNAP, snapshot=Snapshot(meta=meta, data=data))

    assert snapshot_problem(META_GROUP_ID, snap(image, 1)) is None
    assert "not a meta snapshot" in (snapshot_problem(META_GROUP_ID, snap(b"junk", 1)) or "")
    assert snapshot_problem(META_GROUP_ID, snap(image, 2)) is not None
    assert "not a ledger snapshot" in (snapshot_problem(0, snap(image, 1)) or "")
