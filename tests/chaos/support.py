"""Helpers for the Toxiproxy tests: an echo server, raw HTTP, deadlines instead of sleeps."""

from __future__ import annotations

import contextlib
import http.client
import json
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

DEADLINE_S = 10.0


def wait_until(condition: Callable[[], bool], *, timeout_s: float = DEADLINE_S) -> None:
    """Poll ``condition`` until true; fail the test at the deadline."""
    deadline_s = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline_s:
            raise AssertionError("condition not met before the deadline")
        time.sleep(0.005)


class EchoServer:
    """A threaded TCP echo server on 127.0.0.1 (a free port); counts its connections."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.port: int = self.sock.getsockname()[1]
        self.accepted = 0
        self.received = bytearray()
        self._clients: list[socket.socket] = []
        self._stopped = False
        self._acceptor = threading.Thread(target=self._accept_loop, daemon=True)
        self._acceptor.start()

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def _accept_loop(self) -> None:
        while not self._stopped:
            try:
                client, _ = self.sock.accept()
            except OSError:
                return
            self.accepted += 1
            self._clients.append(client)
            threading.Thread(target=self._echo, args=(client,), daemon=True).start()

    def _echo(self, client: socket.socket) -> None:
        with client:
            while True:
                try:
                    data = client.recv(65536)
                except OSError:
                    return
                if not data:
                    return
                self.received += data
                try:
                    client.sendall(data)
                except OSError:
                    return

    def close(self) -> None:
        """Stop accepting first (shutdown wakes the blocked accept), then close clients,
        so no socket is accepted after the list of clients was closed."""
        self._stopped = True
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_RDWR)
        self._acceptor.join(DEADLINE_S)
        self.sock.close()
        for client in self._clients:
            with contextlib.suppress(OSError):
                client.shutdown(socket.SHUT_RDWR)
            client.close()


# Client sockets of the running test, closed by an autouse fixture (no ResourceWarning).
OPEN_SOCKETS: list[socket.socket] = []


def connect(listen: str, *, timeout_s: float = DEADLINE_S) -> socket.socket:
    host, port = listen.rsplit(":", 1)
    sock = socket.create_connection((host, int(port)), timeout=timeout_s)
    OPEN_SOCKETS.append(sock)
    return sock


def close_test_sockets() -> None:
    while OPEN_SOCKETS:
        OPEN_SOCKETS.pop().close()


def recv_exactly(sock: socket.socket, size_bytes: int) -> bytes:
    data = bytearray()
    while len(data) < size_bytes:
        part = sock.recv(size_bytes - len(data))
        if not part:
            break
        data += part
    return bytes(data)


def recv_until_closed(sock: socket.socket) -> tuple[bytes, str]:
    """Everything until the peer closes: ("eof" on FIN, "reset" on RST)."""
    data = bytearray()
    while True:
        try:
            part = sock.recv(65536)
        except ConnectionResetError:
            return bytes(data), "reset"
        if not part:
            return bytes(data), "eof"
        data += part


def refuses(listen: str) -> bool:
    try:
        connect(listen, timeout_s=2.0).close()
    except ConnectionRefusedError:
        return True
    return False


@dataclass
class Reply:
    status: int
    headers: http.client.HTTPMessage
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


class Http:
    """Raw HTTP/1.1 to the API on one keep-alive connection (exact methods and bodies)."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.connection = http.client.HTTPConnection("127.0.0.1", port, timeout=DEADLINE_S)

    def request(
        self,
        method: str,
        path: str,
        body: bytes | str | None = None,
        *,
        headers: dict[str, str] | None = None,
    ) -> Reply:
        payload = body.encode() if isinstance(body, str) else body
        sent = {"User-Agent": "toxiproxy-cli", **(headers or {})}
        if payload is not None:
            sent.setdefault("Content-Type", "application/json")
        try:
            self.connection.request(method, path, body=payload, headers=sent)
            response = self.connection.getresponse()
            return Reply(response.status, response.headers, response.read())
        except BaseException:
            self.connection.close()  # a half-sent request leaves no socket behind
            raise

    def send_json(self, method: str, path: str, value: Any) -> Reply:
        return self.request(method, path, json.dumps(value))

    def close(self) -> None:
        self.connection.close()
