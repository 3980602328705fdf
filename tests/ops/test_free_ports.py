"""free_ports skips the ports a topology promised to processes not started yet (the
kernel hands a just-released port out again), so that a chaos run's proxies and its
Toxiproxy server never take a node's or a router's port before it binds."""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest

from hongbao.config.topology import load_topology
from hongbao.ops import local
from hongbao.ops.local import free_ports, topology_ports

REPO = Path(__file__).resolve().parents[2]


class _CountingSocket:
    """A socket whose kernel-chosen ports are 1000, 1001, ... in order."""

    ports = itertools.count(1000)

    def __init__(self) -> None:
        self.port = next(self.ports)

    def bind(self, address: tuple[str, int]) -> None:
        assert address == ("127.0.0.1", 0)

    def getsockname(self) -> tuple[str, int]:
        return ("127.0.0.1", self.port)

    def close(self) -> None:
        pass


def test_excluded_ports_are_skipped(monkeypatch: pytest.MonkeyPatch) -> None:
    _CountingSocket.ports = itertools.count(1000)
    monkeypatch.setattr(local.socket, "socket", _CountingSocket)
    assert free_ports(3, exclude={1000, 1002}) == [1001, 1003, 1004]


def test_gives_up_when_nothing_but_excluded_ports_come_back(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    class Stuck(_CountingSocket):
        def getsockname(self) -> tuple[str, int]:
            return ("127.0.0.1", 1000)

    monkeypatch.setattr(local.socket, "socket", Stuck)
    with pytest.raises(RuntimeError, match="free ports"):
        free_ports(1, exclude={1000})


def test_real_ports_are_distinct_and_avoid_the_excluded() -> None:
    first = free_ports(20)
    again = free_ports(20, exclude=first)
    assert len(set(first)) == 20
    assert len(set(again)) == 20
    assert not set(first) & set(again)


def test_topology_ports_name_service_and_metrics_ports() -> None:
    topology = load_topology(REPO / "configs" / "local.toml")
    ports = topology_ports(topology)
    assert {int(n.port) for n in topology.nodes} <= ports
    assert {int(r.port) for r in topology.routers} <= ports
    assert {9101, 9102, 9103, 9201, 9202, 9203} <= ports
