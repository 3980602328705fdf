"""Structured logs for node and router processes: ``--log-format json|text``.

Why one module: every line must carry the process (``node``/``router`` id), and the shard
and request id where there is one, whichever module logs it. The process fields are set
once at start (:func:`setup_logging`); the request and shard ride on context variables
(:func:`log_context`), so code deep in a call does not thread them through; an event's
own fields go in ``extra`` (:func:`event`). JSON lines are one object per line with
fixed keys (``ts``, ``level``, ``logger``, ``msg``, ``component``, and ``node``/``router``,
``region``, ``shard``, ``request_id``, ``event`` when known), parseable line by line.
"""

from __future__ import annotations

import contextlib
import contextvars
import json
import logging
import sys
import time
from collections.abc import Iterator
from typing import Any, Final, Literal

LogFormat = Literal["json", "text"]
LOG_FORMATS: Final = ("text", "json")
FIELD_CHARS_MAX: Final = 2_000  # a logged value is cut here: input cannot bloat a line

_shard: contextvars.ContextVar[int | None] = contextvars.ContextVar("hongbao_shard", default=None)
_request_id: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "hongbao_request_id", default=None
)
_STANDARD: Final = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {
    "message", "asctime", "taskName",
}  # fmt: skip


@contextlib.contextmanager
def log_context(*, shard: int | None = None, request_id: str | None = None) -> Iterator[None]:
    """Lines logged inside carry this shard and request id (asyncio tasks copy them)."""
    shard_token = _shard.set(shard) if shard is not None else None
    request_token = _request_id.set(request_id) if request_id is not None else None
    try:
        yield
    finally:
        if request_token is not None:
            _request_id.reset(request_token)
        if shard_token is not None:
            _shard.reset(shard_token)


def event(
    log: logging.Logger, name: str, message: str, *, level: int = logging.INFO, **fields: Any
) -> None:
    """One notable event (``leader_changed``, ``drain_started``, ``slow_fsync`` ...): a
    readable message, and the event's name and fields as their own JSON keys."""
    log.log(level, message, extra={"event": name, **fields})


class _ContextFilter(logging.Filter):
    def __init__(self, process: dict[str, Any]) -> None:
        super().__init__()
        self.process = process

    def filter(self, record: logging.LogRecord) -> bool:
        for key, value in self.process.items():
            if not hasattr(record, key):
                setattr(record, key, value)
        if getattr(record, "shard", None) is None and _shard.get() is not None:
            record.shard = _shard.get()
        if getattr(record, "request_id", None) is None and _request_id.get() is not None:
            record.request_id = _request_id.get()
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per line; never raises on odd values (they become strings)."""

    def format(self, record: logging.LogRecord) -> str:
        data: dict[str, Any] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": _cut(record.getMessage()),
        }
        for key, value in vars(record).items():
            if key not in _STANDARD and not key.startswith("_"):
                data[key] = (
                    value
                    if isinstance(value, int | float | bool) or value is None
                    else _cut(str(value))
                )
        if record.exc_info:
            data["exc"] = _cut(self.formatException(record.exc_info))
        return json.dumps(data, ensure_ascii=False, separators=(",", ":"))


class TextFormatter(logging.Formatter):
    """The classic line, with the context fields appended as key=value."""

    def __init__(self, prefix: str) -> None:
        super().__init__(f"%(asctime)s {prefix} %(levelname)s %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        extras = [
            f"{key}={getattr(record, key)}"
            for key in ("shard", "request_id", "event")
            if getattr(record, key, None) is not None
        ]
        return line + (" [" + " ".join(extras) + "]" if extras else "")


def setup_logging(
    process: str, process_id: int, *, region: str = "", level: str = "info",
    fmt: LogFormat = "text",
) -> None:  # fmt: skip
    """Configure the root logger of a ``node run`` / ``router run`` process (stderr)."""
    handler = logging.StreamHandler(sys.stderr)
    fields: dict[str, Any] = {"component": process, process: process_id}
    if region:
        fields["region"] = region
    handler.addFilter(_ContextFilter(fields))
    handler.setFormatter(
        JsonFormatter() if fmt == "json" else TextFormatter(f"{process}-{process_id}")
    )
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper())
    for chatty in ("grpc", "asyncio", "aiohttp.access"):
        # Library internals at info would drown the events; their warnings still show.
        logging.getLogger(chatty).setLevel(max(logging.WARNING, root.level))


def _cut(text: str) -> str:
    return text if len(text) <= FIELD_CHARS_MAX else text[:FIELD_CHARS_MAX] + "..."
