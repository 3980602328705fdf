"""The ledger's tables of one shard, on an LMDB transaction (``hongbao.ledger.store``).

Rules of this module: each ledger table is one LMDB sub-database (``ledger.<table>``)
shared by all the node's shards; a row's LMDB key is the shard id (u32, big-endian)
followed by the ledger's key, so one shard's rows are contiguous and sorted exactly as
the ledger sorts them. Values carry a CRC-32 over key and value, checked on every read.
The store neither commits nor aborts: whoever opened the transaction does.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import final

import lmdb

from hongbao._invariant import fail
from hongbao.ledger.store import Table, check_key
from hongbao.node.storage import _codec

_KEY_BYTES_MAX = _codec.LEDGER_KEY_BYTES_MAX
_row_decode = _codec.row_decode
_row_encode = _codec.row_encode
_DB_NAMES = {table: f"ledger.{table.value}" for table in Table}
"""The sub-database of each table, named once: a store resolves its handles when opened."""


@final
class LmdbLedgerStore:
    """A :class:`hongbao.ledger.store.LedgerStore` for one shard inside one transaction.

    Keys may be at most ``LEDGER_KEY_BYTES_MAX`` (507) bytes: LMDB's 511 minus the prefix.
    """

    __slots__ = ("_dbs", "_prefix", "_txn", "_writable")

    def __init__(
        self,
        dbs: Mapping[str, lmdb._Database],
        txn: lmdb.Transaction[bytes],
        shard_id: int,
        *,
        writable: bool,
    ) -> None:
        self._dbs = {table: dbs[name] for table, name in _DB_NAMES.items()}
        self._txn = txn
        self._prefix = _codec.shard_prefix(shard_id)
        self._writable = writable

    # get and put run about ten times per command: the key checks of :meth:`_key` are
    # inlined as one test (``_key`` still runs, to name the broken rule, when it fails).

    def get(self, table: Table, key: bytes) -> bytes | None:
        if type(key) is not bytes or not 0 < len(key) <= _KEY_BYTES_MAX:
            self._key(key)
        full = self._prefix + key
        record = self._txn.get(full, db=self._dbs[table])
        if record is None:
            return None
        return _row_decode(table, full, record)

    def put(self, table: Table, key: bytes, value: bytes) -> None:
        if not self._writable:
            fail("put on a read-only ledger store")
        if type(value) is not bytes:
            fail(f"values are bytes, not {type(value).__name__}")
        if type(key) is not bytes or not 0 < len(key) <= _KEY_BYTES_MAX:
            self._key(key)
        full = self._prefix + key
        self._txn.put(full, _row_encode(full, value), db=self._dbs[table])

    def delete(self, table: Table, key: bytes) -> None:
        if not self._writable:
            fail("delete on a read-only ledger store")
        self._txn.delete(self._key(key), db=self._dbs[table])

    def scan(
        self, table: Table, *, prefix: bytes = b"", start: bytes = b"", limit: int
    ) -> list[tuple[bytes, bytes]]:
        if limit <= 0:
            fail(f"scan limit must be positive, got {limit}")
        full_prefix = self._prefix + prefix
        rows: list[tuple[bytes, bytes]] = []
        with self._txn.cursor(db=self._dbs[table]) as cursor:
            found = cursor.set_range(self._prefix + max(prefix, start))
            while found and len(rows) < limit:
                full, record = cursor.item()
                if not full.startswith(full_prefix):
                    break
                value = _codec.row_decode(table, full, record)
                rows.append((full[len(self._prefix) :], value))
                found = cursor.next()
        return rows

    def _key(self, key: bytes) -> bytes:
        """The LMDB key of ``key`` once :func:`check_key`'s rules and LMDB's bound hold
        (those checks are one test on the hot path; ``check_key`` names the broken rule)."""
        if type(key) is not bytes or not 0 < len(key) <= _codec.LEDGER_KEY_BYTES_MAX:
            check_key(key)  # names the broken rule
            fail(f"ledger key of {len(key)} bytes: at most {_codec.LEDGER_KEY_BYTES_MAX} fit LMDB")
        return self._prefix + key
