"""A drain that cannot finish: deadline exit code, stuck shards named, marker visible.

Tianjin's node is down and, as soon as the drain has recorded ``draining``, shanghai's
node is held off (SIGSTOP): no shard led in shenzhen has a caught-up candidate in an
active region. The drain must stop at its deadline with exit 3, name every stuck shard
(leader, target tried, last error, time blocked), leave shenzhen ``draining`` (which
``cluster status`` flags once the deadline has passed), and ``undrain`` must clear it.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.cluster.support import wait_for
from tests.ops.support import HONGBAO, REPO, cluster_with_routers, hongbao, status_json

pytestmark = pytest.mark.cluster

DEADLINE_S = 6.0


def test_a_stuck_drain_stops_at_its_deadline_names_shards_and_undrain_clears_it(
    tmp_path: Path,
) -> None:
    # A slow cluster-state poll keeps the drain in its propagation phase long enough for
    # the test to hold shanghai off before any leadership moves.
    with cluster_with_routers(tmp_path, router={"state_poll_ms": 1000}) as cluster:
        config = str(cluster.config_path)
        cluster.kill(3)
        drain = subprocess.Popen(
            [*HONGBAO, "region", "drain", "shenzhen", "--config", config,
             "--deadline-s", str(DEADLINE_S)],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO,
            env={**os.environ, "PYTHONUNBUFFERED": "1", "COLUMNS": "200"},
        )  # fmt: skip
        try:
            assert drain.stdout is not None
            first = drain.stdout.readline()
            assert "marked draining" in first, first + (drain.stderr.read() if drain.stderr else "")
            cluster.pause(2)
            rest, errors = drain.communicate(timeout=DEADLINE_S + 30)
        finally:
            cluster.resume(2)
            if drain.poll() is None:
                drain.kill()
                drain.wait(10)
        output = first + rest
        assert drain.returncode == 3, output + errors
        assert "deadline passed" in output
        assert "still led in shenzhen" in output
        stuck_lines = [line for line in output.splitlines() if "blocked" in line]
        assert any(line.strip().startswith("shard 0:") for line in stuck_lines), output
        assert all("leader" in line and "target" in line for line in stuck_lines)

        cluster.start([3])

        def overdue() -> dict[str, Any] | None:
            found = status_json(cluster.config_path)
            kinds = [a["kind"] for a in found["anomalies"]]
            return found if "drain_overdue" in kinds else None

        status = wait_for(overdue, 20.0, "cluster status to flag the overdue drain", poll_s=0.3)
        shenzhen = next(r for r in status["regions"] if r["name"] == "shenzhen")
        assert shenzhen["state"] == "draining"
        table = hongbao("cluster", "status", "--config", config)
        assert table.returncode == 5  # anomalies flagged
        assert "drain_overdue" in table.stdout
        assert "overdue" in table.stdout

        undrained = hongbao("region", "undrain", "shenzhen", "--config", config)
        assert undrained.returncode == 0, undrained.stderr
        after = status_json(cluster.config_path)
        assert {r["name"]: r["state"] for r in after["regions"]}["shenzhen"] == "active"
        assert not [a for a in after["anomalies"] if a["kind"] == "drain_overdue"]
