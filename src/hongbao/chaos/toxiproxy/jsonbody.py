"""Request bodies read the way Go's ``encoding/json`` reads them into the reference's structs.

Rules (toxiproxy-api.md §1.1): unknown keys are ignored; keys match case-insensitively
(the last occurrence wins); ``null`` means absent and a whole-body ``null`` is ``{}``;
bytes after the first complete value are ignored; an empty body is ``EOF``; a wrong JSON
type for a field is an error; toxic attributes are plain integer literals only. Every
error is a ``BodyError`` whose text follows ``bad request body: `` in the 400 answer.
"""

from __future__ import annotations

import json
from typing import Literal

from hongbao.chaos.toxiproxy.spec import FLOAT32_MAX, INT64_MAX, INT64_MIN, JsonValue

FieldKind = Literal["string", "bool", "number", "raw"]
GO_TYPES: dict[FieldKind, str] = {"string": "string", "bool": "bool", "number": "float32"}


class BodyError(Exception):
    """A body the reference's decoder rejects; ``str`` is the decoder's message."""


def _no_constants(name: str) -> JsonValue:
    raise ValueError(f"invalid character '{name[0]}' looking for beginning of value")


def decode(raw: bytes) -> JsonValue:
    """The first JSON value of the body (what Go's ``Decoder.Decode`` reads)."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise BodyError("invalid UTF-8 in request body") from None
    text = text.lstrip(" \t\r\n")
    if not text:
        raise BodyError("EOF")
    decoder = json.JSONDecoder(parse_constant=_no_constants)
    try:
        value: JsonValue = decoder.raw_decode(text)[0]
    except ValueError as error:
        message = error.msg if isinstance(error, json.JSONDecodeError) else str(error)
        raise BodyError(message) from None
    return value


def json_type(value: JsonValue) -> str:
    """Go's name for the JSON type of a value, as its unmarshal errors print it."""
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object"


def read_fields(
    value: JsonValue, kinds: dict[str, FieldKind], *, struct_name: str
) -> dict[str, JsonValue]:
    """The struct's fields present in the object (case-insensitive, null = absent)."""
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise BodyError(f"json: cannot unmarshal {json_type(value)} into Go value of type "
                        f"{struct_name}")
    found: dict[str, JsonValue] = {}
    for key, item in value.items():
        field_name = key.lower()
        kind = kinds.get(field_name)
        if kind is None or item is None:
            continue
        if not _kind_matches(kind, item):
            raise BodyError(f"json: cannot unmarshal {json_type(item)} into Go struct field "
                            f"{struct_name}.{field_name} of type {GO_TYPES.get(kind, 'any')}")
        if kind == "number" and isinstance(item, int | float) and abs(item) > FLOAT32_MAX:
            raise BodyError(f"json: cannot unmarshal number {item} into Go struct field "
                            f"{struct_name}.{field_name} of type float32")
        found[field_name] = item
    return found


def _kind_matches(kind: FieldKind, item: JsonValue) -> bool:
    if kind == "string":
        return isinstance(item, str)
    if kind == "bool":
        return isinstance(item, bool)
    if kind == "number":
        return isinstance(item, int | float) and not isinstance(item, bool)
    return True


def read_attributes(
    value: JsonValue, names: tuple[str, ...], *, toxic_type: str
) -> dict[str, int]:
    """The type's integer attributes present in ``value``; unknown keys are dropped."""
    struct_name = f"toxics.{toxic_type}"
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise BodyError(f"json: cannot unmarshal {json_type(value)} into Go value of type "
                        f"{struct_name}")
    found: dict[str, int] = {}
    for key, item in value.items():
        name = key.lower()
        if name not in names or item is None:
            continue
        if isinstance(item, bool) or not isinstance(item, int):
            shown = f"number {item}" if isinstance(item, float) else json_type(item)
            raise BodyError(f"json: cannot unmarshal {shown} into Go struct field "
                            f"{struct_name}.{name} of type int64")
        if not INT64_MIN <= item <= INT64_MAX:
            raise BodyError(f"json: cannot unmarshal number {item} into Go struct field "
                            f"{struct_name}.{name} of type int64")
        found[name] = item
    return found


PROXY_FIELDS: dict[str, FieldKind] = {
    "name": "string", "listen": "string", "upstream": "string", "enabled": "bool",
}
TOXIC_FIELDS: dict[str, FieldKind] = {
    "name": "string", "type": "string", "stream": "string", "toxicity": "number",
    "attributes": "raw",
}
TOXIC_UPDATE_FIELDS: dict[str, FieldKind] = {"toxicity": "number", "attributes": "raw"}
