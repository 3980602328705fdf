"""Just enough of the protobuf wire format to forward messages without re-encoding them.

Why: a router only routes. Parsing a request in full and serialising it again would cost
its CPU twice for nothing, so the router reads the bytes it must (the routing key, the
operations of a Batch) and builds what it sends by concatenation, which protobuf allows:
a message is a sequence of (tag, value) records, a length-delimited field's value is a
nested message's bytes as they are, and a repeated field is its records one after the
other. So ``Operation{deposit: <DepositRequest bytes>}`` is the tag of field 1, a length
and the client's own bytes, and an ``ExecuteRequest`` is such records laid end to end.

Rules of this module: pure functions on ``bytes``; malformed input raises
:class:`WireError` (the caller answers INVALID_ARGUMENT), never anything else.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Final

WIRE_VARINT: Final = 0
WIRE_I64: Final = 1
WIRE_LEN: Final = 2
WIRE_I32: Final = 5
VARINT_BYTES_MAX: Final = 10


class WireError(ValueError):
    """The bytes are not a well-formed protobuf message."""


def read_varint(data: bytes, pos: int) -> tuple[int, int]:
    """The varint at ``pos`` and the position after it."""
    value = 0
    shift = 0
    end = min(len(data), pos + VARINT_BYTES_MAX)
    while pos < end:
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, pos
        shift += 7
    raise WireError("truncated or overlong varint")


def varint(value: int) -> bytes:
    out = bytearray()
    while True:
        low = value & 0x7F
        value >>= 7
        if value:
            out.append(low | 0x80)
        else:
            out.append(low)
            return bytes(out)


def records(data: bytes) -> Iterator[tuple[int, int, int, int]]:
    """``(field_number, wire_type, start, end)`` of each record; ``data[start:end]`` is the
    value (for a length-delimited field, its payload without the length)."""
    pos = 0
    size = len(data)
    while pos < size:
        key, pos = read_varint(data, pos)
        field_number, wire_type = key >> 3, key & 7
        if field_number == 0:
            raise WireError("field number 0")
        if wire_type == WIRE_VARINT:
            start = pos
            _, pos = read_varint(data, pos)
        elif wire_type == WIRE_LEN:
            length, start = read_varint(data, pos)
            pos = start + length
        elif wire_type == WIRE_I64:
            start, pos = pos, pos + 8
        elif wire_type == WIRE_I32:
            start, pos = pos, pos + 4
        else:
            raise WireError(f"unsupported wire type {wire_type}")
        if pos > size:
            raise WireError("a field runs past the end of the message")
        yield field_number, wire_type, start, pos


def length_delimited(field_number: int, payload: bytes) -> bytes:
    """The record of a length-delimited field (a nested message, bytes, a string)."""
    return varint((field_number << 3) | WIRE_LEN) + varint(len(payload)) + payload


def repeated_messages(data: bytes, field_number: int) -> list[bytes]:
    """The payloads of every ``field_number`` record (a repeated message field), in order;
    other fields are skipped."""
    return [
        data[start:end]
        for number, wire_type, start, end in records(data)
        if number == field_number and wire_type == WIRE_LEN
    ]


def repeated_field(field_number: int, payloads: list[bytes]) -> bytes:
    """A message holding ``payloads`` as a repeated message field ``field_number``."""
    return b"".join(length_delimited(field_number, payload) for payload in payloads)


def oneof_message(data: bytes) -> tuple[int, bytes]:
    """The last length-delimited record of a message whose fields form one oneof of
    messages (``Operation``, ``OperationResult``): its field number and payload.
    ``(0, b"")`` when it has none (an empty oneof)."""
    found: tuple[int, bytes] = (0, b"")
    for number, wire_type, start, end in records(data):
        if wire_type == WIRE_LEN:
            found = (number, data[start:end])  # the last one wins, as protobuf parses
    return found
