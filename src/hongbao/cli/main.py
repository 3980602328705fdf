"""Entry point of the ``hongbao`` command: one click group, one module per command family."""

from __future__ import annotations

import click

from hongbao import __version__


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="hongbao")
def cli() -> None:
    """hongbao: a multi-region, active-active datastore for red envelopes and wallets."""


def _register() -> None:
    """Attach each command family; a family's module owns its options and rendering."""
    from hongbao.cli import commands

    commands.register(cli)


def main() -> None:
    _register()
    cli()
