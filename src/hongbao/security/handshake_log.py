"""Log every refused TLS handshake with the peer's address, from gRPC's own trace.

Why this exists: a handshake that fails (no certificate, another CA, expired) never
becomes an RPC, so no servicer or interceptor sees it, and gRPC core logs it (at INFO)
without the peer's address (grpc/grpc#32893, open). Its ``handshaker`` trace does carry
the address (``grpc.internal.endpoint_peer_address``) next to the error. So a node with
TLS on runs with that trace enabled and with its stderr (file descriptor 2, where gRPC
core writes) passed through :class:`StderrTap`: it turns each failed handshake into one
``hongbao`` warning line, drops gRPC's INFO chatter, and forwards everything else
(our own log lines, tracebacks, gRPC warnings and errors) unchanged.

Rules of this module: the trace must be switched on in the environment before ``grpc``
is first imported (:func:`enable_trace`, called by the ``hongbao`` entry point for
``node run``). The tap never blocks the process: its reader thread only parses and
forwards, warnings are handed to a second thread through a bounded queue (full: dropped
and counted), and at most ``LOGS_PER_S`` refusals a second are logged, the rest counted.
If gRPC changes its trace format the only loss is these lines (a test pins the format).
"""

from __future__ import annotations

import atexit
import contextlib
import logging
import os
import queue
import re
import threading
from collections.abc import MutableMapping
from dataclasses import dataclass
from typing import Final

from hongbao.security.ratelimit import RateLimitedLog

log = logging.getLogger("hongbao.security.handshake")

TRACE_ENV: Final = "GRPC_TRACE"
VERBOSITY_ENV: Final = "GRPC_VERBOSITY"
TAP_ENV: Final = "HONGBAO_HANDSHAKE_LOG"  # "1" once enable_trace() set the trace up
TRACER: Final = "handshaker"
QUEUE_EVENTS_MAX: Final = 1024
LOGS_PER_S: Final = 10
LINE_BYTES_MAX: Final = 64 << 10  # a longer line is cut before it is parsed
JOIN_TIMEOUT_S: Final = 1.0

_CORE_LINE = re.compile(r"^([IWEF])\d{4} \d\d:\d\d:\d\d\.\d+\s+\d+ \S+:\d+\] ?(.*)$")
_FAILED = re.compile(r"CallNextHandshakerLocked: error=(?!OK )(.*)")
# What follows a gRPC status in its trace: a location trace, then the handshake's args.
_CONTINUATION = re.compile(r"^(=== Source Location Trace: ===|\S+\.(cc|h):\d+| shutdown=.*)?\s*$")
_PEER = re.compile(r"grpc\.internal\.endpoint_peer_address=([^,}\s]+)")
_SERVER_SIDE = "grpc.internal.server_credentials"
_OUR_VERBOSITY_NOTE = "Log level INFO is not suitable for production"  # we asked for INFO
_REASON = re.compile(r"OPENSSL_internal:(.*?)(?:: OK)?\s*$")


def enable_trace(environ: MutableMapping[str, str]) -> None:
    """Turn on gRPC's handshaker trace (INFO) in ``environ``, before grpc is imported."""
    tracers = [t for t in environ.get(TRACE_ENV, "").split(",") if t]
    if TRACER not in tracers:
        tracers.append(TRACER)
    environ[TRACE_ENV] = ",".join(tracers)
    if environ.get(VERBOSITY_ENV, "").upper() != "DEBUG":
        environ[VERBOSITY_ENV] = "INFO"
    environ[TAP_ENV] = "1"


@dataclass(frozen=True, slots=True)
class Refused:
    """One failed handshake: who, which way, and the TLS library's reason."""

    peer: str  # e.g. ipv4:127.0.0.1:50312
    incoming: bool  # a caller was refused by us (False: our dial was refused or failed)
    reason: str


class TraceParser:
    """Reads gRPC core's stderr lines; says what to forward and which handshakes failed.

    A failure is a ``CallNextHandshakerLocked: error=...`` trace line whose error is not
    OK; its handshake arguments, with the peer's address, end that line or come on a
    continuation line after a "Source Location Trace".
    """

    def __init__(self) -> None:
        self._error: str | None = None  # the error of a failure whose address is to come
        self._in_core_message = False

    def feed(self, line: str) -> tuple[bool, Refused | None]:
        """(forward this line?, the failed handshake it completes, if any)."""
        match = _CORE_LINE.match(line)
        if match is None:
            if not (self._in_core_message and _CONTINUATION.match(line)):
                self._in_core_message = False
                return True, None
            return False, self._complete(line)  # a continuation of a dropped gRPC message
        level, text = match.groups()
        self._error = None
        if level != "I" and _OUR_VERBOSITY_NOTE not in text:
            self._in_core_message = False
            return True, None
        self._in_core_message = True
        failed = _FAILED.search(text)
        if failed is None:
            return False, None
        self._error = failed.group(1)
        return False, self._complete(text)

    def _complete(self, text: str) -> Refused | None:
        if self._error is None:
            return None
        peer = _PEER.search(text)
        if peer is None:
            return None
        error, self._error = self._error, None
        return Refused(peer.group(1), _SERVER_SIDE in text, _reason(error))


def _reason(error: str) -> str:
    """``CERTIFICATE_VERIFY_FAILED: certificate has expired`` out of gRPC's error text."""
    error = error.split(" shutdown=", 1)[0]
    found = _REASON.search(error)
    text = found.group(1) if found else error
    return text.strip()[:200] or "handshake failed"


class StderrTap:
    """File descriptor 2 through a pipe and :class:`TraceParser`, back to the real stderr."""

    def __init__(self) -> None:
        self.refused = 0
        self.dropped_events = 0
        self._log = RateLimitedLog(log, LOGS_PER_S, "refused TLS handshakes")
        self._events: queue.Queue[Refused | None] = queue.Queue(QUEUE_EVENTS_MAX)
        self._saved_fd = -1
        self._threads: list[threading.Thread] = []

    def install(self) -> None:
        read_fd, write_fd = os.pipe()
        self._saved_fd = os.dup(2)
        os.dup2(write_fd, 2)
        os.close(write_fd)
        reader = threading.Thread(
            target=self._read, args=(read_fd,), name="stderr-tap", daemon=True
        )
        emitter = threading.Thread(target=self._emit, name="handshake-log", daemon=True)
        self._threads = [reader, emitter]
        for thread in self._threads:
            thread.start()
        atexit.register(self.uninstall)

    def uninstall(self) -> None:
        """Give fd 2 back and let the reader drain what is left (at exit)."""
        if self._saved_fd < 0:
            return
        with contextlib.suppress(OSError):
            os.dup2(self._saved_fd, 2)  # the pipe loses its last writer: the reader ends
        with contextlib.suppress(queue.Full):
            self._events.put_nowait(None)
        for thread in self._threads:
            thread.join(JOIN_TIMEOUT_S)

    def _read(self, read_fd: int) -> None:
        parser = TraceParser()
        with os.fdopen(read_fd, "rb", buffering=0) as pipe, contextlib.suppress(OSError):
            pending = b""
            while chunk := pipe.read(LINE_BYTES_MAX):
                pending += chunk
                *lines, pending = pending.split(b"\n")
                if len(pending) > LINE_BYTES_MAX:
                    lines.append(pending)
                    pending = b""
                self._forward(parser, lines)
            if pending:
                self._forward(parser, [pending])

    def _forward(self, parser: TraceParser, lines: list[bytes]) -> None:
        out: list[bytes] = []
        for raw in lines:
            try:
                keep, refused = parser.feed(raw.decode(errors="replace"))
            except Exception:  # never lose a line to a parsing bug
                keep, refused = True, None
            if keep:
                out.append(raw + b"\n")
            if refused is not None:
                self.refused += 1
                try:
                    self._events.put_nowait(refused)
                except queue.Full:
                    self.dropped_events += 1
        if out:
            # A write error (stderr closed) must not end the reader: a pipe nobody drains
            # would block every later write to fd 2, and with it the node.
            with contextlib.suppress(OSError):
                os.write(self._saved_fd, b"".join(out))

    def _emit(self) -> None:
        while (event := self._events.get()) is not None:
            if event.incoming:
                self._log.warning("refused a TLS handshake from %s: %s", event.peer, event.reason)
            else:
                self._log.warning("TLS handshake to %s failed: %s", event.peer, event.reason)


def install_if_enabled() -> StderrTap | None:
    """Start the tap when :func:`enable_trace` prepared this process, else do nothing."""
    if os.environ.get(TAP_ENV) != "1":
        return None
    tap = StderrTap()
    tap.install()
    return tap
