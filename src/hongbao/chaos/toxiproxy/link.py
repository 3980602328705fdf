"""One direction of one proxied connection: read the source, run the chain, write the
destination; and the rewiring of that chain while bytes flow.

Rules of this module (the Go reference's ``link.go``): the chain is a hidden pass-through
head stage followed by one stage per toxic of this stream, oldest first. Adding appends a
stage after the last one; updating restarts one stage with new settings; removing joins
its neighbours after forwarding everything it held or had queued, so no byte is lost or
reordered. Each rewiring interrupts only the stages it touches, under the link's lock.
When the source ends, EOF travels the chain; when it reaches the end, the destination
socket is closed whole (no half-close), which in turn ends the other direction.
"""

from __future__ import annotations

import asyncio
import random
from dataclasses import dataclass
from typing import final

from hongbao.chaos.toxiproxy.limits import CHUNK_BYTES_MAX, LATENCY_CHUNKS_MAX, STAGE_CHUNKS_MAX
from hongbao.chaos.toxiproxy.spec import Direction, ToxicSpec
from hongbao.chaos.toxiproxy.stage import EOF, Channel, Chunk, EndOfStream, Stage
from hongbao.chaos.toxiproxy.toxics import make_pipe


@dataclass(slots=True)
class DirectionCounters:
    """Bytes of one stream of one proxy: read from the source, written to the destination."""

    received_bytes: int = 0
    sent_bytes: int = 0


def stage_capacity(spec: ToxicSpec) -> int:
    return LATENCY_CHUNKS_MAX if spec.type == "latency" else STAGE_CHUNKS_MAX


@final
class Link:
    """The chain of one stream of one connection, with its reader and writer tasks."""

    def __init__(
        self,
        *,
        direction: Direction,
        source: asyncio.StreamReader,
        destination: asyncio.StreamWriter,
        rng: random.Random,
        counters: DirectionCounters,
    ) -> None:
        self.direction = direction
        self._source = source
        self._destination = destination
        self._rng = rng
        self._counters = counters
        self._output = Channel(STAGE_CHUNKS_MAX)
        self._stages = [Stage(input_channel=Channel(STAGE_CHUNKS_MAX), output_channel=self._output)]
        self._specs: list[ToxicSpec | None] = [None]
        self._lock = asyncio.Lock()
        self._tasks: list[asyncio.Task[None]] = []
        self.writer_done = asyncio.Event()

    def start(self, specs: list[ToxicSpec]) -> None:
        """Build the chain with the toxics configured now and start moving bytes."""
        for spec in specs:
            last = self._stages[-1]
            stage = Stage(input_channel=Channel(stage_capacity(spec)), output_channel=self._output)
            last.output = stage.input
            self._stages.append(stage)
            self._specs.append(spec)
        self._stages[0].start(make_pipe(_HEAD, self._rng))
        for stage, spec in zip(self._stages[1:], specs, strict=True):
            stage.start(make_pipe(spec, self._rng))
        loop = asyncio.get_running_loop()
        self._tasks = [loop.create_task(self._read()), loop.create_task(self._write())]

    async def _read(self) -> None:
        loop = asyncio.get_running_loop()
        head = self._stages[0].input
        try:
            while True:
                data = await self._source.read(CHUNK_BYTES_MAX)
                if not data:
                    break
                self._counters.received_bytes += len(data)
                await head.put(Chunk(data, loop.time()))
        except OSError:
            pass
        await head.put(EOF)

    async def _write(self) -> None:
        try:
            while True:
                item = await self._output.get()
                if isinstance(item, EndOfStream):
                    break
                if not item.data:
                    continue
                if self._destination.is_closing():
                    break
                self._destination.write(item.data)
                await self._destination.drain()
                self._counters.sent_bytes += len(item.data)
        except OSError:
            pass
        finally:
            self._destination.close()
            self.writer_done.set()

    def _index(self, name: str) -> int | None:
        for index, spec in enumerate(self._specs):
            if spec is not None and spec.name == name:
                return index
        return None

    async def add(self, spec: ToxicSpec) -> None:
        """Append a stage: the toxic acts on bytes not yet past the end of the chain."""
        async with self._lock:
            last = self._stages[-1]
            stage = Stage(input_channel=Channel(stage_capacity(spec)), output_channel=self._output)
            running = await last.interrupt()
            last.output = stage.input
            self._stages.append(stage)
            self._specs.append(spec)
            stage.start(make_pipe(spec, self._rng))
            if running and not last.flush_held():
                last.start(make_pipe(self._specs[-2] or _HEAD, self._rng))

    async def update(self, spec: ToxicSpec) -> None:
        """Restart the toxic's stage with new settings; what it held is released at once."""
        async with self._lock:
            index = self._index(spec.name)
            if index is None:
                return
            stage = self._stages[index]
            running = await stage.interrupt()
            self._specs[index] = spec
            if running and not stage.flush_held():
                stage.start(make_pipe(spec, self._rng))

    async def remove(self, name: str) -> None:
        """Take a stage out: forward what it held and queued, in order, then join."""
        async with self._lock:
            index = self._index(name)
            if index is None:
                return
            stage = self._stages[index]
            previous = self._stages[index - 1]
            await stage.interrupt()
            previous_running = await previous.interrupt()
            # The removed stage's held items are older than its queued ones.
            for item in [*stage.held, *stage.input.drain()]:
                stage.output.force(item)
            stage.held.clear()
            previous.output = stage.output
            del self._stages[index]
            del self._specs[index]
            if previous_running and not previous.flush_held():
                previous.start(make_pipe(self._specs[index - 1] or _HEAD, self._rng))

    def cancel(self) -> None:
        """Stop every task of the link at once (the proxy closes the connection)."""
        for task in self._tasks:
            task.cancel()
        for stage in self._stages:
            stage.cancel()
        self._destination.close()
        self.writer_done.set()


_HEAD = ToxicSpec(name="", type="noop", stream="", direction="upstream", toxicity=1.0)
