"""Wallets: deposit, withdraw, transfer, freeze and unfreeze, balance and history.

Rules of this module: a wallet lives on ``shard_for_user(user_id)``; a command for a user
of another shard is refused (WRONG_SHARD) — the router sent it to the wrong place. An
account comes into being with its first credit (a deposit, a transfer in, a grab, a
delivery), because a credit arriving from another shard cannot be refused: its debit is
already committed elsewhere.

Freeze semantics (risk control): a frozen account cannot pay out (withdraw, transfer,
send an envelope) but still receives (deposits, transfers in, grabs, refunds). Refusing
incoming money is impossible for cross-shard credits and pointless for fraud: the money
is locked in the frozen account either way.

Payment checks run in this order: account exists, not frozen, funds, daily limit. The
daily limit counts withdrawals, transfers out and envelopes sent, per UTC+8 calendar day.
"""

from __future__ import annotations

from dataclasses import replace

from hongbao._invariant import InvariantViolation
from hongbao.ledger.books import (
    WORLD,
    Books,
    account_view,
    check_delta,
    day_of,
    get_account,
    inflow_refusal,
    move,
    outgoing_today,
    put_account,
    read_identity,
    read_state,
    wallet,
)
from hongbao.ledger.commands import Deposit, Freeze, Transfer, Unfreeze, Withdraw
from hongbao.ledger.outbox import ship
from hongbao.ledger.reasons import Reason
from hongbao.ledger.records import (
    Account,
    CreditKind,
    HistoryEntry,
    TxKind,
    account_key,
    history_key,
    history_prefix,
    load,
    row,
)
from hongbao.ledger.results import AccountView, HistoryView, Ok, Rejected, Result, TransferReceipt
from hongbao.ledger.sharding import shard_for_user
from hongbao.ledger.store import LedgerStore, Table


def local_user(books: Books, user_id: str) -> Rejected | None:
    """WRONG_SHARD unless ``user_id``'s wallet lives on this shard."""
    owner = shard_for_user(user_id, books.identity.shard_count)
    if owner == books.shard_id:
        return None
    return Rejected(Reason.WRONG_SHARD, f"{user_id} lives on shard {owner}, not {books.shard_id}")


def payer(books: Books, user_id: str, amount_fen: int) -> Account | Rejected:
    """The account that may pay ``amount_fen`` out now, or why it may not."""
    refusal = local_user(books, user_id)
    if refusal is not None:
        return refusal
    account = get_account(books, user_id)
    if account is None:
        return Rejected(Reason.ACCOUNT_NOT_FOUND, f"{user_id} has no account")
    if account.frozen:
        return Rejected(Reason.ACCOUNT_FROZEN, f"{user_id} is frozen")
    if account.balance_fen < amount_fen:
        return Rejected(
            Reason.INSUFFICIENT_FUNDS,
            f"{user_id} has {account.balance_fen} fen, needs {amount_fen}",
        )
    spent_fen = outgoing_today(account, books.day)
    limit_fen = books.limits.daily_outgoing_max_fen
    if spent_fen + amount_fen > limit_fen:
        return Rejected(
            Reason.DAILY_LIMIT_EXCEEDED,
            f"{user_id} moved {spent_fen} of {limit_fen} fen out today; {amount_fen} is too much",
        )
    return account


def deposit(books: Books, command: Deposit) -> Result:
    refusal = local_user(books, command.user_id) or inflow_refusal(books, command.amount_fen)
    if refusal is not None:
        return refusal
    before, amount_fen = books.state, command.amount_fen
    move(
        books,
        source=WORLD,
        destination=wallet(command.user_id),
        amount_fen=amount_fen,
        kind=TxKind.DEPOSIT,
        ref=command.request_id,
    )
    check_delta(books, before, {"balances_fen": amount_fen, "deposits_fen": amount_fen}, "deposit")
    return Ok(_view(books, command.user_id))


def withdraw(books: Books, command: Withdraw) -> Result:
    account = payer(books, command.user_id, command.amount_fen)
    if isinstance(account, Rejected):
        return account
    before, amount_fen = books.state, command.amount_fen
    move(
        books,
        source=wallet(command.user_id),
        destination=WORLD,
        amount_fen=amount_fen,
        kind=TxKind.WITHDRAW,
        ref=command.request_id,
        outgoing=True,
    )
    expected = {"balances_fen": -amount_fen, "withdrawals_fen": amount_fen}
    check_delta(books, before, expected, "withdraw")
    return Ok(_view(books, command.user_id))


def transfer(books: Books, command: Transfer) -> Result:
    account = payer(books, command.from_user_id, command.amount_fen)
    if isinstance(account, Rejected):
        return account
    destination_shard = shard_for_user(command.to_user_id, books.identity.shard_count)
    before, amount_fen = books.state, command.amount_fen
    outbox_seq: int | None = None
    if destination_shard == books.shard_id:
        move(
            books,
            source=wallet(command.from_user_id),
            destination=wallet(command.to_user_id),
            amount_fen=command.amount_fen,
            kind=TxKind.TRANSFER,
            ref=command.request_id,
            outgoing=True,
        )
    else:
        outbox_seq = ship(
            books,
            source=wallet(command.from_user_id),
            destination_shard=destination_shard,
            user_id=command.to_user_id,
            amount_fen=command.amount_fen,
            kind=CreditKind.TRANSFER,
            ref=command.request_id,
            outgoing=True,
        )
    leaves_fen = 0 if outbox_seq is None else amount_fen  # into the outbox, out of balances
    check_delta(books, before, {"balances_fen": -leaves_fen, "outbox_fen": leaves_fen}, "transfer")
    return Ok(
        TransferReceipt(
            from_user_id=command.from_user_id,
            to_user_id=command.to_user_id,
            amount_fen=command.amount_fen,
            from_balance_fen=_view(books, command.from_user_id).balance_fen,
            destination_shard=destination_shard,
            outbox_seq=outbox_seq,
        )
    )


def set_frozen(books: Books, command: Freeze | Unfreeze) -> Result:
    """Freeze or unfreeze; doing it twice is harmless (the flag is already set)."""
    refusal = local_user(books, command.user_id)
    if refusal is not None:
        return refusal
    account = get_account(books, command.user_id)
    if account is None:
        return Rejected(Reason.ACCOUNT_NOT_FOUND, f"{command.user_id} has no account")
    frozen = isinstance(command, Freeze)
    put_account(books, replace(account, frozen=frozen))
    return Ok(_view(books, command.user_id))


def _view(books: Books, user_id: str) -> AccountView:
    account = get_account(books, user_id)
    if account is None:
        raise InvariantViolation(f"{user_id} has no account right after a movement")
    return account_view(account, books.day)


# -- queries ------------------------------------------------------------------------------------


def get_account_view(store: LedgerStore, user_id: str) -> Result:
    """Balance and today's outgoing total, "today" being the shard clock's day.

    Not the reader's day: past midnight by a reader's clock, a payment stamped before
    midnight may still be applied and count for the old day (the shard clock decides).
    """
    identity = read_identity(store)
    owner = shard_for_user(user_id, identity.shard_count)
    if owner != identity.shard_id:
        return Rejected(Reason.WRONG_SHARD, f"{user_id} lives on shard {owner}")
    account = load(store, Table.ACCOUNTS, account_key(user_id), Account)
    if account is None:
        return Rejected(Reason.ACCOUNT_NOT_FOUND, f"{user_id} has no account")
    return Ok(account_view(account, day_of(read_state(store).clock_ms)))


def get_history(store: LedgerStore, user_id: str, limit: int, before_seq: int = 0) -> Result:
    """The newest ``limit`` statement lines of ``user_id`` older than line ``before_seq``
    (0: from the newest), newest first."""
    identity = read_identity(store)
    owner = shard_for_user(user_id, identity.shard_count)
    if owner != identity.shard_id:
        return Rejected(Reason.WRONG_SHARD, f"{user_id} lives on shard {owner}")
    if store.get(Table.ACCOUNTS, account_key(user_id)) is None:
        return Rejected(Reason.ACCOUNT_NOT_FOUND, f"{user_id} has no account")
    if before_seq == 1:
        return Ok(HistoryView(user_id, ()))  # line 1 is the oldest: nothing below it
    start = history_key(user_id, before_seq - 1) if before_seq > 1 else b""
    rows = store.scan(Table.HISTORY, prefix=history_prefix(user_id), start=start, limit=limit)
    return Ok(HistoryView(user_id, tuple(row(value, HistoryEntry) for _, value in rows)))
