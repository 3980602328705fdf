"""Child process of ``test_lmdb_crash``: appends in synced batches forever.

Usage: ``python _crash_writer.py ENV_DIR``. After each batch's ``with`` block returns (the
transaction committed and fsynced) it prints the last index it wrote, one per line. The
parent kills it with SIGKILL at an arbitrary moment and checks every printed index.
"""

from __future__ import annotations

import sys

from hongbao.node.storage import Durability, LmdbLogStorage, NodeEnv
from hongbao.raft.types import ConfState, Entry, HardState, NodeId

SHARDS = (5, 6)
CONF = ConfState(voters=frozenset({NodeId(1), NodeId(2), NodeId(3)}))


def payload(shard_id: int, index: int) -> bytes:
    return b"shard %d entry %d " % (shard_id, index) * (1 + index % 7)


def main(path: str) -> None:
    env = NodeEnv(path, durability=Durability.FSYNC, map_size_bytes=1 << 30)
    logs = [LmdbLogStorage(env, shard_id, conf_state=CONF) for shard_id in SHARDS]
    index = logs[0].last_index()
    while True:
        count = 1 + index % 4  # batches of 1 to 4 entries
        with env.write_batch(sync=True) as batch:
            for log in logs:
                entries = [
                    Entry(term=1, index=i, data=payload(log.shard_id, i))
                    for i in range(index + 1, index + count + 1)
                ]
                log.append(entries, txn=batch)
                log.set_hard_state(HardState(term=1, commit=index + count), txn=batch)
        index += count
        sys.stdout.write(f"{index}\n")
        sys.stdout.flush()


if __name__ == "__main__":
    main(sys.argv[1])
