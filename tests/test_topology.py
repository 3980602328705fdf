"""Topology files: every rejection names its place, shipped configs load, placement balances."""

from __future__ import annotations

import copy
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hongbao.config.topology import (
    NodeSpec,
    Region,
    Topology,
    TopologyError,
    compute_placement,
    load_topology,
    parse_topology,
)
from hongbao.ledger.limits import Limits
from hongbao.raft.types import NodeId

CONFIGS = Path(__file__).resolve().parent.parent / "configs"


def base() -> dict[str, object]:
    """A valid document: three regions, one node each, six shards, rf 3."""
    return {
        "shard_count": 6,
        "replication_factor": 3,
        "regions": [{"name": "shenzhen"}, {"name": "shanghai"}, {"name": "tianjin"}],
        "nodes": [
            {"id": 1, "region": "shenzhen", "host": "127.0.0.1", "port": 7101},
            {"id": 2, "region": "shanghai", "host": "127.0.0.1", "port": 7102},
            {"id": 3, "region": "tianjin", "host": "127.0.0.1", "port": 7103},
        ],
    }


def rejected(doc: dict[str, object], where: str, *fragments: str) -> TopologyError:
    with pytest.raises(TopologyError) as caught:
        parse_topology(doc, source="test.toml")
    error = caught.value
    assert error.where == where, str(error)
    assert str(error).startswith(f"test.toml: {where}: "), str(error)
    for fragment in fragments:
        assert fragment in error.problem, str(error)
    return error


def nodes(doc: dict[str, object]) -> list[dict[str, object]]:
    value = doc["nodes"]
    assert isinstance(value, list)
    return value


def add_region(doc: dict[str, object], name: str) -> None:
    regions = doc["regions"]
    assert isinstance(regions, list)
    regions.append({"name": name})


# -- shipped configs -------------------------------------------------------------------------


def test_local_config_loads() -> None:
    topology = load_topology(CONFIGS / "local.toml")
    assert [r.name for r in topology.regions] == ["shenzhen", "shanghai", "tianjin"]
    assert topology.shard_count == 12
    assert topology.replication_factor == 3
    assert {n.address for n in topology.nodes} == {
        "127.0.0.1:7101",
        "127.0.0.1:7102",
        "127.0.0.1:7103",
    }
    homes = Counter(p.home_region for p in topology.placements)
    assert homes == {"shenzhen": 4, "shanghai": 4, "tianjin": 4}
    for node in topology.nodes:
        assert len(topology.shards_on(node.node_id)) == 12
    assert topology.limits == Limits()
    assert topology.timing.tick_ms == 10


def test_five_nodes_config_loads_with_its_override() -> None:
    topology = load_topology(CONFIGS / "five-nodes.toml")
    assert len(topology.nodes) == 5
    assert topology.replicas_of(0) == (2, 3, 5)
    assert topology.home_leader_of(0) == 2
    assert topology.home_leader_of(3) == 1
    leads = Counter(topology.home_leader_of(s) for s in range(topology.shard_count))
    assert leads == {1: 4, 2: 4, 3: 4, 4: 4, 5: 8}
    assert_replicas_in_distinct_regions(topology)


def test_helpers() -> None:
    topology = parse_topology(base())
    assert topology.node(2) == NodeSpec(NodeId(2), "shanghai", "127.0.0.1", 7102)
    assert topology.replicas_of(1) == (2, 3, 1)
    assert topology.home_leader_of(1) == 2
    assert topology.shards_on(3) == tuple(range(6))
    assert topology.nodes_in("tianjin") == (topology.node(3),)
    assert topology.placement(5).home_region == "tianjin"
    with pytest.raises(KeyError, match="no node 9"):
        topology.node(9)
    with pytest.raises(KeyError, match="no node 9"):
        topology.shards_on(9)
    with pytest.raises(KeyError, match="no shard 6"):
        topology.replicas_of(6)
    assert hash(topology) == hash(parse_topology(base()))


def test_limits_and_timing_are_read() -> None:
    doc = base()
    doc["limits"] = {"envelope_shares_max": 200}
    doc["timing"] = {"tick_ms": 50, "election_timeout_ticks": 20}
    topology = parse_topology(doc)
    assert topology.limits.envelope_shares_max == 200
    assert topology.limits.envelope_ttl_ms == Limits().envelope_ttl_ms
    assert topology.timing.tick_ms == 50
    assert topology.timing.heartbeat_interval_ticks == 1


# -- rejections --------------------------------------------------------------------------


def test_two_replicas_of_a_shard_in_one_region() -> None:
    doc = base()
    nodes(doc).append({"id": 4, "region": "shenzhen", "host": "127.0.0.1", "port": 7104})
    doc["shards"] = [{"id": 2, "replicas": [1, 4, 2], "home_region": "shenzhen"}]
    rejected(doc, "shards[0].replicas", "two replicas in region 'shenzhen'", "nodes 1 and 4")


def test_duplicate_node_id() -> None:
    doc = base()
    nodes(doc)[2]["id"] = 1
    rejected(doc, "nodes[2].id", "duplicate node id 1", "nodes[0]")


def test_duplicate_address() -> None:
    doc = base()
    nodes(doc)[1]["port"] = 7101
    rejected(doc, "nodes[1].port", "duplicate address 127.0.0.1:7101")


def test_unknown_region_of_a_node() -> None:
    doc = base()
    nodes(doc)[0]["region"] = "beijing"
    rejected(doc, "nodes[0].region", "unknown region 'beijing'")


def test_replication_factor_above_region_count() -> None:
    doc = base()
    doc["replication_factor"] = 4
    rejected(doc, "replication_factor", "above the number of regions (3)")


@pytest.mark.parametrize(
    ("path", "value", "where"),
    [
        (("nodes", 0, "id"), 0, "nodes[0].id"),
        (("nodes", 1, "id"), -3, "nodes[1].id"),
        (("nodes", 0, "port"), 0, "nodes[0].port"),
        (("nodes", 0, "port"), 70_000, "nodes[0].port"),
        (("shard_count",), 0, "shard_count"),
        (("shard_count",), -1, "shard_count"),
        (("replication_factor",), 0, "replication_factor"),
        (("timing",), {"tick_ms": 0}, "timing.tick_ms"),
        (("limits",), {"envelope_shares_max": 0}, "limits.envelope_shares_max"),
    ],
)
def test_non_positive_numbers(path: tuple[object, ...], value: object, where: str) -> None:
    doc = base()
    set_path(doc, path, value)
    rejected(doc, where, "must be")


@pytest.mark.parametrize(
    ("path", "where", "key"),
    [
        (("shard_count",), "top level", "shard_count"),
        (("replication_factor",), "top level", "replication_factor"),
        (("regions",), "top level", "[[regions]]"),
        (("nodes",), "top level", "[[nodes]]"),
        (("nodes", 1, "port"), "nodes[1]", "port"),
        (("nodes", 0, "host"), "nodes[0]", "host"),
        (("regions", 2, "name"), "regions[2]", "name"),
    ],
)
def test_missing_keys(path: tuple[object, ...], where: str, key: str) -> None:
    doc = base()
    delete_path(doc, path)
    rejected(doc, where, f"missing key {key!r}")


def test_missing_keys_of_a_shard_override() -> None:
    doc = base()
    doc["shards"] = [{"id": 0, "home_region": "shenzhen"}]
    rejected(doc, "shards[0]", "missing key 'replicas'")
    doc["shards"] = [{"id": 0, "replicas": [1, 2, 3]}]
    rejected(doc, "shards[0]", "missing key 'home_region'")


@pytest.mark.parametrize(
    ("path", "value", "where", "fragment"),
    [
        (("nodes", 0, "port"), "7101", "nodes[0].port", "not a string"),
        (("nodes", 0, "id"), True, "nodes[0].id", "not a boolean"),
        (("shard_count",), 12.0, "shard_count", "not a float"),
        (("nodes", 0, "host"), 127, "nodes[0].host", "must be a string"),
        (("nodes", 0, "host"), " ", "nodes[0].host", "must not be empty"),
        (("regions",), {"name": "x"}, "regions", "array of tables"),
        (("nodes",), ["a"], "nodes[0]", "must be a table"),
        (("timing",), 5, "timing", "must be a table"),
    ],
)
def test_wrong_types(path: tuple[object, ...], value: object, where: str, fragment: str) -> None:
    doc = base()
    set_path(doc, path, value)
    rejected(doc, where, fragment)


def test_home_region_not_among_replica_regions() -> None:
    doc = base()
    add_region(doc, "chengdu")
    nodes(doc).append({"id": 4, "region": "chengdu", "host": "127.0.0.1", "port": 7104})
    doc["shards"] = [{"id": 1, "replicas": [1, 2, 3], "home_region": "chengdu"}]
    rejected(doc, "shards[0].home_region", "'chengdu' is not among the regions")
    doc["shards"] = [{"id": 1, "replicas": [1, 2, 3], "home_region": "atlantis"}]
    rejected(doc, "shards[0].home_region", "'atlantis' is not among the regions")


@pytest.mark.parametrize(
    ("shard", "where", "fragment"),
    [
        ({"id": 6, "replicas": [1, 2, 3], "home_region": "shenzhen"}, "shards[0].id", "0..5"),
        ({"id": 0, "replicas": [1, 2], "home_region": "shenzhen"}, "shards[0].replicas", "2 rep"),
        (
            {"id": 0, "replicas": [1, 2, 9], "home_region": "shenzhen"},
            "shards[0].replicas",
            "unknown node id 9",
        ),
        (
            {"id": 0, "replicas": "1,2,3", "home_region": "shenzhen"},
            "shards[0].replicas",
            "list of node ids",
        ),
        ({"id": 0, "replicas": [1, 2, 3], "home": "x"}, "shards[0]", "unknown key(s) home"),
    ],
)
def test_bad_shard_overrides(shard: dict[str, object], where: str, fragment: str) -> None:
    doc = base()
    doc["shards"] = [shard]
    rejected(doc, where, fragment)


def test_shard_listed_twice() -> None:
    doc = base()
    shard = {"id": 0, "replicas": [1, 2, 3], "home_region": "shenzhen"}
    doc["shards"] = [shard, dict(shard)]
    rejected(doc, "shards[1].id", "listed twice", "shards[0]")


def test_other_inconsistencies() -> None:
    doc = base()
    doc["replicaton_factor"] = 3
    rejected(doc, "top level", "unknown key(s) replicaton_factor")
    doc = base()
    add_region(doc, "shanghai")
    rejected(doc, "regions[3].name", "duplicate region 'shanghai'")
    doc = base()
    add_region(doc, "chengdu")
    rejected(doc, "nodes", "region 'chengdu' has no node")
    doc = base()
    doc["timing"] = {"election_timeout_ticks": 2, "heartbeat_interval_ticks": 2}
    rejected(doc, "timing.election_timeout_ticks", "at least twice heartbeat_interval_ticks")
    # Passes "exceeds the heartbeat" but not CheckQuorum's round trip: refused here, not
    # later by every core at start-up.
    doc["timing"] = {"election_timeout_ticks": 9, "heartbeat_interval_ticks": 5}
    rejected(doc, "timing.election_timeout_ticks", "at least twice heartbeat_interval_ticks (5)")
    doc = base()
    doc["limits"] = {"envelope_shares": 10}
    rejected(doc, "limits", "unknown key(s) envelope_shares")
    doc["limits"] = {"amount_max_fen": 100, "daily_outgoing_max_fen": 99}
    rejected(doc, "limits", "daily_outgoing_max_fen is below amount_max_fen")


def test_file_level_errors(tmp_path: Path) -> None:
    broken = tmp_path / "broken.toml"
    broken.write_text("shard_count = [\n")
    with pytest.raises(TopologyError, match=r"broken\.toml: toml: not valid TOML"):
        load_topology(broken)
    with pytest.raises(TopologyError, match=r"absent\.toml: file: cannot read"):
        load_topology(tmp_path / "absent.toml")
    good = tmp_path / "good.toml"
    good.write_text((CONFIGS / "local.toml").read_text().replace("port = 7103", "port = 7101"))
    with pytest.raises(TopologyError, match=r"good\.toml: nodes\[2\]\.port: duplicate address"):
        load_topology(good)


# -- placement ---------------------------------------------------------------------------


def assert_replicas_in_distinct_regions(topology: Topology) -> None:
    for placement in topology.placements:
        regions = [topology.node(n).region for n in placement.replicas]
        assert len(set(regions)) == len(regions) == topology.replication_factor
        assert placement.home_region in regions


@st.composite
def shapes(draw: st.DrawFn) -> tuple[list[Region], list[NodeSpec], int, int]:
    region_count = draw(st.integers(1, 6))
    regions = [Region(f"city{r}") for r in range(region_count)]
    node_list: list[NodeSpec] = []
    for region in regions:
        for _ in range(draw(st.integers(1, 4))):
            node_id = len(node_list) + 1
            node_list.append(NodeSpec(NodeId(node_id), region.name, "10.0.0.1", 7000 + node_id))
    shard_count = draw(st.integers(1, 100))
    replication_factor = draw(st.integers(1, region_count))
    return regions, node_list, shard_count, replication_factor


@settings(max_examples=200, deadline=None)
@given(shapes())
def test_computed_placement_is_balanced(
    shape: tuple[list[Region], list[NodeSpec], int, int],
) -> None:
    regions, node_list, shard_count, replication_factor = shape
    placements = compute_placement(regions, node_list, shard_count, replication_factor)
    assert placements == compute_placement(regions, node_list, shard_count, replication_factor)
    doc: dict[str, object] = {
        "shard_count": shard_count,
        "replication_factor": replication_factor,
        "regions": [{"name": r.name} for r in regions],
        "nodes": [
            {"id": n.node_id, "region": n.region, "host": n.host, "port": n.port} for n in node_list
        ],
    }
    topology = parse_topology(doc)
    assert topology.placements == placements
    assert [p.shard_id for p in placements] == list(range(shard_count))
    assert_replicas_in_distinct_regions(topology)
    # Each region is the home of shard_count / R shards, +-1.
    homes = Counter(p.home_region for p in placements)
    low, high = shard_count // len(regions), -(-shard_count // len(regions))
    for region in regions:
        assert low <= homes[region.name] <= high
    # Inside a region, home leaderships and replicas are spread within one of each other.
    leads = Counter(topology.home_leader_of(s) for s in range(shard_count))
    replicas = Counter(n for p in placements for n in p.replicas)
    for region in regions:
        members = [n.node_id for n in node_list if n.region == region.name]
        for counter in (leads, replicas):
            counts = [counter[n] for n in members]
            assert max(counts) - min(counts) <= 1, (region, counts)


# -- helpers -----------------------------------------------------------------------------


def set_path(doc: dict[str, object], path: tuple[object, ...], value: object) -> None:
    target: object = doc
    for step in path[:-1]:
        target = target[step]  # type: ignore[index]
    target[path[-1]] = copy.deepcopy(value)  # type: ignore[index]


def delete_path(doc: dict[str, object], path: tuple[object, ...]) -> None:
    target: object = doc
    for step in path[:-1]:
        target = target[step]  # type: ignore[index]
    del target[path[-1]]  # type: ignore[attr-defined]


# -- [runtime]: the node runtime's limits --------------------------------------------------


def test_runtime_limits_default_and_are_read() -> None:
    from hongbao.node.runtime_limits import RuntimeLimits

    assert parse_topology(base()).runtime == RuntimeLimits()
    doc = base()
    doc["runtime"] = {"snapshot_interval_entries": 50, "trailing_entries": 0}
    runtime = parse_topology(doc).runtime
    assert (runtime.snapshot_interval_entries, runtime.trailing_entries) == (50, 0)
    assert runtime.inbound_messages_max == RuntimeLimits().inbound_messages_max


@pytest.mark.parametrize(
    ("runtime", "where", "fragment"),
    [
        ({"snapshot_every": 5}, "runtime", "unknown key(s) snapshot_every (allowed: "),
        ({"trailing_entries": "1"}, "runtime.trailing_entries", "an integer, not a string"),
        ({"trailing_entries": True}, "runtime.trailing_entries", "not a boolean"),
        ({"snapshot_interval_entries": 2.5}, "runtime.snapshot_interval_entries", "not a float"),
        ({"snapshot_interval_entries": 0}, "runtime.snapshot_interval_entries", "in 1..100000000"),
        ({"trailing_entries": -1}, "runtime.trailing_entries", "-1 must be in 0..10000000"),
        ({"ticks_per_cycle_max": 1001}, "runtime.ticks_per_cycle_max", "must be in 1..1000"),
        (
            {"inbound_messages_max": 10, "inbound_per_cycle_max": 11},
            "runtime",
            "inbound_per_cycle_max (11) must not exceed inbound_messages_max (10)",
        ),
        ([1, 2], "runtime", "must be a table ([runtime]), not an array"),
    ],
)
def test_runtime_table_is_checked(runtime: object, where: str, fragment: str) -> None:
    doc = base()
    doc["runtime"] = runtime
    rejected(doc, where, fragment)


def test_node_run_flags_override_the_runtime_table(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``node run`` hands NodeServer the file's [runtime] with its flags laid over it."""
    from click.testing import CliRunner

    import hongbao.node.server as server_module
    from hongbao.cli.node import node as cli
    from hongbao.ops.local import write_topology

    config = write_topology(
        tmp_path / "t.toml",
        template=CONFIGS / "local.toml",
        overrides={"runtime": {"snapshot_interval_entries": 40, "pending_reads_per_shard_max": 9}},
    )
    seen: list[object] = []

    class Recorder:
        def __init__(self, **kwargs: object) -> None:
            seen.append(kwargs["runtime_limits"])

        async def serve_until_signal(self, on_ready: object) -> None:
            return None

    monkeypatch.setattr(server_module, "NodeServer", Recorder)
    base_args = ["run", "--config", str(config), "--node", "1", "--insecure"]
    args = [*base_args, "--data-dir", str(tmp_path / "d"), "--trailing-entries", "7"]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    (limits,) = seen
    assert (
        limits.snapshot_interval_entries,  # type: ignore[attr-defined]
        limits.trailing_entries,  # type: ignore[attr-defined]
        limits.pending_reads_per_shard_max,  # type: ignore[attr-defined]
    ) == (40, 7, 9)
    bad = CliRunner().invoke(cli, [*base_args, "--data-dir", str(tmp_path / "d"),
                                   "--trailing-entries", "99999999"])  # fmt: skip
    assert bad.exit_code != 0
    assert "trailing_entries = 99999999 must be in 0..10000000" in bad.output


# -- metrics ports and city coordinates (issue 10) -------------------------------------


def test_metrics_ports_and_coordinates_are_read() -> None:
    doc = base()
    for position, node in enumerate(nodes(doc)):
        node["metrics_port"] = 9101 + position
    doc["regions"] = [
        {"name": "shenzhen", "latitude": 22.54, "longitude": 114.06},
        {"name": "shanghai"},
        {"name": "tianjin", "latitude": 39, "longitude": 117},
    ]
    topology = parse_topology(doc)
    assert [n.metrics_address for n in topology.nodes] == [
        "127.0.0.1:9101", "127.0.0.1:9102", "127.0.0.1:9103",
    ]  # fmt: skip
    assert (topology.regions[0].latitude, topology.regions[0].longitude) == (22.54, 114.06)
    assert topology.regions[1].latitude is None
    assert topology.regions[2].longitude == 117.0
    assert parse_topology(base()).nodes[0].metrics_address is None


@pytest.mark.parametrize(
    ("change", "where", "fragment"),
    [
        (lambda d: nodes(d)[0].update(metrics_port=7101), "nodes[0].metrics_port", "differ"),
        (lambda d: nodes(d)[1].update(metrics_port=7101), "nodes[1].metrics_port", "also used"),
        (lambda d: nodes(d)[0].update(metrics_port=0), "nodes[0].metrics_port", ""),
        (lambda d: nodes(d)[0].update(metrics_port="9101"), "nodes[0].metrics_port", ""),
        (lambda d: d["regions"][0].update(latitude=91, longitude=0), "regions[0].latitude",
         "within"),
        (lambda d: d["regions"][0].update(latitude=10), "regions[0]", "both"),
        (lambda d: d["regions"][0].update(latitude=True, longitude=1), "regions[0].latitude",
         "number"),
    ],
)
def test_bad_metrics_ports_and_coordinates_are_refused(
    change: Callable[[dict[str, Any]], None], where: str, fragment: str
) -> None:
    doc = base()
    change(doc)
    rejected(doc, where, fragment)


def test_local_config_names_metrics_ports_and_cities() -> None:
    topology = load_topology(CONFIGS / "local.toml")
    assert all(n.metrics_port for n in topology.nodes)
    assert all(r.metrics_port for r in topology.routers)
    assert all(r.latitude is not None for r in topology.regions)
