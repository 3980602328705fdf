"""The router in front of fake nodes (in-process): bytes forwarded as they came, errors
passed back whole, hints followed, dead nodes skipped, Batch split and reassembled,
concurrent singles coalesced, bounds enforced."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from dataclasses import replace
from typing import Any

import grpc
import pytest
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from hongbao.client.routing import FAILURES_SUSPECT, NodeHealth
from hongbao.client.sdk import HongbaoClient
from hongbao.config.routers import RouterSpec
from hongbao.ledger.sharding import shard_for_user
from hongbao.node.errors import (
    ErrorReason,
    HongbaoError,
    LeaderHint,
    error_from_proto,
    error_from_rpc_error,
    make_error,
)
from hongbao.node.server import cluster_id_of
from hongbao.proto.gen.hongbao.v1 import admin_pb2, ledger_pb2
from hongbao.router.links import CLUSTER_ID_KEY
from hongbao.router.wire import repeated_messages
from tests.router.fakes import Behaviour, Rig, rig

DEPOSIT = "/hongbao.v1.Wallet/Deposit"
EXECUTE = "/hongbao.v1.Batch/Execute"


def run(work: Coroutine[Any, Any, None]) -> None:
    asyncio.run(work)


def deposit(user: str, rid: str, amount_fen: int = 5) -> bytes:
    return ledger_pb2.DepositRequest(
        request_id=rid, user_id=user, amount_fen=amount_fen
    ).SerializeToString()


def echo_balance(method: str, raw: bytes) -> bytes:
    """Deposit answers the amount as the balance; Execute answers each deposit likewise."""
    if method == EXECUTE:
        request = ledger_pb2.ExecuteRequest.FromString(raw)
        return ledger_pb2.ExecuteResponse(
            results=[
                ledger_pb2.OperationResult(
                    deposit=ledger_pb2.DepositResponse(balance_fen=op.deposit.amount_fen)
                )
                for op in request.operations
            ]
        ).SerializeToString()
    if method == DEPOSIT:
        single = ledger_pb2.DepositRequest.FromString(raw)
        return ledger_pb2.DepositResponse(balance_fen=single.amount_fen).SerializeToString()
    return b""


def user_on(shard_id: int, prefix: str = "u") -> str:
    return next(
        f"{prefix}{i}" for i in range(10_000) if shard_for_user(f"{prefix}{i}", 6) == shard_id
    )


def led_by(rig_: Rig, node_id: int) -> int:
    return next(s for s in range(6) if rig_.topology.home_leader_of(s) == node_id)


NO_COALESCING = {"coalesce_wait_ms": 0}


def test_the_request_and_answer_bytes_pass_unchanged_with_the_cluster_id() -> None:
    async def main() -> None:
        async with rig({n: echo_balance for n in (1, 2, 3)}, router_settings=NO_COALESCING) as r:
            user = user_on(led_by(r, 2))
            # An unknown field (99) a newer client might send: forwarded as it is.
            raw = deposit(user, "rid-1", 7) + bytes([0x98, 0x06, 0x01])
            answer = await r.raw(DEPOSIT)(raw, timeout=5)
            assert ledger_pb2.DepositResponse.FromString(answer).balance_fen == 7
            seen = r.nodes[2].calls("/Deposit")
            assert [s.raw for s in seen] == [raw]
            assert seen[0].metadata[CLUSTER_ID_KEY] == cluster_id_of(r.topology)

    run(main())


def test_a_node_error_comes_back_with_its_code_message_reason_and_hint() -> None:
    refusal = make_error(
        ErrorReason.ACCOUNT_FROZEN, "frozen by ops", shard_id=3, leader_hint=LeaderHint(2, "x:1")
    )

    def refuse(method: str, raw: bytes) -> bytes | HongbaoError:
        return refusal

    async def main() -> None:
        async with rig({n: refuse for n in (1, 2, 3)}, router_settings=NO_COALESCING) as r:
            with pytest.raises(grpc.aio.AioRpcError) as caught:
                await r.raw(DEPOSIT)(deposit(user_on(3), "r"), timeout=5)
            error = caught.value
            assert error.code() is grpc.StatusCode.FAILED_PRECONDITION
            assert error.details() == "frozen by ops"
            decoded = error_from_rpc_error(error)
            assert decoded.reason is ErrorReason.ACCOUNT_FROZEN
            assert decoded.server_reported
            assert decoded.shard_id == 3
            assert decoded.leader_hint == LeaderHint(2, "x:1")

    run(main())


def test_not_leader_is_followed_with_the_same_bytes() -> None:
    async def main() -> None:
        behaviours: dict[int, Behaviour] = {}
        async with rig(behaviours, router_settings=NO_COALESCING) as r:
            shard_id = led_by(r, 1)
            behaviours_now: dict[int, Behaviour] = {
                1: lambda m, raw: make_error(ErrorReason.NOT_LEADER, "", leader_hint=LeaderHint(3)),
                3: echo_balance,
            }
            for node_id, behaviour in behaviours_now.items():
                r.nodes[node_id].behaviour = behaviour
            raw = deposit(user_on(shard_id), "same-id", 9)
            answer = await r.raw(DEPOSIT)(raw, timeout=5)
            assert ledger_pb2.DepositResponse.FromString(answer).balance_fen == 9
            assert [s.raw for s in r.nodes[1].calls("/Deposit")] == [raw]
            assert [s.raw for s in r.nodes[3].calls("/Deposit")] == [raw]
            assert r.router.routing.leader_guess(shard_id) == 3

    run(main())


def test_a_node_that_does_not_answer_is_replaced_by_the_next_replica() -> None:
    async def main() -> None:
        async with rig(
            {2: echo_balance, 3: echo_balance}, router_settings=NO_COALESCING, started=(2, 3)
        ) as r:
            shard_id = led_by(r, 1)  # node 1 is not listening
            answer = await r.raw(DEPOSIT)(deposit(user_on(shard_id), "x", 4), timeout=5)
            assert ledger_pb2.DepositResponse.FromString(answer).balance_fen == 4

    run(main())


def test_a_batch_is_split_by_leader_and_comes_back_in_order() -> None:
    async def main() -> None:
        async with rig({n: echo_balance for n in (1, 2, 3)}) as r:
            users = [f"b{i}" for i in range(40)]
            request = ledger_pb2.ExecuteRequest(
                operations=[
                    ledger_pb2.Operation(
                        deposit=ledger_pb2.DepositRequest(
                            request_id=f"r{i}", user_id=u, amount_fen=i + 1
                        )
                    )
                    for i, u in enumerate(users)
                ]
            )
            answer = await r.raw(EXECUTE)(request.SerializeToString(), timeout=5)
            results = ledger_pb2.ExecuteResponse.FromString(answer).results
            assert [res.deposit.balance_fen for res in results] == list(range(1, 41))
            executes = sum(len(n.calls("/Execute")) for n in r.nodes.values())
            leaders = {r.topology.home_leader_of(shard_for_user(u, 6)) for u in users}
            assert executes == len(leaders)  # one call per leader node, in parallel
            for node_id, node in r.nodes.items():
                for seen in node.calls("/Execute"):
                    ops = ledger_pb2.ExecuteRequest.FromString(seen.raw).operations
                    led = {r.topology.home_leader_of(shard_for_user(op.deposit.user_id, 6))
                           for op in ops}  # fmt: skip
                    assert led == {node_id}, (node_id, led)

    run(main())


def test_a_batch_part_refused_by_not_leader_is_retried_alone() -> None:
    async def main() -> None:
        async with rig({n: echo_balance for n in (1, 2, 3)}) as r:
            shard_id = led_by(r, 1)

            def moved(method: str, raw: bytes) -> bytes:
                ops = ledger_pb2.ExecuteRequest.FromString(raw).operations
                error = ledger_pb2.OperationResult(
                    error={"reason": "NOT_LEADER", "code": 14, "leader_hint": {"node_id": 2}}
                )
                return ledger_pb2.ExecuteResponse(results=[error] * len(ops)).SerializeToString()

            r.nodes[1].behaviour = moved
            users = [user_on(shard_id, "p"), user_on(led_by(r, 3), "q")]
            request = ledger_pb2.ExecuteRequest(
                operations=[
                    ledger_pb2.Operation(
                        deposit=ledger_pb2.DepositRequest(
                            request_id=f"r{i}", user_id=u, amount_fen=i + 10
                        )
                    )
                    for i, u in enumerate(users)
                ]
            )
            answer = await r.raw(EXECUTE)(request.SerializeToString(), timeout=5)
            results = ledger_pb2.ExecuteResponse.FromString(answer).results
            assert [res.deposit.balance_fen for res in results] == [10, 11]
            assert len(r.nodes[2].calls("/Execute")) == 1

    run(main())


def test_concurrent_singles_for_one_node_ride_one_batch() -> None:
    async def main() -> None:
        settings = {"coalesce_wait_ms": 20, "coalesce_batch_max": 200}
        async with rig({n: echo_balance for n in (1, 2, 3)}, router_settings=settings) as r:
            shard_id = led_by(r, 1)
            users = [f"c{i}" for i in range(2_000) if shard_for_user(f"c{i}", 6) == shard_id][:50]
            answers = await asyncio.gather(
                *(
                    r.raw(DEPOSIT)(deposit(u, f"r{i}", i + 1), timeout=5)
                    for i, u in enumerate(users)
                )
            )
            balances = [ledger_pb2.DepositResponse.FromString(a).balance_fen for a in answers]
            assert balances == list(range(1, 51))
            executes = r.nodes[1].calls("/Execute")
            singles = r.nodes[1].calls("/Deposit")
            assert len(executes) + len(singles) < 10, (len(executes), len(singles))
            stats = r.router.stats()
            assert stats["operations_coalesced"] >= 40
            for seen in executes:
                for chunk in repeated_messages(seen.raw, 1):
                    op = ledger_pb2.Operation.FromString(chunk)
                    assert op.WhichOneof("op") == "deposit"

    run(main())


def test_requests_beyond_the_inflight_bound_are_refused_overloaded() -> None:
    async def main() -> None:
        release = asyncio.Event()
        async with rig({}, router_settings={"inflight_requests_max": 1, **NO_COALESCING}) as r:
            for node in r.nodes.values():
                node.behaviour = echo_balance

            # Hold the first request inside the router: its node answers only when released.
            async def slow(method: str, raw: bytes) -> None:
                await release.wait()

            for node in r.nodes.values():
                node.delay = slow

            async def held() -> bytes:
                return await r.raw(DEPOSIT)(deposit("a", "1"), timeout=5)

            first = asyncio.create_task(held())
            while r.router.inflight < 1:
                await asyncio.sleep(0.01)
            with pytest.raises(grpc.aio.AioRpcError) as caught:
                await r.raw(DEPOSIT)(deposit("b", "2"), timeout=5)
            assert error_from_rpc_error(caught.value).reason is ErrorReason.OVERLOADED
            release.set()
            await first

    run(main())


def test_another_clusters_id_is_refused() -> None:
    async def main() -> None:
        async with rig({n: echo_balance for n in (1, 2, 3)}) as r:
            with pytest.raises(grpc.aio.AioRpcError) as caught:
                await r.raw(DEPOSIT)(
                    deposit("a", "1"), timeout=5, metadata=((CLUSTER_ID_KEY, "other"),)
                )
            assert error_from_rpc_error(caught.value).reason is ErrorReason.CLUSTER_MISMATCH

    run(main())


def test_undecodable_bytes_are_invalid_argument() -> None:
    async def main() -> None:
        async with rig({n: echo_balance for n in (1, 2, 3)}) as r:
            for path in (DEPOSIT, EXECUTE):
                with pytest.raises(grpc.aio.AioRpcError) as caught:
                    await r.raw(path)(b"\xff\xff\xff", timeout=5)
                assert caught.value.code() is grpc.StatusCode.INVALID_ARGUMENT
            grab = ledger_pb2.GrabRequest(request_id="r", envelope_id="bad", user_id="u")
            with pytest.raises(grpc.aio.AioRpcError) as bad_id:
                await r.raw("/hongbao.v1.Envelopes/Grab")(grab.SerializeToString(), timeout=5)
            assert error_from_rpc_error(bad_id.value).reason is ErrorReason.MALFORMED_ID

    run(main())


def test_cluster_state_is_followed_and_served() -> None:
    draining = admin_pb2.ClusterStateResponse(
        cluster_id="c",
        version=4,
        regions=[
            admin_pb2.RegionStatus(name="shenzhen", state=admin_pb2.REGION_STATE_ACTIVE),
            admin_pb2.RegionStatus(name="shanghai", state=admin_pb2.REGION_STATE_DRAINING),
            admin_pb2.RegionStatus(name="tianjin", state=admin_pb2.REGION_STATE_ACTIVE),
        ],
        meta_leader_node_id=1,
        answered_by_node_id=1,
    ).SerializeToString()

    def meta(method: str, raw: bytes) -> bytes:
        return draining if method.endswith("/ClusterState") else echo_balance(method, raw)

    async def main() -> None:
        async with rig({1: meta, 2: echo_balance, 3: echo_balance}) as r:
            assert r.router.follower.state.version == 4  # read before serving
            assert not r.router.routing.takes_traffic(2)
            raw_state = await r.raw("/hongbao.v1.Admin/ClusterState")(b"", timeout=5)
            state = admin_pb2.ClusterStateResponse.FromString(raw_state)
            assert state.version == 4
            assert state.answered_by_node_id == 0
            assert state.regions[1].state == admin_pb2.REGION_STATE_DRAINING
            topology = admin_pb2.TopologyResponse.FromString(
                await r.raw("/hongbao.v1.Admin/Topology")(b"", timeout=5)
            )
            assert topology.cluster_id == cluster_id_of(r.topology)
            with pytest.raises(grpc.aio.AioRpcError) as caught:
                await r.raw("/hongbao.v1.Admin/Status")(b"", timeout=5)
            assert caught.value.code() is grpc.StatusCode.UNIMPLEMENTED

    run(main())


def test_reflection_lists_the_ledger_services_only() -> None:
    async def main() -> None:
        async with rig({}) as r:
            stub = reflection_pb2_grpc.ServerReflectionStub(r.channel)  # type: ignore[arg-type]

            async def ask() -> Any:
                yield reflection_pb2.ServerReflectionRequest(list_services="")

            names: set[str] = set()
            async for answer in stub.ServerReflectionInfo(ask()):
                names |= {s.name for s in answer.list_services_response.service}
            assert {"hongbao.v1.Wallet", "hongbao.v1.Envelopes", "hongbao.v1.Batch"} <= names
            assert not any("Peer" in n or "Admin" in n for n in names)

    run(main())


def test_the_sdk_names_its_cluster_and_a_router_of_another_refuses_it() -> None:
    async def main() -> None:
        async with rig({n: echo_balance for n in (1, 2, 3)}) as r:
            spec = RouterSpec(router_id=1, region="shenzhen", host="127.0.0.1", port=r.router.port)
            async with HongbaoClient(r.topology, routers=[spec]) as same:
                assert await same.deposit("a", 3) == 3
            other = replace(r.topology, cluster_id="another-cluster")
            async with HongbaoClient(other, routers=[spec]) as stranger:
                with pytest.raises(HongbaoError) as refused:
                    await stranger.deposit("a", 3)
                assert refused.value.reason is ErrorReason.CLUSTER_MISMATCH

    run(main())


def test_stale_reads_go_to_the_routers_own_region() -> None:
    async def main() -> None:
        async with rig({n: echo_balance for n in (1, 2, 3)}, region="tianjin") as r:
            shard_id = led_by(r, 1)
            read = ledger_pb2.BalanceRequest(user_id=user_on(shard_id), stale_ok=True)
            await r.raw("/hongbao.v1.Wallet/Balance")(read.SerializeToString(), timeout=5)
            assert len(r.nodes[3].calls("/Balance")) == 1
            assert not r.nodes[1].calls("/Balance")
            fresh = ledger_pb2.BalanceRequest(user_id=user_on(shard_id))
            await r.raw("/hongbao.v1.Wallet/Balance")(fresh.SerializeToString(), timeout=5)
            assert len(r.nodes[1].calls("/Balance")) == 1  # a linearizable read: the leader

    run(main())


async def hang(method: str, raw: bytes) -> None:
    await asyncio.Event().wait()  # until the fake node's server stops


def test_a_node_that_hangs_costs_one_forward_timeout_then_the_next_replica_serves() -> None:
    async def main() -> None:
        settings = {"forward_timeout_ms": 200, **NO_COALESCING}
        async with rig({n: echo_balance for n in (1, 2, 3)}, router_settings=settings) as r:
            shard_id = led_by(r, 1)
            r.nodes[1].delay = hang  # node 1 takes the call and never answers anything
            loop = asyncio.get_running_loop()
            started = loop.time()
            answer = await r.raw(DEPOSIT)(deposit(user_on(shard_id), "h", 6), timeout=5)
            assert ledger_pb2.DepositResponse.FromString(answer).balance_fen == 6
            assert loop.time() - started < 1.0

    run(main())


def test_a_node_back_from_down_is_found_by_the_prober() -> None:
    async def main() -> None:
        async with rig({n: echo_balance for n in (1, 2, 3)}, started=(2, 3)) as r:
            health = r.router.routing.health
            for _ in range(FAILURES_SUSPECT):
                health.failed(1)
            assert health.health_of(1) is not NodeHealth.UP
            assert await r.router.prober.probe_once() == []  # nobody listens there
            await r.nodes[1].start()
            loop = asyncio.get_running_loop()
            deadline = loop.time() + 10
            while await r.router.prober.probe_once() != [1]:
                assert loop.time() < deadline, "the prober never reached node 1"
                await asyncio.sleep(0.05)
            assert health.health_of(1) is NodeHealth.UP
            assert r.nodes[1].calls("/grpc.health.v1.Health/Check")

    run(main())


def test_concurrent_batches_through_a_busy_leader_all_finish_each_operation_sent_once() -> None:
    """A leader that is slow but answering is waited for, not cut off and sent the same
    parts again: the resends (via a follower's NOT_LEADER, back to the end of the same
    queue) once turned 64 x 100-operation Batches into calls that never finished."""
    batches, disk_s, settings = 16, 0.03, {"forward_timeout_ms": 200, **NO_COALESCING}

    async def main() -> None:
        async with rig({}, router_settings=settings) as r:
            leader_of = {s: int(r.topology.home_leader_of(s)) for s in range(6)}

            def node(node_id: int) -> tuple[Behaviour, Any]:
                disk = asyncio.Lock()

                def leads(raw: bytes) -> bool:
                    ops = ledger_pb2.ExecuteRequest.FromString(raw).operations
                    return all(
                        leader_of[shard_for_user(o.deposit.user_id, 6)] == node_id for o in ops
                    )

                async def queue(method: str, raw: bytes) -> None:
                    if method == EXECUTE and leads(raw):
                        async with disk:  # one part at a time: the queue grows past 200 ms
                            await asyncio.sleep(disk_s)

                def answer(method: str, raw: bytes) -> bytes | HongbaoError:
                    if method != EXECUTE or leads(raw):
                        return echo_balance(method, raw)
                    ops = ledger_pb2.ExecuteRequest.FromString(raw).operations
                    hint = leader_of[shard_for_user(ops[0].deposit.user_id, 6)]
                    moved = ledger_pb2.OperationResult(
                        error={"reason": "NOT_LEADER", "code": 14, "leader_hint": {"node_id": hint}}
                    )
                    return ledger_pb2.ExecuteResponse(
                        results=[moved] * len(ops)
                    ).SerializeToString()

                return answer, queue

            for node_id, fake in r.nodes.items():
                fake.behaviour, fake.delay = node(node_id)

            def request(b: int) -> bytes:
                users = [user_on(s, f"b{b}x{k}-") for s in range(6) for k in range(2)]
                return ledger_pb2.ExecuteRequest(
                    operations=[
                        ledger_pb2.Operation(
                            deposit={"request_id": f"{b}-{i}", "user_id": u, "amount_fen": i + 1}
                        )
                        for i, u in enumerate(users)
                    ]
                ).SerializeToString()

            loop = asyncio.get_running_loop()
            started = loop.time()
            answers = await asyncio.gather(
                *(r.raw(EXECUTE)(request(b), timeout=10) for b in range(batches))
            )
            elapsed_s = loop.time() - started
            for answer in answers:
                results = ledger_pb2.ExecuteResponse.FromString(answer).results
                assert [res.deposit.balance_fen for res in results] == list(range(1, 13))
            sent = [
                op.deposit.request_id
                for fake in r.nodes.values()
                for seen in fake.calls("/Execute")
                for op in ledger_pb2.ExecuteRequest.FromString(seen.raw).operations
                if leader_of[shard_for_user(op.deposit.user_id, 6)] == fake.node_id
            ]
            assert len(sent) == len(set(sent)) == batches * 12  # no part sent twice
            # The busiest leader's queue: its parts one after another, and little more.
            assert elapsed_s < 2 * batches * 2 * disk_s + 1.0

    run(main())


def test_the_router_answers_a_batch_before_the_clients_deadline_even_when_no_node_does() -> None:
    """Per-operation errors the client can act on, not a client-side DEADLINE_EXCEEDED that
    looks like a dead router (and sent the whole Batch again through another region's)."""

    async def main() -> None:
        async with rig({n: echo_balance for n in (1, 2, 3)}, router_settings=NO_COALESCING) as r:
            for fake in r.nodes.values():
                fake.delay = hang
            request = ledger_pb2.ExecuteRequest(
                operations=[
                    ledger_pb2.Operation(
                        deposit={"request_id": f"d{s}", "user_id": user_on(s), "amount_fen": 1}
                    )
                    for s in range(6)
                ]
            )
            answer = await r.raw(EXECUTE)(request.SerializeToString(), timeout=1.0)
            results = ledger_pb2.ExecuteResponse.FromString(answer).results
            reasons = [error_from_proto(res.error).reason for res in results]
            assert reasons == [ErrorReason.OUTCOME_UNKNOWN] * 6

    run(main())
