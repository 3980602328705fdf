"""The meta group's bytes: its log entries, its state record and its snapshot.

Rules of this module: pure functions, no I/O. Every encoding is canonical (one value,
one byte string: fixed field order, fixed-width big-endian integers, UTF-8 names with a
one-byte length) and starts with a format byte, so a later build can tell an old record
from a new one instead of misreading it. Decoders check everything (format byte, lengths,
known state codes, no trailing bytes) and raise :class:`MetaCodecError`; they never
return a half-read value. Layouts::

    entry:    u8 format=1, u64 ts_ms, u16 n, n x (str8 region, u8 state,
              u64 expected_version, i64 deadline_ms)
    state:    u8 format=1, str8 cluster_id, u64 version, u16 n,
              n x (str8 name, u8 state, i64 since_ms, i64 deadline_ms)
    snapshot: b"HBMETA", u8 format=1, u64 applied_index, u64 malformed_entries,
              u32 state length, state
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from dataclasses import dataclass

from hongbao.meta.state import ClusterState, RegionEntry, RegionState, SetRegion

ENTRY_FORMAT = 1
STATE_FORMAT = 1
SNAPSHOT_FORMAT = 1
SNAPSHOT_MAGIC = b"HBMETA"
COMMANDS_PER_ENTRY_MAX = 64
"""More SetRegion commands than this in one entry: the entry is malformed (a bound)."""
REGIONS_MAX = 64
NAME_BYTES_MAX = 255

_STATE_CODES: dict[RegionState, int] = {
    RegionState.ACTIVE: 1,
    RegionState.DRAINING: 2,
    RegionState.DRAINED: 3,
}
_STATES_BY_CODE = {code: state for state, code in _STATE_CODES.items()}
_U64 = struct.Struct(">Q")
_I64 = struct.Struct(">q")
_U32 = struct.Struct(">I")
_U16 = struct.Struct(">H")


class MetaCodecError(ValueError):
    """The bytes are not a meta record this build can read."""


@dataclass(frozen=True, slots=True)
class MetaSnapshot:
    applied_index: int
    malformed_entries: int
    state: ClusterState


# -- writing --------------------------------------------------------------------------------


def _str8(text: str) -> bytes:
    data = text.encode()
    if len(data) > NAME_BYTES_MAX:
        raise MetaCodecError(f"name of {len(data)} bytes: at most {NAME_BYTES_MAX}")
    return bytes([len(data)]) + data


def encode_entry(ts_ms: int, commands: Sequence[SetRegion]) -> bytes:
    """One log entry: the commands, applied at the proposer's ``ts_ms``."""
    if not 0 < len(commands) <= COMMANDS_PER_ENTRY_MAX:
        raise MetaCodecError(f"{len(commands)} commands: 1..{COMMANDS_PER_ENTRY_MAX} per entry")
    parts = [bytes([ENTRY_FORMAT]), _U64.pack(ts_ms), _U16.pack(len(commands))]
    for command in commands:
        parts += [
            _str8(command.region),
            bytes([_STATE_CODES[command.state]]),
            _U64.pack(command.expected_version),
            _I64.pack(command.deadline_ms),
        ]
    return b"".join(parts)


def encode_state(state: ClusterState) -> bytes:
    if len(state.regions) > REGIONS_MAX:
        raise MetaCodecError(f"{len(state.regions)} regions: at most {REGIONS_MAX}")
    parts = [
        bytes([STATE_FORMAT]),
        _str8(state.cluster_id),
        _U64.pack(state.version),
        _U16.pack(len(state.regions)),
    ]
    for region in state.regions:
        parts += [
            _str8(region.name),
            bytes([_STATE_CODES[region.state]]),
            _I64.pack(region.since_ms),
            _I64.pack(region.deadline_ms),
        ]
    return b"".join(parts)


def encode_snapshot(snapshot: MetaSnapshot) -> bytes:
    state = encode_state(snapshot.state)
    return b"".join(
        [
            SNAPSHOT_MAGIC,
            bytes([SNAPSHOT_FORMAT]),
            _U64.pack(snapshot.applied_index),
            _U64.pack(snapshot.malformed_entries),
            _U32.pack(len(state)),
            state,
        ]
    )


# -- reading --------------------------------------------------------------------------------


class _Reader:
    """A bounds-checked cursor: every read past the end is a MetaCodecError."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.at = 0

    def take(self, count: int) -> bytes:
        if self.at + count > len(self.data):
            raise MetaCodecError(f"truncated: wanted {count} bytes at offset {self.at}")
        chunk = self.data[self.at : self.at + count]
        self.at += count
        return chunk

    def u8(self) -> int:
        return self.take(1)[0]

    def u16(self) -> int:
        return int(_U16.unpack(self.take(2))[0])

    def u32(self) -> int:
        return int(_U32.unpack(self.take(4))[0])

    def u64(self) -> int:
        return int(_U64.unpack(self.take(8))[0])

    def i64(self) -> int:
        return int(_I64.unpack(self.take(8))[0])

    def str8(self) -> str:
        raw = self.take(self.u8())
        try:
            return raw.decode()
        except UnicodeDecodeError as error:
            raise MetaCodecError(f"a name that is not UTF-8: {error}") from None

    def state(self) -> RegionState:
        code = self.u8()
        state = _STATES_BY_CODE.get(code)
        if state is None:
            raise MetaCodecError(f"unknown region state code {code}")
        return state

    def format(self, expected: int, what: str) -> None:
        found = self.u8()
        if found != expected:
            raise MetaCodecError(f"{what} format {found}: this build reads {expected}")

    def end(self) -> None:
        if self.at != len(self.data):
            raise MetaCodecError(f"{len(self.data) - self.at} trailing bytes")


def decode_entry(data: bytes) -> tuple[int, tuple[SetRegion, ...]]:
    """(ts_ms, commands); each command carries ``ts_ms`` as its ``ts_ms``."""
    reader = _Reader(data)
    reader.format(ENTRY_FORMAT, "entry")
    ts_ms = reader.u64()
    count = reader.u16()
    if not 0 < count <= COMMANDS_PER_ENTRY_MAX:
        raise MetaCodecError(f"{count} commands: 1..{COMMANDS_PER_ENTRY_MAX} per entry")
    commands = []
    for _ in range(count):
        region = reader.str8()
        state = reader.state()
        expected = reader.u64()
        deadline_ms = reader.i64()
        commands.append(SetRegion(region, state, expected, deadline_ms, ts_ms))
    reader.end()
    return ts_ms, tuple(commands)


def _read_state(reader: _Reader) -> ClusterState:
    reader.format(STATE_FORMAT, "state")
    cluster_id = reader.str8()
    version = reader.u64()
    count = reader.u16()
    if count > REGIONS_MAX:
        raise MetaCodecError(f"{count} regions: at most {REGIONS_MAX}")
    regions = []
    for _ in range(count):
        name = reader.str8()
        state = reader.state()
        regions.append(RegionEntry(name, state, reader.i64(), reader.i64()))
    return ClusterState(cluster_id, version, tuple(regions))


def decode_state(data: bytes) -> ClusterState:
    reader = _Reader(data)
    state = _read_state(reader)
    reader.end()
    return state


def decode_snapshot(data: bytes) -> MetaSnapshot:
    reader = _Reader(data)
    if reader.take(len(SNAPSHOT_MAGIC)) != SNAPSHOT_MAGIC:
        raise MetaCodecError("not a meta snapshot (bad magic)")
    reader.format(SNAPSHOT_FORMAT, "snapshot")
    applied_index = reader.u64()
    malformed = reader.u64()
    length = reader.u32()
    state = decode_state(reader.take(length))
    reader.end()
    return MetaSnapshot(applied_index, malformed, state)
