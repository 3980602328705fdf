"""Benchmarks of a running cluster: batched throughput, and the latency of one transfer.

Rules of this module:

- Two figures, measured separately in each run. *Throughput*: operations committed per
  second, pushed through ``Batch.Execute`` in batches of ``batch`` operations by
  ``concurrency`` concurrent callers for ``duration_s``. *Latency*: single, unbatched
  transfers sent one at a time, next to a baseline measured the same way in the same run
  (a stale Balance read: one round trip through client, gRPC and node, no Raft), so that
  the ratio of the two means something on any machine.
- Only successes are counted. Every failure is counted by its reason and reported; a
  benchmark that hides errors measures nothing.
- Bounded in time and in count: the throughput phase stops issuing calls at its deadline
  and at ``ops_max``, counts the calls that finish within ``tail_s`` after it and
  abandons (cancels, reports, never counts) the rest; the latency phase takes at most
  ``latency_samples`` samples and at most ``latency_budget_s`` seconds. Every call has
  the client's deadline.
- Figures over several runs are medians.
- The bench reports its own cost: the CPU seconds of the nodes, the routers and the bench
  client over each run's throughput phase, read from the OS (:mod:`hongbao.bench.cpu`),
  and so CPU microseconds per operation. With ``--processes N`` the phase's callers run
  in N worker processes (:mod:`hongbao.bench.workers`), which the client kind includes.
- Money stays valid: users are funded first, transfers move 1 fen, each envelope is
  grabbed once by each of ``count`` distinct users, so no request is refused by design.
  The exception is the ``hot-envelope`` mix (:mod:`hongbao.bench.hot_envelope`), where
  most grabs find the envelope empty on purpose; its throughput phase reports grab
  attempts per second and the time to empty an envelope instead of operations.
- The workload goes to a :class:`~hongbao.bench.target.BenchClient` (routers or nodes);
  waiting for a quiet cluster goes to the nodes (``admin``), whatever is measured.
"""

from __future__ import annotations

import asyncio
import random
import time
import uuid
from collections import Counter
from collections.abc import Callable, Sequence

from hongbao.bench.cpu import CpuMeter, Processes
from hongbao.bench.hot_envelope import hot_envelope_phase
from hongbao.bench.model import (
    FUND_FEN,
    HOT_MIX,
    MIXES,
    QUIET_TIMEOUT_S,
    BenchOptions,
    BenchReport,
    Percentiles,
    RunResult,
)
from hongbao.bench.target import BenchClient
from hongbao.bench.throughput import Spread, Workload, throughput_counts
from hongbao.client.sdk import HongbaoClient
from hongbao.node.errors import HongbaoError, error_from_proto
from hongbao.ops.cluster import wait_for_quiet
from hongbao.proto.gen.hongbao.v1 import ledger_pb2

__all__ = [
    "MIXES", "BenchOptions", "BenchReport", "Percentiles", "RunResult", "Workload",
    "bench_run", "prepare_users", "run_bench",
]  # fmt: skip

# -- the phases ------------------------------------------------------------------------


async def fund_users(client: BenchClient, users: Sequence[str], tag: str, batch: int) -> None:
    """Give every bench user FUND_FEN; raise if any deposit fails (nothing to measure then)."""
    operations = [
        (
            client.user_shard(user),
            ledger_pb2.Operation(
                deposit=ledger_pb2.DepositRequest(
                    request_id=f"{tag}-fund-{i}", user_id=user, amount_fen=FUND_FEN
                )
            ),
        )
        for i, user in enumerate(users)
    ]
    step = max(1, min(batch, 500))
    chunks = [operations[i : i + step] for i in range(0, len(operations), step)]
    for results in await asyncio.gather(*(client.execute(chunk) for chunk in chunks)):
        for result in results:
            if result.WhichOneof("result") == "error":
                raise error_from_proto(result.error)


async def throughput_phase(
    client: BenchClient,
    users: Sequence[str],
    options: BenchOptions,
    run: RunResult,
    tag: str,
    spread: Spread | None = None,
) -> None:
    """The batched phase, in this process or (``spread``) over the bench's workers."""
    if spread is None:
        counts = await throughput_counts(
            client, users, options, run_index=run.run, tag=tag,
            callers=range(options.concurrency), ops_max=options.ops_max,
        )  # fmt: skip
    else:
        counts = await spread.throughput(users, options, run_index=run.run, tag=tag)
    run.calls = counts.calls
    run.ops_ok += counts.ops_ok
    run.ops_failed += counts.ops_failed
    run.throughput_s = max(counts.last_done_s - counts.started_s, 1e-9)
    run.ops_per_s = counts.ops_ok / run.throughput_s
    run.ops_abandoned = counts.issued - counts.ops_ok - counts.ops_failed
    run.retries = counts.retries
    run.errors_by_reason = _merged(run.errors_by_reason, counts.errors_by_reason)


async def latency_phase(
    client: BenchClient, users: Sequence[str], options: BenchOptions, run: RunResult, tag: str
) -> None:
    """Time baseline reads, then single transfers, each alone on the wire.

    The baseline (a stale Balance read: client, gRPC and node, no Raft, no disk) goes
    first, on the quiet cluster: interleaved with transfers it would also time the
    background work that each cross-shard transfer leaves behind (the courier's rounds).
    """
    rng = random.Random(None if options.seed is None else options.seed * 7919 + run.run)
    pairs = [tuple(rng.sample(list(users), 2)) for _ in range(options.latency_samples)]
    baseline: list[float] = []
    same: list[float] = []
    cross: list[float] = []
    errors: Counter[str] = Counter(run.errors_by_reason)
    budget_s = options.latency_budget_s / 2
    deadline = time.monotonic() + budget_s
    for source, _ in pairs:
        if time.monotonic() > deadline:
            break
        try:
            started = time.perf_counter()
            await client.balance(source, stale_ok=True)
            baseline.append((time.perf_counter() - started) * 1000)
        except HongbaoError as error:
            errors[error.reason.value] += 1
    deadline = time.monotonic() + budget_s
    for i, (source, target) in enumerate(pairs):
        if time.monotonic() > deadline:
            break
        try:
            started = time.perf_counter()
            response = await client.transfer(source, target, 1, f"{tag}-r{run.run}-lat-{i}")
            elapsed_ms = (time.perf_counter() - started) * 1000
        except HongbaoError as error:
            errors[error.reason.value] += 1
            run.ops_failed += 1
            continue
        (cross if response.cross_shard else same).append(elapsed_ms)
    run.baseline_ms = Percentiles.of(baseline)
    run.transfer_ms = Percentiles.of(same + cross)
    run.transfer_same_shard_ms = Percentiles.of(same)
    run.transfer_cross_shard_ms = Percentiles.of(cross)
    run.errors_by_reason = dict(sorted(errors.items()))


async def prepare_users(client: BenchClient, options: BenchOptions) -> tuple[str, list[str]]:
    """Fresh users (a new tag per bench), each funded with FUND_FEN."""
    tag = f"bench-{uuid.uuid4().hex[:10]}"
    rng = random.Random(options.seed)
    users = [f"{tag}-u{i}" for i in range(options.users)]
    rng.shuffle(users)
    await fund_users(client, users, tag, options.batch)
    return tag, users


async def bench_run(
    client: BenchClient,
    admin: HongbaoClient,
    users: Sequence[str],
    options: BenchOptions,
    index: int,
    tag: str,
    *,
    processes: Processes | None = None,
    spread: Spread | None = None,
) -> RunResult:
    """One run: settle (``admin``: node-direct), latency, then throughput (or hot-envelope).

    ``processes``: whose CPU the throughput phase is charged with (none: not measured);
    ``spread``: the phase runs over the bench's worker processes instead of ``client``.
    """
    run = RunResult(run=index)
    started = time.monotonic()
    run.quiet_before_latency = await wait_for_quiet(admin, QUIET_TIMEOUT_S)
    run.phases_s["settle"] = round(time.monotonic() - started, 3)
    started = time.monotonic()
    await latency_phase(client, users, options, run, tag)
    run.phases_s["latency"] = round(time.monotonic() - started, 3)
    meter = CpuMeter(processes) if processes is not None else None
    started = time.monotonic()
    if meter is not None:
        meter.start(started)
    if options.mix == HOT_MIX:
        seed = None if options.seed is None else options.seed * 31 + index
        run.hot = await hot_envelope_phase(
            client, users, options.hot, duration_s=options.duration_s, tail_s=options.tail_s,
            tag=f"{tag}-r{index}-hot", rng=random.Random(seed),
        )  # fmt: skip
        run.errors_by_reason = _merged(run.errors_by_reason, run.hot.errors_by_reason)
        ops = run.hot.grabs_taken + run.hot.grabs_empty
    else:
        ops_before = run.ops_ok
        await throughput_phase(client, users, options, run, tag, spread)
        ops = run.ops_ok - ops_before
    if meter is not None:
        run.cpu = meter.stop(time.monotonic(), ops)
    run.phases_s["throughput"] = round(time.monotonic() - started, 3)
    return run


def _merged(first: dict[str, int], second: dict[str, int]) -> dict[str, int]:
    total: Counter[str] = Counter(first)
    total.update(second)
    return dict(sorted(total.items()))


async def run_bench(
    client: BenchClient,
    options: BenchOptions,
    *,
    target: str,
    admin: HongbaoClient | None = None,
    on_run: Callable[[RunResult], None] | None = None,
    processes: Processes | None = None,
    spread: Spread | None = None,
) -> BenchReport:
    """Fund fresh users, then ``runs`` x (latency on a quiet cluster, then throughput).

    ``admin`` watches the cluster (its Admin calls go to the nodes, in either SDK mode);
    by default ``client``, which then must be the SDK's client. ``processes`` and
    ``spread``: as for :func:`bench_run`.
    """
    if admin is None:
        if not isinstance(client, HongbaoClient):
            raise TypeError("a client other than the SDK's needs an admin client")
        admin = client
    tag, users = await prepare_users(client, options)
    report = BenchReport(options=options, target=target, runs=[])
    for index in range(1, options.runs + 1):
        run = await bench_run(client, admin, users, options, index, tag,
                              processes=processes, spread=spread)  # fmt: skip
        report.runs.append(run)
        if on_run is not None:
            on_run(run)
    return report
