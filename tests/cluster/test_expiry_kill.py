"""Envelopes with a short TTL and frequent snapshots, with kill -9 of their shard's leader.

The topology's ``[runtime]`` table makes every node snapshot a shard each few entries and
keep almost no log behind it, so the killed leader, restarted, catches up from a
snapshot. Grabs run before, during and after the kill and past the TTL; Shows are read all
along. At the end, every envelope's shares, refund and every grabber's credit are checked
exactly against the answers the clients got, no Show answer is contradicted by the final
state, and the cluster audit (conservation, replicas identical) passes.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Awaitable, Callable
from contextlib import suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

import pytest

from hongbao.client.sdk import HongbaoClient
from hongbao.node.errors import ErrorReason, HongbaoError
from hongbao.proto.gen.hongbao.v1 import ledger_pb2
from tests.cluster.support import running_cluster, users_per_shard, wait_for

pytestmark = pytest.mark.cluster

T = TypeVar("T")
TTL_MS = 6_000
RUNTIME = {"snapshot_interval_entries": 8, "trailing_entries": 2}
COUNTS = (4, 10, 10, 10, 10, 10)  # the first envelope empties, the others expire
FUNDS_FEN = 100_000
ANSWER_TIMEOUT_S = 20.0
SETTLE_TIMEOUT_S = 30.0
CLOSED = (ledger_pb2.ENVELOPE_STATE_EMPTY, ledger_pb2.ENVELOPE_STATE_EXPIRED)


@dataclass
class Record:
    """What the clients were told."""

    # envelope id -> user -> (ordinal, amount_fen) of every grab answered ok
    grabs: dict[str, dict[str, tuple[int, int]]] = field(default_factory=dict)
    refused: dict[str, dict[str, ErrorReason]] = field(default_factory=dict)
    shows: list[ledger_pb2.Envelope] = field(default_factory=list)


TRANSIENT = (ErrorReason.NOT_LEADER, ErrorReason.UNAVAILABLE, ErrorReason.OVERLOADED)


async def definite(call: Callable[[], Awaitable[T]]) -> T:
    """Retry (the caller reuses its request id) until the answer is not a "maybe"."""
    deadline = time.monotonic() + ANSWER_TIMEOUT_S
    while True:
        try:
            return await call()
        except HongbaoError as error:
            if not (error.outcome_unknown or error.reason in TRANSIENT):
                raise
            if time.monotonic() > deadline:
                raise
        await asyncio.sleep(0.05)


async def grab(client: HongbaoClient, record: Record, envelope_id: str, user: str) -> None:
    request_id = f"g-{uuid.uuid4().hex}"
    try:
        answer = await definite(lambda: client.grab(envelope_id, user, request_id=request_id))
    except HongbaoError as error:
        refusal = error
    else:
        record.grabs.setdefault(envelope_id, {})[user] = (answer.ordinal, answer.amount_fen)
        return
    assert refusal.reason in (ErrorReason.ENVELOPE_EXPIRED, ErrorReason.ENVELOPE_EMPTY), refusal
    record.refused.setdefault(envelope_id, {})[user] = refusal.reason


async def late_grab(
    client: HongbaoClient, record: Record, envelope_id: str, user: str, delay_s: float
) -> None:
    await asyncio.sleep(delay_s)  # aims a grab at an instant (the test waits on answers)
    await grab(client, record, envelope_id, user)


async def watch(
    client: HongbaoClient, record: Record, envelope_ids: list[str], stop: asyncio.Event
) -> None:
    """Linearizable Shows all along (answers that fail over are simply not recorded)."""
    while not stop.is_set():
        for envelope_id in envelope_ids:
            with suppress(HongbaoError):
                record.shows.append(await client.show(envelope_id))
        await asyncio.sleep(0.02)


def test_short_ttl_envelopes_with_snapshots_survive_kill_9_of_their_leader_exactly(
    tmp_path: Path,
) -> None:
    limits = {"envelope_ttl_ms": TTL_MS}
    # fsync (no_fsync=False): a kill -9 tests what was durable
    with running_cluster(tmp_path, no_fsync=False, limits=limits, runtime=RUNTIME) as harness:
        topology = harness.topology
        assert topology.runtime.snapshot_interval_entries == RUNTIME["snapshot_interval_entries"]
        shard_id = 0
        victim = harness.leaders()[shard_id]
        senders = users_per_shard(topology, 2, "xk-s")[shard_id]
        grabbers = [users[0] for users in users_per_shard(topology, 1, "xk-g").values()]
        record = Record()

        async def scenario() -> tuple[list[ledger_pb2.SendResponse], list[ledger_pb2.Envelope]]:
            async with HongbaoClient(topology) as client:
                for sender in senders:
                    await client.deposit(sender, FUNDS_FEN, request_id=f"d-{sender}")
                sent = []
                for n, count in enumerate(COUNTS):
                    sender = senders[n % 2]
                    total = 1_000 * (n + 1)
                    sent.append(
                        await client.send_envelope(
                            sender, total, count, lucky=n % 2 == 0, request_id=f"s-{n}"
                        )
                    )
                ids = [s.envelope_id for s in sent]
                stop = asyncio.Event()
                watcher = asyncio.ensure_future(watch(client, record, ids, stop))
                await asyncio.gather(
                    *(grab(client, record, e, u) for e in ids for u in grabbers[:2])
                )
                during = [
                    asyncio.ensure_future(grab(client, record, e, u))
                    for e in ids
                    for u in grabbers[2:4]
                ]
                await asyncio.to_thread(harness.cluster.kill, victim)  # kill -9
                await asyncio.gather(*during)
                await asyncio.gather(
                    *(grab(client, record, e, u) for e in ids[:3] for u in grabbers[4:6])
                )
                await asyncio.to_thread(harness.cluster.start, [victim])
                latest = max(s.expires_at_ms for s in sent)
                racing = []
                for offset_ms, user in zip((-300, -150, 0, 150, 300), grabbers[6:-1], strict=True):
                    # grabs sent around the TTL of the last envelopes, Shows watching them
                    delay_s = max(0.0, (latest + offset_ms) / 1000 - time.time())
                    racing += [late_grab(client, record, e, user, delay_s) for e in ids[3:]]
                await asyncio.gather(*racing)
                wait_for(lambda: time.time() * 1000 > latest, TTL_MS / 1000, "the TTL")
                late = grabbers[-1]
                await asyncio.gather(*(grab(client, record, e, late) for e in ids))

                async def settled() -> list[ledger_pb2.Envelope]:
                    deadline = time.monotonic() + SETTLE_TIMEOUT_S
                    while time.monotonic() < deadline:
                        views = [await client.show(e) for e in ids]
                        if all(v.state in CLOSED for v in views):
                            return views
                        await asyncio.sleep(0.1)
                    raise AssertionError("the envelopes were not all refunded or emptied")

                final = await settled()
                stop.set()
                await watcher
                await check_wallets(client, senders, grabbers, final, record)
                return sent, final

        sent, final = asyncio.run(scenario())
        for response, view in zip(sent, final, strict=True):
            check_envelope(response, view, record)
        finals = {view.envelope_id: view for view in final}
        for shown in record.shows:
            check_not_contradicted(shown, finals[shown.envelope_id])
        assert record.shows, "no Show was answered"
        assert any(record.refused.values()), "no grab was refused"
        views = harness.shard_views()
        assert views is not None
        assert all(s.snapshot_index > 0 for s in views[shard_id].replicas.values()), views
        report = harness.quiesce_stop_audit()
        assert report.ledger is not None
        assert report.ledger.escrow_fen == 0


def check_envelope(
    sent: ledger_pb2.SendResponse, view: ledger_pb2.Envelope, record: Record
) -> None:
    answered = record.grabs.get(view.envelope_id, {})
    stored = {g.user_id: (g.ordinal, g.amount_fen) for g in view.grabs}
    assert stored == answered, (view.envelope_id, stored, answered)
    for user in record.refused.get(view.envelope_id, {}):
        assert user not in stored
    grabbed = sum(amount for _, amount in stored.values())
    assert sorted(o for o, _ in stored.values()) == list(range(1, len(stored) + 1))
    assert grabbed + view.refunded_fen == view.total_fen
    assert view.remaining_fen == 0
    assert not view.expiry_pending
    if view.state == ledger_pb2.ENVELOPE_STATE_EMPTY:
        assert (len(stored), view.refunded_fen) == (view.count, 0)
    else:
        assert view.state == ledger_pb2.ENVELOPE_STATE_EXPIRED
        assert view.remaining_count == view.count - len(stored)
        assert view.refunded_fen > 0
    assert view.expires_at_ms == sent.expires_at_ms


def check_not_contradicted(shown: ledger_pb2.Envelope, final: ledger_pb2.Envelope) -> None:
    """Every Show was a true earlier state: its grabs stay, a closed answer was final."""
    assert list(final.grabs)[: len(shown.grabs)] == list(shown.grabs), (shown, final)
    if shown.state in CLOSED:
        assert (shown.state, shown.refunded_fen, len(shown.grabs)) == (
            final.state,
            final.refunded_fen,
            len(final.grabs),
        )
    else:
        assert shown.refunded_fen == 0


async def check_wallets(
    client: HongbaoClient,
    senders: list[str],
    grabbers: list[str],
    final: list[ledger_pb2.Envelope],
    record: Record,
) -> None:
    """Grabbers hold exactly their shares (cross-shard ones delivered); senders their refunds."""
    owed = {u: 0 for u in grabbers}
    for shares in record.grabs.values():
        for user, (_, amount) in shares.items():
            owed[user] += amount

    async def credited() -> bool:
        for user, amount in owed.items():
            balance = await balance_or_zero(client, user)
            if balance != amount:
                return False
        return True

    deadline = time.monotonic() + SETTLE_TIMEOUT_S
    while not await credited():
        assert time.monotonic() < deadline, "grab credits were not all delivered"
        await asyncio.sleep(0.1)
    for user, amount in owed.items():
        if amount:
            postings = (await client.history(user)).postings
            grabs = [p for p in postings if p.kind == ledger_pb2.POSTING_KIND_ENVELOPE_GRAB]
            assert sum(p.amount_fen for p in grabs) == amount
    for sender in senders:
        mine = [v for v in final if v.sender_user_id == sender]
        expected = FUNDS_FEN - sum(v.total_fen for v in mine) + sum(v.refunded_fen for v in mine)
        assert (await client.balance(sender)).balance_fen == expected
        postings = (await client.history(sender)).postings
        refunds = {
            p.ref: p.amount_fen
            for p in postings
            if p.kind == ledger_pb2.POSTING_KIND_ENVELOPE_REFUND
        }
        assert refunds == {v.envelope_id: v.refunded_fen for v in mine if v.refunded_fen}


async def balance_or_zero(client: HongbaoClient, user: str) -> int:
    """A grabber's balance; one who never got a share has no account (NOT_FOUND)."""
    try:
        return (await client.balance(user)).balance_fen
    except HongbaoError as error:
        missing = error
    assert missing.reason is ErrorReason.NOT_FOUND, missing
    return 0
