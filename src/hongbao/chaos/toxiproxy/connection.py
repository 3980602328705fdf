"""One proxied TCP connection: the client socket, the upstream dial, and its two links.

Rules of this module: dialling happens after accepting (a dead upstream shows the client
an EOF right after connect, not a refusal, as in the reference); the connection ends when
both links have closed their destinations, or at once when the proxy closes it.
"""

from __future__ import annotations

import asyncio
import random
import socket
import struct
from typing import final

from hongbao.chaos.toxiproxy.limits import DIAL_TIMEOUT_S, READ_BUFFER_BYTES_MAX
from hongbao.chaos.toxiproxy.link import DirectionCounters, Link
from hongbao.chaos.toxiproxy.listen import ListenError, split_host_port
from hongbao.chaos.toxiproxy.spec import Direction, ToxicSpec


def link_rng(
    seed: int | None, proxy_name: str, ordinal: int, direction: Direction
) -> random.Random:
    """Seeded: the same connection of the same proxy draws the same numbers every run."""
    if seed is None:
        return random.Random()
    return random.Random(f"{seed}/{proxy_name}/{ordinal}/{direction}")


def set_linger_zero(writer: asyncio.StreamWriter) -> None:
    """SO_LINGER 0: closing the socket sends a TCP RST (the reset_peer toxic)."""
    sock = writer.get_extra_info("socket")
    if sock is not None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))


@final
class Connection:
    def __init__(
        self,
        *,
        ordinal: int,
        client_reader: asyncio.StreamReader,
        client_writer: asyncio.StreamWriter,
    ) -> None:
        self.ordinal = ordinal
        self._client_reader = client_reader
        self._client_writer = client_writer
        self._upstream_writer: asyncio.StreamWriter | None = None
        self.links: dict[Direction, Link] = {}
        self._closed = asyncio.Event()

    async def dial(self, upstream: str) -> bool:
        """Connect to the upstream; on failure close the client at once."""
        try:
            host, port_text = split_host_port(upstream)
            reader, writer = await asyncio.wait_for(
                asyncio.open_connection(host, int(port_text), limit=READ_BUFFER_BYTES_MAX),
                DIAL_TIMEOUT_S,
            )
        except (OSError, ValueError, ListenError, TimeoutError, UnicodeError):
            self._client_writer.close()
            return False
        self._upstream_reader, self._upstream_writer = reader, writer
        return True

    def start(
        self,
        *,
        toxics: list[ToxicSpec],
        counters: dict[Direction, DirectionCounters],
        seed: int | None,
        proxy_name: str,
    ) -> None:
        """Start both links with every toxic configured at this moment."""
        assert self._upstream_writer is not None, "dial first"
        if any(spec.type == "reset_peer" for spec in toxics):
            set_linger_zero(self._client_writer)
            set_linger_zero(self._upstream_writer)
        ends = {
            "upstream": (self._client_reader, self._upstream_writer),
            "downstream": (self._upstream_reader, self._client_writer),
        }
        for direction in ("upstream", "downstream"):
            source, destination = ends[direction]
            link = Link(
                direction=direction,
                source=source,
                destination=destination,
                rng=link_rng(seed, proxy_name, self.ordinal, direction),
                counters=counters[direction],
            )
            self.links[direction] = link
            link.start([spec for spec in toxics if spec.direction == direction])

    async def wait(self) -> None:
        """Until both links are done, or the proxy closed the connection."""
        loop = asyncio.get_running_loop()
        both_done = loop.create_task(self._links_done())
        closed = loop.create_task(self._closed.wait())
        try:
            await asyncio.wait([both_done, closed], return_when=asyncio.FIRST_COMPLETED)
        finally:
            both_done.cancel()
            closed.cancel()
            self.close()

    async def _links_done(self) -> None:
        for link in self.links.values():
            await link.writer_done.wait()

    def close(self, *, abort: bool = False) -> None:
        """Close both sockets and stop every task; idempotent.

        ``abort`` (the proxy closing its connections) drops unsent bytes at once, so a
        peer that stopped reading cannot keep a socket open; a connection that ended by
        itself closes gracefully, flushing what its links already wrote.
        """
        self._closed.set()
        for link in self.links.values():
            link.cancel()
        for writer in (self._client_writer, self._upstream_writer):
            if writer is None:
                continue
            if abort:
                writer.transport.abort()
            else:
                writer.close()
