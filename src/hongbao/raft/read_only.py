"""Pending ReadIndex requests on a leader (raft-pitfalls 17).

A request records the commit index at arrival; it is answered once a quorum of voters
acknowledged a heartbeat that carried its context, which proves this node still led
after the request arrived. Requests are answered in arrival order.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from hongbao._invariant import invariant
from hongbao.raft.types import LogIndex, NodeId


@dataclass(slots=True)
class ReadIndexStatus:
    index: LogIndex
    requester: NodeId  # NONE (0) for a local request
    context: bytes
    acks: set[NodeId] = field(default_factory=set)


class ReadOnly:
    __slots__ = ("_pending", "_queue", "pending_max")

    def __init__(self, pending_max: int) -> None:
        self.pending_max = pending_max
        self._pending: dict[bytes, ReadIndexStatus] = {}
        self._queue: list[bytes] = []

    def full(self) -> bool:
        return len(self._queue) >= self.pending_max

    def add_request(self, *, index: LogIndex, requester: NodeId, context: bytes) -> bool:
        if context in self._pending:
            return False
        invariant(not self.full(), "read-only queue over its limit")
        self._pending[context] = ReadIndexStatus(index, requester, context)
        self._queue.append(context)
        return True

    def recv_ack(self, node: NodeId, context: bytes) -> set[NodeId] | None:
        status = self._pending.get(context)
        if status is None:
            return None
        status.acks.add(node)
        return status.acks

    def advance(self, context: bytes) -> list[ReadIndexStatus]:
        """Pop every request up to and including ``context``: each is now safe to answer."""
        if context not in self._pending:
            return []
        position = self._queue.index(context)
        done = [self._pending.pop(ctx) for ctx in self._queue[: position + 1]]
        del self._queue[: position + 1]
        return done

    def last_pending_context(self) -> bytes:
        return self._queue[-1] if self._queue else b""

    def pending_count(self) -> int:
        return len(self._queue)
