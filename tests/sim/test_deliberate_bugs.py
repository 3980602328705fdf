"""Each deliberate bug is caught by the simulator within a bounded number of seeds.

This is the test of the tests: a simulator that cannot fail proves nothing. For each bug
the first failing seed must break the invariant that bug breaks (a safety invariant; for
the reverted fixes of issue 6, an invariant inside the core, liveness after healing, or
the membership a snapshot records), the same seed must pass with the bug switched off
(so the bug, not the simulator, broke it), and a replay must fail the same way. A
scripted Figure 8 shows the exact history the ``figure8`` profile hunts for.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import replace

import pytest

from hongbao.raft.config import DeliberateBugs
from hongbao.raft.types import NodeId
from hongbao.sim import SeedResult, SimConfig, ViolationKind, run_seed
from hongbao.sim.checker import Checker, Violation
from hongbao.sim.cluster import Cluster
from hongbao.sim.config import NetworkRates, bugs_from_names
from hongbao.sim.network import LinkFault
from hongbao.sim.node import SimNode
from hongbao.sim.profiles import profile_config
from hongbao.sim.stats import RunStats
from hongbao.sim.trace import Trace

SAFETY = {
    ViolationKind.ELECTION_SAFETY.value,
    ViolationKind.LOG_MATCHING.value,
    ViolationKind.LEADER_COMPLETENESS.value,
    ViolationKind.STATE_MACHINE_SAFETY.value,
    ViolationKind.DURABILITY.value,
    ViolationKind.STALE_READ.value,
}
# The core's own "was the log lost?" invariant is a fair catch of lost unsynced writes.
LOST_WRITES = SAFETY | {ViolationKind.CRASH.value}
RAISES = {ViolationKind.CRASH.value}  # the core raised inside step (an invariant fired)
STUCK = {ViolationKind.LIVENESS.value}
MEMBERSHIP = {ViolationKind.MEMBERSHIP.value}
TAKEBACK = {ViolationKind.DRAIN_TAKEBACK.value}


def first_failure(config: SimConfig, seeds_max: int) -> SeedResult:
    for seed in range(seeds_max):
        result = run_seed(seed, config)
        if not result.ok:
            return result
    pytest.fail(f"no violation within {seeds_max} seeds with {config.bug_names}")


@pytest.mark.parametrize(
    ("bug", "profile", "seeds_max", "kinds"),
    [
        ("commit_old_term_by_count", "figure8", 200, SAFETY),
        ("vote_without_log_check", "default", 50, SAFETY),
        ("ack_before_persist", "crashy", 50, LOST_WRITES),
        # The four fixes of issue 6, each reverted, under the profile that hunts for it.
        ("requeue_reads_unchecked", "tight-limits", 10, RAISES),
        ("leader_removes_itself_from_two", "two-voters", 60, STUCK),
        ("conf_state_from_unapplied_snapshot", "default", 20, MEMBERSHIP),
        ("stale_vote_unanswered", "no-prevote", 100, STUCK),
        # Issue 7's campaign gating, each half broken, under the draining profile.
        ("campaign_while_draining", "draining", 30, TAKEBACK),
        ("no_campaign_fallback", "draining", 30, STUCK),
    ],
)
def test_each_deliberate_bug_is_caught(
    bug: str, profile: str, seeds_max: int, kinds: set[str]
) -> None:
    clean = profile_config(profile)
    buggy = replace(clean, bugs=bugs_from_names([bug]))
    failed = first_failure(buggy, seeds_max)
    assert failed.violation_kind in kinds, failed.violation_detail
    assert run_seed(failed.seed, clean).ok, "the same seed must pass without the bug"
    again = run_seed(failed.seed, buggy)
    assert (again.violation_kind, again.violation_detail, again.violation_tick) == (
        failed.violation_kind,
        failed.violation_detail,
        failed.violation_tick,
    )


# -- Figure 8, by hand ---------------------------------------------------------------------


class Script:
    """A three-node cluster (one per region, one tick apart) driven step by step."""

    def __init__(self, bugs: DeliberateBugs) -> None:
        quiet = NetworkRates(cross_region_delay_ticks_max=1, jitter_probability=0.0,
                             loss_probability=0.0, duplicate_probability=0.0)
        config = SimConfig(node_count=3, region_count=3, entries_per_message_max=1,
                           network=quiet, bugs=bugs)
        self.cluster = Cluster(config=config, rng=random.Random(1), trace=Trace(enabled=False),
                               stats=RunStats(), checker=Checker())

    def until(self, done: Callable[[], bool], ticks_max: int = 300) -> None:
        for _ in range(ticks_max):
            if done():
                return
            self.cluster.tick()
        pytest.fail("the scripted history got stuck")

    def leader(self) -> SimNode | None:
        return self.cluster.leader()

    def cut_off(self, node: NodeId, *, outgoing_only: bool = False) -> None:
        others = [n for n in self.cluster.node_ids if n != node]
        links = {(node, o) for o in others}
        if not outgoing_only:
            links |= {(o, node) for o in others}
        self.cluster.network.add_fault(LinkFault("isolate", frozenset(links), blocked=True))

    def crash_and_heal(self, node: NodeId) -> None:
        """Crash ``node``; what it sent is lost with the partition, which then heals."""
        self.cluster.crash(node)
        for _ in range(5):
            self.cluster.tick()
        self.cluster.network.heal_all()


def figure_8(bugs: DeliberateBugs) -> None:
    """Raft paper, Figure 8, with three nodes; raises :class:`Violation` if it goes wrong."""
    script = Script(bugs)
    cluster = script.cluster
    script.until(lambda: script.leader() is not None)
    s1 = script.leader()
    assert s1 is not None
    for data in (b"a", b"b", b"c"):  # a common prefix, so that X later travels alone
        s1.live_core().propose(data)
        cluster.settle(s1)
    script.until(lambda: all(n.machine.applied_index >= 4 for n in cluster.live_nodes()))
    script.cut_off(s1.node_id)
    old_index, _ = s1.live_core().propose(b"X")  # (a) X reaches only S1
    cluster.settle(s1)
    script.crash_and_heal(s1.node_id)
    script.until(lambda: script.leader() is not None)
    s2 = script.leader()  # (b) S2 leads a newer term; its entry at X's index goes nowhere
    assert s2 is not None
    script.cut_off(s2.node_id, outgoing_only=True)
    s2.live_core().propose(b"Y")
    cluster.settle(s2)
    script.crash_and_heal(s2.node_id)
    cluster.restart(s1.node_id)  # (c) S1 returns, leads, and replicates X to S3
    script.until(lambda: script.leader() is s1)
    script.until(lambda: s1.live_core().commit_index >= old_index, ticks_max=50)
    script.cut_off(s1.node_id, outgoing_only=True)  # ... its own no-op goes nowhere
    script.crash_and_heal(s1.node_id)
    cluster.restart(s2.node_id)  # (d) S2 can win again and overwrite X
    script.until(lambda: script.leader() is not None)
    for _ in range(50):
        cluster.tick()


def test_figure_8_breaks_leader_completeness_when_old_terms_commit_by_counting() -> None:
    with pytest.raises(Violation, match=ViolationKind.LEADER_COMPLETENESS.value):
        figure_8(DeliberateBugs(commit_old_term_by_count=True))


def test_figure_8_is_harmless_with_the_commit_rule() -> None:
    figure_8(DeliberateBugs())
