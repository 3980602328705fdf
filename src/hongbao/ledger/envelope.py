"""Red envelopes: send, grab, expire, show.

Rules of this module: an envelope lives on its sender's shard, under the id
``e{shard}-{n}`` where ``n`` is that shard's envelope counter (same on every replica).
Sending debits the sender and escrows the total in one apply. A grab takes one share per
user while shares remain: fixed envelopes split evenly (the total must divide by the count,
so every share is the same integer); lucky envelopes draw by the double-average rule
(``lucky``). The share goes to the grabber's wallet here, or through the outbox if the
grabber lives elsewhere.

Expiry happens exactly once because it is a state transition, OPEN -> EXPIRED, taken by
whichever comes first in the log: an ExpireEnvelopes sweep, or a grab that finds the TTL
passed. Both go through :func:`_expire`, which refunds the remainder to the sender and
removes the envelope from the expiry index; a second attempt finds it no longer OPEN.

Reads never decide a transition (the rule for every read that looks at time). Show is a
read-only query (it may run on a follower's read transaction) and reports the envelope
exactly as the log left it at the read point: an envelope past its TTL that no sweep or
grab has expired yet is still OPEN, with its remaining shares in escrow and
``refunded_fen = 0``, and ``expiry_pending`` says its TTL has passed. The refund amount is
decided by the log entry that expires it, never by a read. Why not let the read project
the refund from a clock (the reader's, or the leader's taken before the read barrier)?
Grabs are stamped when proposed, so a grab proposed just before ``expires_at_ms`` can be
applied after such a read and take a share of a refund already announced. Making the
leader's read wait for everything proposed before its clock reading would close that on
one leader, at the cost of every read waiting for the log; but the read's clock never
enters the log, so a new leader whose clock lags stamps a grab before ``expires_at_ms``
after the old leader announced the refund. A read that reports only
applied state is contradicted by no later answer: every later Show, Balance or grab
extends the same log. Around the expiry instant a client therefore sees OPEN (and, once
the TTL has passed, ``expiry_pending``), possibly a grab stamped before ``expires_at_ms``
that lands after the TTL, and then EXPIRED with the refund that was applied, at the same
moment the refund is in the sender's balance.
"""

from __future__ import annotations

from dataclasses import fields, replace

from hongbao._invariant import fail, invariant
from hongbao.ledger.books import Books, check_delta, escrow, load_row, move, save_row, wallet
from hongbao.ledger.commands import ExpireEnvelopes, GrabEnvelope, SendEnvelope
from hongbao.ledger.idempotency import lookup
from hongbao.ledger.lucky import draw_share, envelope_seed, share_cap_fen
from hongbao.ledger.outbox import ship
from hongbao.ledger.reasons import Reason
from hongbao.ledger.records import (
    CreditKind,
    Envelope,
    EnvelopeKind,
    EnvelopeStatus,
    Grab,
    TxKind,
    envelope_key,
    expiry_key,
    grab_key,
    grabber_key,
    grabs_prefix,
    load,
    row,
    save,
    u32,
)
from hongbao.ledger.results import (
    EnvelopeCreated,
    EnvelopeView,
    ExpiryReport,
    GrabReceipt,
    Ok,
    Rejected,
    Result,
)
from hongbao.ledger.sharding import envelope_id, parse_envelope_id, shard_for_user
from hongbao.ledger.store import LedgerStore, Table
from hongbao.ledger.wallet import payer


def send(books: Books, command: SendEnvelope) -> Result:
    account = payer(books, command.sender_user_id, command.total_fen)
    if isinstance(account, Rejected):
        return account
    seq = books.state.envelope_seq_last + 1
    books.state = replace(books.state, envelope_seq_last=seq)
    new_id = envelope_id(books.shard_id, seq)
    fixed = command.kind is EnvelopeKind.FIXED
    envelope = Envelope(
        envelope_id=new_id,
        envelope_seq=seq,
        sender_user_id=command.sender_user_id,
        kind=command.kind,
        total_fen=command.total_fen,
        share_count=command.share_count,
        share_cap_fen=(
            command.total_fen // command.share_count
            if fixed
            else share_cap_fen(command.total_fen, command.share_count)
        ),
        remaining_fen=command.total_fen,
        remaining_count=command.share_count,
        refunded_fen=0,
        status=EnvelopeStatus.OPEN,
        created_at_ms=books.now_ms,
        expires_at_ms=books.now_ms + books.limits.envelope_ttl_ms,
        seed=envelope_seed(request_id=command.request_id, envelope_id=new_id, ts_ms=books.now_ms),
    )
    invariant(books.store.get(Table.ENVELOPES, envelope_key(new_id)) is None, "envelope id reuse")
    before = books.state
    move(
        books,
        source=wallet(command.sender_user_id),
        destination=escrow(new_id),
        amount_fen=command.total_fen,
        kind=TxKind.ENVELOPE_SEND,
        ref=new_id,
        outgoing=True,
    )
    total_fen = command.total_fen
    check_delta(books, before, {"balances_fen": -total_fen, "escrow_fen": total_fen}, "send")
    save_row(books, Table.ENVELOPES, envelope_key(new_id), envelope)
    books.store.put(Table.EXPIRY, expiry_key(envelope.expires_at_ms, seq), envelope_key(new_id))
    return Ok(
        EnvelopeCreated(
            envelope_id=new_id,
            total_fen=command.total_fen,
            share_count=command.share_count,
            sender_balance_fen=account.balance_fen - command.total_fen,
            expires_at_ms=envelope.expires_at_ms,
        )
    )


def grab(books: Books, command: GrabEnvelope) -> Result:
    parsed = parse_envelope_id(command.envelope_id)
    invariant(parsed is not None, "validate() lets only well-formed envelope ids through")
    if parsed is None or parsed[0] != books.shard_id:
        return Rejected(Reason.WRONG_SHARD, f"{command.envelope_id} is not on this shard")
    envelope = load_row(books, Table.ENVELOPES, envelope_key(command.envelope_id), Envelope)
    if envelope is None:
        return Rejected(Reason.ENVELOPE_NOT_FOUND, f"no envelope {command.envelope_id}")
    if envelope.status is EnvelopeStatus.OPEN and books.now_ms >= envelope.expires_at_ms:
        envelope = _expire(books, envelope)  # lazily: this grab is the first to notice
    refusal = closed_to(books.store, envelope, command.user_id)
    if refusal is not None:
        return refusal
    return Ok(_take_share(books, envelope, command.user_id))


def closed_to(store: LedgerStore, envelope: Envelope, user_id: str) -> Rejected | None:
    """Why ``envelope`` refuses any grab by ``user_id`` from now on, or None (a share may
    still be taken). Each refusal is final: grabber rows are never removed, and an EMPTY
    or EXPIRED envelope never opens again."""
    if store.get(Table.GRABBERS, grabber_key(envelope.envelope_id, user_id)) is not None:
        return Rejected(Reason.ALREADY_GRABBED, f"{user_id} already grabbed this envelope")
    if envelope.status is EnvelopeStatus.EXPIRED:
        return Rejected(Reason.ENVELOPE_EXPIRED, f"{envelope.envelope_id} has expired")
    if envelope.status is EnvelopeStatus.EMPTY:
        return Rejected(Reason.ENVELOPE_EMPTY, f"every share of {envelope.envelope_id} is taken")
    return None


def settled_grab(store: LedgerStore, command: GrabEnvelope) -> Rejected | None:
    """The answer ``command`` is bound to get when the applied state already decides it,
    read from that state (a read transaction, on any replica); None: it needs the log.

    Why this is exact, not a guess: the state is a committed prefix of the log, and
    :func:`closed_to` refusals are final, so ``command`` applied at any later index gets
    this very refusal, unless it was applied already, which its idempotency record would
    show (then None: the log path answers the first result). The hot envelope is where
    this pays: of a thousand grabbers of a hundred shares, nine hundred are answered here
    instead of each costing a log entry on three replicas. Like a refusal at the boundary,
    it is not remembered under the request id.
    """
    if lookup(store, command.request_id) is not None:
        return None
    envelope = load(store, Table.ENVELOPES, envelope_key(command.envelope_id), Envelope)
    if envelope is None:
        return None  # not there yet is not final
    return closed_to(store, envelope, command.user_id)


def _take_share(books: Books, envelope: Envelope, user_id: str) -> GrabReceipt:
    invariant(envelope.status is EnvelopeStatus.OPEN, "grabbing a closed envelope")
    ordinal = envelope.share_count - envelope.remaining_count + 1
    if envelope.kind is EnvelopeKind.FIXED:
        amount_fen = envelope.share_cap_fen
    else:
        amount_fen = draw_share(
            seed=envelope.seed,
            ordinal=ordinal,
            remaining_fen=envelope.remaining_fen,
            remaining_count=envelope.remaining_count,
            cap_fen=envelope.share_cap_fen,
        )
    if not 1 <= amount_fen <= envelope.share_cap_fen:
        fail(f"share {amount_fen} out of bounds")
    remaining_count = envelope.remaining_count - 1
    remaining_fen = envelope.remaining_fen - amount_fen
    invariant(remaining_fen >= remaining_count, "a remaining share would get less than 1 fen")
    invariant(remaining_count > 0 or remaining_fen == 0, "the last share must take the rest")
    done = remaining_count == 0
    updated = _after_grab(envelope, remaining_fen, remaining_count, done=done)
    eid = envelope.envelope_id
    save_row(books, Table.ENVELOPES, envelope_key(eid), updated)
    if done:
        books.store.delete(Table.EXPIRY, expiry_key(envelope.expires_at_ms, envelope.envelope_seq))
    save(
        books.store,
        Table.GRABS,
        grab_key(eid, ordinal),
        Grab(ordinal, user_id, amount_fen, books.now_ms),
    )
    books.store.put(Table.GRABBERS, grabber_key(eid, user_id), u32(ordinal))
    destination_shard = shard_for_user(user_id, books.identity.shard_count)
    before = books.state
    outbox_seq: int | None = None
    if destination_shard == books.shard_id:
        move(
            books,
            source=escrow(eid),
            destination=wallet(user_id),
            amount_fen=amount_fen,
            kind=TxKind.ENVELOPE_GRAB,
            ref=eid,
        )
    else:
        outbox_seq = ship(
            books,
            source=escrow(eid),
            destination_shard=destination_shard,
            user_id=user_id,
            amount_fen=amount_fen,
            kind=CreditKind.GRAB,
            ref=eid,
        )
    lands = "balances_fen" if outbox_seq is None else "outbox_fen"
    check_delta(books, before, {"escrow_fen": -amount_fen, lands: amount_fen}, "grab")
    return GrabReceipt(
        envelope_id=eid,
        user_id=user_id,
        ordinal=ordinal,
        amount_fen=amount_fen,
        remaining_count=remaining_count,
        remaining_fen=remaining_fen,
        destination_shard=destination_shard,
        outbox_seq=outbox_seq,
    )


_ENVELOPE_FIELDS = (
    "envelope_id",
    "envelope_seq",
    "sender_user_id",
    "kind",
    "total_fen",
    "share_count",
    "share_cap_fen",
    "remaining_fen",
    "remaining_count",
    "refunded_fen",
    "status",
    "created_at_ms",
    "expires_at_ms",
    "seed",
)
invariant(
    tuple(f.name for f in fields(Envelope)) == _ENVELOPE_FIELDS,
    "Envelope changed: _after_grab builds it field by field",
)


def _after_grab(
    envelope: Envelope, remaining_fen: int, remaining_count: int, *, done: bool
) -> Envelope:
    """``envelope`` after one share (``dataclasses.replace`` without its cost: every grab)."""
    return Envelope(
        envelope_id=envelope.envelope_id,
        envelope_seq=envelope.envelope_seq,
        sender_user_id=envelope.sender_user_id,
        kind=envelope.kind,
        total_fen=envelope.total_fen,
        share_count=envelope.share_count,
        share_cap_fen=envelope.share_cap_fen,
        remaining_fen=remaining_fen,
        remaining_count=remaining_count,
        refunded_fen=envelope.refunded_fen,
        status=EnvelopeStatus.EMPTY if done else EnvelopeStatus.OPEN,
        created_at_ms=envelope.created_at_ms,
        expires_at_ms=envelope.expires_at_ms,
        seed=envelope.seed,
    )


def expire_due(books: Books, command: ExpireEnvelopes) -> Result:
    """Refund up to ``limit`` open envelopes whose TTL ended at or before ``now_ms``."""
    if command.now_ms > books.now_ms:
        return Rejected(
            Reason.TIME_IN_FUTURE,
            f"now_ms {command.now_ms} is ahead of the shard clock {books.now_ms}",
        )
    expired: list[str] = []
    refunded_fen = 0
    for key, value in books.store.scan(Table.EXPIRY, limit=command.limit):
        if int.from_bytes(key[:8], "big") > command.now_ms:
            break  # the index is in expiry order: nothing later is due
        envelope = load_row(books, Table.ENVELOPES, value, Envelope)
        if envelope is None:
            fail(f"the expiry index names a missing envelope {value!r}")
        refunded_fen += envelope.remaining_fen
        _expire(books, envelope)
        expired.append(envelope.envelope_id)
    return Ok(ExpiryReport(tuple(expired), refunded_fen))


def _expire(books: Books, envelope: Envelope) -> Envelope:
    """OPEN -> EXPIRED, once: refund what is left to the sender (frozen or not)."""
    invariant(envelope.status is EnvelopeStatus.OPEN, f"{envelope.envelope_id} expired twice")
    invariant(envelope.remaining_fen >= envelope.remaining_count >= 1, "open envelope is empty")
    refund_fen, before = envelope.remaining_fen, books.state
    move(
        books,
        source=escrow(envelope.envelope_id),
        destination=wallet(envelope.sender_user_id),
        amount_fen=refund_fen,
        kind=TxKind.ENVELOPE_REFUND,
        ref=envelope.envelope_id,
    )
    check_delta(books, before, {"escrow_fen": -refund_fen, "balances_fen": refund_fen}, "refund")
    expired = replace(
        envelope, remaining_fen=0, refunded_fen=refund_fen, status=EnvelopeStatus.EXPIRED
    )
    save_row(books, Table.ENVELOPES, envelope_key(envelope.envelope_id), expired)
    books.store.delete(Table.EXPIRY, expiry_key(envelope.expires_at_ms, envelope.envelope_seq))
    return expired


# -- query --------------------------------------------------------------------------------------


def show(store: LedgerStore, envelope_id_text: str, *, clock_ms: int, shard_id: int) -> Result:
    """The envelope as applied; ``clock_ms`` only says whether its expiry is pending.

    ``clock_ms`` decides nothing (module docstring): past ``expires_at_ms`` an OPEN envelope
    stays OPEN with its escrow and no refund, flagged ``expiry_pending``.
    """
    parsed = parse_envelope_id(envelope_id_text)
    if parsed is None or parsed[0] != shard_id:
        return Rejected(Reason.WRONG_SHARD, f"{envelope_id_text} is not on shard {shard_id}")
    envelope = load(store, Table.ENVELOPES, envelope_key(envelope_id_text), Envelope)
    if envelope is None:
        return Rejected(Reason.ENVELOPE_NOT_FOUND, f"no envelope {envelope_id_text}")
    rows = store.scan(
        Table.GRABS, prefix=grabs_prefix(envelope_id_text), limit=envelope.share_count
    )
    grabs = tuple(row(value, Grab) for _, value in rows)
    pending = envelope.status is EnvelopeStatus.OPEN and clock_ms >= envelope.expires_at_ms
    return Ok(_view(envelope, grabs, expiry_pending=pending))


def _view(envelope: Envelope, grabs: tuple[Grab, ...], *, expiry_pending: bool) -> EnvelopeView:
    grabbed_fen = sum(g.amount_fen for g in grabs)
    best: Grab | None = None
    if envelope.kind is EnvelopeKind.LUCKY:
        for candidate in grabs:  # in ordinal order: a strictly larger share wins, ties stay
            if best is None or candidate.amount_fen > best.amount_fen:
                best = candidate
    return EnvelopeView(
        envelope_id=envelope.envelope_id,
        sender_user_id=envelope.sender_user_id,
        kind=envelope.kind,
        total_fen=envelope.total_fen,
        share_count=envelope.share_count,
        grabbed_count=len(grabs),
        grabbed_fen=grabbed_fen,
        remaining_count=envelope.remaining_count,
        remaining_fen=envelope.remaining_fen,
        refunded_fen=envelope.refunded_fen,
        status=envelope.status,
        created_at_ms=envelope.created_at_ms,
        expires_at_ms=envelope.expires_at_ms,
        grabs=grabs,
        best_luck_ordinal=None if best is None else best.ordinal,
        expiry_pending=expiry_pending,
    )
