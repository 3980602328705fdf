"""``hongbao bench``: throughput and latency of ledger operations, through routers or nodes."""
