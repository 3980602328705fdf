"""The node runtime's bounds and snapshot cadence, settable in the topology's ``[runtime]``.

Rules of this module: plain data and its checks, no I/O, nothing imported from the
runtime, so that :mod:`hongbao.config.topology` can parse a ``[runtime]`` table into a
:class:`RuntimeLimits` without importing the runtime. Every field has an inclusive range
(:data:`RUNTIME_LIMIT_RANGES`): each one bounds a queue, a batch or a count, and a value
outside its range is a configuration mistake that must stop a node at start-up with a
clear message, not a node that runs out of memory or snapshots on every entry.
``slow_fsync_ms`` is a threshold, not a bound: a durable write slower than it is logged.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields
from types import MappingProxyType

from hongbao._invariant import invariant


@dataclass(frozen=True, slots=True)
class RuntimeLimits:
    # And never above the ledger's batch_commands_max. An entry is applied whole in one
    # cycle (~110 us a deposit on LMDB): 250 commands is ~30 ms, 1,000 was ~110 ms.
    commands_per_entry_max: int = 250
    pending_commands_per_shard_max: int = 50_000
    inflight_entries_per_shard_max: int = 4096
    inbound_messages_max: int = 200_000
    inbound_per_cycle_max: int = 50_000
    pending_reads_per_shard_max: int = 50_000
    ticks_per_cycle_max: int = 5
    snapshot_interval_entries: int = 20_000
    trailing_entries: int = 5_000  # log entries kept behind a snapshot for lagging followers
    # Committed bytes one cycle applies (at least one entry): a backlog is applied over
    # several cycles, so no cycle blocks heartbeats for more than a fraction of an election
    # timeout (the core's default 8 MiB of command entries held the loop for seconds and
    # made one client's flood of Batches cause elections). Ledger entries carry deflated
    # effects (ledger/effects.py): ~96 bytes and ~6 us to inflate and write per transfer,
    # so 128 KiB is ~1,300 transfers, ~8 ms; 32 KiB of commands was ~450 deposits, ~50 ms.
    committed_bytes_per_cycle_max: int = 128 << 10
    # A durable write (commit and fdatasync of one batch) slower than this is logged at
    # warning with its milliseconds: slow disks are named, not guessed (etcd warns at 100).
    slow_fsync_ms: int = 100
    # 1: an idle, fully replicated group stops heartbeating (hongbao.raft.quiesce) and the
    # nodes' keepalives (hongbao.node.liveness) stand in; 0: every group heartbeats always.
    quiesce_groups: int = 1


_COUNT_MAX = 10_000_000  # above this a queue or a log tail is a memory problem, not a limit
RUNTIME_LIMIT_RANGES: Mapping[str, tuple[int, int]] = MappingProxyType(
    {
        "commands_per_entry_max": (1, 100_000),
        "pending_commands_per_shard_max": (1, _COUNT_MAX),
        "inflight_entries_per_shard_max": (1, 1_000_000),
        "inbound_messages_max": (1, _COUNT_MAX),
        "inbound_per_cycle_max": (1, _COUNT_MAX),
        "pending_reads_per_shard_max": (1, _COUNT_MAX),
        "ticks_per_cycle_max": (1, 1_000),
        "snapshot_interval_entries": (1, 100_000_000),
        "trailing_entries": (0, _COUNT_MAX),
        "committed_bytes_per_cycle_max": (1 << 10, 1 << 30),
        "slow_fsync_ms": (1, 60_000),
        "quiesce_groups": (0, 1),
    }
)
invariant(
    set(RUNTIME_LIMIT_RANGES) == {f.name for f in fields(RuntimeLimits)}, "a field lacks a range"
)


def runtime_limits_problem(limits: RuntimeLimits) -> str | None:
    """Why ``limits`` cannot run a node (naming the field), or None."""
    for name, (low, high) in RUNTIME_LIMIT_RANGES.items():
        value = getattr(limits, name)
        if not isinstance(value, int) or isinstance(value, bool):
            return f"{name} must be an integer, not {value!r}"
        if not low <= value <= high:
            return f"{name} = {value} must be in {low}..{high}"
    if limits.inbound_per_cycle_max > limits.inbound_messages_max:
        return (
            f"inbound_per_cycle_max ({limits.inbound_per_cycle_max}) must not exceed"
            f" inbound_messages_max ({limits.inbound_messages_max})"
        )
    return None
