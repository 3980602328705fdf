"""Money between shards: the outbox on the paying shard, the inbox number on the paid one.

Rules of this module: a credit for a wallet on another shard leaves this shard in the same
apply as the debit that funds it (:func:`ship`: a journal move into ``@outbox:{d}`` plus a
numbered outbox entry). The courier (node runtime) reads :func:`pending_outbox`, proposes
:class:`~hongbao.ledger.commands.Deliver` on the destination, and, once the destination
has applied them, :class:`~hongbao.ledger.commands.Acknowledge` here.

Per (source, destination) the seqs run 1, 2, 3... with no gaps. The destination keeps one
number per source, the last seq applied, and applies seq ``n`` only right after ``n - 1``:
a duplicate is answered "already applied" and changes nothing; a gap is refused
(SEQUENCE_GAP), so delivery may be at-least-once and out of order while the effect is
exactly-once and in order. Entries stay in the outbox until acknowledged, so a new leader's
courier resumes from them.

The courier must acknowledge only seqs the destination reports applied (a
DeliveryReceipt, or :func:`inbox_seq` there): this shard cannot check that, and an entry
dropped before it was applied is money lost, which the audit reports
("applied ... outside acked").
"""

from __future__ import annotations

from dataclasses import fields

from hongbao._invariant import invariant
from hongbao.ledger.books import (
    Books,
    check_delta,
    inbox_account,
    inflow_refusal,
    load_row,
    move,
    outbox_account,
    save_row,
    settled_account,
    wallet,
)
from hongbao.ledger.commands import Acknowledge, Deliver
from hongbao.ledger.reasons import Reason
from hongbao.ledger.records import (
    META_OUTBOX_PREFIX,
    CreditKind,
    OutboxCursor,
    OutboxEntry,
    TxKind,
    inbox_key,
    load,
    meta_outbox_key,
    outbox_key,
    outbox_prefix,
    row,
    save,
    u64,
)
from hongbao.ledger.results import AckReceipt, DeliveryReceipt, InboxPosition, Ok, Rejected, Result
from hongbao.ledger.sharding import shard_for_user
from hongbao.ledger.store import LedgerStore, Table, iterate

_TX_KIND = {CreditKind.TRANSFER: TxKind.TRANSFER, CreditKind.GRAB: TxKind.ENVELOPE_GRAB}
invariant(
    tuple(f.name for f in fields(OutboxCursor)) == ("destination_shard", "last_seq", "acked_seq"),
    "OutboxCursor changed: ship() builds it field by field",
)


def cursor(store: LedgerStore, destination_shard: int) -> OutboxCursor:
    found = load(store, Table.META, meta_outbox_key(destination_shard), OutboxCursor)
    return found or OutboxCursor(destination_shard, last_seq=0, acked_seq=0)


def _cursor_of(books: Books, destination_shard: int) -> OutboxCursor:
    """:func:`cursor` through the batch's row cache (ship and acknowledge write it back)."""
    found = load_row(books, Table.META, meta_outbox_key(destination_shard), OutboxCursor)
    return found or OutboxCursor(destination_shard, last_seq=0, acked_seq=0)


def inbox_seq(store: LedgerStore, source_shard: int) -> int:
    """The last seq this shard applied from ``source_shard`` (0 before the first)."""
    data = store.get(Table.INBOX, inbox_key(source_shard))
    return 0 if data is None else int.from_bytes(data, "big")


def ship(
    books: Books,
    *,
    source: str,
    destination_shard: int,
    user_id: str,
    amount_fen: int,
    kind: CreditKind,
    ref: str,
    outgoing: bool = False,
) -> int:
    """Move money from ``source`` into the outbox toward ``destination_shard``; its seq."""
    invariant(destination_shard != books.shard_id, "shipping to this very shard")
    invariant(shard_for_user(user_id, books.identity.shard_count) == destination_shard, "misroute")
    move(
        books,
        source=source,
        destination=outbox_account(destination_shard),
        amount_fen=amount_fen,
        kind=_TX_KIND[kind],
        ref=ref,
        outgoing=outgoing,
    )
    position = _cursor_of(books, destination_shard)
    seq = position.last_seq + 1
    entry = OutboxEntry(
        source_shard=books.shard_id,
        destination_shard=destination_shard,
        seq=seq,
        user_id=user_id,
        amount_fen=amount_fen,
        kind=kind,
        ref=ref,
        created_at_ms=books.now_ms,
    )
    invariant(books.store.get(Table.OUTBOX, outbox_key(destination_shard, seq)) is None, "reuse")
    save(books.store, Table.OUTBOX, outbox_key(destination_shard, seq), entry)
    advanced = OutboxCursor(destination_shard, last_seq=seq, acked_seq=position.acked_seq)
    save_row(books, Table.META, meta_outbox_key(destination_shard), advanced)
    return seq


def deliver(books: Books, command: Deliver) -> Result:
    """Apply one credit from another shard's outbox, exactly once and in order."""
    source = command.source_shard
    if source >= books.identity.shard_count or source == books.shard_id:
        return Rejected(Reason.INVALID_SHARD, f"shard {source} cannot deliver to this shard")
    if shard_for_user(command.user_id, books.identity.shard_count) != books.shard_id:
        return Rejected(Reason.WRONG_SHARD, f"{command.user_id} does not live on this shard")
    applied = inbox_seq(books.store, source)
    if command.seq <= applied:
        return Ok(DeliveryReceipt(source, command.seq, applied=False))
    if command.seq > applied + 1:
        return Rejected(
            Reason.SEQUENCE_GAP,
            f"seq {command.seq} from shard {source} arrived before {applied + 1}",
        )
    # A credit already debited at its source is refused only if this shard cannot hold
    # it: the seq stays unapplied, the money stays in the source's outbox (conserved).
    refusal = inflow_refusal(books, command.amount_fen)
    if refusal is not None:
        return refusal
    before = books.state
    move(
        books,
        source=inbox_account(source),
        destination=wallet(command.user_id),
        amount_fen=command.amount_fen,
        kind=_TX_KIND[command.kind],  # the statement reads the same on either shard
        ref=command.ref,
    )
    amount_fen = command.amount_fen
    check_delta(books, before, {"balances_fen": amount_fen, "delivered_in_fen": amount_fen}, "in")
    books.store.put(Table.INBOX, inbox_key(source), u64(command.seq))
    return Ok(DeliveryReceipt(source, command.seq, applied=True))


def acknowledge(books: Books, command: Acknowledge) -> Result:
    """Drop delivered entries (at most ``outbox_batch_max``) and settle their money."""
    destination = command.destination_shard
    if destination >= books.identity.shard_count or destination == books.shard_id:
        return Rejected(Reason.INVALID_SHARD, f"shard {destination} has no outbox here")
    position = _cursor_of(books, destination)
    if command.up_to_seq > position.last_seq:
        return Rejected(
            Reason.ACK_BEYOND_OUTBOX,
            f"ack of seq {command.up_to_seq}; only {position.last_seq} were sent to {destination}",
        )
    if command.up_to_seq <= position.acked_seq:
        return Ok(AckReceipt(destination, position.acked_seq, dropped_count=0, dropped_fen=0))
    count = min(command.up_to_seq - position.acked_seq, books.limits.outbox_batch_max)
    rows = books.store.scan(Table.OUTBOX, prefix=outbox_prefix(destination), limit=count)
    invariant(len(rows) == count, "outbox entries between acked and last seq are missing")
    dropped_fen = 0
    for index, (key, value) in enumerate(rows):
        invariant(key == outbox_key(destination, position.acked_seq + index + 1), "outbox gap")
        dropped_fen += row(value, OutboxEntry).amount_fen
        books.store.delete(Table.OUTBOX, key)
    acked_seq = position.acked_seq + count
    settled = OutboxCursor(destination, last_seq=position.last_seq, acked_seq=acked_seq)
    save_row(books, Table.META, meta_outbox_key(destination), settled)
    before = books.state
    move(
        books,
        source=outbox_account(destination),
        destination=settled_account(destination),
        amount_fen=dropped_fen,
        kind=TxKind.SETTLEMENT,
        ref=f"{destination}:{position.acked_seq + 1}-{acked_seq}",
    )
    expected = {"outbox_fen": -dropped_fen, "settled_out_fen": dropped_fen}
    check_delta(books, before, expected, "acknowledge")
    return Ok(AckReceipt(destination, acked_seq, dropped_count=count, dropped_fen=dropped_fen))


# -- reads for the courier ----------------------------------------------------------------------


def pending_outbox(store: LedgerStore, destination_shard: int, limit: int) -> list[OutboxEntry]:
    """Up to ``limit`` unacknowledged entries toward ``destination_shard``, oldest first."""
    invariant(limit > 0, f"pending_outbox limit must be positive, got {limit}")
    rows = store.scan(Table.OUTBOX, prefix=outbox_prefix(destination_shard), limit=limit)
    return [row(value, OutboxEntry) for _, value in rows]


def outbox_destinations(store: LedgerStore) -> list[int]:
    """Destinations with unacknowledged entries, in shard order."""
    destinations = []
    for _, value in iterate(store, Table.META, prefix=META_OUTBOX_PREFIX):
        position = row(value, OutboxCursor)
        if position.last_seq > position.acked_seq:
            destinations.append(position.destination_shard)
    return destinations


def deliver_command(entry: OutboxEntry) -> Deliver:
    """The command that applies ``entry`` on its destination shard."""
    return Deliver(
        source_shard=entry.source_shard,
        seq=entry.seq,
        user_id=entry.user_id,
        amount_fen=entry.amount_fen,
        kind=entry.kind,
        ref=entry.ref,
    )


def inbox_position(store: LedgerStore, source_shard: int) -> InboxPosition:
    return InboxPosition(source_shard, inbox_seq(store, source_shard))
