"""A leader's view of a shard ahead of its applied state: what it proposed, not yet applied.

Rules of this module: a leader evaluates each new batch once (effect replication, see
:mod:`hongbao.ledger.effects`) against the state the log will have when the batch applies:
the applied state plus the writes of every entry it proposed before and that has not
applied yet. :class:`Speculation` holds those writes, one layer per log index, newest
wins; :class:`OverlayStore` is the :class:`LedgerStore` an evaluation reads and writes,
which records its own writes and never touches the base store.

Why this is exact: within one term a leader's log only grows, so every entry it proposes
follows, in the log, every entry whose writes it read. A layer leaves when its entry is
applied (the base then holds those very values). A new term starts an empty speculation,
and a leader evaluates nothing before every entry of earlier terms is applied (the caller
checks that), so no unapplied write it does not know about can sit under its reads.

Scans merge the base rows with the pending ones in key order; a pending delete hides a
base row. The merge is exact with a bounded read of the base: ``limit`` plus the pending
deletes in range (each hides at most one base row).
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass

from hongbao._invariant import invariant
from hongbao.ledger.store import LedgerStore, Table, check_key

Write = tuple[Table, bytes, bytes | None]
"""One write of an evaluation: a put (the new value) or a delete (None)."""


@dataclass(frozen=True, slots=True)
class Evaluated:
    """A batch a leader evaluated: the entry's bytes, the rows they write, the results."""

    data: bytes
    writes: list[Write]
    results: tuple[object, ...]


class Speculation:
    """The writes of a leader's proposed, unapplied entries (one shard, one term)."""

    __slots__ = ("_keys", "_latest", "_layers", "start_index", "term")

    def __init__(self) -> None:
        self.term = -1
        self.start_index = 0
        self._latest: dict[Table, dict[bytes, tuple[int, bytes | None]]] = {}
        self._keys: dict[Table, list[bytes]] = {}
        self._layers: dict[int, list[tuple[Table, bytes]]] = {}

    def reset(self, *, term: int, start_index: int) -> None:
        """Forget every layer: a new term (or a leadership lost) begins at ``start_index``."""
        self.term = term
        self.start_index = start_index
        self._latest.clear()
        self._keys.clear()
        self._layers.clear()

    @property
    def layer_count(self) -> int:
        return len(self._layers)

    def add(self, index: int, writes: list[Write]) -> None:
        """The entry proposed at ``index`` wrote ``writes`` (in order; the last one wins)."""
        newest = next(reversed(self._layers), 0)  # layers are kept in index order
        invariant(index > newest, f"layer {index} is not newer than layer {newest}")
        keys: list[tuple[Table, bytes]] = []
        for table, key, value in writes:
            rows = self._latest.setdefault(table, {})
            if key not in rows:
                bisect.insort(self._keys.setdefault(table, []), key)
            rows[key] = (index, value)
            keys.append((table, key))
        self._layers[index] = keys

    def applied(self, index: int) -> None:
        """Entries up to ``index`` are applied: their writes are in the base store now."""
        while self._layers:
            layer_index = next(iter(self._layers))  # the oldest
            if layer_index > index:
                return
            for table, key in self._layers.pop(layer_index):
                rows = self._latest[table]
                held = rows.get(key)
                if held is not None and held[0] == layer_index:  # no newer layer wrote it
                    del rows[key]
                    keys = self._keys[table]
                    del keys[bisect.bisect_left(keys, key)]

    def lookup(self, table: Table, key: bytes) -> tuple[bool, bytes | None]:
        """(True, the value or None if deleted) when a pending write holds ``key``."""
        held = self._latest.get(table, {}).get(key)
        return (False, None) if held is None else (True, held[1])

    def pending_in(self, table: Table, low: bytes, prefix: bytes) -> dict[bytes, bytes | None]:
        """Every pending write of ``table`` at or after ``low`` whose key starts with ``prefix``."""
        keys = self._keys.get(table)
        if not keys:
            return {}
        rows = self._latest[table]
        found: dict[bytes, bytes | None] = {}
        for position in range(bisect.bisect_left(keys, low), len(keys)):
            key = keys[position]
            if not key.startswith(prefix):
                break
            found[key] = rows[key][1]
        return found


class OverlayStore:
    """One evaluation's store: reads see its own writes, then the speculation, then the base."""

    __slots__ = ("_base", "_mine", "_speculation")

    def __init__(self, base: LedgerStore, speculation: Speculation) -> None:
        self._base = base
        self._speculation = speculation
        self._mine: dict[tuple[Table, bytes], bytes | None] = {}

    def writes(self) -> list[Write]:
        """What this evaluation wrote, one write per key (its last), in first-write order."""
        return [(table, key, value) for (table, key), value in self._mine.items()]

    def get(self, table: Table, key: bytes) -> bytes | None:
        mine = self._mine
        if (table, key) in mine:
            return mine[(table, key)]
        pending, value = self._speculation.lookup(table, key)
        if pending:
            return value
        return self._base.get(table, key)

    def put(self, table: Table, key: bytes, value: bytes) -> None:
        check_key(key)
        invariant(type(value) is bytes, f"values are bytes, not {type(value).__name__}")
        self._mine[(table, key)] = value

    def delete(self, table: Table, key: bytes) -> None:
        check_key(key)
        self._mine[(table, key)] = None

    def scan(
        self, table: Table, *, prefix: bytes = b"", start: bytes = b"", limit: int
    ) -> list[tuple[bytes, bytes]]:
        invariant(limit > 0, f"scan limit must be positive, got {limit}")
        low = max(prefix, start)
        pending = self._speculation.pending_in(table, low, prefix)
        for (mine_table, key), value in self._mine.items():
            if mine_table is table and key >= low and key.startswith(prefix):
                pending[key] = value
        hidden = sum(1 for value in pending.values() if value is None)
        base_rows = self._base.scan(table, prefix=prefix, start=start, limit=limit + hidden)
        merged: dict[bytes, bytes | None] = dict(base_rows)
        if len(base_rows) == limit + hidden:
            # The base has more rows past its last one read: only pending keys up to that
            # one can be among the first ``limit`` (at least ``limit`` rows survive there).
            last = base_rows[-1][0]
            pending = {key: value for key, value in pending.items() if key <= last}
        merged.update(pending)
        live: list[tuple[bytes, bytes]] = []
        for key in sorted(merged):
            value = merged[key]
            if value is not None:
                live.append((key, value))
                if len(live) == limit:
                    break
        return live
