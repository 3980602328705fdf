"""Draining regions in the simulator: the moves a drain makes, and that they stick.

The ``draining`` profile (test_profiles, test_deliberate_bugs) runs them at random across
seeds; these scripted runs pin down each move on its own: a drain moves the leader out
and keeps it out, a restart keeps a replica's drain, an undrain lets it lead again, and
with every region drained the fallback still elects a leader.
"""

from __future__ import annotations

import random
from collections.abc import Callable

from hongbao.raft.types import NodeId, Role
from hongbao.sim.checker import Checker
from hongbao.sim.cluster import Cluster
from hongbao.sim.config import NetworkRates, SimConfig
from hongbao.sim.draining import Drains
from hongbao.sim.node import SimNode
from hongbao.sim.profiles import profile_config
from hongbao.sim.runner import run_seed
from hongbao.sim.stats import RunStats
from hongbao.sim.trace import Trace

TICKS_MAX = 400


def _calm() -> SimConfig:
    quiet = NetworkRates(loss_probability=0.0, duplicate_probability=0.0, jitter_probability=0.0)
    return SimConfig(node_count=3, region_count=3, network=quiet)


def _setup(seed: int = 1) -> tuple[Cluster, Drains, RunStats]:
    stats = RunStats()
    rng = random.Random(seed)
    trace = Trace(enabled=False)
    cluster = Cluster(config=_calm(), rng=rng, trace=trace, stats=stats, checker=Checker())
    return cluster, Drains(rng=rng, cluster=cluster, stats=stats, trace=trace), stats


def _until(cluster: Cluster, done: Callable[[], bool], step: Callable[[], None] = lambda: None
           ) -> int:
    for tick in range(TICKS_MAX):
        if done():
            return tick
        step()
        cluster.tick()
    raise AssertionError(f"not done within {TICKS_MAX} ticks")


def _leader(cluster: Cluster) -> SimNode:
    _until(cluster, lambda: cluster.leader() is not None)
    leader = cluster.leader()
    assert leader is not None
    return leader


def test_a_drain_moves_the_leader_out_and_keeps_it_out() -> None:
    cluster, drains, stats = _setup()
    old = _leader(cluster).node_id
    drains.set_region(cluster.region_of[old], draining=True)
    _until(cluster, lambda: (lead := cluster.leader()) is not None and lead.node_id != old,
           step=drains.move_leader_out)
    assert stats.drain_transfers >= 1
    for _ in range(20 * cluster.config.election_timeout_ticks):
        cluster.tick()
        leader = cluster.leader()
        assert leader is not None
        assert leader.node_id != old, "leadership went back"


def test_a_restarted_replica_keeps_its_drain() -> None:
    cluster, drains, _ = _setup()
    _leader(cluster)
    node = NodeId(2)
    drains.set_region(cluster.region_of[node], draining=True)
    cluster.crash(node)
    cluster.restart(node)
    assert cluster.nodes[node].live_core().campaign_allowed is False
    drains.set_region(cluster.region_of[node], draining=False)
    assert cluster.nodes[node].live_core().campaign_allowed is True


def test_with_every_region_drained_the_fallback_elects_a_leader() -> None:
    cluster, drains, stats = _setup()
    old = _leader(cluster)
    for region in range(cluster.config.region_count):
        drains.set_region(region, draining=True)
    ticks = drains.check_takeback(TICKS_MAX)
    fallback = old.live_core().config.campaign_fallback_timeouts if old.alive else 3
    assert ticks >= fallback * cluster.config.election_timeout_ticks - 1
    assert stats.fallback_elections == 1
    leader = cluster.leader()
    assert leader is not None
    assert leader.live_core().role is Role.LEADER


def test_the_draining_profile_runs_its_takeback_check_on_every_seed() -> None:
    config = profile_config("draining")
    for seed in (3, 4):
        result = run_seed(seed, config)
        assert result.ok, result.violation_detail
        assert result.stats.takeback_checks == 1
