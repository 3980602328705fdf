"""Fixtures: a Toxiproxy-compatible server in a thread, an echo upstream, raw HTTP."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from toxiproxy import Toxiproxy
from toxiproxy.api import APIConsumer

from hongbao.chaos.toxiproxy import ThreadedToxiproxy
from tests.chaos.support import EchoServer, Http, close_test_sockets


@pytest.fixture(autouse=True)
def _close_client_sockets() -> Iterator[None]:
    yield
    close_test_sockets()


@pytest.fixture
def server() -> Iterator[ThreadedToxiproxy]:
    with ThreadedToxiproxy("127.0.0.1", 0) as running:
        yield running
        close_test_sockets()


@pytest.fixture
def echo() -> Iterator[EchoServer]:
    upstream = EchoServer()
    yield upstream
    upstream.close()


@pytest.fixture
def http(server: ThreadedToxiproxy) -> Iterator[Http]:
    client = Http(server.port)
    yield client
    client.close()


@pytest.fixture
def toxiproxy(server: ThreadedToxiproxy) -> Iterator[Toxiproxy]:
    """The toxiproxy-python client pointed at this test's server (its address is global)."""
    saved = (APIConsumer.host, APIConsumer.port)
    client = Toxiproxy()
    client.update_api_consumer("127.0.0.1", server.port)
    yield client
    APIConsumer.host, APIConsumer.port = saved
