"""Single-server membership changes (raft-pitfalls 23-25).

One change at a time: the leader refuses a new change while an earlier one is
uncommitted, so any two successive configurations share a majority. A node uses a
configuration as soon as it is in its log, not when it commits; when the log is
truncated the configuration falls back to the one at the new end of the log.
"""

from __future__ import annotations

import enum
import struct
from dataclasses import dataclass

from hongbao.raft.types import ConfState, NodeId


class ConfChangeType(enum.IntEnum):
    ADD_VOTER = 0  # add a node as a voter, or promote a learner
    REMOVE_NODE = 1  # remove a voter or a learner
    ADD_LEARNER = 2  # add a non-voting member that receives the log


class ConfChangeError(ValueError):
    """The change does not make sense against the current configuration."""


_CODEC = struct.Struct(">BQ")


@dataclass(frozen=True, slots=True)
class ConfChange:
    type: ConfChangeType
    node_id: NodeId

    def encode(self) -> bytes:
        return _CODEC.pack(int(self.type), int(self.node_id))

    @staticmethod
    def decode(data: bytes) -> ConfChange:
        if len(data) != _CODEC.size:
            raise ConfChangeError(f"a conf change is {_CODEC.size} bytes, got {len(data)}")
        kind, node_id = _CODEC.unpack(data)
        return ConfChange(ConfChangeType(kind), NodeId(node_id))


def apply_change(conf: ConfState, change: ConfChange) -> ConfState:
    """The configuration after ``change``; raises :class:`ConfChangeError` if it is invalid."""
    node = change.node_id
    if node <= 0:
        raise ConfChangeError(f"invalid node id {node}")
    if change.type is ConfChangeType.ADD_VOTER:
        if node in conf.voters:
            raise ConfChangeError(f"node {node} is already a voter")
        return ConfState(voters=conf.voters | {node}, learners=conf.learners - {node})
    if change.type is ConfChangeType.ADD_LEARNER:
        if node in conf.members:
            raise ConfChangeError(f"node {node} is already a member")
        return ConfState(voters=conf.voters, learners=conf.learners | {node})
    if node not in conf.members:
        raise ConfChangeError(f"node {node} is not a member")
    if conf.voters == frozenset({node}):
        raise ConfChangeError("cannot remove the last voter")
    return ConfState(voters=conf.voters - {node}, learners=conf.learners - {node})
