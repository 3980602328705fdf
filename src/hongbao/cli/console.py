"""``hongbao console``: the operations console, a web page served on 127.0.0.1.

A thin shell over :class:`hongbao.console.server.Console`: it reads the topology, serves
until interrupted and prints the URL (first line of stdout, so scripts can read it).
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
from pathlib import Path

import click

from hongbao.cli.cluster import data_dir_option
from hongbao.cli.common import config_option, load_config
from hongbao.console.server import Console, ConsoleSettings


async def serve(settings: ConsoleSettings, host: str, port: int) -> None:
    console = Console(settings)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        bound = await console.start(host, port)
        click.echo(f"http://{host}:{bound}/", nl=True)
        await stop.wait()
    finally:
        await console.close()


@click.command("console")
@config_option
@data_dir_option
@click.option(
    "--host",
    default="127.0.0.1",
    show_default=True,
    help="Listen here; the actions are unauthenticated, so keep it on loopback.",
)
@click.option(
    "--port",
    type=click.IntRange(min=0, max=65_535),
    default=8080,
    show_default=True,
    help="Listen on this port (0: any free one, printed).",
)
@click.option(
    "--interval-s",
    type=click.FloatRange(min=0.1, max=60),
    default=1.0,
    show_default=True,
    help="Seconds between two views of the cluster.",
)
@click.option("--no-fsync", is_flag=True, help="`region start` from the page: nodes never fsync.")
def console(
    config_path: str, data_dir: str, host: str, port: int, interval_s: float, no_fsync: bool
) -> None:
    """Serve the web console: the regions on a map, nodes, shard leaders, live traffic,
    the flags of `cluster status`, and drain/undrain/stop/start/rebalance (confirmed)."""
    topology = load_config(config_path)
    settings = ConsoleSettings(
        topology, Path(config_path), Path(data_dir).resolve(), interval_s, no_fsync
    )
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve(settings, host, port))


if __name__ == "__main__":  # `python -m hongbao.cli.console` until it is registered
    console()
