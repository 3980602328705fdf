"""How much a grab takes: the double-average rule, drawn deterministically.

Rules of this module: pure integer arithmetic on fen; no state, no clock, no ``random``.
Every replica must draw the same share for the same grab, on every Python version, so the
draw is BLAKE2b of (envelope seed, ordinal) reduced to the allowed range, not
``random.Random`` (whose algorithms are not a cross-version contract).

The rule (hongbao-domain.md): with ``R`` fen and ``n`` shares remaining, a lucky share is
drawn uniformly from ``[low, high]`` where

* ``high = min(2R // n, R - (n - 1), cap)``: at most twice the remaining average, leaving
  at least 1 fen for each other share, and never above ``cap = 2 * total // count`` (twice
  the initial average);
* ``low = max(1, R - cap * (n - 1))``: at least 1 fen, and enough that what remains can
  still be paid out without any later share, the last one included, exceeding ``cap``.

The last share (``n == 1``) takes the rest. Invariant kept by every draw:
``n <= R <= cap * n``, which makes ``1 <= low <= high`` (proof in :func:`share_bounds`).
"""

from __future__ import annotations

import hashlib

from hongbao._invariant import invariant


def share_cap_fen(total_fen: int, share_count: int) -> int:
    """Twice the initial average, rounded down. ``cap * count >= total`` whenever
    ``total >= count`` (because ``floor(2T/c) * c > 2T - c >= T``)."""
    invariant(total_fen >= share_count >= 1, "an envelope has >= 1 fen per share")
    return 2 * total_fen // share_count


def share_bounds(*, remaining_fen: int, remaining_count: int, cap_fen: int) -> tuple[int, int]:
    """The inclusive range a lucky share is drawn from.

    With ``n <= R <= cap * n``: ``low <= cap`` and ``low <= R - (n - 1)`` because
    ``cap >= 1``; ``low <= 2R / n`` because ``R - cap(n - 1) <= R - R(n - 1)/n = R / n``;
    and ``high >= 1`` because ``R >= n``. After a draw ``s`` in range, ``R - s >= n - 1``
    and ``R - s <= cap * (n - 1)``: the invariant holds for the next grab.
    """
    n, remaining = remaining_count, remaining_fen
    invariant(n >= 1, f"no share left to draw (remaining_count={n})")
    invariant(n <= remaining <= cap_fen * n, f"share invariant broken: R={remaining} n={n}")
    if n == 1:
        return remaining, remaining
    high = min(2 * remaining // n, remaining - (n - 1), cap_fen)
    low = max(1, remaining - cap_fen * (n - 1))
    invariant(1 <= low <= high, f"empty share range [{low}, {high}]")
    return low, high


def draw_share(
    *, seed: str, ordinal: int, remaining_fen: int, remaining_count: int, cap_fen: int
) -> int:
    """The lucky share of grab number ``ordinal`` (1-based) of the envelope with ``seed``."""
    low, high = share_bounds(
        remaining_fen=remaining_fen, remaining_count=remaining_count, cap_fen=cap_fen
    )
    if low == high:
        return low
    material = f"{seed}/{ordinal}".encode("ascii")
    digest = hashlib.blake2b(material, digest_size=16, person=b"hongbao.lucky").digest()
    # 128 random bits reduced modulo a span below 2**64: the bias is under 2**-64.
    share = low + int.from_bytes(digest, "big") % (high - low + 1)
    invariant(low <= share <= high, "draw outside its range")
    return share


def envelope_seed(*, request_id: str, envelope_id: str, ts_ms: int) -> str:
    """The private seed of an envelope's draws, fixed at send time from log data only.

    It mixes in the sender's request id, which grabbers never see, so nobody can compute
    the next share from the public envelope id and pick the moment to grab.
    """
    material = f"{envelope_id}/{request_id}/{ts_ms}".encode("ascii")
    return hashlib.blake2b(material, digest_size=16, person=b"hongbao.seed").hexdigest()
