"""The simulated clients and operator: writes, ReadIndex reads, transfers, membership.

Rules of this module: clients talk to cores only through the public API (``propose``,
``read_index``, ``transfer_leadership``, ``propose_conf_change``) and learn outcomes only
from what a node applied or served. A write is acknowledged when the node that accepted
it applies the same (index, term); that acknowledgement is what the durability and read
checks hold the cluster to. A refused call is an ordinary answer, counted, not an error.

Why proposals mostly go to the leader: a real router learns the leader from NOT_LEADER
hints, so most writes reach it; a few go to a random node to exercise the refusals.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from hongbao.raft.confchange import ConfChange, ConfChangeError, ConfChangeType
from hongbao.raft.errors import ProposalDropped
from hongbao.raft.types import LogIndex, NodeId, Role, Term
from hongbao.sim.checker import Checker
from hongbao.sim.cluster import Cluster
from hongbao.sim.config import (
    PENDING_PROPOSALS_PER_NODE_MAX,
    PENDING_READS_PER_NODE_MAX,
    WorkloadRates,
)
from hongbao.sim.node import ReadyOutcome, SimNode
from hongbao.sim.stats import RunStats
from hongbao.sim.trace import Trace

LEADER_AIM_PROBABILITY = 0.85


@dataclass(frozen=True, slots=True)
class PendingWrite:
    term: Term
    data: bytes
    probe: bool  # a liveness probe: its acknowledgement ends recovery


@dataclass(frozen=True, slots=True)
class PendingRead:
    floor: LogIndex  # the newest acknowledged write when the read began
    started_tick: int


@dataclass(frozen=True, slots=True)
class PendingTransfer:
    target: NodeId
    from_term: Term
    deadline_tick: int


class Workload:
    def __init__(
        self,
        *,
        rng: random.Random,
        cluster: Cluster,
        checker: Checker,
        rates: WorkloadRates,
        stats: RunStats,
        trace: Trace,
    ) -> None:
        self._rng = rng
        self._cluster = cluster
        self._checker = checker
        self._rates = rates
        self._stats = stats
        self._trace = trace
        self._writes: dict[NodeId, dict[LogIndex, PendingWrite]] = {}
        self._reads: dict[NodeId, dict[bytes, PendingRead]] = {}
        self._transfer: PendingTransfer | None = None
        self._write_count = 0
        self._read_count = 0
        self.probe_acked_tick: int | None = None
        cluster.listeners.append(self.on_outcome)
        cluster.crash_listeners.append(self.on_crash)

    # -- the safety phase --------------------------------------------------------------------

    def on_tick(self) -> None:
        rates, rng = self._rates, self._rng
        if rng.random() < rates.propose_probability:
            for _ in range(rng.randint(1, rates.proposals_per_batch_max)):
                self.write()
        if rng.random() < rates.read_probability:
            burst = 1 if rates.reads_per_batch_max == 1 else rng.randint(
                1, rates.reads_per_batch_max)
            for _ in range(burst):
                self.read()
        if rng.random() < rates.transfer_probability:
            self.transfer()
        if rng.random() < rates.membership_change_probability:
            self.change_membership()
        self._check_transfer()

    def write(self, *, probe: bool = False, aim_at_leader: bool | None = None) -> LogIndex | None:
        """Propose one write; returns its index if a node accepted it."""
        if aim_at_leader is None:
            aim_at_leader = probe or self._rng.random() < LEADER_AIM_PROBABILITY
        node = self._pick_node(aim_at_leader=aim_at_leader)
        if node is None:
            return None
        self._write_count += 1
        data = f"{'probe' if probe else 'w'}{self._write_count}".encode()
        try:
            index, term = node.live_core().propose(data)
        except ProposalDropped as refused:
            self._stats.proposals_dropped += 1
            self._emit("dropped", f"node={node.node_id} reason={refused.reason.replace(' ', '_')}")
            return None
        self._stats.proposals += 1
        writes = self._writes.setdefault(node.node_id, {})
        if len(writes) >= PENDING_PROPOSALS_PER_NODE_MAX:
            del writes[next(iter(writes))]  # the oldest client gives up
        writes[index] = PendingWrite(term, data, probe)
        self._emit("propose", f"node={node.node_id} index={index} term={term} data={data.decode()}")
        self._cluster.settle(node)
        return index

    def read(self) -> None:
        node = self._pick_node(aim_at_leader=False)
        if node is None:
            return
        self._read_count += 1
        context = f"r{self._read_count}".encode()
        reads = self._reads.setdefault(node.node_id, {})
        if len(reads) >= PENDING_READS_PER_NODE_MAX:
            del reads[next(iter(reads))]
        try:
            node.live_core().read_index(context)
        except ProposalDropped:
            self._emit("read", f"node={node.node_id} id={context.decode()} dropped=1")
            return
        floor = self._checker.read_floor()
        reads[context] = PendingRead(floor, self._cluster.now)
        self._emit("read", f"node={node.node_id} id={context.decode()} floor={floor}")
        self._cluster.settle(node)

    def transfer(self) -> None:
        leader = self._cluster.leader()
        if leader is None or self._transfer is not None:
            return
        core = leader.live_core()
        targets = sorted(core.conf_state.voters - {leader.node_id})
        if not targets:
            return
        target = self._rng.choice(targets)
        try:
            core.transfer_leadership(target)
        except ProposalDropped:
            return
        self._stats.transfers_requested += 1
        deadline = self._cluster.now + 2 * self._cluster.config.election_timeout_ticks
        self._transfer = PendingTransfer(target, core.term, deadline)
        self._emit("transfer", f"from={leader.node_id} to={target} term={core.term}")
        self._cluster.settle(leader)

    def _check_transfer(self) -> None:
        pending = self._transfer
        if pending is None:
            return
        target = self._cluster.nodes.get(pending.target)
        core = target.core if target is not None else None
        if core is not None and core.term > pending.from_term and core.role is Role.LEADER:
            self._stats.transfers += 1
            self._emit("transfer", f"to={pending.target} term={core.term} done=1")
            self._transfer = None
        elif self._cluster.now > pending.deadline_tick:
            self._transfer = None

    def change_membership(self) -> None:
        leader = self._cluster.leader()
        if leader is None:
            return
        change = self._pick_change(leader)
        if change is None:
            return
        try:
            index, term = leader.live_core().propose_conf_change(change)
        except (ProposalDropped, ConfChangeError) as refused:
            self._emit("confchange", f"{change.type.name}={change.node_id} "
                       f"refused={type(refused).__name__}")
            if change.node_id == leader.node_id and isinstance(refused, ConfChangeError):
                self.transfer()  # an operator hands over first, then removes the old leader
            return
        if change.type is ConfChangeType.REMOVE_NODE and change.node_id == leader.node_id:
            self._stats.leader_self_removals += 1
        self._emit("confchange", f"{change.type.name}={change.node_id} index={index} term={term}")
        self._cluster.settle(leader)

    def _pick_change(self, leader: SimNode) -> ConfChange | None:
        """Remove a voter, add a learner or promote a caught-up learner; one at a time."""
        core = leader.live_core()
        conf = core.conf_state
        options: list[ConfChange] = []
        if len(conf.voters) > self._rates.voters_min:
            if leader.node_id in conf.voters and self._rates.remove_leader_probability > 0 and (
                self._rng.random() < self._rates.remove_leader_probability
            ):
                return ConfChange(ConfChangeType.REMOVE_NODE, leader.node_id)
            options += [ConfChange(ConfChangeType.REMOVE_NODE, n) for n in sorted(conf.voters)]
        outsiders = sorted(set(self._cluster.node_ids) - conf.members)
        options += [ConfChange(ConfChangeType.ADD_LEARNER, n) for n in outsiders]
        for learner in sorted(conf.learners):
            node = self._cluster.nodes[learner]
            lag = core.commit_index - node.machine.applied_index
            if node.alive and lag <= self._rates.learner_lag_entries_max:
                options.append(ConfChange(ConfChangeType.ADD_VOTER, learner))
        return self._rng.choice(options) if options else None

    # -- the liveness phase ----------------------------------------------------------------

    def probe(self) -> None:
        """Propose a probe write on the leader until one is acknowledged."""
        if self.probe_acked_tick is not None:
            return
        leader = self._cluster.leader()
        if leader is None:
            return
        pending = self._writes.get(leader.node_id, {})
        term = leader.live_core().term
        if any(w.probe and w.term == term for w in pending.values()):
            return  # still waiting for this leader's probe
        self.write(probe=True)

    # -- answers from the cluster ----------------------------------------------------------

    def on_outcome(self, node: SimNode, outcome: ReadyOutcome) -> None:
        writes = self._writes.get(node.node_id)
        if writes:
            if outcome.restored is not None:
                for index in [i for i in writes if i <= outcome.restored.applied_index]:
                    del writes[index]  # jumped over by a snapshot: the answer is "maybe"
            for applied in outcome.applied:
                self._answer_write(node.node_id, writes, applied.entry.index,
                                   applied.entry.term, applied.entry.data)
        reads = self._reads.get(node.node_id)
        for served in outcome.served:
            pending = reads.pop(served.context, None) if reads else None
            if pending is None:
                continue
            image = served.image
            self._checker.on_read_served(node.node_id, floor=pending.floor,
                                         applied_index=image.applied_index, digest=image.digest)
            self._stats.reads += 1
            self._emit("served", f"node={node.node_id} id={served.context.decode()} "
                       f"applied={image.applied_index} floor={pending.floor}")

    def _answer_write(self, node: NodeId, writes: dict[LogIndex, PendingWrite],
                      index: LogIndex, term: Term, data: bytes) -> None:
        pending = writes.pop(index, None)
        if pending is None:
            return
        if (pending.term, pending.data) != (term, data):
            self._emit("lost", f"node={node} index={index} term={pending.term}")
            return
        self._checker.on_ack(index, term, data)
        self._stats.commits += 1
        self._emit("ack", f"node={node} index={index} term={term}")
        if pending.probe and self.probe_acked_tick is None:
            self.probe_acked_tick = self._cluster.now

    def on_crash(self, node: NodeId) -> None:
        self._writes.pop(node, None)
        self._reads.pop(node, None)

    # -- helpers ---------------------------------------------------------------------------

    def _pick_node(self, *, aim_at_leader: bool) -> SimNode | None:
        if aim_at_leader:
            leader = self._cluster.leader()
            if leader is not None:
                return leader
        live = self._cluster.live_nodes()
        return self._rng.choice(live) if live else None

    def _emit(self, event: str, details: str) -> None:
        if self._trace.enabled:
            self._trace.emit(self._cluster.now, "client", event, details)
