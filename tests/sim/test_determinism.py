"""One seed, one run: the same seed gives a byte-identical trace, whatever else ran before."""

from __future__ import annotations

import hashlib
import os
import random
import subprocess
import sys

from hongbao.sim import SimConfig, TraceOptions, run_seed
from hongbao.sim.batch import run_batch

FULL_TRACE = TraceOptions(enabled=True, messages=True)


def test_the_same_seed_gives_a_byte_identical_trace() -> None:
    first = run_seed(11, SimConfig(), FULL_TRACE)
    random.seed(12345)  # global randomness must not leak into a run
    random.random()
    second = run_seed(11, SimConfig(), FULL_TRACE)
    text_first = "\n".join(first.trace_lines).encode()
    text_second = "\n".join(second.trace_lines).encode()
    assert len(first.trace_lines) > 1_000  # a real run, with messages, not an empty trace
    assert hashlib.sha256(text_first).hexdigest() == hashlib.sha256(text_second).hexdigest()
    assert first.trace_digest == second.trace_digest
    assert first.stats == second.stats


def test_different_seeds_give_different_runs() -> None:
    digests = {run_seed(seed, SimConfig(), FULL_TRACE).trace_digest for seed in range(4)}
    assert len(digests) == 4


def test_tracing_does_not_change_the_run() -> None:
    traced = run_seed(5, SimConfig(), FULL_TRACE)
    untraced = run_seed(5, SimConfig())
    assert traced.stats == untraced.stats
    assert untraced.trace_lines == ()


def test_a_batch_does_not_depend_on_the_number_of_workers() -> None:
    seeds = range(40, 80)
    alone = run_batch(seeds, SimConfig(), jobs=1)
    pooled = run_batch(seeds, SimConfig(), jobs=2)
    assert alone.stats == pooled.stats
    assert [r.seed for r in alone.failures] == [r.seed for r in pooled.failures]


def test_the_trace_does_not_depend_on_string_hashing() -> None:
    """Set iteration order of strings changes with PYTHONHASHSEED; a run must not."""
    script = (
        "from hongbao.sim import SimConfig, TraceOptions, run_seed;"
        "print(run_seed(3, SimConfig(), TraceOptions(enabled=True, messages=True)).trace_digest)"
    )
    digests = {
        subprocess.run(
            [sys.executable, "-c", script],
            env={**os.environ, "PYTHONHASHSEED": hash_seed},
            capture_output=True, text=True, check=True,
        ).stdout.strip()
        for hash_seed in ("1", "2")
    }
    assert digests == {run_seed(3, SimConfig(), FULL_TRACE).trace_digest}
