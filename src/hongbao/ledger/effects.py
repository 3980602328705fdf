"""Effect replication: the leader evaluates a batch once; the log carries the writes.

Rules of this module: a ledger log entry is either a command batch (every replica
executes it: :func:`hongbao.ledger.machine.apply_batch`) or an *effects* entry, which a
leader makes by evaluating a batch against its applied state plus its own unapplied
proposals (:mod:`hongbao.ledger.overlay`). Its bytes are the rows the batch wrote, in
order, and a replica applies them by writing them: the same rows on every replica, so
replicas stay byte-identical by construction, and the followers' share of the work
drops from executing the commands to a few puts (CockroachDB's proposer-evaluated KV,
TiKV's raftstore). The results stay with the leader, which answers its clients from them
once the entry has applied.

Format: :data:`EFFECTS_MARKER` (a first byte no ledger document starts with: those start
with the codec's format version), then, deflated by zlib, one MessagePack array of
``[table, key, value]``, ``table`` the position of a :class:`Table` in its declaration
order, ``value`` nil for a delete. Deflated because effects are ~16x the bytes of the
commands (425 against 26 per transfer; 96 deflated): a cross-city link under a bandwidth
limit carried the raw ones too slowly (chaos ``flaky-cross-city``: 22 s without an
answer, against 5-9 s with commands). Replicas inflate the leader's bytes and never
deflate again, so the zlib build does not matter to determinism.

A replica refuses (skips, counts, identically everywhere) an entry that does not inflate
or decode, names an unknown table, a key out of bounds, writes the applied index (the
log never does: the applier does), or leaves the shard's books unbalanced.
"""

from __future__ import annotations

import zlib

import msgspec

from hongbao.ledger.codec import FORMAT_VERSION, CodecError
from hongbao.ledger.overlay import Write
from hongbao.ledger.records import META_APPLIED_INDEX, META_STATE, ShardState, row
from hongbao.ledger.store import KEY_BYTES_MAX, LedgerStore, Table

EFFECTS_MARKER = 0xEF
"""The first byte of an effects entry (a command batch starts with the format version)."""
EFFECTS_WRITES_MAX = 1_000_000
"""Writes per entry at most: far above any batch (a command writes a bounded few rows)."""
EFFECTS_BYTES_MAX = 16 * 1024 * 1024
"""The writes' MessagePack after inflating, at most: a small entry cannot unpack to more."""
COMPRESSION_LEVEL = 1
"""zlib's fastest level: 425 -> 96 bytes per transfer for 2 us (level 6: 88 bytes, 6 us)."""

_TABLES: tuple[Table, ...] = tuple(Table)
_TABLE_NUMBER = {table: number for number, table in enumerate(_TABLES)}
_MARKER_BYTE = bytes([EFFECTS_MARKER])
_ENCODER = msgspec.msgpack.Encoder()
_DECODER = msgspec.msgpack.Decoder(list[tuple[int, bytes, bytes | None]])

assert EFFECTS_MARKER != FORMAT_VERSION


def is_effects(data: bytes) -> bool:
    return bool(data) and data[0] == EFFECTS_MARKER


def encode_effects(writes: list[Write]) -> bytes:
    number = _TABLE_NUMBER
    packed = _ENCODER.encode([(number[t], key, value) for t, key, value in writes])
    return _MARKER_BYTE + zlib.compress(packed, COMPRESSION_LEVEL)


def _inflate(deflated: bytes) -> bytes:
    inflater = zlib.decompressobj()
    try:
        packed = inflater.decompress(deflated, EFFECTS_BYTES_MAX)
    except zlib.error as error:
        raise CodecError(f"effects: not zlib: {error}") from None
    if inflater.unconsumed_tail:
        raise CodecError(f"effects: more than {EFFECTS_BYTES_MAX} bytes once inflated")
    if not inflater.eof or inflater.unused_data:
        raise CodecError("effects: the zlib stream is truncated or followed by other bytes")
    return packed


def decode_effects(data: bytes) -> list[Write]:
    """The writes of an effects entry; :class:`CodecError` for anything malformed."""
    if not is_effects(data):
        raise CodecError("not an effects entry")
    try:
        raw = _DECODER.decode(_inflate(data[1:]))
    except (msgspec.DecodeError, RecursionError) as error:
        raise CodecError(f"effects: {error}") from None
    if len(raw) > EFFECTS_WRITES_MAX:
        raise CodecError(f"effects: {len(raw)} writes > {EFFECTS_WRITES_MAX}")
    writes: list[Write] = []
    for position, (number, key, value) in enumerate(raw):
        if not 0 <= number < len(_TABLES):
            raise CodecError(f"effects[{position}]: no table {number}")
        if not 0 < len(key) <= KEY_BYTES_MAX:
            raise CodecError(f"effects[{position}]: key of {len(key)} bytes")
        table = _TABLES[number]
        if table is Table.META and key == META_APPLIED_INDEX:
            raise CodecError(f"effects[{position}]: the applied index is not the log's to write")
        writes.append((table, key, value))
    _check_books(writes)
    return writes


def _check_books(writes: list[Write]) -> None:
    """The shard state the entry leaves must balance (the leader checked every command)."""
    for table, key, value in reversed(writes):
        if table is Table.META and key == META_STATE:
            if value is None:
                raise CodecError("effects: the shard state is deleted")
            try:
                state = row(value, ShardState)
            except CodecError as error:
                raise CodecError(f"effects: shard state: {error}") from None
            if not state.conserved():
                raise CodecError("effects: the shard state does not balance")
            return


def apply_effects(store: LedgerStore, writes: list[Write]) -> None:
    """Write ``writes`` in order (the caller records the applied index with them)."""
    for table, key, value in writes:
        if value is None:
            store.delete(table, key)
        else:
            store.put(table, key, value)
