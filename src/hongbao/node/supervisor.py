"""Background work of a node: what restarts alone and what stops the node.

Rules of this module: work that serves one peer or one shard (a peer's outgoing stream,
the courier) must fail alone: :func:`restarting` logs the failure with its traceback and
starts the work again after a back-off that doubles from :data:`BACKOFF_MS_MIN` to
:data:`BACKOFF_MS_MAX` (and resets after a run that lasted longer than the maximum), so a
bug that fires on one peer's input never stops the node, and one that fires at every
start cannot spin the CPU. Only the runtime's loop, without which nothing works, is
critical: its failure still stops the node (``NodeServer``), loudly.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Final

log = logging.getLogger(__name__)

BACKOFF_MS_MIN: Final = 100
BACKOFF_MS_MAX: Final = 5_000


async def restarting(
    name: str,
    work: Callable[[], Awaitable[None]],
    *,
    backoff_ms_min: int = BACKOFF_MS_MIN,
    backoff_ms_max: int = BACKOFF_MS_MAX,
    restarts: list[int] | None = None,
) -> None:
    """Run ``work()`` until cancelled, restarting it with back-off when it fails or ends.

    ``restarts``, if given, gets one element appended per restart (a counter for tests and
    metrics that needs no lock: everything runs on one loop).
    """
    backoff_ms = backoff_ms_min
    while True:
        started_s = time.monotonic()
        try:
            await work()
            log.error("%s ended by itself; starting it again", name)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("%s failed; starting it again in %d ms", name, backoff_ms)
        if restarts is not None:
            restarts.append(1)
        if (time.monotonic() - started_s) * 1000 > backoff_ms_max:
            backoff_ms = backoff_ms_min  # it ran for a while: this is a new failure
        await asyncio.sleep(backoff_ms / 1000)
        backoff_ms = min(2 * backoff_ms, backoff_ms_max)
