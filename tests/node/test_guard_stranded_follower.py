"""A follower stranded at a higher term rejoins, with every message passing the peer guard.

The guard refuses higher-term messages while a lease holds (forged heartbeats at term + 1
must not depose a live leader). A chaos run (one-way-partition, seed 2269) found the cost:
a follower that moved to the next term (it voted in an election that failed) answers the
old leader's appends from that term; the leader, kept in its lease by the other
follower, refused the answers, and the follower stayed thousands of entries behind until
the run stopped. Here three real cores run behind real guards, node 3 comes back at the
next term, and it must apply what the others apply.
"""

from __future__ import annotations

from hongbao.node.peer_guard import PeerGuard, RefusalLog
from hongbao.raft.types import HardState, Message, NodeId
from tests.raft.harness import Network

TICK_MS = 100
ELECTION_TICKS = 10
TICKS_MAX = 20 * ELECTION_TICKS  # a deadline in ticks: far more than an election needs


class GuardedNetwork(Network):
    def __init__(self) -> None:
        super().__init__(check_quorum=True, pre_vote=True)
        self.now_ms = 1_000.0
        self.guards = {
            node_id: PeerGuard(
                node_id=node_id,
                cores=lambda shard_id, n=node_id: self.core(n) if shard_id == 0 else None,
                election_timeout_ms=ELECTION_TICKS * TICK_MS,
                refusals=RefusalLog(),
                clock_ms=lambda: self.now_ms,
            )
            for node_id in self.replicas
        }
        self.hook = self._guard

    def _guard(self, message: Message) -> Message | None:
        admitted = self.guards[message.to].admit(message.from_, 0, message)
        return message if admitted else None

    def tick_all(self, count: int = 1) -> None:
        for _ in range(count):
            self.now_ms += TICK_MS
            super().tick_all()


def test_a_follower_at_a_higher_term_catches_up_behind_the_guards() -> None:
    net = GuardedNetwork()
    net.elect(1)
    assert net.leader() == 1
    net.core(1).propose(b"before")
    net.tick_all(3)
    old_term = net.core(1).term
    # Node 3 moved on to the next term and nobody won it: restart it from a hard state
    # of term + 1 (what a vote granted in a failed election leaves on disk).
    stored, _ = net.replicas[3].storage.initial_state()
    net.replicas[3].storage.set_hard_state(
        HardState(term=old_term + 1, vote=NodeId(2), commit=stored.commit)
    )
    net.restart(3, check_quorum=True, pre_vote=True)
    for n in range(1, 6):
        leader = net.leader()
        if leader is not None:
            net.core(leader).propose(f"after-{n}".encode())
        net.tick_all(2)
    for _ in range(TICKS_MAX):
        wanted = net.applied_data(1)
        if b"after-5" in wanted and all(net.applied_data(n) == wanted for n in (2, 3)):
            break
        net.tick_all()
    else:
        raise AssertionError(
            f"node 3 applied {net.applied_data(3)} while node 1 applied {net.applied_data(1)};"
            f" refusals at node 1: {dict(net.guards[1].log.refusals)}"
        )
    assert net.core(3).term >= old_term + 2  # it never went back: a new election took it in
    assert net.leader() is not None
