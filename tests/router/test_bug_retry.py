"""The router's test-only ``retry-fresh-id`` switch, in front of fake nodes (in-process).

With it, a mutation whose forwarded call ends with an unknown outcome (the node took
longer than ``forward_timeout_ms``, or answered OUTCOME_UNKNOWN) is sent on under a new
request id: the duplicate payment the chaos checker must catch. Without it every retry
carries the client's own id.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import subprocess
from collections.abc import Coroutine
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
import pytest
from click.testing import CliRunner

from hongbao.cli.router import router as router_cli
from hongbao.config.routers import RouterSpec
from hongbao.config.topology import load_topology
from hongbao.ledger.sharding import shard_for_user
from hongbao.node.bugs import FRESH_ID_SUFFIX, RouterBugs, fresh_request_id
from hongbao.node.errors import ErrorReason, HongbaoError, make_error
from hongbao.ops.local import free_ports, router_command, spawn_logged, stop_process, wait_ready
from hongbao.proto.gen.hongbao.v1 import ledger_pb2
from hongbao.router.server import RouterServer
from tests.router.fakes import REGIONS, FakeNode, Rig, fake_topology, rig

DEPOSIT = "/hongbao.v1.Wallet/Deposit"
EXECUTE = "/hongbao.v1.Batch/Execute"
SHARDS = 6  # fake_topology's shard count
FORWARD_TIMEOUT_MS = 200
SLOW_ANSWER_S = 1.0  # the first call's answer: well past the forward timeout
SETTINGS = {
    "forward_timeout_ms": FORWARD_TIMEOUT_MS,
    "request_timeout_ms": 5_000,
    "coalesce_wait_ms": 0,
}


def run(work: Coroutine[Any, Any, None]) -> None:
    asyncio.run(work)


def user_on(shard_id: int, prefix: str = "u") -> str:
    return next(
        f"{prefix}{i}" for i in range(10_000) if shard_for_user(f"{prefix}{i}", SHARDS) == shard_id
    )


@dataclass
class Cluster:
    """What every fake node shares: the request ids it saw, and how its first call goes."""

    first: str = "slow"  # "slow": answered after SLOW_ANSWER_S; "unknown": OUTCOME_UNKNOWN
    calls: int = 0  # ledger calls (the router's cluster-state polls are not counted)
    ids: list[str] = field(default_factory=list)  # request ids of mutations, in arrival order

    async def delay(self, method: str, raw: bytes) -> None:
        if method not in (DEPOSIT, EXECUTE):
            return
        self.calls += 1
        self.ids.extend(_mutation_ids(method, raw))
        if self.calls == 1 and self.first == "slow":
            await asyncio.sleep(SLOW_ANSWER_S)

    def answer(self, method: str, raw: bytes) -> bytes | HongbaoError:
        if method not in (DEPOSIT, EXECUTE):
            return b""
        if self.calls == 1 and self.first == "unknown":
            return make_error(ErrorReason.OUTCOME_UNKNOWN, "no result before the deadline")
        if method == EXECUTE:
            operations = ledger_pb2.ExecuteRequest.FromString(raw).operations
            return ledger_pb2.ExecuteResponse(
                results=[_result(op) for op in operations]
            ).SerializeToString()
        single = ledger_pb2.DepositRequest.FromString(raw)
        return ledger_pb2.DepositResponse(balance_fen=single.amount_fen).SerializeToString()


def _mutation_ids(method: str, raw: bytes) -> list[str]:
    if method == DEPOSIT:
        return [ledger_pb2.DepositRequest.FromString(raw).request_id]
    if method == EXECUTE:
        operations = ledger_pb2.ExecuteRequest.FromString(raw).operations
        return [op.deposit.request_id for op in operations if op.WhichOneof("op") == "deposit"]
    return []


def _result(operation: ledger_pb2.Operation) -> ledger_pb2.OperationResult:
    if operation.WhichOneof("op") == "deposit":
        answer = ledger_pb2.DepositResponse(balance_fen=operation.deposit.amount_fen)
        return ledger_pb2.OperationResult(deposit=answer)
    return ledger_pb2.OperationResult(balance=ledger_pb2.BalanceResponse(balance_fen=7))


def rig_with(cluster: Cluster, *, bug: bool) -> contextlib.AbstractAsyncContextManager[Rig]:
    """Three fake nodes sharing ``cluster`` and a router, with or without the switch."""
    return rig(
        {n: cluster.answer for n in (1, 2, 3)},
        router_settings=SETTINGS,
        delay=cluster.delay,
        router_bugs=RouterBugs(retry_fresh_id=True) if bug else None,
    )


async def deposit_through(r: Rig, request_id: str) -> int:
    raw = ledger_pb2.DepositRequest(request_id=request_id, user_id=user_on(0), amount_fen=5)
    answer = await r.raw(DEPOSIT)(raw.SerializeToString(), timeout=5)
    return ledger_pb2.DepositResponse.FromString(answer).balance_fen


@pytest.mark.parametrize("first", ["slow", "unknown"])
def test_a_mutation_of_unknown_outcome_is_sent_again_under_a_new_id(first: str) -> None:
    async def main() -> None:
        cluster = Cluster(first=first)
        async with rig_with(cluster, bug=True) as r:
            assert await deposit_through(r, "pay-1") == 5
            assert cluster.ids == ["pay-1", "pay-1" + FRESH_ID_SUFFIX]
            assert r.router.stats()["fresh_id_retries"] == 1

    run(main())


@pytest.mark.parametrize("first", ["slow", "unknown"])
def test_without_the_switch_every_retry_carries_the_clients_id(first: str) -> None:
    """A slow node is waited for while it answers other calls (the state polls), else
    retried; an OUTCOME_UNKNOWN is retried. Either way under the client's own id."""

    async def main() -> None:
        cluster = Cluster(first=first)
        async with rig_with(cluster, bug=False) as r:
            assert await deposit_through(r, "pay-1") == 5
            assert set(cluster.ids) == {"pay-1"}
            assert len(cluster.ids) == 2 or first == "slow"
            assert r.router.stats()["fresh_id_retries"] == 0

    run(main())


def test_a_batch_part_resends_its_mutations_under_new_ids_and_its_reads_as_they_were() -> None:
    async def main() -> None:
        cluster = Cluster(first="slow")
        async with rig_with(cluster, bug=True) as r:
            user = user_on(0)
            request = ledger_pb2.ExecuteRequest(
                operations=[
                    ledger_pb2.Operation(
                        deposit=ledger_pb2.DepositRequest(
                            request_id="b-1", user_id=user, amount_fen=3
                        )
                    ),
                    ledger_pb2.Operation(balance=ledger_pb2.BalanceRequest(user_id=user)),
                ]
            )
            answer = await r.raw(EXECUTE)(request.SerializeToString(), timeout=5)
            results = ledger_pb2.ExecuteResponse.FromString(answer).results
            assert [res.WhichOneof("result") for res in results] == ["deposit", "balance"]
            assert cluster.ids == ["b-1", fresh_request_id("b-1")]
            executes = [s for n in r.nodes.values() for s in n.calls("/Execute")]
            assert len(executes) == 2
            resent = ledger_pb2.ExecuteRequest.FromString(executes[-1].raw).operations
            assert resent[1].balance.user_id == user  # the read went again, unchanged

    run(main())


def test_a_fresh_id_is_a_valid_request_id_and_the_same_for_the_same_id() -> None:
    longest = "x" * 128
    assert fresh_request_id(longest) == fresh_request_id(longest)
    assert len(fresh_request_id(longest)) == 128
    assert fresh_request_id("a") != "a"


def test_a_router_with_a_switch_says_so_loudly(caplog: pytest.LogCaptureFixture) -> None:
    topology = fake_topology(free_ports(3), SETTINGS)
    spec = RouterSpec(router_id=1, region="shenzhen", host="127.0.0.1", port=0)

    async def main() -> None:  # built, never started: its gRPC server needs a loop
        bugs = RouterBugs(retry_fresh_id=True)
        router = RouterServer(topology=topology, spec=spec, router_bugs=bugs)
        await router.server.stop(0)

    with caplog.at_level(logging.WARNING, logger="hongbao.router.server"):
        run(main())
    warned = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert any("--bug retry-fresh-id" in r.getMessage() for r in warned)


def test_the_router_cli_refuses_an_unknown_switch() -> None:
    result = CliRunner().invoke(
        router_cli, ["run", "--config", "x.toml", "--region", "a", "--bug", "nonsense"]
    )
    assert result.exit_code == 2
    assert "nonsense" in result.output


def _topology_file(path: Path, node_ports: list[int]) -> Path:
    regions = "".join(f'[[regions]]\nname = "{name}"\n\n' for name in REGIONS)
    nodes = "".join(
        f'[[nodes]]\nid = {i + 1}\nregion = "{REGIONS[i]}"\nhost = "127.0.0.1"\nport = {port}\n\n'
        for i, port in enumerate(node_ports)
    )
    router = "".join(f"{key} = {value}\n" for key, value in SETTINGS.items())
    path.write_text(
        f"shard_count = {SHARDS}\nreplication_factor = 3\ntls = false\n\n"
        f"[router]\n{router}\n{regions}{nodes}"
    )
    return path


def test_hongbao_router_run_with_the_switch_warns_and_renews_the_id(tmp_path: Path) -> None:
    """The command line end to end: ``hongbao router run --bug retry-fresh-id``."""

    async def main() -> None:
        cluster = Cluster(first="slow")
        *node_ports, router_port = free_ports(4)
        config = _topology_file(tmp_path / "topology.toml", node_ports)
        topology = load_topology(config)
        nodes = [
            FakeNode(n, node_ports[n - 1], cluster.answer, delay=cluster.delay) for n in (1, 2, 3)
        ]
        spec = RouterSpec(router_id=1, region=REGIONS[0], host="127.0.0.1", port=router_port)
        ready, log_path = tmp_path / "router.ready", tmp_path / "router.log"
        command = router_command(config, topology, spec, ready, "--host", "127.0.0.1",
                                 "--port", str(router_port), "--bug", "retry-fresh-id")  # fmt: skip
        process: subprocess.Popen[bytes] | None = None
        try:
            for node in nodes:
                await node.start()
            process = spawn_logged(command, log_path)
            await asyncio.to_thread(wait_ready, process, ready, "the router", log_path)
            async with grpc.aio.insecure_channel(f"127.0.0.1:{router_port}") as channel:
                call: grpc.aio.UnaryUnaryMultiCallable[bytes, bytes] = channel.unary_unary(
                    DEPOSIT, request_serializer=None, response_deserializer=None
                )
                raw = ledger_pb2.DepositRequest(
                    request_id="cli-1", user_id=user_on(0), amount_fen=5
                )
                await call(raw.SerializeToString(), timeout=5)
            assert cluster.ids == ["cli-1", fresh_request_id("cli-1")]
        finally:
            if process is not None:
                await asyncio.to_thread(stop_process, process)
            for node in nodes:
                await node.stop()
        log = log_path.read_text()
        assert "WARNING" in log
        assert "--bug retry-fresh-id" in log

    run(main())
