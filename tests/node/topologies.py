"""Small topologies for in-process NodeRuntime tests (nothing listens on these ports)."""

from __future__ import annotations

ONE_NODE = {
    "shard_count": 1,
    "replication_factor": 1,
    "regions": [{"name": "shenzhen"}],
    "nodes": [{"id": 1, "region": "shenzhen", "host": "127.0.0.1", "port": 7999}],
}
THREE_NODES = {
    "shard_count": 1,
    "replication_factor": 3,
    "regions": [{"name": "shenzhen"}, {"name": "beijing"}, {"name": "shanghai"}],
    "nodes": [
        {"id": 1, "region": "shenzhen", "host": "127.0.0.1", "port": 7991},
        {"id": 2, "region": "beijing", "host": "127.0.0.1", "port": 7992},
        {"id": 3, "region": "shanghai", "host": "127.0.0.1", "port": 7993},
    ],
}
