"""``hongbao audit``: conservation across every shard of a RUNNING cluster, exactly.

A thin shell over :func:`hongbao.ops.live_audit.live_audit` (which says how the totals
are read as one consistent cut): it finds the topology (``--config`` or any node's or
router's ``Admin.Topology``), runs the audit with a deadline, prints the totals (rich
for people, ``--json`` for machines) and exits with what it found.
"""

from __future__ import annotations

import asyncio
import os
import tomllib
from dataclasses import replace
from pathlib import Path
from typing import Final

import click
import grpc
from rich.table import Table

from hongbao.cli.common import (
    default_config_path,
    format_fen,
    insecure_flag,
    json_option,
    load_config,
    print_json,
    security_options,
    stdout_console,
)
from hongbao.config.topology import Topology, TopologyError, parse_topology
from hongbao.net.channels import channel_options, open_channel
from hongbao.node.errors import error_from_rpc_error
from hongbao.ops.live_audit import EXIT_NOT_JUDGED, LiveAuditReport, live_audit
from hongbao.proto.gen.hongbao.v1 import admin_pb2, admin_pb2_grpc
from hongbao.security.tls import CERTS_DIR_ENV, TlsError, client_credentials_from

TOPOLOGY_TIMEOUT_S: Final = 5.0
TOPOLOGY_BYTES_MAX: Final = 4 << 20

AUDIT_EXIT_HELP: Final = (
    "\b\nExit codes:\n"
    "  0  every invariant holds: conservation across all shards, no negative balance\n"
    "  1  something does not hold (named on stderr and in --json's problems)\n"
    "  2  usage: a bad option, or an unreadable topology\n"
    "  3  not judged: the outboxes did not drain, or a shard had no leader, before the\n"
    "     deadline (or --address did not answer)\n"
)


@click.command("audit", epilog=AUDIT_EXIT_HELP)
@click.option(
    "--config",
    "config_path",
    default=None,
    type=click.Path(dir_okay=False),
    help="The cluster topology (TOML); default $HONGBAO_CONFIG or configs/local.toml.",
)
@click.option(
    "--address",
    default=None,
    metavar="HOST:PORT",
    help="Any node or router of the cluster: the topology comes from it.",
)
@security_options
@click.option(
    "--timeout-s",
    type=click.FloatRange(min=0.5, max=600),
    default=30.0,
    show_default=True,
    help="How long to wait for the outboxes to drain.",
)
@json_option
def audit(config_path: str | None, address: str | None, timeout_s: float, as_json: bool) -> None:
    """Check that a running cluster holds exactly the money that came in."""  # fmt: skip
    if config_path is not None and address is not None:
        raise click.UsageError("give --config or --address, not both")
    if address is not None:
        topology = _topology_from(address)
    else:
        topology = load_config(config_path or default_config_path())
    report = asyncio.run(live_audit(topology, timeout_s=timeout_s, credentials=_admin_creds()))
    if as_json:
        print_json(report_json(report))
    else:
        render(report)
    raise SystemExit(report.exit_code)


def _admin_creds() -> grpc.ChannelCredentials | None:
    """Operator credentials from --certs-dir / $HONGBAO_CERTS_DIR, unless --insecure."""
    directory = os.environ.get(CERTS_DIR_ENV)
    if insecure_flag() or not directory:
        return None
    try:
        return client_credentials_from(Path(directory)).admin.channel_credentials()
    except TlsError as error:
        raise click.UsageError(str(error)) from error


def _topology_from(address: str) -> Topology:
    """The topology ``address`` was started with (``Admin.Topology``)."""
    credentials = _admin_creds()

    async def fetch() -> admin_pb2.TopologyResponse:
        channel = open_channel(address, credentials, channel_options(TOPOLOGY_BYTES_MAX))
        try:
            stub = admin_pb2_grpc.AdminStub(channel)
            response: admin_pb2.TopologyResponse = await stub.Topology(
                admin_pb2.TopologyRequest(), timeout=TOPOLOGY_TIMEOUT_S
            )
            return response
        finally:
            await channel.close()

    try:
        response = asyncio.run(fetch())
    except grpc.aio.AioRpcError as rpc_error:
        error = error_from_rpc_error(rpc_error)
        click.echo(f"error: {address} did not give its topology: {error.reason.value}: "
                   f"{error.message}", err=True)  # fmt: skip
        raise SystemExit(EXIT_NOT_JUDGED) from None
    try:
        topology = parse_topology(tomllib.loads(response.toml), source=address)
    except (tomllib.TOMLDecodeError, TopologyError) as error:
        raise click.UsageError(f"the topology of {address} does not parse: {error}") from error
    if insecure_flag():
        return replace(topology, tls=False)
    if topology.tls and credentials is None:
        raise click.UsageError(f"{address} runs with TLS: give --certs-dir (operator certs)")
    return topology


# -- rendering ---------------------------------------------------------------------------

_COLUMNS: Final = (
    ("balances", "balances_fen"),
    ("escrow", "escrow_fen"),
    ("outbox", "outbox_fen"),
    ("deposits", "deposits_fen"),
    ("withdrawals", "withdrawals_fen"),
)


def report_json(report: LiveAuditReport) -> dict[str, object]:
    return {
        "ok": report.ok,
        "judged": report.judged,
        "drained": report.drained,
        "quiet": report.quiet,
        "waited_ms": report.waited_ms,
        "exit_code": report.exit_code,
        "totals": {name: report.total(name) for _, name in _COLUMNS}
        | {"held_fen": report.held_fen, "net_in_fen": report.net_in_fen},
        "shards": [
            {
                "shard_id": line.shard_id,
                "leader_node_id": line.leader_node_id,
                "applied_index": line.applied_index,
                "accounts": line.accounts,
                "outbox_entries": line.outbox_entries,
                "negative_balances": line.negative_balances,
                **{name: getattr(line, name) for _, name in _COLUMNS},
            }
            for line in report.shards
        ],
        "unreachable": list(report.unreachable),
        "problems": list(report.problems),
    }


def render(report: LiveAuditReport) -> None:
    console = stdout_console()
    table = Table(title="audit: money per shard (yuan)")
    table.add_column("shard", justify="right")
    table.add_column("leader", justify="right")
    table.add_column("applied", justify="right")
    table.add_column("accounts", justify="right")
    for title, _ in _COLUMNS:
        table.add_column(title, justify="right")
    for line in report.shards:
        table.add_row(
            str(line.shard_id), str(line.leader_node_id), str(line.applied_index),
            str(line.accounts), *(format_fen(getattr(line, name)) for _, name in _COLUMNS),
        )  # fmt: skip
    table.add_section()
    table.add_row(
        "all", "", "", str(report.total("accounts")),
        *(format_fen(report.total(name)) for _, name in _COLUMNS), style="bold",
    )  # fmt: skip
    console.print(table)
    held, net = format_fen(report.held_fen), format_fen(report.net_in_fen)
    if not report.judged:
        click.echo(f"not judged after {report.waited_ms} ms:", err=True)
        for why in report.unreachable:
            click.echo(f"  {why}", err=True)
        return
    if report.ok:
        console.print(
            f"[green]ok[/green]: held {held} == deposits - withdrawals {net} yuan "
            f"over {len(report.shards)} shards; no negative balance"
        )
        return
    click.echo("FAILED:", err=True)
    for problem in report.problems:
        click.echo(f"  {problem}", err=True)
