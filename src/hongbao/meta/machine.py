"""The meta group's state machine: the cluster state, kept in the group's own store.

Rules of this module: deterministic (the same store and entries give the same bytes on
every replica; the only clock is the entry's ``ts_ms``). The state lives in the group's
own :class:`~hongbao.ledger.store.LedgerStore` under its own keys of ``Table.META``, in
the canonical encoding of :mod:`hongbao.meta.codec`. An entry is a batch of
:class:`~hongbao.meta.state.SetRegion` commands applied in order with
``apply_set_region``; a refusal (unknown region, stale expected version) is that
command's result, never a crash. Bytes that do not decode are skipped (and counted)
identically on every replica: crashing would wedge every replica on the same entry.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from hongbao._invariant import fail, invariant
from hongbao.ledger.overlay import Evaluated, OverlayStore
from hongbao.ledger.store import LedgerStore, Table
from hongbao.meta import codec
from hongbao.meta.codec import MetaCodecError, MetaSnapshot
from hongbao.meta.state import ClusterState, SetRegion, SetRegionRefused, apply_set_region

KEY_APPLIED_INDEX = b"meta.applied_index"
KEY_STATE = b"meta.cluster_state"
KEY_MALFORMED = b"meta.malformed_entries"
_KEYS = (KEY_APPLIED_INDEX, KEY_STATE, KEY_MALFORMED)


@dataclass(frozen=True, slots=True)
class MetaResult:
    """One SetRegion's outcome: the state after it, and why it was refused ("" if not)."""

    state: ClusterState
    refused: str = ""
    stale_version: bool = False  # refused because expected_version was not the version


class MetaMachine:
    """The :class:`~hongbao.node.state_machine.GroupMachine` of the meta group."""

    kind = "meta"
    speculative = False  # the leader encodes commands; every replica executes them
    commands_per_entry_max = codec.COMMANDS_PER_ENTRY_MAX

    def __init__(self, initial: ClusterState) -> None:
        invariant(initial.version == 0, "the initial cluster state is at version 0")
        self.initial = initial

    def is_initialised(self, store: LedgerStore) -> bool:
        return store.get(Table.META, KEY_STATE) is not None

    def init(self, store: LedgerStore) -> None:
        invariant(not self.is_initialised(store), "init on an initialised meta store")
        store.put(Table.META, KEY_STATE, codec.encode_state(self.initial))

    def state(self, store: LedgerStore) -> ClusterState:
        data = store.get(Table.META, KEY_STATE)
        if data is None:
            return self.initial
        return codec.decode_state(data)  # our own bytes: a failure here is a bug

    def malformed_entries(self, store: LedgerStore) -> int:
        return _u64_at(store, KEY_MALFORMED)

    def applied_index(self, store: LedgerStore) -> int:
        return _u64_at(store, KEY_APPLIED_INDEX)

    def set_applied_index(self, store: LedgerStore, index: int) -> None:
        applied = self.applied_index(store)
        invariant(index > applied, f"applied index {index} does not move forward from {applied}")
        store.put(Table.META, KEY_APPLIED_INDEX, index.to_bytes(8, "big"))

    def apply_entry(self, store: LedgerStore, index: int, data: bytes) -> tuple[MetaResult, ...]:
        """Apply entry ``index``: one result per command; none for a no-op or bad bytes."""
        if not data:
            self.set_applied_index(store, index)
            return ()
        try:
            _, commands = codec.decode_entry(data)
        except MetaCodecError:
            count = self.malformed_entries(store) + 1
            store.put(Table.META, KEY_MALFORMED, count.to_bytes(8, "big"))
            self.set_applied_index(store, index)
            return ()
        state = self.state(store)
        results = []
        for command in commands:
            try:
                state = apply_set_region(state, command)
            except SetRegionRefused as refused:
                stale = state.region(command.region) is not None  # known region: the version
                results.append(MetaResult(state, str(refused), stale_version=stale))
            else:
                results.append(MetaResult(state))
        store.put(Table.META, KEY_STATE, codec.encode_state(state))
        self.set_applied_index(store, index)
        return tuple(results)

    def evaluate(self, view: OverlayStore, ts_ms: int, commands: Sequence[object]) -> Evaluated:
        fail("the meta group replicates commands: it is not speculative")

    def encode_entry(self, ts_ms: int, commands: Sequence[object]) -> bytes:
        set_regions = []
        for command in commands:
            invariant(isinstance(command, SetRegion), f"not a SetRegion: {command!r}")
            assert isinstance(command, SetRegion)
            set_regions.append(command)
        return codec.encode_entry(ts_ms, set_regions)

    def dump(self, store: LedgerStore) -> bytes:
        snapshot = MetaSnapshot(
            self.applied_index(store), self.malformed_entries(store), self.state(store)
        )
        return codec.encode_snapshot(snapshot)

    def restore(self, store: LedgerStore, data: bytes) -> None:
        """Replace the state with snapshot ``data``; raises MetaCodecError (store untouched)."""
        snapshot = codec.decode_snapshot(data)
        if snapshot.state.cluster_id != self.initial.cluster_id:
            raise MetaCodecError(
                f"a snapshot of cluster {snapshot.state.cluster_id!r},"
                f" not {self.initial.cluster_id!r}"
            )
        for key in _KEYS:
            store.delete(Table.META, key)
        store.put(Table.META, KEY_STATE, codec.encode_state(snapshot.state))
        store.put(Table.META, KEY_APPLIED_INDEX, snapshot.applied_index.to_bytes(8, "big"))
        if snapshot.malformed_entries:
            store.put(Table.META, KEY_MALFORMED, snapshot.malformed_entries.to_bytes(8, "big"))


def snapshot_problem(data: bytes, index: int) -> str | None:
    """Why ``data`` must not replace a meta replica as of ``index`` (peer input), or None."""
    try:
        snapshot = codec.decode_snapshot(data)
    except MetaCodecError as error:
        return f"not a meta snapshot: {error}"
    if snapshot.applied_index != index:
        return f"meta snapshot as of index {snapshot.applied_index}, its metadata says {index}"
    return None


def _u64_at(store: LedgerStore, key: bytes) -> int:
    data = store.get(Table.META, key)
    return 0 if data is None else int.from_bytes(data, "big")
