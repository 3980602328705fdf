"""kill -9 a process that appends in synced batches: every index it reported survives."""

from __future__ import annotations

import os
import select
import signal
import subprocess
import sys
import time
from pathlib import Path

from hongbao.node.storage import Durability, LmdbLogStorage
from tests.node._crash_writer import CONF, SHARDS, payload
from tests.node.conftest import Envs

WRITER = Path(__file__).with_name("_crash_writer.py")
REPORTS_BEFORE_KILL = 200
DEADLINE_S = 60.0


def run_and_kill(env_dir: Path) -> list[int]:
    """Start the writer, let it report some synced indexes, SIGKILL it mid-flight."""
    process = subprocess.Popen(
        [sys.executable, str(WRITER), str(env_dir)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert process.stdout is not None
    assert process.stderr is not None
    received = b""
    try:
        deadline = time.monotonic() + DEADLINE_S
        while (reports := received.count(b"\n")) < REPORTS_BEFORE_KILL:
            remaining = deadline - time.monotonic()
            assert remaining > 0, f"the writer reported only {reports} indexes in time"
            ready, _, _ = select.select([process.stdout], [], [], remaining)
            if not ready:
                continue
            chunk = os.read(process.stdout.fileno(), 1 << 16)
            assert chunk, f"writer exited early: {process.stderr.read().decode()}"
            received += chunk
        os.kill(process.pid, signal.SIGKILL)
        assert process.wait(timeout=DEADLINE_S) == -signal.SIGKILL
        received += process.stdout.read()  # what it printed before dying
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        process.stdout.close()
        process.stderr.close()
    complete = received[: received.rfind(b"\n") + 1]  # a torn last line is not a report
    return [int(line) for line in complete.split()]


def test_every_reported_index_survives_kill_9(envs: Envs) -> None:
    env_dir = envs.root / "crashing"
    for round_number in range(2):  # the second round recovers from the first kill
        reported = run_and_kill(env_dir)
        assert reported == sorted(reported)
        assert len(reported) >= REPORTS_BEFORE_KILL
        env = envs.open("crashing", durability=Durability.FSYNC)
        for shard_id in SHARDS:
            log = LmdbLogStorage(env, shard_id, conf_state=CONF)
            synced = reported[-1]
            assert log.last_index() >= synced, (round_number, shard_id)
            assert log.initial_state()[0].commit >= synced
            found = log.entries(lo=1, hi=synced + 1, max_bytes=None)
            assert [e.data for e in found] == [payload(shard_id, i) for i in range(1, synced + 1)]
        env.close()
