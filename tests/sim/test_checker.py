"""The checker catches hand-made violations, and accepts the legal histories next to them."""

from __future__ import annotations

import pytest

from hongbao.raft.confchange import ConfChange, ConfChangeType
from hongbao.raft.storage import MemoryStorage
from hongbao.raft.types import ConfState, Entry, EntryType, NodeId
from hongbao.sim.checker import Checker, Violation, ViolationKind
from hongbao.sim.state_machine import MachineImage, StateMachine

CONF = ConfState(voters=frozenset({NodeId(1), NodeId(2), NodeId(3)}))
N1, N2, N3 = NodeId(1), NodeId(2), NodeId(3)


def log_of(*terms: int) -> MemoryStorage:
    """A log holding one entry per term given, from index 1."""
    storage = MemoryStorage(CONF)
    storage.append([Entry(term=t, index=i, data=b"x%d" % i) for i, t in enumerate(terms, 1)])
    return storage


def apply_all(checker: Checker, node: NodeId, entries: list[Entry]) -> StateMachine:
    machine = StateMachine(MachineImage.initial(CONF))
    for entry in entries:
        checker.on_apply(node, entry, machine.apply(entry))
    return machine


def entries(*pairs: tuple[int, bytes]) -> list[Entry]:
    return [Entry(term=t, index=i, data=d) for i, (t, d) in enumerate(pairs, 1)]


def expect(kind: ViolationKind) -> pytest.RaisesExc[Violation]:
    return pytest.raises(Violation, match=kind.value)


# -- election safety ---------------------------------------------------------------------


def test_two_leaders_in_one_term_are_caught() -> None:
    checker = Checker()
    assert checker.on_role(N1, term=3, is_leader=True, log=log_of(1, 3))
    with expect(ViolationKind.ELECTION_SAFETY):
        checker.on_role(N2, term=3, is_leader=True, log=log_of(1, 3))


def test_election_safety_spans_the_whole_run_even_after_the_leader_stepped_down() -> None:
    checker = Checker()
    checker.on_role(N1, term=3, is_leader=True, log=log_of(1))
    checker.on_role(N1, term=4, is_leader=False, log=log_of(1))
    checker.on_down(N1)
    with expect(ViolationKind.ELECTION_SAFETY):
        checker.on_role(N2, term=3, is_leader=True, log=log_of(1))


def test_leaders_of_different_terms_are_fine_and_counted_once() -> None:
    checker = Checker()
    assert checker.on_role(N1, term=2, is_leader=True, log=log_of(1))
    assert not checker.on_role(N1, term=2, is_leader=True, log=log_of(1))
    assert checker.on_role(N2, term=3, is_leader=True, log=log_of(1))
    assert checker.leaders_by_term == {2: N1, 3: N2}


# -- log matching -------------------------------------------------------------------------


def test_same_index_and_term_with_different_payloads_breaks_log_matching() -> None:
    checker = Checker()
    checker.on_persist(N1, (Entry(term=2, index=5, data=b"a"),), prev_term=1)
    with expect(ViolationKind.LOG_MATCHING):
        checker.on_persist(N2, (Entry(term=2, index=5, data=b"b"),), prev_term=1)


def test_same_entry_after_a_different_predecessor_breaks_log_matching() -> None:
    checker = Checker()
    checker.on_persist(N1, (Entry(term=2, index=5, data=b"a"),), prev_term=1)
    with expect(ViolationKind.LOG_MATCHING):
        checker.on_persist(N2, (Entry(term=2, index=5, data=b"a"),), prev_term=2)


def test_a_duplicated_append_is_fine() -> None:
    checker = Checker()
    batch = (Entry(term=2, index=5, data=b"a"), Entry(term=2, index=6, data=b"b"))
    checker.on_persist(N1, batch, prev_term=1)
    checker.on_persist(N2, batch, prev_term=1)
    checker.on_persist(N2, batch[1:], prev_term=2)


# -- state machine safety -----------------------------------------------------------------


def test_diverging_applied_sequences_are_caught() -> None:
    checker = Checker()
    apply_all(checker, N1, entries((1, b"a"), (1, b"b")))
    with expect(ViolationKind.STATE_MACHINE_SAFETY):
        apply_all(checker, N2, entries((1, b"a"), (2, b"c")))


def test_one_applied_sequence_may_be_a_prefix_of_another() -> None:
    checker = Checker()
    apply_all(checker, N1, entries((1, b"a"), (1, b"b"), (2, b"c")))
    apply_all(checker, N2, entries((1, b"a")))
    assert len(checker.applied) == 3


def test_a_snapshot_that_does_not_match_the_global_sequence_is_caught() -> None:
    checker = Checker()
    good = apply_all(checker, N1, entries((1, b"a"), (1, b"b")))
    checker.on_restore(N2, good.image)  # the same state: fine
    forged = StateMachine(MachineImage.initial(CONF))
    forged.apply(Entry(term=1, index=1, data=b"a"))
    forged.apply(Entry(term=1, index=2, data=b"forged"))
    with expect(ViolationKind.STATE_MACHINE_SAFETY):
        checker.on_restore(N3, forged.image)


def test_two_nodes_committing_different_entries_at_one_index_are_caught() -> None:
    checker = Checker()
    checker.on_commit(N1, term=2, commit_index=2, log=log_of(1, 2))
    with expect(ViolationKind.STATE_MACHINE_SAFETY):
        checker.on_commit(N2, term=3, commit_index=2, log=log_of(1, 3))


# -- leader completeness ------------------------------------------------------------------


def test_a_leader_missing_an_entry_committed_in_an_earlier_term_is_caught() -> None:
    checker = Checker()
    checker.on_commit(N1, term=2, commit_index=3, log=log_of(1, 2, 2))
    with expect(ViolationKind.LEADER_COMPLETENESS):
        checker.on_role(N2, term=3, is_leader=True, log=log_of(1, 2))


def test_a_leader_holding_another_term_at_a_committed_index_is_caught() -> None:
    """Figure 8: the committed term-2 entry at index 2 was overwritten by a term-3 one."""
    checker = Checker()
    checker.on_commit(N1, term=4, commit_index=2, log=log_of(1, 2))
    with expect(ViolationKind.LEADER_COMPLETENESS):
        checker.on_role(N3, term=5, is_leader=True, log=log_of(1, 3))


def test_a_commit_learnt_after_the_election_is_checked_against_the_sitting_leader() -> None:
    checker = Checker()
    checker.on_role(N2, term=5, is_leader=True, log=log_of(1, 3))
    with expect(ViolationKind.LEADER_COMPLETENESS):
        checker.on_commit(N1, term=4, commit_index=2, log=log_of(1, 2))


def test_a_leader_may_lack_what_was_committed_only_in_its_own_or_a_later_term() -> None:
    checker = Checker()
    checker.on_commit(N1, term=5, commit_index=3, log=log_of(1, 5, 5))
    checker.on_role(N2, term=4, is_leader=True, log=log_of(1))  # elected with old votes


def test_a_leader_may_cover_committed_entries_with_its_snapshot() -> None:
    checker = Checker()
    checker.on_commit(N1, term=2, commit_index=3, log=log_of(1, 2, 2))
    compacted = log_of(1, 2, 2, 3)
    compacted.create_snapshot(index=3, conf_state=CONF, data=b"")
    compacted.compact(3)
    checker.on_role(N2, term=3, is_leader=True, log=compacted)


# -- durability and reads -----------------------------------------------------------------


def test_an_acknowledged_write_replaced_by_another_is_a_durability_violation() -> None:
    checker = Checker()
    apply_all(checker, N1, entries((1, b"a"), (1, b"w")))
    checker.on_ack(2, 1, b"w")
    with expect(ViolationKind.DURABILITY):
        apply_all(checker, N2, entries((1, b"a"), (2, b"other")))


def test_acknowledging_a_write_nobody_applied_is_caught() -> None:
    with expect(ViolationKind.DURABILITY):
        Checker().on_ack(1, 1, b"w")


def test_a_commit_index_beyond_the_nodes_own_log_is_caught() -> None:
    with expect(ViolationKind.DURABILITY):
        Checker().on_commit(N1, term=2, commit_index=5, log=log_of(1, 2))


def test_members_behind_the_acknowledged_writes_are_named() -> None:
    checker = Checker()
    ahead = apply_all(checker, N1, entries((1, b"a"), (1, b"w")))
    checker.on_ack(2, 1, b"w")
    behind = apply_all(checker, N2, entries((1, b"a")))
    assert checker.check_converged({N1: ahead.image, N2: behind.image}) == [N2]
    assert checker.check_converged({N1: ahead.image}) == []


def test_a_stale_read_is_caught() -> None:
    checker = Checker()
    old = apply_all(checker, N2, entries((1, b"a")))
    apply_all(checker, N1, entries((1, b"a"), (1, b"w")))
    checker.on_ack(2, 1, b"w")
    floor = checker.read_floor()
    assert floor == 2
    with expect(ViolationKind.STALE_READ):
        checker.on_read_served(N2, floor=floor, applied_index=1, digest=old.image.digest)


def test_a_read_that_began_before_the_write_was_acknowledged_may_miss_it() -> None:
    checker = Checker()
    old = apply_all(checker, N2, entries((1, b"a")))
    floor = checker.read_floor()
    apply_all(checker, N1, entries((1, b"a"), (1, b"w")))
    checker.on_ack(2, 1, b"w")
    checker.on_read_served(N2, floor=floor, applied_index=1, digest=old.image.digest)


def test_a_read_returning_a_state_outside_the_global_sequence_is_caught() -> None:
    checker = Checker()
    apply_all(checker, N1, entries((1, b"a")))
    with expect(ViolationKind.STATE_MACHINE_SAFETY):
        checker.on_read_served(N1, floor=0, applied_index=1, digest=bytes(16))


def test_conf_change_entries_change_the_machines_membership() -> None:
    machine = StateMachine(MachineImage.initial(CONF))
    change = ConfChange(ConfChangeType.REMOVE_NODE, N3)
    image = machine.apply(Entry(term=1, index=1, type=EntryType.CONF_CHANGE, data=change.encode()))
    assert image.conf_state == ConfState(voters=frozenset({N1, N2}))
