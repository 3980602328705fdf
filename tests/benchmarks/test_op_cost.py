"""benchmarks/op_cost.py runs end to end and reports every stage of every kind.

A smoke test only: it checks the report's shape (every stage row present for every kind,
CPU where a stage does work), never a figure: speed is measured by the benchmark itself.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
RUN_TIMEOUT_S = 240.0
KINDS = ("deposit", "transfer-same-shard", "transfer-cross-shard", "grab")
CROSS_SHARD_KINDS = ("transfer-cross-shard", "grab")
STAGES = (  # the stages, as the report names them
    "client encode + decode",
    "router (parse, split, reassemble)",
    "gRPC decode on the leader",
    "validation on the leader",
    "queueing on the leader (submit)",
    "proposal: evaluation and encoding (leader, once)",
    "Raft core and cycle, leader",
    "Raft core and cycle, followers",
    "log append (3 replicas)",
    "peer transport encode/decode",
    "apply on the leader",
    "apply on follower (node 2)",
    "apply on follower (node 3)",
    "result encoding on the leader",
    "LMDB commit, leader",
    "LMDB commit, followers",
    "courier Peer.Deliver encode/decode",
    "courier rounds (outbox, Deliver, Acknowledge)",
)
COURIER_ROWS = ("courier Peer.Deliver encode/decode",)
END_TO_END = "end to end: all processes"


def test_op_cost_reports_every_stage_of_every_kind() -> None:
    command = [sys.executable, "benchmarks/op_cost.py", "--ops", "200", "--runs", "1", "--json"]
    done = subprocess.run(
        command, cwd=REPO, capture_output=True, text=True, timeout=RUN_TIMEOUT_S, check=False
    )
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert set(report["us_per_op"]) == set(KINDS)
    for kind, rows in report["us_per_op"].items():
        for stage in STAGES:
            assert stage in rows, f"{kind}: no row {stage!r}"
            doing_work = kind in CROSS_SHARD_KINDS or stage not in COURIER_ROWS
            assert rows[stage] > 0 if doing_work else rows[stage] >= 0, (kind, stage)
        assert rows[END_TO_END] > 0, kind
        assert report["ops_per_s"][kind] > 0, kind
        assert report["shapes"][kind]["ops"] == 200
