"""A chaos run as JUnit XML, so CI shows each check as a test that passed or failed.

One ``testsuite`` named after the chaos suite, one ``testcase`` per check; a failed check
carries ``<failure message=SUMMARY>`` with its offending operations as text. The seed and
the rerun line are properties, so whoever reads a red CI run can replay it. Strings come
from the history (error messages the cluster sent), so characters XML 1.0 cannot hold
are replaced and every text is bounded.
"""

from __future__ import annotations

import json
import re
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Final

from hongbao.chaos.run_info import RunInfo
from hongbao.chaos.verdict import CheckResult, Offense

FAILURE_TEXT_MAX: Final = 64 * 1024  # characters of offenses per failed check
ATTRIBUTE_MAX: Final = 4 * 1024
_NOT_XML: Final = re.compile(r"[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


def junit_xml(info: RunInfo, checks: Sequence[CheckResult]) -> str:
    """The JUnit document (with its XML declaration)."""
    failures = sum(1 for check in checks if not check.ok)
    elapsed_s = max(info.workload_end_s, info.quiet_s or 0.0, info.heal_all_s or 0.0)
    root = ET.Element("testsuites", tests=str(len(checks)), failures=str(failures))
    suite = ET.SubElement(
        root,
        "testsuite",
        name=clean(info.suite, ATTRIBUTE_MAX),
        tests=str(len(checks)),
        failures=str(failures),
        errors="0",
        skipped="0",
        timestamp=clean(info.started_at, ATTRIBUTE_MAX),
        time=f"{elapsed_s:.3f}",
    )
    properties = ET.SubElement(suite, "properties")
    for name, value in (
        ("seed", str(info.seed)),
        ("rerun", info.rerun),
        ("suite_path", info.suite_path),
        ("config", info.config),
        ("toxiproxy", info.toxiproxy),
        ("interrupted", str(info.interrupted).lower()),
    ):
        ET.SubElement(properties, "property", name=name, value=clean(value, ATTRIBUTE_MAX))
    for check in checks:
        case = ET.SubElement(
            suite,
            "testcase",
            name=clean(check.name, ATTRIBUTE_MAX),
            classname=clean(f"chaos.{info.suite}", ATTRIBUTE_MAX),
            time="0",
        )
        if not check.ok:
            failure = ET.SubElement(
                case, "failure", message=clean(check.summary, ATTRIBUTE_MAX), type="CheckFailed"
            )
            failure.text = clean(failure_text(check), FAILURE_TEXT_MAX)
        ET.SubElement(case, "system-out").text = clean(check.summary, ATTRIBUTE_MAX)
    ET.indent(root)
    body = ET.tostring(root, encoding="unicode")
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + body + "\n"


def write_junit(path: Path, info: RunInfo, checks: Sequence[CheckResult]) -> Path:
    Path(path).write_text(junit_xml(info, checks), encoding="utf-8")
    return Path(path)


def failure_text(check: CheckResult) -> str:
    """A failed check's offenses as readable text: why, the op, its context, evidence."""
    lines = [check.summary, ""]
    if not check.offending:
        lines.append("(no offending operation recorded)")
    for number, offense in enumerate(check.offending, start=1):
        lines.extend(_offense_lines(number, offense))
    return "\n".join(lines)


def _offense_lines(number: int, offense: Offense) -> list[str]:
    lines = [f"{number}. {offense.why}"]
    if offense.op is not None:
        lines.append(f"   op: {op_line(offense.op)}")
    if offense.context:
        lines.append("   context:")
        lines.extend(f"     {op_line(op)}" for op in offense.context)
    if offense.evidence:
        lines.append(f"   evidence: {_compact(offense.evidence)}")
    return lines


def op_line(op: dict[str, Any]) -> str:
    """One op on one line: id, kind, region, status and error, times, args, result."""
    error = "/".join(str(part) for part in (op.get("code"), op.get("reason")) if part)
    outcome = f"{op.get('status')} {error}".strip()
    message = f" {op['message']!r}" if op.get("message") else ""
    return (
        f"#{op.get('op_id')} {op.get('kind')} [{op.get('region')}] {outcome}{message} "
        f"{_time(op.get('invoke_s'))}..{_time(op.get('complete_s'))} "
        f"args={_compact(op.get('args', {}))} result={_compact(op.get('result', {}))} "
        f"request_id={op.get('request_id')}"
    )


def clean(text: str, limit: int) -> str:
    """``text`` with no character XML 1.0 forbids, cut to ``limit`` characters."""
    text = _NOT_XML.sub("\ufffd", text)
    return text if len(text) <= limit else text[: limit - 1] + "\u2026"


def _compact(value: object) -> str:
    return json.dumps(value, separators=(",", ":"), sort_keys=True, default=str)


def _time(value: object) -> str:
    return f"{value:.3f}" if isinstance(value, int | float) else "?"
