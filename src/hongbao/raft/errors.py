"""Operating errors the core reports to its caller (programmer errors use ``invariant``).

    RaftError
    └── ProposalDropped        the proposal was not appended; nothing will commit
        └── NotLeader          ... because this node does not lead (``leader_hint`` may help)
"""

from __future__ import annotations

from hongbao.raft.types import NONE, NodeId


class RaftError(Exception):
    """Base of the core's operating errors."""


class ProposalDropped(RaftError):
    """The proposal was refused before it entered the log: it is safe to retry anywhere."""

    def __init__(self, reason: str, leader_hint: NodeId = NONE) -> None:
        super().__init__(reason)
        self.reason = reason
        self.leader_hint = leader_hint


class NotLeader(ProposalDropped):
    """This node is not the leader; ``leader_hint`` names the leader it knows of, or 0."""
