"""Single-server membership changes (raft-pitfalls 23-25).

One change at a time: the leader refuses a new change while an earlier one is
uncommitted, so any two successive configurations share a majority. A node uses a
configuration as soon as it is in its log, not when it commits; when the log is
truncated the configuration falls back to the one at the new end of the log.

A leader never removes itself from a group of two voters (transfer leadership first, then
the new leader removes it). Why: using a configuration on append, the leader stops being
promotable the moment its removal is in its log, before it commits. In a group of two,
the other voter may not have the entry yet; it still needs both votes in the old
configuration, and the leader, with the longer log, refuses its vote and never campaigns
itself: no leader ever again (issue 6). With three or more voters this cannot happen: the
others are a majority of the old configuration without the leader, and any of them that
holds the change wins in the new one with the votes of the rest (their logs are shorter).
The alternative, letting a node whose removal is uncommitted still campaign, would also
let every removed follower that missed the commit disrupt the group (pitfall 25).
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


def refuse_unelectable_self_removal(conf: ConfState, leader: NodeId, change: ConfChange) -> None:
    """Raise :class:`ConfChangeError` if ``leader`` would remove itself from two voters."""
    removes_itself = change.type is ConfChangeType.REMOVE_NODE and change.node_id == leader
    if removes_itself and leader in conf.voters and len(conf.voters) == 2:
        raise ConfChangeError(
            f"leader {leader} cannot remove itself from a group of two voters "
            "(the other could never be elected): transfer leadership first"
        )


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
