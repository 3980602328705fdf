"""Moving leaderships off a set of nodes: the machinery under region drain and node drain.

Rules of this module (operations-asks 1, 3, 5): a leadership goes only to a caught-up
replica (its match index at the leader's last index, as the leader's ReplicaProgress
says, within ``CAUGHT_UP_SLACK_ENTRIES`` that the transfer itself closes) on a node that
answers and may lead; each attempt is bounded by one election timeout, after which the
next candidate is tried; a few groups move in parallel; every attempt is reported as it
happens; at the deadline the groups still led from the leaving nodes are returned with
their leader, the target last tried, the last error and how long they have been blocked.
The leaving nodes are never candidates, so a leadership is never handed back to them.
Every attempt (``leader_transferred`` / ``leader_transfer_failed``) and every new reason
to wait (``leader_transfer_waiting``) is logged at info, here or by ``cluster balance``.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import grpc

from hongbao.config.topology import META_GROUP_ID, Topology
from hongbao.logs import event
from hongbao.node.errors import error_from_rpc_error
from hongbao.ops.status import AdminSource, ClusterStatus, cluster_status, group_name, node_admin
from hongbao.proto.gen.hongbao.v1 import admin_pb2

log = logging.getLogger(__name__)

CAUGHT_UP_SLACK_ENTRIES = 32  # a target this close to the leader's last index is caught up
PARALLEL_TRANSFERS = 4  # groups moved at once
RPC_GRACE_S = 1.0  # on top of an attempt's wait, for the call itself
POLL_S = 0.02


def election_timeout_ms(topology: Topology) -> int:
    return topology.timing.tick_ms * topology.timing.election_timeout_ticks


@dataclass(frozen=True, slots=True)
class TransferEvent:
    """One step of a drain, for the progress lines: moved, failed or waiting."""

    kind: str  # "moved" | "failed" | "waiting"
    group_id: int
    leader: int
    target: int | None
    seconds: float
    error: str = ""

    def describe(self) -> str:
        name = group_name(self.group_id)
        if self.kind == "moved":
            return f"{name}: node {self.leader} -> node {self.target} ({self.seconds:.2f} s)"
        if self.kind == "failed":
            return f"{name}: node {self.leader} -> node {self.target} failed: {self.error}"
        return f"{name}: led by node {self.leader}, waiting: {self.error}"


@dataclass(frozen=True, slots=True)
class Stuck:
    group_id: int
    leader: int | None  # None: the group has no leader right now
    target_tried: int | None
    last_error: str
    blocked_s: float

    def describe(self) -> str:
        leader = "no leader" if self.leader is None else f"leader node {self.leader}"
        target = "no target" if self.target_tried is None else f"target node {self.target_tried}"
        return (f"{group_name(self.group_id)}: {leader}, {target}, blocked {self.blocked_s:.1f} s: "
                f"{self.last_error}")  # fmt: skip

    def to_json(self) -> dict[str, object]:
        return {
            "shard_id": "meta" if self.group_id == META_GROUP_ID else self.group_id,
            "leader_node_id": self.leader,
            "target_tried": self.target_tried,
            "last_error": self.last_error,
            "blocked_s": round(self.blocked_s, 3),
        }


@dataclass(slots=True)
class EvacuationResult:
    done: bool = False
    moved: list[TransferEvent] = field(default_factory=list)
    stuck: list[Stuck] = field(default_factory=list)
    attempts: int = 0
    elapsed_s: float = 0.0


@dataclass(slots=True)
class _Track:
    first_seen: float
    tried: list[int] = field(default_factory=list)
    last_target: int | None = None
    last_error: str = "not tried yet"


def caught_up_candidates(
    status: ClusterStatus,
    group_id: int,
    allowed: Callable[[int], bool],
    *,
    slack_entries: int = CAUGHT_UP_SLACK_ENTRIES,
) -> tuple[list[int], str]:
    """The replicas ``allowed`` that are caught up, least behind first; else why none is."""
    leader = status.group_leaders().get(group_id)
    lead = None if leader is None else status.replica(leader, group_id)
    if lead is None:
        return [], "the group has no leader"
    answering = {int(n.spec.node_id) for n in status.nodes if n.status is not None}
    ranked: list[tuple[int, int]] = []
    reasons: list[str] = []
    for progress in lead.progress:
        node_id = int(progress.node_id)
        if progress.learner or not allowed(node_id):
            continue
        lag = int(lead.last_index) - int(progress.match_index)
        if node_id not in answering or not progress.recent_active:
            reasons.append(f"node {node_id} is not answering")
        elif lag > slack_entries:
            reasons.append(f"node {node_id} is {lag} entries behind")
        else:
            ranked.append((lag, node_id))
    if ranked:
        return [n for _, n in sorted(ranked)], ""
    return [], "no caught-up replica in an active region (" + ("; ".join(reasons) or "none") + ")"


async def transfer_once(
    source: AdminSource, group_id: int, leader: int, target: int, wait_ms: int
) -> tuple[bool, str]:
    """One bounded attempt: ask ``leader`` to hand ``group_id`` to ``target``."""
    request = admin_pb2.TransferLeaderRequest(
        shard_id=group_id, target_node_id=target, wait_ms=wait_ms
    )
    started_s = time.monotonic()
    try:
        response: admin_pb2.TransferLeaderResponse = await node_admin(
            source, leader
        ).TransferLeader(request, timeout=wait_ms / 1000 + RPC_GRACE_S)
    except grpc.aio.AioRpcError as rpc_error:
        outcome = False, str(error_from_rpc_error(rpc_error))
    else:
        if int(response.leader_node_id) == target:
            outcome = True, ""
        else:
            outcome = False, f"node {response.leader_node_id or 'none'} leads after {wait_ms} ms"
    _log_transfer(group_id, leader, target, outcome, time.monotonic() - started_s)
    return outcome


def shard_label(group_id: int) -> int | str:
    """A log line's ``shard``: the shard id, or "meta" (as the metrics label it)."""
    return "meta" if group_id == META_GROUP_ID else group_id


def _log_transfer(
    group_id: int, leader: int, target: int, outcome: tuple[bool, str], seconds: float
) -> None:
    ok, error = outcome
    name = group_name(group_id)
    shard = shard_label(group_id)
    if ok:
        message = f"{name}: leadership node {leader} -> node {target} in {seconds:.2f} s"
        event(log, "leader_transferred", message, shard=shard, from_node=leader,
              to_node=target, seconds=round(seconds, 3))  # fmt: skip
    else:
        message = f"{name}: leadership node {leader} -> node {target} failed: {error}"
        event(log, "leader_transfer_failed", message, shard=shard, from_node=leader,
              to_node=target, error=error)  # fmt: skip


async def evacuate(
    source: AdminSource,
    *,
    leaving: frozenset[int],
    may_take: Callable[[int], bool],
    deadline_s: float,
    on_event: Callable[[TransferEvent], None] = lambda event: None,
    groups: Callable[[ClusterStatus], list[int]] | None = None,
) -> EvacuationResult:
    """Move every leadership held by a node of ``leaving`` to a node that ``may_take``
    it, until none is held there (and every group has a leader) or ``deadline_s``."""
    run = _Evacuation(source, leaving, may_take, on_event)
    deadline = run.started + deadline_s
    while True:
        status = await cluster_status(source)
        leaders = status.group_leaders()
        wanted = groups(status) if groups is not None else _hosted_groups(status)
        led_there = [g for g in wanted if leaders.get(g) in leaving]
        leaderless = [g for g in wanted if g not in leaders]
        now = time.monotonic()
        for g in led_there + leaderless:
            run.tracks.setdefault(g, _Track(first_seen=now))
        if not led_there and not leaderless:
            run.result.done = True
            break
        if now >= deadline:
            run.give_up(led_there, leaderless, leaders, now)
            break
        attempts = run.plan(status, led_there)
        if attempts:
            await run.attempt(attempts)
        else:
            await asyncio.sleep(min(POLL_S * 5, max(0.0, deadline - time.monotonic())))
        await asyncio.sleep(POLL_S)
    run.result.elapsed_s = time.monotonic() - run.started
    return run.result


class _Evacuation:
    """The state of one evacuation between its rounds."""

    def __init__(
        self,
        source: AdminSource,
        leaving: frozenset[int],
        may_take: Callable[[int], bool],
        on_event: Callable[[TransferEvent], None],
    ) -> None:
        self.source = source
        self.leaving = leaving
        self.may_take = may_take
        self.on_event = on_event
        self.wait_ms = election_timeout_ms(source.topology)
        self.started = time.monotonic()
        self.tracks: dict[int, _Track] = {}
        self.result = EvacuationResult()

    def allowed(self, node_id: int) -> bool:
        return node_id not in self.leaving and self.may_take(node_id)

    def give_up(
        self, led_there: list[int], leaderless: list[int], leaders: dict[int, int], now: float
    ) -> None:
        for g in led_there + leaderless:
            track = self.tracks[g]
            error = track.last_error if g in led_there else "the group has no leader"
            blocked_s = now - track.first_seen
            self.result.stuck.append(Stuck(g, leaders.get(g), track.last_target, error, blocked_s))

    def plan(self, status: ClusterStatus, led_there: list[int]) -> list[tuple[int, int, int]]:
        """Up to PARALLEL_TRANSFERS (group, leader, target): the least loaded caught-up
        candidate not tried yet for that group (all tried: start over)."""
        leaders = status.group_leaders()
        load: dict[int, int] = {}
        for leader in leaders.values():
            load[leader] = load.get(leader, 0) + 1
        attempts: list[tuple[int, int, int]] = []
        for g in led_there:
            track = self.tracks[g]
            candidates, why = caught_up_candidates(status, g, self.allowed)
            if not candidates:
                if track.last_error != why:
                    elapsed_s = time.monotonic() - self.started
                    waiting = TransferEvent("waiting", g, leaders[g], None, elapsed_s, why)
                    event(log, "leader_transfer_waiting", waiting.describe(), shard=shard_label(g),
                          from_node=leaders[g], reason=why)  # fmt: skip
                    self.on_event(waiting)
                track.last_error = why
                continue
            fresh = [c for c in candidates if c not in track.tried]
            if not fresh:
                track.tried.clear()
                fresh = candidates
            target = min(fresh, key=lambda c: load.get(c, 0))  # stable: least behind first
            load[target] = load.get(target, 0) + 1
            attempts.append((g, leaders[g], target))
            if len(attempts) >= PARALLEL_TRANSFERS:
                break
        return attempts

    async def attempt(self, attempts: list[tuple[int, int, int]]) -> None:
        outcomes = await asyncio.gather(
            *(transfer_once(self.source, g, lead, target, self.wait_ms)
              for g, lead, target in attempts)
        )  # fmt: skip
        for (g, lead, target), (ok, error) in zip(attempts, outcomes, strict=True):
            self.result.attempts += 1
            track = self.tracks[g]
            track.last_target = target
            event_s = time.monotonic() - track.first_seen
            if ok:
                event = TransferEvent("moved", g, lead, target, event_s)
                self.result.moved.append(event)
            else:
                track.tried.append(target)
                track.last_error = error
                event = TransferEvent("failed", g, lead, target, event_s, error)
            self.on_event(event)


def _hosted_groups(status: ClusterStatus) -> list[int]:
    """The ledger shards, and the meta group when the nodes host one."""
    groups = list(range(status.topology.shard_count))
    if any(n.status is not None and n.status.HasField("meta_group") for n in status.nodes):
        groups.append(int(META_GROUP_ID))
    return groups
