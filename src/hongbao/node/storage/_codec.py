"""The on-disk format of a node's LMDB environment: keys, records and their checksums.

Rules of this module: it only turns values into bytes and back; it opens no transaction.
Every record carries a CRC-32 computed over its *key* and its body, written just before
the put and verified just after every get, so a flipped bit, a torn page or a record
stored under the wrong key is reported as :class:`CorruptRecord` instead of being
believed. LMDB itself checksums nothing.

Sub-databases (every integer is big-endian, so key byte order is numeric order and one
shard's rows are contiguous)::

    meta        b"format"              -> version u32                      (FORMAT_VERSION)
    raft_log    shard u32, index u64   -> crc u32, term u64, type u8, data...
    raft_state  shard u32, tag u8:
                  HARD_STATE (1)       -> crc u32, term u64, vote u64, commit u64
                  SNAPSHOT_META (2)    -> crc u32, index u64, term u64, data_bytes u64,
                                          data_crc u32, chunk_count u32, voter_count u16,
                                          learner_count u16, voter ids u64..., learner ids u64...
                  LOG_START (3)        -> crc u32, index u64, term u64
    snapshots   shard u32, chunk u32   -> crc u32, chunk bytes (at most SNAPSHOT_CHUNK_BYTES_MAX)
    ledger.<t>  shard u32, key...      -> crc u32, value...   (one sub-database per ledger table)

``LOG_START`` is the log's dummy entry (etcd's ``ents[0]``): entries at or below its index
are gone, its term is still known. It equals the snapshot point after a snapshot is
installed, and trails it (or equals it) after a local ``compact``.
"""

from __future__ import annotations

import struct
import zlib
from typing import Final
from zlib import crc32 as _crc32

from hongbao._invariant import invariant
from hongbao.raft.types import ConfState, Entry, EntryType, HardState, NodeId, SnapshotMeta

FORMAT_VERSION: Final = 1
SNAPSHOT_CHUNK_BYTES_MAX: Final = 1 << 20
"""Snapshot data is cut into values of at most 1 MiB: big enough to cost few puts, small
enough that no single LMDB value (an overflow page run) becomes unreasonable."""

SHARD_ID_MAX: Final = (1 << 32) - 1
LOG_INDEX_MAX: Final = (1 << 64) - 1
LEDGER_KEY_BYTES_MAX: Final = 511 - 4
"""LMDB keys are at most 511 bytes and the ledger's keys get a 4-byte shard prefix."""

HARD_STATE: Final = 1
SNAPSHOT_META: Final = 2
LOG_START: Final = 3

_U32 = struct.Struct(">I")
_LOG_KEY = struct.Struct(">IQ")
_STATE_KEY = struct.Struct(">IB")
_CHUNK_KEY = struct.Struct(">II")
# Record bodies: what follows the crc.
_ENTRY_HEAD = struct.Struct(">QB")
_HARD_STATE = struct.Struct(">QQQ")
_LOG_START = struct.Struct(">QQ")
_SNAP_HEAD = struct.Struct(">QQQIIHH")
_NODE_ID = struct.Struct(">Q")


class CorruptRecord(Exception):
    """A record failed its checksum or is malformed: the disk, not the code, is at fault.

    Never caught in the node: the replica must stop rather than serve or vote on data it
    cannot trust. The message names the sub-database and the key.
    """


def _crc(key: bytes, body: bytes | memoryview) -> int:
    return zlib.crc32(body, zlib.crc32(key))


def _checked_body(db: str, key: bytes, record: bytes, what: str) -> memoryview:
    """The record after its crc, once the crc has been verified against ``key``."""
    if len(record) < 4:
        raise CorruptRecord(f"{db} {what}: record of {len(record)} bytes has no checksum")
    (stored,) = _U32.unpack_from(record)
    body = memoryview(record)[4:]
    computed = _crc(key, body)
    if stored != computed:
        raise CorruptRecord(
            f"{db} {what}: crc32 mismatch (stored {stored:#010x}, computed {computed:#010x})"
        )
    return body


def _sealed(key: bytes, body: bytes) -> bytes:
    return _U32.pack(_crc(key, body)) + body


# -- keys --------------------------------------------------------------------------------


def shard_prefix(shard_id: int) -> bytes:
    invariant(0 <= shard_id <= SHARD_ID_MAX, f"shard id {shard_id} does not fit u32")
    return _U32.pack(shard_id)


def log_key(shard_id: int, index: int) -> bytes:
    invariant(0 <= shard_id <= SHARD_ID_MAX, f"shard id {shard_id} does not fit u32")
    invariant(index >= 0, f"log index {index} is negative")
    return _LOG_KEY.pack(shard_id, index)


def log_key_decode(key: bytes) -> tuple[int, int]:
    invariant(len(key) == _LOG_KEY.size, f"raft_log key of {len(key)} bytes")
    shard_id, index = _LOG_KEY.unpack(key)
    return shard_id, index


def state_key(shard_id: int, tag: int) -> bytes:
    return _STATE_KEY.pack(shard_id, tag)


def chunk_key(shard_id: int, chunk: int) -> bytes:
    return _CHUNK_KEY.pack(shard_id, chunk)


# -- raft log entries ----------------------------------------------------------------------


def entry_encode(key: bytes, entry: Entry) -> bytes:
    return _sealed(key, _ENTRY_HEAD.pack(entry.term, int(entry.type)) + entry.data)


def entry_decode(key: bytes, record: bytes) -> Entry:
    shard_id, index = log_key_decode(key)
    body = _checked_body("raft_log", key, record, f"shard {shard_id} index {index}")
    if len(body) < _ENTRY_HEAD.size:
        raise CorruptRecord(f"raft_log shard {shard_id} index {index}: short record")
    term, kind = _ENTRY_HEAD.unpack_from(body)
    if kind not in EntryType._value2member_map_:
        raise CorruptRecord(f"raft_log shard {shard_id} index {index}: unknown type {kind}")
    return Entry(term=term, index=index, type=EntryType(kind), data=bytes(body[_ENTRY_HEAD.size :]))


# -- raft state ----------------------------------------------------------------------------


def hard_state_encode(key: bytes, hard_state: HardState) -> bytes:
    return _sealed(key, _HARD_STATE.pack(hard_state.term, hard_state.vote, hard_state.commit))


def hard_state_decode(key: bytes, record: bytes) -> HardState:
    body = _checked_body(
        "raft_state", key, record, f"hard state of shard {_U32.unpack_from(key)[0]}"
    )
    if len(body) != _HARD_STATE.size:
        raise CorruptRecord(f"raft_state hard state: {len(body)}-byte body")
    term, vote, commit = _HARD_STATE.unpack(body)
    return HardState(term=term, vote=NodeId(vote), commit=commit)


def log_start_encode(key: bytes, index: int, term: int) -> bytes:
    return _sealed(key, _LOG_START.pack(index, term))


def log_start_decode(key: bytes, record: bytes) -> tuple[int, int]:
    body = _checked_body(
        "raft_state", key, record, f"log start of shard {_U32.unpack_from(key)[0]}"
    )
    if len(body) != _LOG_START.size:
        raise CorruptRecord(f"raft_state log start: {len(body)}-byte body")
    index, term = _LOG_START.unpack(body)
    return index, term


def snapshot_meta_encode(key: bytes, meta: SnapshotMeta, data: bytes) -> bytes:
    voters = sorted(meta.conf_state.voters)
    learners = sorted(meta.conf_state.learners)
    head = _SNAP_HEAD.pack(
        meta.index,
        meta.term,
        len(data),
        zlib.crc32(data),
        chunk_count(len(data)),
        len(voters),
        len(learners),
    )
    ids = b"".join(_NODE_ID.pack(node) for node in voters + learners)
    return _sealed(key, head + ids)


def snapshot_meta_decode(key: bytes, record: bytes) -> tuple[SnapshotMeta, int, int]:
    """The meta, the data's length in bytes and the data's crc32."""
    body = _checked_body(
        "raft_state", key, record, f"snapshot meta of shard {_U32.unpack_from(key)[0]}"
    )
    if len(body) < _SNAP_HEAD.size:
        raise CorruptRecord(f"raft_state snapshot meta: {len(body)}-byte body")
    index, term, data_bytes, data_crc, chunks, voter_count, learner_count = _SNAP_HEAD.unpack_from(
        body
    )
    if len(body) != _SNAP_HEAD.size + _NODE_ID.size * (voter_count + learner_count):
        raise CorruptRecord("raft_state snapshot meta: member list length mismatch")
    if chunks != chunk_count(data_bytes):
        raise CorruptRecord(f"raft_state snapshot meta: {chunks} chunks for {data_bytes} bytes")
    ids = [
        NodeId(_NODE_ID.unpack_from(body, _SNAP_HEAD.size + _NODE_ID.size * i)[0])
        for i in range(voter_count + learner_count)
    ]
    conf_state = ConfState(
        voters=frozenset(ids[:voter_count]), learners=frozenset(ids[voter_count:])
    )
    return SnapshotMeta(index=index, term=term, conf_state=conf_state), data_bytes, data_crc


def chunk_count(data_bytes: int) -> int:
    return -(-data_bytes // SNAPSHOT_CHUNK_BYTES_MAX)


def chunk_encode(key: bytes, chunk: bytes) -> bytes:
    invariant(len(chunk) <= SNAPSHOT_CHUNK_BYTES_MAX, "snapshot chunk too large")
    return _sealed(key, chunk)


def chunk_decode(key: bytes, record: bytes) -> bytes:
    shard_id, chunk = _CHUNK_KEY.unpack(key)
    return bytes(_checked_body("snapshots", key, record, f"shard {shard_id} chunk {chunk}"))


def snapshot_data_check(shard_id: int, data: bytes, data_bytes: int, data_crc: int) -> None:
    if len(data) != data_bytes or zlib.crc32(data) != data_crc:
        raise CorruptRecord(
            f"snapshots shard {shard_id}: data of {len(data)} bytes does not match its meta "
            f"({data_bytes} bytes, crc32 {data_crc:#010x})"
        )


# -- ledger rows ---------------------------------------------------------------------------


def row_encode(key: bytes, value: bytes) -> bytes:
    """The same bytes as ``_sealed`` (crc u32 big-endian, then the value), in fewer calls:
    every ledger put goes through here."""
    return _crc32(value, _crc32(key)).to_bytes(4, "big") + value


def row_decode(table: str, key: bytes, record: bytes) -> bytes:
    """The value of a ledger row once its crc has been verified; every ledger get and scan
    goes through here, so the success path does one slice and two crc calls."""
    body = record[4:]
    if len(record) >= 4 and int.from_bytes(record[:4], "big") == _crc32(body, _crc32(key)):
        return body
    return bytes(_checked_body(f"ledger.{table}", key, record, f"key {key.hex()}"))  # raises
