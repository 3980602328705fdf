"""Canonical, strict JSON for every ledger record, command, query and result.

Rules of this module: it knows nothing about money, only about shapes. A class takes part
by being a dataclass decorated with :func:`registered`; its fields may be ``int``, ``str``,
``bool``, ``None``, a ``StrEnum``, ``tuple[X, ...]``, a registered dataclass, or a union
of those. Every object carries its tag under ``"t"``.

Why JSON with sorted keys and not ``struct``:

* Determinism is what replicas need, and canonical JSON gives it: sorted keys, no spaces,
  ASCII only, integers only (floats, NaN and infinities are refused when reading). The
  encoding of a value is unique, and :func:`decode` *checks* that by re-encoding, so a
  document is accepted only in its one canonical spelling: ``encode(decode(b)) == b`` for
  every accepted ``b``, and ``decode(encode(v)) == v`` for every value.
* It is self-describing and readable in a log dump, it versions by adding fields, and the
  stdlib parser is C-fast. The price is size (field names repeat): a deposit is ~80
  bytes, which the log batches and LMDB pages absorb.
* Strictness is cheap to state: exact field sets, duplicate keys refused, ``true`` is not
  an integer, integers stay within 64 bits, documents within :data:`DOCUMENT_BYTES_MAX`.

Garbage raises :class:`CodecError` (a ``ValueError``) with the path of the offending part.
"""

from __future__ import annotations

import dataclasses
import enum
import json
import types
import typing
from collections.abc import Callable
from typing import TypeVar

from hongbao._invariant import invariant

T = TypeVar("T")

TAG = "t"
INT_MIN = -(2**63)
INT_MAX = 2**63 - 1
DOCUMENT_BYTES_MAX = 16 * 1024 * 1024
"""Largest document accepted: above any sane log entry or snapshot row."""

_BY_TAG: dict[str, type] = {}
_TAG_OF: dict[type, str] = {}
_HINTS: dict[type, tuple[tuple[str, object], ...]] = {}


class CodecError(ValueError):
    """Bytes that are not the canonical encoding of a value of the expected type."""


def registered(tag: str) -> Callable[[type[T]], type[T]]:
    """Class decorator: make a dataclass encodable under ``tag`` (unique, stable forever)."""

    def register(cls: type[T]) -> type[T]:
        invariant(dataclasses.is_dataclass(cls), f"{cls.__name__} is not a dataclass")
        invariant(tag not in _BY_TAG, f"codec tag {tag!r} registered twice")
        names = [field.name for field in dataclasses.fields(cls)]  # type: ignore[arg-type]
        invariant(TAG not in names, f"{cls.__name__} has a field named {TAG!r}")
        _BY_TAG[tag] = cls
        _TAG_OF[cls] = tag
        return cls

    return register


def tag_of(cls: type) -> str:
    return _TAG_OF[cls]


def encode(value: object) -> bytes:
    """The canonical bytes of a registered dataclass instance."""
    invariant(type(value) in _TAG_OF, f"{type(value).__name__} is not a registered record")
    plain = _to_plain(value, type(value), "$")
    text = json.dumps(plain, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return text.encode("ascii")


def decode(data: bytes, expected: type[T]) -> T:
    """The value of type ``expected`` whose canonical encoding is ``data``."""
    value = decode_union(data, expected)
    invariant(isinstance(value, expected), "decode_union returned the wrong type")
    return typing.cast(T, value)


def decode_union(data: bytes, expected: object) -> object:
    """Like :func:`decode` for an annotation such as ``Ok | Rejected``."""
    if type(data) is not bytes:
        raise CodecError(f"expected bytes, got {type(data).__name__}")
    if len(data) > DOCUMENT_BYTES_MAX:
        raise CodecError(f"document of {len(data)} bytes exceeds {DOCUMENT_BYTES_MAX}")
    try:
        text = data.decode("ascii")
        plain = json.loads(
            text,
            object_pairs_hook=_object_without_duplicates,
            parse_float=_refuse_fraction,
            parse_constant=_refuse_constant,
        )
    except (UnicodeDecodeError, ValueError, RecursionError) as error:
        raise CodecError(f"not canonical JSON: {error}") from None
    value = _from_plain(plain, expected, "$")
    if encode(value) != data:
        raise CodecError("not the canonical encoding (key order, spacing or escapes differ)")
    return value


# -- encoding ---------------------------------------------------------------------------------


def _to_plain(value: object, hint: object, path: str) -> object:
    origin = typing.get_origin(hint)
    if origin is typing.Union or origin is types.UnionType:
        for option in typing.get_args(hint):
            if _matches(value, option):
                return _to_plain(value, option, path)
        invariant(False, f"{path}: {type(value).__name__} does not match {hint}")
    if origin is tuple:
        invariant(isinstance(value, tuple), f"{path}: expected a tuple")
        item_hint = _tuple_item(hint, path)
        items = typing.cast(tuple[object, ...], value)
        return [_to_plain(item, item_hint, f"{path}[{i}]") for i, item in enumerate(items)]
    invariant(_matches(value, hint), f"{path}: {value!r} is not a {hint}")
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, int) and not isinstance(value, bool):
        invariant(INT_MIN <= value <= INT_MAX, f"{path}: integer {value} outside 64 bits")
    if type(value) in _TAG_OF:
        plain: dict[str, object] = {TAG: _TAG_OF[type(value)]}
        for name, field_hint in _hints(type(value)):
            plain[name] = _to_plain(getattr(value, name), field_hint, f"{path}.{name}")
        return plain
    return value


def _matches(value: object, hint: object) -> bool:
    """Whether ``value`` has the runtime shape of the (non-union) ``hint``."""
    if hint is type(None):
        return value is None
    if hint is bool:
        return type(value) is bool
    if hint is int:
        return type(value) is int
    if hint is str:
        return type(value) is str
    if typing.get_origin(hint) is tuple:
        return isinstance(value, tuple)
    if isinstance(hint, type):
        return type(value) is hint
    return False


# -- decoding ---------------------------------------------------------------------------------


def _from_plain(plain: object, hint: object, path: str) -> object:
    origin = typing.get_origin(hint)
    if origin is typing.Union or origin is types.UnionType:
        return _from_plain_union(plain, typing.get_args(hint), path)
    if origin is tuple:
        if type(plain) is not list:
            raise CodecError(f"{path}: expected a list")
        item_hint = _tuple_item(hint, path)
        return tuple(_from_plain(item, item_hint, f"{path}[{i}]") for i, item in enumerate(plain))
    if hint is type(None):
        if plain is not None:
            raise CodecError(f"{path}: expected null")
        return None
    if hint in (bool, str):
        if type(plain) is not hint:
            raise CodecError(f"{path}: expected {typing.cast(type, hint).__name__}")
        return plain
    if hint is int:
        if type(plain) is not int:
            raise CodecError(f"{path}: expected an integer")
        if not INT_MIN <= plain <= INT_MAX:
            raise CodecError(f"{path}: integer outside 64 bits")
        return plain
    if isinstance(hint, type) and issubclass(hint, enum.Enum):
        try:
            return hint(plain)
        except ValueError:
            raise CodecError(f"{path}: {plain!r} is not a {hint.__name__}") from None
    if isinstance(hint, type) and hint in _TAG_OF:
        return _record_from_plain(plain, hint, path)
    invariant(False, f"{path}: unsupported annotation {hint!r}")
    return None  # unreachable


def _from_plain_union(plain: object, options: tuple[object, ...], path: str) -> object:
    if plain is None:
        if type(None) in options:
            return None
        raise CodecError(f"{path}: null is not allowed here")
    others = [option for option in options if option is not type(None)]
    if len(others) == 1:
        return _from_plain(plain, others[0], path)
    invariant(all(option in _TAG_OF for option in others), f"{path}: unsupported union")
    if type(plain) is not dict:
        raise CodecError(f"{path}: expected an object")
    cls = _BY_TAG.get(plain.get(TAG)) if type(plain.get(TAG)) is str else None
    if cls is None or cls not in others:
        raise CodecError(f"{path}: tag {plain.get(TAG)!r} is not allowed here")
    return _record_from_plain(plain, cls, path)


def _record_from_plain(plain: object, cls: type, path: str) -> object:
    if type(plain) is not dict:
        raise CodecError(f"{path}: expected an object")
    if plain.get(TAG) != _TAG_OF[cls]:
        raise CodecError(f"{path}: expected tag {_TAG_OF[cls]!r}, got {plain.get(TAG)!r}")
    hints = _hints(cls)
    expected_keys = {TAG, *(name for name, _ in hints)}
    if set(plain) != expected_keys:
        missing = sorted(expected_keys - set(plain))
        extra = sorted(set(plain) - expected_keys)
        raise CodecError(f"{path}: fields missing {missing} or unexpected {extra}")
    values = {name: _from_plain(plain[name], hint, f"{path}.{name}") for name, hint in hints}
    try:
        return cls(**values)
    except (ValueError, TypeError) as error:
        raise CodecError(f"{path}: {error}") from None


def _object_without_duplicates(pairs: list[tuple[str, object]]) -> dict[str, object]:
    result = dict(pairs)
    if len(result) != len(pairs):
        raise CodecError("duplicate keys in an object")
    return result


def _refuse_fraction(text: str) -> object:
    raise CodecError(f"non-integer number {text!r}: amounts are integers in fen")


def _refuse_constant(text: str) -> object:
    raise CodecError(f"constant {text!r} is not allowed")


# -- annotations ------------------------------------------------------------------------------


def _hints(cls: type) -> tuple[tuple[str, object], ...]:
    cached = _HINTS.get(cls)
    if cached is None:
        resolved = typing.get_type_hints(cls)
        cached = tuple(
            (field.name, resolved[field.name])
            for field in dataclasses.fields(cls)  # type: ignore[arg-type]
        )
        _HINTS[cls] = cached
    return cached


def _tuple_item(hint: object, path: str) -> object:
    args = typing.get_args(hint)
    invariant(len(args) == 2 and args[1] is Ellipsis, f"{path}: only tuple[X, ...] is supported")
    return args[0]
