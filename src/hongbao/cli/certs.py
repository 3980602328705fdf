"""``hongbao certs``: create the cluster's CA and certificates, and list them with expiry.

A thin shell over :mod:`hongbao.security.certs`. Exit codes: 0 done; 2 usage (an existing
CA without --force, a bad topology, a directory without certificates).
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import click
from rich.table import Table

from hongbao.cli.common import EXIT_USAGE, json_option, print_json, stdout_console
from hongbao.security import certs as certs_lib
from hongbao.security.certs import CertInfo, CertsError


@click.group()
def certs() -> None:
    """The cluster CA and its node, router, operator and client certificates."""


def _fail(error: CertsError) -> None:
    click.echo(f"error: {error}", err=True)
    raise SystemExit(EXIT_USAGE)


@certs.command("init")
@click.option("--config", "config_path", required=True, type=click.Path(dir_okay=False),
              help="The topology whose nodes (and [[routers]], if any) get certificates.")
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False),
              help="Where to write them (created with mode 0700; keys are 0600).")
@click.option("--days", type=click.IntRange(1, 3650), default=certs_lib.LEAF_DAYS_DEFAULT,
              show_default=True, help="Validity of the node, operator and client certificates.")
@click.option("--ca-days", type=click.IntRange(1, 36500), default=certs_lib.CA_DAYS_DEFAULT,
              show_default=True, help="Validity of the CA.")
@click.option("--force", is_flag=True,
              help="Replace an existing CA (every certificate it issued stops working).")
@json_option
def init(config_path: str, out_dir: str, days: int, ca_days: int, force: bool,
         as_json: bool) -> None:  # fmt: skip
    """Create a CA and a certificate per node, router, operator and client of CONFIG."""
    try:
        result = certs_lib.init_certs(
            Path(config_path), Path(out_dir), now=dt.datetime.now(dt.UTC),
            force=force, days=days, ca_days=ca_days,
        )  # fmt: skip
    except CertsError as error:
        _fail(error)
        return
    if as_json:
        print_json({"directory": str(result.directory), "written": list(result.written),
                    "routers_found": result.routers_found})  # fmt: skip
        return
    click.echo(f"wrote {len(result.written)} certificates and keys to {result.directory}: "
               + ", ".join(result.written))  # fmt: skip
    if not result.routers_found:
        click.echo("the topology has no [[routers]] table: no router certificates made")


@certs.command("list")
@click.argument("directory", type=click.Path(file_okay=False))
@click.option("--soon-days", type=click.IntRange(0, 3650), default=certs_lib.SOON_DAYS_DEFAULT,
              show_default=True, help="Flag certificates that expire within this many days.")
@json_option
def list_command(directory: str, soon_days: int, as_json: bool) -> None:
    """Show the certificates of DIRECTORY: subject, role, SANs, expiry, and any problem."""
    try:
        infos = certs_lib.list_certs(
            Path(directory), now=dt.datetime.now(dt.UTC), soon_days=soon_days
        )
    except CertsError as error:
        _fail(error)
        return
    if as_json:
        print_json({"directory": directory, "certificates": [i.to_json() for i in infos],
                    "flagged": sum(i.flagged for i in infos)})  # fmt: skip
        return
    stdout_console().print(certs_table(directory, infos))


def certs_table(directory: str, infos: list[CertInfo]) -> Table:
    flagged = sum(info.flagged for info in infos)
    table = Table(title=f"certificates in {directory}",
                  caption=f"{len(infos)} certificates, {flagged} flagged")  # fmt: skip
    for column in ("file", "subject", "role", "subject alternative names", "expires (UTC)",
                   "status"):  # fmt: skip
        table.add_column(column, overflow="fold")
    for info in infos:
        style = "bold red" if info.flagged else ""
        table.add_row(info.file, info.subject, info.role, "\n".join(info.names),
                      f"{info.not_after:%Y-%m-%d %H:%M}", info.status, style=style)  # fmt: skip
    return table
