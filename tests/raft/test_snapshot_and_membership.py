"""Snapshots, compaction and membership changes."""

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
    Snapshot,
    SnapshotMeta,
)

from .harness import Network

MT = MessageType
ADD_VOTER, REMOVE, ADD_LEARNER = (
    ConfChangeType.ADD_VOTER,
    ConfChangeType.REMOVE_NODE,
    ConfChangeType.ADD_LEARNER,
)


def compact_leader(net: Network, node: int) -> int:
    core = net.core(node)
    storage = net.replicas[node].storage
    index = core.applied_index
    storage.create_snapshot(index=index, conf_state=core.applied_conf_state, data=b"image")
    storage.compact(index)
    return index


def test_lagging_follower_catches_up_by_snapshot() -> None:
    net = Network()
    net.elect(1)
    net.isolate(3)
    for i in range(20):
        net.core(1).propose(b"x%d" % i)
    net.stabilize()
    snapshot_index = compact_leader(net, 1)
    net.heal()
    net.tick_all(3)
    snaps = [m for m in net.sent if m.type is MT.SNAP and m.to == 3]
    assert len(snaps) == 1
    assert net.replicas[3].storage.snapshot().meta.index == snapshot_index
    net.core(1).propose(b"after")
    net.tick_all(2)
    assert net.core(3).commit_index == net.core(1).commit_index
    assert net.applied_data(3)[-1] == b"after"


def test_snapshot_not_reported_is_retried() -> None:
    net = Network()
    net.elect(1)
    net.isolate(3)
    for i in range(5):
        net.core(1).propose(b"x%d" % i)
    net.stabilize()
    compact_leader(net, 1)
    net.cut_links = {(1, 3)}  # only the leader's messages to 3 are lost
    net.tick_all(3)
    net.heal()
    net.tick_all(25)  # the lost send expires after two election timeouts
    assert net.core(3).commit_index == net.core(1).commit_index


def test_snapshot_matching_our_log_keeps_the_suffix() -> None:
    """Pitfall 21: a snapshot whose last entry we have (same term) keeps what follows."""
    net = Network(pre_vote=False, check_quorum=False)
    storage = net.replicas[1].storage
    storage.append([Entry(1, i) for i in range(1, 6)])
    net.restart(1, pre_vote=False, check_quorum=False)
    conf = net.core(1).conf_state
    snap = Snapshot(SnapshotMeta(index=3, term=1, conf_state=conf), b"img")
    net.core(1).step(Message(MT.SNAP, to=NodeId(1), from_=NodeId(2), term=1, snapshot=snap))
    net.process(1)
    assert net.core(1).last_index == 5
    assert net.core(1).commit_index == 3


def test_stale_snapshot_never_moves_commit_backwards() -> None:
    net = Network()
    net.elect(1)
    for i in range(5):
        net.core(1).propose(b"x%d" % i)
    net.stabilize()
    conf = net.core(2).conf_state
    snap = Snapshot(SnapshotMeta(index=2, term=1, conf_state=conf), b"old")
    net.core(2).step(Message(MT.SNAP, to=NodeId(2), from_=NodeId(1), term=1, snapshot=snap))
    net.process(2)
    assert net.core(2).commit_index == 6
    assert net.replicas[2].storage.snapshot().meta.index == 0


def test_add_learner_then_promote() -> None:
    net = Network()
    net.elect(1)
    net.core(1).propose(b"before")
    net.stabilize()
    net.add_replica(4, net.core(1).conf_state)
    net.core(1).propose_conf_change(ConfChange(ADD_LEARNER, NodeId(4)))
    net.tick_all(3)
    assert NodeId(4) in net.core(1).conf_state.learners
    assert b"before" in net.applied_data(4)
    for _ in range(100):
        net.core(4).tick()
    assert net.core(4).role is Role.FOLLOWER, "a learner never campaigns"
    net.core(1).propose_conf_change(ConfChange(ADD_VOTER, NodeId(4)))
    net.tick_all(2)
    assert net.core(4).conf_state.voters == {1, 2, 3, 4}
    # The new voter counts toward quorums: with 2 and 3 gone, 1 + 4 are not enough...
    net.isolate(2)
    net.isolate(3)
    net.core(1).propose(b"needs three of four")
    net.tick_all(2)
    assert b"needs three of four" not in net.applied_data(1)
    net.heal()
    net.tick_all(2)
    assert b"needs three of four" in net.applied_data(4)


def test_one_membership_change_at_a_time() -> None:
    net = Network()
    net.elect(1)
    net.isolate(1)
    net.core(1).propose(b"x")  # keep the leader's log ahead of its commit
    net.heal()
    net.tick_all(1)
    net.isolate(1)
    net.core(1).propose_conf_change(ConfChange(ADD_LEARNER, NodeId(4)))
    with pytest.raises(ProposalDropped):
        net.core(1).propose_conf_change(ConfChange(ADD_LEARNER, NodeId(5)))


def test_invalid_change_is_refused_before_it_enters_the_log() -> None:
    net = Network()
    net.elect(1)
    with pytest.raises(ConfChangeError):
        net.core(1).propose_conf_change(ConfChange(ADD_VOTER, NodeId(2)))
    with pytest.raises(ConfChangeError):
        net.core(1).propose_conf_change(ConfChange(REMOVE, NodeId(9)))


def test_configuration_is_used_when_appended_and_reverted_on_truncation() -> None:
    """Pitfall 23: a follower uses a change from its log, and drops it with the entry."""
    net = Network(pre_vote=False, check_quorum=False)
    net.elect(1)
    net.cut(1, 3)
    net.cut(1, 2)
    net.core(1).propose_conf_change(ConfChange(ADD_LEARNER, NodeId(4)))
    net.process(1)
    assert NodeId(4) in net.core(1).conf_state.learners  # in force before commit
    # Node 2 wins term 2 without that entry; node 1's uncommitted change is cut away.
    net.heal()
    net.isolate(1)
    net.core(2).campaign()
    net.stabilize()
    net.core(2).propose(b"term 2")
    net.stabilize()
    net.heal()
    net.tick_all(3)
    assert net.leader() == 2
    assert NodeId(4) not in net.core(1).conf_state.members


def test_leader_removing_itself_steps_down_after_the_change_commits() -> None:
    net = Network()
    net.elect(1)
    net.core(1).propose(b"x")
    net.stabilize()
    net.core(1).propose_conf_change(ConfChange(REMOVE, NodeId(1)))
    net.stabilize()
    assert net.core(1).role is Role.FOLLOWER
    assert net.core(2).conf_state.voters == {2, 3}
    net.tick_all(40)
    assert net.leader() in (2, 3)
    term = net.core(net.leader() or 2).term
    net.tick_all(60)
    assert net.core(net.leader() or 2).term == term, "the removed node must not disrupt"


def test_removed_follower_stops_counting() -> None:
    net = Network()
    net.elect(1)
    net.core(1).propose(b"x")
    net.stabilize()
    net.core(1).propose_conf_change(ConfChange(REMOVE, NodeId(3)))
    net.stabilize()
    net.isolate(3)
    net.core(1).propose(b"two of two")
    net.stabilize()
    assert b"two of two" in net.applied_data(2)
    assert net.core(1).conf_state.voters == {1, 2}


def test_restart_rebuilds_the_configuration_from_the_log() -> None:
    net = Network()
    net.elect(1)
    net.core(1).propose(b"x")
    net.stabilize()
    net.core(1).propose_conf_change(ConfChange(ADD_LEARNER, NodeId(7)))
    net.stabilize()
    net.restart(2)
    assert net.core(2).conf_state.learners == {7}


def learner_network(voters: set[int], learners: set[int]) -> Network:
    conf = ConfState(
        voters=frozenset(NodeId(i) for i in voters),
        learners=frozenset(NodeId(i) for i in learners),
    )
    net = Network(ids=sorted(voters))
    for node in sorted(voters | learners):
        net.add_replica(node, conf)
    return net


def test_learner_acks_never_commit_an_entry() -> None:
    # Pitfall 24: leader + 2 learners are 3 of 5 members, but only 1 of 3 voters.
    net = learner_network({1, 2, 3}, {4, 5})
    net.elect(1)
    committed = net.core(1).commit_index
    net.isolate(2)
    net.isolate(3)
    net.core(1).propose(b"learners only")
    net.tick_all(5)
    assert net.core(4).last_index == net.core(5).last_index == net.core(1).last_index
    assert net.core(1).status().peers[NodeId(4)].match == net.core(1).last_index
    assert net.core(1).commit_index == committed
    assert b"learners only" not in net.applied_data(1)
    net.heal()
    net.tick_all(2)
    assert b"learners only" in net.applied_data(4)


def test_learner_acks_never_confirm_a_read_index() -> None:
    # Pitfall 24 (and 17): the heartbeat round must be acknowledged by a quorum of voters.
    net = learner_network({1, 2, 3}, {4, 5})
    net.elect(1)
    net.isolate(2)
    net.isolate(3)
    net.core(1).read_index(b"read")
    net.stabilize()
    acks = [m for m in net.sent if m.type is MT.HEARTBEAT_RESP and m.context == b"read"]
    assert {m.from_ for m in acks} == {4, 5}
    assert net.replicas[1].read_states == []
    net.heal()
    net.tick_all(1)
    assert [r.context for r in net.replicas[1].read_states] == [b"read"]


def test_learners_do_not_keep_an_isolated_leader_in_power() -> None:
    # Pitfall 24 (and 8): CheckQuorum counts voters only; learners still answer heartbeats.
    net = learner_network({1, 2, 3}, {4, 5})
    net.elect(1)
    net.isolate(2)
    net.isolate(3)
    net.sent.clear()
    net.tick_all(2 * 10)  # election_timeout_ticks is 10 in the harness
    assert {m.from_ for m in net.sent if m.type is MT.HEARTBEAT_RESP} == {4, 5}
    assert net.core(1).role is Role.FOLLOWER


@pytest.mark.parametrize(("pre_vote", "check_quorum"), [(True, True), (True, False), (False, True)])
def test_removed_follower_that_keeps_campaigning_does_not_disrupt(
    pre_vote: bool, check_quorum: bool
) -> None:
    # Pitfall 25: node 3 misses its own removal and keeps campaigning in the old config.
    net = Network(pre_vote=pre_vote, check_quorum=check_quorum)
    net.elect(1)
    net.core(1).propose(b"x")
    net.stabilize()
    net.isolate(3)
    net.core(1).propose_conf_change(ConfChange(REMOVE, NodeId(3)))
    net.stabilize()
    assert net.core(1).conf_state.voters == {1, 2}
    assert net.core(3).conf_state.voters == {1, 2, 3}
    net.heal()
    net.sent.clear()
    net.tick_all(100)
    campaigns = [m for m in net.sent if m.type in (MT.PRE_VOTE, MT.VOTE) and m.from_ == 3]
    assert {m.to for m in campaigns} == {1, 2}, "node 3 should have kept campaigning"
    assert net.leader() == 1
    assert net.core(1).term == net.core(2).term == 1
    net.core(1).propose(b"still leading")
    net.tick_all(2)
    assert b"still leading" in net.applied_data(2)
