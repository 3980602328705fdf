"""How much group commit buys: appends/s with one synced LMDB transaction per entry,
per 100 entries of one shard, and per 10 entries of each of 12 shards (the runtime's case).

Run: ``.venv/bin/python benchmarks/lmdb_group_commit.py [--runs 5] [--payload-bytes 128]``.
Every transaction is synced (``Durability.FSYNC``, ``write_batch(sync=True)``), as a Ready
with ``must_sync`` is. Each figure is the median of ``--runs`` runs, each in a fresh env.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from hongbao.node.storage import Durability, LmdbLogStorage, NodeEnv
from hongbao.raft.types import ConfState, Entry, NodeId

CONF = ConfState(voters=frozenset({NodeId(1), NodeId(2), NodeId(3)}))


@dataclass(frozen=True, slots=True)
class Shape:
    name: str
    shards: int
    entries_per_shard_per_txn: int
    txns: int


SHAPES = (
    Shape("1 entry per synced txn", 1, 1, 2_000),
    Shape("100 entries per synced txn", 1, 100, 200),
    Shape("12 shards x 10 entries per synced txn", 12, 10, 200),
)


def one_run(shape: Shape, payload_bytes: int, durability: Durability) -> float:
    """Appends per second for one run of ``shape`` in a fresh environment."""
    payload = b"p" * payload_bytes
    with tempfile.TemporaryDirectory() as directory:
        env = NodeEnv(Path(directory), durability=durability, map_size_bytes=4 << 30)
        try:
            logs = [LmdbLogStorage(env, shard, conf_state=CONF) for shard in range(shape.shards)]
            index = 0
            started = time.perf_counter()
            for _ in range(shape.txns):
                batch_entries = [
                    Entry(term=1, index=i, data=payload)
                    for i in range(index + 1, index + shape.entries_per_shard_per_txn + 1)
                ]
                with env.write_batch(sync=True) as batch:
                    for log in logs:
                        log.append(batch_entries, txn=batch)
                index += shape.entries_per_shard_per_txn
            elapsed_s = time.perf_counter() - started
        finally:
            env.close()
    return shape.txns * shape.shards * shape.entries_per_shard_per_txn / elapsed_s


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--payload-bytes", type=int, default=128)
    parser.add_argument("--no-fsync", action="store_true", help="Durability.NO_FSYNC instead")
    args = parser.parse_args()
    durability = Durability.NO_FSYNC if args.no_fsync else Durability.FSYNC
    print(f"durability={durability.value} payload={args.payload_bytes} B runs={args.runs}")
    baseline = None
    for shape in SHAPES:
        rates = [one_run(shape, args.payload_bytes, durability) for _ in range(args.runs)]
        median = statistics.median(rates)
        baseline = baseline or median
        per_txn_ms = 1000 * shape.shards * shape.entries_per_shard_per_txn / median
        print(
            f"{shape.name:<40} {median:>11,.0f} appends/s  "
            f"({per_txn_ms:.3f} ms per txn, x{median / baseline:.1f})"
        )


if __name__ == "__main__":
    main()
