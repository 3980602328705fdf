"""One stage of a link's toxic chain: its input channel, the chunks it holds, its task.

Rules of this module: a stage never loses a chunk. A toxic that takes a chunk from its
input keeps it in ``held`` until it has been put on the output (or deliberately dropped),
so when the chain is rewired (a toxic added, updated or removed) the task is cancelled
and whatever it held is forwarded in order: the Go reference's "don't drop any data on
the floor" on interrupt. Everything runs on one event loop, so the hand-offs between
``held`` and a channel happen without an await in between and cannot be torn.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any, final

from hongbao.chaos.toxiproxy.limits import UNINTERRUPTIBLE_WAIT_S_MAX

log = logging.getLogger(__name__)


@final
@dataclass(frozen=True, slots=True)
class Chunk:
    """Bytes read from a socket, stamped with the loop time they were read (latency)."""

    data: bytes
    received_at_s: float


class EndOfStream:
    """The single end-of-stream marker: the source closed, or a toxic ends the link."""

    __slots__ = ()


EOF = EndOfStream()
Item = Chunk | EndOfStream


@final
class Channel:
    """A bounded FIFO between two stages, with one producer and one consumer at a time.

    ``put`` waits while ``capacity`` items are queued. ``force`` appends regardless; it
    is used only when rewiring moves items that were already inside the chain (so the
    chain's total stays bounded by the sum of its channels' capacities and holds).
    """

    def __init__(self, capacity: int) -> None:
        assert capacity >= 1, "capacity 0 cannot hand off on one event loop"
        self._items: deque[Item] = deque()
        self._capacity = capacity
        self._changed = asyncio.Event()

    def __len__(self) -> int:
        return len(self._items)

    async def put(self, item: Item) -> None:
        while len(self._items) >= self._capacity:
            self._changed.clear()
            await self._changed.wait()
        self._items.append(item)
        self._changed.set()

    def force(self, item: Item) -> None:
        self._items.append(item)
        self._changed.set()

    async def get(self) -> Item:
        while not self._items:
            self._changed.clear()
            await self._changed.wait()
        item = self._items.popleft()
        self._changed.set()
        return item

    def drain(self) -> list[Item]:
        """Take every queued item at once (rewiring, never a waiting consumer)."""
        items = list(self._items)
        self._items.clear()
        self._changed.set()
        return items


PipeFn = Callable[["Stage"], Coroutine[Any, Any, None]]


@final
class Stage:
    """One toxic on one link: reads ``input``, writes ``output`` (rewired on changes)."""

    def __init__(self, *, input_channel: Channel, output_channel: Channel) -> None:
        self.input = input_channel
        self.output = output_channel
        self.held: deque[Item] = deque()
        # Survives restarts of the stage (limit_data's count is kept across updates).
        self.bytes_passed = 0
        # Set by reset_peer while its timer runs: an interrupt waits for it instead.
        self.uninterruptible = False
        # True once this stage put EOF on its output: the link behind it is ending.
        self.ended = False
        self._task: asyncio.Task[None] | None = None

    def start(self, pipe: PipeFn) -> None:
        assert self._task is None or self._task.done(), "a stage runs one task at a time"
        self.uninterruptible = False
        self._task = asyncio.get_running_loop().create_task(self._guarded(pipe))

    async def _guarded(self, pipe: PipeFn) -> None:
        """A toxic that fails (a bug, or attributes no test foresaw) ends its link, not
        the server: the connection closes and the failure is logged."""
        try:
            await pipe(self)
        except Exception:
            log.exception("toxic stage failed; closing its connection")
            self.held.clear()
            self.output.force(EOF)
            self.ended = True

    async def interrupt(self) -> bool:
        """Stop the stage's task; True when the stage was still passing data.

        An uninterruptible stage (reset_peer's timer) is waited for, as the reference
        does, but at most ``UNINTERRUPTIBLE_WAIT_S_MAX``: then the link closes at once,
        so one huge timer cannot hold the API's lock.
        """
        task = self._task
        if task is None or task.done():
            return not self.ended
        if self.uninterruptible:
            done, _ = await asyncio.wait([task], timeout=UNINTERRUPTIBLE_WAIT_S_MAX)
            if not done:
                task.cancel()
                await asyncio.wait([task])
                self.held.clear()
                self.held.append(EOF)
            return not self.ended
        task.cancel()
        await asyncio.wait([task])
        return not self.ended

    def flush_held(self) -> bool:
        """Forward what the stopped stage held, in order; True if EOF was among it."""
        saw_eof = False
        while self.held:
            item = self.held.popleft()
            saw_eof = saw_eof or isinstance(item, EndOfStream)
            self.output.force(item)
        self.ended = self.ended or saw_eof
        return saw_eof

    # The helpers toxics use; they keep the "held until on the output" rule.

    async def take(self) -> Item:
        item = await self.input.get()
        self.held.append(item)
        return item

    async def pass_on(self) -> None:
        """Put the oldest held item on the output; it leaves ``held`` only once there."""
        item = self.held[0]
        await self.output.put(item)
        self.held.popleft()
        if isinstance(item, EndOfStream):
            self.ended = True

    async def emit_part(self, part: Chunk, rest: Chunk | None) -> None:
        """Put ``part`` of the oldest held chunk on the output; ``rest`` stays held."""
        await self.output.put(part)
        if rest is None:
            self.held.popleft()
        else:
            self.held[0] = rest

    def drop(self) -> None:
        self.held.popleft()

    async def close_output(self) -> None:
        """End the link from inside the chain (a toxic closing the connection)."""
        self.held.clear()
        self.held.append(EOF)
        await self.pass_on()

    def cancel(self) -> None:
        if self._task is not None:
            self._task.cancel()
