"""Named fault profiles: settings under which a given class of bug shows up fast.

Why profiles: the default mix of faults exercises everything a little; some bugs need one
thing a lot. Figure 8 of the Raft paper needs leaders that lose their office while their
first entries are half replicated; losing unsynced writes needs crashes. A profile is a
plain :class:`SimConfig`, selectable from the CLI (``--profile``) so that a replay command
names it.
"""

from __future__ import annotations

from dataclasses import replace

from hongbao.sim.config import FaultRates, NetworkRates, SimConfig


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


PROFILES = {
    "default": default_profile,
    "figure8": figure8_profile,
    "crashy": crashy_profile,
}


def profile_config(name: str) -> SimConfig:
    if name not in PROFILES:
        raise ValueError(f"unknown profile {name!r}; known: {sorted(PROFILES)}")
    return PROFILES[name]()
