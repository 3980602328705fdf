"""Which shard owns a key, and the formats of the ids that carry a shard.

Rules of this module: placement must be identical on every machine and every Python
version, for ever, so it hashes with BLAKE2b (``hash()`` is salted per process) and parses
ids strictly: each id has exactly one spelling, so one envelope can never hide behind two
keys. The router, the ledger and the tests all call these functions; nobody re-derives them.
"""

from __future__ import annotations

import hashlib
import re

from hongbao._invariant import invariant
from hongbao.ledger.limits import REQUEST_ID_BYTES_MAX, USER_ID_BYTES_MAX

_USER_ID = re.compile(rf"[A-Za-z0-9_.:-]{{1,{USER_ID_BYTES_MAX}}}")
_REQUEST_ID = re.compile(rf"[\x21-\x7e]{{1,{REQUEST_ID_BYTES_MAX}}}")  # printable ASCII, no space
_ENVELOPE_ID = re.compile(r"e(0|[1-9][0-9]{0,5})-([1-9][0-9]{0,17})")
SHARD_COUNT_MAX = 1_000_000


def is_user_id(text: str) -> bool:
    """1..64 of ``A-Z a-z 0-9 _ . : -``: safe in keys, journals and logs, never empty."""
    return _USER_ID.fullmatch(text) is not None


def is_request_id(text: str) -> bool:
    """1..128 printable ASCII characters without spaces (clients use UUIDs or similar)."""
    return _REQUEST_ID.fullmatch(text) is not None


def shard_for_user(user_id: str, shard_count: int) -> int:
    """The shard that owns ``user_id``'s wallet: BLAKE2b-64 of the id, modulo the count."""
    invariant(0 < shard_count <= SHARD_COUNT_MAX, f"shard_count {shard_count} out of range")
    digest = hashlib.blake2b(user_id.encode("utf-8"), digest_size=8, person=b"hongbao.user")
    return int.from_bytes(digest.digest(), "big") % shard_count


def envelope_id(shard_id: int, envelope_seq: int) -> str:
    """``e{shard}-{seq}``: the shard that holds the envelope, then its per-shard number.

    The number is the shard's envelope counter at send time, so ids are dense, unique per
    shard, the same on every replica, and route without a lookup.
    """
    invariant(0 <= shard_id < SHARD_COUNT_MAX, f"shard id {shard_id} out of range")
    invariant(envelope_seq >= 1, f"envelope seq {envelope_seq} must be >= 1")
    return f"e{shard_id}-{envelope_seq}"


def parse_envelope_id(text: str) -> tuple[int, int] | None:
    """``(shard_id, envelope_seq)`` of a well-formed envelope id, else None."""
    match = _ENVELOPE_ID.fullmatch(text)
    if match is None:
        return None
    return int(match.group(1)), int(match.group(2))
