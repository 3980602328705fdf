"""The audit of a RUNNING cluster: conservation across every shard, exactly, over gRPC.

Rules of this module: read-only; every call has a deadline and the whole audit one more
(``timeout_s``). Each shard's totals come from its leader (``Admin.ShardAudit``: a
linearizable read of one shard). The cluster-wide equation, in fen,

    sum(balances) + sum(escrow) + sum(outbox in flight) == sum(deposits) - sum(withdrawals)

holds only over a consistent cut and only counts in-flight money once when no outbox
entry is both delivered and still unacknowledged. So the audit polls until

1. every outbox has drained (no shard holds an unacknowledged entry): then nothing is in
   flight and the outbox term is exactly 0; and
2. two rounds in a row saw the same applied index on every shard: nothing changed between
   any shard's two reads, so every read describes the state at one common instant (the
   moment between the rounds), a consistent cut without stopping anything.

If the deadline passes first, the report says why (a shard without a leader, or outboxes
still holding entries) and its exit code is 3; if the cut was drained but never quiet
(traffic kept arriving) the last drained round is judged, and the report says so.
Exit codes: 0 everything holds; 1 something does not (named in ``problems``); 3 not
judged (no leader for some shard, or the outboxes did not drain, before the deadline).
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field

import grpc

from hongbao.config.topology import Topology
from hongbao.net.channels import channel_options, open_channel
from hongbao.node.cluster_guard import CLUSTER_ID_METADATA_KEY, cluster_id_of
from hongbao.node.errors import ErrorReason, HongbaoError, error_from_rpc_error
from hongbao.proto.gen.hongbao.v1 import admin_pb2, admin_pb2_grpc
from hongbao.security.tls import client_credentials

CALL_TIMEOUT_S_MAX = 2.0
POLL_S = 0.1
HOPS_PER_SHARD_MAX = 6  # NOT_LEADER hints followed, or replicas tried, per shard per round
MESSAGE_BYTES_MAX = 4 << 20

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_NOT_JUDGED = 3


@dataclass(frozen=True, slots=True)
class ShardLine:
    """One shard's totals as its leader reported them."""

    shard_id: int
    leader_node_id: int
    applied_index: int
    balances_fen: int
    escrow_fen: int
    deposits_fen: int
    withdrawals_fen: int
    outbox_entries: int
    outbox_fen: int
    accounts: int
    negative_balances: int
    problems: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class LiveAuditReport:
    """What the audit saw. ``judged`` is False when it could not reach a verdict."""

    shards: tuple[ShardLine, ...]
    shard_count: int
    drained: bool  # every outbox empty in the judged round
    quiet: bool  # the judged round was confirmed a consistent cut by a second round
    waited_ms: int
    unreachable: tuple[str, ...]  # shards whose leader did not answer: why
    problems: tuple[str, ...] = field(default=())

    @property
    def judged(self) -> bool:
        return self.drained and not self.unreachable and len(self.shards) == self.shard_count

    @property
    def ok(self) -> bool:
        return self.judged and not self.problems

    @property
    def exit_code(self) -> int:
        if not self.judged:
            return EXIT_NOT_JUDGED
        return EXIT_OK if not self.problems else EXIT_FAILED

    def total(self, name: str) -> int:
        return sum(int(getattr(line, name)) for line in self.shards)

    @property
    def held_fen(self) -> int:
        return self.total("balances_fen") + self.total("escrow_fen") + self.total("outbox_fen")

    @property
    def net_in_fen(self) -> int:
        return self.total("deposits_fen") - self.total("withdrawals_fen")


async def live_audit(
    topology: Topology,
    *,
    timeout_s: float,
    credentials: grpc.ChannelCredentials | None = None,
) -> LiveAuditReport:
    """Audit the running cluster of ``topology``; never raises for a cluster's answer.

    ``credentials``: the Admin (operator) channel credentials; None takes them from the
    topology's certificates directory when it says ``tls = true``.
    """
    if credentials is None and topology.tls:
        found = client_credentials(topology)
        credentials = found.admin.channel_credentials() if found is not None else None
    started = time.monotonic()
    deadline = started + timeout_s
    judged: dict[int, ShardLine] | None = None  # the latest drained round
    quiet = False
    async with _Auditor(topology, credentials) as auditor:
        while True:
            lines, unreachable = await auditor.round(deadline)
            drained = not unreachable and all(line.outbox_entries == 0 for line in lines.values())
            if drained:
                if judged is not None and _same_cut(judged, lines):
                    quiet = True
                judged = lines
            else:
                judged = None  # a drained round followed by a busy one is no cut
            if quiet or time.monotonic() + POLL_S >= deadline:
                break
            await asyncio.sleep(POLL_S)
    seen = judged if judged is not None else lines
    report = LiveAuditReport(
        shards=tuple(seen[s] for s in sorted(seen)),
        shard_count=topology.shard_count,
        drained=judged is not None,
        quiet=quiet,
        waited_ms=int((time.monotonic() - started) * 1000),
        unreachable=() if judged is not None else _why(unreachable, lines),
    )
    return _with_verdict(report) if report.judged else report


def _same_cut(first: dict[int, ShardLine], second: dict[int, ShardLine]) -> bool:
    return first.keys() == second.keys() and all(
        first[s].applied_index == second[s].applied_index for s in first
    )


def _why(unreachable: dict[int, str], lines: dict[int, ShardLine]) -> tuple[str, ...]:
    reasons = [f"shard {shard}: {why}" for shard, why in sorted(unreachable.items())]
    for shard, line in sorted(lines.items()):
        if line.outbox_entries:
            reasons.append(
                f"shard {shard}: {line.outbox_entries} outbox entries ({line.outbox_fen} fen)"
                " not yet acknowledged"
            )
    return tuple(reasons)


def _with_verdict(report: LiveAuditReport) -> LiveAuditReport:
    problems: list[str] = []
    for line in report.shards:
        problems.extend(line.problems)
        if line.negative_balances:
            problems.append(f"shard {line.shard_id}: {line.negative_balances} negative balances")
    if report.held_fen != report.net_in_fen:
        problems.append(
            f"conservation: balances {report.total('balances_fen')} + escrow "
            f"{report.total('escrow_fen')} + outbox {report.total('outbox_fen')} = "
            f"{report.held_fen} != deposits - withdrawals = {report.net_in_fen}"
        )
    if problems and not report.quiet:
        problems.append("traffic kept arriving: the judged round may not be a consistent cut")
    return LiveAuditReport(
        shards=report.shards,
        shard_count=report.shard_count,
        drained=report.drained,
        quiet=report.quiet,
        waited_ms=report.waited_ms,
        unreachable=report.unreachable,
        problems=tuple(problems),
    )


class _Auditor:
    """Channels to the nodes and a leader guess per shard, for the audit's lifetime."""

    def __init__(self, topology: Topology, credentials: grpc.ChannelCredentials | None) -> None:
        self.topology = topology
        self.credentials = credentials
        self.metadata = ((CLUSTER_ID_METADATA_KEY, cluster_id_of(topology)),)
        self.leaders = {s: int(topology.home_leader_of(s)) for s in range(topology.shard_count)}
        self.channels: dict[int, grpc.aio.Channel] = {}

    async def __aenter__(self) -> _Auditor:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        for channel in self.channels.values():
            await channel.close()
        self.channels.clear()

    def stub(self, node_id: int) -> admin_pb2_grpc.AdminStub:
        channel = self.channels.get(node_id)
        if channel is None:
            address = self.topology.node(node_id).address
            channel = open_channel(address, self.credentials, channel_options(MESSAGE_BYTES_MAX))
            self.channels[node_id] = channel
        return admin_pb2_grpc.AdminStub(channel)

    async def round(self, deadline: float) -> tuple[dict[int, ShardLine], dict[int, str]]:
        """Every shard's totals, asked of the leaders in parallel."""
        shard_ids = range(self.topology.shard_count)
        answers = await asyncio.gather(*(self.shard(s, deadline) for s in shard_ids))
        lines = {s: a for s, a in zip(shard_ids, answers, strict=True) if isinstance(a, ShardLine)}
        failed = {s: a for s, a in zip(shard_ids, answers, strict=True) if isinstance(a, str)}
        return lines, failed

    async def shard(self, shard_id: int, deadline: float) -> ShardLine | str:
        """The shard's line from its leader, or why no leader answered."""
        replicas = [int(n) for n in self.topology.replicas_of(shard_id)]
        why = "no replica answered"
        for _ in range(HOPS_PER_SHARD_MAX):
            remaining_s = deadline - time.monotonic()
            if remaining_s <= 0:
                return f"deadline passed ({why})"
            node_id = self.leaders[shard_id]
            try:
                response = await self.stub(node_id).ShardAudit(
                    admin_pb2.ShardAuditRequest(shard_id=shard_id),
                    timeout=min(CALL_TIMEOUT_S_MAX, remaining_s),
                    metadata=self.metadata,
                )
            except grpc.aio.AioRpcError as rpc_error:
                error = error_from_rpc_error(rpc_error)
                why = f"node {node_id}: {error.reason.value}: {error.message}"
                self.leaders[shard_id] = _next_guess(error, node_id, replicas)
                if not _worth_retrying(error):
                    return why
                continue
            if response.shard_id != shard_id:
                return f"node {node_id} answered for shard {response.shard_id}"
            return _line(response, node_id)
        return why


def _worth_retrying(error: HongbaoError) -> bool:
    """Another replica or a later try may answer: leadership moves, elections end."""
    return error.reason in (
        ErrorReason.NOT_LEADER,
        ErrorReason.UNAVAILABLE,
        ErrorReason.OUTCOME_UNKNOWN,  # a deadline of a node that did not answer in time
        ErrorReason.OVERLOADED,
    )


def _next_guess(error: HongbaoError, tried: int, replicas: list[int]) -> int:
    hint = error.leader_hint
    if hint is not None and hint.node_id and hint.node_id != tried:
        return int(hint.node_id)
    position = replicas.index(tried) if tried in replicas else -1
    return replicas[(position + 1) % len(replicas)]


def _line(response: admin_pb2.ShardAuditResponse, node_id: int) -> ShardLine:
    return ShardLine(
        shard_id=response.shard_id,
        leader_node_id=node_id,
        applied_index=response.applied_index,
        balances_fen=response.balances_fen,
        escrow_fen=response.escrow_fen,
        deposits_fen=response.deposits_fen,
        withdrawals_fen=response.withdrawals_fen,
        outbox_entries=response.outbox_entries,
        outbox_fen=response.outbox_fen,
        accounts=response.accounts,
        negative_balances=response.negative_balances,
        problems=tuple(response.problems),
    )
