"""Run many seeds, in this process or in a pool of worker processes.

Why processes: a seed is pure CPU work in one interpreter, so threads would not help;
seeds are independent, so they split into chunks that workers run and the parent sums
in seed order. The result does not depend on the number of workers: a seed's run depends
only on the seed and the configuration.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field

from hongbao.sim.config import SimConfig
from hongbao.sim.runner import SeedResult, run_seed
from hongbao.sim.stats import BatchStats

CHUNK_SEEDS_MAX = 16  # seeds per task handed to a worker: small enough for a smooth progress bar
WORKERS_MAX = 64
FAILURES_KEPT_MAX = 100  # failing seeds remembered in full (all are counted)


@dataclass(slots=True)
class BatchResult:
    stats: BatchStats = field(default_factory=BatchStats)
    failures: list[SeedResult] = field(default_factory=list)

    def add(self, result: SeedResult) -> None:
        self.stats.add(result.stats, violated=not result.ok)
        if not result.ok and len(self.failures) < FAILURES_KEPT_MAX:
            self.failures.append(result)


def resolve_jobs(jobs: int) -> int:
    """``jobs`` workers, where 0 means one per CPU."""
    if jobs <= 0:
        jobs = os.cpu_count() or 1
    return max(1, min(jobs, WORKERS_MAX))


def run_batch(
    seeds: range,
    config: SimConfig,
    *,
    jobs: int = 1,
    on_result: Callable[[SeedResult], None] | None = None,
) -> BatchResult:
    """Run every seed of ``seeds``; ``on_result`` sees each result in seed order."""
    batch = BatchResult()
    for result in _results(seeds, config, resolve_jobs(jobs)):
        batch.add(result)
        if on_result is not None:
            on_result(result)
    return batch


def _results(seeds: range, config: SimConfig, jobs: int) -> Iterator[SeedResult]:
    if jobs == 1 or len(seeds) <= CHUNK_SEEDS_MAX:
        for seed in seeds:
            yield run_seed(seed, config)
        return
    chunks = [seeds[i : i + CHUNK_SEEDS_MAX] for i in range(0, len(seeds), CHUNK_SEEDS_MAX)]
    with ProcessPoolExecutor(max_workers=jobs) as pool:
        for chunk_results in pool.map(_run_chunk, chunks, [config] * len(chunks)):
            yield from chunk_results


def _run_chunk(seeds: range, config: SimConfig) -> list[SeedResult]:
    return [run_seed(seed, config) for seed in seeds]
