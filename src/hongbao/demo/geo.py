"""The latency file of ``hongbao demo --geo``: one-way delays between the regions.

Why a file and why strict: the figures are data, not code (``configs/geo-latency.toml``
says where they come from), and a typo must not turn into a silently missing delay.
Each ordered pair of distinct regions has its own entry, because a delay meant for a
round trip put on both directions doubles it (CockroachDB #62542); a missing direction,
an unknown region, a negative or fractional delay or an unknown key is refused with a
message naming it. Delays are whole milliseconds, as Toxiproxy's ``latency`` toxic takes.
"""

from __future__ import annotations

import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Final, final

LATENCY_FILE_BYTES_MAX: Final = 64 * 1024
ONE_WAY_MS_MAX: Final = 1_000  # one direction: more than any city pair on Earth (~130 ms)
JITTER_MS_MAX: Final = 100
TOP_LEVEL_KEYS: Final = frozenset({"jitter_ms", "one_way_ms"})

Pair = tuple[str, str]  # (from region, to region)


class LatencyFileError(ValueError):
    """The latency file is unreadable or wrong; the message names the file and the fault."""


@final
@dataclass(frozen=True, slots=True)
class GeoLatency:
    """One-way delays between regions (every ordered pair of distinct regions) and jitter."""

    one_way_ms: Mapping[Pair, int]
    jitter_ms: int = 0
    source: str = ""

    @property
    def regions(self) -> tuple[str, ...]:
        seen: dict[str, None] = {}
        for source, target in self.one_way_ms:
            seen.setdefault(source)
            seen.setdefault(target)
        return tuple(seen)

    def round_trip_ms(self, source: str, target: str) -> int:
        """There and back: the sum of both directions (0 within a region)."""
        if source == target:
            return 0
        return self.one_way_ms[(source, target)] + self.one_way_ms[(target, source)]

    def as_float_ms(self) -> dict[Pair, float]:
        """The mapping :meth:`hongbao.chaos.net.ChaosNet.set_latency` takes."""
        return {pair: float(ms) for pair, ms in self.one_way_ms.items()}


def load_latency_file(path: str | Path, regions: Iterable[str]) -> GeoLatency:
    """The file at ``path`` checked against ``regions`` (the topology's); strict."""
    where = str(path)
    try:
        raw = Path(path).read_bytes()
    except OSError as error:
        raise LatencyFileError(f"{where}: {error.strerror or error}") from error
    if len(raw) > LATENCY_FILE_BYTES_MAX:
        raise LatencyFileError(f"{where}: over {LATENCY_FILE_BYTES_MAX} bytes")
    try:
        data = tomllib.loads(raw.decode())
    except (UnicodeDecodeError, tomllib.TOMLDecodeError) as error:
        raise LatencyFileError(f"{where}: not TOML: {error}") from error
    return parse_latency(data, regions, source=where)


def parse_latency(
    data: Mapping[str, object], regions: Iterable[str], *, source: str = "<latency>"
) -> GeoLatency:
    """A parsed latency file checked against ``regions``; LatencyFileError names the fault."""
    known = list(dict.fromkeys(regions))
    unknown_keys = sorted(set(data) - TOP_LEVEL_KEYS)
    if unknown_keys:
        raise LatencyFileError(
            f"{source}: unknown key(s) {', '.join(unknown_keys)} "
            f"(expected {', '.join(sorted(TOP_LEVEL_KEYS))})"
        )
    jitter_ms = _whole_ms(source, "jitter_ms", data.get("jitter_ms", 0), JITTER_MS_MAX)
    table = data.get("one_way_ms")
    if not isinstance(table, dict):
        raise LatencyFileError(f"{source}: expected tables [one_way_ms.FROM] of TO = ms")
    one_way: dict[Pair, int] = {}
    for source_region, targets in table.items():
        _check_region(source, known, source_region, f"one_way_ms.{source_region}")
        if not isinstance(targets, dict):
            raise LatencyFileError(
                f"{source}: one_way_ms.{source_region}: expected a table of TO = ms"
            )
        for target_region, value in targets.items():
            key = f"one_way_ms.{source_region}.{target_region}"
            _check_region(source, known, target_region, key)
            if target_region == source_region:
                raise LatencyFileError(
                    f"{source}: {key}: a region to itself (only links between regions are delayed)"
                )
            one_way[(source_region, target_region)] = _whole_ms(source, key, value, ONE_WAY_MS_MAX)
    missing = [f"{a}->{b}" for a in known for b in known if a != b and (a, b) not in one_way]
    if missing:
        raise LatencyFileError(
            f"{source}: missing direction(s) {', '.join(missing)}: every ordered pair of "
            "regions needs its own one-way delay"
        )
    ordered = {(a, b): one_way[(a, b)] for a in known for b in known if a != b}
    return GeoLatency(one_way_ms=ordered, jitter_ms=jitter_ms, source=source)


def _check_region(source: str, known: list[str], region: str, key: str) -> None:
    if region not in known:
        raise LatencyFileError(
            f"{source}: {key}: unknown region {region!r} (the topology has "
            f"{', '.join(known) or 'none'})"
        )


def _whole_ms(source: str, key: str, value: object, maximum_ms: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise LatencyFileError(
            f"{source}: {key}: expected whole milliseconds, got {value!r} "
            "(Toxiproxy's latency is an integer)"
        )
    if not 0 <= value <= maximum_ms:
        raise LatencyFileError(f"{source}: {key}: {value} ms is outside 0..{maximum_ms}")
    return value
