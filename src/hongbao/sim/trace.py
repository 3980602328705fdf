"""The event trace of one simulated run: one event per line, byte-identical for a seed.

Why: a failing seed is only useful if a human can read what happened, and determinism is
only testable if two runs can be compared byte for byte. Every line is also folded into a
SHA-256 digest, so a run can be compared cheaply even when its lines are not kept.

Format: fields are separated by single spaces::

    t000123 n2 leader term=4 last=57 commit=55
    |       |  |      '-- key=value details, in a fixed order per event
    |       |  '-- event: a lowercase word (see below)
    |       '-- subject: n<id> for a node, net for the network, fault for the fault
    |           injector, client for the workload, sim for the run itself
    '-- simulated tick, zero padded (ticks are logical: there is no wall clock)

Events by subject:

- ``sim``: ``start`` (seed and sizes), ``phase`` (safety / liveness), ``recovered``,
  ``violation`` (kind and detail), ``end``.
- ``n<id>``: ``role`` (role, term, leader), ``leader`` (a node became leader),
  ``persist`` (entries first..last, synced or not), ``apply`` (first..last, digest),
  ``restore`` (snapshot installed), ``snapshot`` (runtime snapshot + compaction),
  ``crash`` (unsynced writes lost, and where: ``now`` or a point inside a Ready),
  ``restart`` (what survived), ``conf`` (membership).
- ``net``: ``send`` / ``deliver`` / ``drop`` (type, from->to, term, index, entries,
  commit, reject, send sequence number, drop reason); only when message tracing is on
  (``hongbao sim --seed S --trace`` turns it on). A duplicated message is delivered twice.
- ``fault``: ``partition``, ``oneway``, ``region``, ``isolate``, ``degrade``, ``heal``,
  ``replay`` (old messages sent again), ``arm`` (a node will crash inside its next Ready).
- ``client``: ``propose`` / ``dropped`` (refused) / ``ack`` (told committed) / ``lost``
  (overwritten: the client's answer is "maybe"), ``read`` / ``served`` (applied index and
  the floor it had to reach), ``transfer``, ``confchange``.
"""

from __future__ import annotations

import hashlib

from hongbao.sim.config import TRACE_LINES_KEPT_MAX


class Trace:
    """When enabled, keeps each line (up to a bound) and folds every line into a digest.

    When disabled it records nothing; callers check ``enabled`` (or ``messages``) before
    they format anything, so a run without a trace pays almost nothing for it.
    """

    def __init__(self, *, enabled: bool, messages: bool = False) -> None:
        self.enabled = enabled
        self.messages = enabled and messages
        self._lines: list[str] = []
        self._hash = hashlib.sha256()
        self._line_count = 0

    def emit(self, tick: int, subject: str, event: str, details: str = "") -> None:
        if not self.enabled:
            return
        line = f"t{tick:06d} {subject} {event}" + (f" {details}" if details else "")
        self._hash.update(line.encode())
        self._hash.update(b"\n")
        self._line_count += 1
        if len(self._lines) < TRACE_LINES_KEPT_MAX:
            self._lines.append(line)

    @property
    def lines(self) -> list[str]:
        return list(self._lines)

    @property
    def line_count(self) -> int:
        return self._line_count

    @property
    def digest(self) -> str:
        return self._hash.hexdigest()

    def text(self) -> str:
        return "".join(line + "\n" for line in self._lines)


def node_subject(node_id: int) -> str:
    return f"n{node_id}"
