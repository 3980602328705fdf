"""Bounds on the work one client may ask of a node before any of it is done.

Rules of this module: a request is admitted or refused up front, from its shape alone,
so that refusing it costs nothing. Two bounds:

- :func:`batch_response_lines`: what one ``Batch.Execute`` could make the node build (a
  history line, an envelope's grab line or one result each). 3,000 ``History(limit=500)``
  in a 48 KB request once drove a node to 532 MiB before the reply was refused as too
  large: the sum of the requested limits is known before anything is read.
- :class:`InflightBound`: operations in flight per client connection (``context.peer()``,
  address and port). Eight concurrent Batches of 10,000 deposits from one client used to
  queue 80,000 commands at once, stall the loop and cause elections; now one connection
  holds at most :data:`INFLIGHT_OPERATIONS_PER_PEER_MAX` and the whole node at most
  :data:`INFLIGHT_OPERATIONS_NODE_MAX`, and the rest is refused with OVERLOADED
  (RESOURCE_EXHAUSTED) at once, which clients back off from. Why a node-wide bound too: a
  client opens as many connections as it likes. Measured on ``configs/local.toml`` (2
  cores, fsync, 300 ms election timeout): Batches of deposits totalling 20,000 in flight
  on one node, from two connections, moved its leaders in 3 runs of 3; 10,000 in 4 of 4
  runs moved none.
"""

from __future__ import annotations

from typing import Final

from hongbao.ledger.limits import Limits
from hongbao.node.errors import ErrorReason, HongbaoError, make_error
from hongbao.proto.gen.hongbao.v1 import ledger_pb2

BATCH_RESPONSE_LINES_MAX: Final = 20_000
"""Lines one Batch answer may hold in the worst case (a few MiB): 40 full histories."""
INFLIGHT_OPERATIONS_PER_PEER_MAX: Final = 10_000
"""Operations one client connection may have queued or in flight at once: one full Batch."""
INFLIGHT_OPERATIONS_NODE_MAX: Final = 10_000
"""Operations all clients together may have queued or in flight on one node."""
PEERS_TRACKED_MAX: Final = 100_000
"""Connections counted at once; beyond it new ones are refused (the server's own
``max_concurrent_streams`` and file descriptors bound it well before)."""


def batch_response_lines(
    request: ledger_pb2.ExecuteRequest, limits: Limits, history_limit_default: int
) -> int:
    """The most lines the answer to ``request`` could hold."""
    total = 0
    for operation in request.operations:
        name = operation.WhichOneof("op")
        if name == "history":
            wanted = operation.history.limit or history_limit_default
            total += min(wanted, limits.history_limit_max)
        elif name == "show":
            total += limits.envelope_shares_max
        else:
            total += 1
    return total


def batch_too_large(lines: int) -> HongbaoError:
    return make_error(
        ErrorReason.OVERLOADED,
        f"this Batch could answer {lines} lines (history limits and envelope shares);"
        f" at most {BATCH_RESPONSE_LINES_MAX} per call: split it or ask for smaller limits",
    )


class InflightBound:
    """Counts operations in flight per client connection; refuses beyond the bound."""

    def __init__(
        self,
        *,
        per_peer_max: int = INFLIGHT_OPERATIONS_PER_PEER_MAX,
        node_max: int = INFLIGHT_OPERATIONS_NODE_MAX,
        peers_max: int = PEERS_TRACKED_MAX,
    ) -> None:
        self.per_peer_max = per_peer_max
        self.node_max = node_max
        self.peers_max = peers_max
        self._inflight: dict[str, int] = {}
        self._total = 0
        self.refused = 0

    def acquire(self, peer: str, count: int) -> None:
        """Admit ``count`` operations of ``peer`` or raise OVERLOADED; pair with release."""
        held = self._inflight.get(peer, 0)
        if held + count > self.per_peer_max or (not held and len(self._inflight) >= self.peers_max):
            self.refused += 1
            raise make_error(
                ErrorReason.OVERLOADED,
                f"this connection has {held} operations in flight; at most"
                f" {self.per_peer_max}: wait for answers before sending more",
            )
        if self._total + count > self.node_max:
            self.refused += 1
            raise make_error(
                ErrorReason.OVERLOADED,
                f"this node has {self._total} client operations in flight; at most"
                f" {self.node_max}: back off and retry",
            )
        self._inflight[peer] = held + count
        self._total += count

    def release(self, peer: str, count: int) -> None:
        held = self._inflight.get(peer, 0)
        self._total -= min(count, held)
        left = held - count
        if left > 0:
            self._inflight[peer] = left
        else:
            self._inflight.pop(peer, None)

    def held(self, peer: str) -> int:
        return self._inflight.get(peer, 0)
