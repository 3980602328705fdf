"""Assertions that stay on.

``assert`` disappears under ``python -O``; a broken invariant in a money system must
crash loudly instead, so the hot paths call :func:`invariant`. Operating errors (a
full queue, a dropped proposal) are typed exceptions and never go through here.
"""

from __future__ import annotations

from typing import NoReturn


class InvariantViolation(AssertionError):
    """A programmer error: the code's own rules were broken. Never caught in production."""


def invariant(condition: bool, message: str) -> None:
    """Crash with ``message`` unless ``condition`` holds."""
    if not condition:
        raise InvariantViolation(message)


def fail(message: str) -> NoReturn:
    """Crash with ``message``: for hot paths, where the check is written as an ``if`` so
    that the message (an f-string) is only built when the invariant is broken."""
    raise InvariantViolation(message)


def maybe(condition: bool) -> None:
    """Document that ``condition`` may legitimately go either way (TigerBeetle's ``maybe``)."""
    del condition
