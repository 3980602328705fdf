"""The contract every ``WritableLogStorage`` honours; ``MemoryStorage`` is the reference.

Use it by subclassing :class:`StorageContract` in a ``test_*.py`` module and overriding
the ``make_storage`` fixture (a factory taking the bootstrap ``ConfState``). An
implementation that persists overrides ``reopen`` too: the tests call it after writing
and before reading, so a persistent storage is checked to find everything again after a
restart. The in-memory reference keeps ``reopen`` as the identity.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest

from hongbao._invariant import InvariantViolation
from hongbao.raft.storage import (
    Compacted,
    SnapshotOutOfDate,
    Unavailable,
    WritableLogStorage,
)
from hongbao.raft.types import (
    ConfState,
    Entry,
    EntryType,
    HardState,
    NodeId,
    Snapshot,
    SnapshotMeta,
)

Factory = Callable[[ConfState], WritableLogStorage]
Reopen = Callable[[WritableLogStorage], WritableLogStorage]

CONF = ConfState(voters=frozenset({NodeId(1), NodeId(2), NodeId(3)}))
CONF_2 = ConfState(voters=frozenset({NodeId(1), NodeId(2)}), learners=frozenset({NodeId(4)}))


def ents(first: int, last: int, term: int, *, tag: bytes = b"") -> list[Entry]:
    """Entries ``first..last`` (inclusive) of ``term``, each with distinct data."""
    return [Entry(term=term, index=i, data=tag + b"e%d" % i) for i in range(first, last + 1)]


def everything(storage: WritableLogStorage) -> list[Entry]:
    return storage.entries(lo=storage.first_index(), hi=storage.last_index() + 1, max_bytes=None)


class StorageContract:
    @pytest.fixture
    def make_storage(self) -> Factory:
        raise NotImplementedError("subclasses provide a storage factory")

    @pytest.fixture
    def reopen(self) -> Reopen:
        return lambda storage: storage

    @pytest.fixture
    def storage(self, make_storage: Factory) -> WritableLogStorage:
        return make_storage(CONF)

    @pytest.fixture
    def filled(self, storage: WritableLogStorage) -> WritableLogStorage:
        """Entries 1..3 of term 1 and 4..6 of term 2."""
        storage.append(ents(1, 3, 1) + ents(4, 6, 2))
        return storage

    @pytest.fixture
    def compacted(self, filled: WritableLogStorage) -> WritableLogStorage:
        """``filled`` with a snapshot at 4 and the log compacted through 3."""
        filled.create_snapshot(index=4, conf_state=CONF, data=b"state@4")
        filled.compact(3)
        return filled

    # -- a fresh storage -------------------------------------------------------------------

    def test_satisfies_the_protocol(self, storage: WritableLogStorage) -> None:
        assert isinstance(storage, WritableLogStorage)

    def test_initial_state_after_bootstrap(
        self, storage: WritableLogStorage, reopen: Reopen
    ) -> None:
        storage = reopen(storage)
        assert storage.initial_state() == (HardState(), CONF)
        assert storage.first_index() == 1
        assert storage.last_index() == 0
        assert storage.term(0) == 0
        assert storage.snapshot() == Snapshot(SnapshotMeta(index=0, term=0, conf_state=CONF))
        assert storage.entries(lo=1, hi=1, max_bytes=None) == []

    def test_bootstrap_keeps_learners(self, make_storage: Factory, reopen: Reopen) -> None:
        storage = reopen(make_storage(CONF_2))
        assert storage.initial_state()[1] == CONF_2
        assert storage.snapshot().meta.conf_state == CONF_2

    def test_fresh_boundaries(self, storage: WritableLogStorage) -> None:
        with pytest.raises(Compacted):
            storage.entries(lo=0, hi=1, max_bytes=None)
        with pytest.raises(Unavailable):
            storage.entries(lo=1, hi=2, max_bytes=None)
        with pytest.raises(Unavailable):
            storage.term(1)

    # -- entries and term ------------------------------------------------------------------

    def test_entries_ranges(self, filled: WritableLogStorage, reopen: Reopen) -> None:
        storage = reopen(filled)
        expected = ents(1, 3, 1) + ents(4, 6, 2)
        assert storage.first_index() == 1
        assert storage.last_index() == 6
        assert everything(storage) == expected
        assert storage.entries(lo=2, hi=5, max_bytes=None) == expected[1:4]
        assert storage.entries(lo=6, hi=7, max_bytes=None) == expected[5:]
        assert storage.entries(lo=3, hi=3, max_bytes=None) == []
        assert storage.entries(lo=7, hi=7, max_bytes=None) == []
        assert [storage.term(i) for i in range(7)] == [0, 1, 1, 1, 2, 2, 2]

    def test_entries_max_bytes(self, filled: WritableLogStorage) -> None:
        one = ents(1, 1, 1)[0].size_bytes
        assert all(e.size_bytes == one for e in everything(filled))
        assert filled.entries(lo=1, hi=7, max_bytes=0) == ents(1, 1, 1)  # at least one
        assert filled.entries(lo=1, hi=7, max_bytes=one - 1) == ents(1, 1, 1)
        assert filled.entries(lo=1, hi=7, max_bytes=one) == ents(1, 1, 1)
        assert filled.entries(lo=1, hi=7, max_bytes=2 * one) == ents(1, 2, 1)
        assert filled.entries(lo=1, hi=7, max_bytes=3 * one - 1) == ents(1, 2, 1)
        assert filled.entries(lo=2, hi=4, max_bytes=100 * one) == ents(2, 3, 1)
        assert len(filled.entries(lo=1, hi=7, max_bytes=None)) == 6

    def test_entries_keep_type_and_data(self, storage: WritableLogStorage, reopen: Reopen) -> None:
        written = [
            Entry(term=1, index=1),
            Entry(term=1, index=2, type=EntryType.CONF_CHANGE, data=b"\x00\x01"),
            Entry(term=3, index=3, data=bytes(range(256)) * 64),
        ]
        storage.append(written)
        assert everything(reopen(storage)) == written

    def test_returned_lists_are_fresh(self, filled: WritableLogStorage) -> None:
        got = filled.entries(lo=1, hi=4, max_bytes=None)
        got.clear()
        assert filled.entries(lo=1, hi=4, max_bytes=None) == ents(1, 3, 1)

    def test_boundaries_after_compaction(
        self, compacted: WritableLogStorage, reopen: Reopen
    ) -> None:
        storage = reopen(compacted)
        assert storage.first_index() == 4
        assert storage.last_index() == 6
        with pytest.raises(Compacted):
            storage.entries(lo=3, hi=5, max_bytes=None)  # lo == the snapshot point
        assert storage.entries(lo=4, hi=7, max_bytes=None) == ents(4, 6, 2)
        with pytest.raises(Unavailable):
            storage.entries(lo=4, hi=8, max_bytes=None)  # hi == last + 2
        with pytest.raises(Compacted):
            storage.term(2)
        assert storage.term(3) == 1  # the compaction point's term is kept
        assert storage.term(6) == 2
        with pytest.raises(Unavailable):
            storage.term(7)

    def test_lo_above_hi_is_a_bug(self, filled: WritableLogStorage) -> None:
        with pytest.raises(InvariantViolation):
            filled.entries(lo=4, hi=3, max_bytes=None)

    # -- append ----------------------------------------------------------------------------

    def test_append_overwrites_a_conflicting_suffix(
        self, filled: WritableLogStorage, reopen: Reopen
    ) -> None:
        filled.append(ents(4, 5, 3, tag=b"new"))
        storage = reopen(filled)
        assert storage.last_index() == 5
        assert everything(storage) == ents(1, 3, 1) + ents(4, 5, 3, tag=b"new")
        with pytest.raises(Unavailable):
            storage.term(6)

    def test_append_in_the_middle_drops_everything_after(self, filled: WritableLogStorage) -> None:
        filled.append(ents(2, 2, 1, tag=b"x"))
        assert filled.last_index() == 2
        assert everything(filled) == ents(1, 1, 1) + ents(2, 2, 1, tag=b"x")

    def test_append_extends_and_is_contiguous(self, filled: WritableLogStorage) -> None:
        filled.append(ents(7, 9, 2))
        assert filled.last_index() == 9
        assert everything(filled) == ents(1, 3, 1) + ents(4, 9, 2)
        filled.append([])
        assert filled.last_index() == 9

    def test_append_partly_below_first_index(
        self, compacted: WritableLogStorage, reopen: Reopen
    ) -> None:
        compacted.append(ents(2, 7, 3, tag=b"late"))
        storage = reopen(compacted)
        assert storage.first_index() == 4
        assert storage.term(3) == 1  # below the first index nothing changed
        assert everything(storage) == ents(4, 7, 3, tag=b"late")

    def test_append_entirely_below_first_index_is_ignored(
        self, compacted: WritableLogStorage
    ) -> None:
        compacted.append(ents(1, 3, 9))
        assert compacted.first_index() == 4
        assert compacted.last_index() == 6
        assert everything(compacted) == ents(4, 6, 2)

    def test_append_with_a_gap_is_a_bug(self, filled: WritableLogStorage) -> None:
        with pytest.raises(InvariantViolation):
            filled.append(ents(8, 9, 2))
        assert filled.last_index() == 6

    def test_append_of_non_contiguous_entries_is_a_bug(self, filled: WritableLogStorage) -> None:
        with pytest.raises(InvariantViolation):
            filled.append([*ents(7, 7, 2), *ents(9, 9, 2)])
        assert filled.last_index() == 6

    # -- hard state ------------------------------------------------------------------------

    def test_hard_state_round_trip(self, filled: WritableLogStorage, reopen: Reopen) -> None:
        filled.set_hard_state(HardState(term=2, vote=NodeId(3), commit=5))
        storage = reopen(filled)
        assert storage.initial_state() == (HardState(term=2, vote=NodeId(3), commit=5), CONF)
        storage.set_hard_state(HardState(term=7, vote=NodeId(0), commit=6))
        assert reopen(storage).initial_state()[0] == HardState(term=7, commit=6)

    def test_hard_state_term_never_goes_back(self, storage: WritableLogStorage) -> None:
        storage.set_hard_state(HardState(term=5, vote=NodeId(1)))
        with pytest.raises(InvariantViolation):
            storage.set_hard_state(HardState(term=4))
        assert storage.initial_state()[0] == HardState(term=5, vote=NodeId(1))

    # -- create_snapshot and compact -------------------------------------------------------

    def test_create_snapshot(self, filled: WritableLogStorage, reopen: Reopen) -> None:
        made = filled.create_snapshot(index=5, conf_state=CONF_2, data=b"state@5")
        assert made == Snapshot(SnapshotMeta(index=5, term=2, conf_state=CONF_2), b"state@5")
        storage = reopen(filled)
        assert storage.snapshot() == made
        assert storage.initial_state()[1] == CONF_2  # membership as of the snapshot point
        assert storage.first_index() == 1  # creating a snapshot compacts nothing
        assert everything(storage) == ents(1, 3, 1) + ents(4, 6, 2)

    def test_create_snapshot_out_of_date(self, filled: WritableLogStorage) -> None:
        filled.create_snapshot(index=4, conf_state=CONF, data=b"a")
        with pytest.raises(SnapshotOutOfDate):
            filled.create_snapshot(index=4, conf_state=CONF, data=b"b")
        with pytest.raises(SnapshotOutOfDate):
            filled.create_snapshot(index=2, conf_state=CONF, data=b"c")
        assert filled.snapshot().data == b"a"

    def test_create_snapshot_beyond_last_index_is_a_bug(self, filled: WritableLogStorage) -> None:
        with pytest.raises(InvariantViolation):
            filled.create_snapshot(index=7, conf_state=CONF, data=b"")

    def test_create_snapshot_of_the_last_index(self, filled: WritableLogStorage) -> None:
        made = filled.create_snapshot(index=6, conf_state=CONF, data=b"")
        assert made.meta.term == 2
        filled.compact(6)
        assert (filled.first_index(), filled.last_index(), filled.term(6)) == (7, 6, 2)
        filled.append(ents(7, 8, 3))
        assert everything(filled) == ents(7, 8, 3)

    def test_compact(self, compacted: WritableLogStorage, reopen: Reopen) -> None:
        compacted.compact(4)  # up to the snapshot point
        storage = reopen(compacted)
        assert storage.first_index() == 5
        assert storage.term(4) == 2
        assert everything(storage) == ents(5, 6, 2)
        assert storage.snapshot().meta.index == 4
        storage.compact(2)  # at or below the first index: nothing to do
        storage.compact(4)
        assert storage.first_index() == 5

    def test_compact_beyond_the_snapshot_is_a_bug(self, compacted: WritableLogStorage) -> None:
        with pytest.raises(InvariantViolation):
            compacted.compact(5)
        assert compacted.first_index() == 4

    # -- apply_snapshot --------------------------------------------------------------------

    def test_apply_snapshot_replaces_the_log(
        self, filled: WritableLogStorage, reopen: Reopen
    ) -> None:
        filled.set_hard_state(HardState(term=2, vote=NodeId(2), commit=4))
        snapshot = Snapshot(SnapshotMeta(index=10, term=4, conf_state=CONF_2), b"leader's")
        filled.apply_snapshot(snapshot)
        storage = reopen(filled)
        assert storage.snapshot() == snapshot
        assert storage.first_index() == 11
        assert storage.last_index() == 10
        assert storage.term(10) == 4
        with pytest.raises(Compacted):
            storage.term(9)
        with pytest.raises(Compacted):
            storage.entries(lo=10, hi=11, max_bytes=None)
        assert storage.entries(lo=11, hi=11, max_bytes=None) == []
        # The hard state is the runtime's to set; the membership comes from the snapshot.
        assert storage.initial_state() == (HardState(term=2, vote=NodeId(2), commit=4), CONF_2)
        storage.append(ents(11, 12, 4))
        assert everything(reopen(storage)) == ents(11, 12, 4)

    def test_apply_snapshot_below_the_last_index(self, filled: WritableLogStorage) -> None:
        filled.apply_snapshot(Snapshot(SnapshotMeta(index=3, term=1, conf_state=CONF)))
        assert (filled.first_index(), filled.last_index()) == (4, 3)
        with pytest.raises(Unavailable):
            filled.term(4)

    def test_apply_snapshot_out_of_date(self, compacted: WritableLogStorage) -> None:
        older = Snapshot(SnapshotMeta(index=3, term=1, conf_state=CONF), b"old")
        with pytest.raises(SnapshotOutOfDate):
            compacted.apply_snapshot(older)
        assert compacted.snapshot().data == b"state@4"
        assert compacted.first_index() == 4
        # The same index again is accepted (a repeated install is harmless).
        same = Snapshot(SnapshotMeta(index=4, term=2, conf_state=CONF), b"again")
        compacted.apply_snapshot(same)
        assert compacted.snapshot() == same
        assert (compacted.first_index(), compacted.last_index()) == (5, 4)

    def test_large_snapshot_round_trip(self, filled: WritableLogStorage, reopen: Reopen) -> None:
        data = bytes(range(251)) * 12_000  # about 3 MB: more than one storage chunk
        filled.create_snapshot(index=6, conf_state=CONF, data=data)
        storage = reopen(filled)
        assert storage.snapshot().data == data
        smaller = Snapshot(SnapshotMeta(index=8, term=3, conf_state=CONF), b"tiny")
        storage.apply_snapshot(smaller)
        assert reopen(storage).snapshot() == smaller
