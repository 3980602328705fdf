"""``--processes N``: the bench's callers spread over N worker processes.

Rules of this module:

- Why: one Python process (one event loop, one core at most) encodes, sends and decodes
  every batch of the bench; on a fast cluster it, not the cluster, sets the figure. N
  workers, each its own interpreter, event loop and gRPC channels, share the callers of
  the throughput phase; their counts are merged (:class:`ThroughputCounts.merged`).
- Workers are started with ``spawn`` (a fresh interpreter: gRPC does not survive a
  fork), once per bench, before the first run, and stay until the bench ends; each opens
  its clients (one per target) on its own loop. Only the throughput phase runs in them:
  funding, the latency phase and the admin calls stay in the bench's process.
- Callers keep their global index (seed and request ids), so a run's workload does not
  depend on how it is spread, and request ids never collide across workers.
- Bounded: every wait on a worker has a deadline (start, each phase, stop); a worker
  that dies or does not answer fails the bench (:class:`WorkerError`), never hangs it.
  ``close`` ends every worker it started, killing those that do not stop in time.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import multiprocessing
import signal
from collections.abc import Sequence
from dataclasses import dataclass
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess

from hongbao.bench.model import BenchOptions
from hongbao.bench.target import BenchClient, open_client
from hongbao.bench.throughput import ThroughputCounts, throughput_counts
from hongbao.client.sdk import ClientOptions
from hongbao.config.topology import Topology

START_TIMEOUT_S = 60.0  # N interpreters importing grpc at once on a busy 2-core machine
STOP_TIMEOUT_S = 10.0
ANSWER_MARGIN_S = 30.0  # beyond duration + tail: closing the phase, pickling its counts
PROCESSES_MAX = 64


class WorkerError(RuntimeError):
    """A worker process failed, died or did not answer in time; the message says which."""


@dataclass(frozen=True, slots=True)
class Job:
    """One throughput phase's share for one worker (pickled to it)."""

    target: str
    users: tuple[str, ...]
    options: BenchOptions
    run_index: int
    tag: str
    callers: range
    ops_max: int


def split_callers(concurrency: int, processes: int) -> list[range]:
    """Global caller indices, as even as can be, one contiguous range per process."""
    if not 1 <= processes <= concurrency:
        raise ValueError("need 1 <= processes <= concurrency")
    base, extra = divmod(concurrency, processes)
    ranges: list[range] = []
    start = 0
    for index in range(processes):
        size = base + (1 if index < extra else 0)
        ranges.append(range(start, start + size))
        start += size
    return ranges


def _serve(
    conn: Connection, topology: Topology, options: ClientOptions, targets: list[str]
) -> None:
    """A worker's life: open clients, answer ``Job``s with counts until told to stop."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the bench's to handle
    with asyncio.Runner() as runner:
        clients = runner.run(_open(topology, options, targets))
        conn.send(("ready", None))
        try:
            while True:
                message = conn.recv()
                if not isinstance(message, Job):
                    break
                try:
                    counts = runner.run(_phase(clients[message.target], message))
                except Exception as error:  # reported to the bench, which fails the run
                    conn.send(("error", f"{type(error).__name__}: {error}"))
                else:
                    conn.send(("done", counts))
        except (EOFError, OSError):
            pass  # the bench went away
        finally:
            runner.run(_close(clients))


async def _open(
    topology: Topology, options: ClientOptions, targets: list[str]
) -> dict[str, BenchClient]:
    return {name: open_client(topology, name, options) for name in targets}


async def _close(clients: dict[str, BenchClient]) -> None:
    for client in clients.values():
        await client.close()


async def _phase(client: BenchClient, job: Job) -> ThroughputCounts:
    return await throughput_counts(
        client, job.users, job.options, run_index=job.run_index, tag=job.tag,
        callers=job.callers, ops_max=job.ops_max,
    )  # fmt: skip


class WorkerPool:
    """N worker processes, each with a client per target; a context manager."""

    def __init__(
        self, topology: Topology, options: ClientOptions, targets: Sequence[str], processes: int
    ) -> None:
        if not 1 <= processes <= PROCESSES_MAX:
            raise ValueError(f"processes must be within 1..{PROCESSES_MAX}")
        self.topology = topology
        self.options = options
        self.targets = list(targets)
        self.size = processes
        self._workers: list[tuple[BaseProcess, Connection]] = []

    @property
    def pids(self) -> list[int]:
        return [p.pid for p, _ in self._workers if p.pid is not None]

    def start(self) -> None:
        """Spawn every worker, then wait (START_TIMEOUT_S) until each has its clients."""
        try:
            self._start()
        except BaseException:
            self.close()
            raise

    def _start(self) -> None:
        context = multiprocessing.get_context("spawn")
        for index in range(self.size):
            ours, theirs = context.Pipe()
            process = context.Process(
                target=_serve, args=(theirs, self.topology, self.options, self.targets),
                name=f"hongbao-bench-worker-{index}", daemon=True,
            )  # fmt: skip
            process.start()
            theirs.close()
            self._workers.append((process, ours))
        for index, (_, conn) in enumerate(self._workers):
            self._answer(index, conn, START_TIMEOUT_S)

    def spread(self, target: str) -> TargetSpread:
        """The throughput phase of ``target`` over these workers."""
        if target not in self.targets:
            raise ValueError(f"the workers have no client for {target}")
        return TargetSpread(self, target)

    async def throughput(
        self, target: str, users: Sequence[str], options: BenchOptions, *, run_index: int, tag: str
    ) -> ThroughputCounts:
        """One phase: each worker runs its share of the callers; their counts, merged."""
        if options.concurrency < self.size:
            raise ValueError("fewer callers than worker processes")
        ranges = split_callers(options.concurrency, self.size)
        ops_max = math.ceil(options.ops_max / self.size)
        for callers, (_, conn) in zip(ranges, self._workers, strict=True):
            conn.send(Job(target, tuple(users), options, run_index, tag, callers, ops_max))
        timeout_s = options.duration_s + options.tail_s + ANSWER_MARGIN_S
        parts = await asyncio.gather(*(
            self._answer_async(index, conn, timeout_s)
            for index, (_, conn) in enumerate(self._workers)
        ))  # fmt: skip
        return ThroughputCounts.merged(p for p in parts if isinstance(p, ThroughputCounts))

    async def _answer_async(self, index: int, conn: Connection, timeout_s: float) -> object:
        """Wait for worker ``index``'s answer without blocking the loop (the pipe's fd)."""
        loop = asyncio.get_running_loop()
        readable: asyncio.Future[None] = loop.create_future()

        def wake() -> None:
            if not readable.done():
                readable.set_result(None)

        loop.add_reader(conn.fileno(), wake)
        try:
            await asyncio.wait_for(readable, timeout_s)
        except TimeoutError:
            raise WorkerError(f"bench worker {index} did not answer in {timeout_s:g} s") from None
        finally:
            loop.remove_reader(conn.fileno())
        return self._answer(index, conn, 0.0)

    def _answer(self, index: int, conn: Connection, timeout_s: float) -> object:
        try:
            if not conn.poll(timeout_s):
                raise WorkerError(f"bench worker {index} did not answer in {timeout_s:g} s")
            kind, payload = conn.recv()
        except (EOFError, OSError):
            process = self._workers[index][0]
            process.join(STOP_TIMEOUT_S)
            raise WorkerError(f"bench worker {index} died (exit {process.exitcode})") from None
        if kind == "error":
            raise WorkerError(f"bench worker {index}: {payload}")
        return payload

    def close(self) -> None:
        """Ask every worker to stop; kill those still running after STOP_TIMEOUT_S."""
        for _, conn in self._workers:
            with contextlib.suppress(OSError, ValueError):
                conn.send(("stop", None))
        for process, conn in self._workers:
            process.join(STOP_TIMEOUT_S)
            if process.is_alive():
                process.kill()
                process.join(STOP_TIMEOUT_S)
            conn.close()
        self._workers.clear()

    def __enter__(self) -> WorkerPool:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


@dataclass(frozen=True, slots=True)
class TargetSpread:
    """:class:`hongbao.bench.throughput.Spread` for one target of a pool."""

    pool: WorkerPool
    target: str

    async def throughput(
        self, users: Sequence[str], options: BenchOptions, *, run_index: int, tag: str
    ) -> ThroughputCounts:
        return await self.pool.throughput(
            self.target, users, options, run_index=run_index, tag=tag
        )
