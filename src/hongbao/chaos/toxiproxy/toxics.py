"""The data path of each toxic type: one class per type, each a loop over one stage.

Rules of this module: a toxic only moves chunks from its stage's input to its output
through the ``Stage`` helpers (so an interrupt never loses a chunk), reads time from the
event loop, and draws randomness only from the link's own ``random.Random`` (seeded per
connection and stream, so a seeded server replays its draws). Behaviour follows the Go
reference (Shopify/toxiproxy v2.12.0, ``toxics/*.go``), summarised in each docstring.
"""

from __future__ import annotations

import asyncio
import random
from typing import ClassVar, final

from hongbao.chaos.toxiproxy.spec import ToxicSpec
from hongbao.chaos.toxiproxy.stage import Chunk, EndOfStream, PipeFn, Stage

STALL_FOREVER_S = 3600.0


class Toxic:
    """Base: ``run`` is the stage's task body for one configured toxic."""

    type_name: ClassVar[str] = "noop"

    def __init__(self, spec: ToxicSpec, rng: random.Random) -> None:
        self.spec = spec
        self.rng = rng

    async def run(self, stage: Stage) -> None:
        """Pass everything through unchanged (``noop``, and an inactive toxicity draw)."""
        while True:
            item = await stage.take()
            await stage.pass_on()
            if isinstance(item, EndOfStream):
                return


@final
class Noop(Toxic):
    type_name = "noop"


@final
class Latency(Toxic):
    """Each chunk leaves ``latency ± jitter`` ms after it was read; order is kept."""

    type_name = "latency"

    async def run(self, stage: Stage) -> None:
        loop = asyncio.get_running_loop()
        latency_ms = self.spec.attribute("latency")
        jitter_ms = self.spec.attribute("jitter")
        while True:
            item = await stage.take()
            if isinstance(item, Chunk):
                delay_ms = latency_ms
                if jitter_ms > 0:
                    delay_ms += self.rng.randrange(2 * jitter_ms) - jitter_ms
                wait_s = item.received_at_s + delay_ms / 1000 - loop.time()
                # As the reference does, the chunk's stamp moves by the wait, so that the
                # next latency toxic of the chain adds its delay after this one's.
                stage.held[0] = Chunk(item.data, item.received_at_s + wait_s)
                if wait_s > 0:
                    await asyncio.sleep(wait_s)
            await stage.pass_on()
            if isinstance(item, EndOfStream):
                return


@final
class Bandwidth(Toxic):
    """Chunks leave at ``rate`` KB/s (1 KB = 1000 bytes); big ones in 100 ms pieces.

    ``rate`` 0 (or negative, which crashes the reference) stalls the stream: the chunk
    is held until the toxic is updated or removed.
    """

    type_name = "bandwidth"

    async def run(self, stage: Stage) -> None:
        loop = asyncio.get_running_loop()
        rate_bytes_per_ms = self.spec.attribute("rate")
        sleep_s = 0.0
        while True:
            item = await stage.take()
            if isinstance(item, EndOfStream):
                await stage.pass_on()
                return
            while rate_bytes_per_ms <= 0:
                await asyncio.sleep(STALL_FOREVER_S)
            sleep_s += len(item.data) / rate_bytes_per_ms / 1000
            piece_bytes = rate_bytes_per_ms * 100
            data = item.data
            while len(data) > piece_bytes:
                await asyncio.sleep(0.1)
                rest = Chunk(data[piece_bytes:], item.received_at_s)
                await stage.emit_part(Chunk(data[:piece_bytes], item.received_at_s), rest)
                data = rest.data
                sleep_s -= 0.1
            started_s = loop.time()
            if sleep_s > 0:
                await asyncio.sleep(sleep_s)
            sleep_s -= loop.time() - started_s
            await stage.pass_on()


@final
class SlowClose(Toxic):
    """Data passes; the close is propagated only ``delay`` ms after the source closed."""

    type_name = "slow_close"

    async def run(self, stage: Stage) -> None:
        while True:
            item = await stage.take()
            if isinstance(item, EndOfStream):
                await asyncio.sleep(self.spec.attribute("delay") / 1000)
            await stage.pass_on()
            if isinstance(item, EndOfStream):
                return


@final
class Timeout(Toxic):
    """Every chunk is discarded; with ``timeout`` > 0 the link closes after that long
    without data (the countdown restarts at each discarded chunk); 0 never closes."""

    type_name = "timeout"

    async def run(self, stage: Stage) -> None:
        timeout_s = self.spec.attribute("timeout") / 1000
        while True:
            try:
                async with asyncio.timeout(timeout_s if timeout_s > 0 else None):
                    item = await stage.take()
            except TimeoutError:
                await stage.close_output()
                return
            if isinstance(item, EndOfStream):
                await stage.pass_on()
                return
            stage.drop()


@final
class ResetPeer(Toxic):
    """The first chunk (or EOF) is dropped, then after ``timeout`` ms the link closes
    (a TCP RST when the connection was opened with this toxic present: SO_LINGER 0)."""

    type_name = "reset_peer"

    async def run(self, stage: Stage) -> None:
        await stage.take()
        stage.drop()
        # The reference's DELETE waits for this timer; so does an interrupt here.
        stage.uninterruptible = True
        await asyncio.sleep(self.spec.attribute("timeout") / 1000)
        await stage.close_output()


@final
class Slicer(Toxic):
    """Each chunk is cut into pieces of about ``average_size`` ± ``size_variation``
    bytes (recursive halving at a random offset), ``delay`` µs apart.

    Values the reference cannot handle (``average_size`` < 1, ``size_variation`` ≥
    ``average_size``) are clamped here instead of crashing.
    """

    type_name = "slicer"
    PIECES_MAX = 64 * 1024

    def cuts(self, size_bytes: int) -> list[int]:
        """Offsets 0 = c0 < c1 < … < cn = size_bytes, iteratively (no recursion)."""
        average = max(1, self.spec.attribute("average_size"))
        variation = min(max(0, self.spec.attribute("size_variation")), average - 1)
        cuts = [0]
        pending = [(0, size_bytes)]
        while pending and len(cuts) < self.PIECES_MAX:
            start, end = pending.pop()
            if (end - start) - average <= variation:
                cuts.append(end)
                continue
            middle = start + (end - start) // 2
            if variation > 0:
                middle += self.rng.randrange(variation * 2) - variation
            pending.append((middle, end))
            pending.append((start, middle))
        if cuts[-1] != size_bytes:
            cuts.append(size_bytes)
        return cuts

    async def run(self, stage: Stage) -> None:
        delay_s = self.spec.attribute("delay") / 1_000_000
        while True:
            item = await stage.take()
            if isinstance(item, EndOfStream):
                await stage.pass_on()
                return
            cuts = self.cuts(len(item.data))
            for index in range(1, len(cuts)):
                part = Chunk(item.data[cuts[index - 1] : cuts[index]], item.received_at_s)
                last = index == len(cuts) - 1
                rest = None if last else Chunk(item.data[cuts[index] :], item.received_at_s)
                await stage.emit_part(part, rest)
                if not last:
                    await asyncio.sleep(delay_s)


@final
class LimitData(Toxic):
    """At most ``bytes`` bytes pass per connection (the crossing chunk is truncated),
    then the link closes; the count survives updates of the toxic."""

    type_name = "limit_data"

    async def run(self, stage: Stage) -> None:
        limit_bytes = self.spec.attribute("bytes")
        while True:
            item = await stage.take()
            if isinstance(item, EndOfStream):
                await stage.pass_on()
                return
            remaining_bytes = max(0, limit_bytes - stage.bytes_passed)
            data = item.data[:remaining_bytes]
            if data:
                await stage.emit_part(Chunk(data, item.received_at_s), None)
                stage.bytes_passed += len(data)
            else:
                stage.drop()
            if limit_bytes - stage.bytes_passed <= 0:
                await stage.close_output()
                return


@final
class Loss(Toxic):
    """Extension: each chunk is, with probability ``percent``/100, dropped (``stall``
    0) or held ``stall`` ms (a retransmission stall); other chunks pass unchanged."""

    type_name = "loss"

    async def run(self, stage: Stage) -> None:
        share = self.spec.attribute("percent") / 100
        stall_s = self.spec.attribute("stall") / 1000
        while True:
            item = await stage.take()
            if isinstance(item, Chunk) and self.rng.random() < share:
                if stall_s <= 0:
                    stage.drop()
                    continue
                await asyncio.sleep(stall_s)
            await stage.pass_on()
            if isinstance(item, EndOfStream):
                return


TOXIC_CLASSES: dict[str, type[Toxic]] = {
    cls.type_name: cls
    for cls in (Noop, Latency, Bandwidth, SlowClose, Timeout, ResetPeer, Slicer, LimitData, Loss)
}


def make_pipe(spec: ToxicSpec, rng: random.Random) -> PipeFn:
    """The task body of a stage starting now: the toxicity draw decides, per start,
    whether this link gets the toxic or a pass-through (the reference redraws at every
    restart of the stage)."""
    active = rng.random() < spec.toxicity
    toxic = TOXIC_CLASSES[spec.type](spec, rng) if active else Noop(spec, rng)
    return toxic.run
