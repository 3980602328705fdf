"""The simulated network: per-link delay, loss, duplication, reordering and partitions.

Rules of this module: it owns messages between the moment a runtime sends them and the
moment they are due; it knows regions (for delays) but not nodes' liveness, and it never
calls a core. Every random choice comes from the run's one ``random.Random``.

Why decide drops at delivery time: a partition is a property of the link when a packet
crosses it, so a partition that starts while a message is in flight still stops it, and
every dropped message surfaces at one place (``pop_due``) where the cluster can tell the
sender (``report_unreachable``, ``report_snapshot(ok=False)``) outside its Ready handling.
"""

from __future__ import annotations

import heapq
import random
from dataclasses import dataclass, replace
from enum import Enum

from hongbao._invariant import invariant
from hongbao.raft.types import Message, NodeId
from hongbao.sim.config import (
    NETWORK_IN_FLIGHT_MESSAGES_MAX,
    STALE_EARLY_KEPT_MAX,
    STALE_RECENT_KEPT_MAX,
    STALE_SAMPLE_EVERY,
    NetworkRates,
)
from hongbao.sim.stats import RunStats

Link = tuple[NodeId, NodeId]  # (source, destination): links are directed
STALE_INCARNATION = -1  # a replayed message has no live sender to report back to


class DropReason(Enum):
    LOSS = "loss"
    BLOCKED = "blocked"  # a partition covers the link at delivery time
    OVERFLOW = "overflow"  # too many messages in flight


@dataclass(frozen=True, slots=True)
class InFlight:
    deliver_tick: int
    seq: int  # global send order: ties on deliver_tick break by it
    link_seq: int  # send order on this link, to count reorderings
    message: Message
    sender_incarnation: int  # a crashed-and-restarted sender must not get old reports
    lost: bool  # decided at send time, surfaced at delivery time


@dataclass(frozen=True, slots=True)
class LinkFault:
    """One active fault over a set of directed links; healing removes it whole."""

    kind: str  # partition | oneway | region | isolate | degrade
    links: frozenset[Link]
    blocked: bool
    loss_probability: float = 0.0
    extra_delay_ticks: int = 0


@dataclass(frozen=True, slots=True)
class Due:
    """A message whose delivery time has come; ``dropped`` says why it will not arrive."""

    flight: InFlight
    dropped: DropReason | None


class Network:
    def __init__(
        self,
        *,
        rng: random.Random,
        region_of: dict[NodeId, int],
        rates: NetworkRates,
        stats: RunStats,
    ) -> None:
        self._rng = rng
        self._region_of = dict(region_of)
        self._rates = rates
        self._stats = stats
        self._heap: list[tuple[int, int, InFlight]] = []
        self._seq = 0
        self._link_sent: dict[Link, int] = {}
        self._link_delivered: dict[Link, int] = {}
        self._faults: list[LinkFault] = []
        self._blocked: frozenset[Link] = frozenset()
        self._degraded: dict[Link, LinkFault] = {}
        self.overflowed: list[InFlight] = []  # drained by the cluster every tick
        self._sent_count = 0
        self._stale_early: list[Message] = []  # the first samples: the oldest terms
        self._stale_recent: list[Message] = []  # a ring of the latest samples
        regions = sorted(set(self._region_of.values()))
        self._region_delay_ticks: dict[tuple[int, int], int] = {}
        for a in regions:
            for b in regions:
                if a < b:
                    delay = rng.randint(1, max(1, rates.cross_region_delay_ticks_max))
                    self._region_delay_ticks[(a, b)] = delay
                    self._region_delay_ticks[(b, a)] = delay

    # -- sending and delivering ------------------------------------------------------------

    def send(self, now: int, message: Message, *, sender_incarnation: int) -> None:
        link = (message.from_, message.to)
        self._stats.messages_sent += 1
        self._sent_count += 1
        if self._sent_count % STALE_SAMPLE_EVERY == 0:
            self._keep_for_replay(message)
        link_seq = self._link_sent.get(link, 0) + 1
        self._link_sent[link] = link_seq
        copies = 2 if self._rng.random() < self._rates.duplicate_probability else 1
        if copies == 2:
            self._stats.messages_duplicated += 1
        for _ in range(copies):
            self._enqueue(now, link, link_seq, message, sender_incarnation)

    def _enqueue(
        self, now: int, link: Link, link_seq: int, message: Message, sender_incarnation: int
    ) -> None:
        degraded = self._degraded.get(link)
        loss = self._rates.loss_probability
        delay_ticks = self.base_delay_ticks(link)
        if degraded is not None:
            loss = max(loss, degraded.loss_probability)
            delay_ticks += degraded.extra_delay_ticks
        if self._rng.random() < self._rates.jitter_probability:
            delay_ticks += self._rng.randint(1, max(1, self._rates.jitter_ticks_max))
        if delay_ticks > self.base_delay_ticks(link):
            self._stats.messages_delayed += 1
        lost = self._rng.random() < loss
        self._seq += 1
        flight = InFlight(now + delay_ticks, self._seq, link_seq, message, sender_incarnation, lost)
        if len(self._heap) >= NETWORK_IN_FLIGHT_MESSAGES_MAX:
            self.overflowed.append(flight)
            return
        heapq.heappush(self._heap, (flight.deliver_tick, flight.seq, flight))

    def _keep_for_replay(self, message: Message) -> None:
        if len(self._stale_early) < STALE_EARLY_KEPT_MAX:
            self._stale_early.append(message)
            return
        samples = self._sent_count // STALE_SAMPLE_EVERY
        if len(self._stale_recent) < STALE_RECENT_KEPT_MAX:
            self._stale_recent.append(message)
        else:
            self._stale_recent[samples % STALE_RECENT_KEPT_MAX] = message

    def replay_stale(self, now: int, count: int) -> int:
        """Send again up to ``count`` messages sent long ago, as a confused router or a
        retransmitting middlebox would; returns how many. Nobody hears back about them."""
        pool = self._stale_early + self._stale_recent
        if not pool:
            return 0
        for _ in range(count):
            message = pool[self._rng.randrange(len(pool))]
            link = (message.from_, message.to)
            self._stats.messages_replayed += 1
            self._enqueue(now, link, 0, message, STALE_INCARNATION)
        return count

    def base_delay_ticks(self, link: Link) -> int:
        region_pair = (self._region_of[link[0]], self._region_of[link[1]])
        if region_pair[0] == region_pair[1]:
            return self._rates.same_region_delay_ticks
        return self._region_delay_ticks[region_pair]

    def pop_due(self, now: int) -> Due | None:
        """The next message due at or before ``now``, in (tick, send order) order."""
        if not self._heap or self._heap[0][0] > now:
            return None
        _, _, flight = heapq.heappop(self._heap)
        link = (flight.message.from_, flight.message.to)
        if flight.lost:
            self._stats.messages_lost += 1
            return Due(flight, DropReason.LOSS)
        if link in self._blocked:
            self._stats.messages_blocked += 1
            return Due(flight, DropReason.BLOCKED)
        if flight.link_seq < self._link_delivered.get(link, 0):
            self._stats.messages_reordered += 1
        self._link_delivered[link] = max(self._link_delivered.get(link, 0), flight.link_seq)
        return Due(flight, None)

    @property
    def in_flight_count(self) -> int:
        return len(self._heap)

    # -- faults ---------------------------------------------------------------------------

    @property
    def faults(self) -> tuple[LinkFault, ...]:
        return tuple(self._faults)

    def is_blocked(self, link: Link) -> bool:
        return link in self._blocked

    def add_fault(self, fault: LinkFault) -> None:
        invariant(bool(fault.links), "a link fault needs at least one link")
        self._faults.append(fault)
        self._recompute()

    def heal_fault(self, position: int) -> LinkFault:
        fault = self._faults.pop(position)
        self._recompute()
        return fault

    def heal_all(self) -> int:
        healed = len(self._faults)
        self._faults.clear()
        self._recompute()
        return healed

    def calm(self) -> None:
        """Stop background loss and duplication (the liveness phase: "heal everything")."""
        self._rates = replace(self._rates, loss_probability=0.0, duplicate_probability=0.0)

    def _recompute(self) -> None:
        blocked: set[Link] = set()
        degraded: dict[Link, LinkFault] = {}
        for fault in self._faults:
            if fault.blocked:
                blocked |= fault.links
            else:
                for link in sorted(fault.links):
                    degraded[link] = fault
        self._blocked = frozenset(blocked)
        self._degraded = degraded
