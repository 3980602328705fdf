"""The end-to-end half of ``benchmarks/op_cost.py``: a real local cluster's CPU per operation.

Why: the in-process stages time each stage's code alone; what they leave out (gRPC, HTTP/2,
asyncio tasks and futures per operation, the nodes' idle loop) only shows in the CPU of
real processes. This starts a fresh local cluster of the topology (three nodes and their
routers, fsync on, fresh ports, temporary data), sends each kind's operations in batches
through a router from ``concurrency`` callers, waits until every cross-shard credit has
landed, and reads the CPU (utime + stime, /proc) of every node and router and of this
process (the client) before and after. The cluster's idle CPU rate (heartbeats, courier
and state polling), measured before the load, times the load's wall time, is reported
beside it: an upper bound of the idle work inside the load, as a busy node's ticks ride
the cycles it runs anyway. Retryable failures (OUTCOME_UNKNOWN on a busy machine) are sent
again with the same request ids, and counted.
"""

from __future__ import annotations

import asyncio
import os
import random
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from _op_cost_ops import OpSpec, Plan, build_operation, make_specs

from hongbao.client.sdk import ClientOptions, HongbaoClient
from hongbao.config.topology import Topology
from hongbao.node.errors import RetryableError, error_from_proto
from hongbao.ops.local import LocalCluster, write_topology
from hongbao.proto.gen.hongbao.v1 import ledger_pb2

CLOCK_TICKS_PER_S = os.sysconf("SC_CLK_TCK")
FUND_FEN = 5_000_000
IDLE_SETTLE_S = 1.0  # start-up work (elections, first connections) ends before the window
IDLE_WINDOW_S = 2.0
DRAIN_TIMEOUT_S = 60.0
DRAIN_POLL_S = 0.05
FUND_BATCH = 200
ATTEMPTS_MAX = 5


def cpu_s(pid: int) -> float:
    """CPU seconds (user + system) used so far by process ``pid``."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS_PER_S  # utime, stime


def own_cpu_s() -> float:
    times = os.times()
    return times.user + times.system


@dataclass(frozen=True)
class EndToEnd:
    """One kind's figures of one run, in CPU us per operation (and ops/s of the load)."""

    nodes_us: float
    routers_us: float
    client_us: float
    idle_us: float
    ops_per_s: float
    retried_ops: int  # sent again after a retryable failure (with the same request ids)

    @property
    def total_us(self) -> float:
        return self.nodes_us + self.routers_us + self.client_us


class Load:
    def __init__(self, client: HongbaoClient, topology: Topology, pids: dict[str, list[int]],
                 concurrency: int) -> None:  # fmt: skip
        self.client = client
        self.topology = topology
        self.pids = pids
        self.concurrency = concurrency
        self.idle_cpu_per_s = 0.0
        self.retried = 0  # operations sent again after a retryable failure (a busy machine)

    def cpu(self) -> dict[str, float]:
        sums = {kind: sum(cpu_s(p) for p in pids) for kind, pids in self.pids.items()}
        return {**sums, "client": own_cpu_s()}

    async def measure_idle(self) -> None:
        await asyncio.sleep(IDLE_SETTLE_S)
        before = self.cpu()
        await asyncio.sleep(IDLE_WINDOW_S)  # a benchmark's measuring window, not a wait
        after = self.cpu()
        self.idle_cpu_per_s = (after["nodes"] + after["routers"] - before["nodes"]
                               - before["routers"]) / IDLE_WINDOW_S  # fmt: skip

    async def run_kind(self, kind: str, ops: int, batch: int, seed: int) -> EndToEnd:
        rng = random.Random(seed)
        plan = make_specs(kind, ops, self.topology.shard_count, rng, tag=f"e{seed}")
        await self._execute([self._deposit(u, i) for i, u in enumerate(plan.payers)], seed)
        envelope_ids = await self._send_envelopes(plan, seed)
        specs = plan.bind(envelope_ids, rng)
        retried_before = self.retried
        before, started = self.cpu(), time.monotonic()
        results = await self._load(specs, batch)
        await self._drained(plan, results)
        elapsed_s = time.monotonic() - started
        after = self.cpu()
        per_op = {k: (after[k] - before[k]) * 1e6 / len(specs) for k in after}
        return EndToEnd(per_op["nodes"], per_op["routers"], per_op["client"],
                        self.idle_cpu_per_s * elapsed_s * 1e6 / len(specs),
                        len(specs) / elapsed_s, self.retried - retried_before)  # fmt: skip

    def _deposit(self, user: str, i: int) -> ledger_pb2.Operation:
        return ledger_pb2.Operation(deposit=ledger_pb2.DepositRequest(
            request_id=f"fund-{user}-{i}", user_id=user, amount_fen=FUND_FEN))  # fmt: skip

    async def _execute(self, operations: Sequence[ledger_pb2.Operation], seed: int
                       ) -> list[ledger_pb2.OperationResult]:  # fmt: skip
        results: list[ledger_pb2.OperationResult] = []
        for start in range(0, len(operations), FUND_BATCH):
            results.extend(await self._retrying(operations[start : start + FUND_BATCH]))
        return results

    async def _retrying(self, operations: Sequence[ledger_pb2.Operation]
                        ) -> list[ledger_pb2.OperationResult]:  # fmt: skip
        """One Batch call, its retryable failures sent again with the same request ids (what a
        client does with OUTCOME_UNKNOWN on a busy machine); RuntimeError for any other."""
        results: list[ledger_pb2.OperationResult | None] = [None] * len(operations)
        todo = list(range(len(operations)))
        for _ in range(ATTEMPTS_MAX):
            answers = await self.client.execute([(0, operations[i]) for i in todo])
            again = []
            for position, answer in zip(todo, answers, strict=True):
                results[position] = answer
                if answer.WhichOneof("result") == "error" and isinstance(
                    error_from_proto(answer.error), RetryableError
                ):
                    again.append(position)
            self.retried += len(again)
            todo = again
            if not todo:
                break
        return _checked([r for r in results if r is not None])

    async def _send_envelopes(self, plan: Plan, seed: int) -> list[str]:
        sends = [
            ledger_pb2.Operation(send=ledger_pb2.SendRequest(
                request_id=f"env-{seed}-{i}", sender_user_id=plan.payers[i % len(plan.payers)],
                kind=ledger_pb2.ENVELOPE_KIND_LUCKY, total_fen=100 * 100, count=100))
            for i in range(plan.envelopes)
        ]  # fmt: skip
        return [r.send.envelope_id for r in await self._execute(sends, seed)]

    async def _load(self, specs: Sequence[OpSpec], batch: int) -> list[ledger_pb2.OperationResult]:
        batches = iter(range(0, len(specs), batch))
        results: list[ledger_pb2.OperationResult] = []

        async def caller() -> None:
            for start in batches:
                part = [build_operation(s) for s in specs[start : start + batch]]
                results.extend(await self._retrying(part))

        await asyncio.gather(*(caller() for _ in range(self.concurrency)))
        return results

    async def _drained(self, plan: Plan, results: Sequence[ledger_pb2.OperationResult]) -> None:
        """Wait until every credit has landed: the kind's users hold what they should."""
        if plan.kind == "deposit" or plan.kind == "transfer-same-shard":
            return
        if plan.kind == "grab":
            users, expected = plan.grabbers, sum(r.grab.amount_fen for r in results)
        else:
            users, expected = plan.payers, FUND_FEN * len(plan.payers)
        deadline = time.monotonic() + DRAIN_TIMEOUT_S
        reads = [ledger_pb2.Operation(balance=ledger_pb2.BalanceRequest(user_id=u)) for u in users]
        while time.monotonic() < deadline:
            answers = await self.client.execute([(0, read) for read in reads])
            if sum(_balance_fen(a) for a in answers) == expected:
                return
            await asyncio.sleep(DRAIN_POLL_S)
        raise TimeoutError(f"{plan.kind}: the cross-shard credits did not land in time")


def _balance_fen(answer: ledger_pb2.OperationResult) -> int:
    """A balance read's answer; 0 for a user whose first credit has not landed yet (no
    account) or for a read that failed this time (the next poll reads it again)."""
    return answer.balance.balance_fen if answer.WhichOneof("result") == "balance" else 0


def _checked(results: list[ledger_pb2.OperationResult]) -> list[ledger_pb2.OperationResult]:
    failed = [r for r in results if r.WhichOneof("result") == "error"]
    if failed:
        raise RuntimeError(f"{len(failed)} of {len(results)} operations failed: {failed[0]}")
    return results


def run_end_to_end(config: Path, kinds: Sequence[str], ops: int, batch: int, runs: int,
                   concurrency: int) -> dict[str, list[EndToEnd]]:  # fmt: skip
    """Every kind ``runs`` times on one fresh local cluster (fsync on) through its routers."""
    with tempfile.TemporaryDirectory(prefix="hongbao-op-cost-e2e-") as work:
        topology_path = write_topology(Path(work) / "topology.toml", template=config)
        with LocalCluster(topology_path, Path(work) / "data") as cluster:
            cluster.start()
            cluster.start_routers()
            pids = {
                "nodes": [p.pid for p in cluster.processes.values()],
                "routers": [p.pid for p in cluster.routers.values()],
            }
            figures = asyncio.run(_drive(cluster.topology, pids, kinds, ops, batch, runs,
                                         concurrency))  # fmt: skip
            cluster.stop_all()
            return figures


async def _drive(topology: Topology, pids: dict[str, list[int]], kinds: Sequence[str], ops: int,
                 batch: int, runs: int, concurrency: int) -> dict[str, list[EndToEnd]]:  # fmt: skip
    figures: dict[str, list[EndToEnd]] = {k: [] for k in kinds}
    async with HongbaoClient.via_routers(topology, ClientOptions(timeout_s=10.0)) as client:
        load = Load(client, topology, pids, concurrency)
        await client.deposit("op-cost-warm-up", 1)
        await load.measure_idle()
        for run in range(runs):
            for index, kind in enumerate(kinds):
                figures[kind].append(await load.run_kind(kind, ops, batch, 1000 * run + index))
    return figures
