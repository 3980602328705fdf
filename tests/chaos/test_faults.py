"""The faults: parameters checked at build, targets and streams exact, effects real.

Three layers: ``build_fault`` alone (no process); the network faults on a ChaosNet whose
"nodes" are echo servers (every byte of each direction visible); and a real 3-node
cluster with routers (configs/local.toml, no fsync) through a ChaosNet, where each fault
must do what it says to Raft (a partitioned node leads nothing within a few election
timeouts of 300-600 ms; after heal it catches up) and every test ends healed.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest
from toxiproxy import Toxiproxy  # type: ignore[import-untyped]

from hongbao.chaos.faults import FAULT_KINDS, Fault, FaultContext, build_fault, heal_everything
from hongbao.chaos.faults_net import isolable_leaders
from hongbao.chaos.net import ChaosNet, ChaosNetError
from hongbao.chaos.suite import FaultSpec, SuiteError, parse_suite
from hongbao.chaos.toxiproxy import ThreadedToxiproxy
from hongbao.client.sdk import ClientOptions, HongbaoClient
from hongbao.meta.state import RegionState
from hongbao.ops.admin_pool import AdminPool
from hongbao.ops.cluster_state import read_state
from hongbao.ops.local import LocalCluster
from hongbao.ops.processes import ClusterOpsError
from hongbao.ops.status import groups_of
from hongbao.proto.gen.hongbao.v1 import admin_pb2
from tests.chaos.cluster_support import (
    ChaosCluster,
    chaos_cluster,
    echo_topology,
    settle,
    wait_for,
)
from tests.chaos.support import EchoServer, connect, recv_exactly

T = TypeVar("T")
SPLIT_S = 10.0  # a cut-off node steps down (CheckQuorum) and the rest elect: a few timeouts
SIGNAL_S = 5.0  # a SIGSTOP or SIGCONT shows in /proc
CATCH_UP_S = 20.0
CALL_DEADLINE_S = 20.0
HOME_AFTER_TEST_S = 20.0  # the fixture waits this long for leaders to return home

MINIMAL: dict[str, dict[str, Any]] = {
    "partition-region": {"region": "shanghai"},
    "one-way-partition": {"from": "shenzhen", "to": "shanghai"},
    "isolate-leaders": {"count": 1},
    "latency": {"regions": ["shenzhen", "tianjin"], "latency_ms": 20},
    "bandwidth": {"regions": ["tianjin"], "rate_kbps": 800},
    "reset-peer": {"nodes": [3]},
    "loss": {"regions": ["shenzhen"], "probability": 0.1},
    "kill": {"leader_of": 0},
    "pause": {"node": 2},
    "drain-region": {"region": "shanghai"},
    "region-outage": {"region": "tianjin"},
}


def spec(kind: str, **params: Any) -> FaultSpec:
    return FaultSpec(kind=kind, at_s=1.0, duration_s=5.0, params=params)


# -- build_fault ----------------------------------------------------------------------


def test_every_kind_builds_and_is_summarised() -> None:
    assert set(MINIMAL) == set(FAULT_KINDS)
    for kind, params in MINIMAL.items():
        assert FAULT_KINDS[kind]
        fault = build_fault(spec(kind, **params))
        assert fault.spec.kind == kind


@pytest.mark.parametrize(("kind", "params", "message"), [
    ("nope", {}, "unknown fault kind 'nope' \\(kinds: partition-region, "),
    ("partition-region", {}, "missing parameter 'region'"),
    ("partition-region", {"region": "x", "mode": "drop"},
     "mode must be one of blackhole, refuse, not 'drop'"),
    ("partition-region", {"region": "x", "regoin": "y"},
     "unknown parameter 'regoin' \\(known: mode, region\\)"),
    ("one-way-partition", {"from": "a", "to": "a"}, "must be different regions"),
    ("one-way-partition", {"from": "a"}, "missing parameter 'to'"),
    ("isolate-leaders", {}, "give exactly one of shards or count"),
    ("isolate-leaders", {"shards": [1], "count": 2}, "exactly one of shards or count"),
    ("isolate-leaders", {"shards": []}, "shards must name 1 to 64, not 0"),
    ("isolate-leaders", {"shards": ["a"]}, "shards must be a list of integers"),
    ("isolate-leaders", {"shards": [1, 1]}, "shards names one twice"),
    ("isolate-leaders", {"shards": [1], "peers_only": 1}, "peers_only must be true or false"),
    ("latency", {"between": ["a"], "latency_ms": 5}, "between must name exactly 2, not 1"),
    ("latency", {"between": ["a", "b"]}, "missing parameter 'latency_ms'"),
    ("latency", {"regions": ["a"], "latency_ms": 5}, "at least 2"),
    ("latency", {"between": ["a", "b"], "latency_ms": 5, "jitter_ms": 6}, "must not exceed"),
    ("latency", {"between": ["a", "b"], "latency_ms": True}, "latency_ms must be a number"),
    ("bandwidth", {"regions": ["a"], "rate_kbps": 1}, "rate_kbps must be in \\[8, "),
    ("bandwidth", {"regions": "a", "rate_kbps": 80}, "regions must be a list of names"),
    ("reset-peer", {"regions": ["a"], "nodes": [1]}, "exactly one of regions or nodes"),
    ("reset-peer", {"nodes": [0]}, "nodes must be a list of integers in \\[1, "),
    ("loss", {"regions": ["a"], "probability": 0}, "probability must be in \\[0.01, 1\\]"),
    ("loss", {"regions": ["a"], "probability": 0.1, "stall_ms": 0}, "stall_ms must be in \\[1"),
    ("kill", {}, "give exactly one of node or leader_of or region"),
    ("kill", {"node": 1, "restart": "yes"}, "restart must be true or false"),
    ("kill", {"node": 1.5}, "node must be an integer"),
    ("pause", {"region": "a"}, "give exactly one of node or leader_of"),
    ("drain-region", {"region": "a", "deadline_s": 0}, "deadline_s must be in"),
    ("region-outage", {"region": 3}, "region must be a non-empty string, not 3"),
])  # fmt: skip
def test_bad_parameters_are_named(kind: str, params: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        build_fault(spec(kind, **params))


def test_the_suite_loader_reports_a_bad_fault() -> None:
    data = {"name": "s", "summary": "s", "description": "d", "expects": "e", "duration_s": 60,
            "faults": [{"at_s": 5, "kind": "latency", "between": ["a", "b"]}]}  # fmt: skip
    with pytest.raises(SuiteError, match="faults\\[0\\] \\(latency\\): missing parameter"):
        parse_suite(data)


# -- the network faults on echo servers -----------------------------------------------


@pytest.fixture
def echo_ctx(
    server: ThreadedToxiproxy, tmp_path: Path
) -> Iterator[tuple[FaultContext, list[EchoServer]]]:
    """A FaultContext whose net leads to echo servers; its cluster is never started."""
    with echo_topology(tmp_path) as (path, echoes):
        cluster = LocalCluster(path, tmp_path / "data")
        net = ChaosNet(cluster.topology, server.host, server.port)
        net.create()
        try:
            yield FaultContext(cluster.topology, cluster, net, AdminPool(cluster.topology),
                               random.Random(1), print), echoes  # fmt: skip
        finally:
            net.destroy()


def run(body: Awaitable[T]) -> T:
    async def main() -> T:
        return await body

    return asyncio.run(main())


def toxics_by_link(net: ChaosNet) -> dict[str, dict[str, tuple[str, str, dict[str, int]]]]:
    """link -> toxic name -> (type, stream, attributes), links without toxics left out."""
    found = {}
    for link in net.links:
        try:
            listed = net.toxics(link)
        except ChaosNetError as error:
            if error.missing:  # a proxy the test deleted
                continue
            raise
        toxics = {t["name"]: (t["type"], t["stream"], t["attributes"]) for t in listed}
        if toxics:
            found[link.name] = toxics
    return found


def streams(net: ChaosNet) -> dict[str, set[str]]:
    return {name: {s for _, s, _ in t.values()} for name, t in toxics_by_link(net).items()}


def test_one_way_partition_is_one_way(echo_ctx: tuple[FaultContext, list[EchoServer]]) -> None:
    ctx, echoes = echo_ctx
    net = ctx.net
    fault = build_fault(spec("one-way-partition", **{"from": "shenzhen", "to": "shanghai"}))
    targets = run(fault.inject(ctx))
    assert targets == {"from": "shenzhen", "to": "shanghai",
                       "links": ["n1-n2", "n2-n1", "r1-n2", "r2-n1"]}  # fmt: skip
    assert streams(net) == {"n1-n2": {"upstream"}, "r1-n2": {"upstream"},
                            "n2-n1": {"downstream"}, "r2-n1": {"downstream"}}  # fmt: skip
    to_shanghai = connect(net.link("n1-n2").listen)  # shenzhen's node dials shanghai's
    from_shanghai = connect(net.link("n2-n1").listen)  # shanghai's node dials shenzhen's
    control = connect(net.link("n3-n2").listen)  # tianjin -> shanghai: untouched
    to_shanghai.sendall(b"lost")
    from_shanghai.sendall(b"arrives")
    control.sendall(b"ctl")
    assert recv_exactly(control, 3) == b"ctl"
    wait_for(lambda: bytes(echoes[0].received) == b"arrives", 10.0, "shanghai reaches shenzhen")
    assert bytes(echoes[1].received) == b"ctl"  # shenzhen's "lost" never reached shanghai
    from_shanghai.settimeout(0.3)  # ...and shenzhen's answer to shanghai never came back
    with pytest.raises(TimeoutError):
        from_shanghai.recv(1)
    run(fault.heal(ctx))
    run(fault.heal(ctx))  # twice: nothing left
    assert toxics_by_link(net) == {}
    to_shanghai.settimeout(5.0)
    assert to_shanghai.recv(1) == b""  # the broken stream was closed at heal
    fresh = connect(net.link("n1-n2").listen)
    fresh.sendall(b"back")
    assert recv_exactly(fresh, 4) == b"back"


def test_partition_region_both_modes(echo_ctx: tuple[FaultContext, list[EchoServer]]) -> None:
    ctx, _ = echo_ctx
    crossing = ["n1-n3", "n2-n3", "n3-n1", "n3-n2", "r1-n3", "r2-n3", "r3-n1", "r3-n2"]
    blackhole = build_fault(spec("partition-region", region="tianjin"))
    targets = run(blackhole.inject(ctx))
    assert targets == {"region": "tianjin", "mode": "blackhole", "nodes": [3], "links": crossing}
    found = toxics_by_link(ctx.net)
    assert sorted(found) == crossing  # r3-n3 (inside tianjin) is untouched
    kinds = {(t, s, str(a)) for toxics in found.values() for t, s, a in toxics.values()}
    assert kinds == {("timeout", "upstream", "{'timeout': 0}"),
                     ("timeout", "downstream", "{'timeout': 0}")}  # fmt: skip
    run(blackhole.heal(ctx))
    assert toxics_by_link(ctx.net) == {}
    refuse = build_fault(spec("partition-region", region="tianjin", mode="refuse"))
    run(refuse.inject(ctx))
    for name in crossing:
        with pytest.raises(ConnectionRefusedError):
            connect(ctx.net.link(name).listen, timeout_s=2.0)
    connect(ctx.net.link("r3-n3").listen).close()
    run(refuse.heal(ctx))
    for name in crossing:
        connect(ctx.net.link(name).listen).close()


def test_toxic_faults_hit_their_links(echo_ctx: tuple[FaultContext, list[EchoServer]]) -> None:
    ctx, _ = echo_ctx
    cases = [
        (spec("latency", between=["shenzhen", "tianjin"], latency_ms=30, jitter_ms=5),
         {"n1-n3", "n3-n1", "r1-n3", "r3-n1"}, ("latency", {"latency": 30, "jitter": 5})),
        (spec("bandwidth", regions=["shanghai"], rate_kbps=800),
         {"n1-n2", "n2-n1", "n2-n3", "n3-n2", "r1-n2", "r2-n1", "r2-n2", "r2-n3", "r3-n2"},
         ("bandwidth", {"rate": 100})),
        (spec("reset-peer", nodes=[3], timeout_ms=10),
         {"n1-n3", "n2-n3", "n3-n1", "n3-n2", "r1-n3", "r2-n3", "r3-n3"},
         ("reset_peer", {"timeout": 10})),
        (spec("loss", regions=["shenzhen"], probability=0.25),
         {"n1-n2", "n1-n3", "n2-n1", "n3-n1", "r1-n1", "r1-n2", "r1-n3", "r2-n1", "r3-n1"},
         ("loss", {"percent": 25, "stall": 200})),
    ]  # fmt: skip
    for fault_spec, links, (kind, attributes) in cases:
        fault = build_fault(fault_spec)
        assert set(run(fault.inject(ctx))["links"]) == links, fault_spec.kind
        found = toxics_by_link(ctx.net)
        assert set(found) == links, fault_spec.kind
        for toxics in found.values():
            assert [(t, a) for t, _, a in toxics.values()] == [(kind, attributes)] * 2
            assert {s for _, s, _ in toxics.values()} == {"upstream", "downstream"}
        run(fault.heal(ctx))
        assert toxics_by_link(ctx.net) == {}, fault_spec.kind


def test_latency_is_directional_by_pair(echo_ctx: tuple[FaultContext, list[EchoServer]]) -> None:
    ctx, _ = echo_ctx
    fault = build_fault(spec("latency", regions=["shenzhen", "shanghai", "tianjin"],
                             latency_ms=12))  # fmt: skip
    run(fault.inject(ctx))
    found = streams(ctx.net)
    assert found["n1-n2"] == {"upstream", "downstream"}
    assert "r2-n2" not in found  # same city: no cross-city delay
    run(fault.heal(ctx))


def test_heal_after_a_failed_inject(
    echo_ctx: tuple[FaultContext, list[EchoServer]], toxiproxy: Toxiproxy
) -> None:
    ctx, _ = echo_ctx
    toxiproxy.get_proxy("r3-n1").destroy()  # the third link of the plan is gone
    fault = build_fault(spec("partition-region", region="tianjin"))
    with pytest.raises(ChaosNetError, match="r3-n1"):
        run(fault.inject(ctx))
    assert sorted(toxics_by_link(ctx.net)) == ["n3-n1", "n3-n2"]  # it got that far
    run(fault.heal(ctx))
    run(fault.heal(ctx))
    assert toxics_by_link(ctx.net) == {}
    connect(ctx.net.link("n3-n1").listen).close()


def test_a_heal_keeps_another_faults_refusal(
    echo_ctx: tuple[FaultContext, list[EchoServer]],
) -> None:
    """Blackhole shanghai and refuse tianjin share four links; healing the blackhole
    (which switches its links off and on) must leave those four refused."""
    ctx, _ = echo_ctx
    refuse = build_fault(spec("partition-region", region="tianjin", mode="refuse"))
    blackhole = build_fault(spec("partition-region", region="shanghai"))
    run(refuse.inject(ctx))
    run(blackhole.inject(ctx))
    run(blackhole.heal(ctx))
    shared = ["n2-n3", "n3-n2", "r2-n3", "r3-n2"]
    for name in shared:
        with pytest.raises(ConnectionRefusedError):
            connect(ctx.net.link(name).listen, timeout_s=2.0)
    connect(ctx.net.link("n1-n2").listen).close()  # shanghai's own links are back
    run(refuse.heal(ctx))
    for name in shared:
        connect(ctx.net.link(name).listen).close()


def test_targets_are_checked_at_inject(echo_ctx: tuple[FaultContext, list[EchoServer]]) -> None:
    ctx, _ = echo_ctx
    with pytest.raises(ValueError, match="unknown region 'mars'"):
        run(build_fault(spec("partition-region", region="mars")).inject(ctx))
    with pytest.raises(ValueError, match="unknown node 9"):
        run(build_fault(spec("reset-peer", nodes=[9])).inject(ctx))
    assert toxics_by_link(ctx.net) == {}


# -- a real cluster -------------------------------------------------------------------


@pytest.fixture(scope="module")
def cluster_once(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ChaosCluster]:
    with chaos_cluster(tmp_path_factory.mktemp("faults")) as running:
        yield running


@pytest.fixture
def chaos(cluster_once: ChaosCluster) -> Iterator[ChaosCluster]:
    """The shared cluster; whatever a test did, healed and led from home after it."""
    yield cluster_once
    in_ctx(cluster_once, heal_everything)
    try:
        # One bounded try: three of 30 s each once cost a whole run 90 s, for nothing the
        # next test needs (each of them waits for what it needs itself).
        settle(cluster_once.topology, attempts=1, home_timeout_s=HOME_AFTER_TEST_S)
    except ClusterOpsError as error:  # a loaded machine: led, if not all from home
        print(f"\nnot every leader home after the test: {error}")
        settle(cluster_once.topology, home=False)


def in_ctx(chaos: ChaosCluster, body: Callable[[FaultContext], Awaitable[T]]) -> T:
    async def main() -> T:
        async with AdminPool.for_topology(chaos.topology) as pool:
            ctx = FaultContext(chaos.topology, chaos.cluster, chaos.net, pool,
                               random.Random(8), print)  # fmt: skip
            return await body(ctx)

    return asyncio.run(main())


def inject(chaos: ChaosCluster, fault: Fault) -> dict[str, Any]:
    return in_ctx(chaos, fault.inject)


def heal(chaos: ChaosCluster, fault: Fault) -> None:
    in_ctx(chaos, fault.heal)


def led_by(chaos: ChaosCluster, node_id: int) -> list[int] | None:
    """The groups ``node_id`` leads now (its own answer); None when it does not answer."""
    for node in chaos.status().nodes:
        if int(node.spec.node_id) == node_id:
            if node.status is None:
                return None
            return [g.shard_id for g in groups_of(node.status) if g.role == admin_pb2.ROLE_LEADER]
    raise KeyError(node_id)


def others_lead_everything(chaos: ChaosCluster, node_id: int) -> bool:
    leaders = chaos.leaders()
    shards = range(chaos.topology.shard_count)
    return all(s in leaders and leaders[s] != node_id for s in shards)


def deposit(chaos: ChaosCluster, user: str, region: str) -> int:
    async def main() -> int:
        options = ClientOptions(timeout_s=2.0, deadline_s=CALL_DEADLINE_S)
        async with HongbaoClient.via_routers(chaos.topology, options, region=region) as client:
            return await client.deposit(user, 1)

    return asyncio.run(main())


def caught_up(chaos: ChaosCluster, node_id: int) -> float:
    """Wait until ``node_id`` has applied, in every group it hosts, what the group's leader
    had committed once every such group had a leader again; the seconds it took."""
    groups = [int(g) for g in chaos.topology.groups_on(node_id)]
    targets: dict[int, int] = {}

    def led() -> bool:  # a loaded machine may hold an election right after a heal
        status = chaos.status()
        leads = {g: status.leader_replica(g) for g in groups}
        targets.update({g: int(r.commit_index) for g, r in leads.items() if r is not None})
        return len(targets) == len(groups)

    took_s = wait_for(led, CATCH_UP_S, f"every group of node {node_id} has a leader")

    def done() -> bool:
        now = chaos.status()
        for group_id, index in targets.items():
            mine = now.replica(node_id, group_id)
            if mine is None or int(mine.applied_index) < index:
                return False
        return True

    return took_s + wait_for(done, CATCH_UP_S, f"node {node_id} catches up")


def process_state(chaos: ChaosCluster, node_id: int) -> str:
    pid = chaos.cluster.processes[node_id].pid
    stat = Path(f"/proc/{pid}/stat").read_text()
    return stat.rsplit(")", 1)[1].split()[0]  # R, S, T (stopped), ...


@pytest.mark.parametrize(("region", "node_id", "mode"),
                         [("shanghai", 2, "blackhole"), ("tianjin", 3, "refuse")])  # fmt: skip
def test_partition_region(chaos: ChaosCluster, region: str, node_id: int, mode: str) -> None:
    fault = build_fault(spec("partition-region", region=region, mode=mode))
    targets = inject(chaos, fault)
    assert targets["nodes"] == [node_id]
    took_s = wait_for(lambda: led_by(chaos, node_id) == [], SPLIT_S, f"node {node_id} steps down")
    wait_for(lambda: others_lead_everything(chaos, node_id), SPLIT_S, "the others lead all")
    for other in ("shenzhen", "shanghai", "tianjin"):
        if other != region:
            assert deposit(chaos, f"part-{mode}-{other}", other) == 1
    print(f"\n{mode}: node {node_id} led nothing after {took_s:.2f} s")
    heal(chaos, fault)
    print(f"{mode}: node {node_id} caught up {caught_up(chaos, node_id):.2f} s after heal")
    assert deposit(chaos, f"part-{mode}-{region}", region) == 1  # its own router serves again


def test_one_way_partition_on_the_cluster(chaos: ChaosCluster) -> None:
    """Measured on the proxies' byte counters while the cluster talks through them."""
    fault = build_fault(spec("one-way-partition", **{"from": "shenzhen", "to": "shanghai"}))
    inject(chaos, fault)
    before = chaos.net.counters()

    def grew(link: str, key: str) -> int:
        return chaos.net.counters()[link][key] - before[link][key]

    wait_for(lambda: grew("n1-n2", "upstream_received_bytes") > 0 and
             grew("n2-n1", "upstream_sent_bytes") > 0, 10.0, "traffic both ways")  # fmt: skip
    assert grew("n1-n2", "upstream_sent_bytes") == 0  # shenzhen -> shanghai: dropped
    assert grew("n2-n1", "downstream_sent_bytes") == 0  # shenzhen's answers to shanghai too
    assert grew("n2-n1", "upstream_sent_bytes") > 0  # shanghai -> shenzhen: delivered
    heal(chaos, fault)
    assert deposit(chaos, "one-way-shanghai", "shanghai") == 1


def test_isolate_leaders(chaos: ChaosCluster) -> None:
    leader = chaos.leaders()[1]
    fault = build_fault(spec("isolate-leaders", shards=[1]))
    targets = inject(chaos, fault)
    assert targets["nodes"] == [leader]
    assert targets["leaders"] == {"1": leader}
    wait_for(lambda: led_by(chaos, leader) == [], SPLIT_S, f"node {leader} steps down")
    wait_for(lambda: others_lead_everything(chaos, leader), SPLIT_S, "the others lead all")
    heal(chaos, fault)
    caught_up(chaos, leader)


def test_isolate_leaders_from_peers_only_leaves_the_routers_links(chaos: ChaosCluster) -> None:
    leader = chaos.leaders()[1]
    fault = build_fault(spec("isolate-leaders", shards=[1], peers_only=True))
    targets = inject(chaos, fault)
    assert targets["nodes"] == [leader]
    assert targets["peers_only"] is True
    touching = chaos.net.links_touching_nodes([leader])
    cut = {link.name for link in touching if chaos.net.toxics(link)}
    assert cut == {link.name for link in touching if link.source_node is not None}
    assert cut
    assert all(not name.startswith("r") for name in cut)  # no router's link is cut
    wait_for(lambda: led_by(chaos, leader) == [], SPLIT_S, f"node {leader} steps down")
    wait_for(lambda: others_lead_everything(chaos, leader), SPLIT_S, "the others lead all")
    heal(chaos, fault)
    assert not any(chaos.net.toxics(link) for link in touching)
    caught_up(chaos, leader)


def test_pause_stops_and_continues(chaos: ChaosCluster) -> None:
    leader = chaos.leaders()[0]
    fault = build_fault(spec("pause", leader_of=0))
    assert inject(chaos, fault) == {"leader_of": 0, "nodes": [leader]}
    # SIGSTOP lands when the kernel next schedules the target: on a busy machine /proc can
    # still say R for a moment after kill() returned.
    wait_for(lambda: process_state(chaos, leader) == "T", SIGNAL_S, "the leader to stop")
    wait_for(lambda: others_lead_everything(chaos, leader), SPLIT_S, "the others lead all")
    assert led_by(chaos, leader) is None  # stopped: it answers nothing
    heal(chaos, fault)
    wait_for(lambda: process_state(chaos, leader) != "T", SIGNAL_S, "the leader to continue")
    caught_up(chaos, leader)


def test_kill_and_restart(chaos: ChaosCluster) -> None:
    fault = build_fault(spec("kill", node=3))
    assert inject(chaos, fault) == {"nodes": [3], "restart": True}
    assert not chaos.cluster.is_running(3)
    assert chaos.cluster.processes[3].returncode == -9
    wait_for(lambda: others_lead_everything(chaos, 3), SPLIT_S, "the others lead all")
    assert deposit(chaos, "kill-tianjin", "tianjin") == 1  # tianjin's router forwards away
    heal(chaos, fault)
    assert chaos.cluster.is_running(3)
    caught_up(chaos, 3)
    heal(chaos, fault)  # twice: nothing to start


def test_drain_region_and_back(chaos: ChaosCluster) -> None:
    fault = build_fault(spec("drain-region", region="shanghai", deadline_s=20))
    targets = inject(chaos, fault)
    assert (targets["done"], targets["state"]) == (True, "drained")
    assert led_by(chaos, 2) == []
    heal(chaos, fault)
    homed = [s for s in range(chaos.topology.shard_count)
             if int(chaos.topology.home_leader_of(s)) == 2]  # fmt: skip
    assert set(homed) <= set(led_by(chaos, 2) or [])


def test_region_outage_and_heal_everything(chaos: ChaosCluster) -> None:
    """Faults left unhealed (a region dark, a toxic, a drain) all undone by the last resort."""
    outage = build_fault(spec("region-outage", region="tianjin"))
    assert inject(chaos, outage) == {"region": "tianjin", "nodes": [3], "routers": [3]}
    assert not chaos.cluster.router_running(3)
    inject(chaos, build_fault(spec("drain-region", region="shanghai", deadline_s=20)))
    inject(chaos, build_fault(spec("latency", between=["shenzhen", "shanghai"], latency_ms=5)))
    in_ctx(chaos, heal_everything)
    assert chaos.cluster.is_running(3)
    assert chaos.cluster.router_running(3)
    assert toxics_by_link(chaos.net) == {}
    state, _ = in_ctx(chaos, lambda ctx: read_state(ctx.admin))
    assert [entry.state for entry in state.regions] == [RegionState.ACTIVE] * 3
    caught_up(chaos, 3)
    assert deposit(chaos, "outage-tianjin", "tianjin") == 1


def test_isolate_leaders_never_cuts_off_a_majority() -> None:
    # Shards 4 and 7 were both led by one node when the suite was written; when the fault
    # came they were led by nodes 3 and 2: isolating both would stop the whole cluster.
    assert isolable_leaders({4: 3, 7: 2}, node_count=3) == ([3], [7])
    assert isolable_leaders({4: 2, 7: 2}, node_count=3) == ([2], [])
    assert isolable_leaders({0: 1, 1: 2, 2: 3, 3: 1}, node_count=5) == ([1, 2], [2])
    assert isolable_leaders({0: 1}, node_count=1) == ([], [0])
