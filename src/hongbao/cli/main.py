"""Entry point of the ``hongbao`` command: one click group, one module per command family."""

from __future__ import annotations

import os
import sys

import click

from hongbao import __version__


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="hongbao")
def cli() -> None:
    """hongbao: a multi-region, active-active datastore for red envelopes and wallets."""


def _register() -> None:
    """Attach each command family; a family's module owns its options and rendering."""
    from hongbao.cli import commands
    from hongbao.cli.certs import certs

    commands.register(cli)
    cli.add_command(certs)


def _prepare_node_process(argv: list[str]) -> None:
    """``node run`` with TLS logs refused handshakes from gRPC's trace, which must be
    switched on before grpc is imported (the command modules import it)."""
    if argv[1:3] == ["node", "run"] and "--insecure" not in argv:
        from hongbao.security.handshake_log import enable_trace

        enable_trace(os.environ)


def main() -> None:
    _prepare_node_process(sys.argv)
    _register()
    cli()
