"""hongbao: a multi-region, active-active datastore for red envelopes and wallets.

Layering, from the bottom up (a layer imports only from the layers below it):

1. ``hongbao.raft``   the pure, deterministic consensus core (no I/O, no clock);
2. ``hongbao.sim``    the deterministic simulator that drives real cores under faults;
3. ``hongbao.ledger`` the wallet and envelope state machines (exact to the fen);
4. ``hongbao.node``   the node runtime: LMDB storage, gRPC transport, many shards;
5. ``hongbao.router`` and ``hongbao.cli``: the stateless router and the operators' CLI.
"""

__version__ = "0.1.0"
