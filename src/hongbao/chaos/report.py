"""The reports of a chaos run: ``report.json``, ``report.html`` and ``junit.xml``.

Why three: the JSON is the record a script reads (and ``hongbao chaos check`` compares
against), the HTML is what a person reads to see what broke and when, and the JUnit file
is what CI shows. All three come from the same inputs (``run.json``, the metrics of
``chaos.metrics`` and the checks' results), so they never disagree; each is written to a
temporary name and renamed, so a reader never sees half a report.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any, Final

from hongbao.chaos.junit import junit_xml
from hongbao.chaos.metrics import Metrics, recovery_text
from hongbao.chaos.report_html import render_html
from hongbao.chaos.run_info import RunInfo
from hongbao.chaos.verdict import CheckResult

REPORT_FILE: Final = "report.json"
HTML_FILE: Final = "report.html"
JUNIT_FILE: Final = "junit.xml"
FORMAT: Final = 1  # report.json's layout; bumped when a key changes meaning
REPORT_BYTES_MAX: Final = 256 * 1024 * 1024  # load_report refuses anything bigger


def verdict(checks: Sequence[CheckResult]) -> bool:
    """The run passed: it has checks and every one of them holds."""
    return bool(checks) and all(check.ok for check in checks)


def build_report(info: RunInfo, metrics: Metrics, checks: Sequence[CheckResult]) -> dict[str, Any]:
    """report.json's content (JSON-ready: plain dicts, lists, numbers, strings, None)."""
    impacts = {impact.index: impact for impact in metrics.faults}
    faults = []
    for record in info.faults:
        impact = impacts.get(record.index)
        faults.append(
            {
                **asdict(record),
                "healed_effective_s": None if impact is None else impact.healed_s,
                "longest_unavailable_s": None if impact is None else impact.longest_unavailable_s,
                "unavailable_from_s": None if impact is None else impact.unavailable_from_s,
                "longest_unavailable_by_region": (
                    {} if impact is None else impact.longest_unavailable_by_region
                ),
                "baseline_ok_s": None if impact is None else impact.baseline_ok_s,
                "recovery_s": None if impact is None else impact.recovery_s,
                "recovery": "not analysed" if impact is None else recovery_text(impact),
                "unavailable_context": [] if impact is None else impact.context,
            }
        )
    return {
        "format": FORMAT,
        "passed": verdict(checks),
        "suite": info.suite,
        "suite_path": info.suite_path,
        "seed": info.seed,
        "config": info.config,
        "template": info.template,
        "rerun": info.rerun,
        "versions": dict(info.versions),
        "toxiproxy": info.toxiproxy,
        "started_at": info.started_at,
        "interrupted": info.interrupted,
        "bugs": list(info.bugs),
        "expect": dict(info.suite_expect),
        "timeline": {
            "workload_start_s": info.workload_start_s,
            "workload_end_s": info.workload_end_s,
            "heal_all_s": info.heal_all_s,
            "quiet_s": info.quiet_s,
        },
        "faults": faults,
        "totals": {
            "requests": metrics.requests,
            "ok": metrics.ok,
            "failed": metrics.failed,
            "refused": metrics.refused,
            "indeterminate": metrics.indeterminate,
            "availability": metrics.availability,
        },
        "failures_by_code": dict(metrics.failures_by_code),
        "latency_ms": dict(metrics.latency_ms),
        "longest_unavailable_s": metrics.longest_unavailable_s,
        "longest_unavailable_from_s": metrics.longest_unavailable_from_s,
        "longest_unavailable_context": metrics.longest_unavailable_context,
        "regions": list(metrics.regions),
        "per_second": metrics.per_second,
        "checks": [check.to_dict() for check in checks],
    }


def write_reports(
    directory: Path, info: RunInfo, metrics: Metrics, checks: Sequence[CheckResult]
) -> dict[str, Path]:
    """Writes report.json, report.html and junit.xml into ``directory``."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    report = build_report(info, metrics, checks)
    text = json.dumps(report, indent=1, allow_nan=False, default=str) + "\n"
    return {
        "json": _write(directory / REPORT_FILE, text),
        "html": _write(directory / HTML_FILE, render_html(info, metrics, checks)),
        "junit": _write(directory / JUNIT_FILE, junit_xml(info, checks)),
    }


def load_report(directory: Path) -> dict[str, Any]:
    """report.json of a report directory (ValueError when it is not one)."""
    path = Path(directory) / REPORT_FILE
    if path.stat().st_size > REPORT_BYTES_MAX:
        raise ValueError(f"{path}: over {REPORT_BYTES_MAX} bytes")
    data = json.loads(path.read_text(encoding="utf-8"))
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise ValueError(f"{path}: not a report of format {FORMAT}")
    return data


def summary_text(report: dict[str, Any]) -> str:
    """A few lines for a terminal or a note: totals, errors, faults, checks, verdict."""
    totals = report["totals"]
    share = totals["availability"]
    lines = [
        f"suite {report['suite']} seed {report['seed']}: "
        + ("PASSED" if report["passed"] else "FAILED"),
        f"requests {totals['requests']}: ok {totals['ok']}, failed {totals['failed']} "
        f"(refused {totals['refused']}), indeterminate {totals['indeterminate']}, "
        f"availability {'n/a' if share is None else f'{share:.4f}'}",
        "failures by code: "
        + (", ".join(f"{k} {v}" for k, v in report["failures_by_code"].items()) or "none"),
        "latency ms: " + ", ".join(f"{k} {v:g}" for k, v in report["latency_ms"].items()),
        f"longest unavailability {report['longest_unavailable_s']:.3f} s",
    ]
    for fault in report["faults"]:
        unavailable = fault["longest_unavailable_s"]
        lines.append(
            f"fault #{fault['index']} {fault['kind']} {_compact(fault['targets'])}: "
            f"injected {_seconds(fault['injected_s'])}, healed "
            f"{_seconds(fault['healed_effective_s'])}, longest unavailability "
            f"{_seconds(unavailable)}, recovery {fault['recovery']}"
            + (f", error: {fault['error']}" if fault["error"] else "")
        )
    for check in report["checks"]:
        lines.append(f"{'PASS' if check['ok'] else 'FAIL'} {check['name']}: {check['summary']}")
    lines.append(f"rerun: {report['rerun']}")
    return "\n".join(lines)


def _compact(value: object) -> str:
    return json.dumps(value, separators=(",", ":"), sort_keys=True, default=str)


def _seconds(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f} s"


def _write(path: Path, text: str) -> Path:
    partial = path.with_name(path.name + ".part")
    partial.write_text(text, encoding="utf-8")
    os.replace(partial, path)
    return path
