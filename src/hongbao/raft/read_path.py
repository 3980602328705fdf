"""The ReadIndex path of the core (raft-pitfalls 17).

Rules of this part: every read the leader accepts has a place in a bounded queue from the
moment it is accepted. A fresh leader defers reads until an entry of its own term commits;
the deferred reads and the queued ones share one bound, ``pending_reads_max``, so moving
the deferred ones into the queue always fits. A read that has no place is refused in
``read_index`` (``ProposalDropped``, which the runtime answers UNAVAILABLE), never later.
"""

from __future__ import annotations

from hongbao.raft.core_state import MT, CoreState
from hongbao.raft.errors import NotLeader, ProposalDropped
from hongbao.raft.types import NONE, LogIndex, Message, NodeId, ReadState, Role

# The bound deferred reads had of their own before they shared ``pending_reads_max``.
DEFERRED_READS_MAX_WITH_BUG = 1024


class ReadPath(CoreState):
    """Linearizable reads: accept, defer, confirm leadership by a heartbeat round, answer."""

    def read_index(self, context: bytes) -> None:
        """Start a linearizable read; the answer comes as a ReadState in a later Ready."""
        if not context:
            raise ValueError("a read needs a non-empty context to be recognised by")
        self._wake()  # a read needs a heartbeat round
        if self.role is Role.LEADER:
            if self._reads_full():
                raise ProposalDropped("too many pending reads", self.leader_id)
            self._leader_read_index(Message(MT.READ_INDEX, from_=NONE, context=context))
            return
        if self.leader_id == NONE or self.role is not Role.FOLLOWER:
            raise NotLeader("no known leader to confirm the read", self.leader_id)
        self._send(MT.READ_INDEX, to=self.leader_id, context=context, term=0)

    def _reads_full(self) -> bool:
        """True when a new read has no place: deferred and queued reads share one bound."""
        if self.config.bugs.requeue_reads_unchecked:
            return self._read_only.full()  # the deliberate bug: deferred reads not counted
        queued = len(self._reads_before_commit) + self._read_only.pending_count()
        return queued >= self.config.pending_reads_max

    def _release_deferred_reads(self) -> None:
        """An entry of this term committed: queue the deferred reads (they have a place)."""
        if self._log.term(self._log.committed) != self.term or not self._reads_before_commit:
            return
        pending, self._reads_before_commit = self._reads_before_commit, []
        for read in pending:
            self._leader_read_index(read)

    def _leader_read_index(self, m: Message) -> None:
        voters = self.conf_state.voters
        if voters == frozenset({self.node_id}):
            self._answer_read(m.from_, self._log.committed, m.context)
            return
        if self._log.term(self._log.committed) != self.term:
            # Pitfall 17: a fresh leader must commit an entry of its term first.
            # Only reached through _reads_full(), so the list stays within its bound; the
            # old, separate bound is what the deliberate bug keeps.
            if len(self._reads_before_commit) < DEFERRED_READS_MAX_WITH_BUG:
                self._reads_before_commit.append(m)
            return
        requester = NONE if m.from_ in (NONE, self.node_id) else m.from_
        if self._read_only.add_request(
            index=self._log.committed, requester=requester, context=m.context
        ):
            self._read_only.recv_ack(self.node_id, m.context)
            self._broadcast_heartbeat(m.context)

    def _handle_read_ack(self, m: Message) -> None:
        acks = self._read_only.recv_ack(m.from_, m.context)
        if acks is None:
            return
        voters = self.conf_state.voters
        if len(acks & voters) < len(voters) // 2 + 1:
            return
        for status in self._read_only.advance(m.context):
            self._answer_read(status.requester, status.index, status.context)

    def _answer_read(self, requester: NodeId, index: LogIndex, context: bytes) -> None:
        if requester in (NONE, self.node_id):
            self._read_states.append(ReadState(index, context))
        else:
            self._send(MT.READ_INDEX_RESP, to=requester, index=index, context=context)
