"""What a bench run costs: CPU seconds per process kind over the throughput phase.

Rules of this module:

- CPU is read from the OS, never estimated: user + system time of each process from
  ``/proc/<pid>/stat`` (every thread included, so gRPC's C threads count), sampled just
  before the throughput phase and just after it; a run's cost is the difference. Linux
  only: without ``/proc`` every kind is *unknown*, and the report says so.
- Three kinds: ``nodes``, ``routers`` and ``client`` (the bench itself: its own process
  and its worker processes with ``--processes``). A kind with no processes (no routers
  started) is absent; a kind the bench knows exists but could not find, or one of whose
  processes exited during the window, is unknown (``None``, with the reason), and so is
  the total then: a partial sum would read as a cost it is not.
- Per operation: CPU microseconds over the operations the phase counted (successes).
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

KINDS = ("nodes", "routers", "client")
CLOCK_TICKS_PER_S = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def cpu_s(pid: int) -> float | None:
    """CPU seconds (user + system) used so far by ``pid``; None when it cannot be read."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    # After the ")" of the command name: state is field 3 of stat(5), utime 14, stime 15.
    if fields[0] in ("Z", "X"):
        return None  # exited: what it used is no longer its own to read
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS_PER_S


@dataclass(frozen=True, slots=True)
class Processes:
    """The processes whose CPU a run accounts, by kind; ``unknown``: kinds not found, why."""

    pids: Mapping[str, Sequence[int]] = field(default_factory=dict)
    unknown: Mapping[str, str] = field(default_factory=dict)

    def with_client(self, pids: Sequence[int]) -> Processes:
        """The same, the bench's own processes (``pids``) as the ``client`` kind."""
        return Processes(pids={**self.pids, "client": tuple(pids)}, unknown=dict(self.unknown))


@dataclass(slots=True)
class CpuUse:
    """One run's throughput phase: CPU s by kind (None: unknown), over ``ops`` operations."""

    window_s: float
    ops: int
    cpu_s: dict[str, float | None]
    unknown: dict[str, str] = field(default_factory=dict)

    @property
    def total_s(self) -> float | None:
        values = list(self.cpu_s.values())
        if not values or any(v is None for v in values):
            return None
        return sum(v for v in values if v is not None)

    def us_per_op(self) -> dict[str, float | None]:
        """CPU µs per counted operation: ``total`` (every kind together) and each kind."""
        per_op: dict[str, float | None] = {"total": _per_op_us(self.total_s, self.ops)}
        for kind, seconds in self.cpu_s.items():
            per_op[kind] = _per_op_us(seconds, self.ops)
        return per_op

    def cores(self) -> dict[str, float | None]:
        """Cores busy on average over the window, by kind (CPU s / wall s)."""
        return {
            kind: None if s is None or self.window_s <= 0 else round(s / self.window_s, 3)
            for kind, s in self.cpu_s.items()
        }


def _per_op_us(seconds: float | None, ops: int) -> float | None:
    if seconds is None or ops <= 0:
        return None
    return round(seconds * 1e6 / ops, 1)


class CpuMeter:
    """Samples ``processes`` at ``start`` and at ``stop``; ``stop`` gives the run's use."""

    def __init__(self, processes: Processes) -> None:
        self.processes = processes
        self._before: dict[int, float | None] = {}
        self._started_s = 0.0

    def start(self, now_s: float) -> None:
        self._started_s = now_s
        self._before = {pid: cpu_s(pid) for pids in self.processes.pids.values() for pid in pids}

    def stop(self, now_s: float, ops: int) -> CpuUse:
        unknown = dict(self.processes.unknown)
        used: dict[str, float | None] = {}
        for kind in KINDS:
            if kind in unknown:
                used[kind] = None
            elif kind in self.processes.pids:
                used[kind] = self._delta(kind, unknown)
        return CpuUse(window_s=round(now_s - self._started_s, 3), ops=ops,
                      cpu_s=used, unknown=unknown)  # fmt: skip

    def _delta(self, kind: str, unknown: dict[str, str]) -> float | None:
        total_s = 0.0
        for pid in self.processes.pids[kind]:
            before, after = self._before.get(pid), cpu_s(pid)
            if before is None or after is None:
                unknown[kind] = f"pid {pid} could not be read (exited, or no /proc)"
                return None
            total_s += after - before
        return round(total_s, 3)
