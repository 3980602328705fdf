"""Statements: each wallet numbers its lines 1, 2, 3 ... and pages walk them exactly once.

``ledger.proto`` promises ``Posting.seq`` "per wallet, increasing from 1". These drive a
user through local and cross-shard traffic (transfers in and out, grabs of envelopes
homed on other shards, refunds) while other users keep the shards' journals busy, and
check the numbering, the paging cursor (``GetHistory.before_seq``), determinism across
replicas and snapshots, and the deep audit that ties statements to the journal.
"""

from __future__ import annotations

import random

from hongbao.ledger import (
    Deposit,
    EnvelopeKind,
    ExpireEnvelopes,
    GetHistory,
    GrabEnvelope,
    Limits,
    MemoryStore,
    Reason,
    SendEnvelope,
    Table,
    Transfer,
    Withdraw,
    audit,
    dump,
    load,
    query,
    state_digest,
)
from hongbao.ledger.records import HistoryEntry, history_key
from hongbao.ledger.results import EnvelopeCreated, HistoryView

from .helpers import Cluster, ok, refused

TTL_MS = 60_000


def busy(seed: int = 7) -> tuple[Cluster, str]:
    """Three shards of mixed traffic; returns the cluster and the user under watch."""
    c = Cluster(shard_count=3, limits=Limits(envelope_ttl_ms=TTL_MS))
    rng = random.Random(seed)
    (watched,) = c.users(1, 1, stem="w")
    others = {shard: c.users(shard, 3) for shard in range(3)}
    for shard, users in others.items():
        for user in users:
            c.one(shard, Deposit(c.rid(), user, 50_000))
    c.one(1, Deposit(c.rid(), watched, 20_000))
    for step in range(60):
        shard = rng.randrange(3)
        payer = rng.choice(others[shard])
        match step % 6:
            case 0:  # a credit from another shard: goes through the outbox
                c.one(shard, Transfer(c.rid(), payer, watched, rng.randint(1, 300)))
            case 1:  # noise on every shard's journal, none of it the watched wallet's
                c.one(shard, Transfer(c.rid(), payer, rng.choice(others[(shard + 1) % 3]), 7))
            case 2:
                c.one(1, Transfer(c.rid(), watched, rng.choice(others[2]), rng.randint(1, 50)))
            case 3:
                created = ok(
                    c.one(shard, SendEnvelope(c.rid(), payer, EnvelopeKind.LUCKY, 300, 3)),
                    EnvelopeCreated,
                )
                c.one(shard, GrabEnvelope(c.rid(), created.envelope_id, watched))
            case 4:
                c.one(1, SendEnvelope(c.rid(), watched, EnvelopeKind.FIXED, 200, 2))
            case _:
                c.one(1, Withdraw(c.rid(), watched, 1))
        if step % 5 == 0:
            c.deliver_all()
    c.now_ms += TTL_MS  # the watched user's envelopes expire: refunds are lines too
    c.one(1, ExpireEnvelopes(c.now_ms, 100))
    c.deliver_all()
    return c, watched


def history(c: Cluster, user: str, limit: int, before_seq: int = 0) -> list[HistoryEntry]:
    store = c.stores[c.shard_of(user)]
    return list(ok(query(store, GetHistory(user, limit, before_seq)), HistoryView).entries)


def walk(c: Cluster, user: str, limit: int) -> list[HistoryEntry]:
    lines: list[HistoryEntry] = []
    before_seq = 0
    for _ in range(10_000):
        page = history(c, user, limit, before_seq)
        lines.extend(page)
        if not page or page[-1].seq == 1:
            return lines
        before_seq = page[-1].seq
    raise AssertionError("the walk did not end")


def test_a_wallet_numbers_its_lines_from_1_without_gaps() -> None:
    c, watched = busy()
    lines = history(c, watched, 500)
    count = len(lines)
    assert count > 60
    assert [line.seq for line in lines] == list(range(count, 0, -1))
    journal = [line.journal_seq for line in lines]
    assert journal == sorted(journal, reverse=True)
    assert journal[0] - journal[-1] + 1 > count  # the shard's journal has other lines between
    assert {line.counterparty for line in lines if line.counterparty.startswith("@inbox:")}
    balance = 0
    for line in reversed(lines):
        balance += line.delta_fen
        assert line.balance_fen == balance
    c.audit()  # deep: statements match the journal's legs, numbered 1..N


def test_pages_walk_every_line_once_newest_first() -> None:
    c, watched = busy()
    everything = history(c, watched, 500)
    for limit in (1, 7, 50):
        assert walk(c, watched, limit) == everything
    assert history(c, watched, 5, before_seq=1) == []
    assert history(c, watched, 5, before_seq=3) == everything[-2:]
    refused(query(c.stores[1], GetHistory(watched, 5, -1)), Reason.INVALID_SEQUENCE)


def test_pages_stay_exact_while_new_lines_arrive() -> None:
    c, watched = busy()
    (payer,) = c.users(1, 1, stem="p")
    c.one(1, Deposit(c.rid(), payer, 100_000))
    before = len(history(c, watched, 500))
    seen: list[HistoryEntry] = []
    page = history(c, watched, 10)
    while page:
        seen.extend(page)
        c.one(1, Transfer(c.rid(), payer, watched, 1))  # a new newest line meanwhile
        if page[-1].seq == 1:
            break
        page = history(c, watched, 10, before_seq=page[-1].seq)
    assert [line.seq for line in seen] == list(range(before, 0, -1))
    assert len({line.seq for line in seen}) == len(seen)


def test_replicas_and_snapshots_number_alike() -> None:
    first, watched = busy(seed=11)
    second, _ = busy(seed=11)
    for shard in range(3):
        assert state_digest(first.stores[shard]) == state_digest(second.stores[shard])
    twin = MemoryStore()
    load(twin, dump(first.stores[1]))
    assert state_digest(twin) == state_digest(first.stores[1])
    view = ok(query(twin, GetHistory(watched, 500)), HistoryView)
    assert [line.seq for line in view.entries][-1] == 1
    first.stores[1] = twin
    first.one(1, Deposit(first.rid(), watched, 5))  # numbering continues after a restore
    assert history(first, watched, 1)[0].seq == len(view.entries) + 1


def test_the_deep_audit_sees_a_gap_in_a_statement() -> None:
    c, watched = busy()
    store = c.stores[1]
    store.delete(Table.HISTORY, history_key(watched, 2))
    report = audit(c.stores, deep=True)
    assert any("is not numbered" in problem for problem in report.problems), report.problems
