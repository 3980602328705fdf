"""``hongbao envelope``: send a red envelope, grab a share of one, show one.

A thin shell over :class:`HongbaoClient`, like ``hongbao wallet`` (same options, same
exit codes).
"""

from __future__ import annotations

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
from hongbao.proto.gen.hongbao.v1 import ledger_pb2

_STATES = {
    value: name.removeprefix("ENVELOPE_STATE_").lower()
    for name, value in ledger_pb2.EnvelopeState.items()
}
_KINDS = {
    value: name.removeprefix("ENVELOPE_KIND_").lower()
    for name, value in ledger_pb2.EnvelopeKind.items()
}


@click.group(epilog=EXIT_CODES_HELP)
def envelope() -> None:
    """Red envelopes: lucky (random shares) or fixed (equal shares)."""


@envelope.command("send")
@click.argument("sender")
@amount_options
@click.option("--count", type=click.IntRange(min=1), required=True, help="Number of shares.")
@click.option("--fixed", is_flag=True, help="Equal shares (the total must divide evenly).")
@request_id_option
@config_option
@timeout_option
@json_option
def send(
    sender: str,
    amount_yuan: str | None,
    amount_fen: int | None,
    count: int,
    fixed: bool,
    request_id: str | None,
    config_path: str,
    timeout_s: float,
    as_json: bool,
) -> None:
    """SENDER puts the amount in a new envelope of --count shares (lucky unless --fixed)."""
    total = resolve_amount(amount_yuan, amount_fen)
    rid = take_request_id(request_id)
    response = run_client(
        config_path,
        lambda c: c.send_envelope(sender, total, count, lucky=not fixed, request_id=rid),
        timeout_s=timeout_s,
        request_id=rid,
    )
    if as_json:
        print_json({
            "request_id": rid, "envelope_id": response.envelope_id, "sender_user_id": sender,
            "total_fen": total, "count": count, "kind": "fixed" if fixed else "lucky",
            "sender_balance_fen": response.sender_balance_fen,
            "expires_at_ms": response.expires_at_ms,
        })  # fmt: skip
        return
    stdout_console().print(
        f"{sender} sent a {'fixed' if fixed else 'lucky'} envelope "
        f"[bold]{response.envelope_id}[/bold]: {yuan(total)} in {count} shares; "
        f"{sender}'s balance {yuan(response.sender_balance_fen)}"
    )


@envelope.command("grab")
@click.argument("envelope_id")
@click.argument("user")
@request_id_option
@config_option
@timeout_option
@json_option
def grab(
    envelope_id: str,
    user: str,
    request_id: str | None,
    config_path: str,
    timeout_s: float,
    as_json: bool,
) -> None:
    """USER takes one share of ENVELOPE_ID (one per user per envelope)."""
    rid = take_request_id(request_id)
    response = run_client(
        config_path,
        lambda c: c.grab(envelope_id, user, rid),
        timeout_s=timeout_s,
        request_id=rid,
    )
    if as_json:
        print_json({
            "request_id": rid, "envelope_id": envelope_id, "user_id": user,
            "amount_fen": response.amount_fen, "ordinal": response.ordinal,
            "remaining_count": response.remaining_count, "cross_shard": response.cross_shard,
        })  # fmt: skip
        return
    stdout_console().print(
        f"{user} grabbed [bold]{yuan(response.amount_fen)}[/bold] from {envelope_id} "
        f"(share #{response.ordinal}; {response.remaining_count} left)"
    )


def envelope_json(view: ledger_pb2.Envelope) -> dict[str, object]:
    return {
        "envelope_id": view.envelope_id,
        "sender_user_id": view.sender_user_id,
        "kind": _KINDS.get(view.kind, str(view.kind)),
        "state": _STATES.get(view.state, str(view.state)),
        "total_fen": view.total_fen,
        "count": view.count,
        "remaining_fen": view.remaining_fen,
        "remaining_count": view.remaining_count,
        "refunded_fen": view.refunded_fen,
        "created_at_ms": view.created_at_ms,
        "expires_at_ms": view.expires_at_ms,
        "best_luck_ordinal": view.best_luck_ordinal,
        "expiry_pending": view.expiry_pending,
        "grabs": [
            {
                "ordinal": g.ordinal,
                "user_id": g.user_id,
                "amount_fen": g.amount_fen,
                "ts_ms": g.ts_ms,
            }
            for g in view.grabs
        ],
    }


@envelope.command("show")
@click.argument("envelope_id")
@click.option("--stale-ok", is_flag=True, help="Answer from any replica, possibly behind.")
@config_option
@timeout_option
@json_option
def show(
    envelope_id: str, stale_ok: bool, config_path: str, timeout_s: float, as_json: bool
) -> None:
    """Show ENVELOPE_ID: its state, every grab in order, and the best luck."""
    view = run_client(
        config_path, lambda c: c.show(envelope_id, stale_ok=stale_ok), timeout_s=timeout_s
    )
    if as_json:
        print_json(envelope_json(view))
        return
    out = stdout_console()
    out.print(
        f"envelope [bold]{view.envelope_id}[/bold] from {view.sender_user_id}: "
        f"{_KINDS.get(view.kind, '?')}, {yuan(view.total_fen)} in {view.count} shares, "
        f"{_STATES.get(view.state, '?')}; {view.remaining_count} shares "
        f"({yuan(view.remaining_fen)}) left"
        + (f"; refunded {yuan(view.refunded_fen)}" if view.refunded_fen else "")
        + ("; TTL passed, refund pending (next sweep)" if view.expiry_pending else "")
    )
    if not view.grabs:
        return
    table = Table()
    table.add_column("#", justify="right")
    table.add_column("user")
    table.add_column("amount (yuan)", justify="right")
    for g in view.grabs:
        best = " [yellow]best luck[/yellow]" if g.ordinal == view.best_luck_ordinal else ""
        table.add_row(str(g.ordinal), g.user_id, format_fen(g.amount_fen) + best)
    out.print(table)
