"""Typed readers for TOML tables: each problem names its place (``nodes[2].port``).

Shared by the topology parser and the parsers of its sections (routers, router settings).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import NoReturn, TypeGuard


class _Problem(Exception):
    """Raised inside the parsers; :func:`parse_topology` adds the source name."""

    def __init__(self, where: str, problem: str) -> None:
        super().__init__(where, problem)
        self.where = where
        self.problem = problem



def _is_int(value: object) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool)  # TOML true is not 1


_TYPE_NAMES = {bool: "a boolean", int: "an integer", str: "a string", list: "an array",
               dict: "a table", float: "a float"}  # fmt: skip


def _type_name(value: object) -> str:
    return _TYPE_NAMES.get(type(value), type(value).__name__)


def _reject_unknown_keys(table: Mapping[str, object], allowed: frozenset[str], where: str) -> None:
    unknown = sorted(set(table) - allowed)
    if unknown:
        raise _Problem(
            where, f"unknown key(s) {', '.join(unknown)} (allowed: {', '.join(sorted(allowed))})"
        )


def _int(
    table: Mapping[str, object],
    key: str,
    where: str,
    *,
    minimum: int,
    maximum: int | None = None,
    default: int | None = None,
) -> int:
    value = table.get(key, default)
    if value is None:
        _missing(where, key)
    place = f"{where}.{key}" if where != "top level" else key
    if not _is_int(value):
        raise _Problem(place, f"must be an integer, not {_type_name(value)} ({value!r})")
    if value < minimum or (maximum is not None and value > maximum):
        bound = f"in {minimum}..{maximum}" if maximum is not None else f">= {minimum}"
        raise _Problem(place, f"{value} must be {bound}")
    return value


def _optional_port(table: Mapping[str, object], key: str, where: str, port_max: int) -> int | None:
    """An optional port (``metrics_port``): absent is None; else an integer in 1..port_max."""
    if key not in table:
        return None
    return _int(table, key, where, minimum=1, maximum=port_max)


def _optional_degrees(
    table: Mapping[str, object], key: str, where: str, limit: float
) -> float | None:
    """An optional coordinate in degrees (latitude: 90, longitude: 180)."""
    value = table.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise _Problem(f"{where}.{key}", f"must be a number of degrees, not {_type_name(value)}")
    if not -limit <= value <= limit:
        raise _Problem(f"{where}.{key}", f"must be within [-{limit:g}, {limit:g}], not {value}")
    return float(value)


def _str(table: Mapping[str, object], key: str, where: str) -> str:
    value = table.get(key)
    if value is None:
        _missing(where, key)
    if not isinstance(value, str):
        raise _Problem(f"{where}.{key}", f"must be a string, not {_type_name(value)} ({value!r})")
    if not value.strip():
        raise _Problem(f"{where}.{key}", "must not be empty")
    return value


def _tables(data: Mapping[str, object], key: str, *, required: bool) -> list[Mapping[str, object]]:
    value = data.get(key)
    if value is None:
        if required:
            _missing("top level", f"[[{key}]]")
        return []
    if not isinstance(value, list) or not value:
        raise _Problem(
            key, f"must be a non-empty array of tables ([[{key}]]), not {_type_name(value)}"
        )
    for position, item in enumerate(value):
        if not isinstance(item, dict):
            raise _Problem(f"{key}[{position}]", f"must be a table, not {_type_name(item)}")
    return value


def _optional_table(data: Mapping[str, object], key: str) -> Mapping[str, object]:
    value = data.get(key, {})
    if not isinstance(value, dict):
        raise _Problem(key, f"must be a table ([{key}]), not {_type_name(value)}")
    return value


def _missing(where: str, key: str) -> NoReturn:
    raise _Problem(where, f"missing key {key!r}")
