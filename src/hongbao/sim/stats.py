"""Counters of one simulated run, and their sum over many seeds.

Why counters at all: a simulator that never crashed a node or never sent a snapshot
proves nothing, so every fault and every feature it exercises is counted, and the
tests (and ``hongbao sim --json``) require each counter to be positive over a batch.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields


@dataclass(slots=True)
class RunStats:
    """Mutable while a run goes on; each field counts events of one kind."""

    # What Raft did.
    elections: int = 0  # distinct (term, leader) pairs observed
    commits: int = 0  # proposals acknowledged to their client as committed
    reads: int = 0  # ReadIndex reads answered
    transfers: int = 0  # leadership transfers that ended with the target leading
    transfers_requested: int = 0
    membership_changes: int = 0  # configuration changes applied (first time, globally)
    two_voter_configs: int = 0  # of those, configurations of exactly two voters
    leader_self_removals: int = 0  # a leader proposed its own removal (and it was accepted)
    snapshots: int = 0  # snapshots installed by a node from a SNAP message
    snapshots_created: int = 0  # snapshots + compactions done by the runtime
    proposals: int = 0  # proposals appended by a leader
    proposals_dropped: int = 0  # refused (not leader, transfer in progress, ...)
    # What the simulator did to it.
    crashes: int = 0
    restarts: int = 0
    lost_unsynced_writes: int = 0  # writes lost by crashes (non-zero only with bugs or commits)
    link_partitions: int = 0
    one_way_partitions: int = 0
    region_partitions: int = 0
    leader_isolations: int = 0
    degraded_links: int = 0
    heals: int = 0
    messages_sent: int = 0
    messages_delivered: int = 0
    messages_lost: int = 0  # random loss
    messages_blocked: int = 0  # dropped by a partition or a crashed destination
    messages_refused: int = 0  # dropped by the receiver's PeerGuard (config.peer_guard)
    quiescences: int = 0  # a core went quiet (config.quiesce)
    quiesce_wakes: int = 0  # a quiesced core woken because a node it needs fell silent
    messages_duplicated: int = 0
    messages_reordered: int = 0  # delivered before a message sent earlier on the same link
    messages_delayed: int = 0  # given extra (jitter or clog) delay
    messages_replayed: int = 0  # old messages sent again much later (stale terms)
    mid_ready_crashes: int = 0  # crashes inside the handling of a Ready (node.CrashPoint)
    drains: int = 0  # a region marked draining: its replicas may not campaign
    undrains: int = 0
    drain_transfers: int = 0  # a leader in a draining region asked to hand over
    fallback_elections: int = 0  # a replica that may not campaign won anyway (liveness)
    takeback_checks: int = 0  # leader crashes after which placement was checked
    # Liveness.
    ticks: int = 0
    ticks_to_recover: int = 0


COUNTER_NAMES: tuple[str, ...] = tuple(f.name for f in fields(RunStats))


@dataclass(slots=True)
class BatchStats:
    """The sum of many runs' counters; ``ticks_to_recover`` keeps the maximum instead."""

    seeds: int = 0
    violations: int = 0
    max_ticks_to_recover: int = 0
    totals: dict[str, int] = field(default_factory=lambda: dict.fromkeys(COUNTER_NAMES, 0))

    def add(self, stats: RunStats, *, violated: bool) -> None:
        self.seeds += 1
        self.violations += int(violated)
        for name in COUNTER_NAMES:
            self.totals[name] += getattr(stats, name)
        self.max_ticks_to_recover = max(self.max_ticks_to_recover, stats.ticks_to_recover)
