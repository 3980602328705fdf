"""Campaign gating for a draining region (CockroachDB #66103) and the leader's quorum view.

A replica whose region drains must not take leadership back while another caught-up
replica exists, even when its log is as long as anyone's; but if no leader shows up for
``campaign_fallback_timeouts`` election timeouts it campaigns anyway (liveness).
``quorum_active()`` is what the runtime asks before accepting work on a leader.
"""

from __future__ import annotations

import pytest

from hongbao.raft.types import MessageType, NodeId, Role

from .harness import Network, make_config

MT = MessageType
TIMEOUT_TICKS = 10  # the harness's election timeout
CAMPAIGN_TYPES = (MT.PRE_VOTE, MT.VOTE)


def _campaigned(net: Network, node_id: int, since: int = 0) -> bool:
    return any(m.type in CAMPAIGN_TYPES and m.from_ == node_id for m in net.sent[since:])


def _tick_until_leader(net: Network, ticks_max: int, *, gone: int) -> tuple[int, int]:
    """Tick everyone until a node other than ``gone`` (the cut-off old leader) leads;
    returns (leader, ticks taken)."""
    for tick in range(1, ticks_max + 1):
        net.tick_all(1)
        leaders = [n for n in net.replicas if n != gone and net.core(n).role is Role.LEADER]
        if leaders:
            assert len(leaders) == 1
            return leaders[0], tick
    raise AssertionError(f"no leader within {ticks_max} ticks")


def test_default_is_allowed_and_the_flag_reads_back() -> None:
    net = Network()
    core = net.core(1)
    assert core.campaign_allowed is True
    core.set_campaign_allowed(False)
    assert core.campaign_allowed is False
    core.set_campaign_allowed(True)
    assert core.campaign_allowed is True


def test_draining_replica_with_the_longest_log_is_not_given_leadership_back() -> None:
    """Nodes 2 and 3 hold every entry, 4 and 5 miss the last ones; 2 drains, 1 dies.

    2's log is as long as any (its vote requests would win); 3 is the other caught-up
    replica. 2's timer is ticked alone first, for fewer timeouts than the fallback: it
    must start no campaign. Then the group elects 3, never 2.
    """
    net = Network((1, 2, 3, 4, 5))
    net.elect(1)
    net.cut(1, 4)
    net.cut(1, 5)
    for i in range(5):
        net.core(1).propose(b"late%d" % i)
    net.stabilize()
    assert net.core(2).last_index == net.core(3).last_index == net.core(1).last_index
    assert net.core(4).last_index < net.core(2).last_index
    net.core(2).set_campaign_allowed(False)
    net.heal()
    net.isolate(1)  # the leader is gone
    mark = len(net.sent)
    fallback = net.core(2).config.campaign_fallback_timeouts
    # Each randomized timeout is < 2 * TIMEOUT_TICKS: (fallback - 1) of them at most.
    net.tick(2, (fallback - 1) * TIMEOUT_TICKS)
    net.stabilize()
    assert not _campaigned(net, 2, mark), "a draining replica campaigned on its timeout"
    net.core(2).campaign()  # an explicit campaign() is refused too
    net.stabilize()
    assert not _campaigned(net, 2, mark)
    leader, _ = _tick_until_leader(net, 4 * TIMEOUT_TICKS, gone=1)
    assert leader == 3
    assert not _campaigned(net, 2, mark)
    # Under the new leader's heartbeats 2 never campaigns, however long it runs.
    net.tick_all(20 * TIMEOUT_TICKS)
    assert net.leader() == 3
    assert not _campaigned(net, 2, mark)
    assert net.core(2).role is Role.FOLLOWER


def test_draining_replica_ignores_a_transfer_to_it() -> None:
    net = Network()
    net.elect(1)
    net.core(2).set_campaign_allowed(False)
    net.core(1).transfer_leadership(NodeId(2))
    net.stabilize()
    assert any(m.type is MT.TIMEOUT_NOW and m.to == 2 for m in net.sent)
    assert net.leader() == 1
    assert net.core(1).term == 1
    net.tick_all(TIMEOUT_TICKS + 1)  # the transfer is abandoned within a timeout
    assert net.leader() == 1
    net.core(1).propose(b"after")  # proposals resumed
    net.stabilize()
    assert b"after" in net.applied_data(2)
    net.core(2).set_campaign_allowed(True)  # undrained: a transfer works again
    net.core(1).transfer_leadership(NodeId(2))
    net.stabilize()
    assert net.leader() == 2


def test_fallback_elects_a_draining_replica_when_no_allowed_one_can_lead() -> None:
    """Every survivor drains: after the fallback timeouts one of them leads anyway."""
    net = Network()
    net.elect(1)
    net.core(1).propose(b"x")
    net.stabilize()
    for node in (2, 3):
        net.core(node).set_campaign_allowed(False)
    net.isolate(1)
    mark = len(net.sent)
    leader, ticks = _tick_until_leader(net, 10 * TIMEOUT_TICKS, gone=1)
    fallback = net.core(2).config.campaign_fallback_timeouts
    assert leader in (2, 3)
    assert ticks >= fallback * TIMEOUT_TICKS, "campaigned before the fallback was due"
    assert ticks <= 2 * fallback * TIMEOUT_TICKS + TIMEOUT_TICKS
    assert _campaigned(net, leader, mark)
    net.core(leader).propose(b"y")
    net.stabilize()
    assert b"y" in net.applied_data(5 - leader)


def test_fallback_elects_the_draining_replica_whose_log_only_it_holds() -> None:
    """2 (draining) has entries 3 lacks, so 3 can never win 2's vote: 2 must lead."""
    net = Network()
    net.elect(1)
    net.cut(1, 3)
    for i in range(3):
        net.core(1).propose(b"only-on-2-%d" % i)
    net.stabilize()
    net.core(2).set_campaign_allowed(False)
    net.heal()
    net.isolate(1)
    leader, _ = _tick_until_leader(net, 12 * TIMEOUT_TICKS, gone=1)
    assert leader == 2
    net.stabilize()
    assert net.applied_data(3)[-3:] == [b"only-on-2-%d" % i for i in range(3)]


def test_a_fallback_count_is_reset_by_hearing_a_leader() -> None:
    """Timeouts interrupted by a leader's message start counting again from zero."""
    net = Network(campaign_fallback_timeouts=2)
    net.elect(1)
    core = net.core(2)
    core.set_campaign_allowed(False)
    net.isolate(2)
    mark = len(net.sent)
    for _ in range(5):
        net.tick(2, 2 * TIMEOUT_TICKS)  # one timeout at least, fewer than two
        net.heal()
        net.tick(1, 1)  # a heartbeat reaches 2
        net.stabilize()
        net.isolate(2)
        assert core.leader_id == 1
    assert not _campaigned(net, 2, mark)


def test_allowed_replica_behaviour_is_unchanged() -> None:
    net = Network()
    net.elect(1)
    net.isolate(1)
    leader, ticks = _tick_until_leader(net, 4 * TIMEOUT_TICKS, gone=1)
    assert leader in (2, 3)
    assert ticks < 2 * TIMEOUT_TICKS + 2


@pytest.mark.parametrize("value", [0, -1, 1001, True, 2.0])
def test_fallback_timeouts_is_validated(value: object) -> None:
    with pytest.raises(ValueError, match="campaign_fallback_timeouts"):
        make_config(1, campaign_fallback_timeouts=value).validate()


def test_quorum_active_on_a_healthy_leader_only() -> None:
    net = Network()
    net.elect(1)
    assert net.core(1).quorum_active()  # the votes that elected it count
    assert not net.core(2).quorum_active()
    for _ in range(5 * TIMEOUT_TICKS):
        net.tick_all(1)
        assert net.core(1).quorum_active()


def test_quorum_active_turns_false_within_a_timeout_of_isolation() -> None:
    """Without CheckQuorum the cut-off leader keeps its role for ever: quorum_active()
    must still say within one election timeout that it cannot serve, and recover."""
    net = Network(check_quorum=False)
    net.elect(1)
    net.isolate(1)
    ticks_to_false = None
    for tick in range(1, 3 * TIMEOUT_TICKS):
        net.tick(1, 1)
        net.stabilize()
        if not net.core(1).quorum_active():
            ticks_to_false = tick
            break
    assert ticks_to_false is not None
    assert ticks_to_false <= TIMEOUT_TICKS + 1
    assert net.core(1).role is Role.LEADER
    net.heal()
    net.tick(1, 1)  # a heartbeat round
    net.stabilize()
    assert net.core(1).quorum_active()


def test_quorum_active_counts_a_quorum_not_every_voter() -> None:
    net = Network((1, 2, 3, 4, 5))
    net.elect(1)
    net.isolate(4)
    net.isolate(5)
    net.tick_all(3 * TIMEOUT_TICKS)
    assert net.leader() == 1
    assert net.core(1).quorum_active()
    net.isolate(3)
    for _ in range(TIMEOUT_TICKS + 1):
        net.tick(1, 1)
        net.stabilize()
    assert not net.core(1).quorum_active()


def test_single_voter_leader_is_its_own_quorum() -> None:
    net = Network((1,))
    net.elect(1)
    assert net.core(1).role is Role.LEADER
    assert net.core(1).quorum_active()


def test_forbidding_ends_a_campaign_in_progress() -> None:
    """A drain lands while the replica campaigns: it must not win that election."""
    net = Network()
    net.elect(1)
    net.isolate(1)
    net.isolate(2)  # 2 cannot collect votes yet
    net.tick(2, 2 * TIMEOUT_TICKS)  # 2's timeout fires: it pre-campaigns
    core = net.core(2)
    assert core.role is Role.PRE_CANDIDATE
    term = core.term
    core.set_campaign_allowed(False)
    assert core.role is Role.FOLLOWER
    assert core.term == term
    net.heal()
    net.isolate(1)
    net.stabilize()  # late answers to the abandoned campaign change nothing
    assert core.role is Role.FOLLOWER
    core.set_campaign_allowed(False)  # forbidding again is a no-op


def test_a_replica_that_just_led_does_not_fall_back_at_once() -> None:
    """Leading counts as hearing a leader. Node 1 runs up its count of leaderless timeouts,
    then wins, is drained while leading and gets cut off: CheckQuorum deposes it (by two
    timeouts), and its fallback must count whole timeouts from its own leadership on,
    not from the count it had before it led."""
    net = Network()
    net.isolate(1)
    fallback = net.core(1).config.campaign_fallback_timeouts
    net.tick(1, fallback * 2 * TIMEOUT_TICKS)  # every timeout fired without a leader
    net.heal()
    net.elect(1)
    assert net.leader() == 1
    net.core(1).set_campaign_allowed(False)
    net.isolate(1)
    mark = len(net.sent)
    # Deposed by 2 timeouts, then a fallback campaign no sooner than `fallback` more.
    net.tick(1, (2 + fallback) * TIMEOUT_TICKS - 1)
    net.stabilize()
    assert net.core(1).role is Role.FOLLOWER
    assert not _campaigned(net, 1, mark)
