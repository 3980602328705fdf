"""The reports of a run: report.json round-trips, junit.xml parses, report.html is safe.

Built from the hand-made outage of ``test_metrics`` plus a fault healed only at the end
and one never injected, with a hostile string in the ops' messages and a fault target.
"""

from __future__ import annotations

import json
import re
import xml.etree.ElementTree as ET
from html.parser import HTMLParser
from pathlib import Path

import pytest

from hongbao.chaos.metrics import Metrics, analyse, availability_check
from hongbao.chaos.report import build_report, load_report, summary_text, verdict, write_reports
from hongbao.chaos.run_info import FaultRecord, RunInfo
from hongbao.chaos.verdict import CheckResult, Offense
from tests.chaos.test_metrics import HOSTILE, outage_run

REPORT_KEYS = {
    "format", "passed", "suite", "suite_path", "seed", "config", "template", "rerun",
    "versions", "toxiproxy", "started_at", "interrupted", "bugs", "expect", "timeline",
    "faults", "totals", "failures_by_code", "latency_ms", "longest_unavailable_s",
    "longest_unavailable_from_s", "longest_unavailable_context", "regions", "per_second",
    "checks",
}  # fmt: skip
FAULT_KEYS = {
    "index", "kind", "params", "planned_at_s", "injected_s", "healed_s", "targets", "error",
    "healed_effective_s", "longest_unavailable_s", "unavailable_from_s",
    "longest_unavailable_by_region", "baseline_ok_s", "recovery_s", "recovery",
    "unavailable_context",
}  # fmt: skip


def scenario() -> tuple[RunInfo, Metrics, list[CheckResult]]:
    ops, info = outage_run()
    info.faults += [
        FaultRecord(index=1, kind="latency", params={"from": "shenzhen", "ms": 15},
                    planned_at_s=45.0, injected_s=50.0, healed_s=None,
                    targets={"links": ["n1->n2", "n2->n1"], "cost": "$5 & $6"}),
        FaultRecord(index=2, kind="kill-node", params={"node": 3}, planned_at_s=70.0,
                    error="the run ended first"),
    ]  # fmt: skip
    metrics = analyse(ops, info)
    failed = availability_check(metrics, {"max_unavailable_s": 10.0, "max_recovery_s": 5.0})
    money = CheckResult(
        name="conservation",
        ok=False,
        summary="balances + escrow 1,000,100 fen != deposits - withdrawals 1,000,000 fen",
        offending=[
            Offense(why=f"u7 gained 100 fen twice {HOSTILE}\x00\x1b", op=failed.offending[0]
                    .context[1], evidence={"postings": [1, 2], "note": HOSTILE})
        ],
    )  # fmt: skip
    held = CheckResult(name="no-double-grab", ok=True, summary="412 grabs, none twice")
    return info, metrics, [failed, money, held]


@pytest.fixture
def written(tmp_path: Path) -> tuple[dict[str, Path], RunInfo, Metrics, list[CheckResult]]:
    info, metrics, checks = scenario()
    return write_reports(tmp_path, info, metrics, checks), info, metrics, checks


def test_write_reports_writes_the_three_files(
    written: tuple[dict[str, Path], RunInfo, Metrics, list[CheckResult]], tmp_path: Path
) -> None:
    paths = written[0]
    assert paths == {
        "json": tmp_path / "report.json",
        "html": tmp_path / "report.html",
        "junit": tmp_path / "junit.xml",
    }
    assert all(path.stat().st_size > 0 for path in paths.values())
    assert sorted(p.name for p in tmp_path.iterdir()) == ["junit.xml", "report.html",
                                                          "report.json"]  # fmt: skip


def test_report_json_round_trips_with_every_key(
    written: tuple[dict[str, Path], RunInfo, Metrics, list[CheckResult]], tmp_path: Path
) -> None:
    _, info, metrics, checks = written
    report = load_report(tmp_path)
    assert set(report) == REPORT_KEYS
    assert report == json.loads(json.dumps(build_report(info, metrics, checks)))
    assert report["passed"] is False
    assert (report["seed"], report["rerun"]) == (42, info.rerun)
    assert report["toxiproxy"] == "embedded"
    assert report["versions"]["grpcio"] == "1.66"
    assert report["timeline"] == {"workload_start_s": 5.0, "workload_end_s": 65.0,
                                  "heal_all_s": 65.5, "quiet_s": 67.0}  # fmt: skip
    first, at_end, never = report["faults"]
    assert all(set(fault) == FAULT_KEYS for fault in report["faults"])
    assert first["targets"]["region"] == "shanghai"
    assert (first["injected_s"], first["healed_s"]) == (30.0, 40.0)
    assert first["longest_unavailable_s"] == pytest.approx(12.02)
    assert first["recovery_s"] == pytest.approx(2.0)
    assert first["longest_unavailable_by_region"]["shanghai"] == pytest.approx(12.07)
    assert (at_end["healed_s"], at_end["healed_effective_s"]) == (None, 65.5)
    assert at_end["recovery"] == "n/a (healed at the end)"
    assert (never["injected_s"], never["healed_effective_s"]) == (None, None)
    assert never["recovery"] == "not injected"
    assert report["totals"] == {"requests": 1200, "ok": 912, "failed": 168, "refused": 48,
                                "indeterminate": 120, "availability": 0.8}  # fmt: skip
    assert report["latency_ms"]["max"] == 900.0
    assert len(report["per_second"]) == 61
    assert report["per_second"][15]["by_region"]["shanghai"]["ok"] == 10
    availability, money, held = report["checks"]
    assert (availability["ok"], money["ok"], held["ok"]) == (False, False, True)
    assert CheckResult.from_dict(money).offending[0].op is not None
    assert availability["offending"][0]["context"][0]["complete_s"] == pytest.approx(29.97)


def test_verdict_and_summary_text() -> None:
    info, metrics, checks = scenario()
    assert not verdict(checks)
    assert verdict([checks[2]])
    assert not verdict([])  # no check ran: nothing was shown
    text = summary_text(build_report(info, metrics, checks))
    assert "FAILED" in text.splitlines()[0]
    assert "UNAVAILABLE/NOT_LEADER 120" in text
    assert "fault #0 partition-region" in text
    assert "recovery 2.000 s" in text
    assert "FAIL conservation" in text
    assert "PASS no-double-grab" in text


def test_load_report_refuses_what_is_not_a_report(tmp_path: Path) -> None:
    (tmp_path / "report.json").write_text('{"format": 99}')
    with pytest.raises(ValueError, match="format"):
        load_report(tmp_path)


def test_junit_has_a_case_per_check_and_a_failure_per_failed_one(
    written: tuple[dict[str, Path], RunInfo, Metrics, list[CheckResult]],
) -> None:
    paths, info, _, checks = written
    root = ET.parse(paths["junit"]).getroot()  # parses: no control character got through
    [suite] = root.findall("testsuite")
    assert suite.get("name") == "partition-region"
    assert (suite.get("tests"), suite.get("failures")) == ("3", "2")
    properties = {p.get("name"): p.get("value") for p in suite.iter("property")}
    assert (properties["seed"], properties["rerun"]) == ("42", info.rerun)
    cases = {case.get("name"): case for case in suite.findall("testcase")}
    assert list(cases) == ["availability", "conservation", "no-double-grab"]
    assert cases["no-double-grab"].find("failure") is None
    failure = cases["availability"].find("failure")
    assert failure is not None
    assert failure.get("message") == checks[0].summary
    assert "no request succeeded for 12.050 s" in (failure.text or "")
    assert "#500 transfer [shenzhen] fail UNAVAILABLE/NOT_LEADER" in (failure.text or "")
    money = cases["conservation"].find("failure")
    assert money is not None
    assert "u7 gained 100 fen twice" in (money.text or "")


class _Tags(HTMLParser):
    """Collects the page's tags and attributes, to look for anything that loads."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: list[str] = []
        self.attributes: list[tuple[str, str | None]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)
        self.attributes.extend(attrs)


def test_html_is_self_contained_escaped_and_complete(
    written: tuple[dict[str, Path], RunInfo, Metrics, list[CheckResult]],
) -> None:
    page = written[0]["html"].read_text(encoding="utf-8")
    parser = _Tags()
    parser.feed(page)
    assert page.count("<svg") == 1
    assert "</svg>" in page
    assert "script" not in parser.tags  # the hostile message stayed text
    assert "<script>" not in page
    assert html_escaped(HOSTILE) in page
    assert not re.search(r"https?://|ftp://|//[a-z0-9.-]+\.[a-z]{2,}/", page)
    assert not {"link", "img", "iframe", "object", "embed"} & set(parser.tags)
    for name, value in parser.attributes:
        if name in ("href", "src", "xlink:href"):
            assert (value or "").startswith("#"), (name, value)
    assert "@import" not in page
    assert "url(" not in page.replace("url(#", "")
    # The fault band's labels (text in the SVG) and the faults table.
    for label in ("#0 partition-region", "#1 latency", "#2 kill-node", "not injected"):
        assert label in page
    assert "$5 &amp; $6" in page  # a dollar sign is text, not mathtext
    assert "FAILED" in page
    assert "no request succeeded for 12.050 s" in page
    assert "hongbao chaos run chaos/partition-region.toml --seed 42" in page
    assert "12.020 s" in page  # the partition's longest unavailability in the faults table
    assert "UNAVAILABLE/NOT_LEADER" in page
    assert "grpcio" in page


def test_html_of_an_empty_passing_run_renders() -> None:
    from hongbao.chaos.report_html import render_html

    info = outage_run()[1]
    info.faults = []
    metrics = analyse([], info)
    page = render_html(info, metrics, [CheckResult(name="conservation", ok=True, summary="0")])
    assert "<svg" in page
    assert "PASSED" in page
    assert "no faults" in page


def html_escaped(text: str) -> str:
    import html

    return html.escape(text, quote=True)
