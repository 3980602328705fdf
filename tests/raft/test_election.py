"""Elections: vote granting, the up-to-date check, terms, PreVote and CheckQuorum."""

from __future__ import annotations

from hongbao.raft.types import Entry, Message, MessageType, NodeId, Role

from .harness import Network

MT = MessageType


def vote_request(to: int, frm: int, term: int, last_index: int, last_term: int) -> Message:
    return Message(
        MT.VOTE, to=NodeId(to), from_=NodeId(frm), term=term, index=last_index, log_term=last_term
    )


def responses(net: Network, node: int) -> list[Message]:
    return net.process(node)


def test_single_leader_after_election() -> None:
    net = Network()
    net.elect(1)
    assert net.leader() == 1
    assert {net.core(i).term for i in (1, 2, 3)} == {1}
    assert all(net.core(i).leader_id == 1 for i in (1, 2, 3))


def test_vote_granted_once_per_term_and_persisted_before_the_answer() -> None:
    net = Network(pre_vote=False, check_quorum=False)
    core = net.core(1)
    core.step(vote_request(1, 2, term=5, last_index=0, last_term=0))
    ready = core.ready()
    # Pitfall 1: the vote is in the hard state of the very Ready that carries the answer.
    assert ready.hard_state is not None
    assert ready.hard_state.vote == 2
    assert ready.hard_state.term == 5
    assert ready.must_sync
    assert [(m.type, m.reject) for m in ready.messages] == [(MT.VOTE_RESP, False)]
    core.advance(ready)
    core.step(vote_request(1, 3, term=5, last_index=0, last_term=0))
    [answer] = core.ready().messages
    assert answer.reject, "a second candidate in the same term must be refused"


def test_vote_survives_restart() -> None:
    net = Network(pre_vote=False, check_quorum=False)
    net.core(1).step(vote_request(1, 2, term=5, last_index=0, last_term=0))
    net.process(1)
    net.restart(1, pre_vote=False, check_quorum=False)
    net.core(1).step(vote_request(1, 3, term=5, last_index=0, last_term=0))
    [answer] = net.process(1)
    assert answer.reject
    assert net.core(1).vote == 2


def _node_with_log(terms: list[int]) -> Network:
    net = Network(pre_vote=False, check_quorum=False)
    storage = net.replicas[1].storage
    storage.append([Entry(term=t, index=i + 1) for i, t in enumerate(terms)])
    net.restart(1, pre_vote=False, check_quorum=False)
    return net


def test_up_to_date_check_compares_last_term_first() -> None:
    cases = [
        # (our log terms, candidate last index, candidate last term, granted)
        ([1, 1, 2], 1, 3, True),  # shorter log, higher last term: up to date
        ([1, 1, 2], 5, 1, False),  # longer log, lower last term: not up to date
        ([1, 1, 2], 3, 2, True),  # same last term, same length
        ([1, 1, 2], 2, 2, False),  # same last term, shorter log
        ([1, 1, 2], 4, 2, True),  # same last term, longer log
    ]
    for terms, last_index, last_term, granted in cases:
        net = _node_with_log(terms)
        net.core(1).step(vote_request(1, 2, 9, last_index, last_term))
        [answer] = net.process(1)
        assert answer.reject is (not granted), (terms, last_index, last_term)


def test_deliberate_bug_grants_vote_to_stale_log() -> None:
    net = Network(pre_vote=False, check_quorum=False)
    storage = net.replicas[1].storage
    storage.append([Entry(term=1, index=1), Entry(term=2, index=2)])
    from hongbao.raft.config import DeliberateBugs

    net.restart(
        1, pre_vote=False, check_quorum=False, bugs=DeliberateBugs(vote_without_log_check=True)
    )
    net.core(1).step(vote_request(1, 2, 9, 1, 1))
    [answer] = net.process(1)
    assert not answer.reject


def test_higher_term_in_a_response_makes_a_leader_step_down() -> None:
    net = Network(pre_vote=False, check_quorum=False)
    net.elect(1)
    net.core(1).step(Message(MT.APP_RESP, to=NodeId(1), from_=NodeId(2), term=7, index=1))
    assert net.core(1).role is Role.FOLLOWER
    assert net.core(1).term == 7


def test_prevote_keeps_a_partitioned_node_from_raising_its_term() -> None:
    net = Network()
    net.elect(1)
    net.isolate(3)
    net.tick_all(100)
    assert net.core(3).term == 1, "pre-vote must not change the term"
    assert net.core(3).role is Role.PRE_CANDIDATE
    net.heal()
    net.tick_all(3)
    assert net.leader() == 1, "a returning node must not depose a healthy leader"
    assert net.core(1).term == 1


def test_without_prevote_a_returning_node_disrupts() -> None:
    """The control experiment for the test above: it shows what PreVote prevents."""
    net = Network(pre_vote=False, check_quorum=False)
    net.elect(1)
    net.isolate(3)
    net.tick_all(100)
    assert net.core(3).term > 1


def test_prevote_is_refused_while_a_leader_is_live() -> None:
    net = Network()
    net.elect(1)
    net.tick_all(1)
    net.core(2).step(
        Message(MT.PRE_VOTE, to=NodeId(2), from_=NodeId(3), term=2, index=99, log_term=9)
    )
    answers = [m for m in net.process(2) if m.type is MT.PRE_VOTE_RESP]
    assert answers == [], "a follower that hears from a live leader ignores pre-votes"
    assert net.core(2).term == 1


def test_check_quorum_isolated_leader_steps_down_within_a_timeout() -> None:
    net = Network()
    net.elect(1)
    net.isolate(1)
    # Two election timeouts at most: one to notice the silence, one period of slack.
    for _ in range(2 * 10):
        net.tick_all(1)
    assert net.core(1).role is Role.FOLLOWER
    assert net.leader() in (2, 3)


def test_randomized_timeouts_differ_and_are_in_range() -> None:
    net = Network(ids=range(1, 8))
    timeouts = {net.core(i)._election_timeout_randomized_ticks for i in range(1, 8)}
    assert all(10 <= t < 20 for t in timeouts)
    assert len(timeouts) > 1


def test_learner_never_campaigns() -> None:
    from hongbao.raft.types import ConfState

    net = Network(ids=[1, 2])
    net.add_replica(
        3, ConfState(voters=frozenset({NodeId(1), NodeId(2)}), learners=frozenset({NodeId(3)}))
    )
    for _ in range(100):
        net.core(3).tick()
    assert net.core(3).role is Role.FOLLOWER
    assert [m for m in net.process(3) if m.type in (MT.VOTE, MT.PRE_VOTE)] == []
    assert net.core(3).term == 0


def test_messages_not_from_the_leader_do_not_hold_off_an_election() -> None:
    # Pitfall 5: only a vote granted, a campaign, or the current leader resets the timer.
    # Node 1 led term 1, node 2 took over in term 2 and then went silent. Node 3 keeps
    # hearing from others every tick: the deposed leader's appends of term 1, a stray
    # heartbeat response and refused pre-votes. It must still campaign in time.
    net = Network(pre_vote=True, check_quorum=True)
    net.elect(1)
    net.core(1).transfer_leadership(NodeId(2))
    net.stabilize()
    assert net.leader() == 2
    net.isolate(2)
    follower = net.core(3)
    assert (follower.term, follower.leader_id) == (2, 2)
    stray = [
        Message(MT.APP, to=NodeId(3), from_=NodeId(1), term=1, index=1, log_term=1),
        Message(MT.HEARTBEAT_RESP, to=NodeId(3), from_=NodeId(1), term=2),
        Message(MT.PRE_VOTE, to=NodeId(3), from_=NodeId(1), term=3, index=0, log_term=0),
    ]
    campaigned_at = None
    for tick in range(1, 2 * 10 + 1):  # election_timeout_ticks is 10 in the harness
        for message in stray:
            follower.step(message)
        follower.tick()
        sent = net.process(3)
        if any(m.type in (MT.PRE_VOTE, MT.VOTE) and m.from_ == 3 for m in sent):
            campaigned_at = tick
            break
    assert campaigned_at is not None, "messages from non-leaders kept resetting the timer"
    assert follower.term == 2  # a pre-vote campaign does not raise the term yet


def _campaign_intervals(seed: int, *, pre_vote: bool, campaigns: int = 12) -> list[int]:
    net = Network(seed=seed, pre_vote=pre_vote, check_quorum=pre_vote)
    net.elect(1)
    net.isolate(3)
    started, intervals = 0, []
    for tick in range(1, 40 * campaigns):
        net.tick(3)
        if any(m.type in (MT.PRE_VOTE, MT.VOTE) for m in net.process(3)):
            intervals.append(tick - started)
            started = tick
            if len(intervals) == campaigns:
                break
    return intervals


def test_each_election_of_a_node_draws_a_fresh_timeout_from_the_seeded_generator() -> None:
    # Pitfall 6: the core redraws on every role/term change (etcd does the same), so each
    # campaign of a node that keeps losing waits a timeout of its own in [10, 20).
    for pre_vote in (True, False):
        intervals = _campaign_intervals(seed=1, pre_vote=pre_vote)
        assert len(intervals) == 12
        assert all(10 <= t < 20 for t in intervals), intervals
        assert len(set(intervals)) >= 3, f"timeouts are not drawn afresh: {intervals}"
        assert _campaign_intervals(seed=1, pre_vote=pre_vote) == intervals
        assert _campaign_intervals(seed=2, pre_vote=pre_vote) != intervals
