"""Three machines: each region's node and router in its own network namespace.

The machines are namespaces joined by a bridge (:mod:`tests.multihost.netns`), each
with an address that exists only inside the namespaces; the topology names three
different hosts and says ``tls = false`` (every process gets ``--insecure``). The code
is the code that runs on 127.0.0.1 elsewhere, unchanged. A client on a fourth machine
checks that the cluster forms, serves (deposits, transfers, a grab through a router)
and drains a region with ``hongbao region drain``.

Root is needed. Where there is none the tests are skipped with the reason (``-ra``
prints it); under CI (``$CI`` set) they fail instead, so they cannot vanish unseen.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.cluster.support import wait_for
from tests.multihost.netns import Network, leftovers, sweep, unavailable_reason
from tests.multihost.support import HONGBAO, REGIONS, Machines, write_topology

pytestmark = [pytest.mark.cluster, pytest.mark.slow]

HOSTS = ["machine1", "machine2", "machine3"]
CLIENT = "client"
DRAINED = REGIONS[1]  # shanghai: node 2


@dataclass(slots=True)
class Cluster:
    network: Network
    machines: Machines
    topology: Path


def require_namespaces() -> None:
    """Skip with the reason where namespaces cannot be made; under CI, fail instead."""
    reason = unavailable_reason()
    if reason is not None:
        if os.environ.get("CI"):
            pytest.fail(f"multi-host tests cannot run: {reason}")
        pytest.skip(f"multi-host tests need namespaces: {reason}")


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    require_namespaces()
    sweep()
    work = tmp_path_factory.mktemp("multihost")
    try:
        with Network(hosts=[*HOSTS, CLIENT]) as network, Machines(network, work) as machines:
            topology = write_topology(work / "topology.toml", network, HOSTS)
            for index, host in enumerate(HOSTS, 1):
                machines.spawn(f"node-{index}", host, [
                    "node", "run", "--config", str(topology), "--node", str(index),
                    "--data-dir", str(work / "data"), "--no-fsync", "--insecure",
                ])  # fmt: skip
                machines.spawn(f"router-{index}", host, [
                    "router", "run", "--config", str(topology), "--region", REGIONS[index - 1],
                    "--router-id", str(index), "--insecure",
                ])  # fmt: skip
            machines.wait_ready()
            yield Cluster(network, machines, topology)
    finally:
        left = leftovers()
        if left:
            sweep()
            raise AssertionError(f"namespaces or links left behind: {left}")


def test_the_cluster_forms_across_three_hosts(cluster: Cluster) -> None:
    result = cluster.machines.probe(CLIENT, "leaders", str(cluster.topology))
    leaders = result["leaders"]
    assert isinstance(leaders, dict)
    assert sorted(map(int, leaders)) == list(range(6))
    addresses = result["addresses"]
    assert isinstance(addresses, dict)
    hosts = {address.rsplit(":", 1)[0] for address in addresses.values()}
    assert hosts == {cluster.network.address(h) for h in HOSTS}
    assert not any(h.startswith("127.") for h in hosts)


def test_it_serves_a_client_on_another_host_through_a_router(cluster: Cluster) -> None:
    result = cluster.machines.probe(CLIENT, "serve", str(cluster.topology), REGIONS[0])
    assert result["router"] == f"{cluster.network.address(HOSTS[0])}:7201"
    assert result["grabs_taken"] == 4
    assert result["grabs_empty"] == 2
    assert result["total_fen"] == 8 * 10_000


def _hongbao(cluster: Cluster, *args: str) -> tuple[int, str, str]:
    done = cluster.machines.run(
        CLIENT, [*HONGBAO, *args, "--config", str(cluster.topology), "--insecure"]
    )
    return done.returncode, done.stdout, done.stderr


def test_a_region_drains_under_load_and_comes_back(cluster: Cluster, tmp_path: Path) -> None:
    """``hongbao region drain`` from the client's machine while that machine's clients of
    shanghai send requests through the routers: none fails; then undrain and balance."""
    started, stop = tmp_path / "started", tmp_path / "stop"
    load = cluster.machines.start_probe(
        CLIENT, "traffic", str(cluster.topology), DRAINED, str(started), str(stop)
    )
    try:
        wait_for(lambda: started.exists() or load.poll() is not None, 60.0, "the load")
        code, out, err = _hongbao(cluster, "region", "drain", DRAINED, "--deadline-s", "30",
                                  "--json")  # fmt: skip
    finally:
        stop.write_text("stop\n")
        served = cluster.machines.finish(load)
    assert code == 0, f"{out}\n{err}\n{cluster.machines.tails()}"
    assert json.loads(out)["state"] == "drained"
    assert served["failed"] == []
    assert isinstance(served["ok"], int)
    assert served["ok"] > 0
    assert served["router"] == f"{cluster.network.address(HOSTS[1])}:7201"  # shanghai's own
    leaders = cluster.machines.probe(CLIENT, "leaders", str(cluster.topology))["leaders"]
    assert isinstance(leaders, dict)
    assert 2 not in set(leaders.values()), leaders  # node 2 is shanghai's
    code, out, err = _hongbao(cluster, "region", "undrain", DRAINED)
    assert code == 0, f"{out}\n{err}"
    code, out, err = _hongbao(cluster, "cluster", "balance")
    assert code == 0, f"{out}\n{err}"
    leaders = cluster.machines.probe(CLIENT, "leaders", str(cluster.topology))["leaders"]
    assert isinstance(leaders, dict)
    assert 2 in set(leaders.values()), leaders  # shards homed in shanghai went back


def test_status_from_one_router_address_sees_every_host(cluster: Cluster) -> None:
    router = f"{cluster.network.address(HOSTS[2])}:7201"
    done = cluster.machines.run(CLIENT, [*HONGBAO, "cluster", "status", "--address", router,
                                         "--insecure", "--json"])  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    status = json.loads(done.stdout)
    text = json.dumps(status)
    for host in HOSTS:
        assert cluster.network.address(host) in text
    assert "127.0.0.1" not in text

