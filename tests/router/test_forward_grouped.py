"""A client Batch's first attempt goes as one call per leader node, not one per shard
(:mod:`hongbao.router.grouped`), and what that call leaves unfinished goes on shard by
shard with the usual rules: NOT_LEADER followed for just those operations, a call that
may have applied never answered with a definite error, a definite error answered whole."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any

import pytest

from hongbao.ledger.sharding import shard_for_user
from hongbao.node.bugs import RouterBugs
from hongbao.node.errors import ErrorReason, HongbaoError, error_from_proto, make_error
from hongbao.proto.gen.hongbao.v1 import ledger_pb2
from tests.router.fakes import Behaviour, Rig, rig

EXECUTE = "/hongbao.v1.Batch/Execute"
SHARDS = 6  # tests.router.fakes.fake_topology
NO_COALESCING = {"coalesce_wait_ms": 0}


def run(work: Coroutine[Any, Any, None]) -> None:
    asyncio.run(work)


def user_on(shard_id: int, prefix: str) -> str:
    return next(
        f"{prefix}{i}" for i in range(10_000) if shard_for_user(f"{prefix}{i}", SHARDS) == shard_id
    )


def shards_led_by(rig_: Rig, node_id: int) -> list[int]:
    return [s for s in range(SHARDS) if rig_.topology.home_leader_of(s) == node_id]


def operations_of(raw: bytes) -> list[ledger_pb2.Operation]:
    return list(ledger_pb2.ExecuteRequest.FromString(raw).operations)


def shard_of(operation: ledger_pb2.Operation) -> int:
    return shard_for_user(operation.deposit.user_id, SHARDS)


def answer_each(operations: list[ledger_pb2.Operation], moved: set[int], hint: int) -> bytes:
    """Each deposit's amount as its balance; NOT_LEADER (naming ``hint``) for the shards in
    ``moved``."""
    results = []
    for op in operations:
        if shard_of(op) in moved:
            results.append(
                ledger_pb2.OperationResult(
                    error={"reason": "NOT_LEADER", "code": 14, "leader_hint": {"node_id": hint}}
                )
            )
        else:
            results.append(
                ledger_pb2.OperationResult(
                    deposit=ledger_pb2.DepositResponse(balance_fen=op.deposit.amount_fen)
                )
            )
    return ledger_pb2.ExecuteResponse(results=results).SerializeToString()


def echo(method: str, raw: bytes) -> bytes:
    return answer_each(operations_of(raw), set(), 0) if method == EXECUTE else b""


def batch_over(shards: list[int], per_shard: int) -> tuple[bytes, list[int]]:
    """A Batch of deposits, the shards interleaved (amount i + 1 at position i), and the
    shard of each position."""
    users = [user_on(s, f"g{k}x") for k in range(per_shard) for s in shards]
    request = ledger_pb2.ExecuteRequest(
        operations=[
            ledger_pb2.Operation(
                deposit=ledger_pb2.DepositRequest(request_id=f"r{i}", user_id=u, amount_fen=i + 1)
            )
            for i, u in enumerate(users)
        ]
    )
    return request.SerializeToString(), [shard_for_user(u, SHARDS) for u in users]


async def execute(r: Rig, raw: bytes) -> list[ledger_pb2.OperationResult]:
    answer = await r.raw(EXECUTE)(raw, timeout=5)
    return list(ledger_pb2.ExecuteResponse.FromString(answer).results)


def reason_of(result: ledger_pb2.OperationResult) -> ErrorReason | None:
    return error_from_proto(result.error).reason if result.HasField("error") else None


def test_a_batch_over_three_leaders_is_three_calls_and_comes_back_in_order() -> None:
    async def main() -> None:
        async with rig({n: echo for n in (1, 2, 3)}, router_settings=NO_COALESCING) as r:
            raw, _ = batch_over(list(range(SHARDS)), per_shard=3)
            results = await execute(r, raw)
            assert [res.deposit.balance_fen for res in results] == list(range(1, 19))
            for node_id, node in r.nodes.items():
                calls = node.calls("/Execute")
                assert len(calls) == 1, (node_id, len(calls))
                operations = operations_of(calls[0].raw)
                assert {shard_of(op) for op in operations} == set(shards_led_by(r, node_id))
                amounts = [op.deposit.amount_fen for op in operations]
                assert amounts == sorted(amounts)  # the client's order within the call
                assert len(amounts) == 3 * len(shards_led_by(r, node_id))
            assert r.router.stats()["batch_parts"] == 3
            assert r.router.stats()["retries"] == 0

    run(main())


def test_not_leader_for_one_shard_sends_only_its_operations_again_to_the_hinted_node() -> None:
    async def main() -> None:
        async with rig({n: echo for n in (1, 2, 3)}, router_settings=NO_COALESCING) as r:
            moved, stays = shards_led_by(r, 1)

            def one_shard_moved(method: str, raw: bytes) -> bytes:
                return answer_each(operations_of(raw), {moved}, hint=2)

            r.nodes[1].behaviour = one_shard_moved
            raw, shard_at = batch_over(list(range(SHARDS)), per_shard=2)
            results = await execute(r, raw)
            assert [res.deposit.balance_fen for res in results] == list(range(1, 13))
            assert len(r.nodes[1].calls("/Execute")) == 1
            to_node_2 = [operations_of(s.raw) for s in r.nodes[2].calls("/Execute")]
            assert len(to_node_2) == 2  # its own shards' call, then the moved shard's
            resent = next(ops for ops in to_node_2 if moved in {shard_of(op) for op in ops})
            assert [shard_of(op) for op in resent] == [moved, moved]
            assert [op.deposit.amount_fen for op in resent] == [
                i + 1 for i, s in enumerate(shard_at) if s == moved
            ]
            assert r.router.routing.leader_guess(moved) == 2
            assert r.router.routing.leader_guess(stays) == 1
            registry = r.router.metrics.registry
            assert registry.get_sample_value("hongbao_router_redirects_total") == 1
            assert registry.get_sample_value("hongbao_router_retries_total") == 1

    run(main())


@pytest.mark.parametrize(
    ("first_failure", "answered"),
    [
        (ErrorReason.OUTCOME_UNKNOWN, ErrorReason.OUTCOME_UNKNOWN),  # may have applied
        (ErrorReason.UNAVAILABLE, ErrorReason.ACCOUNT_FROZEN),  # refused unapplied
    ],
)
def test_a_failed_grouped_call_that_may_have_applied_is_never_answered_definitely(
    first_failure: ErrorReason, answered: ErrorReason
) -> None:
    async def main() -> None:
        async with rig({n: echo for n in (1, 2, 3)}, router_settings=NO_COALESCING) as r:
            failing = set(shards_led_by(r, 1))

            def node(node_id: int) -> Behaviour:
                def behaviour(method: str, raw: bytes) -> bytes | HongbaoError:
                    operations = operations_of(raw)
                    if not failing & {shard_of(op) for op in operations}:
                        return echo(method, raw)
                    if node_id == 1:  # the grouped call: fails whole
                        return make_error(first_failure, "lost in the queue")
                    return make_error(ErrorReason.ACCOUNT_FROZEN, "a definite refusal")

                return behaviour

            for node_id, fake in r.nodes.items():
                fake.behaviour = node(node_id)
            raw, shard_at = batch_over(list(range(SHARDS)), per_shard=2)
            results = await execute(r, raw)
            for position, shard_id in enumerate(shard_at):
                if shard_id in failing:
                    assert reason_of(results[position]) is answered, position
                else:
                    assert results[position].deposit.balance_fen == position + 1
            assert len(r.nodes[1].calls("/Execute")) == 1
            retried = [
                {shard_of(op) for op in operations_of(s.raw)}
                for n in (2, 3)
                for s in r.nodes[n].calls("/Execute")
            ]
            assert sorted(s for shards in retried if shards & failing for s in shards) == sorted(
                failing
            )  # one part per shard after the grouped call failed

    run(main())


def test_a_definite_whole_call_error_is_answered_to_every_position_of_the_group() -> None:
    async def main() -> None:
        async with rig({n: echo for n in (1, 2, 3)}, router_settings=NO_COALESCING) as r:
            frozen = make_error(ErrorReason.ACCOUNT_FROZEN, "frozen by ops")
            r.nodes[1].behaviour = lambda method, raw: frozen
            raw, shard_at = batch_over(list(range(SHARDS)), per_shard=2)
            results = await execute(r, raw)
            group = set(shards_led_by(r, 1))
            for position, shard_id in enumerate(shard_at):
                if shard_id in group:
                    assert reason_of(results[position]) is ErrorReason.ACCOUNT_FROZEN
                    assert error_from_proto(results[position].error).message == "frozen by ops"
                else:
                    assert results[position].deposit.balance_fen == position + 1
            assert len(r.nodes[1].calls("/Execute")) == 1
            for n in (2, 3):  # nothing of node 1's shards was sent anywhere else
                for seen in r.nodes[n].calls("/Execute"):
                    assert not group & {shard_of(op) for op in operations_of(seen.raw)}
            assert r.router.stats()["retries"] == 0

    run(main())


def test_an_answer_with_the_wrong_count_of_results_is_outcome_unknown_for_the_group() -> None:
    async def main() -> None:
        async with rig({n: echo for n in (1, 2, 3)}, router_settings=NO_COALESCING) as r:
            r.nodes[1].behaviour = lambda method, raw: echo(method, raw)[:0]  # no results
            raw, shard_at = batch_over(list(range(SHARDS)), per_shard=1)
            results = await execute(r, raw)
            group = set(shards_led_by(r, 1))
            reasons = [reason_of(res) for res in results]
            assert reasons == [
                ErrorReason.OUTCOME_UNKNOWN if s in group else None for s in shard_at
            ]

    run(main())


def test_under_the_retry_fresh_id_bug_switch_each_shard_is_its_own_call() -> None:
    async def main() -> None:
        async with rig(
            {n: echo for n in (1, 2, 3)},
            router_settings=NO_COALESCING,
            router_bugs=RouterBugs(retry_fresh_id=True),
        ) as r:
            raw, _ = batch_over(list(range(SHARDS)), per_shard=2)
            results = await execute(r, raw)
            assert [res.deposit.balance_fen for res in results] == list(range(1, 13))
            calls = [s for node in r.nodes.values() for s in node.calls("/Execute")]
            assert len(calls) == SHARDS
            for seen in calls:
                assert len({shard_of(op) for op in operations_of(seen.raw)}) == 1

    run(main())
