"""Checks every test gets for free."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest


@pytest.fixture(autouse=True)
def _environment_is_left_as_found() -> Iterator[None]:
    """A test that changes ``HONGBAO_*`` variables (``--certs-dir`` sets one when a CLI
    command is parsed in-process) would make every later test run with them: fail it."""
    before = {k: v for k, v in os.environ.items() if k.startswith("HONGBAO_")}
    yield
    after = {k: v for k, v in os.environ.items() if k.startswith("HONGBAO_")}
    if after != before:
        for key in set(after) - set(before):
            del os.environ[key]
        os.environ.update(before)
        pytest.fail(f"the test changed the environment: {before} -> {after}")
