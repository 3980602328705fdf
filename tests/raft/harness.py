"""An in-process network of real cores for rule-level tests (etcd's ``raft_test`` network).

Messages are delivered synchronously until the network is quiet; tests cut links,
isolate nodes or drop message types to build the exact scenario a rule is about. Each
node persists into a MemoryStorage exactly as the Ready contract says, and applies
committed entries to a list, so tests can read what every replica applied.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from hongbao.raft.config import RaftConfig
from hongbao.raft.core import RaftCore
from hongbao.raft.storage import MemoryStorage
from hongbao.raft.types import ConfState, Entry, Message, MessageType, NodeId, ReadState

DELIVERY_ROUNDS_MAX = 10_000


@dataclass
class Replica:
    core: RaftCore
    storage: MemoryStorage
    applied: list[Entry] = field(default_factory=list)
    read_states: list[ReadState] = field(default_factory=list)


def make_config(node_id: int, **overrides: object) -> RaftConfig:
    options: dict[str, object] = {
        "node_id": NodeId(node_id),
        "election_timeout_ticks": 10,
        "heartbeat_interval_ticks": 1,
    }
    options.update(overrides)
    return RaftConfig(**options)  # type: ignore[arg-type]


class Network:
    def __init__(self, ids: Iterable[int] = (1, 2, 3), *, seed: int = 1, **config: object):
        ids = list(ids)
        conf = ConfState(voters=frozenset(NodeId(i) for i in ids))
        self.replicas: dict[int, Replica] = {}
        self.cut_links: set[tuple[int, int]] = set()
        self.dropped_types: set[MessageType] = set()
        self.hook: Callable[[Message], Message | None] | None = None  # None drops
        self.sent: list[Message] = []
        for node_id in ids:
            storage = MemoryStorage(conf)
            core = RaftCore(make_config(node_id, **config), storage, random.Random(seed + node_id))
            self.replicas[node_id] = Replica(core, storage)

    def core(self, node_id: int) -> RaftCore:
        return self.replicas[node_id].core

    def add_replica(self, node_id: int, conf: ConfState, **config: object) -> None:
        storage = MemoryStorage(conf)
        core = RaftCore(make_config(node_id, **config), storage, random.Random(node_id))
        self.replicas[node_id] = Replica(core, storage)

    def restart(self, node_id: int, **config: object) -> None:
        """Crash and restart from what was persisted (the MemoryStorage)."""
        replica = self.replicas[node_id]
        applied_index = replica.applied[-1].index if replica.applied else 0
        applied_index = max(applied_index, replica.storage.snapshot().meta.index)
        cfg = make_config(node_id, applied_index=applied_index, **config)
        replica.core = RaftCore(cfg, replica.storage, random.Random(node_id * 7))

    # -- links ---------------------------------------------------------------------------

    def cut(self, a: int, b: int) -> None:
        self.cut_links |= {(a, b), (b, a)}

    def isolate(self, node_id: int) -> None:
        for other in self.replicas:
            if other != node_id:
                self.cut(node_id, other)

    def heal(self) -> None:
        self.cut_links.clear()
        self.dropped_types.clear()

    # -- driving -------------------------------------------------------------------------

    def process(self, node_id: int) -> list[Message]:
        """Handle one Ready of ``node_id`` exactly as a runtime must; returns its messages."""
        replica = self.replicas[node_id]
        core = replica.core
        if not core.has_ready():
            return []
        ready = core.ready()
        if ready.snapshot is not None:
            replica.storage.apply_snapshot(ready.snapshot)
            replica.applied.append(Entry(ready.snapshot.meta.term, ready.snapshot.meta.index))
        replica.storage.append(list(ready.entries))
        if ready.hard_state is not None:
            replica.storage.set_hard_state(ready.hard_state)
        replica.applied.extend(ready.committed_entries)
        replica.read_states.extend(ready.read_states)
        core.advance(ready)
        return list(ready.messages)

    def deliver(self, messages: list[Message]) -> None:
        for message in messages:
            self.sent.append(message)
            if (message.from_, message.to) in self.cut_links:
                continue
            if message.type in self.dropped_types:
                continue
            if self.hook is not None:
                hooked = self.hook(message)
                if hooked is None:
                    continue
                message = hooked
            if message.to in self.replicas:
                self.replicas[message.to].core.step(message)

    def stabilize(self) -> None:
        for _ in range(DELIVERY_ROUNDS_MAX):
            outgoing: list[Message] = []
            for node_id in sorted(self.replicas):
                outgoing.extend(self.process(node_id))
            if not outgoing and not any(r.core.has_ready() for r in self.replicas.values()):
                return
            self.deliver(outgoing)
        raise AssertionError("network did not quiesce")

    def tick(self, node_id: int, count: int = 1) -> None:
        for _ in range(count):
            self.core(node_id).tick()

    def tick_all(self, count: int = 1) -> None:
        for _ in range(count):
            for node_id in sorted(self.replicas):
                self.core(node_id).tick()
            self.stabilize()

    def elect(self, node_id: int) -> None:
        self.core(node_id).campaign()
        self.stabilize()

    def leader(self) -> int | None:
        leaders = [n for n, r in self.replicas.items() if r.core.role.value == "leader"]
        return leaders[0] if len(leaders) == 1 else None

    def applied_data(self, node_id: int) -> list[bytes]:
        return [e.data for e in self.replicas[node_id].applied if e.data]
