"""The list of command families, so that adding one touches a single line."""

from __future__ import annotations

import click


def register(group: click.Group) -> None:
    from hongbao.cli.bench import bench
    from hongbao.cli.cluster import cluster, node_kill, node_start, node_stop
    from hongbao.cli.demo import demo
    from hongbao.cli.envelope import envelope
    from hongbao.cli.node import node
    from hongbao.cli.sim import sim
    from hongbao.cli.toxiproxy import toxiproxy
    from hongbao.cli.wallet import wallet

    group.add_command(sim)
    group.add_command(demo)
    group.add_command(node)
    for command in (node_start, node_stop, node_kill):
        if command.name not in node.commands:
            node.add_command(command)
    group.add_command(cluster)
    group.add_command(wallet)
    group.add_command(envelope)
    group.add_command(bench)
    group.add_command(toxiproxy)
