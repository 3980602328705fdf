"""``--dial-map``: a process dials the nodes it names at the given addresses, nothing else
changes (the cluster's shape and id stay the topology's), and a bad file is refused."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from hongbao.cli.node import node
from hongbao.config.dial import load_dial_map, with_dial_map
from hongbao.config.topology import TopologyError, load_topology
from hongbao.node.cluster_guard import cluster_id_of

LOCAL = Path(__file__).resolve().parents[1] / "configs" / "local.toml"


def test_overrides_change_only_where_this_process_dials(tmp_path: Path) -> None:
    topology = load_topology(LOCAL)
    path = tmp_path / "dial.json"
    path.write_text('{"2": "127.0.0.1:23002", "3": "127.0.0.1:23003"}')
    dialing = with_dial_map(topology, path)
    assert dialing.dial_address(2) == "127.0.0.1:23002"
    assert dialing.dial_address(3) == "127.0.0.1:23003"
    assert dialing.dial_address(1) == topology.node(1).address
    assert dialing.node(2).address == topology.node(2).address  # what others are told
    assert cluster_id_of(dialing) == cluster_id_of(topology)
    assert with_dial_map(topology, None) is topology


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[1, 2]", "expected an object"),
        ('{"9": "127.0.0.1:1"}', "'9' is not a node"),
        ('{"x": "127.0.0.1:1"}', "'x' is not a node"),
        ('{"2": 7}', "host:port"),
        ('{"2": "127.0.0.1"}', "is not host:port"),
        ('{"2": "127.0.0.1:70000"}', "is not host:port"),
        ("{", "not JSON"),
    ],
)
def test_a_bad_dial_map_is_refused_by_name(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "dial.json"
    path.write_text(text)
    with pytest.raises(TopologyError, match=message):
        load_dial_map(path, load_topology(LOCAL))


def test_node_run_refuses_a_bad_dial_map_before_starting(tmp_path: Path) -> None:
    path = tmp_path / "dial.json"
    path.write_text('{"9": "127.0.0.1:1"}')
    result = CliRunner().invoke(node, [
        "run", "--config", str(LOCAL), "--node", "1", "--data-dir", str(tmp_path),
        "--insecure", "--dial-map", str(path),
    ])  # fmt: skip
    assert result.exit_code != 0
    assert "'9' is not a node" in result.output
