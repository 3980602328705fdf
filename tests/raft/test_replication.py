"""Replication: conflict truncation, fast backtracking, the commit rule, pipelining."""

from __future__ import annotations

import pytest

from hongbao.raft.config import DeliberateBugs
from hongbao.raft.errors import NotLeader, ProposalDropped
from hongbao.raft.types import Entry, Message, MessageType, NodeId, Role

from .harness import Network

MT = MessageType


def append(
    to: int, frm: int, term: int, index: int, log_term: int, entries: list[Entry], commit: int = 0
) -> Message:
    return Message(
        MT.APP,
        to=NodeId(to),
        from_=NodeId(frm),
        term=term,
        index=index,
        log_term=log_term,
        entries=tuple(entries),
        commit=commit,
    )


def follower_with(terms: list[int]) -> Network:
    net = Network(pre_vote=False, check_quorum=False)
    net.replicas[1].storage.append([Entry(term=t, index=i + 1) for i, t in enumerate(terms)])
    net.restart(1, pre_vote=False, check_quorum=False)
    return net


def log_terms(net: Network, node: int) -> list[int]:
    core = net.core(node)
    return [core.term_at(i) or 0 for i in range(1, core.last_index + 1)]


def test_conflicting_suffix_is_truncated_at_the_first_conflict_only() -> None:
    net = follower_with([1, 1, 2, 2])
    net.core(1).step(append(1, 2, term=3, index=2, log_term=1, entries=[Entry(3, 3)]))
    [answer] = net.process(1)
    assert not answer.reject
    assert answer.index == 3
    assert log_terms(net, 1) == [1, 1, 3]


def test_stale_duplicate_append_does_not_truncate() -> None:
    """Pitfall 9: entries that already match must not cut off what follows them."""
    net = follower_with([1, 1, 1, 1])
    net.core(1).step(append(1, 2, term=1, index=1, log_term=1, entries=[Entry(1, 2)]))
    [answer] = net.process(1)
    assert not answer.reject
    assert answer.index == 2
    assert log_terms(net, 1) == [1, 1, 1, 1]


def test_follower_commit_is_bounded_by_the_last_matching_entry() -> None:
    """Pitfall 13: commit = min(leader commit, last new entry), never leader commit alone."""
    net = follower_with([1, 1, 2, 2])
    net.core(1).step(append(1, 2, term=2, index=1, log_term=1, entries=[], commit=4))
    net.process(1)
    assert net.core(1).commit_index == 1


def test_rejection_carries_a_term_hint() -> None:
    net = follower_with([1, 1, 2, 2, 2, 2])
    net.core(1).step(append(1, 2, term=5, index=6, log_term=4, entries=[]))
    [answer] = net.process(1)
    assert answer.reject
    # The largest index whose term is <= 4 is 6 (term 2): the leader can skip to term 2.
    assert (answer.reject_hint, answer.log_term) == (6, 2)
    net.core(1).step(append(1, 2, term=5, index=6, log_term=1, entries=[]))
    [answer] = net.process(1)
    assert (answer.reject_hint, answer.log_term) == (2, 1)


def test_fast_backtracking_needs_few_round_trips() -> None:
    """Pitfall 10: a follower 200 entries off in another term converges in a few probes."""
    net = Network(pre_vote=False, check_quorum=False)
    net.elect(1)
    net.isolate(3)
    for i in range(200):
        net.core(1).propose(b"a%d" % i)
    net.stabilize()
    # Node 3 gets a divergent tail of its own by leading alone in a later term.
    net.replicas[3].storage.append(
        [Entry(term=2, index=net.core(3).last_index + 1 + i, data=b"z") for i in range(300)]
    )
    net.restart(3, pre_vote=False, check_quorum=False)
    net.heal()
    net.sent.clear()
    net.core(1).propose(b"go")
    net.tick_all(3)
    rejects = [m for m in net.sent if m.type is MT.APP_RESP and m.reject and m.from_ == 3]
    assert len(rejects) <= 3
    assert net.applied_data(3) == net.applied_data(1)


def test_leader_commits_by_counting_only_entries_of_its_term() -> None:
    """Figure 8 of the Raft paper, step by step (pitfall 14)."""
    outcome = _figure8(DeliberateBugs())
    assert outcome["s1_commit_in_c"] < 2, "an entry of an older term was committed by counting"
    assert outcome["s5_term_at_2"] == 2  # never committed, so it may be overwritten
    applied = outcome["applied"]
    assert isinstance(applied, dict)
    longest = max(applied.values(), key=len)
    assert (2, 2) in longest, "S5's entry at index 2 commits in the end"
    for node, seq in applied.items():
        assert seq == longest[: len(seq)], f"node {node} applied a divergent sequence"


def test_figure8_deliberate_bug_loses_a_committed_entry() -> None:
    outcome = _figure8(DeliberateBugs(commit_old_term_by_count=True))
    assert outcome["s1_commit_in_c"] == 2
    # Leader completeness is broken: the new leader lacks the entry S1 committed (term 1).
    assert outcome["s5_term_at_2"] == 2


def _figure8(bugs: DeliberateBugs) -> dict[str, object]:
    net = Network(ids=range(1, 6), pre_vote=False, check_quorum=False, bugs=bugs)
    net.elect(1)  # term 1, no-op at index 1 committed everywhere
    # (a) S1 leads; its entry at index 2 reaches S2 only.
    for other in (3, 4, 5):
        net.cut(1, other)
    net.core(1).propose(b"s1-index-2")
    net.stabilize()
    # (b) S5 is elected with S3 and S4 and writes index 2 in its term; nobody gets it.
    net.heal()
    net.isolate(1)
    net.isolate(2)
    net.dropped_types = {MT.APP}
    net.core(5).campaign()
    net.stabilize()
    assert net.core(5).role is Role.LEADER
    # (c) S5 crashes; S1 returns and is elected; it replicates index 2 (only) to S2, S3.
    net.heal()
    net.isolate(5)
    net.restart(1, pre_vote=False, check_quorum=False, bugs=bugs)
    net.hook = _only_index_2
    _campaign_until_leader(net, 1)
    assert net.core(1).term == 3
    s1_commit_in_c = net.core(1).commit_index
    # (d) S1 crashes before index 3 spreads; S5 returns and wins with S2, S3, S4.
    net.hook = None
    net.heal()
    net.isolate(1)
    net.restart(5, pre_vote=False, check_quorum=False, bugs=bugs)
    net.dropped_types = {MT.APP}
    _campaign_until_leader(net, 5)
    s5_term_at_2 = net.core(5).term_at(2)
    applied = {n: [(e.index, e.term) for e in net.replicas[n].applied] for n in range(1, 6)}
    if s1_commit_in_c < 2:
        net.dropped_types = set()
        net.core(5).propose(b"s5-after")
        net.tick_all(3)  # heartbeats resume the probes that were dropped during the election
        applied = {n: [(e.index, e.term) for e in net.replicas[n].applied] for n in range(1, 6)}
    return {"s1_commit_in_c": s1_commit_in_c, "applied": applied, "s5_term_at_2": s5_term_at_2}


def _campaign_until_leader(net: Network, node: int) -> None:
    for _ in range(5):
        net.core(node).campaign()
        net.stabilize()
        if net.core(node).role is Role.LEADER:
            return
    raise AssertionError(f"node {node} could not win an election")


def _only_index_2(m: Message) -> Message | None:
    if m.type is MT.APP and m.from_ == 1:
        if m.to not in (2, 3):
            return None
        kept = tuple(e for e in m.entries if e.index <= 2)
        return Message(
            m.type,
            to=m.to,
            from_=m.from_,
            term=m.term,
            log_term=m.log_term,
            index=m.index,
            entries=kept,
            commit=m.commit,
        )
    return m


def test_pipelining_is_bounded_by_the_inflight_window() -> None:
    net = Network(
        pre_vote=False, check_quorum=False, inflight_messages_max=4, entries_per_message_max=1
    )
    net.elect(1)
    net.cut(1, 2)
    net.cut(1, 3)
    for i in range(20):
        net.core(1).propose(b"p%d" % i)
    messages = net.process(1)
    appends_to_2 = [m for m in messages if m.type is MT.APP and m.to == 2]
    assert 1 <= len(appends_to_2) <= 4
    assert all(len(m.entries) <= 1 for m in appends_to_2)


def test_late_and_duplicated_responses_never_move_match_backwards() -> None:
    net = Network(pre_vote=False, check_quorum=False)
    net.elect(1)
    for i in range(5):
        net.core(1).propose(b"x%d" % i)
    net.stabilize()
    match_before = net.core(1).status().peers[NodeId(2)].match
    stale = Message(MT.APP_RESP, to=NodeId(1), from_=NodeId(2), term=1, index=2)
    net.core(1).step(stale)
    net.core(1).step(stale)
    assert net.core(1).status().peers[NodeId(2)].match == match_before == 6
    # A response from an older term is ignored entirely.
    net.core(2).campaign()
    net.stabilize()
    old = Message(MT.APP_RESP, to=NodeId(2), from_=NodeId(1), term=1, index=1, reject=True)
    net.core(2).step(old)
    assert net.core(2).role is Role.LEADER


def test_proposals_are_refused_off_the_leader_with_a_hint() -> None:
    net = Network()
    net.elect(1)
    with pytest.raises(NotLeader) as refused:
        net.core(2).propose(b"x")
    assert refused.value.leader_hint == 1


def test_uncommitted_bytes_are_bounded() -> None:
    net = Network(pre_vote=False, check_quorum=False, uncommitted_bytes_max=100)
    net.elect(1)
    net.isolate(1)
    net.core(1).propose(b"x" * 60)
    with pytest.raises(ProposalDropped):
        net.core(1).propose(b"y" * 60)


def test_leader_restart_keeps_log_and_term() -> None:
    net = Network(pre_vote=False, check_quorum=False)
    net.elect(1)
    net.core(1).propose(b"durable")
    net.stabilize()
    net.restart(1, pre_vote=False, check_quorum=False)
    assert net.core(1).term == 1
    assert net.core(1).commit_index == 2
    assert net.core(1).last_index == 2


def test_rejected_append_drops_a_replicating_follower_back_to_probing() -> None:
    # Pitfall 12: pipeline while appends succeed, one message at a time after a rejection.
    net = Network(
        pre_vote=False, check_quorum=False, inflight_messages_max=4, entries_per_message_max=1
    )
    net.elect(1)
    net.cut(1, 3)
    leader = net.core(1)
    assert leader.status().peers[NodeId(2)].state == "replicate"
    for i in range(4):
        leader.propose(b"p%d" % i)
    pipelined = [m for m in net.process(1) if m.type is MT.APP and m.to == 2]
    assert len(pipelined) == 4
    net.deliver(pipelined[1:])  # the first one is lost: 2 rejects the other three
    rejects = net.process(2)
    assert len(rejects) == 3
    assert all(m.reject for m in rejects)
    net.deliver(rejects)
    assert leader.status().peers[NodeId(2)].state == "probe"
    for i in range(4, 8):
        leader.propose(b"p%d" % i)
    probes = [m for m in net.process(1) if m.type is MT.APP and m.to == 2]
    assert len(probes) == 1, "a probing follower gets one append in flight, not a window"
    assert probes[0].index == pipelined[0].index
    net.deliver(probes)
    [ack] = net.process(2)
    assert not ack.reject
    net.deliver([ack])
    assert leader.status().peers[NodeId(2)].state == "replicate"
    window = [m for m in net.process(1) if m.type is MT.APP and m.to == 2]
    assert len(window) == 4, "pipelining resumes once the probe is acknowledged"
    net.deliver(window)
    net.stabilize()
    assert net.applied_data(2) == [b"p%d" % i for i in range(8)]
