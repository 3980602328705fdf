"""Raw HTTP against every endpoint and error of the Toxiproxy 2.12 reference.

Each test names the section of ../shared/reference/toxiproxy-api.md it checks.
"""

from __future__ import annotations

import json
import socket

import pytest

from tests.chaos.support import EchoServer, Http, connect, refuses, wait_until

JSON = "application/json"
ERROR_TYPE = "text/plain; charset=utf-8"


def create(http: Http, name: str, upstream: str, **extra: object) -> dict[str, object]:
    reply = http.send_json("POST", "/proxies", {"name": name, "listen": "127.0.0.1:0",
                                                "upstream": upstream, **extra})
    assert reply.status == 201, reply.body
    body: dict[str, object] = reply.json()
    return body


def assert_error(reply: object, status: int, message: str) -> None:
    """§2.3: a JSON object plus newline, sent as text/plain with nosniff."""
    assert reply.status == status, reply.body  # type: ignore[attr-defined]
    assert reply.headers["Content-Type"] == ERROR_TYPE  # type: ignore[attr-defined]
    assert reply.headers["X-Content-Type-Options"] == "nosniff"  # type: ignore[attr-defined]
    assert reply.body.endswith(b"}\n")  # type: ignore[attr-defined]
    assert json.loads(reply.body) == {"error": message, "status": status}  # type: ignore[attr-defined]


def test_version_empty_list_unknown_path_browser_block(http: Http) -> None:
    """§10.1, §1, §3.13: version text, {} with no proxies, 404 text, 403 for browsers."""
    version = http.request("GET", "/version")
    assert version.status == 200
    assert version.headers["Content-Type"] == "application/json;charset=utf-8"
    assert version.body.startswith(b'{"version": "2.12.0"')
    assert version.body.endswith(b"\n")
    assert json.loads(version.body)["extensions"] == ["toxic:loss", "seed", "counters"]
    assert len(version.headers["X-Toxiproxy-Request-Id"]) == 20
    listing = http.request("GET", "/proxies")
    assert (listing.status, listing.body, listing.headers["Content-Type"]) == (200, b"{}", JSON)
    for path in ("/nope", "/proxies/", "/proxies/a/toxics/b/c"):
        missing = http.request("GET", path)
        assert (missing.status, missing.body) == (404, b"404 page not found\n")
        assert missing.headers["Content-Type"] == ERROR_TYPE
    browser = http.request("GET", "/proxies", headers={"User-Agent": "Mozilla/5.0 (X11)"})
    assert (browser.status, browser.body) == (403, b"User agent not allowed\n")


def test_wrong_method_is_405_with_an_empty_body(http: Http) -> None:
    """§1: a known path with a wrong method (HEAD included) answers 405, no body."""
    for method, path in (("PUT", "/proxies"), ("HEAD", "/version"), ("GET", "/reset"),
                         ("DELETE", "/populate"), ("PUT", "/proxies/a/toxics")):
        reply = http.request(method, path)
        assert (reply.status, reply.body) == (405, b""), (method, path)


def test_create_get_conflict_and_missing_fields(http: Http, echo: EchoServer) -> None:
    """§3.2, §10.2: 201 with a real port; 409 on a taken name; 400 for name/upstream."""
    proxy = create(http, "a", echo.address)
    assert proxy["enabled"] is True
    assert proxy["toxics"] == []
    assert proxy["Logger"] == {}
    assert list(proxy) == ["name", "listen", "upstream", "enabled", "Logger", "toxics"]
    listen = str(proxy["listen"])
    assert listen.startswith("127.0.0.1:")
    assert not listen.endswith(":0")
    assert http.request("GET", "/proxies/a").json() == proxy
    assert http.request("GET", "/proxies").json() == {"a": proxy}
    again = http.send_json("POST", "/proxies", {"name": "a", "upstream": echo.address,
                                                "listen": listen})
    assert_error(again, 409, "proxy already exists")
    assert_error(http.send_json("POST", "/proxies", {"upstream": "x:1"}), 400,
                 "missing required field: name")
    assert_error(http.send_json("POST", "/proxies", {"name": "b", "upstream": ""}), 400,
                 "missing required field: upstream")
    assert_error(http.request("GET", "/proxies/zzz"), 404, "proxy not found")


def test_bad_bodies_answer_400_and_the_server_keeps_serving(http: Http) -> None:
    """§1.1: empty body is EOF; malformed JSON and wrong types are 400; null is {}."""
    assert_error(http.request("POST", "/proxies", b""), 400, "bad request body: EOF")
    for body in (b"{", b"[1,", b'{"name": 5, "upstream": "x:1"}', b'{"enabled": "yes"}',
                 b"\xff\xfe", b"NaN"):
        reply = http.request("POST", "/proxies", body)
        assert reply.status == 400, body
        assert reply.json()["error"].startswith("bad request body: ")
    assert_error(http.request("POST", "/proxies", b"null"), 400, "missing required field: name")
    # Case-insensitive keys, unknown keys ignored, trailing bytes ignored.
    reply = http.request("POST", "/proxies", b'{"NAME":"c","Upstream":"x:1","listen":'
                         b'"127.0.0.1:0","toxics":null,"extra":[1]} trailing garbage')
    assert reply.status == 201, reply.body
    assert reply.json()["name"] == "c"
    assert http.request("GET", "/version").status == 200


def test_listen_errors_are_500_with_go_text(http: Http, echo: EchoServer) -> None:
    """§2.4: a port in use and a missing port answer 500 and create nothing."""
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen(1)
    port = taken.getsockname()[1]
    try:
        reply = http.send_json("POST", "/proxies", {"name": "p", "upstream": echo.address,
                                                    "listen": f"127.0.0.1:{port}"})
        assert_error(reply, 500, f"listen tcp 127.0.0.1:{port}: bind: address already in use")
    finally:
        taken.close()
    reply = http.send_json("POST", "/proxies", {"name": "p", "upstream": "x:1",
                                                "listen": "local373"})
    assert_error(reply, 500, "listen tcp: address local373: missing port in address")
    assert http.request("GET", "/proxies").json() == {}


def test_disabled_create_echoes_listen_and_binds_nothing(http: Http, echo: EchoServer) -> None:
    """§10.3: enabled false keeps the submitted listen text and leaves the port closed."""
    probe = socket.socket()
    probe.bind(("127.0.0.1", 0))
    port = probe.getsockname()[1]
    probe.close()
    listen = f"127.0.0.1:{port}"
    proxy = create(http, "off", echo.address, listen=listen, enabled=False)
    assert (proxy["listen"], proxy["enabled"]) == (listen, False)
    assert refuses(listen)


def test_update_enable_disable_keeps_listen_and_closes_connections(
    http: Http, echo: EchoServer
) -> None:
    """§3.5, §10.4: disable refuses and closes; enable comes back on the same listen."""
    proxy = create(http, "a", echo.address)
    listen = str(proxy["listen"])
    client = connect(listen)
    client.sendall(b"ping")
    assert client.recv(4) == b"ping"
    off = http.send_json("POST", "/proxies/a", {"enabled": False})
    assert off.status == 200
    assert (off.json()["enabled"], off.json()["listen"]) == (False, listen)
    assert client.recv(10) == b""
    assert refuses(listen)
    on = http.send_json("PATCH", "/proxies/a", {"enabled": True})
    assert (on.json()["enabled"], on.json()["listen"]) == (True, listen)
    again = connect(listen)
    again.sendall(b"pong")
    assert again.recv(4) == b"pong"
    moved = http.send_json("POST", "/proxies/a", {"upstream": "somehost:12345"})
    assert (moved.status, moved.json()["upstream"], moved.json()["enabled"]) == (
        200, "somehost:12345", True)
    assert again.recv(10) == b"", "changing the upstream restarts the proxy"
    assert_error(http.send_json("POST", "/proxies/zzz", {"enabled": False}), 404,
                 "proxy not found")
    assert_error(http.request("POST", "/proxies/a", b"{"), 400,
                 "bad request body: Expecting property name enclosed in double quotes")
    assert_error(http.send_json("POST", "/proxies/a", {"listen": "nowhere"}), 500,
                 "listen tcp: address nowhere: missing port in address")
    assert http.request("GET", "/proxies/a").json()["enabled"] is False


def test_delete_proxy(http: Http, echo: EchoServer) -> None:
    """§3.6: 204 without a body, the port closes, then 404."""
    listen = str(create(http, "a", echo.address)["listen"])
    reply = http.request("DELETE", "/proxies/a")
    assert (reply.status, reply.body) == (204, b"")
    assert refuses(listen)
    assert_error(http.request("DELETE", "/proxies/a"), 404, "proxy not found")


def test_toxic_create_defaults_and_errors(http: Http, echo: EchoServer) -> None:
    """§3.8, §10.5: 200 (not 201), default name/stream/toxicity, all attributes."""
    create(http, "a", echo.address)
    reply = http.send_json("POST", "/proxies/a/toxics",
                           {"type": "latency", "attributes": {"latency": 100}})
    assert reply.status == 200
    assert reply.headers["Content-Type"] == JSON
    assert reply.body == (b'{"attributes":{"latency":100,"jitter":0},"name":"latency_downstream",'
                          b'"type":"latency","stream":"downstream","toxicity":1}')
    assert_error(http.send_json("POST", "/proxies/a/toxics", {"type": "latency"}), 409,
                 "toxic already exists")
    assert_error(http.send_json("POST", "/proxies/a/toxics",
                                {"type": "latency", "stream": "lolstream"}), 400,
                 "stream was invalid, can be either upstream or downstream")
    assert_error(http.send_json("POST", "/proxies/a/toxics", {"type": "latency", "stream": ""}),
                 400, "stream was invalid, can be either upstream or downstream")
    for bad_type in ("down", "", "Latency"):
        assert_error(http.send_json("POST", "/proxies/a/toxics", {"type": bad_type}), 400,
                     "invalid toxic type")
    assert_error(http.send_json("POST", "/proxies/zzz/toxics", {"type": "latency"}), 404,
                 "proxy not found")
    assert_error(http.request("POST", "/proxies/a/toxics", b""), 400, "bad request body: EOF")
    for attributes in ({"rate": 100.0}, {"rate": "100"}, {"rate": True}, {"rate": 1e3}):
        reply = http.send_json("POST", "/proxies/a/toxics",
                               {"type": "bandwidth", "attributes": attributes})
        assert reply.status == 400, attributes
    assert_error(http.send_json("POST", "/proxies/a/toxics", {"type": "noop", "toxicity": "1"}),
                 400, "bad request body: json: cannot unmarshal string into Go struct field "
                 "toxics.ToxicWrapper.toxicity of type float32")
    odd = http.send_json("POST", "/proxies/a/toxics", {
        "type": "slicer", "stream": "UpStream", "toxicity": 0.2, "name": "s",
        "attributes": {"Average_Size": -5, "unknown": 1}})
    assert odd.json() == {"attributes": {"average_size": -5, "size_variation": 0, "delay": 0},
                          "name": "s", "type": "slicer", "stream": "UpStream",
                          "toxicity": 0.2}
    noop = http.send_json("POST", "/proxies/a/toxics", {"type": "noop", "stream": "upstream"})
    assert noop.json()["attributes"] == {}
    assert noop.json()["name"] == "noop_upstream"


def test_toxic_list_get_update_delete(http: Http, echo: EchoServer) -> None:
    """§3.7 to §3.11, §10.6, §10.7: upstream first; merged update; PATCH and POST."""
    create(http, "a", echo.address)
    http.send_json("POST", "/proxies/a/toxics", {"type": "latency", "name": "d1"})
    http.send_json("POST", "/proxies/a/toxics", {"type": "timeout", "stream": "upstream",
                                                 "name": "u1"})
    http.send_json("POST", "/proxies/a/toxics", {"type": "slow_close", "name": "d2"})
    names = [t["name"] for t in http.request("GET", "/proxies/a/toxics").json()]
    assert names == ["u1", "d1", "d2"]
    assert [t["name"] for t in http.request("GET", "/proxies/a").json()["toxics"]] == names
    updated = http.send_json("PATCH", "/proxies/a/toxics/d1",
                             {"attributes": {"jitter": 7}, "toxicity": 0.5})
    assert updated.json()["attributes"] == {"latency": 0, "jitter": 7}
    assert updated.json()["toxicity"] == 0.5
    merged = http.send_json("POST", "/proxies/a/toxics/d1",
                            {"attributes": {"latency": 9}, "name": "renamed", "type": "bandwidth"})
    assert merged.json() == {"attributes": {"latency": 9, "jitter": 7}, "name": "d1",
                             "type": "latency", "stream": "downstream", "toxicity": 0.5}
    assert http.request("GET", "/proxies/a/toxics/d1").json() == merged.json()
    assert_error(http.request("GET", "/proxies/a/toxics/nope"), 404, "toxic not found")
    assert_error(http.request("GET", "/proxies/zzz/toxics/d1"), 404, "proxy not found")
    assert_error(http.request("GET", "/proxies/zzz/toxics"), 404, "proxy not found")
    assert_error(http.send_json("PATCH", "/proxies/a/toxics/nope", {}), 404, "toxic not found")
    assert_error(http.request("PATCH", "/proxies/a/toxics/d1", b""), 400, "bad request body: EOF")
    deleted = http.request("DELETE", "/proxies/a/toxics/d1")
    assert (deleted.status, deleted.body) == (204, b"")
    assert_error(http.request("DELETE", "/proxies/a/toxics/d1"), 404, "toxic not found")
    assert_error(http.request("DELETE", "/proxies/zzz/toxics/d1"), 404, "proxy not found")
    assert [t["name"] for t in http.request("GET", "/proxies/a/toxics").json()] == ["u1", "d2"]


def test_populate_create_keep_replace_and_errors(http: Http, echo: EchoServer) -> None:
    """§3.3, §10.8: localhost resolves; same entry kept with its toxics; changed replaced."""
    probe = socket.socket()
    probe.bind(("127.0.0.1", 0))
    port = probe.getsockname()[1]
    probe.close()
    entry = {"name": "p", "listen": f"localhost:{port}", "upstream": echo.address}
    first = http.send_json("POST", "/populate", [entry])
    assert (first.status, first.headers["Content-Type"]) == (201, JSON)
    assert first.json()["proxies"][0]["listen"] == f"127.0.0.1:{port}"
    http.send_json("POST", "/proxies/p/toxics", {"type": "noop"})
    again = http.send_json("POST", "/populate", [entry])
    assert [t["name"] for t in again.json()["proxies"][0]["toxics"]] == ["noop_downstream"]
    changed = http.send_json("POST", "/populate", [{**entry, "upstream": "127.0.0.1:1"}])
    assert changed.json()["proxies"][0]["toxics"] == []
    assert changed.json()["proxies"][0]["upstream"] == "127.0.0.1:1"
    missing = http.send_json("POST", "/populate", [entry, {"name": "q"}])
    assert (missing.status, missing.headers["Content-Type"]) == (400, JSON)
    assert missing.json() == {"error": "missing required field: upstream at proxy 2",
                              "status": 400, "proxies": None}
    assert http.send_json("POST", "/populate", {"name": "x"}).status == 400
    assert http.send_json("POST", "/populate", []).json() == {"proxies": []}
    failing = http.send_json("POST", "/populate", [
        {"name": "ok", "listen": "127.0.0.1:0", "upstream": "x:1"},
        {"name": "bad", "listen": "nope", "upstream": "x:1"},
    ])
    assert failing.status == 500
    assert [p["name"] for p in failing.json()["proxies"]] == ["ok"]
    assert "bad" not in http.request("GET", "/proxies").json()


def test_reset_reenables_and_empties_toxics(http: Http, echo: EchoServer) -> None:
    """§3.12, §10.9: 204; disabled proxies come back on the same listen, toxics gone."""
    listen = str(create(http, "a", echo.address)["listen"])
    http.send_json("POST", "/proxies/a/toxics", {"type": "latency"})
    http.send_json("POST", "/proxies/a", {"enabled": False})
    reply = http.request("POST", "/reset")
    assert (reply.status, reply.body) == (204, b"")
    proxy = http.request("GET", "/proxies/a").json()
    assert (proxy["enabled"], proxy["listen"], proxy["toxics"]) == (True, listen, [])
    connect(listen).close()


def test_keep_alive_and_chunked_bodies(http: Http, echo: EchoServer) -> None:
    """§1: many requests on one connection; a chunked body is read like any other."""
    for _ in range(5):
        assert http.request("GET", "/version").status == 200
    body = json.dumps({"name": "c", "listen": "127.0.0.1:0", "upstream": echo.address})
    http.connection.putrequest("POST", "/proxies")
    http.connection.putheader("Transfer-Encoding", "chunked")
    http.connection.endheaders()
    for part in (body[:10], body[10:]):
        http.connection.send(f"{len(part):x}\r\n{part}\r\n".encode())
    http.connection.send(b"0\r\n\r\n")
    response = http.connection.getresponse()
    assert response.status == 201
    assert json.loads(response.read())["name"] == "c"


def test_oversized_body_is_refused_not_read(http: Http) -> None:
    """A bound on request bodies: 413 as an error object; the server keeps serving."""
    reply = http.request("POST", "/proxies", b"[" + b"1," * (1024 * 1024) + b"1]")
    assert reply.status == 413
    assert json.loads(reply.body)["status"] == 413
    fresh = Http(http.port)
    assert fresh.request("GET", "/version").status == 200
    fresh.close()


def test_counters_extension(http: Http, echo: EchoServer) -> None:
    """Extension: live connection and byte counters per proxy."""
    listen = str(create(http, "a", echo.address)["listen"])
    client = connect(listen)
    client.sendall(b"12345")
    assert client.recv(5) == b"12345"
    counters = http.request("GET", "/proxies/a/counters").json()
    assert counters["connections_accepted"] == 1
    assert counters["connections_open"] == 1
    assert counters["upstream"] == {"received_bytes": 5, "sent_bytes": 5}
    assert counters["downstream"] == {"received_bytes": 5, "sent_bytes": 5}
    client.close()
    wait_until(lambda: http.request("GET", "/proxies/a/counters").json()["connections_open"] == 0)
    assert_error(http.request("GET", "/proxies/zzz/counters"), 404, "proxy not found")


@pytest.mark.parametrize("name", ["with space", "ünïcode", "a.b-c_d"])
def test_percent_escaped_names_route(http: Http, name: str) -> None:
    """§1: percent-escapes are decoded before matching."""
    from urllib.parse import quote

    assert http.send_json("POST", "/proxies", {"name": name, "upstream": "x:1",
                                               "enabled": False}).status == 201
    assert http.request("GET", "/proxies/" + quote(name)).json()["name"] == name


def test_populate_replacement_that_cannot_bind_keeps_the_old_proxy_stopped(
    http: Http, echo: EchoServer
) -> None:
    """§3.3: a failed replacement leaves the old proxy registered, disabled."""
    old = create(http, "p", echo.address)
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen(1)
    port = taken.getsockname()[1]
    try:
        reply = http.send_json("POST", "/populate", [
            {"name": "p", "listen": f"127.0.0.1:{port}", "upstream": echo.address}])
    finally:
        taken.close()
    assert reply.status == 500
    assert reply.json()["proxies"] == []
    kept = http.request("GET", "/proxies/p").json()
    assert (kept["enabled"], kept["listen"]) == (False, old["listen"])
