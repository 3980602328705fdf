"""Serve one registry on ``http://host:port/metrics`` (node and router alike).

Rules of this module: generic, knows nothing of nodes or routers. The HTTP server is
prometheus_client's own WSGI server on a daemon thread: a scrape renders the registry in
that thread, never in the process's asyncio loop, so a slow scraper cannot stall a cycle
(collectors that read runtime state at scrape time must only read, never mutate).
"""

from __future__ import annotations

import threading
from typing import Final, final
from wsgiref.simple_server import WSGIServer

from prometheus_client import CollectorRegistry, start_wsgi_server

CLOSE_JOIN_S: Final = 2.0  # serve_forever polls every 0.5 s: it ends well within this


@final
class MetricsServer:
    """A running metrics endpoint; :meth:`close` stops it (idempotent)."""

    def __init__(self, httpd: WSGIServer, thread: threading.Thread, host: str) -> None:
        self._httpd = httpd
        self._thread = thread
        self.host = host
        self.port: int = int(httpd.server_port)  # the real one when asked for port 0
        self._closed = False

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}/metrics"

    def close(self) -> None:
        """Stop serving and free the port. Blocks up to ~0.5 s (the server's poll)."""
        if self._closed:
            return
        self._closed = True
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(CLOSE_JOIN_S)


def start_metrics_server(registry: CollectorRegistry, host: str, port: int) -> MetricsServer:
    """Serve ``registry`` on ``host:port`` (0: any free port). Raises OSError when the
    address cannot be bound: a process told to serve metrics must not start without."""
    httpd, thread = start_wsgi_server(port, addr=host, registry=registry)
    return MetricsServer(httpd, thread, host)
