"""The node runtime: drives every shard replica of this node through one Ready loop.

Rules of this module: all Raft cores, the LMDB environment and every waiter live on one
asyncio loop, and only :meth:`NodeRuntime.cycle` touches the cores. A cycle does, in
this order (etcd's Ready contract, for all shards at once):

1. step the messages that arrived, tick, and pack each shard's queued commands into one
   log entry per shard (a leader's batching);
2. collect every shard's Ready, persist them all and then apply every shard's committed
   entries (each shard's applied index with them) in ONE LMDB write transaction, synced
   once if any Ready needs it (group commit; one commit, so one fdatasync, per cycle);
3. only then send the messages (they were only queued; nothing left before the commit);
4. answer the waiting clients;
5. advance the cores, snapshot and compact when due.

While a cycle runs, new requests and messages queue up; the next cycle takes them all,
so load turns into bigger batches rather than more fsyncs.

Observability costs the loop little: counters are plain ints on the replicas, read by
:mod:`hongbao.metrics.node` at scrape time; the cycle and durable-write timings go to
the ``observe_*`` hooks (no-ops until the node server sets them); leadership changes,
snapshot sends and installs, transfers received and slow fsyncs are logged as events.
"""

from __future__ import annotations

import asyncio
import logging
import os
import random
import time
from collections import deque
from collections.abc import Callable
from typing import Any, TypeVar

from hongbao._invariant import invariant
from hongbao.config.topology import META_GROUP_ID, Topology
from hongbao.ledger.commands import Command
from hongbao.ledger.limits import Limits
from hongbao.ledger.results import Result
from hongbao.ledger.store import LedgerStore
from hongbao.logs import event
from hongbao.meta.machine import MetaMachine, MetaResult
from hongbao.meta.state import ClusterState, SetRegion
from hongbao.node import bugs, snapshots, speculate
from hongbao.node.cluster_guard import cluster_id_of
from hongbao.node.errors import ErrorReason, make_error
from hongbao.node.liveness import PeerLiveness
from hongbao.node.peer_guard import RefusalLog, step_checked
from hongbao.node.replica import InflightEntry, PendingCommand, PendingRead, ShardReplica
from hongbao.node.runtime_answers import LeaderAnswers, group_name
from hongbao.node.runtime_limits import RuntimeLimits as RuntimeLimits  # re-exported
from hongbao.node.state_machine import machine_for
from hongbao.node.storage import LmdbLogStorage, NodeEnv, WriteBatch
from hongbao.raft.config import RaftConfig
from hongbao.raft.core import RaftCore
from hongbao.raft.errors import ProposalDropped
from hongbao.raft.types import ConfState, EntryType, Message, MessageType, NodeId, Ready, Role

log = logging.getLogger(__name__)

T = TypeVar("T")
# A keepalive every this many heartbeat intervals (a third of the default election
# timeout, the liveness timeout): several chances to arrive before a peer counts as silent.
KEEPALIVE_HEARTBEATS = 2
SendFunction = Callable[[int, int, Message], None]  # (to node, shard, message)


class NodeRuntime(LeaderAnswers):
    def __init__(
        self,
        *,
        topology: Topology,
        node_id: int,
        env: NodeEnv,
        limits: RuntimeLimits | None = None,
        ledger_limits: Limits | None = None,
        clock_ms: Callable[[], int] | None = None,
        cluster_id: str | None = None,
        node_bugs: bugs.NodeBugs | None = None,
    ) -> None:
        self.topology = topology
        self.bugs = node_bugs or bugs.NodeBugs()  # test-only switches: all off unless passed
        self.node_id = node_id
        self.env = env
        self.limits = limits or topology.runtime  # the file's [runtime]
        self.ledger_limits = ledger_limits
        self.cluster_id = cluster_id if cluster_id is not None else cluster_id_of(topology)
        self.clock_ms = clock_ms or (lambda: int(time.time() * 1000))
        self.tick_s = topology.timing.tick_ms / 1000
        timing = topology.timing
        # A keepalive every KEEPALIVE_HEARTBEATS heartbeat intervals; a peer silent for an
        # election timeout wakes the quiesced groups that need it (hongbao.node.liveness).
        self.liveness = PeerLiveness(
            node_id=node_id,
            peers=[spec.node_id for spec in topology.nodes],
            timeout_ms=timing.election_timeout_ticks * timing.tick_ms,
        )
        self.idle = False  # the last cycle found every group quiesced and nothing to do
        self._idle_wakeup_s = timing.election_timeout_ticks * timing.tick_ms / 1000 / 3
        self.keepalive_interval_s: float | None = (
            KEEPALIVE_HEARTBEATS * timing.heartbeat_interval_ticks * timing.tick_ms / 1000
            if self.limits.quiesce_groups
            else None
        )
        self.replicas: dict[int, ShardReplica] = {}
        self.send: SendFunction = lambda to, shard, message: None
        self._inbound: deque[tuple[int, Message]] = deque()
        self._wakeup = asyncio.Event()
        self._stopping = False
        self._read_counter = 0
        # ReadIndex contexts must never repeat: a leader merges a read into a pending one
        # with the same context, and a restarted follower whose counter began again at 0
        # would get the older read's index (a stale read). The incarnation tells them apart.
        self._incarnation = os.urandom(8).hex()
        self._rng = random.Random(int.from_bytes(os.urandom(8), "big"))
        self.stats = {"cycles": 0, "entries_applied": 0, "commands_applied": 0, "dropped": 0}
        self.refusals = RefusalLog()  # peer input refused, by reason and sender (peer_guard)
        # Timings for /metrics, in seconds (set by the node server; no-ops otherwise).
        self.observe_cycle_s: Callable[[float], None] = _ignore
        self.observe_fsync_s: Callable[[float], None] = _ignore
        env.on_durable_write = self._durable_write_done
        # Every Raft group hosted here (ledger shards, and the meta group if this node has
        # a replica of it) is in ``groups`` and driven alike; ``replicas`` holds the ledger
        # shards only, so code that routes client work or polls outboxes never sees the
        # meta group.
        self.groups: dict[int, ShardReplica] = {}
        for group_id in topology.groups_on(node_id):
            self.groups[group_id] = self._open_replica(group_id)
        self.replicas = {g: r for g, r in self.groups.items() if g != META_GROUP_ID}
        self.meta: ShardReplica | None = self.groups.get(META_GROUP_ID)
        self.campaign_allowed = True
        state = self.meta_state()
        if state is not None and not state.may_lead(topology.region_of(node_id)):
            self.set_campaign_allowed(False)  # restarted while draining: stay out of office

    # -- start-up ------------------------------------------------------------------------

    def _open_replica(self, shard_id: int) -> ShardReplica:
        group_machine = machine_for(
            self.topology,
            shard_id,
            cluster_id=self.cluster_id,
            limits=self.ledger_limits,
            node_bugs=self.bugs,
        )
        voters = frozenset(NodeId(n) for n in self.topology.replicas_of(shard_id))
        log_storage = LmdbLogStorage(self.env, shard_id, conf_state=ConfState(voters=voters))
        with self.env.write_batch(sync=True) as batch:
            store = batch.ledger_store(shard_id)
            if not group_machine.is_initialised(store):
                group_machine.init(store)
        with self.env.ledger_reader(shard_id) as reader:
            applied = group_machine.applied_index(reader)
        timing = self.topology.timing
        config = RaftConfig(
            node_id=NodeId(self.node_id),
            election_timeout_ticks=timing.election_timeout_ticks,
            heartbeat_interval_ticks=timing.heartbeat_interval_ticks,
            applied_index=applied,
            committed_bytes_per_ready_max=self.limits.committed_bytes_per_cycle_max,
            quiesce=bool(self.limits.quiesce_groups),
        )
        seed = self._rng_seed(shard_id)
        core = RaftCore(config, log_storage, random.Random(seed))
        replica = ShardReplica(shard_id=shard_id, core=core, log=log_storage, machine=group_machine)
        replica.snapshot_index = log_storage.snapshot().meta.index
        return replica

    def _rng_seed(self, shard_id: int) -> int:
        return int.from_bytes(os.urandom(8), "big") ^ shard_id

    # -- the loop ------------------------------------------------------------------------

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        next_tick = loop.time() + self.tick_s
        self._campaign_home_shards()
        while not self._stopping:
            if not self._wakeup.is_set():
                # A timer handle, not wait_for: that costs a task per cycle (idle cost).
                # Every group quiesced: their timers stand still, so wake only to check
                # liveness (or for work), not every tick.
                wake_at = next_tick
                if self.idle:
                    wake_at = max(next_tick, loop.time() + self._idle_wakeup_s)
                timer = loop.call_at(wake_at, self._wakeup.set)
                await self._wakeup.wait()
                timer.cancel()
            self._wakeup.clear()
            ticks = 0
            now = loop.time()
            while now >= next_tick and ticks < self.limits.ticks_per_cycle_max:
                ticks += 1
                next_tick += self.tick_s
            if now >= next_tick:
                next_tick = now + self.tick_s  # fell behind: skip ticks rather than burst
            self.cycle(ticks)
            await asyncio.sleep(0)  # let the gRPC handlers queue more work

    def stop(self) -> None:
        self._stopping = True
        self._wakeup.set()
        error = make_error(ErrorReason.UNAVAILABLE, "the node is shutting down")
        for replica in self.groups.values():
            replica.fail_pending(error)
            replica.fail_reads(error)
            for entry in replica.inflight.values():
                for future in entry.futures:
                    if not future.done():
                        future.set_exception(
                            make_error(ErrorReason.OUTCOME_UNKNOWN, "the node shut down")
                        )
            replica.inflight.clear()

    def _campaign_home_shards(self) -> None:
        """Groups whose home is this node start an election at once (active-active).

        Only at a group's birth (term 0), and not while this node's region may not lead
        (draining or drained): a restarted node must not take its leaderships straight
        back before it has caught up.
        """
        if not self.campaign_allowed:
            return
        for shard_id, replica in self.groups.items():
            if replica.core.term > 0:
                # A returning replica earns its leadership back (TiKV #15874): it follows
                # whoever leads now, and `region start` / `cluster balance` move leaders
                # home once it has caught up. Only a group's first election starts here.
                continue
            if self.topology.home_leader_of(shard_id) == self.node_id:
                replica.core.campaign()

    def set_campaign_allowed(self, allowed: bool) -> None:
        """Allow or forbid every replica of this node to seek leadership (region state)."""
        self.campaign_allowed = allowed
        for replica in self.groups.values():
            replica.core.set_campaign_allowed(allowed)

    def wake(self) -> None:
        self._wakeup.set()

    def deliver(self, shard_id: int, message: Message) -> None:
        if shard_id not in self.groups or len(self._inbound) >= self.limits.inbound_messages_max:
            self.stats["dropped"] += 1
            return
        self._inbound.append((shard_id, message))
        self._wakeup.set()

    def heard(self, peer_id: int) -> None:
        """A batch (a keepalive included) arrived from ``peer_id``: it is live."""
        self.liveness.heard(peer_id, time.monotonic() * 1000)

    def unreachable(self, peer_id: int) -> None:
        for replica in self.groups.values():
            replica.core.report_unreachable(NodeId(peer_id))

    def snapshot_done(self, shard_id: int, peer_id: int, *, ok: bool) -> None:
        replica = self.groups.get(shard_id)
        if replica is not None:
            replica.core.report_snapshot(NodeId(peer_id), ok=ok)
            self._wakeup.set()

    def cycle(self, ticks: int) -> None:
        """One pass of the Ready loop over every shard (see the module docstring), timed."""
        started_s = time.perf_counter()
        try:
            self._cycle(ticks)
        finally:
            self.observe_cycle_s(time.perf_counter() - started_s)

    def _cycle(self, ticks: int) -> None:
        self.stats["cycles"] += 1
        stepped = self._step_inbound()
        for _ in range(ticks):
            for replica in self.groups.values():
                replica.core.tick()
        if ticks:
            self.liveness.refresh(time.monotonic() * 1000)
            self.liveness.wake_all_stranded(replica.core for replica in self.groups.values())
        # An idle group (quiesced, nothing queued: raft/quiesce.py) with no client work and
        # no message stepped this cycle has no Ready: an idle node's cycle passes over it.
        active = [
            replica
            for replica in self.groups.values()
            if not replica.core.idle
            or replica.pending
            or replica.reads_unsent
            or replica.shard_id in stepped
        ]
        self.idle = not active and not self._inbound
        for replica in active:
            self._propose_pending(replica)
            self._start_reads(replica)
        readies = [(r, r.core.ready()) for r in active if r.core.has_ready()]
        if not readies:
            return
        applied = self._persist_and_apply(readies)
        for replica, ready in readies:
            if ready.committed_entries:
                speculate.applied(replica, ready.committed_entries[-1].index)
                if replica.pending:
                    self._wakeup.set()  # it may have waited for these (speculate.py)
            self._send_messages(replica, ready)
        # Answer clients only once the applied state is committed to LMDB.
        for replica, index, term, results in applied:
            replica.resolve_applied(index, term, results)
        for replica, ready in readies:
            replica.core.advance(ready)
            self._after_advance(replica, ready)
            self._log_leader_change(replica)
        self._maybe_snapshot()

    def _step_inbound(self) -> set[int]:
        """Step the messages that arrived (up to a bound); returns the groups stepped."""
        stepped: set[int] = set()
        for _ in range(min(len(self._inbound), self.limits.inbound_per_cycle_max)):
            shard_id, message = self._inbound.popleft()
            stepped.add(shard_id)
            if message.type is MessageType.TIMEOUT_NOW:
                event(log, "transfer_received", f"shard {shard_id}: node {message.from_} hands"
                      " its leadership here", shard=shard_id, term=message.term,
                      from_node=int(message.from_))  # fmt: skip
            step_checked(self.groups[shard_id].core, shard_id, message, self.refusals)
        if self._inbound:
            self._wakeup.set()  # more next cycle
        return stepped

    # -- proposals -----------------------------------------------------------------------

    def submit(self, shard_id: int, command: Command) -> asyncio.Future[Result]:
        """Queue ``command`` on the leader of ``shard_id``; the future gets its result.

        Raises NOT_LEADER (with a hint), UNAVAILABLE (a leader cut off from its quorum) or
        OVERLOADED at once when it cannot be queued.
        """
        future: asyncio.Future[Result] = self._submit(self._replica(shard_id), command)
        return future

    def submit_meta(self, command: SetRegion) -> asyncio.Future[MetaResult]:
        """Queue ``command`` on this node's meta replica, which must lead the meta group."""
        if self.meta is None:
            raise make_error(
                ErrorReason.NOT_LEADER,
                f"node {self.node_id} has no replica of the meta group",
                leader_hint=self._hint(META_GROUP_ID, None),
                shard_id=META_GROUP_ID,
            )
        future: asyncio.Future[MetaResult] = self._submit(self.meta, command)
        return future

    def _submit(self, replica: ShardReplica, command: object) -> asyncio.Future[Any]:
        shard_id = replica.shard_id
        if self._stopping:
            raise make_error(ErrorReason.UNAVAILABLE, "the node is shutting down")
        self._check_leads(replica)
        if len(replica.pending) >= self.limits.pending_commands_per_shard_max:
            raise make_error(ErrorReason.OVERLOADED, "too many queued commands", shard_id=shard_id)
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        # A client that gave up (its deadline passed) no longer awaits the future: an
        # exception set on it later (a new leader took the slot) must not be logged as
        # "Future exception was never retrieved", an ERROR nobody has anything to do about.
        future.add_done_callback(_consume_exception)
        replica.pending.append(PendingCommand(command, future))
        self._wakeup.set()
        return future

    def _check_leads(self, replica: ShardReplica) -> None:
        """NOT_LEADER unless this replica leads; UNAVAILABLE if it leads cut off a quorum.

        A leader that has not heard from a quorum within an election timeout can commit
        nothing until it hears again or CheckQuorum deposes it: answer at once so the
        caller fails over, instead of hanging to its deadline.
        """
        if not replica.is_leader:
            raise self.not_leader(replica.shard_id)
        if not replica.core.quorum_active():
            raise make_error(
                ErrorReason.UNAVAILABLE,
                f"node {self.node_id} leads {group_name(replica.shard_id)} but is cut off"
                " from a quorum",
                shard_id=replica.shard_id,
            )

    def _propose_pending(self, replica: ShardReplica) -> None:
        if not replica.pending:
            return
        if not replica.is_leader:
            replica.fail_pending(self.not_leader(replica.shard_id))
            return
        if len(replica.inflight) >= self.limits.inflight_entries_per_shard_max:
            return  # backpressure: wait for applies
        if not speculate.ready_to_propose(replica):
            return  # a new term: its earlier entries apply first (the cycle wakes again)
        per_entry_max = min(
            self.limits.commands_per_entry_max, replica.machine.commands_per_entry_max
        )
        taken: list[PendingCommand] = []
        while replica.pending and len(taken) < per_entry_max:
            item = replica.pending.popleft()
            if not item.future.done():  # the client may have given up already
                taken.append(item)
        if not taken:
            return
        commands = [c.command for c in taken]
        count, data, results, view = speculate.entry_for(
            self.env, replica, self.clock_ms(), commands
        )
        replica.pending.extendleft(reversed(taken[count:]))  # too big for one entry: next
        taken = taken[:count]
        try:
            index, term = replica.core.propose(data)
        except ProposalDropped as dropped:
            error = self.dropped_error(replica, dropped)
            for item in taken:
                if not item.future.done():
                    item.future.set_exception(error)
            return
        replica.proposals_total += 1
        replaced = replica.inflight.pop(index, None)
        if replaced is not None:
            # Our entry of an earlier term at this index was truncated away and nobody will
            # ever apply it here. Say "maybe" (pitfall 16): a retry finds out.
            error = make_error(
                ErrorReason.OUTCOME_UNKNOWN,
                "leadership changed before the command committed; retry with the same request id",
                shard_id=replica.shard_id,
            )
            for future in replaced.futures:
                if not future.done():
                    future.set_exception(error)
        speculate.speculated(replica, index, view)
        replica.inflight[index] = InflightEntry(term, [item.future for item in taken], results)
        if self.bugs.ack_before_commit and results is not None:  # BUG SWITCH
            bugs.answer_early([(item.command, item.future) for item in taken], results)
        if replica.pending:
            self._wakeup.set()

    # -- reads ---------------------------------------------------------------------------

    def read_barrier(self, shard_id: int) -> asyncio.Future[int]:
        """Resolves once this leader may serve a linearizable read of ``shard_id``.

        ``shard_id`` may be the meta group (``META_GROUP_ID``): a linearizable ClusterState.
        """
        replica = self.groups.get(shard_id) or self._replica(shard_id)
        if self._stopping:
            raise make_error(ErrorReason.UNAVAILABLE, "the node is shutting down")
        self._check_leads(replica)
        pending_count = len(replica.reads_unsent) + len(replica.reads_confirmed)
        if pending_count >= self.limits.pending_reads_per_shard_max:
            raise make_error(ErrorReason.OVERLOADED, "too many pending reads", shard_id=shard_id)
        future: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        future.add_done_callback(_consume_exception)  # see _submit
        replica.reads_unsent.append(PendingRead(future))
        self._wakeup.set()
        return future

    def _start_reads(self, replica: ShardReplica) -> None:
        """All reads that arrived since the last cycle share one ReadIndex round."""
        if not replica.reads_unsent:
            return
        reads, replica.reads_unsent = replica.reads_unsent, []
        self._read_counter += 1
        context = f"r{self.node_id}-{self._incarnation}-{self._read_counter}".encode()
        try:
            replica.core.read_index(context)
        except ProposalDropped as dropped:
            error = self.dropped_error(replica, dropped)
            for read in reads:
                if not read.future.done():
                    read.future.set_exception(error)
            return
        replica.reads_by_context[context] = reads

    def query(self, shard_id: int, function: Callable[[LedgerStore], T]) -> T:
        """Run ``function`` on a consistent read-only view of the shard's ledger."""
        self._replica(shard_id)
        with self.env.ledger_reader(shard_id) as store:
            return function(store)

    def meta_state(self) -> ClusterState | None:
        """The cluster state as this node's meta replica has applied it (None: no replica)."""
        if self.meta is None:
            return None
        meta_machine = self.meta.machine
        invariant(isinstance(meta_machine, MetaMachine), "the meta group runs a MetaMachine")
        assert isinstance(meta_machine, MetaMachine)
        with self.env.ledger_reader(META_GROUP_ID) as store:
            return meta_machine.state(store)

    # -- persist, send, apply ------------------------------------------------------------

    def _persist_and_apply(
        self, readies: list[tuple[ShardReplica, Ready]]
    ) -> list[tuple[ShardReplica, int, int, tuple[object, ...] | None]]:
        """Persist every Ready, then apply every committed entry: ONE write transaction.

        One transaction, not two: with ``Durability.FSYNC`` every LMDB commit pays an
        fdatasync (a synced batch a second one), and a cycle that both persists (a
        follower's new entries, a leader's commit index) and applies is the common case.
        Nothing is visible or sent before the commit: messages are only queued after it,
        clients answered after it; a crash loses the whole batch or nothing.
        """
        if not any(
            r.snapshot or r.entries or r.hard_state or r.committed_entries for _, r in readies
        ):
            return []  # heartbeats and their answers change nothing durable: no transaction
        must_sync = any(ready.must_sync for _, ready in readies)
        with self.env.write_batch(sync=must_sync) as batch:
            for replica, ready in readies:
                if ready.snapshot is not None:
                    snapshots.install(batch, replica, ready)
                if ready.entries:
                    replica.log.append(list(ready.entries), txn=batch)
                if ready.hard_state is not None:
                    replica.log.set_hard_state(ready.hard_state, txn=batch)
            return self._apply(batch, readies)

    def _send_messages(self, replica: ShardReplica, ready: Ready) -> None:
        for message in ready.messages:
            if message.type is MessageType.SNAP and message.snapshot is not None:
                snapshots.log_send(replica, message)
            self.send(int(message.to), replica.shard_id, message)

    def _apply(
        self, batch: WriteBatch, readies: list[tuple[ShardReplica, Ready]]
    ) -> list[tuple[ShardReplica, int, int, tuple[object, ...] | None]]:
        """Apply the committed entries inside ``batch``; each group's applied index with them."""
        outcomes: list[tuple[ShardReplica, int, int, tuple[object, ...] | None]] = []
        for replica, ready in readies:
            if not ready.committed_entries:
                continue
            store = batch.ledger_store(replica.shard_id)
            for entry in ready.committed_entries:
                if entry.type is EntryType.CONF_CHANGE:
                    replica.machine.set_applied_index(store, entry.index)
                    continue
                results = replica.machine.apply_entry(store, entry.index, entry.data)
                outcomes.append((replica, entry.index, entry.term, results))
                replica.entries_applied_total += 1
                self.stats["entries_applied"] += 1
                self.stats["commands_applied"] += 0 if results is None else len(results)
        return outcomes

    def _after_advance(self, replica: ShardReplica, ready: Ready) -> None:
        for read_state in ready.read_states:
            reads = replica.reads_by_context.pop(read_state.context, [])
            for read in reads:
                read.read_index = read_state.index
            replica.reads_confirmed.extend(reads)
        if replica.reads_confirmed:
            replica.release_reads(replica.core.applied_index)
        stepped_down = ready.soft_state is not None and ready.soft_state.role is not Role.LEADER
        if stepped_down or ready.lost_leadership:
            # lost_leadership also covers losing and regaining office within one cycle:
            # the core forgot the pending ReadIndex rounds of the old term either way.
            error = self.not_leader(replica.shard_id)
            replica.fail_pending(error)
            replica.fail_reads(error)

    def _log_leader_change(self, replica: ShardReplica) -> None:
        """Once per new leader (or new term of one) as this replica sees it, at info."""
        seen = (int(replica.core.leader_id), int(replica.core.term))
        if seen[0] == 0 or seen == replica.logged_leader:
            return  # no leader known (an election runs): the next one is logged
        replica.logged_leader = seen
        message = f"{group_name(replica.shard_id)}: node {seen[0]} leads in term {seen[1]}"
        event(log, "leader_changed", message, shard=replica.shard_id, term=seen[1],
              leader=seen[0])  # fmt: skip

    def _durable_write_done(self, seconds: float) -> None:
        """One synced LMDB batch finished: time it, and name a slow disk at warning."""
        self.observe_fsync_s(seconds)
        fsync_ms = seconds * 1000
        threshold_ms = self.limits.slow_fsync_ms
        if fsync_ms > threshold_ms:
            message = f"slow fsync: {fsync_ms:.1f} ms (over {threshold_ms} ms)"
            event(log, "slow_fsync", message, level=logging.WARNING,
                  fsync_ms=round(fsync_ms, 1), slow_fsync_ms=threshold_ms)  # fmt: skip

    def _maybe_snapshot(self) -> None:
        for replica in self.groups.values():
            applied = replica.core.applied_index
            if applied - replica.snapshot_index < self.limits.snapshot_interval_entries:
                continue
            self.snapshot_now(replica)

    def snapshot_now(self, replica: ShardReplica) -> None:
        """Snapshot the group at its applied index and compact the log behind it."""
        snapshots.snapshot_now(self.env, replica, self.limits.trailing_entries)


def _ignore(_: float) -> None:
    """The default timing hook: a runtime without metrics records nothing."""


def _consume_exception(future: asyncio.Future[Any]) -> None:
    if not future.cancelled():
        future.exception()
