"""Named fault profiles: settings under which a given class of bug shows up fast.

Why profiles: the default mix of faults exercises everything a little; some bugs need one
thing a lot. Figure 8 of the Raft paper needs leaders that lose their office while their
first entries are half replicated; losing unsynced writes needs crashes. A profile is a
plain :class:`SimConfig`, selectable from the CLI (``--profile``) so that a replay command
names it.
"""

from __future__ import annotations

from dataclasses import replace

from hongbao.sim.config import FaultRates, NetworkRates, SimConfig, WorkloadRates


def default_profile() -> SimConfig:
    return SimConfig()


def figure8_profile() -> SimConfig:
    """Three nodes, one entry per message, leaders cut off or crashed while fresh.

    One entry per message lets an old-term entry reach a majority before the new leader's
    no-op does; cutting off fresh leaders leaves both half replicated; a long safety phase
    gives many such elections per seed.
    """
    return SimConfig(
        node_count=3,
        region_count=3,
        safety_ticks=1000,
        entries_per_message_max=1,
        network=replace(NetworkRates(), loss_probability=0.1),
        faults=FaultRates(
            fault_probability_per_tick=0.1,
            crash_weight=1,
            restart_weight=4,
            link_partition_weight=0,
            one_way_partition_weight=0,
            region_partition_weight=0,
            isolate_leader_weight=5,
            degrade_link_weight=0,
            heal_one_weight=4,
            heal_all_weight=1,
            crashed_nodes_max=2,
            fresh_leader_fault_probability=0.25,
            fresh_leader_ticks=16,
        ),
    )


def crashy_profile() -> SimConfig:
    """Frequent crashes of any node, up to a majority at once: unsynced writes get lost."""
    return SimConfig(
        faults=FaultRates(
            fault_probability_per_tick=0.1,
            crash_weight=6,
            restart_weight=6,
            crashed_nodes_max=3,
        ),
    )


def stale_profile() -> SimConfig:
    """Messages of much older terms replayed often, heavy duplication and reordering, and
    one-way partitions that come and go every few ticks (issue 6's fault mix)."""
    return SimConfig(
        network=replace(NetworkRates(), duplicate_probability=0.1, jitter_probability=0.3,
                        jitter_ticks_max=8),
        faults=FaultRates(
            fault_probability_per_tick=0.15,
            stale_replay_weight=6,
            stale_replay_messages_max=8,
            one_way_partition_weight=5,
            heal_one_weight=6,
        ),
    )


def ready_crash_profile() -> SimConfig:
    """Crashes inside the handling of a Ready, at every point (persisted but not sent, sent
    but not applied, applied but not advanced ...), of the leader half the time."""
    return SimConfig(
        faults=FaultRates(
            fault_probability_per_tick=0.1,
            crash_weight=1,
            restart_weight=6,
            mid_ready_crash_weight=8,
            crashed_nodes_max=2,
        ),
    )


def two_voters_profile() -> SimConfig:
    """Three nodes whose group shrinks to two voters and one; leaders are asked to remove
    themselves half the time, and crash or get cut off while doing it."""
    return SimConfig(
        node_count=3,
        region_count=3,
        workload=WorkloadRates(
            membership_change_probability=0.08,
            voters_min=1,
            remove_leader_probability=0.5,
        ),
        faults=FaultRates(
            fault_probability_per_tick=0.08,
            isolate_leader_weight=4,
            mid_ready_crash_weight=2,
            crashed_nodes_max=1,
        ),
    )


def tight_limits_profile() -> SimConfig:
    """``RaftConfig`` at its edges: two pending reads, one message in flight per follower,
    four entries per message, no CheckQuorum, and reads in bursts on fresh leaders."""
    return SimConfig(
        check_quorum=False,
        pending_reads_max=2,
        inflight_messages_max=1,
        entries_per_message_max=4,
        workload=WorkloadRates(read_probability=0.5, reads_per_batch_max=4),
        faults=FaultRates(fresh_leader_fault_probability=0.05),
    )


def no_prevote_profile() -> SimConfig:
    """``pre_vote=False`` on three nodes that start as two voters and a learner, with heavy
    membership churn (learners promoted, leaders asked to remove themselves) and faults
    aimed at changes in flight: a voter cut off raises its term at every timeout, while
    the node that can win may be one it still sees as a learner (issue 6, bug 4)."""
    return SimConfig(
        node_count=3,
        region_count=3,
        bootstrap_voters=2,
        pre_vote=False,
        workload=WorkloadRates(
            membership_change_probability=0.6,
            voters_min=1,
            remove_leader_probability=0.5,
            learner_lag_entries_max=64,
        ),
        faults=FaultRates(
            fault_probability_per_tick=0.02,
            crashed_nodes_max=1,
            pending_conf_fault_probability=0.2,
        ),
    )


def draining_profile() -> SimConfig:
    """Regions drained and undrained at random (their replicas may not campaign, a leader
    there hands over), frequent transfers (some aimed at a draining replica, which must
    ignore them), crashes and partitions; ends with the take-back check (draining.py)."""
    return SimConfig(
        workload=WorkloadRates(transfer_probability=0.04),
        faults=FaultRates(
            fault_probability_per_tick=0.08,
            drain_weight=6,
            isolate_leader_weight=3,
        ),
    )


PROFILES = {
    "default": default_profile,
    "figure8": figure8_profile,
    "crashy": crashy_profile,
    "stale": stale_profile,
    "ready-crash": ready_crash_profile,
    "two-voters": two_voters_profile,
    "tight-limits": tight_limits_profile,
    "no-prevote": no_prevote_profile,
    "draining": draining_profile,
}


def profile_config(name: str) -> SimConfig:
    if name not in PROFILES:
        raise ValueError(f"unknown profile {name!r}; known: {sorted(PROFILES)}")
    return PROFILES[name]()
