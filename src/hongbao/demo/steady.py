"""A steady load through the routers while something happens to the cluster.

Rules of this module: ``workers`` callers each send one small transfer at a time, in a
ring of demo users funded first, for as long as the load runs (``async with``), at most
``requests_max`` in all. Every answer is counted: acknowledged, or failed by its reason
(a refusal, a deadline, an outcome unknown: the SDK's retries are inside one call, so a
failure here is what a user would see). Stopping waits for the calls in flight (each has
the client's deadline) instead of cancelling them, so none ends "abandoned".
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from dataclasses import dataclass, field

from hongbao.client.sdk import HongbaoClient
from hongbao.node.errors import HongbaoError

STEADY_WORKERS = 4
STEADY_FUND_FEN = 100_000
STEADY_REQUESTS_MAX = 100_000


@dataclass(slots=True)
class LoadCount:
    acknowledged: int = 0
    failed_by_reason: Counter[str] = field(default_factory=Counter)
    transferred_fen: int = 0
    elapsed_s: float = 0.0

    @property
    def failed(self) -> int:
        return sum(self.failed_by_reason.values())


class SteadyLoad:
    """Transfers of 1 fen around a ring of users, until stopped."""

    def __init__(
        self, client: HongbaoClient, users: list[str], *, workers: int = STEADY_WORKERS
    ) -> None:
        if len(users) < 2:
            raise ValueError("a steady load needs at least two users")
        self.client = client
        self.users = users
        self.workers = workers
        self.count = LoadCount()
        self._stopping = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._started = 0.0
        self._sent = 0

    async def fund(self) -> int:
        """Give every ring user STEADY_FUND_FEN; returns the total deposited."""
        await asyncio.gather(*(self.client.deposit(u, STEADY_FUND_FEN) for u in self.users))
        return STEADY_FUND_FEN * len(self.users)

    async def _worker(self, index: int) -> None:
        step = 0
        while not self._stopping.is_set() and self._sent < STEADY_REQUESTS_MAX:
            self._sent += 1
            payer = self.users[(index + step) % len(self.users)]
            payee = self.users[(index + step + 1) % len(self.users)]
            step += self.workers
            try:
                await self.client.transfer(payer, payee, 1)
            except HongbaoError as error:
                self.count.failed_by_reason[error.reason.value] += 1
                continue
            self.count.acknowledged += 1
            self.count.transferred_fen += 1

    def start(self) -> None:
        self._started = time.monotonic()
        self._tasks = [asyncio.create_task(self._worker(i)) for i in range(self.workers)]

    async def stop(self) -> LoadCount:
        self._stopping.set()
        await asyncio.gather(*self._tasks)
        self.count.elapsed_s = time.monotonic() - self._started
        return self.count

    async def __aenter__(self) -> SteadyLoad:
        self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        if not self._stopping.is_set():
            await self.stop()
