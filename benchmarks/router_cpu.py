"""The router's CPU per forwarded operation, for single requests and for batches.

Why: a router only forwards, so its cost per operation is what decides how many routers
a region needs, and whether forwarding without re-encoding (hongbao.router.wire) pays.
This starts a fresh local cluster (fresh ports, temporary data, no fsync: the nodes'
disks are not what is measured) and one router process, then, for each mode, reads the
router's CPU time (utime + stime from /proc/<pid>/stat) before and after N operations
sent through it, and divides by N; the nodes' CPU per operation is read the same way (what
coalescing should save). The median over runs is printed.

    .venv/bin/python benchmarks/router_cpu.py [--ops 2000] [--runs 3] [--concurrency 32]
        [--batch-size 50] [--coalesce-wait-ms 1] [--json]

Modes: ``single`` (concurrent single deposits: coalesced by the router when
coalesce_wait_ms > 0), ``single-uncoalesced`` (the same with a second router started with
coalesce_wait_ms = 0, to show what coalescing saves), and ``batch`` (Batch.Execute of
--batch-size deposits spread over every shard: the router splits, forwards the parts in
parallel and reassembles). Linux only (/proc).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import tomllib
from collections.abc import Awaitable, Callable
from pathlib import Path

from hongbao.client.sdk import ClientOptions, HongbaoClient, new_request_id
from hongbao.config.topology import Topology, load_topology
from hongbao.ops.local import LocalCluster, insecure_args, wait_until, write_topology
from hongbao.proto.gen.hongbao.v1 import ledger_pb2

CLOCK_TICKS_PER_S = os.sysconf("SC_CLK_TCK")
READY_TIMEOUT_S = 30.0


def cpu_s(pid: int) -> float:
    """CPU seconds (user + system) used so far by process ``pid``."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS_PER_S  # utime, stime


def start_router(config: Path, topology: Topology, work: Path) -> subprocess.Popen[bytes]:
    spec = topology.routers[0]
    ready = work / f"router-{config.stem}.ready"
    ready.unlink(missing_ok=True)
    command = [
        sys.executable, "-m", "hongbao.cli", "router", "run", "--config", str(config),
        "--region", spec.region, "--router-id", str(spec.router_id),
        "--ready-file", str(ready), "--log-level", "warning", *insecure_args(topology),
    ]  # fmt: skip
    with (work / f"router-{config.stem}.log").open("ab") as log:
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
    wait_until(lambda: ready.exists() or process.poll() is not None, READY_TIMEOUT_S, "router")
    if process.poll() is not None:
        raise RuntimeError(f"the router exited; see {work}")
    return process


def deposit_op(client: HongbaoClient, user: str) -> tuple[int, ledger_pb2.Operation]:
    request = ledger_pb2.DepositRequest(request_id=new_request_id(), user_id=user, amount_fen=1)
    return client.user_shard(user), ledger_pb2.Operation(deposit=request)


async def singles(client: HongbaoClient, ops: int, concurrency: int) -> None:
    counter = iter(range(ops))

    async def worker(w: int) -> None:
        for i in counter:
            await client.deposit(f"cpu-{w}-{i % 97}", 1)

    await asyncio.gather(*(worker(w) for w in range(concurrency)))


async def batches(client: HongbaoClient, ops: int, batch_size: int) -> None:
    for start in range(0, ops, batch_size):
        size = min(batch_size, ops - start)
        results = await client.execute([deposit_op(client, f"b-{start + i}") for i in range(size)])
        failed = [r for r in results if r.WhichOneof("result") == "error"]
        if failed:
            raise RuntimeError(f"{len(failed)} operations of a batch failed: {failed[0]}")


def measure(
    pid: int,
    node_pids: list[int],
    topology: Topology,
    work: Callable[[HongbaoClient], Awaitable[None]],
    ops: int,
) -> tuple[float, float, float]:
    """(router CPU us per operation, the nodes' CPU us per operation, operations per s)."""

    async def run() -> tuple[float, float, float]:
        options = ClientOptions(timeout_s=5.0)
        async with HongbaoClient.via_routers(topology, options) as client:
            await client.deposit("warm-up", 1)
            before = cpu_s(pid)
            nodes_before = sum(cpu_s(n) for n in node_pids)
            started = time.monotonic()
            await work(client)
            elapsed = time.monotonic() - started
            nodes_us = (sum(cpu_s(n) for n in node_pids) - nodes_before) * 1e6 / ops
            return (cpu_s(pid) - before) * 1e6 / ops, nodes_us, ops / elapsed

    return asyncio.run(run())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", type=Path, default=Path("configs/local.toml"))
    parser.add_argument("--ops", type=int, default=2_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--batch-size", type=int, default=50)
    parser.add_argument("--coalesce-wait-ms", type=int, default=1)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    work_dir = Path(tempfile.mkdtemp(prefix="hongbao-router-cpu-"))
    routers: list[subprocess.Popen[bytes]] = []
    report: dict[str, dict[str, float]] = {}
    try:
        router_table = dict(tomllib.loads(args.config.read_text()).get("router", {}))
        config = write_topology(
            work_dir / "coalesced.toml",
            template=args.config,
            overrides={"router": {**router_table, "coalesce_wait_ms": args.coalesce_wait_ms}},
        )
        topology = load_topology(config)
        # The same ports, the router without coalescing: started after the first stops.
        plain = work_dir / "plain.toml"
        plain.write_text(
            config.read_text().replace(
                f"coalesce_wait_ms = {args.coalesce_wait_ms}", "coalesce_wait_ms = 0"
            )
        )
        with LocalCluster(config, work_dir / "data", no_fsync=True) as cluster:
            cluster.start()
            modes: list[tuple[str, Path, Callable[[HongbaoClient], Awaitable[None]]]] = [
                ("single", config, lambda c: singles(c, args.ops, args.concurrency)),
                ("batch", config, lambda c: batches(c, args.ops, args.batch_size)),
                ("single-uncoalesced", plain, lambda c: singles(c, args.ops, args.concurrency)),
            ]
            for name, mode_config, work in modes:
                router = start_router(mode_config, topology, work_dir)
                routers.append(router)
                node_pids = [p.pid for p in cluster.processes.values()]
                samples = [
                    measure(router.pid, node_pids, topology, work, args.ops)
                    for _ in range(args.runs)
                ]
                router.send_signal(signal.SIGTERM)
                router.wait(15)
                cpu_us = statistics.median(s[0] for s in samples)
                nodes_us = statistics.median(s[1] for s in samples)
                rate = statistics.median(s[2] for s in samples)
                report[name] = {
                    "router_cpu_us_per_op": cpu_us,
                    "nodes_cpu_us_per_op": nodes_us,
                    "ops_per_s": rate,
                }
                if not args.json:
                    runs = ", ".join(f"{s[0]:.0f}" for s in samples)
                    print(f"{name:>19}: router {cpu_us:5.0f} us CPU/op (runs: {runs}), "
                          f"nodes {nodes_us:5.0f} us CPU/op, {rate:6.0f} ops/s")  # fmt: skip
            cluster.stop_all()
        if args.json:
            print(json.dumps(report, sort_keys=True))
    finally:
        for router in routers:
            if router.poll() is None:
                router.kill()
                router.wait(15)
        shutil.rmtree(work_dir, ignore_errors=True)


if __name__ == "__main__":
    main()
