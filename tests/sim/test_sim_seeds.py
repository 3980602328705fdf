"""The simulator over 250 seeds with the default faults: every invariant holds.

Split into chunks so that a failure names a small range, and so that a parallel runner
can spread them. ``make sim`` runs 10,000 seeds through the CLI.
"""

from __future__ import annotations

import pytest

from hongbao.sim import SimConfig
from hongbao.sim.batch import run_batch

SEEDS_TOTAL = 250
CHUNK_SEEDS = 50


@pytest.mark.parametrize("first", range(0, SEEDS_TOTAL, CHUNK_SEEDS))
def test_invariants_hold_over_seeds(first: int) -> None:
    batch = run_batch(range(first, first + CHUNK_SEEDS), SimConfig())
    failures = [
        f"seed {r.seed}: {r.violation_kind}: {r.violation_detail} "
        f"(replay: hongbao sim --seed {r.seed} --trace)"
        for r in batch.failures
    ]
    assert failures == []
    assert batch.stats.totals["commits"] > 0
