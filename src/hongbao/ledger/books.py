"""The books of one shard while a batch applies, and the only way money moves: :func:`move`.

Rules of this module: every movement of money is one call to :func:`move`, which posts a
balanced two-leg journal transaction and updates, leg by leg, the wallet it touches or the
running total of the system account it touches. Handlers decide *whether* money may move
(and return a refusal otherwise); :func:`move` then re-checks the same facts as invariants
(a pair assertion) and cannot create or destroy a fen: its legs sum to zero.

System accounts (journal names): ``@world`` (outside money: deposits, withdrawals),
``@escrow:{envelope}`` (an envelope's unclaimed money), ``@outbox:{shard}`` (money on its
way to another shard), ``@inbox:{shard}`` (money that arrived from one),
``@settled:{shard}`` (outbox money the destination confirmed). Wallets are ``u:{user}``.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from hongbao._invariant import InvariantViolation, invariant
from hongbao.ledger.codec import INT_MAX, WIDE_INT_MAX
from hongbao.ledger.limits import DAY_MS, DAY_OFFSET_MS, Limits
from hongbao.ledger.reasons import Reason
from hongbao.ledger.records import (
    META_IDENTITY,
    META_LIMITS,
    META_STATE,
    MONEY_FIELDS,
    Account,
    HistoryEntry,
    JournalTx,
    Posting,
    ShardIdentity,
    ShardState,
    TxKind,
    account_key,
    history_key,
    journal_key,
    load,
    load_required,
    save,
)
from hongbao.ledger.results import AccountView, Rejected
from hongbao.ledger.store import LedgerStore, Table

WORLD = "@world"
_WALLET = "u:"
_ESCROW = "@escrow:"
_OUTBOX = "@outbox:"
_INBOX = "@inbox:"
_SETTLED = "@settled:"


def wallet(user_id: str) -> str:
    return _WALLET + user_id


def escrow(envelope_id: str) -> str:
    return _ESCROW + envelope_id


def outbox_account(destination_shard: int) -> str:
    return f"{_OUTBOX}{destination_shard}"


def inbox_account(source_shard: int) -> str:
    return f"{_INBOX}{source_shard}"


def settled_account(destination_shard: int) -> str:
    return f"{_SETTLED}{destination_shard}"


def day_of(ts_ms: int) -> int:
    """The UTC+8 calendar day number of a timestamp (see ``limits.DAY_OFFSET_MS``)."""
    return (ts_ms + DAY_OFFSET_MS) // DAY_MS


def outgoing_today(account: Account, day: int) -> int:
    """What the user moved out on ``day``: the counter resets when the day changes."""
    return account.outgoing_fen if account.outgoing_day == day else 0


def account_view(account: Account, day: int) -> AccountView:
    return AccountView(
        user_id=account.user_id,
        balance_fen=account.balance_fen,
        frozen=account.frozen,
        outgoing_day=day,
        outgoing_today_fen=outgoing_today(account, day),
    )


def read_identity(store: LedgerStore) -> ShardIdentity:
    return load_required(store, Table.META, META_IDENTITY, ShardIdentity)


def read_limits(store: LedgerStore) -> Limits:
    return load_required(store, Table.META, META_LIMITS, Limits)


def read_state(store: LedgerStore) -> ShardState:
    return load_required(store, Table.META, META_STATE, ShardState)


@dataclass(slots=True)
class Books:
    """One shard's working state for one batch (mutable on purpose: it lives one batch).

    ``now_ms`` is the shard clock: the largest batch timestamp seen, so a new leader whose
    clock lags cannot make time (expiry, days) run backwards.
    """

    store: LedgerStore
    identity: ShardIdentity
    limits: Limits
    state: ShardState
    now_ms: int

    @property
    def shard_id(self) -> int:
        return self.identity.shard_id

    @property
    def day(self) -> int:
        return day_of(self.now_ms)


def open_books(store: LedgerStore, ts_ms: int) -> Books:
    state = read_state(store)
    now_ms = max(state.clock_ms, ts_ms)
    return Books(
        store=store,
        identity=read_identity(store),
        limits=read_limits(store),
        state=replace(state, clock_ms=now_ms),
        now_ms=now_ms,
    )


def close_books(books: Books) -> None:
    invariant(books.state.conserved(), f"closing unbalanced books: {books.state}")
    save(books.store, Table.META, META_STATE, books.state)


def check_delta(books: Books, before: ShardState, expected: dict[str, int], what: str) -> None:
    """Per-command conservation: the running totals moved by exactly ``expected``."""
    moved = {
        name: getattr(books.state, name) - getattr(before, name)
        for name in MONEY_FIELDS
        if getattr(books.state, name) != getattr(before, name)
    }
    invariant(moved == {k: v for k, v in expected.items() if v}, f"{what} moved {moved}")


HOLDINGS_MAX_FEN = INT_MAX
"""Most money one shard may hold (balances + escrow + outbox): 2^63 - 1 fen.

Every balance, escrow and history line is a part of it, so none of them can pass the
64-bit integers the codec writes. Money enters a shard only by a deposit or a delivery
from another shard; :func:`inflow_refusal` refuses either beyond this bound, the same way
on every replica, instead of failing inside apply (which would stop every replica on the
same committed entry, again after each restart)."""


def inflow_refusal(books: Books, amount_fen: int) -> Rejected | None:
    """HOLDINGS_LIMIT_EXCEEDED if ``amount_fen`` more would push the shard past its bounds."""
    state = books.state
    held_fen = state.balances_fen + state.escrow_fen + state.outbox_fen
    if held_fen + amount_fen > HOLDINGS_MAX_FEN:
        return Rejected(
            Reason.HOLDINGS_LIMIT_EXCEEDED,
            f"shard {books.shard_id} holds {held_fen} fen; {amount_fen} more would pass"
            f" {HOLDINGS_MAX_FEN}",
        )
    if max(state.deposits_fen, state.delivered_in_fen) + amount_fen > WIDE_INT_MAX:
        return Rejected(Reason.HOLDINGS_LIMIT_EXCEEDED, "the shard's running totals are full")
    return None


def get_account(books: Books, user_id: str) -> Account | None:
    return load(books.store, Table.ACCOUNTS, account_key(user_id), Account)


def move(
    books: Books,
    *,
    source: str,
    destination: str,
    amount_fen: int,
    kind: TxKind,
    ref: str,
    outgoing: bool = False,
) -> None:
    """Move ``amount_fen`` from ``source`` to ``destination`` and journal it.

    ``outgoing`` marks a user's own payment out of ``source`` (a wallet): it must not be
    frozen and it counts against the daily limit. The caller has checked funds, freeze and
    limit already; here they are invariants.
    """
    invariant(amount_fen > 0, f"move of {amount_fen} fen: amounts are positive")
    invariant(source != destination, f"move from {source} to itself")
    invariant(not outgoing or source.startswith(_WALLET), "only a wallet pays out")
    before = books.state
    seq = before.journal_seq_last + 1
    books.state = replace(before, journal_seq_last=seq)
    legs = (Posting(source, -amount_fen), Posting(destination, amount_fen))
    _post_leg(books, legs[0], seq=seq, kind=kind, ref=ref, other=destination, outgoing=outgoing)
    _post_leg(books, legs[1], seq=seq, kind=kind, ref=ref, other=source, outgoing=False)
    tx = JournalTx(seq=seq, at_ms=books.now_ms, kind=kind, ref=ref, postings=legs)
    save(books.store, Table.JOURNAL, journal_key(seq), tx)
    invariant(sum(leg.delta_fen for leg in legs) == 0, "journal transaction does not balance")
    invariant(books.state.conserved(), f"move {kind} {ref} broke conservation")


def _post_leg(
    books: Books, leg: Posting, *, seq: int, kind: TxKind, ref: str, other: str, outgoing: bool
) -> None:
    name, delta = leg.account, leg.delta_fen
    state = books.state
    if name.startswith(_WALLET):
        _post_wallet(books, leg, seq=seq, kind=kind, ref=ref, other=other, outgoing=outgoing)
    elif name.startswith(_ESCROW):
        books.state = replace(state, escrow_fen=state.escrow_fen + delta)
        invariant(books.state.escrow_fen >= 0, "escrow total went negative")
    elif name.startswith(_OUTBOX):
        books.state = replace(state, outbox_fen=state.outbox_fen + delta)
        invariant(books.state.outbox_fen >= 0, "outbox total went negative")
    elif name.startswith(_INBOX):
        invariant(delta < 0, "money only leaves an inbox (into a wallet)")
        books.state = replace(state, delivered_in_fen=state.delivered_in_fen - delta)
    elif name.startswith(_SETTLED):
        invariant(delta > 0, "money only enters the settled account (from the outbox)")
        books.state = replace(state, settled_out_fen=state.settled_out_fen + delta)
    elif name == WORLD:
        if delta < 0:
            books.state = replace(state, deposits_fen=state.deposits_fen - delta)
        else:
            books.state = replace(state, withdrawals_fen=state.withdrawals_fen + delta)
    else:
        raise InvariantViolation(f"unknown journal account {name!r}")


def _post_wallet(
    books: Books, leg: Posting, *, seq: int, kind: TxKind, ref: str, other: str, outgoing: bool
) -> None:
    user_id = leg.account[len(_WALLET) :]
    account = get_account(books, user_id)
    if account is None:
        invariant(leg.delta_fen > 0, f"debit of {user_id}, who has no account")
        account = Account(user_id, balance_fen=0, frozen=False, outgoing_day=0, outgoing_fen=0)
    balance_fen = account.balance_fen + leg.delta_fen
    invariant(balance_fen >= 0, f"{user_id}'s balance would go negative: {balance_fen}")
    if outgoing:
        spent_fen = outgoing_today(account, books.day) - leg.delta_fen
        invariant(not account.frozen, f"{user_id} is frozen and cannot pay out")
        invariant(spent_fen <= books.limits.daily_outgoing_max_fen, "daily limit overrun")
        account = replace(account, outgoing_day=books.day, outgoing_fen=spent_fen)
    posting_seq = account.postings_last + 1
    account = replace(account, balance_fen=balance_fen, postings_last=posting_seq)
    save(books.store, Table.ACCOUNTS, account_key(user_id), account)
    line = HistoryEntry(
        seq=posting_seq,
        journal_seq=seq,
        at_ms=books.now_ms,
        kind=kind,
        ref=ref,
        delta_fen=leg.delta_fen,
        balance_fen=balance_fen,
        counterparty=other,
    )
    save(books.store, Table.HISTORY, history_key(user_id, posting_seq), line)
    books.state = replace(books.state, balances_fen=books.state.balances_fen + leg.delta_fen)
