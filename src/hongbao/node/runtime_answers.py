"""What the runtime answers when it cannot take work: NOT_LEADER with a hint, UNAVAILABLE.

One concept apart from the Ready loop: every refusal names the leader to try (the core's
view, a transfer's target, or the shard's home when no leader is known), so that a
client or router fails over in one step instead of guessing.
"""

from __future__ import annotations

from hongbao.config.topology import META_GROUP_ID, Topology
from hongbao.node.errors import ErrorReason, HongbaoError, LeaderHint, make_error
from hongbao.node.replica import ShardReplica
from hongbao.raft.errors import ProposalDropped


def group_name(group_id: int) -> str:
    return "the meta group" if group_id == META_GROUP_ID else f"shard {group_id}"


class LeaderAnswers:
    """The runtime's refusals; it provides the fields declared here."""

    topology: Topology
    node_id: int
    replicas: dict[int, ShardReplica]
    groups: dict[int, ShardReplica]

    def _replica(self, shard_id: int) -> ShardReplica:
        replica = self.replicas.get(shard_id)
        if replica is None:
            raise make_error(
                ErrorReason.NOT_LEADER,
                f"shard {shard_id} has no replica on node {self.node_id}",
                leader_hint=self._hint(shard_id, None),
                shard_id=shard_id,
            )
        return replica

    def dropped_error(self, replica: ShardReplica, dropped: ProposalDropped) -> HongbaoError:
        """What to tell a client whose command or read the core refused (never logged).

        Refused by this very leader (too many uncommitted bytes or pending reads, or not
        ready yet): UNAVAILABLE, so the client backs off before trying here again. A
        NOT_LEADER naming ourselves would send it straight back, attempt after attempt.
        Refused because leadership is moving (a transfer): NOT_LEADER naming the target.
        """
        hint = int(dropped.leader_hint)
        if replica.is_leader and hint in (0, self.node_id):
            return make_error(ErrorReason.UNAVAILABLE, str(dropped), shard_id=replica.shard_id)
        return self.not_leader(replica.shard_id, str(dropped), hint)

    def not_leader(self, shard_id: int, why: str = "", leader_hint: int = 0) -> HongbaoError:
        """NOT_LEADER, naming the leader to try (a transfer's target while one runs)."""
        replica = self.groups.get(shard_id)
        leader = leader_hint or (int(replica.core.leader_id) if replica is not None else 0)
        message = why or f"node {self.node_id} does not lead {group_name(shard_id)}"
        return make_error(
            ErrorReason.NOT_LEADER,
            message,
            leader_hint=self._hint(shard_id, leader),
            shard_id=shard_id,
        )

    def _hint(self, shard_id: int, leader: int | None) -> LeaderHint:
        if leader:
            return LeaderHint(leader, self.topology.node(leader).address)
        # No known leader: suggest the shard's home node, where it most likely returns.
        home = self.topology.home_leader_of(shard_id)
        return LeaderHint(0, self.topology.node(home).address)

    def leader_of(self, shard_id: int) -> int:
        replica = self.groups.get(shard_id)
        return int(replica.core.leader_id) if replica is not None else 0
