"""Starting the server in-process: in the caller's event loop, or in a thread of its own.

``EmbeddedToxiproxy`` serves in the running loop (``async with``). Clients that block,
such as ``toxiproxy-python`` (``requests``), must not call a server on their own loop, so
``ThreadedToxiproxy`` runs the same server on a private loop in a daemon thread (``with``).
Both bind only the host they are given (127.0.0.1 by default); port 0 picks a free one.
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
from pathlib import Path
from types import TracebackType
from typing import Self, final

from aiohttp import web

from hongbao.chaos.toxiproxy.api import make_app
from hongbao.chaos.toxiproxy.state import ApiError, Registry

STARTUP_TIMEOUT_S = 10.0
KEEPALIVE_TIMEOUT_S = 60.0
# Loop iterations an accept in flight needs to reach our callback and close (accept task,
# connection_made, the proxy's accept task, the transport's connection_lost), with room.
CLOSE_ITERATIONS = 10
THREAD_TASKS_WAIT_S = 2.0
THREAD_CLOSE_GRACE_S = 0.05
log = logging.getLogger(__name__)


@final
class EmbeddedToxiproxy:
    """The Toxiproxy-compatible server on ``host:port`` in the current event loop."""

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        seed: int | None = None,
        config: Path | None = None,
    ) -> None:
        self.host = host
        self.port = port
        self.registry = Registry(seed=seed)
        self._config = config
        self._runner: web.AppRunner | None = None

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    async def start(self) -> None:
        if self._config is not None:
            await load_config(self.registry, self._config)
        runner = web.AppRunner(
            make_app(self.registry),
            access_log=None,
            handle_signals=False,
            keepalive_timeout=KEEPALIVE_TIMEOUT_S,
        )
        await runner.setup()
        site = web.TCPSite(runner, self.host, self.port, reuse_address=True)
        try:
            await site.start()
        except OSError:
            await runner.cleanup()
            await self.registry.close()
            raise
        self._runner = runner
        bound = runner.addresses[0]
        self.port = int(bound[1])

    async def stop(self) -> None:
        await self.registry.close()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        # Closed transports release their sockets from callbacks of the next loop
        # iterations; let those run before a caller closes the loop.
        for _ in range(CLOSE_ITERATIONS):
            await asyncio.sleep(0)

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.stop()


async def load_config(registry: Registry, path: Path) -> None:
    """The reference's ``-config``: a populate body; any failure is only logged."""
    try:
        body = path.read_bytes()
        json.loads(body)
    except (OSError, ValueError) as error:
        log.error("toxiproxy config %s not loaded: %s", path, error)
        return
    try:
        async with registry.lock:
            await registry.populate(body)
    except ApiError as error:
        log.error("toxiproxy config %s: %s", path, error.message)


@final
class ThreadedToxiproxy:
    """The server on a private event loop in a daemon thread, for blocking clients."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0, *, seed: int | None = None):
        self.server = EmbeddedToxiproxy(host, port, seed=seed)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._started = threading.Event()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="toxiproxy", daemon=True)

    @property
    def host(self) -> str:
        return self.server.host

    @property
    def port(self) -> int:
        return self.server.port

    @property
    def url(self) -> str:
        return self.server.url

    def _run(self) -> None:
        asyncio.run(self._serve())

    async def _serve(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        try:
            await self.server.start()
        except BaseException as error:
            self._error = error
            self._started.set()
            return
        self._started.set()
        try:
            await self._stop.wait()
        finally:
            await self.server.stop()
            # This loop is private: every task left is an accept or a connection of ours;
            # let them close their sockets before asyncio.run cancels them unstarted.
            others = asyncio.all_tasks() - {asyncio.current_task()}
            if others:
                await asyncio.wait(others, timeout=THREAD_TASKS_WAIT_S)
            await asyncio.sleep(THREAD_CLOSE_GRACE_S)

    def __enter__(self) -> Self:
        self._thread.start()
        if not self._started.wait(STARTUP_TIMEOUT_S):
            raise TimeoutError("the toxiproxy thread did not start")
        if self._error is not None:
            raise self._error
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(STARTUP_TIMEOUT_S)
