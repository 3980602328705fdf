"""The seam between the node runtime and what a Raft group replicates (hashicorp/raft's FSM).

Rules of this module: the runtime drives every group (ledger shards and the meta group)
the same way, and knows a group's contents only through :class:`GroupMachine`: whether
its store is initialised, how to apply a committed entry (inside the runtime's write
transaction: the machine never commits), how to dump and restore a snapshot, and how to
pack queued commands into one entry. :class:`LedgerMachine` adapts
:mod:`hongbao.ledger.machine` without changing its behaviour; the meta group's machine
is :class:`hongbao.meta.machine.MetaMachine`.

A *speculative* machine (the ledger's) replicates effects, not commands: its leader
evaluates each new batch once, with :meth:`LedgerMachine.evaluate`, against a view of the
shard ahead of its applied state (:mod:`hongbao.ledger.overlay`), and the entry carries
the rows written (:mod:`hongbao.ledger.effects`). Applying such an entry returns None: the
results stayed with the leader that evaluated it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from hongbao._invariant import invariant
from hongbao.config.topology import META_GROUP_ID, Topology
from hongbao.ledger import machine
from hongbao.ledger.commands import Batch, Command, encode_batch
from hongbao.ledger.effects import encode_effects
from hongbao.ledger.limits import Limits
from hongbao.ledger.overlay import Evaluated, OverlayStore
from hongbao.ledger.store import LedgerStore
from hongbao.meta.machine import MetaMachine
from hongbao.meta.state import ClusterState
from hongbao.node import bugs


class GroupMachine(Protocol):
    """What one Raft group's replicated state is, as far as the runtime needs to know."""

    @property
    def kind(self) -> str:
        """Either ``ledger`` or ``meta``: for logs and status only, never for dispatch."""
        ...

    @property
    def commands_per_entry_max(self) -> int:
        """The most commands :meth:`encode_entry` may pack into one entry."""
        ...

    @property
    def speculative(self) -> bool:
        """Whether its leader evaluates batches (:meth:`evaluate`) instead of encoding them."""
        ...

    def is_initialised(self, store: LedgerStore) -> bool: ...

    def init(self, store: LedgerStore) -> None:
        """Give an empty store its initial state (identical on every replica)."""
        ...

    def apply_entry(
        self, store: LedgerStore, index: int, data: bytes
    ) -> tuple[object, ...] | None:
        """Apply committed entry ``index`` and record it applied: one result per command.

        None for an entry of effects: its results are the evaluating leader's.
        """
        ...

    def applied_index(self, store: LedgerStore) -> int: ...

    def set_applied_index(self, store: LedgerStore, index: int) -> None: ...

    def dump(self, store: LedgerStore) -> bytes: ...

    def restore(self, store: LedgerStore, data: bytes) -> None: ...

    def encode_entry(self, ts_ms: int, commands: Sequence[object]) -> bytes: ...

    def evaluate(self, view: OverlayStore, ts_ms: int, commands: Sequence[object]) -> Evaluated:
        """A speculative machine's entry for ``commands`` (others never get this call)."""
        ...


class LedgerMachine:
    """One ledger shard: :mod:`hongbao.ledger.machine`, unchanged."""

    kind = "ledger"
    speculative = True

    def __init__(
        self,
        *,
        shard_id: int,
        shard_count: int,
        limits: Limits | None,
        double_credit_grab: bool = False,
    ) -> None:
        self.shard_id = shard_id
        self.shard_count = shard_count
        self.limits = limits
        self.double_credit_grab = double_credit_grab  # a test-only bug switch (node/bugs.py)
        # The ledger refuses a whole entry of more than batch_commands_max commands
        # (deterministically, on every replica): the runtime must never pack one.
        self.commands_per_entry_max = (limits or Limits()).batch_commands_max

    def is_initialised(self, store: LedgerStore) -> bool:
        return machine.is_initialised(store)

    def init(self, store: LedgerStore) -> None:
        machine.init_shard(
            store, shard_id=self.shard_id, shard_count=self.shard_count, limits=self.limits
        )

    def apply_entry(
        self, store: LedgerStore, index: int, data: bytes
    ) -> tuple[object, ...] | None:
        applied = machine.apply_entry(store, index=index, data=data)
        if applied.effects:
            return None
        results = applied.results
        if self.double_credit_grab and results:  # BUG SWITCH double-credit-grab
            bugs.credit_grabs_twice(store, data, results)
        return results

    def applied_index(self, store: LedgerStore) -> int:
        return machine.applied_index(store)

    def set_applied_index(self, store: LedgerStore, index: int) -> None:
        machine.set_applied_index(store, index)

    def dump(self, store: LedgerStore) -> bytes:
        return machine.dump(store)

    def restore(self, store: LedgerStore, data: bytes) -> None:
        machine.restore(store, data)

    def encode_entry(self, ts_ms: int, commands: Sequence[object]) -> bytes:
        return encode_batch(self._batch(ts_ms, commands))

    def evaluate(self, view: OverlayStore, ts_ms: int, commands: Sequence[object]) -> Evaluated:
        batch = self._batch(ts_ms, commands)
        results = tuple(machine.apply_batch(view, batch))
        if self.double_credit_grab and results:  # BUG SWITCH double-credit-grab
            bugs.credit_grabs_twice(view, encode_batch(batch), results)
        writes = view.writes()
        return Evaluated(encode_effects(writes), writes, results)

    @staticmethod
    def _batch(ts_ms: int, commands: Sequence[object]) -> Batch:
        ledger_commands: list[Command] = []
        for command in commands:
            invariant(not isinstance(command, str | bytes), "a ledger command, not text")
            ledger_commands.append(command)  # type: ignore[arg-type]
        return Batch(ts_ms=ts_ms, commands=tuple(ledger_commands))


def initial_cluster_state(topology: Topology, cluster_id: str) -> ClusterState:
    """What every meta replica starts from: deterministic from the topology."""
    return ClusterState.initial(cluster_id, tuple(r.name for r in topology.regions))


def machine_for(
    topology: Topology,
    group_id: int,
    *,
    cluster_id: str,
    limits: Limits | None,
    node_bugs: bugs.NodeBugs | None = None,
) -> GroupMachine:
    """The machine of group ``group_id``: the meta group's, or a ledger shard's."""
    if group_id == META_GROUP_ID:
        return MetaMachine(initial_cluster_state(topology, cluster_id))
    return LedgerMachine(
        shard_id=group_id,
        shard_count=topology.shard_count,
        limits=limits,
        double_credit_grab=node_bugs is not None and node_bugs.double_credit_grab,
    )
