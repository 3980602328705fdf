"""Operating a cluster: processes, status, leadership moves, region drains, audits."""
