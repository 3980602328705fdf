"""Entries committed per second by three Raft cores in one process, with no I/O and no faults.

What it measures: the cost of the consensus core alone (plus MemoryStorage): a leader
takes proposals in batches, every Ready is handled as the contract says (persist into
MemoryStorage, send, apply, advance) and messages are delivered at once, in order, until
the group is quiet. Nothing is synced and no network is crossed, so this is an upper
bound for what the core allows, not a figure for the datastore.

    .venv/bin/python benchmarks/raft_core_throughput.py [--entries 50000] [--batch 64] [--runs 5]

Prints one line per run and the median, in committed entries per second of wall-clock
time and of CPU time (the second is steadier on a busy machine), then the same for the
baseline, one proposal per pump (``--baseline-batch 1``: no batching, every entry its own
round of messages), measured in the same invocation, and the ratio of the two medians.
"""

from __future__ import annotations

import argparse
import random
import statistics
import time
from collections import deque

from hongbao.raft.config import RaftConfig
from hongbao.raft.core import RaftCore
from hongbao.raft.storage import MemoryStorage
from hongbao.raft.types import ConfState, Message, NodeId, Role

PAYLOAD_BYTES = 64
PUMP_ROUNDS_MAX = 1_000_000  # a quiet group needs far fewer; this only bounds a runaway


class Group:
    def __init__(self, node_count: int, seed: int) -> None:
        ids = [NodeId(i) for i in range(1, node_count + 1)]
        conf = ConfState(voters=frozenset(ids))
        rng = random.Random(seed)
        self.storages = {n: MemoryStorage(conf) for n in ids}
        self.cores = {n: RaftCore(RaftConfig(node_id=n), self.storages[n], rng) for n in ids}
        self.applied_entries = dict.fromkeys(ids, 0)
        self.inbox: deque[Message] = deque()

    def pump(self) -> None:
        """Handle every Ready and deliver every message until nothing is left to do."""
        for _ in range(PUMP_ROUNDS_MAX):
            for node, core in self.cores.items():
                while core.has_ready():
                    self._handle(node, core)
            if not self.inbox:
                return
            while self.inbox:
                message = self.inbox.popleft()
                self.cores[message.to].step(message)
        raise RuntimeError("the group never went quiet")

    def _handle(self, node: NodeId, core: RaftCore) -> None:
        ready = core.ready()
        storage = self.storages[node]
        if ready.snapshot is not None:
            storage.apply_snapshot(ready.snapshot)
        if ready.entries:
            storage.append(list(ready.entries))
        if ready.hard_state is not None:
            storage.set_hard_state(ready.hard_state)
        self.inbox.extend(ready.messages)
        self.applied_entries[node] += sum(1 for e in ready.committed_entries if e.data)
        core.advance(ready)

    def elect(self) -> RaftCore:
        leader = self.cores[NodeId(1)]
        leader.campaign()
        self.pump()
        if leader.role is not Role.LEADER:
            raise RuntimeError("node 1 did not win an election in a quiet group")
        return leader


def run_once(*, entries: int, batch: int, seed: int) -> tuple[float, float]:
    """(committed entries per wall-clock second, per CPU second)."""
    group = Group(3, seed)
    leader = group.elect()
    payload = bytes(PAYLOAD_BYTES)
    started = time.perf_counter()
    started_cpu = time.process_time()
    proposed = 0
    while proposed < entries:
        for _ in range(min(batch, entries - proposed)):
            leader.propose(payload)
            proposed += 1
        group.pump()
    elapsed = time.perf_counter() - started
    elapsed_cpu = time.process_time() - started_cpu
    committed = group.applied_entries[leader.node_id]
    if committed != entries or min(group.applied_entries.values()) != entries:
        raise RuntimeError(f"only {committed} of {entries} entries committed everywhere")
    return committed / elapsed, committed / elapsed_cpu


def measure(*, entries: int, batch: int, runs: int) -> tuple[float, float]:
    """Median (wall-clock, CPU) committed entries per second over ``runs`` runs."""
    rates, cpu_rates = [], []
    for run in range(runs):
        rate, cpu_rate = run_once(entries=entries, batch=batch, seed=run)
        rates.append(rate)
        cpu_rates.append(cpu_rate)
        print(f"  run {run + 1}: {rate:,.0f} committed entries/s ({cpu_rate:,.0f} per CPU second)")
    median, cpu_median = statistics.median(rates), statistics.median(cpu_rates)
    print(
        f"median of {runs}: {median:,.0f} committed entries/s, {cpu_median:,.0f} per CPU "
        f"second (3 cores, {entries} entries of {PAYLOAD_BYTES} B, batches of {batch})"
    )
    return median, cpu_median


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--entries", type=int, default=50_000)
    parser.add_argument("--batch", type=int, default=64, help="proposals between pumps")
    parser.add_argument("--baseline-batch", type=int, default=1)
    parser.add_argument("--baseline-entries", type=int, default=10_000)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    _, cpu_median = measure(entries=args.entries, batch=args.batch, runs=args.runs)
    print("baseline:")
    _, base_cpu = measure(entries=args.baseline_entries, batch=args.baseline_batch, runs=args.runs)
    print(
        f"batches of {args.batch} commit x{cpu_median / base_cpu:.1f} the entries per CPU "
        f"second of batches of {args.baseline_batch}"
    )


if __name__ == "__main__":
    main()
