"""No input stops the server: random toxic bodies on a live connection, garbage HTTP."""

from __future__ import annotations

import contextlib
import gc
import socket
import sys
import threading
import time
import warnings
from typing import Any
from urllib.parse import quote

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hongbao.chaos.toxiproxy import ThreadedToxiproxy
from hongbao.chaos.toxiproxy.spec import TOXIC_ATTRIBUTES
from tests.chaos.support import (
    EchoServer,
    Http,
    connect,
    recv_exactly,
    recv_until_closed,
    wait_until,
)

TOGGLE_ROUNDS = 400  # disable/enable calls while four threads keep connecting
SMALL_INTS = st.integers(min_value=-5, max_value=300)
JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats(allow_nan=False)
    | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner,
                                                               max_size=3),
    max_leaves=8,
)
TOXIC_BODIES = st.fixed_dictionaries(
    {"type": st.sampled_from([*TOXIC_ATTRIBUTES, "down", ""])},
    optional={
        "stream": st.sampled_from(["upstream", "downstream", "DownStream", "x"]) | JSON_VALUES,
        "toxicity": st.floats(0, 1) | JSON_VALUES,
        "name": st.text(max_size=6) | JSON_VALUES,
        "attributes": st.dictionaries(
            st.sampled_from(sorted({a for names in TOXIC_ATTRIBUTES.values() for a in names})),
            SMALL_INTS, max_size=3) | JSON_VALUES,
    },
)


def test_random_toxic_bodies_answer_the_reference_codes_and_traffic_survives() -> None:
    echo = EchoServer()
    with ThreadedToxiproxy("127.0.0.1", 0) as server:
        http = Http(server.port)
        reply = http.send_json("POST", "/proxies", {"name": "p", "listen": "127.0.0.1:0",
                                                    "upstream": echo.address})
        listen = reply.json()["listen"]
        live = connect(listen)
        live.sendall(b"warm")
        assert recv_exactly(live, 4) == b"warm"

        @settings(max_examples=80, deadline=None,
                  suppress_health_check=[HealthCheck.function_scoped_fixture])
        @given(body=TOXIC_BODIES)
        def each(body: dict[str, Any]) -> None:
            reply = http.send_json("POST", "/proxies/p/toxics", body)
            assert reply.status in (200, 400, 409), (body, reply.body)
            if reply.status == 200:
                name = quote(reply.json()["name"], safe="")
                patched = http.send_json("PATCH", f"/proxies/p/toxics/{name}", body)
                assert patched.status in (200, 400), (body, patched.body)
                assert http.request("DELETE", f"/proxies/p/toxics/{name}").status == 204

        each()
        assert http.request("GET", "/proxies/p/toxics").json() == []
        fresh = connect(listen)
        fresh.sendall(b"after")
        assert recv_exactly(fresh, 5) == b"after"
        http.close()
    echo.close()


@pytest.mark.parametrize("name", ["a}b", "{x}", "a#b?c", "\U000dc0e0µ}#"])
def test_any_name_without_a_slash_can_be_read_patched_and_deleted(
    http: Http, echo: EchoServer, name: str
) -> None:
    """As with the reference server's router: a name is whatever sits between slashes
    (a toxic once named "µ}#" was created, then 404 to every later call)."""
    proxy = http.send_json("POST", "/proxies", {"name": name, "listen": "127.0.0.1:0",
                                                "upstream": echo.address})  # fmt: skip
    assert proxy.status == 201, proxy.body
    at = f"/proxies/{quote(name, safe='')}"
    assert http.request("GET", at).json()["name"] == name
    toxic = {"name": name, "type": "latency", "attributes": {"latency": 1}}
    assert http.send_json("POST", f"{at}/toxics", toxic).status == 200
    toxic_at = f"{at}/toxics/{quote(name, safe='')}"
    patched = http.send_json("PATCH", toxic_at, {"attributes": {"latency": 2}})
    assert patched.status == 200, patched.body
    assert http.request("GET", toxic_at).json()["attributes"]["latency"] == 2
    assert http.request("DELETE", toxic_at).status == 204
    assert http.request("DELETE", at).status == 204
    assert http.request("GET", "/proxies").json() == {}


def test_garbage_on_the_api_socket_does_not_stop_the_server(http: Http) -> None:
    for garbage in (b"\x00\xff\xfe garbage\r\n\r\n", b"GET / HTTP/9.9\r\n\r\n",
                    b"POST /proxies HTTP/1.1\r\nContent-Length: -1\r\n\r\n"):
        with socket.create_connection(("127.0.0.1", http.port), timeout=10) as raw:
            raw.sendall(garbage)
            answer, _ = recv_until_closed(raw)
            assert answer.startswith(b"HTTP/1.")
            assert b" 400 " in answer.split(b"\r\n")[0]
    assert http.request("GET", "/version").status == 200


def test_deleting_reset_peer_waits_for_its_timer_then_resets(http: Http, echo: EchoServer) -> None:
    """§6: DELETE of a reset_peer whose timer runs returns once the connection reset."""
    listen = http.send_json("POST", "/proxies", {"name": "p", "listen": "127.0.0.1:0",
                                                 "upstream": echo.address}).json()["listen"]
    assert http.send_json("POST", "/proxies/p/toxics", {
        "type": "reset_peer", "attributes": {"timeout": 400}}).status == 200
    client = connect(listen)
    client.sendall(b"x")
    # The first chunk starts the timer; the proxy counted it once it was read.
    wait_until(lambda: http.request("GET", "/proxies/p/counters").json()
               ["upstream"]["received_bytes"] == 1)
    started_s = time.monotonic()
    assert http.request("DELETE", "/proxies/p/toxics/reset_peer_downstream").status == 204
    assert 0.2 <= time.monotonic() - started_s < 5.0
    assert recv_until_closed(client) == (b"", "reset")


def test_toggling_a_proxy_under_a_connection_storm_leaves_no_socket_unclosed(
    echo: EchoServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Disabling a proxy while clients keep connecting: every socket the proxy accepted is
    closed by the proxy, none is dropped for the garbage collector (CI once saw one)."""
    dropped: list[str] = []

    def hook(unraisable: Any) -> None:
        dropped.append(f"{unraisable.exc_type.__name__}: {unraisable.object!r}")

    monkeypatch.setattr(sys, "unraisablehook", hook)
    stop = threading.Event()
    with ThreadedToxiproxy("127.0.0.1", 0) as running:
        http = Http(running.port)
        listen = http.send_json("POST", "/proxies", {"name": "p", "listen": "127.0.0.1:0",
                                                     "upstream": echo.address}).json()["listen"]
        host, port = listen.rsplit(":", 1)

        def storm() -> None:
            while not stop.is_set():
                with contextlib.suppress(OSError), socket.socket() as client:
                    client.settimeout(1.0)
                    client.connect((host, int(port)))

        clients = [threading.Thread(target=storm, daemon=True) for _ in range(4)]
        for thread in clients:
            thread.start()
        try:
            for round_ in range(TOGGLE_ROUNDS):
                enabled = round_ % 2 == 1
                reply = http.send_json("POST", "/proxies/p", {"enabled": enabled})
                assert reply.status == 200, reply.body
        finally:
            stop.set()
            for thread in clients:
                thread.join(10)
            http.close()
    with warnings.catch_warnings():
        warnings.simplefilter("always", ResourceWarning)
        gc.collect()
    assert dropped == []
