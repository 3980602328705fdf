"""The list of command families, so that adding one touches a single line."""

from __future__ import annotations

import click


def register(group: click.Group) -> None:
    from hongbao.cli.audit import audit
    from hongbao.cli.bench import bench
    from hongbao.cli.chaos import chaos
    from hongbao.cli.cluster import cluster, node_drain, node_kill, node_start, node_stop
    from hongbao.cli.console import console
    from hongbao.cli.demo import demo
    from hongbao.cli.dump import dump
    from hongbao.cli.envelope import envelope
    from hongbao.cli.node import node
    from hongbao.cli.region import region
    from hongbao.cli.request import request
    from hongbao.cli.router import router
    from hongbao.cli.sim import sim
    from hongbao.cli.top import top
    from hongbao.cli.toxiproxy import toxiproxy
    from hongbao.cli.wallet import wallet

    group.add_command(sim)
    group.add_command(demo)
    group.add_command(node)
    for command in (node_start, node_stop, node_kill, node_drain):
        if command.name not in node.commands:
            node.add_command(command)
    group.add_command(cluster)
    group.add_command(region)
    group.add_command(wallet)
    group.add_command(request)
    group.add_command(audit)
    group.add_command(envelope)
    group.add_command(bench)
    group.add_command(toxiproxy)
    group.add_command(chaos)
    group.add_command(router)
    group.add_command(console)
    group.add_command(top)
    group.add_command(dump)
