"""The fault injector: crashes, restarts, partitions and degraded links, at random.

Rules of this module: it acts on the cluster only through its public moves (crash,
restart, network faults) and draws every choice from the run's one ``random.Random``.
It never looks at a core's private state, only at who is alive and who claims to lead
(so that "isolate the leader" can aim).

Why these faults: together they cover what broke the public Raft libraries (see
raft-pitfalls.md): lost unsynced writes (crash), stale leaders (isolate the leader, one-way
partitions), a whole city going dark (region partitions), slow and lossy links that
reorder and drop (degraded links), and partial replication followed by leader changes.
Issue 6 added two: messages of much older terms replayed long after (a stale vote, an old
leader's append, an old snapshot), and crashes inside the handling of a Ready, at each
point between writing and ``advance`` (``node.CrashPoint``).
"""

from __future__ import annotations

import random
from collections.abc import Callable

from hongbao.raft.types import NodeId
from hongbao.sim.cluster import Cluster
from hongbao.sim.config import FaultRates
from hongbao.sim.draining import Drains
from hongbao.sim.network import Link, LinkFault
from hongbao.sim.node import CrashPoint, SimNode
from hongbao.sim.stats import RunStats
from hongbao.sim.trace import Trace


class FaultInjector:
    def __init__(
        self,
        *,
        rng: random.Random,
        cluster: Cluster,
        rates: FaultRates,
        stats: RunStats,
        trace: Trace,
    ) -> None:
        self._rng = rng
        self._cluster = cluster
        self._rates = rates
        self._stats = stats
        self._trace = trace
        weighted: list[tuple[Callable[[], None], int]] = [
            (self.crash_one, rates.crash_weight),
            (self.restart_one, rates.restart_weight),
            (self.partition_link, rates.link_partition_weight),
            (self.partition_one_way, rates.one_way_partition_weight),
            (self.partition_region, rates.region_partition_weight),
            (self.isolate_leader, rates.isolate_leader_weight),
            (self.degrade_link, rates.degrade_link_weight),
            (self.heal_one, rates.heal_one_weight),
            (self.heal_all_links, rates.heal_all_weight),
            (self.replay_stale, rates.stale_replay_weight),
            (self.crash_mid_ready, rates.mid_ready_crash_weight),
        ]
        # Draining regions (draining.py): only when asked for, so other runs draw the same.
        self.drains: Drains | None = None
        if rates.drain_weight > 0:
            self.drains = Drains(rng=rng, cluster=cluster, stats=stats, trace=trace)
            weighted.append((self.drains.toggle, rates.drain_weight))
        self._leader_since: dict[tuple[NodeId, int], int] = {}  # (node, term) -> first tick seen
        self._actions = [action for action, weight in weighted if weight > 0]
        self._weights = [weight for _, weight in weighted if weight > 0]

    def on_tick(self) -> None:
        self._maybe_fault_fresh_leader()
        self._maybe_fault_changing_leader()
        if not self._actions or self._rng.random() >= self._rates.fault_probability_per_tick:
            return
        action = self._rng.choices(self._actions, weights=self._weights)[0]
        action()

    def heal_everything(self) -> None:
        """End of the safety phase: no partition, no background loss, every node up."""
        healed = self._cluster.network.heal_all()
        self._cluster.network.calm()
        self._trace.emit(self._cluster.now, "fault", "heal", f"all=1 faults={healed}")
        for node in self._cluster.node_ids:
            self._cluster.nodes[node].crash_point = None
            if not self._cluster.nodes[node].alive:
                self._cluster.restart(node)

    # -- nodes -----------------------------------------------------------------------------

    def _maybe_fault_fresh_leader(self) -> None:
        """Crash or cut off a leader during its first ticks, while its first entries are
        half replicated (Figure 8 of the Raft paper needs exactly that)."""
        rates = self._rates
        if rates.fresh_leader_fault_probability <= 0:
            return
        now = self._cluster.now
        for leader in self._cluster.leaders():
            key = (leader.node_id, leader.live_core().term)
            since = self._leader_since.setdefault(key, now)
            if now - since > rates.fresh_leader_ticks:
                continue
            if self._rng.random() >= rates.fresh_leader_fault_probability:
                continue
            if self._rng.random() < 0.5 and self._down_count() < rates.crashed_nodes_max:
                self._cluster.crash(leader.node_id)
            else:
                self.isolate_leader(leader)

    def _maybe_fault_changing_leader(self) -> None:
        """While a membership change is in flight (the leader's configuration in force is
        not its applied one), crash or cut off the leader, or cut off one follower."""
        probability = self._rates.pending_conf_fault_probability
        if probability <= 0:
            return
        for leader in self._cluster.leaders():
            core = leader.live_core()
            if core.conf_state == core.applied_conf_state or self._rng.random() >= probability:
                continue
            choice = self._rng.random()
            followers = sorted(core.conf_state.voters - {leader.node_id})
            if choice < 0.5 and followers:
                follower = self._cluster.nodes[self._rng.choice(followers)]
                self._add(LinkFault("isolate:both", self._cut([follower.node_id], "both"),
                                    blocked=True))
                self._stats.leader_isolations += 1
            elif choice < 0.75 and self._down_count() < self._rates.crashed_nodes_max:
                self._cluster.crash(leader.node_id)
            else:
                self.isolate_leader(leader)

    def _down_count(self) -> int:
        return sum(1 for n in self._cluster.node_ids if not self._cluster.nodes[n].alive)

    def crash_one(self) -> None:
        live = [n.node_id for n in self._cluster.live_nodes()]
        down = len(self._cluster.nodes) - len(live)
        if not live or down >= self._rates.crashed_nodes_max:
            return
        leader = self._cluster.leader()
        if leader is not None and self._rng.random() < 0.5:
            victim = leader.node_id  # crashing leaders is where the interesting bugs are
        else:
            victim = self._rng.choice(live)
        self._cluster.crash(victim)

    def crash_mid_ready(self) -> None:
        """Arm a node (the leader half the time) to die inside its next Ready."""
        live = self._cluster.live_nodes()
        if not live or self._down_count() >= self._rates.crashed_nodes_max:
            return
        leader = self._cluster.leader()
        victim = leader if leader is not None and self._rng.random() < 0.5 else None
        victim = victim or self._rng.choice(live)
        victim.crash_point = self._rng.choice(tuple(CrashPoint))
        self._trace.emit(self._cluster.now, "fault", "arm",
                         f"node={victim.node_id} at={victim.crash_point.value}")

    def replay_stale(self) -> None:
        """Deliver again a few messages sent long ago (older terms, deposed leaders)."""
        count = self._rng.randint(1, self._rates.stale_replay_messages_max)
        replayed = self._cluster.network.replay_stale(self._cluster.now, count)
        if replayed:
            self._trace.emit(self._cluster.now, "fault", "replay", f"messages={replayed}")

    def restart_one(self) -> None:
        down = [n for n in self._cluster.node_ids if not self._cluster.nodes[n].alive]
        if down:
            self._cluster.restart(self._rng.choice(down))

    # -- links -----------------------------------------------------------------------------

    def partition_link(self) -> None:
        pair = self._two_nodes()
        if pair is None:
            return
        a, b = pair
        self._add(LinkFault("partition", frozenset({(a, b), (b, a)}), blocked=True))
        self._stats.link_partitions += 1

    def partition_one_way(self) -> None:
        pair = self._two_nodes()
        if pair is None:
            return
        a, b = pair
        self._add(LinkFault("oneway", frozenset({(a, b)}), blocked=True))
        self._stats.one_way_partitions += 1

    def partition_region(self) -> None:
        cluster = self._cluster
        region = self._rng.randrange(cluster.config.region_count)
        inside = [n for n in cluster.node_ids if cluster.region_of[n] == region]
        direction = self._rng.choice(("both", "out", "in"))
        self._add(LinkFault(f"region:{direction}", self._cut(inside, direction), blocked=True))
        self._stats.region_partitions += 1

    def isolate_leader(self, leader: SimNode | None = None) -> None:
        leader = leader or self._cluster.leader()
        if leader is None:
            return
        direction = self._rng.choice(("both", "both", "out", "in"))
        links = self._cut([leader.node_id], direction)
        self._add(LinkFault(f"isolate:{direction}", links, blocked=True))
        self._stats.leader_isolations += 1

    def degrade_link(self) -> None:
        pair = self._two_nodes()
        if pair is None:
            return
        a, b = pair
        fault = LinkFault(
            "degrade",
            frozenset({(a, b), (b, a)}),
            blocked=False,
            loss_probability=self._rates.degraded_loss_probability,
            extra_delay_ticks=self._rng.randint(1, self._rates.degraded_delay_ticks),
        )
        self._add(fault)
        self._stats.degraded_links += 1

    def heal_one(self) -> None:
        faults = self._cluster.network.faults
        if faults:
            healed = self._cluster.network.heal_fault(self._rng.randrange(len(faults)))
            self._stats.heals += 1
            self._trace.emit(self._cluster.now, "fault", "heal", _describe(healed))

    def heal_all_links(self) -> None:
        healed = self._cluster.network.heal_all()
        if healed:
            self._stats.heals += 1
            self._trace.emit(self._cluster.now, "fault", "heal", f"all=1 faults={healed}")

    # -- helpers ---------------------------------------------------------------------------

    def _two_nodes(self) -> tuple[NodeId, NodeId] | None:
        ids = self._cluster.node_ids
        if len(ids) < 2:
            return None
        a, b = self._rng.sample(ids, 2)
        return a, b

    def _cut(self, inside: list[NodeId], direction: str) -> frozenset[Link]:
        """Links between ``inside`` and the rest, outgoing, incoming or both."""
        outside = [n for n in self._cluster.node_ids if n not in inside]
        links: set[Link] = set()
        for a in inside:
            for b in outside:
                if direction in ("both", "out"):
                    links.add((a, b))
                if direction in ("both", "in"):
                    links.add((b, a))
        return frozenset(links)

    def _add(self, fault: LinkFault) -> None:
        if not fault.links:
            return
        self._cluster.network.add_fault(fault)
        self._trace.emit(self._cluster.now, "fault", fault.kind.split(":")[0], _describe(fault))


def _describe(fault: LinkFault) -> str:
    links = ",".join(f"{a}>{b}" for a, b in sorted(fault.links))
    extra = ""
    if not fault.blocked:
        extra = f" loss={fault.loss_probability} delay={fault.extra_delay_ticks}"
    return f"kind={fault.kind} links={links}{extra}"
