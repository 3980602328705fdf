"""Node storage: one LMDB environment per node holding every shard's Raft log and ledger.

Group commit in one picture (the runtime's Ready loop)::

    with env.write_batch() as batch:            # one LMDB write transaction
        for shard, ready in readys:
            log = logs[shard]                    # an LmdbLogStorage
            if ready.snapshot is not None:
                log.apply_snapshot(ready.snapshot, txn=batch)
            log.append(list(ready.entries), txn=batch)
            if ready.hard_state is not None:
                log.set_hard_state(ready.hard_state, txn=batch)
            if ready.must_sync:
                batch.request_sync()            # one fsync for the whole batch, on exit
    # only now send the messages; then apply, each shard's entries and applied index in
    # one transaction through ``batch.ledger_store(shard)``.

The on-disk format is documented in ``_codec``; durability rules in ``_env``.
"""

from hongbao.node.storage._codec import CorruptRecord as CorruptRecord
from hongbao.node.storage._env import Durability as Durability
from hongbao.node.storage._env import EnvStats as EnvStats
from hongbao.node.storage._env import NodeEnv as NodeEnv
from hongbao.node.storage._env import StorageFormatError as StorageFormatError
from hongbao.node.storage._env import WriteBatch as WriteBatch
from hongbao.node.storage._ledger import LmdbLedgerStore as LmdbLedgerStore
from hongbao.node.storage._log import LmdbLogStorage as LmdbLogStorage

__all__ = [
    "CorruptRecord",
    "Durability",
    "EnvStats",
    "LmdbLedgerStore",
    "LmdbLogStorage",
    "NodeEnv",
    "StorageFormatError",
    "WriteBatch",
]
