"""A shard's whole state as deterministic bytes (the Raft snapshot data), and its digest.

Rules of this module: the bytes depend only on the tables' contents, never on how they
got there, so two replicas with the same state produce the same snapshot and the same
:func:`state_digest`. Layout (all integers big-endian)::

    b"HBLEDGER"  u16 version  u16 table count
    per table, in Table declaration order:
        u8 name length, name (ASCII), u64 row count,
        per row in key order: u32 key length, key, u32 value length, value
    32-byte BLAKE2b of everything before it

:func:`load` checks the whole thing (magic, version, tables, order, lengths, checksum)
before it touches the store, then replaces every table. The applied index travels inside
(the META table), so a loaded store knows which log index it stands for.
"""

from __future__ import annotations

import hashlib
import struct
from collections.abc import Iterator

from hongbao._invariant import invariant
from hongbao.ledger.store import SCAN_PAGE_MAX, LedgerStore, Table, iterate

MAGIC = b"HBLEDGER"
VERSION = 1
_DIGEST_BYTES = 32


class SnapshotError(ValueError):
    """The bytes are not a snapshot this version can load."""


def dump(store: LedgerStore) -> bytes:
    """The snapshot bytes of every table of ``store``."""
    body = b"".join(_chunks(store))
    return body + hashlib.blake2b(body, digest_size=_DIGEST_BYTES).digest()


def state_digest(store: LedgerStore) -> str:
    """Hex digest of the snapshot bytes: equal digests mean byte-identical tables."""
    hasher = hashlib.blake2b(digest_size=_DIGEST_BYTES)
    for chunk in _chunks(store):
        hasher.update(chunk)
    return hasher.hexdigest()


def table_digests(store: LedgerStore) -> dict[Table, str]:
    """One digest per table: which table two diverging replicas disagree on."""
    digests = {}
    for table in Table:
        hasher = hashlib.blake2b(digest_size=16)
        for key, value in iterate(store, table):
            hasher.update(struct.pack(">I", len(key)) + key + struct.pack(">I", len(value)) + value)
        digests[table] = hasher.hexdigest()
    return digests


def load(store: LedgerStore, data: bytes) -> None:
    """Replace every table of ``store`` with the snapshot ``data`` (checked first)."""
    tables = parse(data)
    for table in Table:
        _clear(store, table)
        for key, value in tables[table]:
            store.put(table, key, value)


def parse(data: bytes) -> dict[Table, list[tuple[bytes, bytes]]]:
    """The rows of each table in ``data``; :class:`SnapshotError` if anything is off."""
    if len(data) < len(MAGIC) + 4 + _DIGEST_BYTES or not data.startswith(MAGIC):
        raise SnapshotError("not a hongbao ledger snapshot")
    body, digest = data[:-_DIGEST_BYTES], data[-_DIGEST_BYTES:]
    if hashlib.blake2b(body, digest_size=_DIGEST_BYTES).digest() != digest:
        raise SnapshotError("snapshot checksum mismatch")
    reader = _Reader(body, len(MAGIC))
    version, table_count = reader.unpack(">HH")
    if version != VERSION:
        raise SnapshotError(f"snapshot version {version}; this build reads {VERSION}")
    if table_count != len(Table):
        raise SnapshotError(f"snapshot has {table_count} tables, expected {len(Table)}")
    tables: dict[Table, list[tuple[bytes, bytes]]] = {}
    for table in Table:
        (name_length,) = reader.unpack(">B")
        if reader.take(name_length) != table.value.encode("ascii"):
            raise SnapshotError(f"expected table {table.value} here")
        (row_count,) = reader.unpack(">Q")
        rows: list[tuple[bytes, bytes]] = []
        for _ in range(row_count):
            key = reader.take(reader.unpack(">I")[0])
            value = reader.take(reader.unpack(">I")[0])
            if not key or (rows and key <= rows[-1][0]):
                raise SnapshotError(f"{table.value}: keys are empty or not strictly ascending")
            rows.append((key, value))
        tables[table] = rows
    if not reader.at_end():
        raise SnapshotError("trailing bytes after the last table")
    return tables


def _chunks(store: LedgerStore) -> Iterator[bytes]:
    yield MAGIC + struct.pack(">HH", VERSION, len(Table))
    for table in Table:
        name = table.value.encode("ascii")
        rows = list(iterate(store, table))
        yield struct.pack(">B", len(name)) + name + struct.pack(">Q", len(rows))
        for key, value in rows:
            yield struct.pack(">I", len(key)) + key + struct.pack(">I", len(value)) + value


def _clear(store: LedgerStore, table: Table) -> None:
    while rows := store.scan(table, limit=SCAN_PAGE_MAX):
        for key, _ in rows:
            store.delete(table, key)


class _Reader:
    __slots__ = ("_data", "_offset")

    def __init__(self, data: bytes, offset: int) -> None:
        self._data = data
        self._offset = offset

    def take(self, length: int) -> bytes:
        if self._offset + length > len(self._data):
            raise SnapshotError("snapshot is truncated")
        chunk = self._data[self._offset : self._offset + length]
        self._offset += length
        return chunk

    def unpack(self, fmt: str) -> tuple[int, ...]:
        values = struct.unpack(fmt, self.take(struct.calcsize(fmt)))
        invariant(all(isinstance(v, int) for v in values), "snapshot fields are integers")
        return tuple(int(v) for v in values)

    def at_end(self) -> bool:
        return self._offset == len(self._data)
