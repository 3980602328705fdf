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

from dataclasses import dataclass, field, fields, replace

from hongbao._invariant import InvariantViolation, fail, invariant
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
    T,
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
    # Hot rows decoded during this batch (None: absent), by table and key, so a command, and
    # the next ones of the batch, read and decode each wallet, envelope and outbox cursor
    # once. Filled by :func:`load_row`; those rows are written only by :func:`save_row`, so
    # the cache never differs from the store. Bounded by the batch: a few rows per command.
    rows: dict[tuple[Table, bytes], object] = field(default_factory=dict)

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
    if not books.state.conserved():
        fail(f"closing unbalanced books: {books.state}")
    save(books.store, Table.META, META_STATE, books.state)


_MONEY_FIELD_SET = frozenset(MONEY_FIELDS)


def check_delta(books: Books, before: ShardState, expected: dict[str, int], what: str) -> None:
    """Per-command conservation: the running totals moved by exactly ``expected``.

    Field by field with no message built: it runs after every command that moves money."""
    after = books.state
    for name in MONEY_FIELDS:
        if getattr(after, name) - getattr(before, name) != expected.get(name, 0):
            break
    else:
        if expected.keys() <= _MONEY_FIELD_SET:
            return
    moved = {
        name: getattr(after, name) - getattr(before, name)
        for name in MONEY_FIELDS
        if getattr(after, name) != getattr(before, name)
    }
    fail(f"{what} moved {moved}, expected {expected}")


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


def load_row(books: Books, table: Table, key: bytes, cls: type[T]) -> T | None:
    """The record under ``key`` as this batch left it, decoded once per batch."""
    slot = (table, key)
    rows = books.rows
    if slot in rows:
        found = rows[slot]
    else:
        found = rows[slot] = load(books.store, table, key, cls)
    if found is not None and type(found) is not cls:
        fail(f"{table}/{key!r} holds a {type(found).__name__}, not a {cls.__name__}")
    return found


def save_row(books: Books, table: Table, key: bytes, record: object) -> None:
    """Write ``record`` to the store and to the batch's cache: every write of a row that
    :func:`load_row` reads must come through here."""
    save(books.store, table, key, record)
    books.rows[(table, key)] = record


def get_account(books: Books, user_id: str) -> Account | None:
    return load_row(books, Table.ACCOUNTS, account_key(user_id), Account)


def put_account(books: Books, account: Account) -> None:
    """Write ``account``: the only way the apply path writes an account row."""
    save_row(books, Table.ACCOUNTS, account_key(account.user_id), account)


# The state and account records are rebuilt field by field on the hot path (dataclasses.
# replace costs several times more); these guards make a field added to either record
# fail at import until the constructors below name it.
_STATE_FIELDS = (
    "clock_ms",
    "envelope_seq_last",
    "journal_seq_last",
    "idempotency_ordinal_last",
    "idempotency_count",
    "malformed_entries",
    *MONEY_FIELDS,
)
_ACCOUNT_FIELDS = (
    "user_id",
    "balance_fen",
    "frozen",
    "outgoing_day",
    "outgoing_fen",
    "postings_last",
)
invariant(tuple(f.name for f in fields(ShardState)) == _STATE_FIELDS, "ShardState changed")
invariant(tuple(f.name for f in fields(Account)) == _ACCOUNT_FIELDS, "Account changed")
invariant(_STATE_FIELDS[6:] == MONEY_FIELDS, "the move totals below index MONEY_FIELDS")

# Indexes into a move's totals: the money fields of ShardState, in MONEY_FIELDS order.
(
    _AT_BALANCES,
    _AT_ESCROW,
    _AT_OUTBOX,
    _AT_DEPOSITS,
    _AT_WITHDRAWALS,
    _AT_DELIVERED_IN,
    _AT_SETTLED,
) = range(7)


def state_with_idempotency(state: ShardState, *, ordinal_last: int, count: int) -> ShardState:
    """``state`` with new idempotency counters (``replace``, without its cost)."""
    return ShardState(
        clock_ms=state.clock_ms,
        envelope_seq_last=state.envelope_seq_last,
        journal_seq_last=state.journal_seq_last,
        idempotency_ordinal_last=ordinal_last,
        idempotency_count=count,
        malformed_entries=state.malformed_entries,
        balances_fen=state.balances_fen,
        escrow_fen=state.escrow_fen,
        outbox_fen=state.outbox_fen,
        deposits_fen=state.deposits_fen,
        withdrawals_fen=state.withdrawals_fen,
        delivered_in_fen=state.delivered_in_fen,
        settled_out_fen=state.settled_out_fen,
    )


def _state_after_move(state: ShardState, seq: int, moved: list[int]) -> ShardState:
    return ShardState(
        clock_ms=state.clock_ms,
        envelope_seq_last=state.envelope_seq_last,
        journal_seq_last=seq,
        idempotency_ordinal_last=state.idempotency_ordinal_last,
        idempotency_count=state.idempotency_count,
        malformed_entries=state.malformed_entries,
        balances_fen=state.balances_fen + moved[_AT_BALANCES],
        escrow_fen=state.escrow_fen + moved[_AT_ESCROW],
        outbox_fen=state.outbox_fen + moved[_AT_OUTBOX],
        deposits_fen=state.deposits_fen + moved[_AT_DEPOSITS],
        withdrawals_fen=state.withdrawals_fen + moved[_AT_WITHDRAWALS],
        delivered_in_fen=state.delivered_in_fen + moved[_AT_DELIVERED_IN],
        settled_out_fen=state.settled_out_fen + moved[_AT_SETTLED],
    )


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
    limit already; here they are invariants. The running totals the legs change are summed
    in ``moved`` and the new state is built once, after both legs.
    """
    if amount_fen <= 0:
        fail(f"move of {amount_fen} fen: amounts are positive")
    if source == destination:
        fail(f"move from {source} to itself")
    invariant(not outgoing or source.startswith(_WALLET), "only a wallet pays out")
    before = books.state
    seq = before.journal_seq_last + 1
    legs = (Posting(source, -amount_fen), Posting(destination, amount_fen))
    moved = [0] * len(MONEY_FIELDS)
    _post_leg(books, moved, legs[0], seq=seq, kind=kind, ref=ref, other=destination,
              outgoing=outgoing)  # fmt: skip
    _post_leg(books, moved, legs[1], seq=seq, kind=kind, ref=ref, other=source, outgoing=False)
    tx = JournalTx(seq=seq, at_ms=books.now_ms, kind=kind, ref=ref, postings=legs)
    save(books.store, Table.JOURNAL, journal_key(seq), tx)
    invariant(legs[0].delta_fen + legs[1].delta_fen == 0, "journal transaction does not balance")
    books.state = after = _state_after_move(before, seq, moved)
    if not after.conserved():
        fail(f"move {kind} {ref} broke conservation")


def _post_leg(
    books: Books,
    moved: list[int],
    leg: Posting,
    *,
    seq: int,
    kind: TxKind,
    ref: str,
    other: str,
    outgoing: bool,
) -> None:
    """Post one leg: a wallet's row and statement line, or a system account's total (added
    to ``moved``, the move's running-total deltas)."""
    name, delta = leg.account, leg.delta_fen
    state = books.state
    if name.startswith(_WALLET):
        _post_wallet(books, leg, seq=seq, kind=kind, ref=ref, other=other, outgoing=outgoing)
        moved[_AT_BALANCES] += delta
    elif name.startswith(_ESCROW):
        moved[_AT_ESCROW] += delta
        invariant(state.escrow_fen + moved[_AT_ESCROW] >= 0, "escrow total went negative")
    elif name.startswith(_OUTBOX):
        moved[_AT_OUTBOX] += delta
        invariant(state.outbox_fen + moved[_AT_OUTBOX] >= 0, "outbox total went negative")
    elif name.startswith(_INBOX):
        invariant(delta < 0, "money only leaves an inbox (into a wallet)")
        moved[_AT_DELIVERED_IN] -= delta
    elif name.startswith(_SETTLED):
        invariant(delta > 0, "money only enters the settled account (from the outbox)")
        moved[_AT_SETTLED] += delta
    elif name == WORLD:
        if delta < 0:
            moved[_AT_DEPOSITS] -= delta
        else:
            moved[_AT_WITHDRAWALS] += delta
    else:
        raise InvariantViolation(f"unknown journal account {name!r}")


def _post_wallet(
    books: Books, leg: Posting, *, seq: int, kind: TxKind, ref: str, other: str, outgoing: bool
) -> None:
    user_id = leg.account[len(_WALLET) :]
    delta_fen = leg.delta_fen
    account = get_account(books, user_id)
    if account is None:
        if delta_fen <= 0:
            fail(f"debit of {user_id}, who has no account")
        account = Account(user_id, balance_fen=0, frozen=False, outgoing_day=0, outgoing_fen=0)
    balance_fen = account.balance_fen + delta_fen
    if balance_fen < 0:
        fail(f"{user_id}'s balance would go negative: {balance_fen}")
    outgoing_day, outgoing_fen = account.outgoing_day, account.outgoing_fen
    if outgoing:
        day = books.day
        outgoing_day, outgoing_fen = day, outgoing_today(account, day) - delta_fen
        if account.frozen:
            fail(f"{user_id} is frozen and cannot pay out")
        invariant(outgoing_fen <= books.limits.daily_outgoing_max_fen, "daily limit overrun")
    posting_seq = account.postings_last + 1
    put_account(
        books,
        Account(
            user_id=user_id,
            balance_fen=balance_fen,
            frozen=account.frozen,
            outgoing_day=outgoing_day,
            outgoing_fen=outgoing_fen,
            postings_last=posting_seq,
        ),
    )
    line = HistoryEntry(
        seq=posting_seq,
        journal_seq=seq,
        at_ms=books.now_ms,
        kind=kind,
        ref=ref,
        delta_fen=delta_fen,
        balance_fen=balance_fen,
        counterparty=other,
    )
    save(books.store, Table.HISTORY, history_key(user_id, posting_seq), line)
