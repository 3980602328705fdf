"""The suites of chaos/ load, are documented, and a broken suite is refused by name."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from hongbao.chaos.suite import SuiteError, load_suite, parse_suite, suite_files
from hongbao.cli.chaos import chaos

ROOT = Path(__file__).resolve().parents[2]
REQUIRED = {
    "smoke", "partition-region", "one-way-partition", "leader-isolation", "kill-leaders",
    "region-outage-and-return", "flaky-cross-city", "drain-under-load", "pause-node",
}  # fmt: skip


def test_every_required_suite_exists_and_loads() -> None:
    suites = {load_suite(path).name: load_suite(path) for path in suite_files(ROOT / "chaos")}
    assert set(suites) >= REQUIRED
    for suite in suites.values():
        assert suite.description
        assert suite.expects
        assert suite.summary
        assert suite.name == Path(suite.path).stem
        for fault in suite.faults:
            heal = fault.heal_at_s if fault.heal_at_s is not None else suite.duration_s
            assert 0 <= fault.at_s <= heal <= suite.duration_s
    assert suites["smoke"].duration_s <= 60
    assert all(s.duration_s >= 120 for n, s in suites.items() if n != "smoke")


def test_test_only_suites_load() -> None:
    for path in suite_files(Path(__file__).parent / "suites"):
        assert load_suite(path).faults is not None


def _minimal(**extra: object) -> dict[str, object]:
    return {"name": "x", "summary": "s", "description": "d", "expects": "e",
            "duration_s": 30, **extra}  # fmt: skip


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (_minimal(duraton_s=3), "unknown key 'duraton_s'"),
        (_minimal(duration_s=0), "duration_s must be in"),
        (_minimal(workload={"users": "many"}), "users must be an integer"),
        (_minimal(faults=[{"at_s": 40, "kind": "kill", "node": 1}]), "at_s must be in"),
        (_minimal(faults=[{"at_s": 1, "kind": "meteor"}]), "meteor"),
        (_minimal(faults=[{"at_s": 1, "kind": "partition-region"}]), "region"),
    ],
)
def test_broken_suites_are_refused_by_name(data: dict[str, object], message: str) -> None:
    with pytest.raises(SuiteError, match=message):
        parse_suite(data, "broken.toml")


def test_chaos_list_prints_one_line_per_suite() -> None:
    result = CliRunner().invoke(chaos, ["list", "--dir", str(ROOT / "chaos")])
    assert result.exit_code == 0, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == len(suite_files(ROOT / "chaos"))
    assert any(line.startswith("smoke") for line in lines)
    assert "INVALID" not in result.output


def test_chaos_run_refuses_a_broken_suite(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text('name = "bad"\nsummary = "s"\ndescription = "d"\nexpects = "e"\n'
                   'duration_s = 10\n[[faults]]\nat_s = 1\nkind = "kill"\n')  # fmt: skip
    result = CliRunner().invoke(chaos, ["run", str(bad), "--report", str(tmp_path / "r")])
    assert result.exit_code == 2
    assert "faults[0]" in result.output


def test_chaos_run_refuses_a_report_directory_that_holds_another_run(tmp_path: Path) -> None:
    """Its old history would be judged as this run's, its old cluster data restarted."""
    report = tmp_path / "used"
    report.mkdir()
    (report / "history.jsonl").write_text('{"op_id": 1}\n')
    result = CliRunner().invoke(
        chaos, ["run", str(ROOT / "chaos" / "smoke.toml"), "--report", str(report)]
    )
    assert result.exit_code == 2
    assert "is not empty" in result.output
    assert sorted(p.name for p in report.iterdir()) == ["history.jsonl"]  # nothing started
