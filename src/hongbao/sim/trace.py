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
  ``crash`` (unsynced writes lost), ``restart`` (what survived), ``conf`` (membership).
- ``net``: ``send`` / ``deliver`` / ``drop`` (type, from->to, term, index, reason) and
  ``dup``; only when message tracing is on (``--trace`` turns it on).
- ``fault``: ``partition``, ``oneway``, ``region``, ``isolate``, ``degrade``, ``heal``.
- ``client``: ``propose`` / ``dropped`` / ``ack`` (index, term), ``read`` / ``served``,
  ``transfer``, ``confchange``.
"""

from __future__ import annotations

import hashlib

from hongbao.sim.config import TRACE_LINES_KEPT_MAX


class Trace:
    """Collects lines (if ``keep_lines``) and always a digest of every line emitted.

    ``enabled`` is read by callers before they format anything, so a run without a trace
    pays almost nothing for it.
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
