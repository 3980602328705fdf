"""Every fault and every feature the simulator claims to exercise actually happens.

A simulator that never crashed a node or never installed a snapshot would pass every seed
and prove nothing; these counts are the evidence that it did each thing, many times.
"""

from __future__ import annotations

import pytest

from hongbao.sim import SimConfig
from hongbao.sim.batch import BatchResult, run_batch

SEEDS = range(1000, 1040)


@pytest.fixture(scope="module")
def batch() -> BatchResult:
    return run_batch(SEEDS, SimConfig())


@pytest.mark.parametrize(
    "counter",
    [
        # faults
        "crashes",
        "restarts",
        "lost_unsynced_writes",
        "link_partitions",
        "one_way_partitions",
        "region_partitions",
        "leader_isolations",
        "degraded_links",
        "heals",
        "messages_lost",
        "messages_blocked",
        "messages_refused",
        "messages_duplicated",
        "messages_reordered",
        "messages_delayed",
        "messages_replayed",
        "mid_ready_crashes",
        # what the cluster did under them
        "elections",
        "commits",
        "reads",
        "transfers",
        "membership_changes",
        "snapshots",
        "snapshots_created",
        "proposals_dropped",
        "quiescences",
        "quiesce_wakes",
    ],
)
def test_it_happens(batch: BatchResult, counter: str) -> None:
    assert batch.stats.totals[counter] > 0, f"{counter} never happened in seeds {SEEDS}"


def test_the_batch_passed_and_recovered(batch: BatchResult) -> None:
    assert [r.seed for r in batch.failures] == []
    assert batch.stats.seeds == len(SEEDS)
    assert 0 < batch.stats.max_ticks_to_recover <= SimConfig().liveness_ticks_max
