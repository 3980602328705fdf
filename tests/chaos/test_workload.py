"""The chaos workload against real nodes and routers: every kind of op, plausible answers.

One cluster of configs/local.toml (3 nodes, 3 routers, fresh ports, --no-fsync) serves the
module; the router-failover test kills a router and starts it again. The pure answer rules
(:func:`settle`) are tested without a cluster.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from hongbao.chaos import workload as workload_module
from hongbao.chaos.answers import Answer, settle
from hongbao.chaos.history import KINDS, HistoryWriter, Op, read_history
from hongbao.chaos.suite import Workload
from hongbao.chaos.workload import ChaosWorkload
from hongbao.ledger.sharding import is_user_id, parse_envelope_id, shard_for_user
from hongbao.node.errors import ErrorReason, error_to_proto, make_error
from hongbao.ops.admin_pool import AdminPool
from hongbao.ops.local import LocalCluster, write_topology
from hongbao.ops.status import wait_for_leaders
from hongbao.proto.gen.hongbao.v1 import ledger_pb2

pytestmark = pytest.mark.cluster

REPO = Path(__file__).resolve().parents[2]
TEMPLATE = REPO / "configs" / "local.toml"
LEADERS_TIMEOUT_S = 30.0
# Enough envelopes and grabs in a few seconds; a long deadline so a busy machine gives
# definite answers (the info path is tested in test_collect).
SETTINGS = Workload(concurrency=6, batch=20, users=60, send=3, grab=8, call_timeout_ms=10_000)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    root = tmp_path_factory.mktemp("chaos-workload")
    path = write_topology(root / "topology.toml", template=TEMPLATE)
    with LocalCluster(path, root / "data", no_fsync=True) as running:
        running.start()
        running.start_routers()

        async def led() -> None:
            async with AdminPool.for_topology(running.topology) as pool:
                await wait_for_leaders(pool, LEADERS_TIMEOUT_S)

        asyncio.run(led())
        yield running


def drive(
    cluster: LocalCluster,
    directory: Path,
    settings: Workload,
    *,
    seed: int,
    run_s: float,
    during: object = None,
) -> tuple[list[Op], ChaosWorkload]:
    """prepare, then run for ``run_s``; ``during`` (a callable) runs in a thread at 1/3."""
    started = time.monotonic()

    def clock() -> float:
        return time.monotonic() - started

    async def main() -> ChaosWorkload:
        history = HistoryWriter(directory)
        workload = ChaosWorkload(cluster.topology, settings, history, seed=seed, clock=clock)
        try:
            await workload.prepare()
            end_s = clock() + run_s
            if callable(during):
                runs = asyncio.create_task(workload.run(end_s))
                await asyncio.sleep(run_s / 3)
                await asyncio.to_thread(during)
                await runs
            else:
                await workload.run(end_s)
        finally:
            await workload.close()
            history.close()
        return workload

    workload = asyncio.run(main())
    return read_history(directory), workload


def shard_of(cluster: LocalCluster, user: object) -> int:
    return shard_for_user(str(user), cluster.topology.shard_count)


def test_every_kind_with_plausible_answers(
    cluster: LocalCluster, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(workload_module, "DOUBLE_GRAB_SHARE", 0.1)  # enough to see refusals
    ops, workload = drive(cluster, tmp_path, SETTINGS, seed=11, run_s=5.0)
    assert len(ops) == sum(workload.counts.values())
    by_kind = Counter(op.kind for op in ops if op.status == "ok")
    assert set(by_kind) == set(KINDS), by_kind
    assert len({op.request_id for op in ops}) == len(ops)
    assert all(op.request_id == f"c11-{op.op_id}" for op in ops)
    assert {op.region for op in ops} == {r.region for r in cluster.topology.routers}
    assert all(op.invoke_s <= op.complete_s for op in ops)
    assert all(is_user_id(user) and user.startswith("c11-") for user in workload.users)
    opening = [op for op in ops if op.op_id <= len(workload.users)]
    assert {op.args["user"] for op in opening} == set(workload.users)
    assert all(
        op.status == "ok" and op.args["amount_fen"] == SETTINGS.initial_fen for op in opening
    )
    limits = cluster.topology.limits
    sent: dict[str, Op] = {}
    grabbed: dict[tuple[object, object], Op] = {}
    for op in ops:
        if op.status != "ok":
            assert op.reason or op.status == "info", op
            assert not op.result
            continue
        assert op.code == ""
        assert op.reason == ""
        if op.op_id <= len(workload.users):
            continue
        if op.kind in ("deposit", "withdraw"):
            assert 1 <= int(op.args["amount_fen"]) <= SETTINGS.amount_max_fen  # type: ignore[call-overload]
            assert int(op.result["balance_fen"]) >= 0  # type: ignore[call-overload]
        elif op.kind == "transfer":
            assert op.args["from"] != op.args["to"]
            assert op.result["cross_shard"] == (
                shard_of(cluster, op.args["from"]) != shard_of(cluster, op.args["to"])
            )
            assert int(op.result["from_balance_fen"]) >= 0  # type: ignore[call-overload]
        elif op.kind == "send":
            count, total = int(op.args["count"]), int(op.args["total_fen"])  # type: ignore[call-overload]
            assert 1 <= count <= min(SETTINGS.envelope_count_max, limits.envelope_shares_max)
            assert count <= total <= SETTINGS.envelope_total_max_fen
            if op.args["envelope_kind"] == "fixed":
                assert total % count == 0
            parsed = parse_envelope_id(str(op.result["envelope_id"]))
            assert parsed is not None
            assert parsed[0] == shard_of(cluster, op.args["sender"])
            sent[str(op.result["envelope_id"])] = op
        else:
            envelope = sent[str(op.args["envelope_id"])]  # only acknowledged envelopes
            assert 1 <= int(op.result["ordinal"]) <= int(envelope.args["count"])  # type: ignore[call-overload]
            assert int(op.result["amount_fen"]) >= 1  # type: ignore[call-overload]
            assert op.result["cross_shard"] == (
                shard_of(cluster, op.args["user"]) != shard_of(cluster, envelope.args["sender"])
            )
            key = (op.args["envelope_id"], op.args["user"])
            assert key not in grabbed, f"two acknowledged grabs of one user: {op}"
            grabbed[key] = op
    refused = [op for op in ops if op.kind == "grab" and op.reason == "ALREADY_GRABBED"]
    assert refused, "no deliberate second grab was refused"
    for op in refused:
        assert (op.args["envelope_id"], op.args["user"]) in grabbed
        assert op.status == "fail"
        assert op.code == "FAILED_PRECONDITION"
    print(f"\n{len(ops)} ops in ~5 s: {dict(Counter((o.kind, o.status) for o in ops))}")


def test_single_rpcs_and_pacing(cluster: LocalCluster, tmp_path: Path) -> None:
    """batch = 1: one RPC per op, every kind; rate_ops_s caps the rate (32 callers could
    go much faster; the lower bound only says the cluster kept up at all)."""
    settings = Workload(
        concurrency=32, batch=1, users=30, send=3, grab=8, rate_ops_s=100, call_timeout_ms=10_000
    )
    ops, workload = drive(cluster, tmp_path, settings, seed=12, run_s=3.0)
    running = [op for op in ops if op.op_id > len(workload.users)]
    assert {op.kind for op in running if op.status == "ok"} == set(KINDS)
    span_s = max(op.invoke_s for op in running) - min(op.invoke_s for op in running)
    rate = len(running) / max(span_s, 1e-9)
    assert 40 <= rate <= 130, f"{len(running)} ops in {span_s:.2f} s: {rate:.0f} ops/s"


def test_stop_event_ends_the_run(cluster: LocalCluster, tmp_path: Path) -> None:
    started = time.monotonic()

    async def main() -> float:
        history = HistoryWriter(tmp_path)
        workload = ChaosWorkload(
            cluster.topology, SETTINGS, history, seed=13, clock=lambda: time.monotonic() - started
        )
        try:
            await workload.prepare()
            stop = asyncio.Event()
            asyncio.get_running_loop().call_later(0.5, stop.set)
            begun = time.monotonic()
            await workload.run(until_s=3600.0, stop=stop)
            return time.monotonic() - begun
        finally:
            await workload.close()
            history.close()

    took_s = asyncio.run(main())
    assert took_s < 0.5 + SETTINGS.call_timeout_ms / 1000.0
    ops = read_history(tmp_path)
    assert len(ops) > SETTINGS.users, "the run issued nothing before the stop"
    assert max(op.complete_s for op in ops) < took_s + 60.0


def test_a_dead_router_fails_over_with_the_same_request_id(
    cluster: LocalCluster, tmp_path: Path
) -> None:
    """Router 1 (shenzhen) killed mid-run: its callers go to another region's router and
    the ops are acknowledged there, recorded with the region that answered."""
    dead = cluster.topology.routers[0]
    try:
        ops, _workload = drive(
            cluster,
            tmp_path,
            SETTINGS,
            seed=14,
            run_s=3.0,
            during=lambda: cluster.kill_router(dead.router_id),
        )
        cut_s = max(op.complete_s for op in ops if op.region == dead.region)
        after = [op for op in ops if op.invoke_s > cut_s]
        assert after
        assert {op.region for op in after} <= {r.region for r in cluster.topology.routers[1:]}
        assert Counter(op.status for op in after)["ok"] >= len(after) * 0.9
    finally:
        if not cluster.router_running(dead.router_id):
            cluster.start_routers([dead.router_id])


def test_prepare_retries_until_every_opening_deposit_is_acknowledged(
    cluster: LocalCluster, tmp_path: Path
) -> None:
    """Every router down when prepare starts, started again meanwhile: each opening deposit
    is retried (same request id) until acknowledged, and recorded once."""
    routers = [r.router_id for r in cluster.topology.routers]
    settings = Workload(users=30)
    started = time.monotonic()
    for router_id in routers:
        cluster.kill_router(router_id)
    try:

        async def main() -> None:
            history = HistoryWriter(tmp_path)
            workload = ChaosWorkload(
                cluster.topology,
                settings,
                history,
                seed=15,
                clock=lambda: time.monotonic() - started,
            )
            try:
                restart = asyncio.create_task(asyncio.to_thread(cluster.start_routers))
                await workload.prepare()
                await restart
            finally:
                await workload.close()
                history.close()

        asyncio.run(main())
    finally:
        down = [r for r in routers if not cluster.router_running(r)]
        if down:
            cluster.start_routers(down)
    ops = read_history(tmp_path)
    assert len(ops) == settings.users
    assert {op.status for op in ops} == {"ok"}
    assert len({op.request_id for op in ops}) == len({str(op.args["user"]) for op in ops}) == 30
    assert max(op.complete_s - op.invoke_s for op in ops) > 0.2  # they did wait for a router


# -- the answer rules, without a cluster ---------------------------------------------------


def _error_result(reason: ErrorReason) -> ledger_pb2.OperationResult:
    return ledger_pb2.OperationResult(error=error_to_proto(make_error(reason, "x")))


def test_settle_keeps_a_maybe_against_attempt_local_refusals() -> None:
    maybe = Answer("info", code="UNAVAILABLE", message="the router did not answer")
    local = settle("deposit", _error_result(ErrorReason.NOT_LEADER), None, maybe)
    assert local.status == "info"
    assert local.code == "UNAVAILABLE"
    assert "NOT_LEADER" in local.message
    refused = settle("withdraw", _error_result(ErrorReason.INSUFFICIENT_FUNDS), None, maybe)
    assert (refused.status, refused.reason, refused.code) == (
        "fail",
        "INSUFFICIENT_FUNDS",
        "FAILED_PRECONDITION",
    )
    alone = settle("deposit", _error_result(ErrorReason.NOT_LEADER), None, None)
    assert (alone.status, alone.reason) == ("fail", "NOT_LEADER")
    unknown = settle("grab", _error_result(ErrorReason.OUTCOME_UNKNOWN), None, None)
    assert (unknown.status, unknown.reason, unknown.code) == (
        "info",
        "OUTCOME_UNKNOWN",
        "DEADLINE_EXCEEDED",
    )
    unsent = settle("transfer", None, None, None)  # the deadline passed before any attempt
    assert (unsent.status, unsent.code) == ("fail", "DEADLINE_EXCEEDED")
    assert "not sent" in unsent.message
    ok = ledger_pb2.OperationResult(deposit=ledger_pb2.DepositResponse(balance_fen=7))
    assert settle("deposit", ok, None, maybe) == Answer("ok", result={"balance_fen": 7})
    wrong = settle("withdraw", ok, None, None)
    assert wrong.status == "info"
    failed_call = settle("send", None, Answer("fail", "UNAVAILABLE", "UNAVAILABLE", "gone"), maybe)
    assert failed_call.status == "info"
