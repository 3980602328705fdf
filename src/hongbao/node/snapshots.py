"""Snapshots of one group's replica: taking one (and compacting behind it), installing one.

Rules of this module: the group's machine makes and reads the bytes
(:class:`~hongbao.node.state_machine.GroupMachine`); the log and the machine's store
switch together, in the caller's write transaction for an install, so a crash leaves
either the old state or the new one. Only the runtime's cycle calls these.
"""

from __future__ import annotations

import logging

from hongbao._invariant import invariant
from hongbao.logs import event
from hongbao.node.replica import ShardReplica
from hongbao.node.storage import NodeEnv, WriteBatch
from hongbao.raft.types import Message, Ready

log = logging.getLogger("hongbao.node.runtime")  # where operators have always found these


def install(batch: WriteBatch, replica: ShardReplica, ready: Ready) -> None:
    """The log and the group's tables switch to the snapshot in one transaction."""
    snapshot = ready.snapshot
    invariant(snapshot is not None, "install without a snapshot")
    assert snapshot is not None
    replica.log.apply_snapshot(snapshot, txn=batch)
    store = batch.ledger_store(replica.shard_id)
    replica.machine.restore(store, snapshot.data)
    invariant(
        replica.machine.applied_index(store) == snapshot.meta.index,
        "a snapshot's image must be as of its index",
    )
    replica.snapshot_index = snapshot.meta.index
    replica.fail_inflight_up_to(snapshot.meta.index)
    replica.snapshot_installs_total += 1
    event(
        log,
        "snapshot_installed",
        f"{_name(replica)}: installed a snapshot at index {snapshot.meta.index},"
        f" term {snapshot.meta.term}",
        shard=replica.shard_id,
        index=int(snapshot.meta.index),
        term=int(snapshot.meta.term),
    )


def log_send(replica: ShardReplica, message: Message) -> None:
    """A leader hands a follower a snapshot (it lags behind the compacted log): count it
    and say so, since a snapshot costs far more than appends and a stream of them means a
    follower that cannot keep up."""
    snapshot = message.snapshot
    invariant(snapshot is not None, "a SNAP message carries a snapshot")
    assert snapshot is not None
    replica.snapshot_sends_total += 1
    event(
        log,
        "snapshot_sent",
        f"{_name(replica)}: sending a snapshot at index {snapshot.meta.index} to node"
        f" {message.to} ({len(snapshot.data)} bytes)",
        shard=replica.shard_id,
        index=int(snapshot.meta.index),
        to_node=int(message.to),
        size_bytes=len(snapshot.data),
    )


def _name(replica: ShardReplica) -> str:
    return f"{'group' if replica.machine.kind == 'meta' else 'shard'} {replica.shard_id}"


def snapshot_now(env: NodeEnv, replica: ShardReplica, trailing_entries: int) -> None:
    """Snapshot the group at its applied index; keep ``trailing_entries`` of log behind it."""
    applied = replica.core.applied_index
    if applied <= replica.snapshot_index:
        return
    with env.ledger_reader(replica.shard_id) as reader:
        invariant(replica.machine.applied_index(reader) == applied, "store behind the core")
        data = replica.machine.dump(reader)
    with env.write_batch(sync=False) as batch:
        replica.log.create_snapshot(
            index=applied, conf_state=replica.core.applied_conf_state, data=data, txn=batch
        )
        compact_to = applied - trailing_entries
        if compact_to >= replica.log.first_index():
            replica.log.compact(compact_to, txn=batch)
    replica.snapshot_index = applied
