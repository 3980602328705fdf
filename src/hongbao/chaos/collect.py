"""After the heal: read from the cluster everything the checks judge (a FinalState).

Why in this order: the ``info`` operations are resolved first, through ``RequestStatus``,
which goes through the log and fences every id it finds not applied, so no late retry can
change the books after they are read. Then every wallet the history touched (its balance
and its whole journal, linearizable reads), every envelope a send acknowledged or was
found to have applied, and last every shard's totals (``Admin.ShardAudit`` by
:func:`hongbao.ops.live_audit.live_audit`), once the fences have stopped moving the
applied indexes its consistent-cut test watches.

Rules: bounded concurrency, every call with a deadline, retries on the answers that say
"not now" (NOT_LEADER, UNAVAILABLE, OVERLOADED, a deadline) until ``timeout_s`` runs out.
What a pass could not read before its deadline is read again in a further pass with a
fresh deadline (a loaded machine answers late, not never), up to ``COLLECT_PASSES_MAX``
passes and only while a pass still reads something. Anything still not read is counted in
``FinalState.unread`` and named in ``FinalState.notes``, never silently missing; the checks
then say "not collected" instead of judging a partial state.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Final, TypeVar

import grpc
from google.protobuf.message import Message as ProtoMessage

from hongbao.chaos.answers import reason_name, result_fields
from hongbao.chaos.final_state import (
    Envelope,
    EnvelopeGrab,
    FinalState,
    Posting,
    RequestStatus,
    ShardTotals,
    Wallet,
)
from hongbao.chaos.history import Op
from hongbao.config.topology import Topology
from hongbao.ledger.sharding import parse_envelope_id, shard_for_user
from hongbao.net.channels import channel_options, open_channel
from hongbao.node.admission import BATCH_RESPONSE_LINES_MAX
from hongbao.node.cluster_guard import CLUSTER_ID_METADATA_KEY, cluster_id_of
from hongbao.node.errors import ErrorReason, error_from_proto, error_from_rpc_error
from hongbao.ops.live_audit import live_audit
from hongbao.proto.gen.hongbao.v1 import ledger_pb2, ledger_pb2_grpc
from hongbao.security.tls import client_credentials

CALLS_MAX: Final = 32  # reads in flight at once
ATTEMPT_S_MAX: Final = 5.0
BACKOFF_S_MIN: Final = 0.05
BACKOFF_S_MAX: Final = 1.0
PAGES_MAX: Final = 10_000  # history pages per wallet
PROBE_USERS_MAX: Final = 100_000  # ids tried to find a user of a given shard
AUDIT_S_MIN: Final = 5.0  # the shard audit gets at least this long, whatever is left
NOTES_MAX: Final = 1_000
SHOWS_PER_CALL: Final = 100  # Shows per Batch; fewer when their lines could pass its bound
COLLECT_PASSES_MAX: Final = 3  # each re-reads only what the passes before it left unread
_RETRIED: Final = frozenset(
    {
        ErrorReason.NOT_LEADER,
        ErrorReason.UNAVAILABLE,
        ErrorReason.OVERLOADED,
        ErrorReason.OUTCOME_UNKNOWN,
    }
)
Response = TypeVar("Response", bound=ProtoMessage)
Misses = dict[tuple[str, str], str]  # (kind, key) -> why it was not read, this pass


class Unread(Exception):
    """A read that did not succeed before the deadline, or was refused: why."""

    def __init__(self, why: str, reason: str = "") -> None:
        super().__init__(why)
        self.reason = reason  # the refusal's ErrorReason name; "" for a deadline


class _Stubs:
    def __init__(self, channel: grpc.aio.Channel) -> None:
        self.wallet = ledger_pb2_grpc.WalletStub(channel)
        self.envelopes = ledger_pb2_grpc.EnvelopesStub(channel)
        self.batch = ledger_pb2_grpc.BatchStub(channel)


class _Reader:
    """The routers (the nodes when there are none), tried in turn; NOT_LEADER hints
    followed when talking to nodes."""

    def __init__(
        self, topology: Topology, credentials: grpc.ChannelCredentials | None, deadline: float
    ) -> None:
        self.deadline = deadline
        addresses = [r.address for r in topology.routers] or [n.address for n in topology.nodes]
        options = channel_options(8 << 20)
        self._channels = {a: open_channel(a, credentials, options) for a in addresses}
        self._stubs = {a: _Stubs(c) for a, c in self._channels.items()}
        self._addresses = addresses
        self._metadata = ((CLUSTER_ID_METADATA_KEY, cluster_id_of(topology)),)
        self._gate = asyncio.Semaphore(CALLS_MAX)
        self._calls = 0

    async def close(self) -> None:
        for channel in self._channels.values():
            await channel.close()

    async def call(
        self, rpc: Callable[[_Stubs], Callable[..., Awaitable[Response]]], request: ProtoMessage
    ) -> Response:
        self._calls += 1  # spread the reads over the routers
        index, backoffs, why = self._calls, 0, "no attempt"
        address = self._addresses[index % len(self._addresses)]
        async with self._gate:
            while True:
                remaining_s = self.deadline - time.monotonic()
                if remaining_s <= 0:
                    raise Unread(f"deadline passed; last: {why}")
                try:
                    return await rpc(self._stubs[address])(
                        request, timeout=min(ATTEMPT_S_MAX, remaining_s), metadata=self._metadata
                    )
                except grpc.aio.AioRpcError as rpc_error:
                    error = error_from_rpc_error(rpc_error)
                why = f"{address}: {error.reason.value}: {error.message}"[:300]
                if error.server_reported and error.reason not in _RETRIED:
                    raise Unread(why, error.reason.value)
                hint = error.leader_hint
                if hint is not None and hint.address in self._stubs and hint.address != address:
                    address = hint.address
                    continue
                index += 1
                address = self._addresses[index % len(self._addresses)]
                delay_s = min(BACKOFF_S_MAX, BACKOFF_S_MIN * 2 ** min(backoffs, 10))
                await asyncio.sleep(min(delay_s, max(0.0, self.deadline - time.monotonic())))
                backoffs += 1


async def collect_final_state(
    topology: Topology,
    history: Sequence[Op],
    *,
    clock: Callable[[], float],
    quiet: bool,
    credentials: grpc.ChannelCredentials | None = None,
    timeout_s: float = 120.0,
) -> FinalState:
    """The state after heal. ``credentials`` serve the ledger and the Admin calls; None
    takes the topology's certificates (client, and operator for Admin) when it has TLS."""
    notes: list[str] = []
    ledger_credentials = credentials
    if credentials is None and topology.tls:
        found = client_credentials(topology)
        ledger_credentials = found.ledger.channel_credentials() if found is not None else None
    users = users_of(history)
    infos = list({op.request_id: op for op in history if op.status == "info"}.values())
    statuses: dict[str, RequestStatus] = {}
    wallets: dict[str, Wallet] = {}
    envelopes: dict[str, Envelope] = {}
    misses: Misses = {}
    shows_per_call = min(
        SHOWS_PER_CALL, BATCH_RESPONSE_LINES_MAX // max(1, topology.limits.envelope_shares_max)
    )
    deadline = time.monotonic() + timeout_s
    for _ in range(COLLECT_PASSES_MAX):
        deadline = time.monotonic() + timeout_s
        misses = {}
        read_before = len(statuses) + len(wallets) + len(envelopes)
        reader = _Reader(topology, ledger_credentials, deadline)
        try:
            todo = [op for op in infos if op.request_id not in statuses]
            statuses.update(await resolve_info(reader, topology, todo, users, notes, misses))
            todo_users = [user for user in users if user not in wallets]
            wallets.update(await read_wallets(reader, topology, todo_users, notes, misses))
            todo_envelopes = [e for e in envelopes_of(history, statuses) if e not in envelopes]
            envelopes.update(
                await read_envelopes(reader, todo_envelopes, misses, per_call=shows_per_call)
            )
        finally:
            await reader.close()
        read_now = len(statuses) + len(wallets) + len(envelopes)
        if not misses or read_now == read_before:
            break
    notes.extend(misses.values())
    for op in infos:  # an id nobody could ask about stays unresolved
        statuses.setdefault(op.request_id, RequestStatus("unknown"))
    audit_s = max(AUDIT_S_MIN, deadline - time.monotonic())
    shards = await shard_totals(topology, credentials, audit_s, notes)
    if len(notes) > NOTES_MAX:
        notes[NOTES_MAX:] = [f"... and {len(notes) - NOTES_MAX} more notes"]
    unread = {
        kind: sum(1 for key in misses if key[0] == kind)
        for kind in ("statuses", "wallets", "envelopes")
    }
    unread["shards"] = topology.shard_count - len(shards)
    return FinalState(
        wallets=wallets,
        envelopes=envelopes,
        request_status=statuses,
        shards=shards,
        quiet=quiet,
        collected_at_s=clock(),
        notes=notes,
        unread={kind: count for kind, count in unread.items() if count},
    )


# -- what to read ----------------------------------------------------------------------


def users_of(history: Sequence[Op]) -> list[str]:
    """Every user an op names, in the order first seen."""
    seen: dict[str, None] = {}
    for op in history:
        for key in ("user", "from", "to", "sender"):
            value = op.args.get(key)
            if isinstance(value, str):
                seen.setdefault(value, None)
    return list(seen)


def envelopes_of(history: Sequence[Op], statuses: dict[str, RequestStatus]) -> list[str]:
    """Envelopes a send acknowledged, or that a resolved send applied; then any grabbed."""
    seen: dict[str, None] = {}
    for op in history:
        result: dict[str, object] = {}
        if op.kind == "send" and op.status == "ok":
            result = op.result
        elif op.kind == "send" and op.request_id in statuses:
            result = statuses[op.request_id].result
        envelope_id = result.get("envelope_id")
        if isinstance(envelope_id, str) and envelope_id:
            seen.setdefault(envelope_id, None)
    return list(seen)


def locating_user(op: Op, topology: Topology, history_users: Sequence[str]) -> str | None:
    """The user whose shard holds the op's request id (RequestStatus routes by it): the
    depositor, the payer, the sender; for a grab any user of the envelope's shard."""
    if op.kind in ("deposit", "withdraw"):
        return _str(op.args.get("user"))
    if op.kind == "transfer":
        return _str(op.args.get("from"))
    if op.kind == "send":
        return _str(op.args.get("sender"))
    parsed = parse_envelope_id(str(op.args.get("envelope_id", "")))
    if parsed is None:
        return None
    shard = parsed[0]
    grabber = _str(op.args.get("user"))
    for user in ([grabber] if grabber else []) + list(history_users):
        if shard_for_user(user, topology.shard_count) == shard:
            return user
    for n in range(PROBE_USERS_MAX):
        if shard_for_user(f"probe-{n}", topology.shard_count) == shard:
            return f"probe-{n}"
    return None


def _str(value: object) -> str | None:
    return value if isinstance(value, str) and value else None


# -- the reads -------------------------------------------------------------------------


async def resolve_info(
    reader: _Reader,
    topology: Topology,
    infos: Sequence[Op],
    users: Sequence[str],
    notes: list[str],
    misses: Misses,
) -> dict[str, RequestStatus]:
    """The resolution of each ``info`` op (one per request id); those not read are left
    out, named in ``misses``."""

    async def one(op: Op) -> RequestStatus | None:
        user = locating_user(op, topology, users)
        if user is None:
            notes.append(f"request {op.request_id} ({op.kind}): no user locates its shard")
            return RequestStatus("unknown")
        request = ledger_pb2.RequestStatusRequest(request_id=op.request_id, user_id=user)
        try:
            answer = await reader.call(lambda s: s.wallet.RequestStatus, request)
        except Unread as why:
            misses[("statuses", op.request_id)] = (
                f"request {op.request_id} ({op.kind}): status not read: {why}"
            )
            return None
        if answer.outcome == ledger_pb2.REQUEST_OUTCOME_NOT_APPLIED:
            return RequestStatus("not_applied")
        if answer.outcome != ledger_pb2.REQUEST_OUTCOME_APPLIED:
            notes.append(f"request {op.request_id}: outcome {answer.outcome} is neither")
            return RequestStatus("unknown")
        first = answer.result
        which = first.WhichOneof("result")
        if which == "error":
            return RequestStatus("applied", {"reason": reason_name(first.error)})
        if which != op.kind:
            notes.append(f"request {op.request_id} ({op.kind}) applied as {which or 'nothing'}")
        return RequestStatus("applied", result_fields(first))

    answers = await asyncio.gather(*(one(op) for op in infos))
    return {
        op.request_id: answer
        for op, answer in zip(infos, answers, strict=True)
        if answer is not None
    }


async def read_wallets(
    reader: _Reader,
    topology: Topology,
    users: Sequence[str],
    notes: list[str],
    misses: Misses,
) -> dict[str, Wallet]:
    limit = min(500, topology.limits.history_limit_max)

    async def one(user: str) -> Wallet | None:
        try:
            postings: list[ledger_pb2.Posting] = []
            token = ""
            for _ in range(PAGES_MAX):
                page = await reader.call(
                    lambda s: s.wallet.History,
                    ledger_pb2.HistoryRequest(user_id=user, limit=limit, page_token=token),
                )
                postings.extend(page.postings)
                token = page.next_page_token
                if not token:
                    break
            else:
                notes.append(f"wallet {user}: journal cut at {PAGES_MAX} pages")
            balance = await reader.call(
                lambda s: s.wallet.Balance, ledger_pb2.BalanceRequest(user_id=user)
            )
        except Unread as why:
            if why.reason == ErrorReason.NOT_FOUND.value:
                return Wallet(0, [])  # no account: nothing ever reached it
            misses[("wallets", user)] = f"wallet {user}: not read: {why}"
            return None
        journal = [_posting(p) for p in reversed(postings)]  # oldest first
        if journal and journal[-1].balance_fen != balance.balance_fen:
            notes.append(
                f"wallet {user}: balance {balance.balance_fen} fen but the journal "
                f"ends at {journal[-1].balance_fen} fen"
            )
        return Wallet(int(balance.balance_fen), journal)

    answers = await asyncio.gather(*(one(user) for user in users))
    return {u: w for u, w in zip(users, answers, strict=True) if w is not None}


def _posting(p: ledger_pb2.Posting) -> Posting:
    kind = ledger_pb2.PostingKind.Name(p.kind).removeprefix("POSTING_KIND_")
    return Posting(
        seq=int(p.seq),
        kind=kind,
        amount_fen=int(p.amount_fen),
        balance_fen=int(p.balance_fen),
        counterparty=p.counterparty,
        ref=p.ref,
    )


async def read_envelopes(
    reader: _Reader, envelope_ids: Sequence[str], misses: Misses, *, per_call: int = SHOWS_PER_CALL
) -> dict[str, Envelope]:
    """Every envelope, ``per_call`` Shows to a Batch (thousands of single calls cost the
    loaded machine seconds); what a Batch could not answer is read alone, with retries."""

    async def one(envelope_id: str) -> Envelope | None:
        try:
            shown = await reader.call(
                lambda s: s.envelopes.Show, ledger_pb2.ShowRequest(envelope_id=envelope_id)
            )
        except Unread as why:
            if why.reason != ErrorReason.NOT_FOUND.value:  # absent is an answer: the
                misses[("envelopes", envelope_id)] = f"envelope {envelope_id}: not read: {why}"
            return None  # checks then find an acknowledged send's envelope missing
        return _envelope(shown.envelope)

    async def alone(ids: Sequence[str]) -> list[Envelope | None]:
        return list(await asyncio.gather(*(one(e) for e in ids)))

    async def chunk(ids: Sequence[str]) -> list[Envelope | None]:
        request = ledger_pb2.ExecuteRequest(
            operations=[
                ledger_pb2.Operation(show=ledger_pb2.ShowRequest(envelope_id=e)) for e in ids
            ]
        )
        try:
            response = await reader.call(lambda s: s.batch.Execute, request)
        except Unread:
            return await alone(ids)
        found: list[Envelope | None] = []
        for envelope_id, result in zip(ids, response.results, strict=False):
            if result.WhichOneof("result") == "show":
                shown = result.show.envelope
                if shown.envelope_id != envelope_id:  # answers out of order: trust none
                    return await alone(ids)
                found.append(_envelope(shown))
            elif error_from_proto(result.error).reason is ErrorReason.NOT_FOUND:
                found.append(None)
            else:
                found.append(await one(envelope_id))  # refused for now: alone, with retries
        found.extend([await one(e) for e in ids[len(found) :]])  # an answer cut short
        return found

    step = max(1, per_call)
    chunks = [envelope_ids[i : i + step] for i in range(0, len(envelope_ids), step)]
    answers = [a for found in await asyncio.gather(*(chunk(c) for c in chunks)) for a in found]
    return {e: a for e, a in zip(envelope_ids, answers, strict=True) if a is not None}


def _envelope(e: ledger_pb2.Envelope) -> Envelope:
    return Envelope(
        sender=e.sender_user_id,
        kind=ledger_pb2.EnvelopeKind.Name(e.kind).removeprefix("ENVELOPE_KIND_"),
        total_fen=int(e.total_fen),
        count=int(e.count),
        state=ledger_pb2.EnvelopeState.Name(e.state).removeprefix("ENVELOPE_STATE_"),
        remaining_fen=int(e.remaining_fen),
        remaining_count=int(e.remaining_count),
        refunded_fen=int(e.refunded_fen),
        grabs=[EnvelopeGrab(int(g.ordinal), g.user_id, int(g.amount_fen)) for g in e.grabs],
    )


async def shard_totals(
    topology: Topology,
    credentials: grpc.ChannelCredentials | None,
    timeout_s: float,
    notes: list[str],
) -> dict[int, ShardTotals]:
    report = await live_audit(topology, timeout_s=timeout_s, credentials=credentials)
    notes.extend(f"shard audit: {why}" for why in report.unreachable)
    if not report.drained:
        notes.append("shard audit: the outboxes never drained; totals of the last round")
    elif not report.quiet:
        notes.append("shard audit: no two rounds agreed (traffic kept arriving)")
    missing = sorted(set(range(topology.shard_count)) - {line.shard_id for line in report.shards})
    if missing:
        notes.append(f"shard audit: no totals for shards {missing}")
    return {
        line.shard_id: ShardTotals(
            balances_fen=line.balances_fen,
            escrow_fen=line.escrow_fen,
            deposits_fen=line.deposits_fen,
            withdrawals_fen=line.withdrawals_fen,
            outbox_entries=line.outbox_entries,
            outbox_fen=line.outbox_fen,
            negative_balances=line.negative_balances,
            problems=list(line.problems),
        )
        for line in report.shards
    }
