"""One proxy: its listener, its open connections, its toxics and its counters.

Rules of this module: ``enabled`` is true exactly while the listener is open; disabling
closes the listener and every open connection but keeps the toxics; the toxics of each
stream apply in creation order on every open link, and a change reaches the open links
before the API call returns. Connections beyond ``CONNECTIONS_PER_PROXY_MAX`` are
accepted and closed at once, so a flood of clients cannot exhaust the server.
"""

from __future__ import annotations

import asyncio
import functools
import socket
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import final

from hongbao.chaos.toxiproxy.connection import Connection
from hongbao.chaos.toxiproxy.limits import CONNECTIONS_PER_PROXY_MAX, READ_BUFFER_BYTES_MAX
from hongbao.chaos.toxiproxy.link import DirectionCounters, Link
from hongbao.chaos.toxiproxy.listen import bind, resolve
from hongbao.chaos.toxiproxy.spec import Direction, JsonValue, ToxicSpec

ACCEPT_RETRY_S = 0.1
ACCEPTS_PER_WAKEUP_MAX = 64  # a burst of clients cannot hold the loop in one callback
_LinkChange = Callable[[Link], Awaitable[None]]


@dataclass(slots=True)
class ProxyCounters:
    """Extension: per-proxy counters, live (the reference counts bytes at link end)."""

    connections_accepted: int = 0
    connections_rejected: int = 0
    dial_failures: int = 0
    directions: dict[Direction, DirectionCounters] = field(
        default_factory=lambda: {"upstream": DirectionCounters(), "downstream": DirectionCounters()}
    )


@final
class Proxy:
    def __init__(self, *, name: str, listen: str, upstream: str, seed: int | None) -> None:
        self.name = name
        self.listen = listen
        self.upstream = upstream
        self.toxics: list[ToxicSpec] = []
        self.counters = ProxyCounters()
        self._seed = seed
        self._retry: asyncio.TimerHandle | None = None
        self._listener: socket.socket | None = None
        self._connections: set[Connection] = set()
        self._accepting: set[asyncio.Task[None]] = set()
        self._unwrapped: set[socket.socket] = set()
        self._ordinal = 0

    @property
    def enabled(self) -> bool:
        return self._listener is not None

    async def start(self) -> None:
        """Bind the stored listen text; raises ``ListenError`` with the API's message."""
        if self._listener is not None:
            return
        address = await resolve(self.listen)
        sock = bind(address, self.listen)
        self._listener = sock
        self._watch(sock)
        self.listen = address.shown(sock.getsockname()[1])

    async def stop(self) -> None:
        """Close the listener and every open connection; the toxics stay."""
        listener, self._listener = self._listener, None
        if self._retry is not None:
            self._retry.cancel()
            self._retry = None
        if listener is not None:
            asyncio.get_running_loop().remove_reader(listener.fileno())
            listener.close()
        self.close_connections()

    def close_connections(self) -> None:
        for connection in list(self._connections):
            connection.close(abort=True)
        for task in list(self._accepting):
            task.cancel()

    # Accepting is a reader callback, not a task awaiting ``sock_accept``: cancelling such a
    # task just after the kernel handed over a socket, before the task resumed, threw the
    # cancel in place of the result and dropped that socket unclosed (a ResourceWarning in
    # CI). A callback accepts and hands each socket to its owner in one synchronous step.

    def _watch(self, listener: socket.socket) -> None:
        asyncio.get_running_loop().add_reader(listener.fileno(), self._on_readable, listener)

    def _on_readable(self, listener: socket.socket) -> None:
        loop = asyncio.get_running_loop()
        for _ in range(ACCEPTS_PER_WAKEUP_MAX):
            try:
                client, _ = listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                # EMFILE and the like: stop watching briefly instead of spinning.
                loop.remove_reader(listener.fileno())
                self._retry = loop.call_later(ACCEPT_RETRY_S, self._rewatch, listener)
                return
            client.setblocking(False)
            self._unwrapped.add(client)
            task = loop.create_task(self._accept(client))
            self._accepting.add(task)
            task.add_done_callback(functools.partial(self._accept_done, client=client))

    def _rewatch(self, listener: socket.socket) -> None:
        self._retry = None
        if listener is self._listener:
            self._watch(listener)

    def _accept_done(self, task: asyncio.Task[None], client: socket.socket) -> None:
        """A task cancelled before it ran never wrapped (nor closed) its socket."""
        self._accepting.discard(task)
        if client in self._unwrapped:
            self._unwrapped.discard(client)
            client.close()

    async def _accept(self, client: socket.socket) -> None:
        reader, writer = await asyncio.open_connection(sock=client, limit=READ_BUFFER_BYTES_MAX)
        self._unwrapped.discard(client)
        if len(self._connections) >= CONNECTIONS_PER_PROXY_MAX:
            self.counters.connections_rejected += 1
            writer.transport.abort()
            return
        self._ordinal += 1
        self.counters.connections_accepted += 1
        connection = Connection(ordinal=self._ordinal, client_reader=reader, client_writer=writer)
        self._connections.add(connection)
        try:
            if not await connection.dial(self.upstream):
                self.counters.dial_failures += 1
                return
            if connection not in self._connections or self._listener is None:
                return
            connection.start(
                toxics=list(self.toxics),
                counters=self.counters.directions,
                seed=self._seed,
                proxy_name=self.name,
            )
            await connection.wait()
        finally:
            self._connections.discard(connection)
            connection.close()

    def find_toxic(self, name: str) -> ToxicSpec | None:
        for spec in self.toxics:
            if spec.name == name:
                return spec
        return None

    async def add_toxic(self, spec: ToxicSpec) -> None:
        self.toxics.append(spec)
        await self._on_links(spec.direction, lambda link: link.add(spec))

    async def update_toxic(self, spec: ToxicSpec) -> None:
        self.toxics = [spec if old.name == spec.name else old for old in self.toxics]
        await self._on_links(spec.direction, lambda link: link.update(spec))

    async def remove_toxic(self, spec: ToxicSpec) -> None:
        self.toxics = [old for old in self.toxics if old.name != spec.name]
        await self._on_links(spec.direction, lambda link: link.remove(spec.name))
        if spec.type == "timeout":
            # The reference's timeout cleanup closes the connections, toxic active or not.
            self.close_connections()

    async def _on_links(self, direction: Direction, change: _LinkChange) -> None:
        links = [c.links[direction] for c in self._connections if direction in c.links]
        await asyncio.gather(*(change(link) for link in links))

    def to_json(self) -> dict[str, JsonValue]:
        ordered = [s for s in self.toxics if s.direction == "upstream"] + [
            s for s in self.toxics if s.direction == "downstream"
        ]
        return {
            "name": self.name,
            "listen": self.listen,
            "upstream": self.upstream,
            "enabled": self.enabled,
            "Logger": {},
            "toxics": [spec.to_json() for spec in ordered],
        }

    def counters_json(self) -> dict[str, JsonValue]:
        counters = self.counters
        directions: dict[str, JsonValue] = {
            direction: {"received_bytes": c.received_bytes, "sent_bytes": c.sent_bytes}
            for direction, c in counters.directions.items()
        }
        return {
            "name": self.name,
            "connections_accepted": counters.connections_accepted,
            "connections_open": len(self._connections),
            "connections_rejected": counters.connections_rejected,
            "dial_failures": counters.dial_failures,
            **directions,
        }
