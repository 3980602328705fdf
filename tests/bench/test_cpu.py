"""The bench's CPU accounting: a process that burns CPU is charged to its own kind, one
that idles is not, an exited one makes its kind unknown, and so does a kind not found."""

from __future__ import annotations

import os
import select
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from hongbao.bench.cpu import CpuMeter, CpuUse, Processes, cpu_s
from hongbao.bench.model import BenchOptions, BenchReport, RunResult
from hongbao.cli.bench import _found_processes
from hongbao.config.topology import load_topology
from hongbao.ops.local import write_topology

REPO = Path(__file__).resolve().parents[2]
BURN_CPU_S = 0.3
READ_TIMEOUT_S = 30.0
# Waits for "go" on stdin, burns BURN_CPU_S of its own CPU, says "done", then waits for
# stdin to close (alive, so that its CPU can still be read).
BURNER = f"""
import sys, time
sys.stdin.readline()
start = time.process_time()
while time.process_time() - start < {BURN_CPU_S}:
    pass
print("done", flush=True)
sys.stdin.read()
"""
IDLER = "import sys; sys.stdin.read()"


def _child(code: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )


@pytest.fixture
def children() -> Iterator[list[subprocess.Popen[str]]]:
    """Children of a test, ended (stdin closed, then killed if need be) whatever happens."""
    started: list[subprocess.Popen[str]] = []
    yield started
    for child in started:
        if child.stdin is not None:
            child.stdin.close()
        try:
            child.wait(5.0)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait(5.0)
        if child.stdout is not None:
            child.stdout.close()


def _read_line(child: subprocess.Popen[str]) -> str:
    assert child.stdout is not None
    readable, _, _ = select.select([child.stdout], [], [], READ_TIMEOUT_S)
    assert readable, "the burner did not report in time"
    return child.stdout.readline().strip()


def test_a_burning_process_is_charged_to_its_kind_and_an_idle_one_is_not(
    children: list[subprocess.Popen[str]],
) -> None:
    burner, idler = _child(BURNER), _child(IDLER)
    children.extend([burner, idler])
    meter = CpuMeter(Processes(pids={"nodes": [burner.pid], "routers": [idler.pid]}))
    meter.start(time.monotonic())
    assert burner.stdin is not None
    burner.stdin.write("go\n")
    burner.stdin.flush()
    assert _read_line(burner) == "done"
    use = meter.stop(time.monotonic(), ops=1000)
    nodes_s, routers_s = use.cpu_s["nodes"], use.cpu_s["routers"]
    assert nodes_s is not None
    assert nodes_s > 0
    assert routers_s is not None
    assert routers_s < nodes_s
    assert "client" not in use.cpu_s  # a kind with no processes is absent, not zero
    per_op = use.us_per_op()
    assert per_op["nodes"] is not None
    assert per_op["nodes"] > 0
    assert per_op["total"] is not None
    assert per_op["total"] >= per_op["nodes"]
    assert use.unknown == {}


def test_the_bench_process_itself_is_the_client_kind() -> None:
    meter = CpuMeter(Processes().with_client([os.getpid()]))
    meter.start(time.monotonic())
    start_s = time.process_time()
    while time.process_time() - start_s < 0.1:
        pass
    use = meter.stop(time.monotonic(), ops=10)
    client_s = use.cpu_s["client"]
    assert client_s is not None
    assert client_s > 0
    assert use.total_s == client_s


def test_a_process_that_exits_in_the_window_makes_its_kind_and_the_total_unknown(
    children: list[subprocess.Popen[str]],
) -> None:
    idler = _child(IDLER)
    children.append(idler)
    meter = CpuMeter(Processes(pids={"nodes": [idler.pid]}).with_client([os.getpid()]))
    meter.start(time.monotonic())
    idler.kill()
    idler.wait(5.0)
    assert cpu_s(idler.pid) is None
    use = meter.stop(time.monotonic(), ops=10)
    assert use.cpu_s["nodes"] is None
    assert "nodes" in use.unknown
    assert use.cpu_s["client"] is not None
    assert use.total_s is None
    assert use.us_per_op()["total"] is None


def test_without_pid_files_the_cluster_is_unknown_and_the_client_still_counted(
    tmp_path: Path,
) -> None:
    topology_path = write_topology(
        tmp_path / "topology.toml", template=REPO / "configs" / "local.toml"
    )
    found = _found_processes(load_topology(topology_path), tmp_path / "no-such-data")
    assert found.pids == {}
    assert set(found.unknown) == {"nodes", "routers"}
    assert "0 of 3 nodes" in found.unknown["nodes"]
    use = CpuMeter(found.with_client([os.getpid()]))
    use.start(time.monotonic())
    measured = use.stop(time.monotonic(), ops=1)
    assert measured.cpu_s["nodes"] is None
    assert measured.cpu_s["routers"] is None
    assert measured.cpu_s["client"] is not None


def test_the_report_gives_medians_over_runs_by_kind() -> None:
    runs = [
        RunResult(run=i, cpu=CpuUse(window_s=2.0, ops=1000, cpu_s={"nodes": s, "client": 0.1}))
        for i, s in enumerate((1.0, 3.0, 2.0), 1)
    ]
    report = BenchReport(options=BenchOptions(runs=3), target="test", runs=runs)
    data = report.cpu_json()
    assert data is not None
    assert data["cpu_s"] == {"nodes": 2.0, "client": 0.1}
    assert data["cores"] == {"nodes": 1.0, "client": 0.05}
    assert data["us_per_op"] == {"total": 2100.0, "nodes": 2000.0, "client": 100.0}
    assert data["unknown"] == {}
    assert report.to_json()["cpu"] == data
