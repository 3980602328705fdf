"""``--toxiproxy auto|embedded|URL``: which Toxiproxy a chaos run drives, and starting it.

``resolve_toxiproxy`` only decides (pure, testable): a URL is used as given; ``embedded``
is this project's server; ``auto`` prefers a real ``toxiproxy-server`` found on PATH and
falls back to the embedded one. ``open_toxiproxy`` then starts what was chosen (nothing
for a URL) and yields its address; it stops it on exit, whatever the exit.
"""

from __future__ import annotations

import shutil
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Literal, final
from urllib.parse import urlsplit

from hongbao.chaos.toxiproxy.embedded import ThreadedToxiproxy
from hongbao.ops.local import free_ports

Kind = Literal["url", "embedded", "binary"]
BINARY_NAME = "toxiproxy-server"
BINARY_STARTUP_TIMEOUT_S = 10.0
BINARY_STOP_TIMEOUT_S = 5.0


@final
@dataclass(frozen=True, slots=True)
class ToxiproxyChoice:
    kind: Kind
    url: str = ""
    binary: str = ""


@final
@dataclass(frozen=True, slots=True)
class ToxiproxyEndpoint:
    kind: Kind
    host: str
    port: int

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"


def resolve_toxiproxy(
    mode: str, *, which: Callable[[str], str | None] = shutil.which
) -> ToxiproxyChoice:
    """Decide without starting anything; raises ``ValueError`` for a bad mode or URL."""
    if mode == "embedded":
        return ToxiproxyChoice("embedded")
    if mode == "auto":
        binary = which(BINARY_NAME)
        return ToxiproxyChoice("binary", binary=binary) if binary else ToxiproxyChoice("embedded")
    parts = urlsplit(mode)
    if parts.scheme != "http" or not parts.hostname or parts.port is None:
        raise ValueError(f"--toxiproxy: expected auto, embedded or http://HOST:PORT, got {mode!r}")
    return ToxiproxyChoice("url", url=f"http://{parts.netloc}")


@contextmanager
def open_toxiproxy(
    choice: ToxiproxyChoice, *, seed: int | None = None, avoid: Iterable[int] = ()
) -> Iterator[ToxiproxyEndpoint]:
    """Start the chosen server on 127.0.0.1 (a free port, none of ``avoid``: the ports a
    topology promised to processes not started yet) and yield where it listens."""
    avoid = set(avoid)
    if choice.kind == "url":
        parts = urlsplit(choice.url)
        assert parts.hostname is not None
        assert parts.port is not None
        yield ToxiproxyEndpoint("url", parts.hostname, parts.port)
    elif choice.kind == "embedded":
        with ThreadedToxiproxy("127.0.0.1", _free_port(avoid), seed=seed) as server:
            yield ToxiproxyEndpoint("embedded", server.host, server.port)
    else:
        with _binary(choice.binary, _free_port(avoid)) as endpoint:
            yield endpoint


def _free_port(avoid: set[int]) -> int:
    return free_ports(1, exclude=avoid)[0]


@contextmanager
def _binary(binary: str, port: int) -> Iterator[ToxiproxyEndpoint]:
    """A real toxiproxy-server child process, stopped (SIGTERM, then SIGKILL) on exit."""
    child = subprocess.Popen(
        [binary, "-host", "127.0.0.1", "-port", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    endpoint = ToxiproxyEndpoint("binary", "127.0.0.1", port)
    try:
        _wait_until_serving(endpoint, child)
        yield endpoint
    finally:
        child.terminate()
        try:
            child.wait(BINARY_STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()


def _wait_until_serving(endpoint: ToxiproxyEndpoint, child: subprocess.Popen[bytes]) -> None:
    deadline_s = time.monotonic() + BINARY_STARTUP_TIMEOUT_S
    while time.monotonic() < deadline_s:
        if child.poll() is not None:
            raise RuntimeError(f"{BINARY_NAME} exited with {child.returncode}")
        try:
            with urllib.request.urlopen(endpoint.url + "/version", timeout=1.0):
                return
        except (urllib.error.URLError, OSError):
            time.sleep(0.05)
    raise TimeoutError(f"{BINARY_NAME} did not answer within {BINARY_STARTUP_TIMEOUT_S} s")
