"""Draining regions in the simulator: replicas that may not campaign, and what to check.

Rules of this module: a drain acts only through public moves (``Cluster.
set_campaign_allowed``, ``RaftCore.transfer_leadership``) and draws every choice from the
run's one ``random.Random``. It models what ``hongbao region drain`` does to Raft: every
replica of the region stops seeking leadership, and a leader there hands over to a
caught-up replica elsewhere. An undrain allows them again.

What it checks (CockroachDB #66103 and its liveness counterpart): the liveness phase
ends only once the leader may campaign (the drain moved it out), unless no live voter
may; then the take-back check crashes that leader (having drained more regions, some
runs every one): a replica that may not campaign must not win before it went
``campaign_fallback_timeouts`` election timeouts without a leader (its fallback), and
with or without a voter that may, a leader is elected within a bound.
"""

from __future__ import annotations

import random

from hongbao.raft.errors import NotLeader, ProposalDropped
from hongbao.raft.types import NodeId
from hongbao.sim.checker import Violation, ViolationKind
from hongbao.sim.cluster import Cluster
from hongbao.sim.node import SimNode
from hongbao.sim.stats import RunStats
from hongbao.sim.trace import Trace

# The take-back check drains every region (nobody allowed) with this probability.
DRAIN_ALL_PROBABILITY = 0.25


class Drains:
    """The draining regions of one run."""

    def __init__(self, *, rng: random.Random, cluster: Cluster, stats: RunStats,
                 trace: Trace) -> None:
        self._rng = rng
        self._cluster = cluster
        self._stats = stats
        self._trace = trace
        self.regions: set[int] = set()

    def toggle(self) -> None:
        """The fault action: drain a random region, or undrain it if it drains already."""
        region = self._rng.randrange(self._cluster.config.region_count)
        if region in self.regions:
            self.set_region(region, draining=False)
        else:
            self.set_region(region, draining=True)
            self.move_leader_out()

    def set_region(self, region: int, *, draining: bool) -> None:
        cluster = self._cluster
        if draining:
            self.regions.add(region)
            self._stats.drains += 1
        else:
            self.regions.discard(region)
            self._stats.undrains += 1
        for node in cluster.node_ids:
            if cluster.region_of[node] == region:
                cluster.set_campaign_allowed(node, not draining)

    def move_leader_out(self) -> None:
        """A leader that may not campaign hands over to the most caught-up allowed voter."""
        cluster = self._cluster
        leader = cluster.leader()
        if leader is None or cluster.campaign_allowed(leader.node_id):
            return
        core = leader.live_core()
        status = core.status()
        if status.leader_transferee != 0:
            return  # one transfer at a time; the core abandons a slow one by itself
        candidates = [
            voter
            for voter in sorted(core.conf_state.voters)
            if voter != leader.node_id
            and cluster.campaign_allowed(voter)
            and cluster.nodes[voter].alive
            and voter in status.peers
        ]
        if not candidates:
            return
        target = max(candidates, key=lambda v: (status.peers[v].match, -v))
        try:
            core.transfer_leadership(target)
        except (NotLeader, ProposalDropped):
            return
        self._stats.drain_transfers += 1
        self._trace.emit(cluster.now, "drain", "transfer", f"from={leader.node_id} to={target}")
        cluster.settle(leader)

    def leader_placed(self, leader: SimNode) -> bool:
        """The leader may campaign, or no live voter may (then any leader will do)."""
        cluster = self._cluster
        if cluster.campaign_allowed(leader.node_id):
            return True
        voters = leader.live_core().conf_state.voters
        return not any(cluster.campaign_allowed(v) and cluster.nodes[v].alive for v in voters)

    def check_takeback(self, ticks_max: int) -> int:
        """Crash the leader; demand a new leader in time, placed by the rule. Returns the
        ticks the election took."""
        cluster = self._cluster
        if self._rng.random() < DRAIN_ALL_PROBABILITY:
            for region in range(cluster.config.region_count):
                if region not in self.regions:
                    self.set_region(region, draining=True)
        elif not self.regions:
            self.set_region(self._rng.randrange(cluster.config.region_count), draining=True)
        old = cluster.leader()
        if old is None:
            raise Violation(ViolationKind.LIVENESS, "no leader before the take-back check")
        old_core = old.live_core()
        old_term = old_core.term
        # A replica that may not campaign hears its last heartbeat at the crash at the
        # earliest, then needs that many whole election timeouts of silence.
        window_ticks = old_core.config.campaign_fallback_timeouts * (
            cluster.config.election_timeout_ticks
        ) - cluster.config.heartbeat_interval_ticks
        crash_tick = cluster.now
        cluster.crash(old.node_id)
        self._stats.takeback_checks += 1
        for _ in range(ticks_max):
            cluster.tick()
            leader = cluster.leader()
            if leader is None or leader.live_core().term <= old_term:
                continue
            blocked = not cluster.campaign_allowed(leader.node_id)
            if blocked and cluster.now - crash_tick < window_ticks:
                raise Violation(
                    ViolationKind.DRAIN_TAKEBACK,
                    f"node {leader.node_id} may not campaign but leads term "
                    f"{leader.live_core().term} {cluster.now - crash_tick} ticks after the "
                    f"leader crashed, before its fallback ({window_ticks} ticks); allowed "
                    f"voters: {self._allowed_voters(leader)}",
                )
            return cluster.now - crash_tick
        raise Violation(
            ViolationKind.LIVENESS,
            f"no leader within {ticks_max} ticks of crashing leader {old.node_id} "
            f"(draining regions {sorted(self.regions)})",
        )

    def _allowed_voters(self, leader: SimNode) -> list[NodeId]:
        cluster = self._cluster
        return [
            v for v in sorted(leader.live_core().conf_state.voters)
            if cluster.campaign_allowed(v) and cluster.nodes[v].alive
        ]
