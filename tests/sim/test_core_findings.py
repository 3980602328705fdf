"""Core bugs the simulator found, each reduced to a few direct calls on one ``RaftCore``.

Each test names the seed and options that first showed the problem in ``hongbao sim``.
"""

from __future__ import annotations

import random

from hongbao.raft.config import RaftConfig
from hongbao.raft.core import RaftCore
from hongbao.raft.storage import MemoryStorage
from hongbao.raft.types import (
    ConfState,
    Message,
    MessageType,
    NodeId,
    Snapshot,
    SnapshotMeta,
)

VOTERS = ConfState(voters=frozenset({NodeId(1), NodeId(2), NodeId(3)}))


def _persist_and_advance(core: RaftCore, storage: MemoryStorage) -> None:
    while core.has_ready():
        ready = core.ready()
        if ready.snapshot is not None:
            storage.apply_snapshot(ready.snapshot)
        storage.append(list(ready.entries))
        if ready.hard_state is not None:
            storage.set_hard_state(ready.hard_state)
        core.advance(ready)


def test_a_ready_that_installs_a_snapshot_must_be_synced() -> None:
    """raft-pitfalls 2: the follower acknowledges the snapshot in the same Ready.

    Found by the simulator: a follower installed a snapshot, answered APP_RESP(index=24),
    crashed before any sync, and restarted with its old log (last index 13); the leader,
    believing it matched 24, then sent it commit 24 and the core's own invariant fired
    ("commit 24 beyond last index 13: was the log lost?").
    """
    storage = MemoryStorage(VOTERS)
    core = RaftCore(RaftConfig(node_id=NodeId(2)), storage, random.Random(1))
    leader, term = NodeId(1), 1
    core.step(Message(MessageType.HEARTBEAT, to=NodeId(2), from_=leader, term=term))
    _persist_and_advance(core, storage)  # the term is now durable: no reason to sync for it
    snapshot = Snapshot(SnapshotMeta(index=10, term=term, conf_state=VOTERS))
    core.step(
        Message(MessageType.SNAP, to=NodeId(2), from_=leader, term=term, snapshot=snapshot)
    )
    ready = core.ready()
    assert ready.snapshot is not None
    acks = [m for m in ready.messages if m.type is MessageType.APP_RESP and not m.reject]
    assert [m.index for m in acks] == [10]
    assert ready.must_sync, "the snapshot is acknowledged in this Ready, so it must be synced"
