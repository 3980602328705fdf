"""Helpers for the region-operation tests: a cluster with routers, a steady load, probes.

Rules of this module: every process, thread and channel it starts it also ends, on
every exit path (context managers); every wait is a condition polled until a deadline.
Only 127.0.0.1 (``write_topology`` rewrites the template's hosts and ports).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from hongbao.config.topology import Topology
from hongbao.node.errors import error_from_rpc_error
from hongbao.ops.admin_pool import AdminPool
from hongbao.ops.balance import move_leaders_home
from hongbao.ops.local import LocalCluster, write_topology
from hongbao.ops.status import ClusterStatus, cluster_status, wait_for_leaders
from hongbao.proto.gen.hongbao.v1 import ledger_pb2, ledger_pb2_grpc

REPO = Path(__file__).resolve().parents[2]
TEMPLATE = REPO / "configs" / "local.toml"
HONGBAO = [sys.executable, "-m", "hongbao.cli"]
LEADERS_TIMEOUT_S = 30.0
CALL_TIMEOUT_S = 15.0  # above the router's request_timeout_ms (10 s): the router gives up first


def hongbao(*args: str, timeout_s: float = 120.0) -> subprocess.CompletedProcess[str]:
    """Run the real command line in a child process (its own event loop, its own exit)."""
    return subprocess.run(
        [*HONGBAO, *args], capture_output=True, text=True, timeout=timeout_s, cwd=REPO,
        env={**os.environ, "COLUMNS": "200"}, check=False,
    )  # fmt: skip


async def _settle(topology: Topology) -> None:
    async with AdminPool.for_topology(topology) as pool:
        await wait_for_leaders(pool, LEADERS_TIMEOUT_S, include_meta=True)
        await move_leaders_home(pool, LEADERS_TIMEOUT_S)


def settle(topology: Topology) -> None:
    """Every group has a leader, led from its home (as `cluster up` leaves it)."""
    asyncio.run(_settle(topology))


def status_of(topology: Topology) -> ClusterStatus:
    async def main() -> ClusterStatus:
        async with AdminPool.for_topology(topology) as pool:
            return await cluster_status(pool)

    return asyncio.run(main())


def group_leaders(topology: Topology) -> dict[int, int]:
    return status_of(topology).group_leaders()


@contextlib.contextmanager
def cluster_with_routers(
    root: Path, *, shard_count: int = 12, router: dict[str, int] | None = None
) -> Iterator[LocalCluster]:
    """configs/local.toml on fresh ports (``shard_count`` and ``[router]`` overridden),
    nodes and routers running as children, every group led from home. Everything is
    killed at exit."""
    overrides: dict[str, object] = {} if shard_count == 12 else {"shard_count": shard_count}
    if router:
        overrides["router"] = dict(router)
    path = write_topology(root / "topology.toml", template=TEMPLATE, overrides=overrides)
    with LocalCluster(path, root / "data", no_fsync=True) as cluster:
        cluster.start()
        cluster.start_routers()
        settle(cluster.topology)
        yield cluster


def health_of(address: str, service: str) -> int:
    """grpc.health.v1 status of ``service`` at ``address`` (a HealthCheckResponse value)."""
    with grpc.insecure_channel(address) as channel:
        response = health_pb2_grpc.HealthStub(channel).Check(  # type: ignore[attr-defined]
            health_pb2.HealthCheckRequest(service=service), timeout=2.0
        )
    return int(response.status)


NOT_SERVING = int(health_pb2.HealthCheckResponse.NOT_SERVING)
SERVING = int(health_pb2.HealthCheckResponse.SERVING)


@dataclass(slots=True)
class Failure:
    at_s: float  # time.monotonic()
    router: str
    error: str


@dataclass(slots=True)
class LoadStats:
    acknowledged: dict[str, int] = field(default_factory=dict)  # user -> deposits acked
    attempts: int = 0
    failures: list[Failure] = field(default_factory=list)
    abandoned: int = 0  # calls still running when the load was told to stop and join
    started_at: float = 0.0
    stopped_at: float = 0.0

    @property
    def ok(self) -> int:
        return sum(self.acknowledged.values())


class Load:
    """Deposits of 1 fen, ``workers`` callers at once, each through its region's router.

    A caller that gets an error records it and retries with the SAME request id until it
    is acknowledged (so the books stay exact: each acknowledged id is one fen). Runs in a
    thread with its own event loop; ``stop`` lets every in-flight call finish.
    """

    def __init__(self, topology: Topology, *, workers: int = 9, prefix: str = "load") -> None:
        self.topology = topology
        self.workers = workers
        self.prefix = prefix
        self.stats = LoadStats()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._main, name="load", daemon=True)
        self._inflight = 0
        self._lock = threading.Lock()

    def users(self) -> list[str]:
        return [f"{self.prefix}-{i}" for i in range(self.workers)]

    def __enter__(self) -> Load:
        self.stats.started_at = time.monotonic()
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def wait_for_acks(self, count: int, timeout_s: float = 30.0) -> None:
        deadline = time.monotonic() + timeout_s
        while self.stats.ok < count:
            if time.monotonic() > deadline or not self._thread.is_alive():
                raise TimeoutError(f"the load got {self.stats.ok} acknowledgements, not {count}")
            time.sleep(0.02)

    def stop(self, timeout_s: float = 60.0) -> LoadStats:
        if self._thread.is_alive():
            self._stop.set()
            self._thread.join(timeout_s)
            with self._lock:
                self.stats.abandoned = self._inflight
            self.stats.stopped_at = time.monotonic()
        return self.stats

    def _main(self) -> None:
        asyncio.run(self._run())

    async def _run(self) -> None:
        routers = list(self.topology.routers)
        channels = [grpc.aio.insecure_channel(r.address) for r in routers]
        try:
            pairs = zip(routers, channels, strict=True)
            stubs = [(r.address, ledger_pb2_grpc.WalletStub(c)) for r, c in pairs]
            await asyncio.gather(
                *(self._worker(user, i, stubs) for i, user in enumerate(self.users()))
            )
        finally:
            for channel in channels:
                await channel.close()

    async def _worker(
        self, user: str, index: int, stubs: list[tuple[str, ledger_pb2_grpc.WalletStub]]
    ) -> None:
        """Through router ``index`` (its region's); after a failure, the next router (as
        the SDK fails over when its own region's router is gone)."""
        self.stats.acknowledged.setdefault(user, 0)
        router, stub = stubs[index % len(stubs)]
        while not self._stop.is_set():
            request = ledger_pb2.DepositRequest(
                request_id=uuid.uuid4().hex, user_id=user, amount_fen=1
            )
            while True:  # the same request id until it is acknowledged
                with self._lock:
                    self._inflight += 1
                    self.stats.attempts += 1
                try:
                    await stub.Deposit(request, timeout=CALL_TIMEOUT_S)
                except grpc.aio.AioRpcError as error:
                    decoded = error_from_rpc_error(error)
                    self.stats.failures.append(Failure(time.monotonic(), router, str(decoded)))
                    index += 1
                    router, stub = stubs[index % len(stubs)]
                    await asyncio.sleep(0.05)
                    continue
                finally:
                    with self._lock:
                        self._inflight -= 1
                self.stats.acknowledged[user] += 1
                break


def balances(topology: Topology, users: list[str]) -> dict[str, int]:
    """Each user's balance, read through the first router (a linearizable read)."""

    async def main() -> dict[str, int]:
        async with grpc.aio.insecure_channel(topology.routers[0].address) as channel:
            stub = ledger_pb2_grpc.WalletStub(channel)
            found: dict[str, int] = {}
            for user in users:
                response = await stub.Balance(
                    ledger_pb2.BalanceRequest(user_id=user), timeout=CALL_TIMEOUT_S
                )
                found[user] = int(response.balance_fen)
            return found

    return asyncio.run(main())


def status_json(config: Path) -> dict[str, Any]:
    result = hongbao("cluster", "status", "--config", str(config), "--json")
    assert result.returncode in (0, 4, 5), result.stderr
    data = json.loads(result.stdout)
    assert isinstance(data, dict)
    return data


def wait_home(topology: Topology, config: Path, timeout_s: float = 30.0) -> None:
    """Until every shard is led from its home node. A busy machine may move a leader by
    an election after a balance; balance (the tool for that) is then run again."""
    home = {s: int(topology.home_leader_of(s)) for s in range(topology.shard_count)}
    deadline = time.monotonic() + timeout_s
    while True:
        leaders = group_leaders(topology)
        if {s: leaders.get(s) for s in home} == home:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"not led from home: {leaders}")
        balanced = hongbao("cluster", "balance", "--config", str(config), "--json")
        assert balanced.returncode == 0, balanced.stderr
        print(f"\nre-balanced after an election moved a leader: {balanced.stdout.strip()}")
