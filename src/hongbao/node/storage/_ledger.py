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

from hongbao._invariant import invariant
from hongbao.ledger.store import Table, check_key
from hongbao.node.storage import _codec


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
        self._dbs = dbs
        self._txn = txn
        self._prefix = _codec.shard_prefix(shard_id)
        self._writable = writable

    def get(self, table: Table, key: bytes) -> bytes | None:
        full = self._key(key)
        record = self._txn.get(full, db=self._db(table))
        if record is None:
            return None
        return _codec.row_decode(table.value, full, record)

    def put(self, table: Table, key: bytes, value: bytes) -> None:
        invariant(self._writable, "put on a read-only ledger store")
        invariant(type(value) is bytes, f"values are bytes, not {type(value).__name__}")
        full = self._key(key)
        self._txn.put(full, _codec.row_encode(full, value), db=self._db(table))

    def delete(self, table: Table, key: bytes) -> None:
        invariant(self._writable, "delete on a read-only ledger store")
        self._txn.delete(self._key(key), db=self._db(table))

    def scan(
        self, table: Table, *, prefix: bytes = b"", start: bytes = b"", limit: int
    ) -> list[tuple[bytes, bytes]]:
        invariant(limit > 0, f"scan limit must be positive, got {limit}")
        full_prefix = self._prefix + prefix
        rows: list[tuple[bytes, bytes]] = []
        with self._txn.cursor(db=self._db(table)) as cursor:
            found = cursor.set_range(self._prefix + max(prefix, start))
            while found and len(rows) < limit:
                full, record = cursor.item()
                if not full.startswith(full_prefix):
                    break
                value = _codec.row_decode(table.value, full, record)
                rows.append((full[len(self._prefix) :], value))
                found = cursor.next()
        return rows

    def _key(self, key: bytes) -> bytes:
        check_key(key)
        invariant(
            len(key) <= _codec.LEDGER_KEY_BYTES_MAX,
            f"ledger key of {len(key)} bytes: at most {_codec.LEDGER_KEY_BYTES_MAX} fit LMDB",
        )
        return self._prefix + key

    def _db(self, table: Table) -> lmdb._Database:
        return self._dbs[f"ledger.{table.value}"]
