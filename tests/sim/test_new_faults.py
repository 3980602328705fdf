"""The fault classes issue 6 added, alone: stale replays and crashes inside a Ready.

Why alone: the profiles show these faults happen in whole runs (``test_profiles.py``);
these tests pin down exactly what each one does, so a later change cannot quietly turn
one into a no-op.
"""

from __future__ import annotations

import random

import pytest

from hongbao.raft.config import RaftConfig
from hongbao.raft.types import ConfState, Message, MessageType, NodeId
from hongbao.sim.config import STALE_EARLY_KEPT_MAX, STALE_SAMPLE_EVERY, NetworkRates
from hongbao.sim.network import STALE_INCARNATION, Network
from hongbao.sim.node import CrashPoint, SimNode
from hongbao.sim.stats import RunStats

N1, N2 = NodeId(1), NodeId(2)
QUIET = NetworkRates(cross_region_delay_ticks_max=1, jitter_probability=0.0,
                     loss_probability=0.0, duplicate_probability=0.0)


def test_a_replay_sends_again_messages_from_the_start_of_the_run() -> None:
    stats = RunStats()
    network = Network(rng=random.Random(3), region_of={N1: 0, N2: 1}, rates=QUIET, stats=stats)
    sent = 4 * STALE_SAMPLE_EVERY * STALE_EARLY_KEPT_MAX  # far more than is kept
    for term in range(1, sent + 1):
        network.send(term, Message(MessageType.HEARTBEAT, to=N2, from_=N1, term=term),
                     sender_incarnation=1)
    while network.pop_due(sent + 1) is not None:
        pass
    assert network.replay_stale(sent + 1, 50) == 50
    replayed = []
    while (due := network.pop_due(sent + 10)) is not None:
        assert due.flight.sender_incarnation == STALE_INCARNATION  # nobody hears back
        replayed.append(due.flight.message.term)
    assert len(replayed) == 50
    assert stats.messages_replayed == 50
    early = STALE_SAMPLE_EVERY * STALE_EARLY_KEPT_MAX
    assert min(replayed) <= early, "some replays come from the oldest terms of the run"
    assert max(replayed) > early, "and some from recent ones"


def make_node(voters: set[int]) -> SimNode:
    conf = ConfState(voters=frozenset(NodeId(v) for v in voters))
    config = RaftConfig(node_id=N1, pre_vote=False)  # a campaign sends VOTE at once
    return SimNode(node_id=N1, region=0, bootstrap=conf, raft_config=config,
                   rng=random.Random(1))


def settle(node: SimNode) -> None:
    while node.handle_ready() is not None:
        pass


def test_written_but_not_synced_is_lost_by_the_crash() -> None:
    node = make_node({1})
    node.live_core().campaign()
    settle(node)
    index, _ = node.live_core().propose(b"x")
    node.crash_point = CrashPoint.WRITTEN
    outcome = node.handle_ready()
    assert outcome is not None
    assert outcome.crashed_at is CrashPoint.WRITTEN
    assert not outcome.synced
    assert outcome.applied == ()
    node.crash()
    node.start()
    assert node.live_core().last_index < index


def test_persisted_but_not_sent_keeps_the_vote_and_sends_nothing() -> None:
    node = make_node({1, 2, 3})
    node.live_core().campaign()
    node.crash_point = CrashPoint.PERSISTED
    outcome = node.handle_ready()
    assert outcome is not None
    assert outcome.crashed_at is CrashPoint.PERSISTED
    assert outcome.messages == ()
    node.crash()
    node.start()
    assert (node.live_core().term, node.live_core().vote) == (1, N1)


def test_sent_but_not_applied_sends_the_votes_it_persisted() -> None:
    node = make_node({1, 2, 3})
    node.live_core().campaign()
    node.crash_point = CrashPoint.SENT
    outcome = node.handle_ready()
    assert outcome is not None
    assert outcome.crashed_at is CrashPoint.SENT
    assert sorted(m.to for m in outcome.messages if m.type is MessageType.VOTE) == [2, 3]
    assert outcome.applied == ()


@pytest.mark.parametrize("point", [CrashPoint.SENT, CrashPoint.APPLIED])
def test_committed_entries_are_applied_again_after_a_crash_before_advance(
    point: CrashPoint,
) -> None:
    node = make_node({1})
    node.live_core().campaign()
    settle(node)
    index, _ = node.live_core().propose(b"x")
    settle(node)  # persisted and committed (a group of one), applied
    applied_before = node.machine.applied_index
    assert applied_before == index
    node.live_core().propose(b"y")
    node.crash_point = point
    outcome = node.handle_ready()
    assert outcome is not None
    assert outcome.crashed_at is point
    assert (len(outcome.applied) == 1) is (point is CrashPoint.APPLIED)
    node.crash()
    node.start()
    assert node.machine.applied_index <= index + 1
    settle(node)
    assert node.machine.applied_index == index + 1  # applied once more, in order
