"""What a toxic is, as the API shows it: type, name, stream, toxicity and attributes.

The registry of types lives here (not in ``toxics.py``) so that the HTTP layer can
validate a request without importing the data path. ``TOXIC_ATTRIBUTES`` gives each
type's integer attributes in the order the reference emits them; ``loss`` is this
server's extension (a packet-loss style toxic) and is listed as such in ``/version``.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field, replace
from typing import Final, Literal, final

Direction = Literal["upstream", "downstream"]
JsonScalar = str | int | float | bool | None
JsonValue = JsonScalar | list["JsonValue"] | dict[str, "JsonValue"]

TOXIC_ATTRIBUTES: Final[dict[str, tuple[str, ...]]] = {
    "noop": (),
    "latency": ("latency", "jitter"),
    "bandwidth": ("rate",),
    "slow_close": ("delay",),
    "timeout": ("timeout",),
    "slicer": ("average_size", "size_variation", "delay"),
    "limit_data": ("bytes",),
    "reset_peer": ("timeout",),
    # Extension: drop `percent`% of chunks, or (stall > 0) hold each such chunk stall ms.
    "loss": ("percent", "stall"),
}
EXTENSION_TOXICS: Final = ("loss",)
INT64_MIN: Final = -(2**63)
INT64_MAX: Final = 2**63 - 1
FLOAT32_MAX: Final = 3.4028234663852886e38


def parse_direction(stream: str) -> Direction | None:
    """The reference matches the stream case-insensitively and stores the text as given."""
    lowered = stream.lower()
    if lowered == "upstream":
        return "upstream"
    if lowered == "downstream":
        return "downstream"
    return None


def float32(value: float) -> float:
    """The value as Go stores it (float32), as the shortest decimal that round-trips."""
    rounded: float = struct.unpack("f", struct.pack("f", value))[0]
    for digits in range(1, 10):
        text = f"{rounded:.{digits}g}"
        if struct.unpack("f", struct.pack("f", float(text)))[0] == rounded:
            return float(text)
    return rounded


def json_number(value: float) -> int | float:
    """Go prints a float32 of 1 as ``1``, not ``1.0``."""
    return int(value) if value.is_integer() and abs(value) < 1e21 else value


@final
@dataclass(frozen=True, slots=True)
class ToxicSpec:
    """One configured toxic; immutable, replaced whole on update."""

    name: str
    type: str
    stream: str
    direction: Direction
    toxicity: float
    attributes: dict[str, int] = field(default_factory=dict)

    def attribute(self, key: str) -> int:
        return self.attributes.get(key, 0)

    def updated(self, *, attributes: dict[str, int], toxicity: float | None) -> ToxicSpec:
        """The reference merges attributes and keeps toxicity when it is not given."""
        merged = {**self.attributes, **attributes}
        return replace(
            self,
            attributes=merged,
            toxicity=self.toxicity if toxicity is None else float32(toxicity),
        )

    def to_json(self) -> dict[str, JsonValue]:
        attributes: dict[str, JsonValue] = {
            key: self.attribute(key) for key in TOXIC_ATTRIBUTES[self.type]
        }
        return {
            "attributes": attributes,
            "name": self.name,
            "type": self.type,
            "stream": self.stream,
            "toxicity": json_number(self.toxicity),
        }
