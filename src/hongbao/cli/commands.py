"""The list of command families, so that adding one touches a single line."""

from __future__ import annotations

import click


def register(group: click.Group) -> None:
    from hongbao.cli.demo import demo
    from hongbao.cli.node import node
    from hongbao.cli.sim import sim

    group.add_command(sim)
    group.add_command(demo)
    group.add_command(node)
