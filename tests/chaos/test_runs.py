"""Whole chaos runs, as `hongbao chaos run` does them: the smoke suite passes, the stored
run re-analyses to the same verdict, and each test-only bug makes its check fail.

Each run starts three nodes, three routers and a proxy per link on 127.0.0.1, in its own
subprocess, which heals and stops everything on its way out whatever happens.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SUITES = Path(__file__).parent / "suites"
RUN_TIMEOUT_S = 240


def chaos(
    *args: str, timeout_s: float = RUN_TIMEOUT_S, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "hongbao.cli", "chaos", *args],
        cwd=ROOT, capture_output=True, text=True, timeout=timeout_s, check=False, env=env,
    )  # fmt: skip


def checks_of(report_dir: Path) -> dict[str, bool]:
    report = json.loads((report_dir / "report.json").read_text())
    return {check["name"]: check["ok"] for check in report["checks"]}


def test_smoke_suite_passes_and_reanalyses_to_the_same_verdict(tmp_path: Path) -> None:
    report = tmp_path / "smoke"
    run = chaos("run", "chaos/smoke.toml", "--report", str(report), "--seed", "11",
                "--toxiproxy", "embedded")  # fmt: skip
    assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-4000:]
    for name in ("report.json", "report.html", "junit.xml", "history.jsonl", "run.json",
                 "final_state.json"):  # fmt: skip
        assert (report / name).exists(), name
    data = json.loads((report / "report.json").read_text())
    assert data["passed"] is True
    assert data["seed"] == 11
    assert "--seed 11" in data["rerun"]
    assert len(data["faults"]) == 3
    assert all(f["injected_s"] is not None and f["healed_s"] is not None for f in data["faults"])
    assert all(checks_of(report).values())
    assert not (report / "cluster").exists()  # the cluster's data is removed unless kept
    logs = sorted(p.name for p in (report / "logs").glob("*.log"))  # but its logs stay
    assert logs == ["node-1.log", "node-2.log", "node-3.log",
                    "router-1.log", "router-2.log", "router-3.log"], logs  # fmt: skip
    again = chaos("check", str(report), timeout_s=60)
    assert again.returncode == 0, again.stdout + again.stderr
    assert "same verdict as stored: PASS" in again.stdout
    # A stored verdict that the history does not support is caught (exit 3).
    tampered = json.loads((report / "report.json").read_text())
    tampered["checks"][0]["ok"] = False
    (report / "report.json").write_text(json.dumps(tampered))
    differs = chaos("check", str(report), timeout_s=60)
    assert differs.returncode == 3, differs.stdout + differs.stderr
    assert "NOT REPRODUCED" in differs.stderr


BUG_RUNS = {
    "bug-ack-before-commit": ("ack-before-commit", "acknowledged-durable"),
    "bug-double-credit": ("double-credit-grab", "conservation"),
    "bug-retry-fresh-id": ("retry-fresh-id", "applied-once"),
}


@dataclass
class BugRun:
    """One bug suite's run, started with the others: each is its own cluster on its own
    ports, so running the three together costs the time of the longest, not of all three."""

    report: Path
    output: Path
    process: subprocess.Popen[bytes]

    def finish(self) -> tuple[int, str]:
        try:
            code = self.process.wait(RUN_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(30)
            pytest.fail(f"{self.report.name} did not end within {RUN_TIMEOUT_S} s")
        return code, self.output.read_text(errors="replace")[-8000:]


@pytest.fixture(scope="module")
def bug_runs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, BugRun]]:
    base = tmp_path_factory.mktemp("bug-runs")
    runs: dict[str, BugRun] = {}
    try:
        for suite, (bug, _check) in BUG_RUNS.items():
            output = base / f"{suite}.out"
            with output.open("wb") as sink:  # the child keeps its own copy of the handle
                process = subprocess.Popen(
                    [sys.executable, "-m", "hongbao.cli", "chaos", "run",
                     str(SUITES / f"{suite}.toml"), "--report", str(base / suite),
                     "--seed", "5", "--toxiproxy", "embedded", "--bug", bug],
                    cwd=ROOT, stdout=sink, stderr=subprocess.STDOUT,
                )  # fmt: skip
            runs[suite] = BugRun(base / suite, output, process)
        yield runs
    finally:
        for run in runs.values():  # a run heals and stops its cluster on SIGTERM
            if run.process.poll() is None:
                run.process.terminate()
        for run in runs.values():
            try:
                run.process.wait(60)
            except subprocess.TimeoutExpired:
                run.process.kill()
                run.process.wait(30)


@pytest.mark.parametrize("suite", sorted(BUG_RUNS))
def test_a_deliberate_bug_fails_its_check(bug_runs: dict[str, BugRun], suite: str) -> None:
    failing_check = BUG_RUNS[suite][1]
    run = bug_runs[suite]
    code, output = run.finish()
    assert code == 1, output
    report = run.report
    checks = checks_of(report)
    assert checks[failing_check] is False, checks
    data = json.loads((report / "report.json").read_text())
    failed = next(c for c in data["checks"] if c["name"] == failing_check)
    assert failed["offending"], "a failed check names its first offending operations"
    again = chaos("check", str(report), timeout_s=60)
    assert again.returncode == 1, again.stdout + again.stderr
    assert "same verdict as stored: FAIL" in again.stdout


def test_chaos_stop_heals_and_ends_a_running_suite(tmp_path: Path) -> None:
    """`hongbao chaos stop` from another shell: the run heals, stops its cluster, exits 130."""
    import os

    from hongbao.chaos.runner import active_dir
    from hongbao.ops.local import wait_until

    report = tmp_path / "stopped"
    # A TMPDIR of its own: `chaos stop` ends every run listed there, and a developer's own
    # chaos runs on this machine are none of this test's business.
    private = tmp_path / "tmp"
    private.mkdir()
    env = {**os.environ, "TMPDIR": str(private)}
    runner = subprocess.Popen(
        [sys.executable, "-m", "hongbao.cli", "chaos", "run", "chaos/smoke.toml",
         "--report", str(report), "--seed", "3", "--toxiproxy", "embedded"],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env,
    )  # fmt: skip
    entry = private / active_dir().name / f"{runner.pid}.json"
    try:
        wait_until(
            lambda: runner.poll() is not None
            or ((report / "history.jsonl").exists() and entry.exists()),
            90, "the run to start its workload",
        )  # fmt: skip
        assert runner.poll() is None, runner.communicate()[0][-3000:]
        stop = chaos("stop", timeout_s=30, env=env)
        assert stop.returncode == 0, stop.stdout + stop.stderr
        assert f"pid {runner.pid}" in stop.stdout
        output, _ = runner.communicate(timeout=90)
        assert runner.returncode == 130, output[-3000:]
        assert not entry.exists()
        data_dir = str((report / "cluster").resolve()).encode()
        left = [p for p in Path("/proc").iterdir() if p.name.isdigit()
                and _cmdline_has(p, data_dir)]  # fmt: skip
        assert not left, f"processes left running: {left}"
        assert json.loads((report / "run.json").read_text())["interrupted"] is True
    finally:
        if runner.poll() is None:
            os.kill(runner.pid, 9)
            runner.wait(30)


def _cmdline_has(proc: Path, needle: bytes) -> bool:
    try:
        return needle in (proc / "cmdline").read_bytes()
    except OSError:
        return False
