"""The simulated cluster: nodes, the network between them, and one tick of logical time.

Rules of this module: it moves messages from the network into cores, drains every core's
Ready after each input, and hands each outcome to the checker (invariants) and to the
workload's listener (client answers). It decides nothing at random itself except through
the network and the nodes; faults and workload act on it from outside.

Order inside one tick (fixed, so that a seed replays exactly): every live core ticks (in
node id order) and settles; then every message due by now is delivered in (delivery
tick, send order) order, each followed by the destination's settling; then nodes whose
state machine ran far enough ahead of their last snapshot take one and compact.
"""

from __future__ import annotations

import random
from collections.abc import Callable

from hongbao.node.liveness import PeerLiveness
from hongbao.node.peer_guard import PeerGuard, RefusalLog
from hongbao.raft.config import RaftConfig
from hongbao.raft.core import RaftCore
from hongbao.raft.types import ConfState, EntryType, Message, MessageType, NodeId, Role
from hongbao.sim.checker import Checker
from hongbao.sim.config import DELIVERIES_PER_TICK_MAX, READY_ROUNDS_PER_STEP_MAX, SimConfig
from hongbao.sim.network import DropReason, Due, InFlight, Network
from hongbao.sim.node import ReadyOutcome, SimNode
from hongbao.sim.stats import RunStats
from hongbao.sim.trace import Trace, node_subject

OutcomeListener = Callable[[SimNode, ReadyOutcome], None]
TICK_MS = 100  # what one tick is to the PeerGuard's lease clock (only ratios matter)


class Cluster:
    def __init__(
        self,
        *,
        config: SimConfig,
        rng: random.Random,
        trace: Trace,
        stats: RunStats,
        checker: Checker,
        region_names: tuple[str, ...] = (),
    ) -> None:
        config.validate()
        self.config = config
        self.now = 0
        self._trace = trace
        self._stats = stats
        self.checker = checker
        ids = [NodeId(i) for i in range(1, config.node_count + 1)]
        self.region_of = {node: (node - 1) % config.region_count for node in ids}
        self.region_names = region_names or tuple(f"r{r}" for r in range(config.region_count))
        raft_config = RaftConfig(
            node_id=NodeId(1),
            election_timeout_ticks=config.election_timeout_ticks,
            heartbeat_interval_ticks=config.heartbeat_interval_ticks,
            pre_vote=config.pre_vote,
            check_quorum=config.check_quorum,
            entries_per_message_max=config.entries_per_message_max,
            inflight_messages_max=config.inflight_messages_max,
            pending_reads_max=config.pending_reads_max,
            quiesce=config.quiesce,
            bugs=config.bugs,
        )
        voters = ids[: config.bootstrap_voters] if config.bootstrap_voters else ids
        bootstrap = ConfState(voters=frozenset(voters), learners=frozenset(ids) - set(voters))
        self.nodes: dict[NodeId, SimNode] = {
            node: SimNode(
                node_id=node,
                region=self.region_of[node],
                bootstrap=bootstrap,
                raft_config=raft_config,
                rng=rng,
            )
            for node in ids
        }
        self.network = Network(rng=rng, region_of=self.region_of, rates=config.network, stats=stats)
        self.listeners: list[OutcomeListener] = []
        self.crash_listeners: list[Callable[[NodeId], None]] = []
        self._last_role: dict[NodeId, tuple[Role, int, NodeId]] = {}
        # Replicas of draining regions: the runtime re-applies this at every restart, as a
        # real node does from the replicated cluster state.
        self._campaign_blocked: set[NodeId] = set()
        # The tick each node last heard a leader (or led, or restarted): a replica that
        # may not campaign must stay silent that long before its fallback lets it win.
        self._heard_leader_tick: dict[NodeId, int] = dict.fromkeys(ids, 0)
        self._guards: dict[NodeId, tuple[int, PeerGuard]] = {}  # node -> (incarnation, guard)
        self._liveness: dict[NodeId, tuple[int, PeerLiveness]] = {}  # as _guards
        self._quiesced: set[NodeId] = set()  # nodes whose core was quiesced when last seen

    # -- views -----------------------------------------------------------------------------

    @property
    def node_ids(self) -> list[NodeId]:
        return sorted(self.nodes)

    def live_nodes(self) -> list[SimNode]:
        return [self.nodes[n] for n in self.node_ids if self.nodes[n].alive]

    def leaders(self) -> list[SimNode]:
        return [n for n in self.live_nodes() if n.live_core().role is Role.LEADER]

    def leader(self) -> SimNode | None:
        """The live leader of the highest term, if any (what a well-informed client finds)."""
        leaders = self.leaders()
        return max(leaders, key=lambda n: n.live_core().term) if leaders else None

    def campaign_allowed(self, node_id: NodeId) -> bool:
        return node_id not in self._campaign_blocked

    def set_campaign_allowed(self, node_id: NodeId, allowed: bool) -> None:
        if allowed:
            self._campaign_blocked.discard(node_id)
        else:
            self._campaign_blocked.add(node_id)
        node = self.nodes[node_id]
        if node.alive:
            node.live_core().set_campaign_allowed(allowed)
        self._trace.emit(self.now, node_subject(node_id), "campaign",
                         f"allowed={int(allowed)}")

    def trace_phase(self, name: str) -> None:
        self._trace.emit(self.now, "sim", "phase", f"name={name}")

    # -- time ------------------------------------------------------------------------------

    def tick(self) -> None:
        self.now += 1
        self._stats.ticks += 1
        for node in self.live_nodes():
            node.live_core().tick()
            self._watch_liveness(node)
            self.settle(node)
        self._deliver_due()
        self._report_overflow()
        for node in self.live_nodes():
            if node.maybe_snapshot(
                interval_entries=self.config.snapshot_interval_entries,
                compaction_lag_max=self.config.compaction_lag_entries_max,
            ):
                self._check_applied_conf(node)
                self._stats.snapshots_created += 1
                snap = node.disk.volatile.snapshot().meta
                self._trace.emit(self.now, node_subject(node.node_id), "snapshot",
                                 f"index={snap.index} first={node.disk.volatile.first_index()}")

    def settle(self, node: SimNode) -> None:
        """Drain ``node``'s Ready rounds after an input, then let the checker look at it."""
        if node.crash_point is not None and self._down_count() >= (
            self.config.faults.crashed_nodes_max
        ):
            node.crash_point = None  # too many down already: the armed crash is called off
        for _ in range(READY_ROUNDS_PER_STEP_MAX):
            outcome = node.handle_ready()
            if outcome is None:
                break
            self._route(node, outcome)
            if outcome.crashed_at is not None:
                self._stats.mid_ready_crashes += 1
                self.crash(node.node_id, at=outcome.crashed_at.value)
                return
        self._observe(node)

    def _watch_liveness(self, node: SimNode) -> None:
        """The node-level failure detector quiesced groups rely on (node/liveness.py): a
        node hears every other node that is up over an open link, and a quiesced core
        whose leader's node (or quorum of nodes) it has not heard for an election timeout
        is woken. A restarted node gets a fresh detector, as a restarted process does."""
        if not self.config.quiesce:
            return
        held = self._liveness.get(node.node_id)
        if held is None or held[0] != node.incarnation:
            liveness = PeerLiveness(
                node_id=node.node_id,
                peers=self.nodes,
                timeout_ms=self.config.election_timeout_ticks * TICK_MS,
            )
            held = self._liveness[node.node_id] = (node.incarnation, liveness)
        liveness = held[1]
        now_ms = self.now * TICK_MS
        for other in self.live_nodes():
            if other is not node and not self.network.is_blocked((other.node_id, node.node_id)):
                liveness.heard(other.node_id, now_ms)
        liveness.refresh(now_ms)
        if liveness.wake_if_stranded(node.live_core()):
            self._stats.quiesce_wakes += 1
            self._trace.emit(self.now, node_subject(node.node_id), "wake",
                             "silent=" + ",".join(str(n) for n in sorted(liveness.silent)))

    def _down_count(self) -> int:
        return sum(1 for node in self.nodes.values() if not node.alive)

    def _check_applied_conf(self, node: SimNode) -> None:
        """A snapshot taken now must record the membership of the state it captures."""
        core = node.live_core()
        image = node.machine.image
        if core.applied_index == image.applied_index:
            self.checker.on_applied_conf(node.node_id, applied_index=image.applied_index,
                                         core_conf=core.applied_conf_state,
                                         machine_conf=image.conf_state)

    def _deliver_due(self) -> None:
        for _ in range(DELIVERIES_PER_TICK_MAX):
            due = self.network.pop_due(self.now)
            if due is None:
                return
            self._deliver(due)

    def _guard_refusal(self, target: SimNode, message: Message) -> str | None:
        """Why ``target``'s PeerGuard drops ``message`` (None: stepped). A restarted node
        gets a fresh guard, as a restarted process does: leases are in memory only."""
        if not self.config.peer_guard:
            return None
        held = self._guards.get(target.node_id)
        if held is None or held[0] != target.incarnation:

            def cores(shard_id: int, node: SimNode = target) -> RaftCore | None:
                return node.live_core() if shard_id == 0 else None

            guard = PeerGuard(
                node_id=target.node_id,
                cores=cores,
                election_timeout_ms=self.config.election_timeout_ticks * TICK_MS,
                refusals=RefusalLog(),
                clock_ms=lambda: float(self.now * TICK_MS),
                nodes=frozenset(self.nodes),
            )
            held = self._guards[target.node_id] = (target.incarnation, guard)
        verdict = held[1].check(message.from_, 0, message, chunked=True)
        return None if verdict is None else f"{verdict.reason.value}: {verdict.detail}"

    def _deliver(self, due: Due) -> None:
        message = due.flight.message
        target = self.nodes.get(message.to)
        dropped = due.dropped
        if dropped is None and (target is None or not target.alive):
            dropped = DropReason.BLOCKED
            self._stats.messages_blocked += 1
        if self._trace.messages:
            reason = f" reason={dropped.value}" if dropped else ""
            self._trace.emit(self.now, "net", "drop" if dropped else "deliver",
                             _describe(due.flight) + reason)
        if dropped is None and target is not None:
            self._stats.messages_delivered += 1
            core = target.live_core()
            refusal = self._guard_refusal(target, message)
            if refusal is not None:
                self._stats.messages_refused += 1
                if self._trace.messages:
                    self._trace.emit(self.now, "net", "refuse",
                                     _describe(due.flight) + f" reason={refusal}")
                return
            if message.type in _FROM_A_LEADER and message.term >= core.term:
                self._heard_leader_tick[target.node_id] = self.now
            core.step(message)
            if message.type is MessageType.SNAP:
                # Between a snapshot's arrival and its Ready the core's configuration
                # history is replaced while the state machine is still the old one.
                self._check_applied_conf(target)
            self.settle(target)
        elif dropped is DropReason.BLOCKED:
            self._tell_sender(due.flight, unreachable=True)
        if message.type is MessageType.SNAP:
            self._tell_sender(due.flight, snapshot_ok=dropped is None)

    def _tell_sender(
        self, flight: InFlight, *, unreachable: bool = False, snapshot_ok: bool | None = None
    ) -> None:
        """Report a failed send or a finished snapshot to the sender (its same incarnation)."""
        sender = self.nodes[flight.message.from_]
        if not sender.alive or sender.incarnation != flight.sender_incarnation:
            return
        core = sender.live_core()
        if unreachable:
            core.report_unreachable(flight.message.to)
        if snapshot_ok is not None:
            core.report_snapshot(flight.message.to, ok=snapshot_ok)
        self.settle(sender)

    def _report_overflow(self) -> None:
        overflowed, self.network.overflowed = self.network.overflowed, []
        for flight in overflowed:
            if flight.message.type is MessageType.SNAP:
                self._tell_sender(flight, snapshot_ok=False)

    # -- routing outcomes --------------------------------------------------------------------

    def _route(self, node: SimNode, outcome: ReadyOutcome) -> None:
        node_id = node.node_id
        subject = node_subject(node_id)
        if outcome.persisted:
            self.checker.on_persist(node_id, outcome.persisted, prev_term=outcome.prev_term)
            if self._trace.enabled:
                first, last = outcome.persisted[0], outcome.persisted[-1]
                self._trace.emit(self.now, subject, "persist",
                                 f"first={first.index} last={last.index} term={last.term} "
                                 f"synced={int(outcome.synced)}")
        for message in outcome.messages:
            self.network.send(self.now, message, sender_incarnation=node.incarnation)
            if self._trace.messages:
                self._trace.emit(self.now, "net", "send", _describe_message(message))
        if outcome.restored is not None:
            self._stats.snapshots += 1
            self.checker.on_restore(node_id, outcome.restored)
            self._trace.emit(self.now, subject, "restore",
                             f"index={outcome.restored.applied_index}")
        for applied in outcome.applied:
            if self.checker.on_apply(node_id, applied.entry, applied.image) and (
                applied.entry.type is EntryType.CONF_CHANGE
            ):
                self._stats.membership_changes += 1
                self._stats.two_voter_configs += int(len(applied.image.conf_state.voters) == 2)
                self._trace.emit(self.now, subject, "conf",
                                 _describe_conf(applied.image.conf_state))
        if outcome.applied and self._trace.enabled:
            first_applied, last_applied = outcome.applied[0], outcome.applied[-1]
            self._trace.emit(self.now, subject, "apply",
                             f"first={first_applied.entry.index} "
                             f"last={last_applied.entry.index} "
                             f"digest={last_applied.image.digest.hex()[:12]}")
        for listener in self.listeners:
            listener(node, outcome)

    def _observe(self, node: SimNode) -> None:
        core = node.core
        if core is None:
            return
        node_id = node.node_id
        is_leader = core.role is Role.LEADER
        if core.quiesced != (node_id in self._quiesced):
            if core.quiesced:
                self._quiesced.add(node_id)
                self._stats.quiescences += 1
                self._trace.emit(self.now, node_subject(node_id), "quiesce",
                                 f"term={core.term} commit={core.commit_index}")
            else:
                self._quiesced.discard(node_id)
        if self.checker.on_role(node_id, term=core.term, is_leader=is_leader,
                                log=node.disk.volatile):
            self._stats.elections += 1
            if node_id in self._campaign_blocked:
                self._stats.fallback_elections += 1
                self.checker.on_blocked_election(
                    node_id,
                    term=core.term,
                    silent_ticks=self.now - self._heard_leader_tick[node_id],
                    fallback_ticks=core.config.campaign_fallback_timeouts
                    * self.config.election_timeout_ticks,
                )
        if is_leader:
            self._heard_leader_tick[node_id] = self.now
            self._trace.emit(self.now, node_subject(node_id), "leader",
                             f"term={core.term} last={core.last_index} commit={core.commit_index}")
        self.checker.on_commit(node_id, term=core.term, commit_index=core.commit_index,
                               log=node.disk.volatile)
        role = (core.role, core.term, core.leader_id)
        if self._last_role.get(node_id) != role:
            self._last_role[node_id] = role
            self._trace.emit(self.now, node_subject(node_id), "role",
                             f"role={core.role.value} term={core.term} leader={core.leader_id}")

    # -- crashes ---------------------------------------------------------------------------

    def crash(self, node_id: NodeId, *, at: str = "now") -> None:
        """Crash ``node_id``; ``at`` names the point inside a Ready, or "now" between two."""
        node = self.nodes[node_id]
        lost = node.crash()
        self._stats.crashes += 1
        self._stats.lost_unsynced_writes += lost
        self.checker.on_down(node_id)
        self._last_role.pop(node_id, None)
        for listener in self.crash_listeners:
            listener(node_id)
        self._trace.emit(self.now, node_subject(node_id), "crash", f"lost_writes={lost} at={at}")

    def restart(self, node_id: NodeId) -> None:
        node = self.nodes[node_id]
        restored = node.start()
        self._heard_leader_tick[node_id] = self.now  # a fresh core counts from zero
        if node_id in self._campaign_blocked:
            node.live_core().set_campaign_allowed(False)
        self._stats.restarts += 1
        if restored is not None:
            self.checker.on_restore(node_id, restored)
        storage = node.disk.volatile
        self._trace.emit(self.now, node_subject(node_id), "restart",
                         f"last={storage.last_index()} applied={node.machine.applied_index}")
        self.settle(node)


_FROM_A_LEADER = (MessageType.APP, MessageType.HEARTBEAT, MessageType.SNAP)


def _describe_message(message: Message) -> str:
    return (f"type={message.type.value} {message.from_}->{message.to} term={message.term} "
            f"index={message.index} entries={len(message.entries)} commit={message.commit} "
            f"reject={int(message.reject)}")


def _describe(flight: InFlight) -> str:
    return _describe_message(flight.message) + f" seq={flight.seq}"


def _describe_conf(conf: ConfState) -> str:
    return f"voters={_ids(conf.voters)} learners={_ids(conf.learners)}"


def _ids(nodes: frozenset[NodeId]) -> str:
    return ",".join(str(n) for n in sorted(nodes)) or "-"
