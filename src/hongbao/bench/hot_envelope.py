"""The hot-envelope mix: one group envelope, a thousand people grabbing it at once.

Rules of this module:

- One *round* is: a sender sends a lucky group envelope of ``shares`` shares, then
  ``grabbers`` distinct users each send one Grab of it, all at once, as single calls
  (each user is its own caller, as in a group chat; the router's coalescing, when there
  is a router, is part of what is measured). ``shares`` of the answers take a share;
  the rest are ``ENVELOPE_EMPTY``: that is the workload, not an error.
- Two figures: *grab attempts per second* (answered grabs, taken or empty, over the
  time from the phase's start to the last answer) and the *time to empty one envelope*
  (from the first grab sent to the answer of the grab that took the last share), as
  percentiles over the envelopes emptied.
- Every other answer is counted by its reason and reported. A round whose shares were
  not all taken (failed grabs) has no time to empty; it is counted in
  ``envelopes_not_emptied``.
- Bounded: rounds start only before the deadline and ``envelopes_max``; ``in_flight``
  rounds run at once (so at most ``in_flight * grabbers`` calls are outstanding); a
  round still running ``tail_s`` after the deadline is abandoned: its answered grabs
  count, its unanswered ones are reported as ``grabs_abandoned``, and it has no time
  to empty.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field

from hongbao.bench.target import BenchClient
from hongbao.node.errors import ErrorReason, HongbaoError

HOT_SHARES = 100
HOT_GRABBERS = 1000
HOT_SHARE_FEN = 100  # 1 yuan a share on average: 100 yuan an envelope
HOT_IN_FLIGHT = 1  # one envelope at a time: its 1,000 grabs are the load


@dataclass(frozen=True, slots=True)
class HotOptions:
    shares: int = HOT_SHARES
    grabbers: int = HOT_GRABBERS
    in_flight: int = HOT_IN_FLIGHT
    envelopes_max: int = 100_000

    def __post_init__(self) -> None:
        if self.shares < 1 or self.grabbers < self.shares or self.in_flight < 1:
            raise ValueError("hot-envelope needs shares >= 1, grabbers >= shares, in_flight >= 1")


@dataclass(slots=True)
class HotResult:
    """One run of the hot-envelope phase."""

    envelopes: int = 0
    envelopes_not_emptied: int = 0
    envelopes_abandoned: int = 0
    grabs_taken: int = 0
    grabs_empty: int = 0
    grabs_failed: int = 0
    grabs_abandoned: int = 0  # sent, not answered by the end of the tail
    sends_failed: int = 0
    phase_s: float = 0.0
    grab_attempts_per_s: float = 0.0
    empty_ms: list[float] = field(default_factory=list)  # one per emptied envelope
    all_answered_ms: list[float] = field(default_factory=list)
    errors_by_reason: dict[str, int] = field(default_factory=dict)


async def _round(
    client: BenchClient,
    sender: str,
    crowd: Sequence[str],
    options: HotOptions,
    result: HotResult,
    errors: Counter[str],
    tag: str,
    answered_at: list[float],
) -> None:
    try:
        sent = await client.send_envelope(
            sender, options.shares * HOT_SHARE_FEN, options.shares, lucky=True,
            request_id=f"{tag}-send",
        )  # fmt: skip
    except HongbaoError as error:
        errors[error.reason.value] += 1
        result.sends_failed += 1
        return
    envelope_id = sent.envelope_id
    started = time.perf_counter()
    taken = 0

    async def grab(index: int, user: str) -> None:
        nonlocal taken
        try:
            await client.grab(envelope_id, user, request_id=f"{tag}-g{index}")
        except HongbaoError as error:
            result.grabs_abandoned -= 1
            answered_at[0] = time.monotonic()
            if error.reason is ErrorReason.ENVELOPE_EMPTY:
                result.grabs_empty += 1
            else:
                errors[error.reason.value] += 1
                result.grabs_failed += 1
            return
        result.grabs_abandoned -= 1
        answered_at[0] = time.monotonic()
        result.grabs_taken += 1
        taken += 1
        if taken == options.shares:  # emptied: the figure, even if the round is abandoned
            result.empty_ms.append((time.perf_counter() - started) * 1000)

    result.grabs_abandoned += len(crowd)  # each until it is answered
    await asyncio.gather(*(grab(i, user) for i, user in enumerate(crowd)))
    result.envelopes += 1
    result.all_answered_ms.append((time.perf_counter() - started) * 1000)
    if taken < options.shares:
        result.envelopes_not_emptied += 1


async def hot_envelope_phase(
    client: BenchClient,
    users: Sequence[str],
    options: HotOptions,
    *,
    duration_s: float,
    tail_s: float,
    tag: str,
    rng: random.Random,
) -> HotResult:
    """Rounds of send + ``grabbers`` simultaneous grabs until ``duration_s`` has passed."""
    if len(users) < options.grabbers + 1:
        raise ValueError(f"hot-envelope needs at least {options.grabbers + 1} users")
    result = HotResult()
    errors: Counter[str] = Counter()
    started = time.monotonic()
    deadline = started + duration_s
    counter = 0
    answered_at = [started]  # when the last grab was answered

    async def lane(lane_index: int) -> None:
        nonlocal counter
        while time.monotonic() < deadline and counter < options.envelopes_max:
            counter += 1
            sender = rng.choice(users)
            crowd = rng.sample([u for u in users if u != sender], options.grabbers)
            await _round(client, sender, crowd, options, result, errors,
                         f"{tag}-l{lane_index}-e{counter}", answered_at)  # fmt: skip

    lanes = [asyncio.create_task(lane(i)) for i in range(options.in_flight)]
    _, pending = await asyncio.wait(lanes, timeout=duration_s + tail_s)
    result.envelopes_abandoned = len(pending)
    for task in lanes:
        task.cancel()
    await asyncio.gather(*lanes, return_exceptions=True)
    answered = result.grabs_taken + result.grabs_empty
    result.phase_s = answered_at[0] - started
    result.grab_attempts_per_s = answered / result.phase_s if answered else 0.0
    result.errors_by_reason = dict(sorted(errors.items()))
    return result
