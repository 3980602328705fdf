"""The routing rules, in one place: used by the router and by the node-direct SDK alike.

Rules of this module: no I/O of its own. It answers four questions and enforces one rule.

- **Which shard?** :meth:`Routing.user_shard` and :meth:`Routing.envelope_shard` (through
  :mod:`hongbao.ledger.sharding`, which nobody re-derives).
- **Which node first?** :meth:`Routing.candidates`: the cached leader first, then the
  shard's other replicas, those of regions that take traffic before the others, healthy
  before ``suspect`` before ``down``; for a ``stale_ok`` read a replica in the caller's own
  region first. Nodes of a region that is not ``active`` are never picked by guessing
  (only a leader *known* to be there is tried, see :meth:`Routing.candidates` for why).
- **Is that node alive?** :class:`HealthBook`: ``up`` / ``suspect`` / ``down`` by
  ``suspect_after_ms`` and ``down_after_ms`` since its last answer, once it has failed.
- **When to try again?** :class:`RetryPolicy`: at once after NOT_LEADER naming another
  node, or when a node did not answer (or answered UNAVAILABLE: stopping, or a leader cut
  off from its quorum) and an untried replica remains; otherwise a bounded exponential
  back-off. Attempts are bounded, and every call has a deadline.
- **The outcome-unknown rule** (:class:`Outcome`): once an attempt may have applied the
  command, the final answer stays OUTCOME_UNKNOWN: a later NOT_LEADER says nothing about
  that earlier attempt. Every retry carries the SAME request id (the caller sends the same
  request), so the ledger's idempotency table answers a retry of what did apply.

:func:`run_call` is the loop that puts these together for one shard; the SDK's typed
stubs and the router's raw-bytes forwarding both pass it an ``attempt`` callable.
"""

from __future__ import annotations

import asyncio
import enum
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Final, TypeVar

from hongbao.config.routers import RouterSettings
from hongbao.config.topology import Topology
from hongbao.ledger.sharding import parse_envelope_id, shard_for_user
from hongbao.meta.state import ClusterState
from hongbao.node.errors import ErrorReason, HongbaoError, RetryableError, make_error

T = TypeVar("T")

BACKOFF_MS_MIN: Final = 20
BACKOFF_MS_MAX: Final = 500
FAILURES_SUSPECT: Final = 3
"""Consecutive failures that make a node ``suspect`` even before ``suspect_after_ms``."""


class NodeHealth(enum.StrEnum):
    UP = "up"
    SUSPECT = "suspect"
    DOWN = "down"


_HEALTH_RANK: Final = {NodeHealth.UP: 0, NodeHealth.SUSPECT: 1, NodeHealth.DOWN: 2}


@dataclass(slots=True)
class _NodeRecord:
    last_ok_ms: float
    failures: int = 0  # consecutive: reset by any answer


class HealthBook:
    """Per node: when it last answered and how many calls failed since.

    A node that answers anything, an error included (NOT_LEADER, a refusal), is alive.
    Only a call that got no answer from it (connection refused, deadline) counts as a
    failure. ``suspect`` after ``suspect_after_ms`` without an answer (or after
    :data:`FAILURES_SUSPECT` failures in a row), ``down`` after ``down_after_ms``; always
    ``up`` while the last call succeeded.
    """

    def __init__(
        self, settings: RouterSettings, clock_ms: Callable[[], float] | None = None
    ) -> None:
        self.settings = settings
        self._clock_ms = clock_ms or _monotonic_ms
        self._nodes: dict[int, _NodeRecord] = {}

    def _record(self, node_id: int) -> _NodeRecord:
        record = self._nodes.get(node_id)
        if record is None:
            record = self._nodes[node_id] = _NodeRecord(last_ok_ms=self._clock_ms())
        return record

    def answered(self, node_id: int) -> None:
        record = self._record(node_id)
        record.last_ok_ms = self._clock_ms()
        record.failures = 0

    def failed(self, node_id: int) -> None:
        self._record(node_id).failures += 1

    def health_of(self, node_id: int) -> NodeHealth:
        record = self._nodes.get(node_id)
        if record is None or record.failures == 0:
            return NodeHealth.UP
        silent_ms = self._clock_ms() - record.last_ok_ms
        if silent_ms >= self.settings.down_after_ms:
            return NodeHealth.DOWN
        if silent_ms >= self.settings.suspect_after_ms or record.failures >= FAILURES_SUSPECT:
            return NodeHealth.SUSPECT
        return NodeHealth.UP

    def snapshot(self) -> dict[int, NodeHealth]:
        return {node_id: self.health_of(node_id) for node_id in sorted(self._nodes)}


def _monotonic_ms() -> float:
    return time.monotonic() * 1000.0


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    attempts_max: int = 10
    backoff_ms_min: int = BACKOFF_MS_MIN
    backoff_ms_max: int = BACKOFF_MS_MAX

    def backoff_ms(self, backoffs_so_far: int) -> float:
        """The n-th back-off (from 0): doubling from the minimum, capped."""
        doubled = self.backoff_ms_min * (2 ** min(backoffs_so_far, 16))
        return float(min(self.backoff_ms_max, doubled))


def hinted_elsewhere(error: HongbaoError, tried: int) -> bool:
    """NOT_LEADER naming a node other than the one that answered: go there at once."""
    hint = error.leader_hint
    return (
        error.reason is ErrorReason.NOT_LEADER
        and hint is not None
        and hint.node_id != 0
        and hint.node_id != tried
    )


def did_not_answer(error: HongbaoError) -> bool:
    """The node never answered (refused connection, deadline, a broken stream)."""
    return not error.server_reported


def moves_on_at_once(error: HongbaoError) -> bool:
    """Try the next replica without a pause: the node did not answer, or answered that it
    cannot serve (UNAVAILABLE: stopping, or a leader cut off from its quorum). NOT_LEADER
    without a hint (an election is running) and OVERLOADED back off instead."""
    return did_not_answer(error) or error.reason is ErrorReason.UNAVAILABLE


@dataclass(slots=True)
class Outcome:
    """The errors of one call's attempts, and what the caller is finally told."""

    last: HongbaoError | None = None
    last_cause: BaseException | None = None  # what ``last`` was read from (a raw RpcError)
    maybe_applied: bool = False

    def failed(self, error: HongbaoError, cause: BaseException | None = None) -> None:
        # Once an attempt may have applied the command, the answer stays "maybe".
        if self.last is None or not self.maybe_applied or error.outcome_unknown:
            self.last, self.last_cause = error, cause
        self.maybe_applied = self.maybe_applied or error.outcome_unknown

    def final(self, why: str = "no leader answered in time") -> HongbaoError:
        if self.last is not None:
            return self.last
        if self.maybe_applied:
            return make_error(
                ErrorReason.OUTCOME_UNKNOWN,
                "an earlier attempt may have applied it; retry with the same request id",
            )
        return make_error(ErrorReason.UNAVAILABLE, why)


class Deadline:
    """A call's overall deadline, and each attempt's share of what is left."""

    def __init__(self, timeout_ms: float, clock_ms: Callable[[], float] | None = None) -> None:
        self._clock_ms = clock_ms or _monotonic_ms
        self.at_ms = self._clock_ms() + timeout_ms

    def remaining_ms(self) -> float:
        return max(0.0, self.at_ms - self._clock_ms())

    def remaining_s(self) -> float:
        return self.remaining_ms() / 1000.0

    def attempt_timeout_s(self, forward_timeout_ms: float) -> float:
        return min(forward_timeout_ms, self.remaining_ms()) / 1000.0

    @property
    def expired(self) -> bool:
        return self.remaining_ms() <= 0.0


@dataclass(slots=True)
class Routing:
    """Shard maps, the leader cache, node health and the candidate order of one process.

    ``region``: the caller's own region (a router's, or the SDK user's), preferred for
    ``stale_ok`` reads. ``cluster_state``: the last one read (all regions active until a
    follower sets it); regions that do not take traffic are never guessed.
    """

    topology: Topology
    settings: RouterSettings = field(default_factory=RouterSettings)
    region: str | None = None
    clock_ms: Callable[[], float] | None = None
    cluster_state: ClusterState | None = None
    health: HealthBook = field(init=False)
    _leaders: dict[int, int] = field(init=False)

    def __post_init__(self) -> None:
        self.health = HealthBook(self.settings, self.clock_ms)
        self._leaders = {
            s: int(self.topology.home_leader_of(s)) for s in range(self.topology.shard_count)
        }

    # -- keys ----------------------------------------------------------------------------

    def user_shard(self, user_id: str) -> int:
        return shard_for_user(user_id, self.topology.shard_count)

    def envelope_shard(self, envelope_id: str) -> int:
        """MALFORMED_ID for a bad id; NOT_FOUND for a shard this cluster does not have."""
        parsed = parse_envelope_id(envelope_id)
        if parsed is None:
            raise make_error(ErrorReason.MALFORMED_ID, f"malformed envelope id {envelope_id!r}")
        if parsed[0] >= self.topology.shard_count:
            raise make_error(ErrorReason.NOT_FOUND, f"no envelope {envelope_id!r}")
        return parsed[0]

    # -- leaders -------------------------------------------------------------------------

    def leader_guess(self, shard_id: int) -> int:
        return self._leaders[shard_id]

    def takes_traffic(self, node_id: int) -> bool:
        state = self.cluster_state
        return state is None or state.takes_traffic(self.topology.region_of(node_id))

    def learn(self, shard_id: int, error: HongbaoError, tried: int) -> None:
        """After ``tried`` failed: follow a hint, or move the guess to the next candidate."""
        if error.server_reported:
            self.health.answered(tried)
        else:
            self.health.failed(tried)
        if hinted_elsewhere(error, tried) and self.follows_hint(shard_id, error):
            assert error.leader_hint is not None
            self._leaders[shard_id] = error.leader_hint.node_id
            return
        if self._leaders[shard_id] != tried:
            return  # someone else already moved the guess on
        others = [n for n in self._ordered_replicas(shard_id) if n != tried]
        if others:
            self._leaders[shard_id] = others[0]

    def follows_hint(self, shard_id: int, error: HongbaoError) -> bool:
        """A hint is followed only to a replica of the shard (a confused node names no
        stranger)."""
        hint = error.leader_hint
        return hint is not None and hint.node_id in self.topology.replicas_of(shard_id)

    def answered(self, shard_id: int, node_id: int, *, leader: bool = True) -> None:
        """``node_id`` served a request of ``shard_id`` (as its leader unless a stale read)."""
        self.health.answered(node_id)
        if leader:
            self._leaders[shard_id] = node_id

    def _ordered_replicas(self, shard_id: int) -> list[int]:
        """The replicas worth guessing, best first: active regions only, healthy first."""
        replicas = [int(n) for n in self.topology.replicas_of(shard_id)]
        active = [n for n in replicas if self.takes_traffic(n)] or replicas
        return sorted(active, key=lambda n: _HEALTH_RANK[self.health.health_of(n)])

    def candidates(self, shard_id: int, *, stale_ok: bool = False) -> list[int]:
        """The nodes to try for ``shard_id``, in order.

        The cached leader comes first even when its region is draining: during a drain's
        leadership transfer that leader is the only node that can serve a write, and it
        answers NOT_LEADER with the new leader's id the moment the transfer lands. Sending
        the request elsewhere would only bounce it back (or fail it), so the router keeps
        "no new work to a draining region" by never *guessing* a node there and never
        sending a stale read there, and lets the leader hint move it on.
        """
        ordered = self._ordered_replicas(shard_id)
        if stale_ok and self.region is not None:
            local = [
                n
                for n in ordered
                if self.topology.region_of(n) == self.region
                and self.health.health_of(n) is not NodeHealth.DOWN
            ]
            rest = [n for n in ordered if n not in local]
            return local + rest
        leader = self._leaders[shard_id]
        return [leader, *(n for n in ordered if n != leader)]


Attempt = Callable[[int, float], Awaitable[T]]
"""``attempt(node_id, timeout_s)``: one try at one node; raises on failure."""
ErrorOf = Callable[[BaseException], HongbaoError | None]
"""The HongbaoError an attempt's exception stands for; None: not ours, re-raise it."""


def _as_hongbao_error(exc: BaseException) -> HongbaoError | None:
    return exc if isinstance(exc, HongbaoError) else None


class CallFailed(Exception):
    """The final failure of :func:`run_call`: the error, and the exception it was read from
    (a raw RpcError the router passes back unchanged), or None when it was synthesised."""

    def __init__(self, error: HongbaoError, cause: BaseException | None) -> None:
        super().__init__(str(error))
        self.error = error
        self.cause = cause


async def run_call(
    routing: Routing,
    shard_id: int,
    attempt: Attempt[T],
    *,
    deadline: Deadline,
    policy: RetryPolicy,
    forward_timeout_ms: float,
    stale_ok: bool = False,
    error_of: ErrorOf = _as_hongbao_error,
    on_retry: Callable[[], None] | None = None,
) -> T:
    """Send to the candidates of ``shard_id`` until one answers, the policy gives up, or
    the deadline passes. Raises :class:`CallFailed` with the answer the caller gets."""
    outcome = Outcome()
    backoffs = 0
    tried_since_backoff: set[int] = set()
    hinted: int | None = None
    for _ in range(policy.attempts_max):
        if deadline.expired:
            break
        order = routing.candidates(shard_id, stale_ok=stale_ok)
        untried = [n for n in order if n not in tried_since_backoff]
        node_id = hinted if hinted is not None else (untried or order)[0]
        hinted = None
        tried_since_backoff.add(node_id)
        try:
            result = await attempt(node_id, deadline.attempt_timeout_s(forward_timeout_ms))
        except Exception as exc:
            error = error_of(exc)
            if error is None:
                raise
            if not isinstance(error, RetryableError):
                raise CallFailed(error, exc) from None
            outcome.failed(error, exc)
            routing.learn(shard_id, error, node_id)
            if on_retry is not None:
                on_retry()
            if hinted_elsewhere(error, node_id) and routing.follows_hint(shard_id, error):
                hinted = routing.leader_guess(shard_id)
                continue
            order = routing.candidates(shard_id, stale_ok=stale_ok)
            if moves_on_at_once(error) and any(n not in tried_since_backoff for n in order):
                continue  # a node or region is gone, or cut off: the next replica, at once
            delay_ms = min(policy.backoff_ms(backoffs), deadline.remaining_ms())
            backoffs += 1
            tried_since_backoff.clear()
            await asyncio.sleep(delay_ms / 1000.0)
            continue
        routing.answered(shard_id, node_id, leader=not stale_ok)
        return result
    final = outcome.final()
    raise CallFailed(final, outcome.last_cause if final is outcome.last else None)
