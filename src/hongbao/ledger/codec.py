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

from hongbao._invariant import InvariantViolation, invariant

T = TypeVar("T")

TAG = "t"
INT_MIN = -(2**63)
INT_MAX = 2**63 - 1
WIDE_INT_MAX = 2**127 - 1
"""Bound of the fields a record declares ``wide_ints``: no sum of money reaches it."""
DOCUMENT_BYTES_MAX = 16 * 1024 * 1024
"""Largest document accepted: above any sane log entry or snapshot row."""

_BY_TAG: dict[str, type] = {}
_TAG_OF: dict[type, str] = {}
_HINTS: dict[type, tuple[tuple[str, object], ...]] = {}
_WIDE_INTS: dict[type, frozenset[str]] = {}


class CodecError(ValueError):
    """Bytes that are not the canonical encoding of a value of the expected type."""


def registered(tag: str, *, wide_ints: tuple[str, ...] = ()) -> Callable[[type[T]], type[T]]:
    """Class decorator: make a dataclass encodable under ``tag`` (unique, stable forever).

    ``wide_ints`` names ``int`` fields allowed the range of :data:`WIDE_INT_MAX` instead of
    64 bits: running totals that only grow (cumulative deposits of a shard over its whole
    life) would otherwise, one day, fail to encode inside apply and stop every replica on
    the same committed entry.
    """

    def register(cls: type[T]) -> type[T]:
        invariant(dataclasses.is_dataclass(cls), f"{cls.__name__} is not a dataclass")
        invariant(tag not in _BY_TAG, f"codec tag {tag!r} registered twice")
        names = [field.name for field in dataclasses.fields(cls)]  # type: ignore[arg-type]
        invariant(TAG not in names, f"{cls.__name__} has a field named {TAG!r}")
        invariant(set(wide_ints) <= set(names), f"{cls.__name__}: unknown wide_ints {wide_ints}")
        _BY_TAG[tag] = cls
        _TAG_OF[cls] = tag
        _WIDE_INTS[cls] = frozenset(wide_ints)
        return cls

    return register


def tag_of(cls: type) -> str:
    return _TAG_OF[cls]


def encode(value: object) -> bytes:
    """The canonical bytes of a registered dataclass instance."""
    invariant(type(value) in _TAG_OF, f"{type(value).__name__} is not a registered record")
    return _encoder(type(value))(value).encode("ascii")


def decode(data: bytes, expected: type[T], *, canonical: bool = True) -> T:
    """The value of type ``expected`` whose canonical encoding is ``data``.

    ``canonical=False`` skips the re-encoding check (still fully type-checked): for rows
    the ledger wrote itself, which the store already guards with its own checksum.
    """
    value = decode_union(data, expected, canonical=canonical)
    invariant(isinstance(value, expected), "decode_union returned the wrong type")
    return typing.cast(T, value)


def decode_union(data: bytes, expected: object, *, canonical: bool = True) -> object:
    """Like :func:`decode` for an annotation such as ``Ok | Rejected``."""
    if type(data) is not bytes:
        raise CodecError(f"expected bytes, got {type(data).__name__}")
    if len(data) > DOCUMENT_BYTES_MAX:
        raise CodecError(f"document of {len(data)} bytes exceeds {DOCUMENT_BYTES_MAX}")
    try:
        text = data.decode("ascii")
        plain = _JSON_DECODER.decode(text)
    except (UnicodeDecodeError, ValueError, RecursionError) as error:
        raise CodecError(f"not canonical JSON: {error}") from None
    try:
        value = _decoder(expected)(plain)
    except _Bad as bad:
        raise CodecError(f"${bad.path}: {bad.reason}") from None
    if canonical and encode(value) != data:
        raise CodecError("not the canonical encoding (key order, spacing or escapes differ)")
    return value


# -- compiled encoders: trusted values; a mismatch is a programmer error ----------------------
#
# Each encoder writes the canonical text of its value directly: what
# ``json.dumps(plain, sort_keys=True, separators=(",", ":"), ensure_ascii=True)`` would
# write for the value's plain form, byte for byte, without building the plain form or
# sorting keys at run time (a record's keys are sorted once, when its encoder is compiled).
# Strings go through the very escaper json.dumps uses with ensure_ascii; integers are
# written by int.__repr__, as json.dumps writes them. The hot path writes several rows per
# command, so this is where the ledger spends its time; tests/ledger/test_codec.py checks
# that every encoding is a fixed point of json.dumps.

Encoder = Callable[[object], str]
Decoder = Callable[[object], object]
_ENCODERS: dict[object, Encoder] = {}
_DECODERS: dict[object, Decoder] = {}
_quote: Callable[[str], str] = json.encoder.encode_basestring_ascii


def _encoder(hint: object) -> Encoder:
    found = _ENCODERS.get(hint)
    if found is None:
        found = _ENCODERS[hint] = _compile_encoder(hint)
    return found


def _compile_encoder(hint: object) -> Encoder:
    origin = typing.get_origin(hint)
    if origin is typing.Union or origin is types.UnionType:
        options = [(_matcher(option), _encoder(option)) for option in typing.get_args(hint)]

        def encode_union(value: object) -> str:
            for matches, encode_option in options:
                if matches(value):
                    return encode_option(value)
            raise InvariantViolation(f"{type(value).__name__} does not match {hint}")

        return encode_union
    if origin is tuple:
        encode_item = _encoder(_tuple_item(hint))

        def encode_tuple(value: object) -> str:
            invariant(type(value) is tuple, f"expected a tuple, got {type(value).__name__}")
            items = typing.cast(tuple[object, ...], value)
            return "[" + ",".join([encode_item(item) for item in items]) + "]"

        return encode_tuple
    if hint is int:
        return _encode_int
    if hint is str:
        return _encode_str
    if hint is bool:
        return _encode_bool
    if hint is type(None):
        return _encode_none
    if isinstance(hint, type) and issubclass(hint, enum.Enum):
        enum_type = hint

        def encode_enum(value: object) -> str:
            invariant(type(value) is enum_type, f"{value!r} is not a {enum_type.__name__}")
            plain = typing.cast(enum.Enum, value).value
            invariant(type(plain) is str, f"{enum_type.__name__} values must be strings")
            return _quote(plain)

        return encode_enum
    invariant(isinstance(hint, type) and hint in _TAG_OF, f"unsupported annotation {hint!r}")
    return _compile_record_encoder(typing.cast(type, hint))


def _compile_record_encoder(cls: type) -> Encoder:
    tag_text = _quote(_TAG_OF[cls])
    fields = dict(_hints(cls))
    # (the text before the value, what writes the value: the tag or one field's encoder)
    parts: list[tuple[str, Callable[[object], str]]] = []
    for index, name in enumerate(sorted([TAG, *fields])):
        before = ("{" if index == 0 else ",") + _quote(name) + ":"
        if name == TAG:
            parts.append((before, lambda _value: tag_text))
        elif name in _WIDE_INTS[cls]:
            invariant(fields[name] is int, f"{cls.__name__}.{name}: wide_ints must be int")
            parts.append((before, _field_writer(name, _encode_wide_int)))
        else:
            parts.append((before, _field_writer(name, _encoder(fields[name]))))
    parts_t = tuple(parts)

    def encode_record(value: object) -> str:
        invariant(type(value) is cls, f"{type(value).__name__} is not a {cls.__name__}")
        return "".join([before + write(value) for before, write in parts_t]) + "}"

    return encode_record


def _field_writer(name: str, encode_field: Encoder) -> Encoder:
    def write_field(value: object) -> str:
        return encode_field(getattr(value, name))

    return write_field


def _encode_int(value: object) -> str:
    invariant(type(value) is int, f"{value!r} is not an int")
    invariant(INT_MIN <= typing.cast(int, value) <= INT_MAX, f"integer {value} outside 64 bits")
    return int.__repr__(typing.cast(int, value))


def _encode_wide_int(value: object) -> str:
    invariant(type(value) is int, f"{value!r} is not an int")
    invariant(abs(typing.cast(int, value)) <= WIDE_INT_MAX, f"integer {value} outside 128 bits")
    return int.__repr__(typing.cast(int, value))


def _encode_str(value: object) -> str:
    invariant(type(value) is str, f"{value!r} is not a str")
    return _quote(typing.cast(str, value))


def _encode_bool(value: object) -> str:
    invariant(type(value) is bool, f"{value!r} is not a bool")
    return "true" if value else "false"


def _encode_none(value: object) -> str:
    invariant(value is None, f"{value!r} is not None")
    return "null"


def _matcher(hint: object) -> Callable[[object], bool]:
    """Whether a value has the runtime shape of the (non-union) ``hint``."""
    if hint is type(None):
        return lambda value: value is None
    wanted = tuple if typing.get_origin(hint) is tuple else hint
    invariant(isinstance(wanted, type), f"unsupported union member {hint!r}")
    return lambda value: type(value) is wanted


# -- compiled decoders: untrusted plain JSON; a mismatch is a CodecError ----------------------


class _Bad(Exception):
    """Internal: where (a path below the current value) and why decoding failed."""

    def __init__(self, path: str, reason: str) -> None:
        super().__init__(reason)
        self.path, self.reason = path, reason


def _decoder(hint: object) -> Decoder:
    found = _DECODERS.get(hint)
    if found is None:
        found = _DECODERS[hint] = _compile_decoder(hint)
    return found


def _compile_decoder(hint: object) -> Decoder:
    origin = typing.get_origin(hint)
    if origin is typing.Union or origin is types.UnionType:
        return _compile_union_decoder(typing.get_args(hint))
    if origin is tuple:
        decode_item = _decoder(_tuple_item(hint))

        def decode_tuple(plain: object) -> object:
            if type(plain) is not list:
                raise _Bad("", "expected a list")
            items = []
            for index, item in enumerate(plain):
                try:
                    items.append(decode_item(item))
                except _Bad as bad:
                    raise _Bad(f"[{index}]{bad.path}", bad.reason) from None
            return tuple(items)

        return decode_tuple
    if hint is int:
        return _decode_int
    if hint in (str, bool, type(None)):
        expected_type = typing.cast(type, hint)
        name = "null" if hint is type(None) else expected_type.__name__

        def decode_scalar(plain: object) -> object:
            if type(plain) is not expected_type:
                raise _Bad("", f"expected {name}")
            return plain

        return decode_scalar
    if isinstance(hint, type) and issubclass(hint, enum.Enum):
        enum_type = hint

        def decode_enum(plain: object) -> object:
            try:
                return enum_type(plain)
            except ValueError:
                raise _Bad("", f"{plain!r} is not a {enum_type.__name__}") from None

        return decode_enum
    invariant(isinstance(hint, type) and hint in _TAG_OF, f"unsupported annotation {hint!r}")
    return _compile_record_decoder(typing.cast(type, hint))


def _decode_int(plain: object) -> object:
    if type(plain) is not int:
        raise _Bad("", "expected an integer")
    if not INT_MIN <= plain <= INT_MAX:
        raise _Bad("", "integer outside 64 bits")
    return plain


def _decode_wide_int(plain: object) -> object:
    if type(plain) is not int:
        raise _Bad("", "expected an integer")
    if abs(plain) > WIDE_INT_MAX:
        raise _Bad("", "integer outside 128 bits")
    return plain


def _compile_union_decoder(options: tuple[object, ...]) -> Decoder:
    nullable = type(None) in options
    others = [option for option in options if option is not type(None)]
    if len(others) == 1:
        decode_other = _decoder(others[0])

        def decode_optional(plain: object) -> object:
            return None if plain is None and nullable else decode_other(plain)

        return decode_optional
    invariant(all(option in _TAG_OF for option in others), f"unsupported union {options}")
    by_tag = {_TAG_OF[typing.cast(type, option)]: _decoder(option) for option in others}

    def decode_tagged(plain: object) -> object:
        if plain is None and nullable:
            return None
        if type(plain) is not dict:
            raise _Bad("", "expected an object")
        tag = plain.get(TAG)
        decode_option = by_tag.get(tag) if isinstance(tag, str) else None
        if decode_option is None:
            raise _Bad("", f"tag {tag!r} is not allowed here")
        return decode_option(plain)

    return decode_tagged


def _compile_record_decoder(cls: type) -> Decoder:
    tag = _TAG_OF[cls]
    wide = _WIDE_INTS[cls]
    fields = [
        (name, _decode_wide_int if name in wide else _decoder(field_hint))
        for name, field_hint in _hints(cls)
    ]
    expected_keys = {TAG, *(name for name, _ in fields)}

    def decode_record(plain: object) -> object:
        if type(plain) is not dict:
            raise _Bad("", "expected an object")
        if plain.get(TAG) != tag:
            raise _Bad("", f"expected tag {tag!r}, got {plain.get(TAG)!r}")
        if plain.keys() != expected_keys:
            missing = sorted(expected_keys - set(plain))
            extra = sorted(set(plain) - expected_keys)
            raise _Bad("", f"fields missing {missing} or unexpected {extra}")
        values = {}
        for name, decode_field in fields:
            try:
                values[name] = decode_field(plain[name])
            except _Bad as bad:
                raise _Bad(f".{name}{bad.path}", bad.reason) from None
        try:
            return cls(**values)
        except (ValueError, TypeError) as error:
            raise _Bad("", str(error)) from None

    return decode_record


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
        cached = tuple((field.name, resolved[field.name]) for field in dataclasses.fields(cls))
        _HINTS[cls] = cached
    return cached


def _tuple_item(hint: object) -> object:
    args = typing.get_args(hint)
    invariant(len(args) == 2 and args[1] is Ellipsis, f"only tuple[X, ...] is supported: {hint}")
    return args[0]


# Built once, like the encoder (its hooks are defined just above).
_JSON_DECODER = json.JSONDecoder(
    object_pairs_hook=_object_without_duplicates,
    parse_float=_refuse_fraction,
    parse_constant=_refuse_constant,
)
