"""Error paths by field name: msgspec reports ``$[2][0][3]`` for array-like records.

Rules of this module: only on the error path (a document was already refused), and never
raises: at worst the positional path stays as msgspec wrote it. A record is an array
``[tag, field1, ...]``, so position 0 is the tag (``.t``) and position ``i`` the i-th field;
inside a union, the member is found by the tag the undecoded document carries.
"""

from __future__ import annotations

import re
import types
import typing
from dataclasses import dataclass

import msgspec

TAG = "t"
"""Where a record's tag goes: position 0 in error paths, the first key of to_json output."""
_AT = re.compile(r"(.*) - at `\$((?:\[\d+\])*)`", re.DOTALL)


@dataclass(frozen=True, slots=True)
class MirrorShapes:
    """What the codec knows of its mirror Structs: their tags and (field, annotation) pairs."""

    tags: dict[type, str]
    fields: dict[type, tuple[tuple[str, object], ...]]


def located(shapes: MirrorShapes, hint: object, payload: bytes, message: str) -> str:
    """``message`` of msgspec with its path spelled by field name: ``$.commands[0].user_id``."""
    match = _AT.fullmatch(message)
    if match is None:
        return f"$: {message}"
    reason, raw_path = match.groups()
    try:
        plain: object = msgspec.msgpack.decode(payload)
    except (msgspec.DecodeError, RecursionError):
        plain = None
    indexes = [int(index) for index in re.findall(r"\d+", raw_path)]
    path = _named_path(shapes, hint, plain, indexes)
    if path.endswith(f".{TAG}"):
        reason = f"tag not allowed here ({reason})"
    return f"{path}: {reason}"


def _named_path(shapes: MirrorShapes, hint: object, plain: object, indexes: list[int]) -> str:
    parts = ["$"]
    current: object = hint
    for index in indexes:
        current = _concrete(shapes, current, plain)
        fields = shapes.fields.get(current) if isinstance(current, type) else None
        if (fields is not None or _is_record_union(shapes, current)) and index == 0:
            parts.append(f".{TAG}")
            current = str
        elif fields is not None and index <= len(fields):
            name, current = fields[index - 1]
            parts.append(f".{name}")
        else:
            parts.append(f"[{index}]")
            args = typing.get_args(current)
            is_tuple = typing.get_origin(current) is tuple and len(args) == 2
            current = args[0] if is_tuple else None
        plain = plain[index] if type(plain) is list and index < len(plain) else None
    return "".join(parts)


def _is_union(hint: object) -> bool:
    return typing.get_origin(hint) in (typing.Union, types.UnionType)


def _is_record_union(shapes: MirrorShapes, hint: object) -> bool:
    """A union of records whose member could not be told (its tag is the bad part)."""
    return _is_union(hint) and any(option in shapes.tags for option in typing.get_args(hint))


def _concrete(shapes: MirrorShapes, hint: object, plain: object) -> object:
    """The union member ``plain`` (an undecoded array) belongs to, by its tag."""
    if not _is_union(hint):
        return hint
    tag = plain[0] if type(plain) is list and plain else None
    for option in typing.get_args(hint):
        if option in shapes.tags and shapes.tags[option] == tag:
            return option
    others = [option for option in typing.get_args(hint) if option is not type(None)]
    return others[0] if len(others) == 1 else hint
