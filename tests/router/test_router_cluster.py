"""Every RPC kind through real routers in front of a real cluster (processes on 127.0.0.1)."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any, TypeVar

import grpc
import pytest

from hongbao.client.sdk import ClientOptions, HongbaoClient
from hongbao.config.routers import RouterSpec
from hongbao.config.topology import Topology
from hongbao.node.errors import ErrorReason, HongbaoError, error_from_rpc_error
from hongbao.proto.gen.hongbao.v1 import admin_pb2, admin_pb2_grpc, ledger_pb2, ledger_pb2_grpc
from tests.cluster.support import wait_for
from tests.router.conftest import Routed
from tests.router.support import Routers

pytestmark = pytest.mark.cluster
T = TypeVar("T")


def run(work: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(work)


def client(topology: Topology, region: str = "shenzhen") -> HongbaoClient:
    return HongbaoClient.via_routers(topology, ClientOptions(timeout_s=5.0), region=region)


def test_every_single_rpc_kind_goes_through_the_router(routed: Routed) -> None:
    topology = routed.harness.topology

    async def main() -> None:
        async with client(topology) as c:
            assert await c.deposit("r-alice", 10_000, request_id="dep-1") == 10_000
            assert await c.deposit("r-alice", 10_000, request_id="dep-1") == 10_000  # replay
            assert await c.withdraw("r-alice", 1_000) == 9_000
            transfer = await c.transfer("r-alice", "r-bob", 2_000)
            assert transfer.from_balance_fen == 7_000
            assert (await c.balance("r-alice")).balance_fen == 7_000
            stale = await c.balance("r-alice", stale_ok=True)
            assert stale.balance_fen <= 7_000
            assert len((await c.history("r-alice")).postings) == 3
            await c.deposit("r-carol", 1)
            assert await c.freeze("r-carol", frozen=True) is True
            assert await c.freeze("r-carol", frozen=False) is False
            sent = await c.send_envelope("r-alice", 600, 3, lucky=False)
            grab = await c.grab(sent.envelope_id, "r-bob")
            assert grab.amount_fen == 200
            assert grab.ordinal == 1
            shown = await c.show(sent.envelope_id)
            assert shown.remaining_count == 2
        router = topology.routers[0]
        async with grpc.aio.insecure_channel(router.address) as channel:
            wallet = ledger_pb2_grpc.WalletStub(channel)
            status = await wallet.RequestStatus(
                ledger_pb2.RequestStatusRequest(request_id="dep-1", user_id="r-alice"), timeout=5
            )
            assert status.outcome == ledger_pb2.REQUEST_OUTCOME_APPLIED
            assert status.result.deposit.balance_fen == 10_000

    run(main())


def test_a_batch_over_every_shard_comes_back_in_order(routed: Routed) -> None:
    topology = routed.harness.topology

    async def main() -> None:
        async with client(topology, "tianjin") as c:
            users = [f"rb-{i}" for i in range(60)]
            operations = [
                (
                    c.user_shard(user),
                    ledger_pb2.Operation(
                        deposit=ledger_pb2.DepositRequest(
                            request_id=f"rb-dep-{i}", user_id=user, amount_fen=i + 1
                        )
                    ),
                )
                for i, user in enumerate(users)
            ]
            assert len({shard for shard, _ in operations}) == topology.shard_count
            results = await c.execute(operations)
            assert [r.deposit.balance_fen for r in results] == list(range(1, 61))
            reads = [
                (
                    c.user_shard(u),
                    ledger_pb2.Operation(balance=ledger_pb2.BalanceRequest(user_id=u)),
                )
                for u in reversed(users)
            ]
            balances = await c.execute(reads)
            assert [r.balance.balance_fen for r in balances] == list(range(60, 0, -1))

    run(main())


def test_errors_keep_their_reason_through_the_router(routed: Routed) -> None:
    topology = routed.harness.topology

    async def main() -> None:
        async with client(topology, "shanghai") as c:
            await c.deposit("r-poor", 100)
            with pytest.raises(HongbaoError) as refused:
                await c.withdraw("r-poor", 1_000)
            assert refused.value.reason is ErrorReason.INSUFFICIENT_FUNDS
            assert refused.value.server_reported
            with pytest.raises(HongbaoError) as malformed:
                await c.grab("e99999-1", "r-poor")  # beyond the shard count
            assert malformed.value.reason is ErrorReason.NOT_FOUND
        async with grpc.aio.insecure_channel(topology.routers[1].address) as channel:
            grab = ledger_pb2_grpc.EnvelopesStub(channel).Grab
            with pytest.raises(grpc.aio.AioRpcError) as caught:
                await grab(ledger_pb2.GrabRequest(request_id="r", envelope_id="x", user_id="u"))
            assert caught.value.code() is grpc.StatusCode.INVALID_ARGUMENT
            assert error_from_rpc_error(caught.value).reason is ErrorReason.MALFORMED_ID

    run(main())


def test_not_leader_is_followed_after_a_leadership_transfer(routed: Routed) -> None:
    harness = routed.harness
    topology = harness.topology
    shard_id = 0
    home = int(topology.home_leader_of(shard_id))
    target = next(int(n) for n in topology.replicas_of(shard_id) if int(n) != home)
    leaders = harness.leaders()
    admin = admin_pb2_grpc.AdminStub(harness.channel(leaders[shard_id]))
    admin.TransferLeader(
        admin_pb2.TransferLeaderRequest(shard_id=shard_id, target_node_id=target, wait_ms=5_000),
        timeout=10,
    )
    wait_for(lambda: harness.leaders()[shard_id] == target, 10, f"node {target} to lead")
    user = next(
        f"nl-{i}" for i in range(1_000) if client(topology).user_shard(f"nl-{i}") == shard_id
    )

    async def main() -> None:
        async with client(topology) as c:  # routers still guess the home leader
            assert await c.deposit(user, 50) == 50
            assert (await c.balance(user)).balance_fen == 50

    run(main())
    admin = admin_pb2_grpc.AdminStub(harness.channel(target))
    admin.TransferLeader(
        admin_pb2.TransferLeaderRequest(shard_id=shard_id, target_node_id=home, wait_ms=5_000),
        timeout=10,
    )


def test_the_router_answers_cluster_state_and_health(routed: Routed) -> None:
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    topology = routed.harness.topology

    async def main() -> None:
        async with grpc.aio.insecure_channel(topology.routers[2].address) as channel:
            health = health_pb2_grpc.HealthStub(channel)
            answer = await health.Check(health_pb2.HealthCheckRequest(service=""), timeout=5)
            assert answer.status == health_pb2.HealthCheckResponse.SERVING
            state = await admin_pb2_grpc.AdminStub(channel).ClusterState(
                admin_pb2.ClusterStateRequest(), timeout=5
            )
            assert [r.name for r in state.regions] == [r.name for r in topology.regions]
            assert state.answered_by_node_id == 0

    run(main())


def test_concurrent_single_requests_are_coalesced_into_batches(routed: Routed) -> None:
    """An extra router (an id outside the file, --port 0, a 20 ms window): 120 concurrent
    deposits reach the nodes in far fewer forwarded calls; its counters are logged on stop."""
    topology = routed.harness.topology
    extra = RouterSpec(router_id=9, region="shenzhen", host="127.0.0.1", port=0)
    config = routed.harness.cluster.config_path
    window = config.parent / "coalescing.toml"
    window.write_text(config.read_text() + "\n[router]\ncoalesce_wait_ms = 20\n")
    routers = Routers(window, topology, routed.routers.log_dir)
    try:
        routers.start(extra, "--host", "127.0.0.1", "--port", "0")
        ready = routed.routers.log_dir / "router-9.ready"
        address = ready.read_text().strip()

        async def main() -> None:
            async with grpc.aio.insecure_channel(address) as channel:
                wallet = ledger_pb2_grpc.WalletStub(channel)
                answers = await asyncio.gather(
                    *(
                        wallet.Deposit(
                            ledger_pb2.DepositRequest(
                                request_id=f"co-{i}", user_id=f"co-{i % 7}", amount_fen=1
                            ),
                            timeout=10,
                        )
                        for i in range(120)
                    )
                )
                assert sorted(a.balance_fen for a in answers)[-1] >= 17

        run(main())
        assert routers.stop(9) == 0
    finally:
        routers.close()
    line = next(line for line in routers.tail(9).splitlines() if "router 9 stopped:" in line)
    counters = dict(item.split("=") for item in line.split("stopped: ")[1].split())
    assert int(counters["requests"]) == 120
    assert int(counters["operations_coalesced"]) >= 60, line
    forwarded = int(counters["coalesced_batches"]) + int(counters["singles_forwarded"])
    assert forwarded < 60, line


def test_routers_follow_a_region_state_change_within_the_poll_bound(routed: Routed) -> None:
    """tianjin marked draining in the meta group: every router's ClusterState shows it
    (each polls every state_poll_ms), requests keep succeeding, and undraining shows too."""
    harness = routed.harness
    topology = harness.topology

    def set_state(state: int) -> int:
        node_id = int(topology.meta_replicas[0])
        for _ in range(len(topology.meta_replicas) + 1):
            admin = admin_pb2_grpc.AdminStub(harness.channel(node_id))
            try:
                answer = admin.SetRegionState(
                    admin_pb2.SetRegionStateRequest(region="tianjin", state=state), timeout=10
                )
                return int(answer.version)
            except grpc.RpcError as error:
                hint = error_from_rpc_error(error).leader_hint
                if hint is None or not hint.node_id:
                    raise
                node_id = hint.node_id
        raise AssertionError("no meta leader accepted the change")

    async def router_views() -> list[admin_pb2.ClusterStateResponse]:
        views = []
        for spec in topology.routers:
            async with grpc.aio.insecure_channel(spec.address) as channel:
                views.append(
                    await admin_pb2_grpc.AdminStub(channel).ClusterState(
                        admin_pb2.ClusterStateRequest(), timeout=5
                    )
                )
        return views

    def all_at(version: int, state: int) -> bool:
        views = run(router_views())
        return all(v.version >= version and v.regions[2].state == state for v in views)

    version = set_state(admin_pb2.REGION_STATE_DRAINING)
    try:
        wait_for(lambda: all_at(version, admin_pb2.REGION_STATE_DRAINING), 10, "routers to see it")

        async def still_served() -> None:
            async with client(topology, "tianjin") as c:
                await c.deposit("dr-x", 5)
                assert (await c.balance("dr-x", stale_ok=True)).balance_fen >= 0

        run(still_served())
    finally:
        back = set_state(admin_pb2.REGION_STATE_ACTIVE)
    wait_for(lambda: all_at(back, admin_pb2.REGION_STATE_ACTIVE), 10, "routers to see it back")
