"""Starting the server: in the caller's loop, via ``--toxiproxy auto|embedded|URL``, and as
``hongbao toxiproxy serve`` (a real child process, stopped by SIGTERM)."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import urllib.request
from pathlib import Path

import aiohttp
import pytest

from hongbao.chaos.toxiproxy import (
    EmbeddedToxiproxy,
    ToxiproxyChoice,
    open_toxiproxy,
    resolve_toxiproxy,
)

REPO = Path(__file__).resolve().parents[2]
SERVE_TIMEOUT_S = 20.0


def test_embedded_in_the_callers_event_loop() -> None:
    async def scenario() -> None:
        async def echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            writer.write(await reader.read(100))
            await writer.drain()
            writer.close()

        upstream = await asyncio.start_server(echo, "127.0.0.1", 0)
        upstream_port = upstream.sockets[0].getsockname()[1]
        async with EmbeddedToxiproxy("127.0.0.1", 0, seed=1) as server, \
                aiohttp.ClientSession(server.url) as session:
            body = {"name": "e", "listen": "127.0.0.1:0", "upstream": f"127.0.0.1:{upstream_port}"}
            async with session.post("/proxies", json=body) as response:
                assert response.status == 201
                host, port = (await response.json())["listen"].split(":")
            reader, writer = await asyncio.open_connection(host, int(port))
            writer.write(b"same loop")
            assert await asyncio.wait_for(reader.read(100), 10) == b"same loop"
            writer.close()
            await writer.wait_closed()
        upstream.close()
        await upstream.wait_closed()

    asyncio.run(scenario())


def test_resolve_modes() -> None:
    assert resolve_toxiproxy("embedded") == ToxiproxyChoice("embedded")
    assert resolve_toxiproxy("auto", which=lambda _: None) == ToxiproxyChoice("embedded")
    assert resolve_toxiproxy("auto", which=lambda _: "/opt/bin/toxiproxy-server") == (
        ToxiproxyChoice("binary", binary="/opt/bin/toxiproxy-server"))
    assert resolve_toxiproxy("http://127.0.0.1:8474") == ToxiproxyChoice(
        "url", url="http://127.0.0.1:8474")
    for bad in ("", "tcp://x:1", "http://nohost", "toxiproxy"):
        with pytest.raises(ValueError, match="--toxiproxy"):
            resolve_toxiproxy(bad)


def version_of(url: str) -> dict[str, object]:
    with urllib.request.urlopen(url + "/version", timeout=10) as response:
        body: dict[str, object] = json.loads(response.read())
        return body


def test_open_embedded_then_the_same_server_as_a_url() -> None:
    with open_toxiproxy(resolve_toxiproxy("embedded")) as endpoint:
        assert endpoint.kind == "embedded"
        assert endpoint.host == "127.0.0.1"
        assert version_of(endpoint.url)["server"] == "hongbao"
        with open_toxiproxy(resolve_toxiproxy(endpoint.url)) as again:
            assert (again.kind, again.url) == ("url", endpoint.url)


def test_auto_starts_a_toxiproxy_server_found_on_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A stand-in binary taking the Go flags (-host H -port P) runs our CLI; auto finds it,
    starts it, waits until it answers and stops it on exit."""
    binary = tmp_path / "toxiproxy-server"
    pids = tmp_path / "pid"
    serve = f"{sys.executable} -m hongbao.cli toxiproxy serve"
    binary.write_text(f'#!/bin/sh\necho $$ > {pids}\nexec {serve} --host "$2" --port "$4"\n')
    binary.chmod(0o755)
    monkeypatch.setenv("PATH", f"{tmp_path}{os.pathsep}{os.environ['PATH']}")
    choice = resolve_toxiproxy("auto")
    assert choice == ToxiproxyChoice("binary", binary=str(binary))
    with open_toxiproxy(choice) as endpoint:
        assert endpoint.kind == "binary"
        assert version_of(endpoint.url)["version"] == "2.12.0"
    pid = int(pids.read_text())
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)


def test_serve_command_loads_config_and_stops_on_sigterm(tmp_path: Path) -> None:
    config = tmp_path / "proxies.json"
    config.write_text(json.dumps([{"name": "boot", "listen": "127.0.0.1:0",
                                   "upstream": "127.0.0.1:9", "enabled": False}]))
    child = subprocess.Popen(
        [sys.executable, "-m", "hongbao.cli", "toxiproxy", "serve", "--port", "0",
         "--seed", "5", "--config", str(config)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO,
    )
    try:
        assert child.stdout is not None
        line = child.stdout.readline()
        assert line.startswith("toxiproxy API on http://127.0.0.1:")
        url = line.split()[-1]
        with urllib.request.urlopen(url + "/proxies", timeout=10) as response:
            assert json.loads(response.read())["boot"]["enabled"] is False
        child.send_signal(signal.SIGTERM)
        assert child.wait(SERVE_TIMEOUT_S) == 0
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
        for stream in (child.stdout, child.stderr):
            if stream is not None:
                stream.close()


def test_serve_command_refuses_a_port_in_use() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        result = subprocess.run(
            [sys.executable, "-m", "hongbao.cli", "toxiproxy", "serve", "--port", str(port)],
            capture_output=True, text=True, timeout=SERVE_TIMEOUT_S, cwd=REPO, check=False,
        )
    assert result.returncode == 1
    assert f"cannot listen on 127.0.0.1:{port}" in result.stderr
