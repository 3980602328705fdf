"""Regressions for the four bugs (and the "also seen" item) of issue 6.

Each was found by a randomized tester with another fault mix than ``hongbao sim``; each
test here is the issue's reproduction, written against the public API of the core.
"""

from __future__ import annotations

import pytest

from hongbao.raft.confchange import ConfChange, ConfChangeError, ConfChangeType
from hongbao.raft.errors import ProposalDropped
from hongbao.raft.types import (
    ConfState,
    Entry,
    Message,
    MessageType,
    NodeId,
    Role,
)

from .harness import Network

MT = MessageType
REMOVE, ADD_LEARNER = ConfChangeType.REMOVE_NODE, ConfChangeType.ADD_LEARNER
ELECTION_TICKS = 10
RECOVERY_TICKS_MAX = 300


# -- 1: deferred reads and pending_reads_max -----------------------------------------------


def test_a_fresh_leader_refuses_reads_it_could_not_queue_instead_of_raising_later() -> None:
    net = Network(pending_reads_max=2)
    net.dropped_types = {MT.APP_RESP}  # hold the acknowledgements of the leader's no-op
    net.elect(1)
    leader = net.core(1)
    assert leader.role is Role.LEADER
    assert leader.commit_index < leader.last_index  # the no-op is not committed: reads wait
    leader.read_index(b"r1")
    leader.read_index(b"r2")
    with pytest.raises(ProposalDropped, match="too many pending reads"):
        leader.read_index(b"r3")
    net.core(2).read_index(b"via-2")  # forwarded: the leader must drop it, not queue it
    net.stabilize()
    net.heal()  # release the acknowledgements: the no-op commits, deferred reads re-queue
    net.tick_all(3)
    assert leader.role is Role.LEADER
    assert leader.commit_index == leader.last_index
    assert sorted(r.context for r in net.replicas[1].read_states) == [b"r1", b"r2"]


# -- 2: a two-voter group must not lose its leader for ever ---------------------------------


def test_a_leader_cannot_remove_itself_from_two_voters() -> None:
    net = Network(ids=(1, 2))
    net.elect(1)
    with pytest.raises(ConfChangeError, match="transfer leadership first"):
        net.core(1).propose_conf_change(ConfChange(REMOVE, NodeId(1)))
    assert net.core(1).conf_state.voters == {1, 2}


def _recovered(net: Network, removed: int) -> bool:
    """A leader that may take proposals commits a fresh one (a removed leader may not)."""
    leader = net.leader()
    if leader is None or (leader == removed and removed not in net.core(leader).conf_state.voters):
        return False
    core = net.core(leader)
    index, _ = core.propose(b"after")
    net.stabilize()
    return core.commit_index >= index


@pytest.mark.parametrize("fault", ["crash", "partition"])
@pytest.mark.parametrize("reach", ["nobody", "one", "all"])
@pytest.mark.parametrize("size", [2, 3, 5])
def test_removing_the_leader_leaves_a_group_that_elects(size: int, reach: str, fault: str) -> None:
    """The removal reaches nobody, one follower or all; then its proposer crashes or is cut off.

    With two voters the leader hands over first (it may not remove itself), and the new
    leader removes the old one.
    """
    net = Network(ids=range(1, size + 1))
    net.elect(1)
    net.core(1).propose(b"x")
    net.stabilize()
    removed = 1
    if size == 2:
        net.core(1).transfer_leadership(NodeId(2))
        net.stabilize()
    remover = net.leader()
    assert remover is not None
    followers = [n for n in sorted(net.replicas) if n != remover]
    receivers = {"nobody": [], "one": followers[:1], "all": followers}[reach]
    net.hook = lambda m: None if m.type is MT.APP and m.to not in receivers else m
    net.core(remover).propose_conf_change(ConfChange(REMOVE, NodeId(removed)))
    net.stabilize()
    net.hook = None
    net.isolate(remover)
    net.tick_all(3 * ELECTION_TICKS)
    if fault == "crash":
        net.restart(remover)
    net.heal()
    for _ in range(RECOVERY_TICKS_MAX):
        net.tick_all()
        if _recovered(net, removed):
            break
    else:
        pytest.fail(f"no leader committing within {RECOVERY_TICKS_MAX} ticks of healing")
    leader = net.leader()
    assert leader is not None
    assert leader != removed or removed in net.core(leader).conf_state.voters


# -- 3: applied_conf_state between step(SNAP) and its Ready ---------------------------------


def test_applied_conf_state_is_that_of_the_applied_index_until_the_snapshot_is_applied() -> None:
    net = Network()
    net.elect(1)
    net.isolate(3)
    net.core(1).propose_conf_change(ConfChange(ADD_LEARNER, NodeId(4)))
    for i in range(5):
        net.core(1).propose(b"x%d" % i)
    net.stabilize()
    leader, storage = net.core(1), net.replicas[1].storage
    storage.create_snapshot(
        index=leader.applied_index, conf_state=leader.applied_conf_state, data=b"image"
    )
    storage.compact(leader.applied_index)
    held: list[Message] = []

    def hold_snapshots(message: Message) -> Message | None:
        if message.type is MT.SNAP:
            held.append(message)
            return None
        return message

    net.hook = hold_snapshots
    net.heal()
    net.tick_all(3)
    [snap] = held
    assert snap.snapshot is not None
    follower = net.core(3)
    before = follower.applied_index
    assert before < snap.snapshot.meta.index
    follower.step(snap)
    # The state machine is still at ``before``: a snapshot taken now must not name learner 4.
    assert follower.applied_index == before
    assert follower.applied_conf_state == ConfState(voters=frozenset({NodeId(1), NodeId(2),
                                                                       NodeId(3)}))
    assert follower.conf_state.learners == {4}
    net.process(3)
    assert follower.applied_conf_state.learners == {4}


# -- 4: a stale VOTE is answered with the current term --------------------------------------


def test_a_vote_of_an_older_term_is_refused_with_the_current_term() -> None:
    net = Network(pre_vote=False, check_quorum=False)
    core = net.core(1)
    core.step(Message(MT.VOTE, to=NodeId(1), from_=NodeId(2), term=5))
    net.process(1)
    core.step(Message(MT.VOTE, to=NodeId(1), from_=NodeId(3), term=3, index=9, log_term=3))
    answers = net.process(1)
    assert [(m.type, m.to, m.term, m.reject) for m in answers] == [(MT.VOTE_RESP, 3, 5, True)]
    candidate = net.core(3)
    candidate.step(answers[0])
    assert candidate.term == 5  # the stale candidate learns the term and can catch up


def test_a_promoted_learner_that_fell_behind_in_term_still_gets_elected() -> None:
    """The issue's liveness case: only node 3 can win, and it needs the vote of node 2,
    which is far ahead in term and, in its older configuration, sees 3 as a learner, so it
    never sends 3 anything. Without an answer to its stale VOTE, 3 never learns the term.
    """
    net = Network(ids=(1, 2), pre_vote=False, check_quorum=True)
    conf = ConfState(voters=frozenset({NodeId(1), NodeId(2)}), learners=frozenset({NodeId(3)}))
    for node in (1, 2, 3):
        net.add_replica(node, conf, pre_vote=False, check_quorum=True)
    net.elect(1)
    net.core(1).propose(b"x")
    net.stabilize()
    net.isolate(2)  # 2 keeps {1, 2} + learner 3 from here on
    net.core(1).propose_conf_change(ConfChange(ConfChangeType.ADD_VOTER, NodeId(3)))
    net.stabilize()  # {1, 2, 3} commits with 1 and 3
    net.core(1).propose_conf_change(ConfChange(REMOVE, NodeId(1)))
    net.stabilize()  # {2, 3} cannot commit without 2; CheckQuorum deposes 1 soon
    net.tick(2, 20 * ELECTION_TICKS)  # alone, 2 campaigns again and again: its term climbs
    net.tick_all(3 * ELECTION_TICKS)
    assert net.core(2).term > net.core(3).term
    assert net.core(1).role is Role.FOLLOWER
    net.heal()
    for _ in range(RECOVERY_TICKS_MAX):
        net.tick_all()
        if net.leader() is not None and _recovered(net, removed=1):
            break
    else:
        pytest.fail(f"no leader within {RECOVERY_TICKS_MAX} ticks of healing")
    assert net.leader() == 3


# -- also seen: an acknowledgement of entries overwritten before the Ready -------------------


def test_an_acknowledgement_of_overwritten_entries_is_never_sent() -> None:
    net = Network(pre_vote=False, check_quorum=False)
    follower = net.core(2)
    old = (Entry(term=1, index=1, data=b"a"), Entry(term=1, index=2, data=b"b"))
    follower.step(Message(MT.APP, to=NodeId(2), from_=NodeId(1), term=1, entries=old))
    new = (Entry(term=2, index=1, data=b"c"),)
    follower.step(Message(MT.APP, to=NodeId(2), from_=NodeId(3), term=2, entries=new))
    ready = follower.ready()
    assert [e.term for e in ready.entries] == [2]
    acks = [(m.to, m.index) for m in ready.messages if m.type is MT.APP_RESP and not m.reject]
    assert acks == [(3, 1)], "the ack of term-1 entries 1..2 vouches for what is not on disk"
