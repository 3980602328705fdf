"""The list of command families, so that adding one touches a single line."""

from __future__ import annotations

import click


def register(group: click.Group) -> None:
    del group  # families register themselves here as they are written
