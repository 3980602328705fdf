"""A shard replica fed effects by a leader that evaluates ahead of what it has applied.

The leader of effect replication in miniature (what the node runtime does with
``hongbao.node.speculate``): each batch is evaluated once, against the replica's applied
state plus the writes of the entries proposed before it and not applied yet, and the
entry carries the writes. Entries apply later, a random few at a time (``lag``), so
evaluations really read through several pending layers.
"""

from __future__ import annotations

import random

from hongbao.ledger import Batch, Command, MemoryStore, apply_batch, apply_entry
from hongbao.ledger.effects import encode_effects, is_effects
from hongbao.ledger.overlay import OverlayStore, Speculation
from hongbao.ledger.results import Result


class EffectLeader:
    def __init__(self, store: MemoryStore, *, lag_max: int, seed: int) -> None:
        self.store = store
        self.speculation = Speculation()
        self.speculation.reset(term=1, start_index=0)
        self.unapplied: list[tuple[int, bytes]] = []
        self.lag_max = lag_max
        self.rng = random.Random(seed)

    def propose(self, index: int, ts_ms: int, commands: list[Command]) -> list[Result]:
        view = OverlayStore(self.store, self.speculation)
        results = apply_batch(view, Batch(ts_ms=ts_ms, commands=tuple(commands)))
        data = encode_effects(view.writes())
        assert is_effects(data)
        self.speculation.add(index, view.writes())
        self.unapplied.append((index, data))
        self.apply_down_to(self.rng.randint(0, self.lag_max))
        return results

    def apply_down_to(self, lag: int) -> None:
        """Apply the oldest entries until at most ``lag`` are left unapplied."""
        while len(self.unapplied) > lag:
            index, data = self.unapplied.pop(0)
            applied = apply_entry(self.store, index=index, data=data)
            assert applied.effects, applied
            assert applied.malformed is None, applied
            self.speculation.applied(index)

    def caught_up(self) -> MemoryStore:
        self.apply_down_to(0)
        assert self.speculation.layer_count == 0
        return self.store
