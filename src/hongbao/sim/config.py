"""Every knob of one simulated run, and the named bounds of the simulator.

Why one frozen record: a failing run is replayed from its seed plus the options that
differ from the defaults, so every setting that changes a run lives here and nowhere
else. Probabilities are per tick (faults, workload) or per message (network).
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields

from hongbao._invariant import invariant
from hongbao.raft.config import DeliberateBugs

# Bounds on every queue and loop of the simulator (TigerBeetle: a limit on everything).
NETWORK_IN_FLIGHT_MESSAGES_MAX = 20_000  # messages beyond this are dropped, as by a full NIC
DELIVERIES_PER_TICK_MAX = 50_000  # zero-delay messages can chain; a tick must still end
READY_ROUNDS_PER_STEP_MAX = 64  # Ready/advance rounds after one input to one core
UNSYNCED_WRITES_MAX = 4_096  # the page cache writes back (syncs) beyond this
PENDING_PROPOSALS_PER_NODE_MAX = 1_024  # a client gives up on the oldest beyond this
PENDING_READS_PER_NODE_MAX = 256
TRACE_LINES_KEPT_MAX = 2_000_000  # lines beyond this are hashed but not kept
# Stale replays: the network keeps the first STALE_EARLY_KEPT_MAX sampled messages for ever
# (the oldest terms of the run) and a ring of the STALE_RECENT_KEPT_MAX most recent samples.
STALE_SAMPLE_EVERY = 8  # every 8th message sent is a candidate for a later replay
STALE_EARLY_KEPT_MAX = 256
STALE_RECENT_KEPT_MAX = 256
NODES_MAX = 64
REGIONS_MAX = 16

BUG_NAMES: tuple[str, ...] = tuple(f.name for f in fields(DeliberateBugs))


@dataclass(frozen=True, slots=True)
class NetworkRates:
    """The network's background behaviour, per message and per link."""

    same_region_delay_ticks: int = 0
    cross_region_delay_ticks_max: int = 3  # each pair of regions draws a base in [1, max]
    jitter_probability: float = 0.1  # extra delay drawn in [1, jitter_ticks_max]: reorders
    jitter_ticks_max: int = 4
    loss_probability: float = 0.01
    duplicate_probability: float = 0.01


@dataclass(frozen=True, slots=True)
class FaultRates:
    """How often the fault injector acts during the safety phase."""

    fault_probability_per_tick: float = 0.04
    crashed_nodes_max: int = 2  # at most this many nodes are down at once
    # A leader may crash or be cut off within its first ticks, while its first entries are
    # half replicated: what Figure 8 of the Raft paper needs (raft-pitfalls 14).
    fresh_leader_fault_probability: float = 0.02  # per tick, while the leader is fresh
    fresh_leader_ticks: int = 12
    # A leader may crash or be cut off while a membership change it proposed is in flight:
    # where two-voter groups and leaders removing themselves go wrong (issue 6).
    pending_conf_fault_probability: float = 0.0  # per tick, while a change is uncommitted
    degraded_loss_probability: float = 0.5  # loss on a degraded link
    degraded_delay_ticks: int = 8  # extra delay on a clogged link
    # Relative weights of the fault actions (see faults.py for what each one does).
    crash_weight: int = 3
    restart_weight: int = 3
    link_partition_weight: int = 2
    one_way_partition_weight: int = 2
    region_partition_weight: int = 2
    isolate_leader_weight: int = 2
    degrade_link_weight: int = 2
    heal_one_weight: int = 3
    heal_all_weight: int = 1
    # Replay a few messages sent long ago (older terms, old leaders, old snapshots).
    stale_replay_weight: int = 1
    stale_replay_messages_max: int = 4
    # Crash a node at a point inside its next Ready's handling (node.CrashPoint).
    mid_ready_crash_weight: int = 1
    # Drain or undrain a region: its replicas may not campaign (RaftCore.
    # set_campaign_allowed), and a leader there is moved out (see draining.py). When it is
    # positive the run also ends with a take-back check after the liveness phase.
    drain_weight: int = 0


@dataclass(frozen=True, slots=True)
class WorkloadRates:
    """What the clients and the operator do, per tick."""

    propose_probability: float = 0.4
    proposals_per_batch_max: int = 3
    read_probability: float = 0.15
    reads_per_batch_max: int = 1  # reads started together (a burst on a fresh leader)
    transfer_probability: float = 0.01
    membership_change_probability: float = 0.01
    voters_min: int = 3  # never remove a voter below this
    remove_leader_probability: float = 0.0  # a removal aims at the leader itself
    learner_lag_entries_max: int = 8  # promote a learner only when it is this close


@dataclass(frozen=True, slots=True)
class SimConfig:
    node_count: int = 5
    region_count: int = 3
    bootstrap_voters: int = 0  # the first N nodes start as voters, the rest as learners (0: all)
    safety_ticks: int = 300  # ticks with faults before everything heals
    liveness_ticks_max: int = 400  # after healing, recovery must finish within this
    election_timeout_ticks: int = 10
    heartbeat_interval_ticks: int = 1
    pre_vote: bool = True
    check_quorum: bool = True
    # Every delivered message passes the nodes' PeerGuard first, as on a real node: the
    # guard's lease rules drop messages, and only the pair of them shows whether a cluster
    # still recovers (a follower stranded at a higher term was found by a chaos run).
    peer_guard: bool = True
    # Idle groups quiesce (raft/quiesce.py) and a node-level failure detector wakes them
    # (node/liveness.py: here a node hears another while it is up and the link is open).
    quiesce: bool = True
    snapshot_interval_entries: int = 24  # a node snapshots after this many applied entries
    compaction_lag_entries_max: int = 4  # entries kept behind a snapshot (drawn per snapshot)
    entries_per_message_max: int = 256  # the core's batching bound; small values split batches
    # Non-default core limits (RaftConfig): small ones reach the code paths at their edges.
    inflight_messages_max: int = 64
    pending_reads_max: int = 4096
    network: NetworkRates = field(default_factory=NetworkRates)
    faults: FaultRates = field(default_factory=FaultRates)
    workload: WorkloadRates = field(default_factory=WorkloadRates)
    bugs: DeliberateBugs = field(default_factory=DeliberateBugs)

    def validate(self) -> None:
        """Reject settings that cannot make a meaningful run."""
        invariant(1 <= self.node_count <= NODES_MAX, f"node_count must be in [1, {NODES_MAX}]")
        invariant(
            1 <= self.region_count <= min(REGIONS_MAX, self.node_count),
            "region_count must be in [1, min(16, node_count)]",
        )
        invariant(0 <= self.bootstrap_voters <= self.node_count,
                  "bootstrap_voters must be in [0, node_count]")
        invariant(self.safety_ticks >= 0, "safety_ticks must be >= 0")
        invariant(self.liveness_ticks_max > 0, "liveness_ticks_max must be positive")
        invariant(self.snapshot_interval_entries > 0, "snapshot_interval_entries must be > 0")
        invariant(self.faults.crashed_nodes_max >= 0, "crashed_nodes_max must be >= 0")
        invariant(self.workload.voters_min >= 1, "voters_min must be >= 1")
        invariant(self.workload.reads_per_batch_max >= 1, "reads_per_batch_max must be >= 1")
        invariant(self.faults.stale_replay_messages_max >= 1, "stale_replay_messages_max >= 1")

    @property
    def bug_names(self) -> tuple[str, ...]:
        """The deliberate bugs switched on, in declaration order."""
        return tuple(name for name in BUG_NAMES if getattr(self.bugs, name))


def bugs_from_names(names: tuple[str, ...] | list[str]) -> DeliberateBugs:
    """``DeliberateBugs`` with exactly the named switches on; unknown names are refused."""
    unknown = sorted(set(names) - set(BUG_NAMES))
    if unknown:
        raise ValueError(f"unknown bug(s) {unknown}; known: {list(BUG_NAMES)}")
    return DeliberateBugs(**{name: True for name in names})
