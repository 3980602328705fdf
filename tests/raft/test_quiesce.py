"""Quiescence (raft/quiesce.py): an idle group stops heartbeating, and wakes for any work."""

from __future__ import annotations

from hongbao.node.liveness import PeerLiveness
from hongbao.raft.types import Message, MessageType, NodeId, Role

from .harness import Network

MT = MessageType
TIMEOUT_TICKS = 10  # the harness's election timeout


def quiet_network(**config: object) -> Network:
    """Three replicas, 1 leading, one entry committed everywhere, then left to quiesce."""
    net = Network(quiesce=True, **config)
    net.elect(1)
    net.core(1).propose(b"x")
    net.stabilize()
    net.tick_all(2)  # the heartbeat after everything is applied is the quiesce one
    return net


def sent_after(net: Network, mark: int) -> list[Message]:
    return net.sent[mark:]


def test_an_idle_fully_replicated_group_quiesces_and_sends_nothing() -> None:
    net = quiet_network()
    assert [net.core(n).quiesced for n in (1, 2, 3)] == [True, True, True]
    assert any(m.type is MT.HEARTBEAT and m.quiesce for m in net.sent)
    mark = len(net.sent)
    net.tick_all(20 * TIMEOUT_TICKS)  # far past any election timeout
    assert sent_after(net, mark) == []
    assert net.leader() == 1
    assert all(net.core(n).term == net.core(1).term for n in (2, 3))
    assert net.core(1).quorum_active()  # clients are not told it is cut off


def test_a_group_with_a_lagging_follower_does_not_quiesce() -> None:
    net = Network(quiesce=True)
    net.elect(1)
    net.isolate(3)
    net.core(1).propose(b"x")
    net.stabilize()
    net.tick_all(5 * TIMEOUT_TICKS)
    assert not net.core(1).quiesced
    assert not any(m.quiesce for m in net.sent)


def test_without_the_switch_nothing_quiesces() -> None:
    net = Network()
    net.elect(1)
    net.core(1).propose(b"x")
    net.stabilize()
    mark = len(net.sent)
    net.tick_all(3)
    assert not any(net.core(n).quiesced for n in (1, 2, 3))
    assert any(m.type is MT.HEARTBEAT for m in sent_after(net, mark))


def test_a_proposal_wakes_the_group_and_commits_everywhere() -> None:
    net = quiet_network()
    net.core(1).propose(b"y")
    assert not net.core(1).quiesced
    net.stabilize()
    assert not net.core(2).quiesced  # the append woke the followers
    assert all(net.applied_data(n) == [b"x", b"y"] for n in (1, 2, 3))
    net.tick_all(2)
    assert all(net.core(n).quiesced for n in (1, 2, 3))  # and it goes quiet again


def test_a_read_wakes_the_leader_and_is_answered() -> None:
    net = quiet_network()
    net.core(1).read_index(b"r1")
    net.stabilize()
    assert [r.context for r in net.replicas[1].read_states] == [b"r1"]


def test_a_follower_with_entries_past_the_commit_does_not_quiesce() -> None:
    net = Network(quiesce=True)
    net.elect(1)
    net.stabilize()
    follower = net.core(2)
    # A quiesce heartbeat whose commit is below the follower's last index (entries of
    # its own past it): the follower must keep its timer running.
    last = follower.last_index
    follower.step(
        Message(
            MT.HEARTBEAT,
            to=NodeId(2),
            from_=NodeId(1),
            term=follower.term,
            commit=last - 1,
            quiesce=True,
        )
    )
    assert not follower.quiesced


def test_a_lost_quiesce_heartbeat_costs_no_election() -> None:
    """The follower that missed it times out, pre-votes, and that wakes the leader."""
    net = Network(quiesce=True)
    net.elect(1)
    net.core(1).propose(b"x")
    net.stabilize()
    net.hook = lambda m: None if (m.quiesce and m.to == 3) else m
    net.tick_all(2)
    assert net.core(1).quiesced
    assert net.core(2).quiesced
    assert not net.core(3).quiesced
    net.hook = None
    term = net.core(1).term
    net.tick_all(4 * TIMEOUT_TICKS)
    assert net.leader() == 1
    assert net.core(3).term == term  # pre-vote: nobody's term moved
    assert net.core(3).leader_id == 1


def test_liveness_wakes_a_follower_whose_leader_node_fell_silent() -> None:
    net = quiet_network()
    liveness = PeerLiveness(node_id=2, peers=[1, 2, 3], timeout_ms=300)
    liveness.refresh(0)
    liveness.heard(3, 400)  # node 3 is heard, node 1 (the leader) is not
    liveness.refresh(400)
    assert liveness.silent == frozenset({1})
    assert liveness.wake_if_stranded(net.core(3)) is True  # a follower of node 1
    assert not net.core(3).quiesced
    # Node 1 is dead: node 3's timer runs again and it is elected with node 2's vote
    # once node 2 is woken as well.
    net.isolate(1)
    assert liveness.wake_if_stranded(net.core(2)) is True
    for _ in range(4 * TIMEOUT_TICKS):
        net.tick(2)
        net.tick(3)
        net.stabilize()
    assert net.core(2).role is Role.LEADER or net.core(3).role is Role.LEADER


def test_liveness_keeps_a_leader_quiet_while_a_quorum_of_nodes_is_heard() -> None:
    net = quiet_network()
    liveness = PeerLiveness(node_id=1, peers=[1, 2, 3], timeout_ms=300)
    liveness.refresh(0)
    liveness.heard(2, 400)
    liveness.refresh(400)  # node 3 silent, node 2 heard: 2 of 3 nodes live
    assert liveness.wake_if_stranded(net.core(1)) is False
    assert net.core(1).quiesced
    liveness.refresh(800)  # now node 2 is silent as well
    assert liveness.wake_all_stranded([net.core(1)]) == 1
    assert not net.core(1).quiesced
    # Woken and cut off: CheckQuorum deposes it within two election timeouts.
    net.isolate(1)
    net.tick(1, 2 * TIMEOUT_TICKS)
    net.stabilize()
    assert net.core(1).role is Role.FOLLOWER


def test_liveness_gives_unheard_peers_one_timeout_from_the_first_check() -> None:
    liveness = PeerLiveness(node_id=1, peers=[1, 2, 3], timeout_ms=300)
    assert liveness.refresh(1_000) == frozenset()
    assert liveness.refresh(1_300) == frozenset()
    assert liveness.refresh(1_301) == frozenset({2, 3})
    liveness.heard(2, 1_301)
    assert liveness.refresh(1_302) == frozenset({3})
    assert liveness.is_live(1)
    assert liveness.is_live(2)
    assert not liveness.is_live(3)


def test_a_message_of_a_new_term_wakes_a_quiesced_follower() -> None:
    net = quiet_network()
    follower = net.core(3)
    follower.step(
        Message(
            MT.APP,
            to=NodeId(3),
            from_=NodeId(2),
            term=follower.term + 1,
            index=follower.last_index,
            log_term=follower.term_at(follower.last_index),
            commit=follower.commit_index,
        )
    )
    assert not follower.quiesced
    assert follower.leader_id == 2


def test_a_core_that_just_quiesced_is_not_idle_until_its_heartbeat_is_taken() -> None:
    """The runtime passes over idle cores; the quiesce heartbeat must still leave.

    (When the runtime skipped every quiesced core instead, the heartbeat queued by the
    tick that quiesced the leader never left: followers timed out, elections churned.)
    """
    net = Network(quiesce=True)
    net.elect(1)
    net.core(1).propose(b"x")
    net.stabilize()
    leader = net.core(1)
    for _ in range(3):
        leader.tick()
        if leader.quiesced:
            break
    assert leader.quiesced
    assert not leader.idle
    assert leader.has_ready()
    messages = net.process(1)
    assert {m.to for m in messages if m.quiesce} == {2, 3}
    assert leader.idle
    assert not leader.has_ready()
