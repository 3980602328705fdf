"""Canonical, strict MessagePack for every ledger record, command, query and result.

Rules of this module: it knows nothing about money, only about shapes. A class takes part
by being a dataclass decorated with :func:`registered`; its fields may be ``int``, ``str``,
``bool``, ``None``, a ``StrEnum``, ``tuple[X, ...]``, a registered dataclass, or a union
of those. Every record carries its tag.

Format :data:`FORMAT_VERSION` 1: one version byte, then one MessagePack value as msgspec
writes it. A record is an array ``[tag, field1, field2, ...]`` in the dataclass's field
order; ``int`` is a MessagePack integer within 64 bits; a ``wide_ints`` field is a 16-byte
big-endian two's complement ``bin`` (MessagePack integers stop at 64 bits); ``str`` is UTF-8;
a ``StrEnum`` is its string value; a tuple is an array; a union member is its own tagged
array, so decoding dispatches on the tag. :func:`to_json` renders any document readably.

Why msgspec (C-accelerated, typed, strict) and not the hand-written canonical JSON before it:

* Determinism is what replicas need: msgspec writes every integer and string in its shortest
  spelling and a record's fields in one fixed order, so a value has exactly one encoding.
  :func:`decode` *checks* that by re-encoding what it read (in C): ``encode(decode(b)) == b``
  for every accepted ``b``, and ``decode(encode(v)) == v`` for every value.
* Speed: encoding and decoding run in C; what stays in Python is building the dataclasses.
  The ledger keeps dataclasses (``dataclasses.replace`` everywhere), so each registered class
  gets a *mirror*: a msgspec ``Struct`` (array-like, tagged, exact field count, 64-bit
  integer bounds) that msgspec validates the document into; one compiled function per type
  then builds the dataclass (msgspec cannot decode a union of several dataclasses itself).
  Encoding builds ``[tag, field, ...]`` from the attributes (``operator.attrgetter``), lets
  msgspec write it, and has the strict decoder read the bytes back into the mirror (in C):
  a value that does not fit its annotations never reaches the disk or the log.
* Strictness: exact field sets, ``true`` is not an integer, no floats, integers within 64
  bits (or the wide bound), documents within :data:`DOCUMENT_BYTES_MAX`, a known version.

Garbage raises :class:`CodecError` (a ``ValueError``) with the path of the offending part,
by field name (``$.commands[3].amount_fen``).
"""

from __future__ import annotations

import dataclasses
import enum
import json
import operator
import types
import typing
from collections.abc import Callable
from typing import Annotated, Any, TypeVar

import msgspec
from msgspec.structs import astuple

from hongbao._invariant import InvariantViolation, invariant
from hongbao.ledger.codec_paths import TAG as TAG
from hongbao.ledger.codec_paths import MirrorShapes, located

T = TypeVar("T")

FORMAT_VERSION = 1
"""The first byte of every document; another value is refused, never misread."""
INT_MIN = -(2**63)
INT_MAX = 2**63 - 1
WIDE_INT_MAX = 2**127 - 1
"""Bound of the fields a record declares ``wide_ints``: no sum of money reaches it."""
WIDE_INT_BYTES = 16
DOCUMENT_BYTES_MAX = 16 * 1024 * 1024
"""Largest document accepted: above any sane log entry or snapshot row."""

_VERSION_BYTE = bytes([FORMAT_VERSION])
_Int64 = Annotated[int, msgspec.Meta(ge=INT_MIN, le=INT_MAX)]
_WideBytes = Annotated[bytes, msgspec.Meta(min_length=WIDE_INT_BYTES, max_length=WIDE_INT_BYTES)]
_ENCODER = msgspec.msgpack.Encoder(order="deterministic")

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
    the same committed entry. They are written as 16 bytes, not as MessagePack integers.
    """

    def register(cls: type[T]) -> type[T]:
        invariant(dataclasses.is_dataclass(cls), f"{cls.__name__} is not a dataclass")
        invariant(tag not in _TAG_OF.values(), f"codec tag {tag!r} registered twice")
        fields = dataclasses.fields(cls)  # type: ignore[arg-type]
        names = [field.name for field in fields]
        invariant(TAG not in names, f"{cls.__name__} has a field named {TAG!r}")
        invariant(
            all(field.init and not field.kw_only for field in fields),
            f"{cls.__name__}: every field must be a positional __init__ argument",
        )
        invariant(set(wide_ints) <= set(names), f"{cls.__name__}: unknown wide_ints {wide_ints}")
        _TAG_OF[cls] = tag
        _WIDE_INTS[cls] = frozenset(wide_ints)
        return cls

    return register


def tag_of(cls: type) -> str:
    return _TAG_OF[cls]


def encode(value: object) -> bytes:
    """The canonical bytes of a registered dataclass instance (trusted: a mismatch between
    the value and its annotations is a programmer error, :class:`InvariantViolation`)."""
    cls = type(value)
    to_plain = _TO_PLAIN.get(cls) or _to_plain(cls)
    try:
        payload = _ENCODER.encode(to_plain(value))
        _CHECKERS[cls].decode(payload)  # in C: the bytes are a valid document of this class
    except (msgspec.ValidationError, TypeError, OverflowError, UnicodeEncodeError) as error:
        raise InvariantViolation(f"{cls.__name__} does not encode: {error}") from None
    return _VERSION_BYTE + payload


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
    payload = _payload(data)
    plan = _PLANS.get(expected)
    if plan is None:
        plan = _PLANS[expected] = _compile_plan(expected)
    try:
        mirror = plan.decoder.decode(payload)
    except msgspec.ValidationError as error:  # a subclass of DecodeError: caught first
        raise CodecError(located(_SHAPES, plan.hint, payload, str(error))) from None
    except (msgspec.DecodeError, RecursionError) as error:
        raise CodecError(f"not MessagePack: {error}") from None
    if canonical and _ENCODER.encode(mirror) != payload:
        raise CodecError("not the canonical encoding (an integer or length spelled longer)")
    try:
        return plan.convert(mirror)
    except _Bad as bad:
        raise CodecError(f"${bad.path}: {bad.reason}") from None


def to_json(data: bytes, *, indent: int | None = None) -> str:
    """Any stored document as JSON, for people debugging (logs and rows are binary now).

    A record becomes an object with its tag under ``"t"`` first, then its fields in order;
    wide integers print as integers. The document is type-checked (not for canonical
    form, so a suspect row can still be read); garbage raises :class:`CodecError`.
    """
    return json.dumps(_plain(decode_any(data, canonical=False)), ensure_ascii=False, indent=indent)


def decode_any(data: bytes, *, canonical: bool = True) -> object:
    """The record, of whichever registered class its tag names (dumps, audits, tools)."""
    return decode_union(data, _any_record(), canonical=canonical)


def _payload(data: bytes) -> bytes:
    if type(data) is not bytes:
        raise CodecError(f"expected bytes, got {type(data).__name__}")
    if len(data) > DOCUMENT_BYTES_MAX:
        raise CodecError(f"document of {len(data)} bytes exceeds {DOCUMENT_BYTES_MAX}")
    if not data:
        raise CodecError("empty document: no format version byte")
    if data[0] != FORMAT_VERSION:
        raise CodecError(f"unknown format version {data[0]} (this build reads {FORMAT_VERSION})")
    return data[1:]


def _any_record() -> object:
    """The union of every registered record (rebuilt if registrations grew)."""
    key = len(_TAG_OF)
    found = _ANY_RECORD.get(key)
    if found is None:
        found = _ANY_RECORD[key] = typing.Union[tuple(_TAG_OF)]  # noqa: UP007
    return found


def _plain(value: object) -> object:
    if type(value) in _TAG_OF:
        plain: dict[str, object] = {TAG: _TAG_OF[type(value)]}
        for name, _ in _hints(type(value)):
            plain[name] = _plain(getattr(value, name))
        return plain
    if isinstance(value, tuple):
        return [_plain(item) for item in value]
    if isinstance(value, enum.Enum):
        return value.value
    return value


# -- mirrors: one msgspec Struct per registered dataclass ------------------------------------

_MIRRORS: dict[type, type[msgspec.Struct]] = {}
_MIRROR_TAGS: dict[type, str] = {}
_MIRROR_FIELDS: dict[type, tuple[tuple[str, object], ...]] = {}
"""mirror -> its (field name, mirror annotation) pairs: names error paths."""
_SHAPES = MirrorShapes(_MIRROR_TAGS, _MIRROR_FIELDS)


def _mirror(cls: type) -> type[msgspec.Struct]:
    found = _MIRRORS.get(cls)
    if found is None:
        wide = _WIDE_INTS[cls]
        fields: list[tuple[str, object]] = []
        for name, hint in _hints(cls):
            if name in wide:
                invariant(hint is int, f"{cls.__name__}.{name}: wide_ints must be int")
                fields.append((name, _WideBytes))
            else:
                fields.append((name, _mirror_hint(hint)))
        found = msgspec.defstruct(
            cls.__name__,
            fields,
            tag=_TAG_OF[cls],
            array_like=True,
            forbid_unknown_fields=True,
            gc=False,  # trees of immutable values: never part of a reference cycle
            module=__name__,
        )
        _MIRRORS[cls] = found
        _MIRROR_FIELDS[found] = tuple(fields)
        _MIRROR_TAGS[found] = _TAG_OF[cls]
    return found


def _mirror_hint(hint: object) -> object:
    """The annotation msgspec validates against, for a field annotated ``hint``."""
    if _is_union(hint):
        mirrored = tuple(_mirror_hint(option) for option in typing.get_args(hint))
        return typing.Union[mirrored]  # noqa: UP007
    if typing.get_origin(hint) is tuple:
        return tuple[_mirror_hint(_tuple_item(hint)), ...]  # type: ignore[misc]
    if hint is int:
        return _Int64
    if hint in (str, bool, type(None)):
        return hint
    if isinstance(hint, type) and issubclass(hint, enum.Enum):
        invariant(
            all(type(member.value) is str for member in hint),
            f"{hint.__name__} values must be strings",
        )
        return hint
    invariant(isinstance(hint, type) and hint in _TAG_OF, f"unsupported annotation {hint!r}")
    return _mirror(typing.cast(type, hint))


# -- encoding: dataclass -> plain arrays (compiled per class), checked by the strict decoder --

ToPlain = Callable[[Any], object]
_TO_PLAIN: dict[type, Callable[[object], list[object]]] = {}
_CHECKERS: dict[type, msgspec.msgpack.Decoder[Any]] = {}


def _to_plain(cls: type) -> Callable[[object], list[object]]:
    found = _TO_PLAIN.get(cls)
    if found is None:
        invariant(cls in _TAG_OF, f"{cls.__name__} is not a registered record")
        _CHECKERS[cls] = msgspec.msgpack.Decoder(_mirror(cls))
        found = _TO_PLAIN[cls] = _compile_to_plain(cls)
    return found


def _compile_to_plain(cls: type) -> Callable[[object], list[object]]:
    """``[tag, field1, ...]`` of a value: what msgspec writes for its mirror, built from the
    dataclass's attributes in C (attrgetter); only nested records and wide ints need Python."""
    tag = _TAG_OF[cls]
    names = [name for name, _ in _hints(cls)]
    getter = operator.attrgetter(*names)
    many = len(names) > 1  # attrgetter of one name returns the value, not a 1-tuple
    plan: list[tuple[int, ToPlain]] = []
    for index, (name, hint) in enumerate(_hints(cls)):
        to_plain = _wide_to_bytes if name in _WIDE_INTS[cls] else _plainer(hint)
        if to_plain is not None:
            plan.append((index + 1, to_plain))
    plan_t = tuple(plan)

    def record_to_plain(value: object) -> list[object]:
        values = [tag, *getter(value)] if many else [tag, getter(value)]
        for index, to_plain in plan_t:
            values[index] = to_plain(values[index])
        return values

    return record_to_plain


def _plainer(hint: object) -> ToPlain | None:
    """What a field of annotation ``hint`` needs before msgspec writes it; None: nothing."""
    if typing.get_origin(hint) is tuple:
        item = _plainer(_tuple_item(hint))
        return None if item is None else lambda items: [item(value) for value in items]
    options = typing.get_args(hint) if _is_union(hint) else (hint,)
    if not any(option in _TAG_OF for option in options):
        return None
    return _nested_to_plain


def _nested_to_plain(value: object) -> object:
    """A record inside a record, by its own class (a wrong class is refused by the check)."""
    return _to_plain(type(value))(value) if type(value) in _TAG_OF else value


def _wide_to_bytes(value: object) -> bytes:
    if type(value) is not int or not -WIDE_INT_MAX <= value <= WIDE_INT_MAX:
        raise InvariantViolation(f"{value!r} is not an integer within 128 bits")
    return value.to_bytes(WIDE_INT_BYTES, "big", signed=True)


# -- decoding: bytes -> mirror (msgspec, in C) -> dataclass (compiled per type) ---------------

Converter = Callable[[Any], object]
_CONVERTERS: dict[object, Converter | None] = {}


class _Bad(Exception):
    """Internal: where (a path below the current value) and why building a value failed."""

    def __init__(self, path: str, reason: str) -> None:
        super().__init__(reason)
        self.path, self.reason = path, reason


@dataclasses.dataclass(frozen=True, slots=True)
class _Plan:
    hint: object  # the mirror annotation: names the parts of an error path
    decoder: msgspec.msgpack.Decoder[Any]
    convert: Converter


_PLANS: dict[object, _Plan] = {}
_ANY_RECORD: dict[int, object] = {}


def _compile_plan(expected: object) -> _Plan:
    hint = _mirror_hint(expected)
    convert = _converter(expected)
    invariant(convert is not None, f"{expected!r} is not a record or a union of records")
    return _Plan(hint, msgspec.msgpack.Decoder(hint), typing.cast(Converter, convert))


def _converter(hint: object) -> Converter | None:
    """What turns a decoded mirror value into the value of ``hint``; None: as decoded."""
    if hint in _CONVERTERS:
        return _CONVERTERS[hint]
    found: Converter | None = None
    if _is_union(hint):
        found = _union_converter(typing.get_args(hint))
    elif typing.get_origin(hint) is tuple:
        found = _tuple_converter(_tuple_item(hint))
    elif isinstance(hint, type) and hint in _TAG_OF:
        found = _record_converter(hint)
    _CONVERTERS[hint] = found
    return found


def _union_converter(options: tuple[object, ...]) -> Converter | None:
    by_mirror: dict[type, Converter | None] = {
        _mirror(option): _converter(option) for option in options if option in _TAG_OF
    }
    if not by_mirror:
        return None  # int | None and the like: msgspec's value is the value

    def convert_union(value: object) -> object:
        convert = by_mirror.get(type(value))
        return value if convert is None else convert(value)

    return convert_union


def _tuple_converter(item: object) -> Converter | None:
    convert_item = _converter(item)
    if convert_item is None:
        return None  # msgspec already built the tuple of scalars

    def convert_tuple(items: tuple[object, ...]) -> object:
        try:
            return tuple([convert_item(value) for value in items])
        except _Bad:  # find the failing index again: errors are deterministic
            for index, value in enumerate(items):
                try:
                    convert_item(value)
                except _Bad as bad:
                    raise _Bad(f"[{index}]{bad.path}", bad.reason) from None
            raise

    return convert_tuple


def _record_converter(cls: type) -> Converter:
    wide = _WIDE_INTS[cls]
    plan: list[tuple[int, str, Converter]] = []
    for index, (name, hint) in enumerate(_hints(cls)):
        convert = _wide_from_bytes if name in wide else _converter(hint)
        if convert is not None:
            plan.append((index, name, convert))
    plan_t = tuple(plan)

    def convert_record(mirror: msgspec.Struct) -> object:
        values = list(astuple(mirror))
        for index, name, convert in plan_t:
            try:
                values[index] = convert(values[index])
            except _Bad as bad:
                raise _Bad(f".{name}{bad.path}", bad.reason) from None
        try:
            return cls(*values)
        except (ValueError, TypeError) as error:  # the dataclass's own __post_init__ checks
            raise _Bad("", str(error)) from None

    def convert_flat(mirror: msgspec.Struct) -> object:
        try:
            return cls(*astuple(mirror))
        except (ValueError, TypeError) as error:
            raise _Bad("", str(error)) from None

    return convert_record if plan_t else convert_flat


def _wide_from_bytes(data: bytes) -> object:
    number = int.from_bytes(data, "big", signed=True)
    if abs(number) > WIDE_INT_MAX:
        raise _Bad("", "integer outside 128 bits")
    return number


# -- annotations ------------------------------------------------------------------------------


def _hints(cls: type) -> tuple[tuple[str, object], ...]:
    cached = _HINTS.get(cls)
    if cached is None:
        resolved = typing.get_type_hints(cls)
        cached = tuple((field.name, resolved[field.name]) for field in dataclasses.fields(cls))
        _HINTS[cls] = cached
    return cached


def _is_union(hint: object) -> bool:
    return typing.get_origin(hint) in (typing.Union, types.UnionType)


def _tuple_item(hint: object) -> object:
    args = typing.get_args(hint)
    invariant(len(args) == 2 and args[1] is Ellipsis, f"only tuple[X, ...] is supported: {hint}")
    return args[0]
