"""The audit must fail when the money is wrong: each tampering below is caught."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

import pytest

from hongbao.ledger import (
    Acknowledge,
    Deposit,
    EnvelopeKind,
    GrabEnvelope,
    MemoryStore,
    SendEnvelope,
    Table,
    Transfer,
    audit,
    deliver_command,
    pending_outbox,
)
from hongbao.ledger.codec import decode, encode
from hongbao.ledger.records import (
    Account,
    Envelope,
    Grab,
    JournalTx,
    Posting,
    account_key,
    envelope_key,
    grab_key,
    grabber_key,
    u32,
)

from .helpers import Cluster


def busy() -> tuple[Cluster, str, str]:
    c = Cluster(shard_count=2)
    alice, carol = c.users(0, 2)
    (bob,) = c.users(1, 1)
    c.one(0, Deposit(c.rid(), alice, 10_000))
    c.one(0, Transfer(c.rid(), alice, bob, 100))
    c.one(0, Transfer(c.rid(), alice, bob, 50))
    c.one(0, SendEnvelope(c.rid(), alice, EnvelopeKind.LUCKY, 1_000, 3))
    c.one(0, GrabEnvelope(c.rid(), "e0-1", carol))
    c.one(0, GrabEnvelope(c.rid(), "e0-1", bob))
    c.one(1, deliver_command(pending_outbox(c.stores[0], 1, 1)[0]))  # delivered, not acked
    report = c.audit()
    assert report.undelivered_fen > 0
    return c, alice, bob


def _edit(store: MemoryStore, table: Table, key: bytes, cls: type, **changes: object) -> None:
    store.put(table, key, encode(replace(decode(store.get(table, key) or b"", cls), **changes)))


def _extra_fen(c: Cluster, alice: str, bob: str) -> None:
    account = decode(c.stores[0].get(Table.ACCOUNTS, account_key(alice)) or b"", Account)
    _edit(
        c.stores[0],
        Table.ACCOUNTS,
        account_key(alice),
        Account,
        balance_fen=account.balance_fen + 1,
    )


def _negative(c: Cluster, alice: str, bob: str) -> None:
    _edit(c.stores[0], Table.ACCOUNTS, account_key(alice), Account, balance_fen=-1)


def _double_grab(c: Cluster, alice: str, bob: str) -> None:
    store = c.stores[0]
    store.put(Table.GRABS, grab_key("e0-1", 3), encode(Grab(3, bob, 1, 0)))
    store.put(Table.GRABBERS, grabber_key("e0-1", bob + "x"), u32(3))


def _escrow_leak(c: Cluster, alice: str, bob: str) -> None:
    _edit(c.stores[0], Table.ENVELOPES, envelope_key("e0-1"), Envelope, remaining_fen=1)


def _lost_outbox_entry(c: Cluster, alice: str, bob: str) -> None:
    rows = c.stores[0].scan(Table.OUTBOX, limit=1)
    c.stores[0].delete(Table.OUTBOX, rows[0][0])


def _forged_journal(c: Cluster, alice: str, bob: str) -> None:
    key, value = c.stores[0].scan(Table.JOURNAL, limit=1)[0]
    tx = decode(value, JournalTx)
    forged = replace(tx, postings=(*tx.postings, Posting(f"u:{alice}", 1)))
    c.stores[0].put(Table.JOURNAL, key, encode(forged))


def _applied_beyond_sent(c: Cluster, alice: str, bob: str) -> None:
    c.stores[1].put(Table.INBOX, u32(0), (99).to_bytes(8, "big"))


def _premature_ack(c: Cluster, alice: str, bob: str) -> None:
    c.one(0, Acknowledge(1, 3))  # a buggy courier: seqs 2 and 3 were never delivered


TAMPERINGS: dict[str, Callable[[Cluster, str, str], None]] = {
    "a fen from nowhere": _extra_fen,
    "a negative balance": _negative,
    "a double grab": _double_grab,
    "escrow leak": _escrow_leak,
    "lost outbox entry": _lost_outbox_entry,
    "forged journal": _forged_journal,
    "applied beyond sent": _applied_beyond_sent,
    "premature acknowledgement": _premature_ack,
}


@pytest.mark.parametrize("name", list(TAMPERINGS))
def test_tampering_is_caught(name: str) -> None:
    c, alice, bob = busy()
    TAMPERINGS[name](c, alice, bob)
    report = audit(c.stores, deep=True)
    assert not report.ok, name


def test_missing_shards_are_reported() -> None:
    c, _, _ = busy()
    report = audit({1: c.stores[1]})
    assert not report.ok
