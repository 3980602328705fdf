"""The simulator delivers every message through the receiving node's real PeerGuard.

The guard drops messages by its lease rules; only the guard and the core together show
whether a cluster still recovers. The first runs with the guard found replicas refusing
their new leader for good because they did not know it as a member (a replica behind a
membership change): seeds 14, 64, 230 and 250 of the default options failed liveness
until the guard let a node of the topology send what a leader sends.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest

from hongbao.node.peer_guard import PeerGuard
from hongbao.sim import SimConfig
from hongbao.sim import cluster as sim_cluster
from hongbao.sim.runner import run_seed

FOUND_SEEDS = (14, 64, 230, 250)


def test_the_seeds_that_found_the_membership_refusal_pass_with_the_guard() -> None:
    results = [run_seed(seed, SimConfig()) for seed in FOUND_SEEDS]
    assert [(r.seed, r.violation_detail) for r in results if not r.ok] == []
    assert sum(r.stats.messages_refused for r in results) > 0, "the guard refused nothing"


def test_a_members_only_guard_fails_those_seeds(monkeypatch: pytest.MonkeyPatch) -> None:
    """The regression test can fail: the guard as it was (members only) strands them."""

    class MembersOnly(PeerGuard):
        def __init__(self, **options: Any) -> None:
            super().__init__(**{**options, "nodes": frozenset()})

    monkeypatch.setattr(sim_cluster, "PeerGuard", MembersOnly)
    results = [run_seed(seed, SimConfig()) for seed in FOUND_SEEDS]
    assert [r.seed for r in results if not r.ok] == list(FOUND_SEEDS)
    assert {r.violation_kind for r in results} == {"liveness"}


def test_the_guard_can_be_turned_off_to_tell_its_effect_apart() -> None:
    result = run_seed(FOUND_SEEDS[0], replace(SimConfig(), peer_guard=False))
    assert result.ok, result.violation_detail
    assert result.stats.messages_refused == 0
    assert result.stats.messages_delivered > 0
