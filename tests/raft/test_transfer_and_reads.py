"""Leadership transfer (TimeoutNow) and ReadIndex reads."""

from __future__ import annotations

import pytest

from hongbao.raft.errors import NotLeader, ProposalDropped
from hongbao.raft.types import MessageType, NodeId, Role

from .harness import Network

MT = MessageType


def test_transfer_to_an_up_to_date_follower() -> None:
    net = Network()
    net.elect(1)
    net.core(1).transfer_leadership(NodeId(2))
    net.stabilize()
    assert net.leader() == 2
    assert net.core(2).term == 2
    assert any(m.type is MT.TIMEOUT_NOW and m.to == 2 for m in net.sent)


def test_transfer_to_a_lagging_follower_catches_it_up_first() -> None:
    net = Network()
    net.elect(1)
    net.isolate(3)
    for i in range(10):
        net.core(1).propose(b"x%d" % i)
    net.stabilize()
    net.heal()
    net.core(1).transfer_leadership(NodeId(3))
    with pytest.raises(ProposalDropped):
        net.core(1).propose(b"during transfer")  # pitfall 19: proposals stop
    net.tick_all(3)
    assert net.leader() == 3
    assert net.applied_data(3)[:10] == [b"x%d" % i for i in range(10)]


def test_transfer_that_cannot_finish_is_abandoned_within_a_timeout() -> None:
    net = Network()
    net.elect(1)
    net.isolate(3)
    net.core(1).transfer_leadership(NodeId(3))
    with pytest.raises(ProposalDropped):
        net.core(1).propose(b"blocked")
    net.tick_all(11)
    assert net.leader() == 1
    net.core(1).propose(b"resumed")  # does not raise: proposals resumed
    net.stabilize()
    assert b"resumed" in net.applied_data(2)


def test_transfer_only_on_the_leader_and_to_a_voter() -> None:
    net = Network()
    net.elect(1)
    with pytest.raises(NotLeader):
        net.core(2).transfer_leadership(NodeId(3))
    with pytest.raises(ProposalDropped):
        net.core(1).transfer_leadership(NodeId(9))


def test_read_index_on_the_leader_confirms_with_a_quorum() -> None:
    net = Network()
    net.elect(1)
    net.core(1).propose(b"w")
    net.stabilize()
    net.core(1).read_index(b"r1")
    net.stabilize()
    states = net.replicas[1].read_states
    assert [(s.index, s.context) for s in states] == [(2, b"r1")]


def test_read_index_is_not_answered_by_an_isolated_leader() -> None:
    net = Network(check_quorum=False)
    net.elect(1)
    net.isolate(1)
    net.core(1).read_index(b"r1")
    net.stabilize()
    assert net.replicas[1].read_states == []


def test_fresh_leader_answers_reads_only_after_committing_in_its_term() -> None:
    net = Network()
    net.elect(1)
    net.dropped_types = {MT.APP_RESP}
    net.core(1).transfer_leadership(NodeId(2))
    net.stabilize()
    assert net.core(2).role is Role.LEADER
    net.core(2).read_index(b"early")
    net.stabilize()
    assert net.replicas[2].read_states == [], "no entry of term 2 committed yet"
    net.dropped_types = set()
    net.tick_all(2)
    assert [s.context for s in net.replicas[2].read_states] == [b"early"]
    assert net.replicas[2].read_states[0].index >= 2


def test_follower_read_is_forwarded_to_the_leader() -> None:
    net = Network()
    net.elect(1)
    net.core(1).propose(b"w")
    net.stabilize()
    net.core(3).read_index(b"f1")
    net.stabilize()
    [state] = net.replicas[3].read_states
    assert state.context == b"f1"
    assert state.index == 2


def test_read_without_a_known_leader_is_refused() -> None:
    net = Network()
    with pytest.raises(NotLeader):
        net.core(2).read_index(b"nobody")
