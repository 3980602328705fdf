"""The batched throughput phase: ``concurrency`` callers sending batches until a deadline.

Rules of this module:

- One function, :func:`throughput_counts`, runs a range of the phase's callers on one
  client and returns plain, picklable counts (:class:`ThroughputCounts`), so the same
  code runs the whole phase in the bench's process (``--processes 1``) or a share of it
  in each worker process (:mod:`hongbao.bench.workers`), whose counts are then merged.
- A caller's choices depend on the seed, the run and its global index only, never on how
  the callers are spread over processes; request ids carry that index, so they are
  distinct across processes.
- Bounded: callers stop issuing at the deadline and at ``ops_max`` (this range's
  share); calls still running ``tail_s`` after the deadline are abandoned (cancelled,
  never counted).
"""

from __future__ import annotations

import asyncio
import random
import time
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from hongbao.bench.model import ENVELOPE_SHARES, ENVELOPE_TOTAL_FEN, BenchOptions
from hongbao.bench.target import BenchClient
from hongbao.node.errors import HongbaoError, error_from_proto
from hongbao.proto.gen.hongbao.v1 import ledger_pb2

# -- workloads -------------------------------------------------------------------------


@dataclass(slots=True)
class _Envelope:
    envelope_id: str
    shard_id: int
    grabbers: list[str]


class Workload:
    """Builds batches of valid operations of one mix and learns from their results."""

    def __init__(
        self, client: BenchClient, users: Sequence[str], mix: str, tag: str, rng: random.Random
    ) -> None:
        self.client = client
        self.users = list(users)
        self.mix = mix
        self.tag = tag
        self.rng = rng
        self.counter = 0
        self.open_envelopes: list[_Envelope] = []
        self._shards = {u: client.user_shard(u) for u in self.users}

    def _request_id(self) -> str:
        self.counter += 1
        return f"{self.tag}-{self.counter}"

    def _pick_kind(self) -> str:
        if self.mix == "mixed":
            roll = self.rng.random()
            kind = (
                "deposit" if roll < 0.2 else "transfer" if roll < 0.7 else
                "send" if roll < 0.8 else "grab"
            )  # fmt: skip
        elif self.mix == "envelope":
            kind = "grab" if self.rng.random() < 0.9 else "send"
        else:
            kind = self.mix
        if kind == "grab" and not self.open_envelopes:
            kind = "send" if self.mix == "envelope" else "transfer"
        return kind

    def next_batch(self, size: int) -> tuple[list[tuple[int, ledger_pb2.Operation]], list[str]]:
        operations: list[tuple[int, ledger_pb2.Operation]] = []
        kinds: list[str] = []
        for _ in range(size):
            kind = self._pick_kind()
            operations.append(self._operation(kind))
            kinds.append(kind)
        return operations, kinds

    def _operation(self, kind: str) -> tuple[int, ledger_pb2.Operation]:
        rid = self._request_id()
        if kind == "deposit":
            user = self.rng.choice(self.users)
            request = ledger_pb2.DepositRequest(request_id=rid, user_id=user, amount_fen=100)
            return self._shards[user], ledger_pb2.Operation(deposit=request)
        if kind == "transfer":
            source, target = self.rng.sample(self.users, 2)
            transfer = ledger_pb2.TransferRequest(
                request_id=rid, from_user_id=source, to_user_id=target, amount_fen=1
            )
            return self._shards[source], ledger_pb2.Operation(transfer=transfer)
        if kind == "send":
            sender = self.rng.choice(self.users)
            send = ledger_pb2.SendRequest(
                request_id=rid,
                sender_user_id=sender,
                kind=ledger_pb2.ENVELOPE_KIND_LUCKY,
                total_fen=ENVELOPE_TOTAL_FEN,
                count=ENVELOPE_SHARES,
            )
            return self._shards[sender], ledger_pb2.Operation(send=send)
        envelope = self.open_envelopes[-1]
        grabber = envelope.grabbers.pop()
        if not envelope.grabbers:
            self.open_envelopes.pop()
        grab = ledger_pb2.GrabRequest(
            request_id=rid, envelope_id=envelope.envelope_id, user_id=grabber
        )
        return envelope.shard_id, ledger_pb2.Operation(grab=grab)

    def learn(self, result: ledger_pb2.OperationResult) -> None:
        if result.WhichOneof("result") != "send":
            return
        envelope_id = result.send.envelope_id
        shard_id = self.client.envelope_shard(envelope_id)
        grabbers = self.rng.sample(self.users, ENVELOPE_SHARES)
        self.open_envelopes.append(_Envelope(envelope_id, shard_id, grabbers))


# -- the phase ---------------------------------------------------------------------------


@dataclass(slots=True)
class ThroughputCounts:
    """What some callers of one throughput phase did; ``started_s``/``last_done_s`` are
    ``time.monotonic()`` (one clock for every process of the machine)."""

    ops_ok: int = 0
    ops_failed: int = 0
    issued: int = 0
    calls: int = 0
    retries: int = 0
    started_s: float = 0.0
    last_done_s: float = 0.0
    errors_by_reason: dict[str, int] = field(default_factory=dict)

    @staticmethod
    def merged(parts: Iterable[ThroughputCounts]) -> ThroughputCounts:
        """The counts of all parts; the phase spans the first start to the last answer."""
        chosen = list(parts)
        if not chosen:
            return ThroughputCounts()
        errors: Counter[str] = Counter()
        for part in chosen:
            errors.update(part.errors_by_reason)
        return ThroughputCounts(
            ops_ok=sum(p.ops_ok for p in chosen),
            ops_failed=sum(p.ops_failed for p in chosen),
            issued=sum(p.issued for p in chosen),
            calls=sum(p.calls for p in chosen),
            retries=sum(p.retries for p in chosen),
            started_s=min(p.started_s for p in chosen),
            last_done_s=max(p.last_done_s for p in chosen),
            errors_by_reason=dict(sorted(errors.items())),
        )


class Spread(Protocol):
    """The phase run elsewhere than on the bench's client: over worker processes."""

    async def throughput(
        self, users: Sequence[str], options: BenchOptions, *, run_index: int, tag: str
    ) -> ThroughputCounts: ...


def caller_seeds(options: BenchOptions, run_index: int) -> list[float]:
    """Each caller's seed, by global index: the same however callers are spread."""
    rng = random.Random(None if options.seed is None else options.seed + run_index)
    return [rng.random() for _ in range(options.concurrency)]


async def throughput_counts(
    client: BenchClient,
    users: Sequence[str],
    options: BenchOptions,
    *,
    run_index: int,
    tag: str,
    callers: range,
    ops_max: int,
) -> ThroughputCounts:
    """Run callers ``callers`` (global indices) of the phase on ``client``; their counts."""
    seeds = caller_seeds(options, run_index)
    errors: Counter[str] = Counter()
    counts = ThroughputCounts(started_s=time.monotonic())
    counts.last_done_s = counts.started_s
    deadline = counts.started_s + options.duration_s
    retries_before = client.retries

    async def caller(index: int) -> None:
        workload = Workload(
            client, users, options.mix, f"{tag}-r{run_index}-w{index}", random.Random(seeds[index])
        )
        while time.monotonic() < deadline and counts.issued < ops_max:
            operations, _ = workload.next_batch(options.batch)
            counts.issued += len(operations)
            try:
                results = await client.execute(operations)
            except HongbaoError as error:
                errors[error.reason.value] += len(operations)
                counts.ops_failed += len(operations)
                continue
            finally:
                counts.last_done_s = time.monotonic()
            counts.calls += 1
            for result in results:
                if result.WhichOneof("result") == "error":
                    errors[error_from_proto(result.error).reason.value] += 1
                    counts.ops_failed += 1
                else:
                    counts.ops_ok += 1
                    workload.learn(result)

    tasks = [asyncio.create_task(caller(i)) for i in callers]
    # Calls issued before the deadline may finish after it (they are counted); those
    # still running tail_s after it are abandoned: not counted, their outcome unknown.
    if tasks:
        await asyncio.wait(tasks, timeout=options.duration_s + options.tail_s)
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    counts.retries = client.retries - retries_before
    counts.errors_by_reason = dict(sorted(errors.items()))
    return counts
