"""Every bound of the ledger, named, with its default and the reason for it.

Rules of this module: a limit that changes what the state machine accepts must be the same
on every replica, so :class:`Limits` is *state*: it is written into the shard's meta table
by :func:`hongbao.ledger.machine.init_shard` and changed only through the log
(:class:`hongbao.ledger.commands.SetLimits`). The topology TOML feeds the initial values.
Fixed facts that never change (id formats, the day boundary) are module constants.

Amounts are fen (1 yuan = 100 fen).
"""

from __future__ import annotations

from dataclasses import dataclass, fields

from hongbao._invariant import invariant
from hongbao.ledger.codec import registered

DAY_MS = 86_400_000
DAY_OFFSET_MS = 8 * 3_600_000
"""Days for the daily outgoing limit run midnight to midnight China Standard Time (UTC+8,
no daylight saving): the limit resets when the users' calendar day changes, not at 08:00."""

USER_ID_BYTES_MAX = 64
REQUEST_ID_BYTES_MAX = 128
AMOUNT_CEILING_FEN = 10**15
"""Hard ceiling on any single amount in a command (10 trillion yuan), regardless of limits.
A single amount stays far inside 64 bits; sums of many amounts need not (the shard's
running totals are wide integers for that reason: see ``ShardState``). Deliveries of
cross-shard credits are checked against this only: a credit already debited at its source
must never be refused because a limit changed meanwhile."""

SHARES_CEILING = 10_000
"""No configuration may allow more shares than this: one envelope's grabs are shown whole."""


@registered("limits")
@dataclass(frozen=True, slots=True)
class Limits:
    """What one shard accepts. Defaults follow ``hongbao-domain.md`` where it has a figure."""

    amount_max_fen: int = 5_000_000
    """Largest single deposit, withdrawal or transfer (50,000 yuan)."""

    daily_outgoing_max_fen: int = 20_000_000
    """Largest total a user may move out per day (withdrawals, transfers, envelopes sent):
    200,000 yuan. Incoming money never counts, and a refund does not restore allowance."""

    envelope_shares_max: int = 100
    """Most shares per envelope (100, often quoted; not confirmed by a primary source)."""

    envelope_share_average_max_fen: int = 20_000
    """The "200 yuan per share" rule: total <= shares x 20,000 fen. It bounds the average,
    so a lucky share can still reach twice the average (the double-average rule)."""

    envelope_total_max_fen: int = 2_000_000
    """Largest envelope total, whatever the share count (20,000 yuan = 100 x 200 yuan)."""

    envelope_ttl_ms: int = DAY_MS
    """Unclaimed money returns to the sender after this (24 h, weakly sourced)."""

    idempotency_results_max: int = 100_000
    """Request ids remembered per shard before the oldest (by apply order) may be evicted;
    one younger than ``idempotency_retention_ms`` is kept even past this count."""

    idempotency_retention_ms: int = 600_000
    """Every request id is remembered at least this long, by the shard's clock (10 min:
    well beyond a client's retry horizon), however many newer requests arrive meanwhile.
    Under a burst the table grows past ``idempotency_results_max`` rather than forget a
    request a client may still retry: a payment applied twice is worse than disk used."""

    batch_commands_max: int = 1_000
    """Most commands in one log entry."""

    history_limit_max: int = 500
    """Most journal lines one history query returns."""

    expire_batch_max: int = 500
    """Most envelopes one ExpireEnvelopes command refunds."""

    outbox_batch_max: int = 500
    """Most outbox entries one read for the courier returns or one Acknowledge drops."""


def limits_problem(limits: Limits) -> str | None:
    """Why ``limits`` is unusable, or None. Applied by init and by SetLimits."""
    for field in fields(limits):
        value = getattr(limits, field.name)
        if type(value) is not int or value <= 0:
            return f"{field.name} must be a positive integer, got {value!r}"
        if value > AMOUNT_CEILING_FEN:
            return f"{field.name} = {value} is above the ceiling {AMOUNT_CEILING_FEN}"
    if limits.envelope_shares_max > SHARES_CEILING:
        return f"envelope_shares_max is above the ceiling {SHARES_CEILING}"
    if limits.daily_outgoing_max_fen < limits.amount_max_fen:
        return "daily_outgoing_max_fen is below amount_max_fen: no single payment could pass"
    return None


DEFAULT_LIMITS = Limits()
invariant(limits_problem(DEFAULT_LIMITS) is None, "the default limits must be usable")
invariant(
    DEFAULT_LIMITS.envelope_total_max_fen
    <= DEFAULT_LIMITS.envelope_shares_max * DEFAULT_LIMITS.envelope_share_average_max_fen,
    "the default envelope total cap should not be looser than shares x average cap",
)
