"""CPU that an idle cluster burns, as the number of shards per node grows.

Why: every shard is a Raft group that ticks and heartbeats even when nobody writes, so
idle cost is what caps how many shards a node can host. This starts a fresh local
cluster from a topology (fresh ports, temporary data, fsync on) for each shard count,
waits until every shard has a leader and the cluster is quiet, then reads each node
process's CPU time (utime + stime from /proc) over a window with no client traffic.

    .venv/bin/python benchmarks/idle_cost.py [--shards 3,12,48] [--window-s 10] [--runs 3]

Prints, per shard count, the median over runs of the average node's CPU use (percent of
one core) and its cost per shard, and the ratio against the smallest shard count
measured in the same invocation. Linux only (/proc).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import statistics
import tempfile
import time
from pathlib import Path

from hongbao.client.sdk import ClientOptions, HongbaoClient
from hongbao.ops.cluster import wait_for_leaders, wait_for_quiet
from hongbao.ops.local import LocalCluster, write_topology

CLOCK_TICKS_PER_S = os.sysconf("SC_CLK_TCK")
SETTLE_TIMEOUT_S = 30.0


def cpu_s(pid: int) -> float:
    """CPU seconds (user + system) used so far by process ``pid``."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS_PER_S  # utime, stime


async def settle(cluster: LocalCluster) -> None:
    async with HongbaoClient(cluster.topology, ClientOptions(timeout_s=2.0)) as client:
        await wait_for_leaders(client, SETTLE_TIMEOUT_S)
        if not await wait_for_quiet(client, SETTLE_TIMEOUT_S):
            raise RuntimeError("the idle cluster never went quiet")


def measure(template: Path, shards: int, window_s: float) -> float:
    """Average CPU percent of one core per node over ``window_s`` of idleness."""
    temporary = Path(tempfile.mkdtemp(prefix="hongbao-idle-"))
    try:
        topology = write_topology(
            temporary / "topology.toml", template=template, overrides={"shard_count": shards}
        )
        with LocalCluster(topology, temporary / "data") as cluster:
            cluster.start()
            asyncio.run(settle(cluster))
            pids = [process.pid for process in cluster.processes.values()]
            before = [cpu_s(pid) for pid in pids]
            started = time.monotonic()
            time.sleep(window_s)  # the quantity measured is what happens while we wait
            elapsed = time.monotonic() - started
            used = [cpu_s(pid) - b for pid, b in zip(pids, before, strict=True)]
            cluster.stop_all()
        return 100.0 * statistics.mean(used) / elapsed
    finally:
        shutil.rmtree(temporary, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", type=Path, default=Path("configs/local.toml"))
    parser.add_argument("--shards", default="3,12,48", help="comma-separated shard counts")
    parser.add_argument("--window-s", type=float, default=10.0)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    counts = sorted({int(s) for s in args.shards.split(",")})
    medians: dict[int, float] = {}
    for count in counts:
        samples = [measure(args.config, count, args.window_s) for _ in range(args.runs)]
        medians[count] = statistics.median(samples)
        runs = ", ".join(f"{s:.1f}" for s in samples)
        print(f"{count:4d} shards: {medians[count]:5.1f}% of a core per node (runs: {runs})")
    base = counts[0]
    for count in counts:
        ratio = medians[count] / medians[base] if medians[base] else float("nan")
        print(
            f"{count:4d} shards: {medians[count] / count:5.2f}% per shard per node; "
            f"x{ratio:.2f} the cost of {base} shards"
        )


if __name__ == "__main__":
    main()
