"""``hongbao toxiproxy serve``: the Toxiproxy-compatible server as a foreground process.

A thin shell over ``hongbao.chaos.toxiproxy.EmbeddedToxiproxy``: it binds only the host
it is given (127.0.0.1 by default), prints one line with the API address once serving,
and stops gracefully on SIGINT or SIGTERM (the reference's shutdown).
"""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path

import click

from hongbao.chaos.toxiproxy.embedded import EmbeddedToxiproxy


@click.group("toxiproxy")
def toxiproxy() -> None:
    """A Toxiproxy-compatible fault-injecting TCP proxy (HTTP API of Toxiproxy 2.12)."""


@toxiproxy.command("serve")
@click.option("--host", default="127.0.0.1", show_default=True, help="API bind host.")
@click.option("--port", type=click.IntRange(0, 65535), default=8474, show_default=True,
              help="API port (0: a free one, printed).")
@click.option("--seed", type=click.IntRange(min=0), default=None,
              help="Seed of the toxicity, jitter and slicer draws (a replayable run).")
@click.option("--config", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="JSON array of proxies to create at start (the /populate body).")
def serve(host: str, port: int, seed: int | None, config: Path | None) -> None:
    """Serve the API and the proxies until SIGINT or SIGTERM."""
    try:
        asyncio.run(_serve(EmbeddedToxiproxy(host, port, seed=seed, config=config)))
    except OSError as error:
        raise click.ClickException(f"cannot listen on {host}:{port}: {error.strerror}") from None


async def _serve(server: EmbeddedToxiproxy) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    async with server:
        click.echo(f"toxiproxy API on {server.url}", nl=True)
        await stop.wait()
