"""Every named profile passes, liveness included, and does what its name promises.

Why per profile: the runner demands liveness after healing in every run, but a profile
whose special fault never fires would pass while testing nothing new. Each profile here
runs a few seeds clean (every invariant, then recovery within ``liveness_ticks_max``),
and its own counters show that its fault class happened.
"""

from __future__ import annotations

import pytest

from hongbao.sim.batch import run_batch
from hongbao.sim.profiles import PROFILES, profile_config

SEEDS = range(500, 508)

# The counters that prove each profile exercised what it is for (all must be positive).
EXPECTED: dict[str, tuple[str, ...]] = {
    "default": ("messages_replayed", "mid_ready_crashes", "membership_changes"),
    "figure8": ("crashes", "leader_isolations"),
    "crashy": ("crashes", "lost_unsynced_writes"),
    "stale": ("messages_replayed", "one_way_partitions", "messages_duplicated"),
    "ready-crash": ("mid_ready_crashes", "lost_unsynced_writes"),
    "two-voters": ("two_voter_configs", "leader_self_removals", "transfers_requested"),
    "tight-limits": ("reads", "commits"),
    "no-prevote": ("leader_self_removals", "membership_changes", "elections"),
    "draining": ("drains", "undrains", "drain_transfers", "fallback_elections",
                 "takeback_checks", "transfers_requested"),
}


def test_every_profile_has_expectations() -> None:
    assert sorted(EXPECTED) == sorted(PROFILES)


@pytest.mark.parametrize("profile", sorted(PROFILES))
def test_each_profile_passes_and_recovers(profile: str) -> None:
    config = profile_config(profile)
    batch = run_batch(SEEDS, config)
    failures = [
        f"seed {r.seed}: {r.violation_kind}: {r.violation_detail} "
        f"(replay: hongbao sim --seed {r.seed} --trace --profile {profile})"
        for r in batch.failures
    ]
    assert failures == []
    assert 0 < batch.stats.max_ticks_to_recover <= config.liveness_ticks_max
    quiet = [name for name in EXPECTED[profile] if batch.stats.totals[name] == 0]
    assert quiet == [], f"{profile}: {quiet} never happened in seeds {SEEDS}"


def test_non_default_core_settings_reach_the_cores() -> None:
    tight = profile_config("tight-limits")
    assert (tight.pending_reads_max, tight.inflight_messages_max, tight.check_quorum) == (
        2, 1, False)
    assert profile_config("no-prevote").pre_vote is False
