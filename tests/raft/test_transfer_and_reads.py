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


HARNESS_ELECTION_TIMEOUT_TICKS = 10  # make_config's default in the harness


def test_transfer_requests_must_not_hold_off_check_quorum() -> None:
    """Pitfall 8: a leader that hears from no quorum within an election timeout steps down.

    Transfers are timed by their own counter (pitfall 19). Had they reset the one that
    times CheckQuorum, as etcd's raft does, transfer requests to alternating targets would
    keep an isolated leader's CheckQuorum window from ever closing: it would believe it
    leads for ever while the majority elects a new leader in a higher term.
    """
    net = Network()
    net.elect(1)
    net.isolate(1)
    targets = (NodeId(2), NodeId(3))
    stepped_down_at = None
    for tick in range(10 * HARNESS_ELECTION_TIMEOUT_TICKS):
        if tick % 5 == 0 and net.core(1).role is Role.LEADER:
            net.core(1).transfer_leadership(targets[(tick // 5) % 2])
        net.tick_all(1)
        if net.core(1).role is not Role.LEADER:
            stepped_down_at = tick
            break
    majority_leader = [i for i in (2, 3) if net.core(i).role is Role.LEADER]
    assert majority_leader, "the majority side elected its own leader meanwhile"
    assert stepped_down_at is not None, (
        f"isolated leader 1 still leads term {net.core(1).term} after "
        f"{10 * HARNESS_ELECTION_TIMEOUT_TICKS} ticks; node {majority_leader[0]} leads term "
        f"{net.core(majority_leader[0]).term}"
    )
    assert stepped_down_at < 2 * HARNESS_ELECTION_TIMEOUT_TICKS
