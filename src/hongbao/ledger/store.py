"""The storage seam of the ledger: one shard's tables, read and written in one transaction.

Rules of this module: the state machine touches storage only through :class:`LedgerStore`.
A store is *one shard's* view: the shard prefix (or the per-shard named sub-databases) is
the implementation's business, never the state machine's. A store object stands for one
open write transaction (or read transaction, for queries); whoever opened it commits or
aborts it. The ledger never commits, never aborts and never keeps a store beyond the call
it was given in. :class:`MemoryStore` is the in-memory twin used by tests and the
simulator; the LMDB implementation lives in ``hongbao.node`` and must pass the same
contract suite (``tests/ledger/store_contract.py``).

Keys and values are ``bytes``. Order is plain lexicographic order of the key bytes (what
LMDB gives without a custom comparator), which is why every integer inside a key is
big-endian and fixed-width. Keys are 1..507 bytes (see :data:`KEY_BYTES_MAX`).
"""

from __future__ import annotations

import bisect
import enum
from collections.abc import Iterator
from typing import Protocol, runtime_checkable

from hongbao._invariant import fail, invariant

KEY_BYTES_MAX = 507
"""LMDB's default largest key (511) less the 4-byte shard prefix the LMDB store adds: a key
the in-memory store accepts must fit LMDB too. The ledger's own keys stay under ~140."""

SCAN_PAGE_MAX = 1024
"""Rows per page when a caller walks a whole table with :func:`iterate`."""


class Table(enum.StrEnum):
    """The named tables of one shard. The value is the sub-database name suffix."""

    META = "meta"  # identity, limits, counters and running totals, applied index, cursors
    ACCOUNTS = "accounts"  # user id -> Account
    HISTORY = "history"  # user id, 0x00, inverted journal seq -> HistoryEntry
    JOURNAL = "journal"  # journal seq -> JournalTx (double-entry postings)
    ENVELOPES = "envelopes"  # envelope id -> Envelope
    EXPIRY = "expiry"  # expires_at_ms, envelope seq -> envelope id (open envelopes only)
    GRABS = "grabs"  # envelope id, 0x00, ordinal -> Grab
    GRABBERS = "grabbers"  # envelope id, 0x00, user id -> ordinal
    OUTBOX = "outbox"  # destination shard, seq -> OutboxEntry (until acknowledged)
    INBOX = "inbox"  # source shard -> last applied seq from that source
    IDEMPOTENCY = "idempotency"  # request id -> IdempotencyRecord
    IDEMPOTENCY_ORDER = "idempotency_order"  # apply ordinal -> u64 clock ms, request id


@runtime_checkable
class LedgerStore(Protocol):
    """One shard's tables inside one open transaction.

    Ownership: ``bytes`` are immutable, so values returned may be kept freely; lists
    returned by :meth:`scan` are fresh and belong to the caller. Writes are visible to
    reads of the same store object at once (read-your-writes inside the transaction).
    """

    def get(self, table: Table, key: bytes) -> bytes | None:
        """The value under ``key``, or None."""
        ...

    def put(self, table: Table, key: bytes, value: bytes) -> None:
        """Insert or overwrite ``key``."""
        ...

    def delete(self, table: Table, key: bytes) -> None:
        """Remove ``key``; removing a missing key is not an error."""
        ...

    def scan(
        self, table: Table, *, prefix: bytes = b"", start: bytes = b"", limit: int
    ) -> list[tuple[bytes, bytes]]:
        """Up to ``limit`` rows whose key starts with ``prefix`` and is ``>= start``.

        Rows come in ascending order of key bytes. ``limit`` is required and positive:
        every read the state machine makes is bounded. The list is materialised, so the
        caller may write to the table while it walks the result.
        """
        ...


def check_key(key: bytes) -> None:
    """Every store calls this on every key it is given: LMDB would refuse the others."""
    if type(key) is bytes and 0 < len(key) <= KEY_BYTES_MAX:
        return  # the hot path: one test, no message built
    invariant(type(key) is bytes, f"keys are bytes, not {type(key).__name__}")
    invariant(len(key) > 0, "keys are never empty")
    fail(f"key of {len(key)} bytes: at most {KEY_BYTES_MAX} fit")


def iterate(
    store: LedgerStore, table: Table, *, prefix: bytes = b"", page_size: int = SCAN_PAGE_MAX
) -> Iterator[tuple[bytes, bytes]]:
    """Every row of ``table`` under ``prefix``, in key order, read in bounded pages.

    Used by whole-table walks (snapshot, audit). The caller must not insert keys ahead of
    the walk while iterating; deleting rows already seen is fine.
    """
    invariant(page_size > 0, "page_size must be positive")
    start = prefix
    while True:
        rows = store.scan(table, prefix=prefix, start=start, limit=page_size)
        yield from rows
        if len(rows) < page_size:
            return
        start = rows[-1][0] + b"\x00"  # the smallest key after the last one seen


class MemoryStore:
    """A :class:`LedgerStore` over sorted in-memory tables (one shard).

    There is no transaction: writes land at once. Tests that need an abort copy the store
    first (:meth:`copy`).
    """

    __slots__ = ("_keys", "_rows")

    def __init__(self) -> None:
        self._rows: dict[Table, dict[bytes, bytes]] = {table: {} for table in Table}
        self._keys: dict[Table, list[bytes]] = {table: [] for table in Table}

    def get(self, table: Table, key: bytes) -> bytes | None:
        check_key(key)
        return self._rows[table].get(key)

    def put(self, table: Table, key: bytes, value: bytes) -> None:
        check_key(key)
        if type(value) is not bytes:
            fail(f"values are bytes, not {type(value).__name__}")
        rows = self._rows[table]
        if key not in rows:
            bisect.insort(self._keys[table], key)
        rows[key] = value

    def delete(self, table: Table, key: bytes) -> None:
        check_key(key)
        rows = self._rows[table]
        if key in rows:
            del rows[key]
            keys = self._keys[table]
            index = bisect.bisect_left(keys, key)
            invariant(keys[index] == key, "memory store: key index out of step with rows")
            del keys[index]

    def scan(
        self, table: Table, *, prefix: bytes = b"", start: bytes = b"", limit: int
    ) -> list[tuple[bytes, bytes]]:
        invariant(limit > 0, f"scan limit must be positive, got {limit}")
        keys = self._keys[table]
        rows = self._rows[table]
        out: list[tuple[bytes, bytes]] = []
        index = bisect.bisect_left(keys, max(prefix, start))
        while index < len(keys) and len(out) < limit:
            key = keys[index]
            if not key.startswith(prefix):
                break
            out.append((key, rows[key]))
            index += 1
        return out

    def copy(self) -> MemoryStore:
        """An independent copy (a replica, or a savepoint in a test)."""
        twin = MemoryStore()
        for table in Table:
            twin._rows[table] = dict(self._rows[table])
            twin._keys[table] = list(self._keys[table])
        return twin

    def row_count(self, table: Table) -> int:
        return len(self._keys[table])
