"""Every call of the toxiproxy-python 0.1.1 client, driven against this server.

The client's own expectations (toxiproxy-api.md §7.1) are asserted as its test-suite does.
"""

from __future__ import annotations

import socket
import time

import pytest
from toxiproxy import Toxiproxy
from toxiproxy.exceptions import InvalidToxic, NotFound, ProxyExists
from toxiproxy.proxy import Proxy

from hongbao.chaos.toxiproxy import ThreadedToxiproxy
from tests.chaos.support import EchoServer, connect, recv_exactly, refuses


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def test_running_version_and_empty_server(toxiproxy: Toxiproxy) -> None:
    assert toxiproxy.running() is True
    assert toxiproxy.version().startswith(b'{"version": "2.12.0"')
    assert toxiproxy.proxies() == {}
    assert toxiproxy.get_proxy("nope") is None


def test_running_is_false_without_a_server() -> None:
    client = Toxiproxy()
    client.update_api_consumer("127.0.0.1", free_port())
    assert client.running() is False
    assert client.version() is None


def test_create_get_destroy(toxiproxy: Toxiproxy, echo: EchoServer) -> None:
    proxy = toxiproxy.create(upstream=echo.address, name="echo")
    host, port = proxy.listen.split(":")
    assert (host, proxy.enabled, proxy.upstream) == ("127.0.0.1", True, echo.address)
    assert int(port) > 0
    client = connect(proxy.listen)
    client.sendall(b"hi")
    assert client.recv(2) == b"hi"
    fetched = toxiproxy.get_proxy("echo")
    assert isinstance(fetched, Proxy)
    assert fetched.listen == proxy.listen
    with pytest.raises(ProxyExists):
        toxiproxy.create(upstream=echo.address, name="echo")
    assert toxiproxy.destroy(fetched) is True
    assert toxiproxy.destroy("not a proxy") is False
    assert toxiproxy.proxies() == {}
    assert refuses(proxy.listen)


def test_create_disabled_echoes_listen(toxiproxy: Toxiproxy, echo: EchoServer) -> None:
    listen = f"127.0.0.1:{free_port()}"
    proxy = toxiproxy.create(upstream=echo.address, name="off", listen=listen, enabled=False)
    assert (proxy.listen, proxy.enabled) == (listen, False)
    assert refuses(listen)


def test_disable_enable_and_down(toxiproxy: Toxiproxy, echo: EchoServer) -> None:
    proxy = toxiproxy.create(upstream=echo.address, name="echo")
    proxy.disable()
    assert proxy.enabled is False
    assert refuses(proxy.listen)
    proxy.enable()
    assert toxiproxy.get_proxy("echo").listen == proxy.listen
    connect(proxy.listen).close()
    with proxy.down():
        assert refuses(proxy.listen)
        assert toxiproxy.get_proxy("echo").enabled is False
    assert toxiproxy.get_proxy("echo").enabled is True
    connect(proxy.listen).close()


def test_toxics_add_list_get_destroy(toxiproxy: Toxiproxy, echo: EchoServer) -> None:
    proxy = toxiproxy.create(upstream=echo.address, name="echo")
    proxy.add_toxic(type="latency", attributes={"latency": 10, "jitter": 2})
    proxy.add_toxic(type="bandwidth", stream="upstream", name="bw", toxicity=0.5,
                    attributes={"rate": 100})
    toxics = proxy.toxics()
    assert list(toxics) == ["bw", "latency_downstream"]
    latency = proxy.get_toxic("latency_downstream")
    assert latency is not None
    assert (latency.type, latency.stream, latency.toxicity) == ("latency", "downstream", 1)
    assert latency.attributes == {"latency": 10, "jitter": 2}
    assert toxics["bw"].toxicity == 0.5
    assert proxy.get_toxic("nope") is None
    with pytest.raises(ProxyExists):
        proxy.add_toxic(type="latency")
    with pytest.raises(InvalidToxic):
        proxy.add_toxic(type="latency", stream="lolstream")
    with pytest.raises(InvalidToxic):
        proxy.add_toxic(type="down")
    assert proxy.destroy_toxic("bw") is True
    with pytest.raises(NotFound):
        proxy.destroy_toxic("bw")
    assert list(proxy.toxics()) == ["latency_downstream"]


def test_two_latency_toxics_add_their_delays(toxiproxy: Toxiproxy, echo: EchoServer) -> None:
    proxy = toxiproxy.create(upstream=echo.address, name="echo")
    proxy.add_toxic(type="latency", name="one", attributes={"latency": 150})
    proxy.add_toxic(type="latency", name="two", attributes={"latency": 150})
    client = connect(proxy.listen)
    started_s = time.monotonic()
    client.sendall(b"x")
    assert recv_exactly(client, 1) == b"x"
    elapsed_s = time.monotonic() - started_s
    assert 0.29 <= elapsed_s < 2.0


def test_reset_reenables_and_empties(toxiproxy: Toxiproxy, echo: EchoServer) -> None:
    proxy = toxiproxy.create(upstream=echo.address, name="echo")
    proxy.add_toxic(type="timeout", attributes={"timeout": 0})
    proxy.disable()
    assert toxiproxy.reset() is True
    again = toxiproxy.get_proxy("echo")
    assert (again.enabled, again.listen) == (True, proxy.listen)
    assert again.toxics() == {}
    client = connect(proxy.listen)
    client.sendall(b"ok")
    assert client.recv(2) == b"ok"


def test_populate_and_destroy_all(toxiproxy: Toxiproxy, echo: EchoServer) -> None:
    port = free_port()
    created = toxiproxy.populate([
        {"name": "one", "upstream": echo.address, "listen": f"localhost:{port}"},
        {"name": "two", "upstream": echo.address, "listen": "127.0.0.1:0"},
    ])
    assert [p.name for p in created] == ["one", "two"]
    one = toxiproxy.get_proxy("one")
    assert one.listen == f"127.0.0.1:{port}"
    client = socket.create_connection(("127.0.0.1", port), timeout=5)
    client.sendall(b"v4")
    assert client.recv(2) == b"v4"
    client.close()
    toxiproxy.destroy_all()
    assert toxiproxy.proxies() == {}


def test_api_consumer_follows_update(server: ThreadedToxiproxy, echo: EchoServer) -> None:
    """Two servers; the client's (global) address moves between them."""
    with ThreadedToxiproxy("127.0.0.1", 0) as other:
        client = Toxiproxy()
        client.update_api_consumer("127.0.0.1", other.port)
        client.create(upstream=echo.address, name="there")
        client.update_api_consumer("127.0.0.1", server.port)
        assert client.proxies() == {}
        client.update_api_consumer("127.0.0.1", other.port)
        assert list(client.proxies()) == ["there"]
