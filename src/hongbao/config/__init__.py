"""Configuration: the topology file (regions, nodes, routers, shards, timing, limits)."""
