"""``hongbao wallet``: deposit, withdraw, transfer, balance, history, freeze, unfreeze.

A thin shell: parse (amounts exactly, in yuan or fen), call :class:`HongbaoClient`, render
(rich for people, ``--json`` for machines). A mutation without ``--request-id`` gets a
fresh one, printed on stderr first, so the operator can retry it safely.
"""

from __future__ import annotations

from datetime import UTC, datetime

import click
from rich.table import Table

from hongbao.cli.common import (
    EXIT_CODES_HELP,
    amount_options,
    config_option,
    format_fen,
    json_option,
    print_json,
    request_id_option,
    resolve_amount,
    run_client,
    stdout_console,
    take_request_id,
    timeout_option,
    yuan,
)
from hongbao.client.sdk import HongbaoClient
from hongbao.proto.gen.hongbao.v1 import ledger_pb2


@click.group(epilog=EXIT_CODES_HELP)
def wallet() -> None:
    """Wallets: money in fen (1 yuan = 100 fen), give --amount 12.34 or --amount-fen 1234."""


@wallet.command("deposit")
@click.argument("user")
@amount_options
@request_id_option
@config_option
@timeout_option
@json_option
def deposit(
    user: str,
    amount_yuan: str | None,
    amount_fen: int | None,
    request_id: str | None,
    config_path: str,
    timeout_s: float,
    as_json: bool,
) -> None:
    """Put money into USER's wallet."""
    amount = resolve_amount(amount_yuan, amount_fen)
    rid = take_request_id(request_id)
    balance = run_client(
        config_path,
        lambda c: c.deposit(user, amount, rid),
        timeout_s=timeout_s,
        request_id=rid,
    )
    if as_json:
        print_json({"request_id": rid, "user_id": user, "amount_fen": amount,
                    "balance_fen": balance})  # fmt: skip
        return
    stdout_console().print(
        f"deposited [bold]{yuan(amount)}[/bold] to {user}; balance {yuan(balance)}"
    )


@wallet.command("withdraw")
@click.argument("user")
@amount_options
@request_id_option
@config_option
@timeout_option
@json_option
def withdraw(
    user: str,
    amount_yuan: str | None,
    amount_fen: int | None,
    request_id: str | None,
    config_path: str,
    timeout_s: float,
    as_json: bool,
) -> None:
    """Take money out of USER's wallet (never below zero)."""
    amount = resolve_amount(amount_yuan, amount_fen)
    rid = take_request_id(request_id)
    balance = run_client(
        config_path,
        lambda c: c.withdraw(user, amount, rid),
        timeout_s=timeout_s,
        request_id=rid,
    )
    if as_json:
        print_json({"request_id": rid, "user_id": user, "amount_fen": amount,
                    "balance_fen": balance})  # fmt: skip
        return
    stdout_console().print(
        f"withdrew [bold]{yuan(amount)}[/bold] from {user}; balance {yuan(balance)}"
    )


@wallet.command("transfer")
@click.argument("from_user")
@click.argument("to_user")
@amount_options
@request_id_option
@config_option
@timeout_option
@json_option
def transfer(
    from_user: str,
    to_user: str,
    amount_yuan: str | None,
    amount_fen: int | None,
    request_id: str | None,
    config_path: str,
    timeout_s: float,
    as_json: bool,
) -> None:
    """Move money from FROM_USER to TO_USER (across shards through the outbox)."""
    amount = resolve_amount(amount_yuan, amount_fen)
    rid = take_request_id(request_id)
    response = run_client(
        config_path,
        lambda c: c.transfer(from_user, to_user, amount, rid),
        timeout_s=timeout_s,
        request_id=rid,
    )
    if as_json:
        print_json({
            "request_id": rid, "from_user_id": from_user, "to_user_id": to_user,
            "amount_fen": amount, "from_balance_fen": response.from_balance_fen,
            "cross_shard": response.cross_shard,
        })  # fmt: skip
        return
    how = " (cross-shard: the credit follows through the outbox)" if response.cross_shard else ""
    stdout_console().print(
        f"transferred [bold]{yuan(amount)}[/bold] from {from_user} to {to_user}{how}; "
        f"{from_user}'s balance {yuan(response.from_balance_fen)}"
    )


@wallet.command("balance")
@click.argument("user")
@click.option("--stale-ok", is_flag=True,
              help="Answer from any replica, possibly behind (no leader round trip).")
@config_option
@timeout_option
@json_option
def balance(user: str, stale_ok: bool, config_path: str, timeout_s: float, as_json: bool) -> None:
    """Show USER's balance (linearizable unless --stale-ok)."""
    response = run_client(
        config_path, lambda c: c.balance(user, stale_ok=stale_ok), timeout_s=timeout_s
    )
    if as_json:
        print_json({
            "user_id": user, "balance_fen": response.balance_fen, "frozen": response.frozen,
            "daily_outgoing_fen": response.daily_outgoing_fen,
        })  # fmt: skip
        return
    frozen = " [red](frozen)[/red]" if response.frozen else ""
    stdout_console().print(
        f"{user}: [bold]{yuan(response.balance_fen)}[/bold]{frozen}; "
        f"sent or withdrawn today {yuan(response.daily_outgoing_fen)}"
    )


_KIND_NAMES = {
    value: name.removeprefix("POSTING_KIND_").lower()
    for name, value in ledger_pb2.PostingKind.items()
}


def _when(ts_ms: int) -> str:
    return datetime.fromtimestamp(ts_ms / 1000, tz=UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


HISTORY_PAGES_MAX = 1_000
"""``--all`` reads at most this many pages (of --limit postings each), then stops and
prints the token to continue from: a walk is bounded like every other read."""


@wallet.command("history")
@click.argument("user")
@click.option("--limit", type=click.IntRange(min=1), default=20, show_default=True,
              help="How many postings per page, newest first.")
@click.option("--page-token", default="",
              help="Continue below the page that printed this token (its next page token).")
@click.option("--all", "walk_all", is_flag=True,
              help=f"Walk every page (at most {HISTORY_PAGES_MAX}), newest first.")
@config_option
@timeout_option
@json_option
def history(
    user: str, limit: int, page_token: str, walk_all: bool, config_path: str, timeout_s: float,
    as_json: bool,
) -> None:  # fmt: skip
    """Show USER's journal, newest first; each posting's seq counts USER's postings from 1."""

    async def pages(client: HongbaoClient) -> tuple[list[ledger_pb2.Posting], str]:
        postings: list[ledger_pb2.Posting] = []
        token = page_token
        shard_id = client.user_shard(user)
        for _ in range(HISTORY_PAGES_MAX if walk_all else 1):
            request = ledger_pb2.HistoryRequest(user_id=user, limit=limit, page_token=token)
            response = await client.call(shard_id, lambda s: s.wallet.History, request)
            postings.extend(response.postings)
            token = response.next_page_token
            if not token:
                break
        return postings, token

    postings, next_token = run_client(config_path, pages, timeout_s=timeout_s)
    if as_json:
        print_json({"user_id": user, "next_page_token": next_token, "postings": [
            {"seq": p.seq, "ts_ms": p.ts_ms, "kind": _KIND_NAMES.get(p.kind, str(p.kind)),
             "amount_fen": p.amount_fen, "balance_fen": p.balance_fen,
             "counterparty": p.counterparty, "ref": p.ref}
            for p in postings
        ]})  # fmt: skip
        return
    table = Table(title=f"history of {user}")
    for column in ("seq", "when", "kind", "amount (yuan)", "balance (yuan)", "counterparty"):
        justify = "right" if column in ("seq", "amount (yuan)", "balance (yuan)") else "left"
        table.add_column(column, justify=justify)  # type: ignore[arg-type]
    for p in postings:
        table.add_row(
            str(p.seq), _when(p.ts_ms), _KIND_NAMES.get(p.kind, str(p.kind)),
            format_fen(p.amount_fen), format_fen(p.balance_fen), p.counterparty,
        )  # fmt: skip
    console = stdout_console()
    console.print(table)
    if not postings:
        console.print(f"no postings for {user}")
    if next_token:
        console.print(f"next page: --page-token {next_token}", markup=False)


def _freeze(
    user: str, frozen: bool, request_id: str | None, config_path: str, timeout_s: float,
    as_json: bool,
) -> None:  # fmt: skip
    rid = take_request_id(request_id)
    state = run_client(
        config_path,
        lambda c: c.freeze(user, frozen=frozen, request_id=rid),
        timeout_s=timeout_s,
        request_id=rid,
    )
    if as_json:
        print_json({"request_id": rid, "user_id": user, "frozen": state})
        return
    now = "[red]frozen[/red]" if state else "[green]not frozen[/green]"
    stdout_console().print(f"{user} is now {now}")


@wallet.command("freeze")
@click.argument("user")
@request_id_option
@config_option
@timeout_option
@json_option
def freeze(
    user: str, request_id: str | None, config_path: str, timeout_s: float, as_json: bool
) -> None:
    """Risk control: USER can still receive money but cannot send or withdraw any."""
    _freeze(user, True, request_id, config_path, timeout_s, as_json)


@wallet.command("unfreeze")
@click.argument("user")
@request_id_option
@config_option
@timeout_option
@json_option
def unfreeze(
    user: str, request_id: str | None, config_path: str, timeout_s: float, as_json: bool
) -> None:
    """Lift a freeze on USER."""
    _freeze(user, False, request_id, config_path, timeout_s, as_json)
