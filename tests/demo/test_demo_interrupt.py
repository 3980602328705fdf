"""Ctrl-C during the live demo is an interruption (exit 130) however the story ends.

Ctrl-C reaches the nodes and routers with the demo, and their going away can end the
story with an error before the demo's own KeyboardInterrupt lands (the geo demo's matrix
probe failed with an RPC error): the demo must still say "interrupted", not "failed".
These drive the CLI with the story replaced by a function that does exactly that.
"""

from __future__ import annotations

import signal
from pathlib import Path

import pytest
from click.testing import CliRunner

import hongbao.demo.live
from hongbao.cli.demo import EXIT_INTERRUPTED, demo

REPO = Path(__file__).resolve().parents[2]


class ProbeFailed(Exception):
    """Stands in for grpc.aio.AioRpcError (an Exception, not an OSError)."""


def run_demo_cli(monkeypatch: pytest.MonkeyPatch, story: object) -> tuple[int, str]:
    monkeypatch.setattr(hongbao.demo.live, "run_live_demo", story)
    monkeypatch.chdir(REPO)
    before = signal.getsignal(signal.SIGINT)
    result = CliRunner().invoke(demo, [])
    assert signal.getsignal(signal.SIGINT) is before  # the demo's own handler is gone
    return result.exit_code, result.output


def test_an_error_after_a_swallowed_ctrl_c_is_an_interruption(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def story(*_: object, **__: object) -> None:
        try:
            signal.raise_signal(signal.SIGINT)  # to this very thread: handled on return
            raise AssertionError("the demo's SIGINT handler did not raise")
        except KeyboardInterrupt:
            pass  # swallowed, as a callback inside the event loop may do
        raise ProbeFailed("StatusCode.UNAVAILABLE: the node went away")

    exit_code, output = run_demo_cli(monkeypatch, story)
    assert exit_code == EXIT_INTERRUPTED, output
    assert "interrupted: the nodes and routers were stopped" in output
    assert "failed" not in output


def test_an_error_with_no_ctrl_c_is_a_failure(monkeypatch: pytest.MonkeyPatch) -> None:
    def story(*_: object, **__: object) -> None:
        raise RuntimeError("no leader for shard 3")

    exit_code, output = run_demo_cli(monkeypatch, story)
    assert exit_code == 1
    assert "the demo failed: no leader for shard 3" in output


def test_an_unexpected_error_with_no_ctrl_c_keeps_its_traceback(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def story(*_: object, **__: object) -> None:
        raise ProbeFailed("a bug, not an outage")

    monkeypatch.setattr(hongbao.demo.live, "run_live_demo", story)
    monkeypatch.chdir(REPO)
    result = CliRunner().invoke(demo, [])
    assert isinstance(result.exception, ProbeFailed)
