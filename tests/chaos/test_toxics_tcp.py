"""The toxics measured for real: bytes through a proxy to an echo server on 127.0.0.1.

Timing assertions have wide margins (a loaded 2-core machine): a lower bound a little
under the configured delay, an upper bound several times over it.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator

import pytest

from hongbao.chaos.toxiproxy import ThreadedToxiproxy
from hongbao.chaos.toxiproxy import proxy as proxy_module
from tests.chaos.support import (
    EchoServer,
    Http,
    connect,
    recv_exactly,
    recv_until_closed,
    wait_until,
)


def make_proxy(http: Http, upstream: str, name: str = "p") -> str:
    reply = http.send_json("POST", "/proxies", {"name": name, "listen": "127.0.0.1:0",
                                                "upstream": upstream})
    assert reply.status == 201, reply.body
    listen: str = reply.json()["listen"]
    return listen


def add_toxic(http: Http, proxy: str = "p", **body: object) -> None:
    reply = http.send_json("POST", f"/proxies/{proxy}/toxics", body)
    assert reply.status == 200, reply.body


def round_trip_s(client: socket.socket, payload: bytes = b"x") -> float:
    started_s = time.monotonic()
    client.sendall(payload)
    assert recv_exactly(client, len(payload)) == payload
    return time.monotonic() - started_s


def nothing_arrives(client: socket.socket, within_s: float) -> bool:
    """A measurement, not a wait: no byte may arrive during the window."""
    client.settimeout(within_s)
    try:
        data = client.recv(1)
    except TimeoutError:
        return True
    finally:
        client.settimeout(10.0)
    return data == b""  # pragma: no cover - only reached when the test is about to fail


@pytest.fixture
def listen(http: Http, echo: EchoServer) -> str:
    return make_proxy(http, echo.address)


def test_latency_and_jitter_within_bounds(http: Http, listen: str) -> None:
    client = connect(listen)
    assert round_trip_s(client) < 0.15
    add_toxic(http, type="latency", attributes={"latency": 200})
    assert 0.19 <= round_trip_s(client) < 1.5
    add_toxic(http, type="latency", stream="upstream", attributes={"latency": 100, "jitter": 50})
    for _ in range(3):
        assert 0.24 <= round_trip_s(client) < 2.0


def test_update_and_remove_release_a_delayed_chunk_without_loss(http: Http, listen: str) -> None:
    client = connect(listen)
    add_toxic(http, type="latency", attributes={"latency": 60_000})
    started_s = time.monotonic()
    client.sendall(b"first")
    assert nothing_arrives(client, 0.2)
    assert http.send_json("PATCH", "/proxies/p/toxics/latency_downstream",
                          {"attributes": {"latency": 0}}).status == 200
    assert recv_exactly(client, 5) == b"first"
    add_toxic(http, type="latency", name="long", attributes={"latency": 60_000})
    client.sendall(b"second")
    assert nothing_arrives(client, 0.2)
    assert http.request("DELETE", "/proxies/p/toxics/long").status == 204
    assert recv_exactly(client, 6) == b"second"
    assert time.monotonic() - started_s < 10
    assert round_trip_s(client, b"third") < 1.0


def test_bandwidth_rate_within_bounds(http: Http, listen: str) -> None:
    client = connect(listen)
    add_toxic(http, type="bandwidth", attributes={"rate": 10})  # 10 KB/s = 10,000 bytes/s
    elapsed_s = round_trip_s(client, b"b" * 5000)
    assert 0.4 <= elapsed_s < 2.5
    add_toxic(http, type="bandwidth", name="stall", attributes={"rate": 0})
    client.sendall(b"held")
    assert nothing_arrives(client, 0.3)
    assert http.request("DELETE", "/proxies/p/toxics/stall").status == 204
    assert recv_exactly(client, 4) == b"held"


def test_timeout_zero_swallows_and_removal_closes(http: Http, listen: str) -> None:
    client = connect(listen)
    assert round_trip_s(client) < 1.0
    add_toxic(http, type="timeout", attributes={"timeout": 0})
    client.sendall(b"lost")
    assert nothing_arrives(client, 0.3)
    assert http.request("DELETE", "/proxies/p/toxics/timeout_downstream").status == 204
    assert recv_until_closed(client) == (b"", "eof")


def test_timeout_closes_after_its_delay(http: Http, listen: str) -> None:
    add_toxic(http, type="timeout", stream="upstream", attributes={"timeout": 300})
    client = connect(listen)
    started_s = time.monotonic()
    client.sendall(b"dropped")
    assert recv_until_closed(client) == (b"", "eof")
    assert 0.25 <= time.monotonic() - started_s < 3.0


def test_reset_peer_resets(http: Http, listen: str) -> None:
    add_toxic(http, type="reset_peer", attributes={"timeout": 100})
    client = connect(listen)
    started_s = time.monotonic()
    client.sendall(b"boom")
    data, ending = recv_until_closed(client)
    assert (data, ending) == (b"", "reset")
    assert 0.08 <= time.monotonic() - started_s < 3.0


def test_reset_peer_added_to_an_open_connection_closes_with_fin(http: Http, listen: str) -> None:
    client = connect(listen)
    assert round_trip_s(client) < 1.0
    add_toxic(http, type="reset_peer", attributes={"timeout": 0})
    client.sendall(b"x")
    assert recv_until_closed(client) == (b"", "eof")


def test_slicer_slices(http: Http, listen: str) -> None:
    client = connect(listen)
    add_toxic(http, type="slicer", attributes={"average_size": 100, "size_variation": 20,
                                               "delay": 30_000})
    payload = bytes(range(256)) * 4
    client.sendall(payload)
    reads: list[bytes] = []
    while sum(map(len, reads)) < len(payload):
        part = client.recv(65536)
        assert part
        reads.append(part)
    assert b"".join(reads) == payload
    assert len(reads) >= 3
    assert max(map(len, reads)) < len(payload)


def test_limit_data_closes_after_n_bytes(http: Http, listen: str) -> None:
    add_toxic(http, type="limit_data", attributes={"bytes": 10})
    client = connect(listen)
    client.sendall(b"0123456789abcdefghij")
    assert recv_until_closed(client) == (b"0123456789", "eof")


def test_slow_close_delays_the_close(http: Http, listen: str) -> None:
    client = connect(listen)
    assert round_trip_s(client) < 1.0
    started_s = time.monotonic()
    client.shutdown(socket.SHUT_WR)
    assert recv_until_closed(client) == (b"", "eof")
    baseline_s = time.monotonic() - started_s
    add_toxic(http, type="slow_close", attributes={"delay": 400})
    slow = connect(listen)
    assert round_trip_s(slow) < 1.0
    started_s = time.monotonic()
    slow.shutdown(socket.SHUT_WR)
    assert recv_until_closed(slow) == (b"", "eof")
    assert 0.38 <= time.monotonic() - started_s < 3.0
    assert baseline_s < 0.3


def test_toxicity_zero_never_one_always(http: Http, listen: str) -> None:
    add_toxic(http, type="latency", name="never", toxicity=0, attributes={"latency": 400})
    for _ in range(3):
        assert round_trip_s(connect(listen)) < 0.3
    add_toxic(http, type="latency", name="always", toxicity=1, attributes={"latency": 200})
    for _ in range(2):
        assert 0.19 <= round_trip_s(connect(listen)) < 0.39 + 1.0


def outcomes(server: ThreadedToxiproxy, upstream: str, connections: int) -> list[bool]:
    """Per connection: was it cut (limit_data 0, toxicity 0.5) or did it echo?"""
    http = Http(server.port)
    try:
        listen = make_proxy(http, upstream, name="seeded")
        add_toxic(http, proxy="seeded", type="limit_data", stream="upstream", toxicity=0.5,
                  attributes={"bytes": 0})
        cut: list[bool] = []
        for _ in range(connections):
            client = connect(listen)
            client.sendall(b"?")
            data, _ = recv_until_closed(client)
            cut.append(data == b"")
        return cut
    finally:
        http.close()


class EchoOnce(EchoServer):
    """Echo servers close after the reply, so each probe ends with EOF either way."""

    def _echo(self, client: socket.socket) -> None:
        with client:
            try:
                data = client.recv(1)
                if data:
                    client.sendall(data)
            except OSError:
                return


@pytest.fixture
def echo_once() -> Iterator[EchoOnce]:
    server = EchoOnce()
    yield server
    server.close()


def test_seeded_draws_repeat(echo_once: EchoOnce) -> None:
    runs = []
    for seed in (7, 7, 8):
        with ThreadedToxiproxy("127.0.0.1", 0, seed=seed) as server:
            runs.append(outcomes(server, echo_once.address, 16))
    assert runs[0] == runs[1]
    assert True in runs[0]
    assert False in runs[0]
    assert runs[2] != runs[0]


def test_upstream_down_gives_eof_right_after_connect(http: Http) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        dead = f"127.0.0.1:{probe.getsockname()[1]}"
    listen = make_proxy(http, dead, name="dead")
    client = connect(listen)
    assert recv_until_closed(client)[0] == b""
    assert http.request("GET", "/proxies/dead").json()["enabled"] is True
    counters = http.request("GET", "/proxies/dead/counters").json()
    assert counters["dial_failures"] == 1


def test_loss_extension_drops_or_stalls(http: Http, listen: str) -> None:
    client = connect(listen)
    add_toxic(http, type="loss", name="stall", attributes={"percent": 100, "stall": 200})
    assert 0.19 <= round_trip_s(client) < 1.5
    assert http.request("DELETE", "/proxies/p/toxics/stall").status == 204
    add_toxic(http, type="loss", name="drop", attributes={"percent": 100})
    client.sendall(b"gone")
    assert nothing_arrives(client, 0.3)
    assert http.send_json("PATCH", "/proxies/p/toxics/drop",
                          {"attributes": {"percent": 0}}).status == 200
    assert round_trip_s(client, b"kept") < 1.0


def test_connections_per_proxy_are_bounded(
    http: Http, listen: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(proxy_module, "CONNECTIONS_PER_PROXY_MAX", 2)
    first, second = connect(listen), connect(listen)
    assert round_trip_s(first) < 1.0
    assert round_trip_s(second) < 1.0
    third = connect(listen)
    assert recv_until_closed(third) == (b"", "eof")
    wait_until(lambda: http.request("GET", "/proxies/p/counters").json()
               ["connections_rejected"] == 1)
    first.close()
    wait_until(lambda: http.request("GET", "/proxies/p/counters").json()
               ["connections_open"] == 1)
    assert round_trip_s(connect(listen)) < 1.0
