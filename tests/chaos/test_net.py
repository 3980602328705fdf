"""ChaosNet: a proxy per link, dial maps, toxics on chosen streams, a real cluster through it.

The stream tests put plain echo servers where the topology's nodes are (no cluster), so
what crosses each direction of a link is seen byte for byte; the cluster tests start
configs/local.toml (3 nodes, 3 routers) with every link through the net.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from toxiproxy import Toxiproxy  # type: ignore[import-untyped]

from hongbao.chaos.net import ChaosNet, ChaosNetError, Link, plan_links
from hongbao.chaos.toxiproxy import ThreadedToxiproxy
from hongbao.client.sdk import ClientOptions, HongbaoClient
from hongbao.config.dial import load_dial_map
from hongbao.config.topology import Topology, load_topology
from hongbao.proto.gen.hongbao.v1 import admin_pb2, admin_pb2_grpc
from tests.chaos.cluster_support import (
    TEMPLATE,
    ChaosCluster,
    chaos_cluster,
    echo_topology,
    wait_for,
)
from tests.chaos.support import EchoServer, connect, recv_exactly

REGIONS = ("shenzhen", "shanghai", "tianjin")
CALL_DEADLINE_S = 20.0  # one deposit, the client's retries included
CALLS = 5  # round trips measured; the fastest is compared (a loaded machine adds, never cuts)


def local_topology() -> Topology:
    return load_topology(TEMPLATE)


@pytest.fixture
def echo_nodes(tmp_path: Path) -> Iterator[tuple[Topology, list[EchoServer]]]:
    with echo_topology(tmp_path) as (path, echoes):
        yield load_topology(path), echoes


@pytest.fixture
def echo_net(
    server: ThreadedToxiproxy, echo_nodes: tuple[Topology, list[EchoServer]]
) -> Iterator[tuple[ChaosNet, list[EchoServer]]]:
    topology, echoes = echo_nodes
    net = ChaosNet(topology, server.host, server.port)
    net.create()
    try:
        yield net, echoes
    finally:
        net.destroy()


def test_links_of_local_toml() -> None:
    topology = local_topology()
    links = plan_links(topology, range(20000, 20015))
    names = [link.name for link in links]
    assert names == [
        "n1-n2", "n1-n3", "n2-n1", "n2-n3", "n3-n1", "n3-n2",
        "r1-n1", "r1-n2", "r1-n3", "r2-n1", "r2-n2", "r2-n3", "r3-n1", "r3-n2", "r3-n3",
    ]  # fmt: skip
    first = links[0]
    assert first == Link("n1-n2", "n1", "shenzhen", 2, "shanghai", "127.0.0.1:20000",
                         topology.node(2).address)  # fmt: skip
    assert links[6].source_node is None
    assert first.source_node == 1
    assert len({link.listen for link in links}) == 15


def test_create_dial_maps_and_destroy(server: ThreadedToxiproxy, toxiproxy: Toxiproxy,
                                      tmp_path: Path) -> None:  # fmt: skip
    topology = local_topology()
    net = ChaosNet(topology, server.host, server.port)
    net.create()
    proxies = toxiproxy.proxies()
    assert sorted(proxies) == sorted(link.name for link in net.links)
    for link in net.links:
        proxy = proxies[link.name]
        assert (proxy.listen, proxy.upstream, proxy.enabled) == (link.listen, link.upstream, True)
    node_maps, router_maps = net.write_dial_maps(tmp_path / "dial")
    assert sorted(node_maps) == [1, 2, 3]
    assert sorted(router_maps) == [1, 2, 3]
    assert load_dial_map(node_maps[1], topology) == (
        (2, net.link("n1-n2").listen), (3, net.link("n1-n3").listen))  # fmt: skip
    for router_id, path in router_maps.items():
        loaded = dict(load_dial_map(path, topology))
        assert loaded == {n: net.link(f"r{router_id}-n{n}").listen for n in (1, 2, 3)}
    net.create()  # twice: nothing new
    assert len(toxiproxy.proxies()) == 15
    net.destroy()
    assert toxiproxy.proxies() == {}
    net.destroy()  # twice: fine


def test_selection_by_region_and_node() -> None:
    net_links = plan_links(local_topology(), range(20000, 20015))

    class Plan(ChaosNet):
        def __init__(self) -> None:
            self.links = net_links

    plan = Plan()
    assert [x.name for x in plan.links_between(["shenzhen"], ["shanghai", "tianjin"])] == [
        "n1-n2", "n1-n3", "r1-n2", "r1-n3"]  # fmt: skip
    assert [x.name for x in plan.links_between(["shanghai"], ["shanghai"])] == ["r2-n2"]
    assert [x.name for x in plan.links_touching_nodes([3])] == [
        "n1-n3", "n2-n3", "n3-n1", "n3-n2", "r1-n3", "r2-n3", "r3-n3"]  # fmt: skip


def test_streams_are_directions(echo_net: tuple[ChaosNet, list[EchoServer]]) -> None:
    """upstream = what the dialer sends; downstream = what the node answers."""
    net, echoes = echo_net
    up, down, control = net.link("n1-n2"), net.link("n1-n3"), net.link("n2-n3")
    net.add_toxic(up, name="cut", type="timeout", stream="upstream", attributes={"timeout": 0})
    net.add_toxic(down, name="cut", type="timeout", stream="downstream",
                  attributes={"timeout": 0})  # fmt: skip
    sockets = {link.name: connect(link.listen) for link in (up, down, control)}
    for sock in sockets.values():
        sock.sendall(b"ping")
    assert recv_exactly(sockets["n2-n3"], 4) == b"ping"  # the control link is clean
    wait_for(lambda: len(echoes[2].received) >= 8, 10.0, "node 3 got both pings")
    assert bytes(echoes[2].received) == b"pingping"  # n1-n3's request arrived...
    assert bytes(echoes[1].received) == b""  # ...n1-n2's did not
    sockets["n1-n3"].settimeout(0.3)
    with pytest.raises(TimeoutError):  # ...and n1-n3's answer never came back
        sockets["n1-n3"].recv(1)


def test_add_toxic_replaces_and_remove_is_idempotent(
    echo_net: tuple[ChaosNet, list[EchoServer]],
) -> None:
    net, _ = echo_net
    link = net.link("r1-n1")
    net.add_toxic(link, name="slow", type="latency", stream="upstream", attributes={"latency": 5})
    net.add_toxic(link, name="slow", type="latency", stream="upstream",
                  attributes={"latency": 7.4})  # fmt: skip
    [toxic] = net.toxics(link)
    assert (toxic["name"], toxic["attributes"]["latency"]) == ("slow", 7)
    net.remove_toxic(link, "slow")
    net.remove_toxic(link, "slow")
    assert net.toxics(link) == []
    with pytest.raises(ValueError, match="stream"):
        net.add_toxic(link, name="x", type="latency", stream="sideways", attributes={})
    with pytest.raises(ChaosNetError, match="InvalidToxic"):
        net.add_toxic(link, name="x", type="no-such-toxic", stream="upstream", attributes={})


def test_set_latency_follows_the_matrix(echo_net: tuple[ChaosNet, list[EchoServer]]) -> None:
    net, _ = echo_net
    matrix = {("shenzhen", "shanghai"): 15.0, ("shanghai", "shenzhen"): 16.0,
              ("shenzhen", "tianjin"): 25.0}  # fmt: skip
    net.set_latency(matrix, jitter_ms=2)
    net.set_latency(matrix, jitter_ms=2)  # again: replaced, not stacked
    by_link = {link.name: {t["name"]: t for t in net.toxics(link)} for link in net.links}
    assert by_link["n1-n2"]["geo-upstream"]["attributes"] == {"latency": 15, "jitter": 2}
    assert by_link["n1-n2"]["geo-downstream"]["attributes"] == {"latency": 16, "jitter": 2}
    assert set(by_link["n1-n3"]) == {"geo-upstream"}  # tianjin -> shenzhen: not given
    assert set(by_link["n3-n1"]) == {"geo-downstream"}
    assert by_link["r2-n2"] == {}
    assert by_link["n2-n3"] == {}
    net.clear_latency()
    assert all(net.toxics(link) == [] for link in net.links)


def test_counters_and_disabled_links(echo_net: tuple[ChaosNet, list[EchoServer]]) -> None:
    net, _ = echo_net
    link = net.link("n2-n1")
    sock = connect(link.listen)
    sock.sendall(b"abc")
    assert recv_exactly(sock, 3) == b"abc"
    counters = net.counters()
    assert set(counters) == {x.name for x in net.links}
    assert counters["n2-n1"]["connections_accepted"] == 1
    assert counters["n2-n1"]["upstream_sent_bytes"] == 3
    net.set_enabled([link], False)
    with pytest.raises(ConnectionRefusedError):
        connect(link.listen, timeout_s=2.0)
    net.heal_all()
    connect(link.listen).close()


# -- a real cluster through the net ----------------------------------------------------


@pytest.fixture(scope="module")
def chaos(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ChaosCluster]:
    with chaos_cluster(tmp_path_factory.mktemp("net")) as running:
        yield running


def deposit(chaos: ChaosCluster, user: str, amount_fen: int, region: str) -> int:
    async def main() -> int:
        options = ClientOptions(timeout_s=2.0, deadline_s=CALL_DEADLINE_S)
        async with HongbaoClient.via_routers(chaos.topology, options, region=region) as client:
            return await client.deposit(user, amount_fen)

    return asyncio.run(main())


def fastest_status_ms(listen: str) -> float:
    """Admin.Status through ``listen`` on one warm channel: the fastest of CALLS calls."""
    with grpc.insecure_channel(listen) as channel:
        stub = admin_pb2_grpc.AdminStub(channel)
        stub.Status(admin_pb2.StatusRequest(), timeout=10.0)  # connect first
        times_ms = []
        for _ in range(CALLS):
            started = time.monotonic()
            stub.Status(admin_pb2.StatusRequest(), timeout=10.0)
            times_ms.append((time.monotonic() - started) * 1000)
    return min(times_ms)


def test_cluster_elects_and_serves_through_the_proxies(chaos: ChaosCluster) -> None:
    assert sorted(chaos.leaders()) == list(range(chaos.topology.shard_count))
    for region in REGIONS:
        assert deposit(chaos, f"net-{region}", 100, region) == 100
    counters = chaos.net.counters()
    # Every node dials its peers, and each router its own region's node, through proxies.
    for name in ("n1-n2", "n2-n3", "n3-n1", "r1-n1", "r2-n2", "r3-n3"):
        assert counters[name]["connections_accepted"] >= 1, name
        assert counters[name]["upstream_sent_bytes"] > 0, name


def test_latency_on_a_cross_city_link(chaos: ChaosCluster) -> None:
    link = chaos.net.link("r1-n2")  # shenzhen's router to shanghai's node
    chaos.net.set_latency({("shenzhen", "shanghai"): 20, ("shanghai", "shenzhen"): 20})
    try:
        slow_ms = fastest_status_ms(link.listen)
        assert slow_ms >= 40.0, slow_ms
    finally:
        chaos.net.clear_latency()
    assert chaos.net.toxics(link) == []
    fast_ms = fastest_status_ms(link.listen)
    print(f"\nAdmin.Status via r1-n2: {slow_ms:.1f} ms (20 ms each way), {fast_ms:.1f} ms clean")
    assert fast_ms < slow_ms


def test_heal_all_restores_every_link(chaos: ChaosCluster) -> None:
    net = chaos.net
    cut = net.links_touching_nodes([2])
    for link in cut:
        net.add_toxic(link, name="cut", type="timeout", stream="upstream",
                      attributes={"timeout": 0})  # fmt: skip
    net.set_enabled([net.link("r1-n1")], False)
    net.heal_all()
    assert all(net.toxics(link) == [] for link in net.links)
    # The cut dropped bytes mid-stream: fresh connections, then everything serves again.
    net.reset_connections(cut)
    for region in REGIONS:  # the client retries (same request id) until its deadline
        assert deposit(chaos, f"heal-{region}", 1, region) == 1
