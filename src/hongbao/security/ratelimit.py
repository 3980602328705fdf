"""A warning log that a hostile caller cannot flood: a few lines a second, the rest counted.

Used for refusals (handshakes, calls, peer traffic), whose number an attacker chooses.
It imports nothing of gRPC, so :mod:`hongbao.security.handshake_log` may use it before
grpc is imported.
"""

from __future__ import annotations

import logging
import threading
import time


class RateLimitedLog:
    """At most ``per_s`` lines a second; the others are counted and announced with the next."""

    def __init__(self, logger: logging.Logger, per_s: int, what: str) -> None:
        self.logger = logger
        self.per_s = per_s
        self.what = what  # "refused calls": how the suppressed ones are named
        self.suppressed = 0
        self._second = 0
        self._in_second = 0
        self._lock = threading.Lock()  # the handshake log writes from its own thread

    def warning(self, message: str, *args: object) -> None:
        second = int(time.monotonic())
        with self._lock:
            if second != self._second:
                self._second, self._in_second = second, 0
            if self._in_second >= self.per_s:
                self.suppressed += 1
                return
            self._in_second += 1
            suppressed, self.suppressed = self.suppressed, 0
        if suppressed:
            self.logger.warning("%d more %s were not logged", suppressed, self.what)
        self.logger.warning(message, *args)
