"""The meta group: the small system Raft group holding what every process must agree on
(the cluster id, each region's operator state, a version), and how processes follow it."""
