"""The meta group's state machine: deterministic, refusals as results, bad bytes skipped,
snapshots that round-trip byte for byte."""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hongbao.ledger.store import MemoryStore, Table
from hongbao.meta import codec
from hongbao.meta.codec import MetaCodecError
from hongbao.meta.machine import KEY_STATE, MetaMachine, MetaResult, snapshot_problem
from hongbao.meta.state import ClusterState, RegionState, SetRegion
from hongbao.node.state_machine import GroupMachine, LedgerMachine

REGIONS = ("shenzhen", "shanghai", "tianjin")
INITIAL = ClusterState.initial("test-cluster", REGIONS)
D, A, X = RegionState.DRAINING, RegionState.ACTIVE, RegionState.DRAINED


def fresh() -> tuple[MetaMachine, MemoryStore]:
    machine, store = MetaMachine(INITIAL), MemoryStore()
    machine.init(store)
    return machine, store


def entry(*commands: SetRegion, ts_ms: int = 1_000) -> bytes:
    return codec.encode_entry(ts_ms, commands)


def test_both_machines_satisfy_the_group_machine_protocol() -> None:
    machines: list[GroupMachine] = [
        MetaMachine(INITIAL),
        LedgerMachine(shard_id=0, shard_count=1, limits=None),
    ]
    assert [m.kind for m in machines] == ["meta", "ledger"]


def test_initial_state_until_something_applies() -> None:
    machine, store = fresh()
    assert machine.is_initialised(store)
    assert machine.state(store) == INITIAL
    assert machine.applied_index(store) == 0
    assert machine.state(store).version == 0


def test_a_set_region_applies_in_order_and_bumps_the_version_each_time() -> None:
    machine, store = fresh()
    results = machine.apply_entry(
        store, 1, entry(SetRegion("tianjin", D, deadline_ms=9_000), SetRegion("tianjin", X))
    )
    assert [r.refused for r in results] == ["", ""]
    assert [r.state.version for r in results] == [1, 2]
    assert results[0].state.region("tianjin").deadline_ms == 9_000  # type: ignore[union-attr]
    state = machine.state(store)
    assert state.version == 2
    assert state.state_of("tianjin") is X
    assert state.region("tianjin").since_ms == 1_000  # type: ignore[union-attr]  # entry's ts
    assert state.region("tianjin").deadline_ms == 0  # type: ignore[union-attr]  # not draining
    assert machine.applied_index(store) == 1


def test_refusals_are_results_and_change_nothing() -> None:
    machine, store = fresh()
    machine.apply_entry(store, 1, entry(SetRegion("tianjin", D)))
    results = machine.apply_entry(
        store,
        2,
        entry(
            SetRegion("atlantis", D),  # unknown region
            SetRegion("tianjin", A, expected_version=7),  # stale expected version
            SetRegion("tianjin", A, expected_version=1),  # the right one: applies
        ),
    )
    unknown, stale, applied = results
    assert "unknown region 'atlantis'" in unknown.refused
    assert not unknown.stale_version
    assert stale.stale_version
    assert "version 1, not 7" in stale.refused
    assert stale.state.version == 1
    assert applied == MetaResult(machine.state(store))
    assert machine.state(store).version == 2
    assert machine.state(store).state_of("tianjin") is A


@pytest.mark.parametrize(
    "data",
    [
        b"\x00",  # unknown format
        b"\x01\x00",  # truncated
        entry(SetRegion("tianjin", D)) + b"\x00",  # trailing bytes
        entry(SetRegion("tianjin", D)).replace(b"tianjin", b"tian\xffin"),  # not UTF-8
        bytes([1]) + (1).to_bytes(8, "big") + (0).to_bytes(2, "big"),  # zero commands
        bytes([1]) + (1).to_bytes(8, "big") + (1).to_bytes(2, "big") + b"\x07tianjin\x09"
        + bytes(16),  # state code 9
    ],
)
def test_malformed_entries_are_skipped_and_counted(data: bytes) -> None:
    machine, store = fresh()
    assert machine.apply_entry(store, 1, data) == ()
    assert machine.applied_index(store) == 1
    assert machine.malformed_entries(store) == 1
    assert machine.state(store) == INITIAL


def test_a_noop_entry_only_moves_the_applied_index() -> None:
    machine, store = fresh()
    assert machine.apply_entry(store, 1, b"") == ()
    assert machine.applied_index(store) == 1
    with pytest.raises(AssertionError):
        machine.set_applied_index(store, 1)  # never backwards or in place


def random_entries(seed: int, count: int) -> list[bytes]:
    rng = random.Random(seed)
    entries = []
    for _ in range(count):
        if rng.random() < 0.1:
            entries.append(rng.randbytes(rng.randrange(0, 40)))  # garbage
            continue
        commands = [
            SetRegion(
                rng.choice((*REGIONS, "nowhere")),
                rng.choice(list(RegionState)),
                expected_version=rng.choice((0, 0, rng.randrange(0, 30))),
                deadline_ms=rng.randrange(0, 10_000),
            )
            for _ in range(rng.randrange(1, 4))
        ]
        entries.append(codec.encode_entry(rng.randrange(0, 1 << 40), commands))
    return entries


@settings(max_examples=30, deadline=None)
@given(st.integers(min_value=0, max_value=2**32))
def test_replicas_applying_the_same_entries_end_byte_identical(seed: int) -> None:
    entries = random_entries(seed, 40)
    replicas = [fresh() for _ in range(3)]
    outcomes = []
    for machine, store in replicas:
        outcomes.append(
            [machine.apply_entry(store, i, data) for i, data in enumerate(entries, start=1)]
        )
    assert outcomes[0] == outcomes[1] == outcomes[2]
    dumps = {machine.dump(store) for machine, store in replicas}
    assert len(dumps) == 1
    raw = {store.get(Table.META, KEY_STATE) for _, store in replicas}
    assert len(raw) == 1


@settings(max_examples=30, deadline=None)
@given(st.integers(min_value=0, max_value=2**32))
def test_dump_restore_round_trips_byte_identically(seed: int) -> None:
    machine, store = fresh()
    for i, data in enumerate(random_entries(seed, 20), start=1):
        machine.apply_entry(store, i, data)
    image = machine.dump(store)
    assert snapshot_problem(image, 20) is None
    twin_machine, twin = MetaMachine(INITIAL), MemoryStore()
    twin_machine.restore(twin, image)
    assert twin_machine.dump(twin) == image
    assert twin_machine.state(twin) == machine.state(store)
    assert twin_machine.applied_index(twin) == 20
    # A restored replica goes on exactly like the original.
    more = random_entries(seed + 1, 5)
    for i, data in enumerate(more, start=21):
        assert machine.apply_entry(store, i, data) == twin_machine.apply_entry(twin, i, data)
    assert machine.dump(store) == twin_machine.dump(twin)


def test_restore_refuses_damaged_bytes_and_leaves_the_store_alone() -> None:
    machine, store = fresh()
    machine.apply_entry(store, 1, entry(SetRegion("tianjin", D)))
    before = machine.dump(store)
    image = before
    for damaged in (b"", image[:-1], b"HBLEDGER" + image[6:], image + b"\x00"):
        assert snapshot_problem(damaged, 1) is not None
        with pytest.raises(MetaCodecError):
            machine.restore(store, damaged)
        assert machine.dump(store) == before
    assert snapshot_problem(image, 2) is not None  # as of another index than it says
    other = MetaMachine(ClusterState.initial("another-cluster", REGIONS))
    with pytest.raises(MetaCodecError, match=r"another-cluster|test-cluster"):
        other.restore(MemoryStore(), image)


def test_state_encoding_is_canonical_and_versioned() -> None:
    state = ClusterState.initial("c", REGIONS)
    data = codec.encode_state(state)
    assert data[0] == codec.STATE_FORMAT
    assert codec.decode_state(data) == state
    assert codec.encode_state(codec.decode_state(data)) == data
    with pytest.raises(MetaCodecError, match="format"):
        codec.decode_state(bytes([9]) + data[1:])


def test_entry_bounds() -> None:
    with pytest.raises(MetaCodecError):
        codec.encode_entry(0, [])
    too_many = [SetRegion("tianjin", D)] * (codec.COMMANDS_PER_ENTRY_MAX + 1)
    with pytest.raises(MetaCodecError):
        codec.encode_entry(0, too_many)
    with pytest.raises(MetaCodecError):
        codec.encode_entry(0, [SetRegion("x" * 300, D)])
