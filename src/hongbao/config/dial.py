"""``--dial-map``: where one process connects to each node, when not at its own address.

Why: a chaos run puts a proxy on every link (node to node, router to node), and the
dialing process must connect to *its* proxy for that link while every other process
keeps the topology's addresses; the cluster's shape (and so its id) does not change.
The file is JSON, ``{"2": "127.0.0.1:23002", ...}``: node id to host:port.
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

from hongbao.config.topology import Topology, TopologyError
from hongbao.raft.types import NodeId

DIAL_MAP_BYTES_MAX = 64 * 1024
PORT_MAX = 65_535


def load_dial_map(path: str | Path, topology: Topology) -> tuple[tuple[NodeId, str], ...]:
    """The overrides of ``path``, checked against ``topology``; TopologyError names the fault."""
    where = str(path)
    try:
        raw = Path(path).read_bytes()
    except OSError as error:
        raise TopologyError(where, "dial map", f"{error.strerror or error}") from error
    if len(raw) > DIAL_MAP_BYTES_MAX:
        raise TopologyError(where, "dial map", f"over {DIAL_MAP_BYTES_MAX} bytes")
    try:
        data = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise TopologyError(where, "dial map", f"not JSON: {error}") from error
    if not isinstance(data, dict):
        raise TopologyError(where, "dial map", "expected an object of node id to host:port")
    known = {int(n.node_id) for n in topology.nodes}
    pairs: list[tuple[NodeId, str]] = []
    for key, value in data.items():
        if not key.isdigit() or int(key) not in known:
            raise TopologyError(where, "dial map", f"{key!r} is not a node of the topology")
        pairs.append((NodeId(int(key)), _address(where, key, value)))
    return tuple(sorted(pairs))


def _address(where: str, key: str, value: object) -> str:
    if not isinstance(value, str):
        raise TopologyError(where, "dial map", f"node {key}: expected a \"host:port\" string")
    host, _, port = value.rpartition(":")
    if not host or not port.isdigit() or not 0 < int(port) <= PORT_MAX:
        raise TopologyError(where, "dial map", f"node {key}: {value!r} is not host:port")
    return value


def with_dial_map(topology: Topology, path: str | Path | None) -> Topology:
    """``topology`` dialing through the overrides of ``path`` (unchanged for None)."""
    if path is None:
        return topology
    return replace(topology, dial_overrides=load_dial_map(path, topology))
