"""The simulated demo: three cities, one of them goes dark, the money keeps moving.

Why a script on top of the simulator: it shows the one story hongbao exists for (a
region fails, the survivors elect a new leader and keep committing, the region comes
back and catches up) with the real Raft core and every invariant checked after every
step, in a second, with no processes or ports. It is deterministic for a seed.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, replace

from hongbao.raft.types import LogIndex, NodeId
from hongbao.sim.checker import Checker, Violation, ViolationKind
from hongbao.sim.cluster import Cluster
from hongbao.sim.config import FaultRates, NetworkRates, SimConfig, WorkloadRates
from hongbao.sim.faults import FaultInjector
from hongbao.sim.network import LinkFault
from hongbao.sim.node import SimNode
from hongbao.sim.stats import RunStats
from hongbao.sim.trace import Trace
from hongbao.sim.workload import Workload

CITIES = ("shenzhen", "shanghai", "tianjin")
WRITES_PER_PHASE = 5
PHASE_TICKS_MAX = 300  # each step of the story must finish within this many ticks
DEFAULT_SEED = 2024


@dataclass(frozen=True, slots=True)
class DemoStep:
    tick: int
    text: str


@dataclass(frozen=True, slots=True)
class DemoReport:
    seed: int
    steps: tuple[DemoStep, ...]
    ok: bool
    failure: str | None
    commits: int


def demo_config() -> SimConfig:
    """Three nodes, one per city; no random faults: the script makes the one that matters."""
    quiet = WorkloadRates(
        propose_probability=0.0,
        read_probability=0.0,
        transfer_probability=0.0,
        membership_change_probability=0.0,
    )
    return SimConfig(
        node_count=len(CITIES),
        region_count=len(CITIES),
        network=replace(NetworkRates(), loss_probability=0.0, duplicate_probability=0.0),
        faults=replace(FaultRates(), fault_probability_per_tick=0.0,
                       fresh_leader_fault_probability=0.0),
        workload=quiet,
    )


class _Story:
    def __init__(self, seed: int) -> None:
        config = demo_config()
        rng = random.Random(seed)
        self.stats = RunStats()
        self.checker = Checker()
        trace = Trace(enabled=False)
        self.cluster = Cluster(config=config, rng=rng, trace=trace, stats=self.stats,
                               checker=self.checker, region_names=CITIES)
        self.faults = FaultInjector(rng=rng, cluster=self.cluster, rates=config.faults,
                                    stats=self.stats, trace=trace)
        self.workload = Workload(rng=rng, cluster=self.cluster, checker=self.checker,
                                 rates=config.workload, stats=self.stats, trace=trace)
        self.steps: list[DemoStep] = []

    def say(self, text: str) -> None:
        self.steps.append(DemoStep(self.cluster.now, text))

    def where(self, node: SimNode) -> str:
        return f"node {node.node_id} ({self.cluster.region_names[node.region]})"

    def run_until(self, done: Callable[[], bool], what: str) -> int:
        """Tick until ``done``; returns the ticks it took."""
        started = self.cluster.now
        for _ in range(PHASE_TICKS_MAX):
            if done():
                return self.cluster.now - started
            self.cluster.tick()
        raise _stuck(what)

    def leader_other_than(self, excluded: NodeId | None) -> SimNode | None:
        leader = self.cluster.leader()
        if leader is None or leader.node_id == excluded:
            return None
        return leader

    def commit_writes(self, count: int) -> tuple[LogIndex, LogIndex]:
        """Propose ``count`` writes on the leader and wait until each is acknowledged."""
        acked_before = self.stats.commits
        indices: list[LogIndex] = []
        while len(indices) < count:
            index = self.workload.write(aim_at_leader=True)
            if index is None:
                self.cluster.tick()
            else:
                indices.append(index)
        self.run_until(lambda: self.stats.commits >= acked_before + count, "writes commit")
        return indices[0], indices[-1]


    def leader(self) -> SimNode:
        leader = self.cluster.leader()
        if leader is None:
            raise _stuck("a leader")
        return leader


def _stuck(what: str) -> Violation:
    return Violation(ViolationKind.LIVENESS, f"the demo got stuck waiting for: {what}")


def run_demo(seed: int = DEFAULT_SEED) -> DemoReport:
    story = _Story(seed)
    try:
        _tell(story)
    except Violation as broken:
        return DemoReport(seed, tuple(story.steps), False, str(broken), story.stats.commits)
    return DemoReport(seed, tuple(story.steps), True, None, story.stats.commits)


def _tell(story: _Story) -> None:
    cluster = story.cluster
    ticks = story.run_until(lambda: cluster.leader() is not None, "a first leader")
    first = story.leader()
    story.say(f"{story.where(first)} elected leader of term {first.live_core().term} "
              f"after {ticks} ticks")
    low, high = story.commit_writes(WRITES_PER_PHASE)
    story.say(f"committed {WRITES_PER_PHASE} writes (log index {low}..{high}) in all three cities")

    lost_region = first.region
    inside = [n for n in cluster.node_ids if cluster.region_of[n] == lost_region]
    outside = [n for n in cluster.node_ids if n not in inside]
    links = frozenset({(a, b) for a in inside for b in outside} |
                      {(b, a) for a in inside for b in outside})
    cluster.network.add_fault(LinkFault("region:both", links, blocked=True))
    story.say(f"region {CITIES[lost_region]} cut off from the others (the leader's region)")

    ticks = story.run_until(lambda: story.leader_other_than(first.node_id) is not None,
                            "a leader among the survivors")
    second = story.leader()
    story.say(f"{story.where(second)} elected leader of term {second.live_core().term}, "
              f"{ticks} ticks after the cut")
    low, high = story.commit_writes(WRITES_PER_PHASE)
    story.say(f"committed {WRITES_PER_PHASE} more writes (index {low}..{high}) "
              f"with two of three cities")

    story.faults.heal_everything()
    target = story.checker.max_acked_index
    ticks = story.run_until(lambda: first.machine.applied_index >= target,
                            f"{CITIES[lost_region]} to catch up")
    story.say(f"region {CITIES[lost_region]} healed; {story.where(first)} caught up to index "
              f"{first.machine.applied_index} in {ticks} ticks")
    members = {n: cluster.nodes[n].machine.image for n in cluster.node_ids}
    behind = story.checker.check_converged(members)
    if behind:
        raise _stuck(f"nodes {behind} to apply every acknowledged write")
