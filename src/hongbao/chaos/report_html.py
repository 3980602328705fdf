"""report.html: one self-contained page showing what broke, when, and what the system did.

Why this layout: a reader's first question is "did the faults line up with the dips?",
so a timeline band of the faults sits above plots that share its time axis (throughput
per region, availability, latency), each with the fault windows shaded. Below come the
verdict, the checks with their offending operations, the faults, the totals, the rerun
line and the versions. The page loads nothing: the plots are matplotlib SVG inlined,
the style is inline, and every string that came from the run (messages, ids, targets)
goes through ``html.escape``.
"""

from __future__ import annotations

import html
import io
import json
import math
import re
from collections.abc import Iterable, Sequence
from typing import Any, Final

import matplotlib
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter, NullFormatter

from hongbao.chaos.metrics import FaultImpact, Metrics, recovery_text
from hongbao.chaos.run_info import FaultRecord, RunInfo
from hongbao.chaos.verdict import CheckResult, Offense

CELL_CHARS_MAX: Final = 600  # a table cell shows at most this much of a value
LABEL_CHARS_MAX: Final = 70  # a fault's label on the timeline band
FIGURE_WIDTH_IN: Final = 14.0
PLOT_HEIGHT_IN: Final = 2.6
FAULT_ROW_IN: Final = 0.34
FAULT_COLOURS: Final = ("#f4a261", "#8ecae6", "#b5e48c", "#cdb4db", "#ffd166", "#f28482")
REGION_COLOURS: Final = ("#1f77b4", "#2ca02c", "#9467bd", "#8c564b", "#e377c2", "#17becf")
_STEPS: Final[dict[str, Any]] = {"drawstyle": "steps-mid"}  # one value per second
_SVG_START: Final = re.compile(r"<svg\b")
_XMLNS: Final = re.compile(r'\s+xmlns(?::\w+)?="[^"]*"')

_STYLE: Final = """
body{font-family:system-ui,sans-serif;margin:1.5em;color:#222;max-width:1400px}
h1{font-size:1.5em}h2{font-size:1.2em;margin-top:1.6em;border-bottom:1px solid #ccc}
table{border-collapse:collapse;margin:.5em 0;font-size:.9em}
td,th{border:1px solid #ccc;padding:.25em .5em;vertical-align:top;text-align:left}
th{background:#f3f3f3}.pass{color:#fff;background:#2a9d8f;padding:0 .4em}
.fail{color:#fff;background:#d62828;padding:0 .4em}code,pre{font-size:.85em}
pre{background:#f7f7f7;padding:.5em;overflow-x:auto;white-space:pre-wrap}
.plots svg{width:100%;height:auto}.offense{margin:.5em 0 1em 1em}.muted{color:#777}
"""


def render_html(info: RunInfo, metrics: Metrics, checks: Sequence[CheckResult]) -> str:
    passed = bool(checks) and all(check.ok for check in checks)  # as report.verdict
    badge = _badge(passed, "PASSED", "FAILED")
    parts = [
        "<!doctype html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>chaos {_e(info.suite)}: {'passed' if passed else 'failed'}</title>",
        f"<style>{_STYLE}</style></head><body>",
        f"<h1>Chaos run <code>{_e(info.suite)}</code> {badge}</h1>",
        f'<p class="muted">seed {_e(info.seed)} &middot; started {_e(info.started_at)} '
        f"&middot; toxiproxy {_e(info.toxiproxy)}"
        + (" &middot; <b>interrupted</b>" if info.interrupted else "")
        + (f" &middot; test-only bugs: {_e(', '.join(info.bugs))}" if info.bugs else "")
        + "</p>",
        f'<div class="plots">{plots_svg(info, metrics)}</div>',
        '<p class="muted">Shaded: each fault from injection to heal. Dashed lines: the '
        "workload's start and end; dotted green: every fault healed; dotted dark: the "
        "cluster quiet. Ops are counted in the second they completed.</p>",
        f"<h2>Verdict</h2><p>{badge} {sum(c.ok for c in checks)} of {len(checks)} checks hold.</p>",
        _checks_section(checks),
        _faults_section(info, metrics),
        _totals_section(metrics),
        _run_section(info),
        "</body></html>",
    ]
    return "\n".join(parts) + "\n"


def plots_svg(info: RunInfo, metrics: Metrics) -> str:
    """The fault band over throughput, availability and latency, as inline SVG markup.

    Text stays text (searchable, small) and is never parsed as mathtext (a ``$`` in a
    target would otherwise start a formula); ids are salted so the output is stable.
    """
    settings = {"svg.fonttype": "none", "svg.hashsalt": "hongbao-chaos", "text.parse_math": False}
    with matplotlib.rc_context(settings):  # type: ignore[arg-type]  # a literal-keyed TypedDict
        return _svg(_figure(info, metrics))


def _figure(info: RunInfo, metrics: Metrics) -> Figure:
    rows = metrics.per_second
    faults = info.faults
    band_in = 0.7 + FAULT_ROW_IN * max(1, len(faults))
    figure = Figure(figsize=(FIGURE_WIDTH_IN, band_in + 3 * PLOT_HEIGHT_IN))
    band, throughput, availability, latency = figure.subplots(
        4, 1, sharex=True, height_ratios=[band_in, PLOT_HEIGHT_IN, PLOT_HEIGHT_IN, PLOT_HEIGHT_IN]
    )
    x = [row["t"] + 0.5 for row in rows]
    end_s = _x_end(info, metrics)
    _draw_band(band, info, metrics.faults, end_s)
    for index, region in enumerate(metrics.regions):
        counts = [row["by_region"].get(region, {}).get("ok", 0) for row in rows]
        colour = REGION_COLOURS[index % len(REGION_COLOURS)]
        throughput.plot(x, counts, color=colour, linewidth=1.2, label=region, **_STEPS)
    throughput.plot(x, [row["ok"] for row in rows], color="#222", lw=0.8, label="all", **_STEPS)
    throughput.set_ylabel("ok / s")
    throughput.set_ylim(bottom=0)
    throughput.legend(loc="upper right", fontsize=8, ncol=len(metrics.regions) + 1)
    availability.plot(x, [_nan(row["availability"]) for row in rows], color="#2a9d8f", **_STEPS)
    availability.set_ylabel("availability")
    availability.set_ylim(-0.02, 1.05)
    p50 = [_nan(row["p50_ms"]) for row in rows]
    p99 = [_nan(row["p99_ms"]) for row in rows]
    latency.plot(x, p50, color="#264653", linewidth=1.0, label="p50", **_STEPS)
    latency.plot(x, p99, color="#e76f51", linewidth=1.0, label="p99", **_STEPS)
    if any(v > 0 for v in p50 + p99 if not math.isnan(v)):
        latency.set_yscale("log")
        # Plain numbers: with mathtext off (see plots_svg) "10^3" labels would print raw.
        latency.yaxis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:g}"))
        latency.yaxis.set_minor_formatter(NullFormatter())
    latency.set_ylabel("latency ms (ok ops)")
    latency.legend(loc="upper right", fontsize=8)
    latency.set_xlabel("seconds since the run started")
    for axes in (band, throughput, availability, latency):
        _shade(axes, faults, info, end_s)
        _marks(axes, info)
        axes.grid(True, axis="x", color="#ddd", linewidth=0.5)
    start_s = min([info.workload_start_s, *(row["t"] for row in rows[:1])])
    band.set_xlim(math.floor(start_s), end_s)
    height_in = figure.get_figheight()
    figure.subplots_adjust(
        left=0.14, right=0.99, top=1 - 0.4 / height_in, bottom=0.6 / height_in, hspace=0.12
    )
    return figure


def _draw_band(axes: Axes, info: RunInfo, impacts: Sequence[FaultImpact], end_s: float) -> None:
    by_index = {impact.index: impact for impact in impacts}
    labels = []
    for row, fault in enumerate(info.faults):
        y = -row
        colour = FAULT_COLOURS[row % len(FAULT_COLOURS)]
        labels.append(f"#{fault.index} {fault.kind}")
        text = _targets_text(fault)
        if fault.injected_s is None:
            text = "not injected" + (f": {fault.error}" if fault.error else "")
        else:
            heal_s = _heal_of(fault, info)
            width = (end_s if heal_s is None else heal_s) - fault.injected_s
            axes.barh(
                y,
                width,
                left=fault.injected_s,
                height=0.6,
                color=colour,
                edgecolor="#555",
                hatch="//" if fault.healed_s is None else None,
            )
            impact = by_index.get(fault.index)
            if impact is not None and impact.unavailable_from_s is not None:
                axes.barh(
                    y - 0.22,
                    impact.longest_unavailable_s,
                    left=impact.unavailable_from_s,
                    height=0.14,
                    color="#d62828",
                )
            if fault.error:
                text += f" (error: {fault.error})"
        axes.text(
            fault.injected_s if fault.injected_s is not None else info.workload_start_s,
            y,
            " " + _clip(text, LABEL_CHARS_MAX),
            va="center",
            ha="left",
            fontsize=8,
            clip_on=True,
            parse_math=False,
        )
    axes.set_yticks([-row for row in range(len(info.faults))], labels, fontsize=8)
    axes.set_ylim(-max(1, len(info.faults)) + 0.4, 0.6)
    axes.set_title(
        "faults (bar: injected to healed, hatched: healed only at the end; red: "
        "longest unavailability)",
        fontsize=9,
        loc="left",
    )
    if not info.faults:
        axes.text(0.5, 0.5, "no faults", transform=axes.transAxes, ha="center", fontsize=9)


def _shade(axes: Axes, faults: Sequence[FaultRecord], info: RunInfo, end_s: float) -> None:
    for row, fault in enumerate(faults):
        if fault.injected_s is None:
            continue
        heal_s = _heal_of(fault, info)
        axes.axvspan(
            fault.injected_s,
            end_s if heal_s is None else heal_s,
            color=FAULT_COLOURS[row % len(FAULT_COLOURS)],
            alpha=0.25,
            linewidth=0,
        )


def _marks(axes: Axes, info: RunInfo) -> None:
    """Dashed: the workload's start and end; dotted: every fault healed, the cluster quiet."""
    axes.axvline(info.workload_start_s, color="#888", linestyle="--", linewidth=0.8)
    if info.workload_end_s > info.workload_start_s:
        axes.axvline(info.workload_end_s, color="#888", linestyle="--", linewidth=0.8)
    for moment_s, colour in ((info.heal_all_s, "#2a9d8f"), (info.quiet_s, "#264653")):
        if moment_s is not None:
            axes.axvline(moment_s, color=colour, linestyle=":", linewidth=0.9)


def _svg(figure: Figure) -> str:
    buffer = io.StringIO()
    figure.savefig(
        buffer, format="svg", metadata={"Date": None, "Creator": None, "Format": None, "Type": None}
    )
    text = buffer.getvalue()
    match = _SVG_START.search(text)
    svg = text[match.start() :] if match else text  # drop the XML declaration and DOCTYPE
    return _XMLNS.sub("", svg, count=0)  # inline SVG in HTML needs no namespace URIs


def _checks_section(checks: Sequence[CheckResult]) -> str:
    rows = [
        [_badge(check.ok, "pass", "fail"), f"<code>{_e(check.name)}</code>", _e(check.summary)]
        for check in checks
    ]
    parts = ["<h2>Checks</h2>", _table(["result", "check", "summary"], rows)]
    for check in checks:
        if check.ok:
            continue
        parts.append(f"<h3>{_e(check.name)}: offending operations</h3>")
        if not check.offending:
            parts.append('<p class="muted">no offending operation recorded</p>')
        parts.extend(
            _offense_html(number, offense)
            for number, offense in enumerate(check.offending, start=1)
        )
    return "\n".join(parts)


def _offense_html(number: int, offense: Offense) -> str:
    parts = [f'<div class="offense"><p><b>{number}.</b> {_e(offense.why)}</p>']
    if offense.op is not None:
        parts.append("<p>the operation:</p>" + _ops_table([offense.op]))
    if offense.context:
        parts.append("<p>in context (by time):</p>" + _ops_table(offense.context))
    if offense.evidence:
        evidence = json.dumps(offense.evidence, indent=1, sort_keys=True, default=str)
        parts.append(f"<p>evidence:</p><pre>{_e(_clip(evidence, 20 * CELL_CHARS_MAX))}</pre>")
    return "".join(parts) + "</div>"


def _ops_table(ops: Iterable[dict[str, Any]]) -> str:
    head = [
        "op",
        "kind",
        "region",
        "status",
        "error",
        "invoke s",
        "complete s",
        "ms",
        "args",
        "result / message",
        "request id",
    ]
    rows = []
    for op in ops:
        invoke_s, complete_s = op.get("invoke_s"), op.get("complete_s")
        took = (
            f"{(complete_s - invoke_s) * 1000:.1f}"
            if isinstance(invoke_s, int | float) and isinstance(complete_s, int | float)
            else ""
        )
        error = "/".join(str(p) for p in (op.get("code"), op.get("reason")) if p)
        answer = op.get("message") or (_compact(op["result"]) if op.get("result") else "")
        rows.append(
            [
                _e(op.get("op_id")),
                _e(op.get("kind")),
                _e(op.get("region")),
                _e(op.get("status")),
                _e(error),
                _seconds(invoke_s),
                _seconds(complete_s),
                took,
                _e(_compact(op.get("args", {}))),
                _e(answer),
                f"<code>{_e(op.get('request_id'))}</code>",
            ]
        )
    return _table(head, rows)


def _faults_section(info: RunInfo, metrics: Metrics) -> str:
    impacts = {impact.index: impact for impact in metrics.faults}
    head = [
        "#",
        "kind",
        "params",
        "targets",
        "planned (after workload start)",
        "injected",
        "healed",
        "longest unavailability",
        "by region",
        "recovery",
        "error",
    ]
    rows = []
    for fault in info.faults:
        impact = impacts.get(fault.index)
        by_region = (
            ""
            if impact is None
            else ", ".join(
                f"{_e(region)} {seconds:.3f} s"
                for region, seconds in impact.longest_unavailable_by_region.items()
            )
        )
        unavailable = (
            ""
            if impact is None
            else f"{impact.longest_unavailable_s:.3f} s"
            + (
                f" from {impact.unavailable_from_s:.3f}"
                if impact.unavailable_from_s is not None
                else ""
            )
        )
        rows.append(
            [
                _e(fault.index),
                _e(fault.kind),
                _e(_compact(fault.params)),
                _e(_compact(fault.targets)),
                _seconds(fault.planned_at_s),
                _seconds(fault.injected_s),
                _seconds(_heal_of(fault, info))
                + (
                    " (heal-all)" if fault.injected_s is not None and fault.healed_s is None else ""
                ),
                unavailable,
                by_region,
                "" if impact is None else _e(recovery_text(impact)),
                _e(fault.error),
            ]
        )
    if not rows:
        return "<h2>Faults</h2><p>none</p>"
    return "<h2>Faults</h2>" + _table(head, rows)


def _totals_section(metrics: Metrics) -> str:
    share = "n/a" if metrics.availability is None else f"{metrics.availability:.4f}"
    totals = _table(
        [
            "requests",
            "ok",
            "failed",
            "of which refused",
            "indeterminate",
            "availability",
            "longest unavailability",
        ],
        [
            [
                str(metrics.requests),
                str(metrics.ok),
                str(metrics.failed),
                str(metrics.refused),
                str(metrics.indeterminate),
                share,
                f"{metrics.longest_unavailable_s:.3f} s",
            ]
        ],
    )
    latency = _table(list(metrics.latency_ms), [[f"{v:g}" for v in metrics.latency_ms.values()]])
    errors = _table(
        ["code / reason", "count"],
        [[_e(code), str(n)] for code, n in metrics.failures_by_code.items()],
    )
    per_region: dict[str, dict[str, int]] = {}
    for row in metrics.per_second:
        for region, counts in row["by_region"].items():
            summed = per_region.setdefault(region, {})
            for key, value in counts.items():
                summed[key] = summed.get(key, 0) + value
    keys = ["ok", "refused", "fail", "info"]
    regions = _table(
        ["region", *keys],
        [[_e(region), *(str(c.get(k, 0)) for k in keys)] for region, c in per_region.items()],
    )
    return (
        "<h2>Totals</h2>"
        + totals
        + "<p>latency of ok operations, ms:</p>"
        + latency
        + "<p>per region:</p>"
        + regions
        + "<p>failures by code:</p>"
        + (errors if metrics.failures_by_code else "<p>none</p>")
    )


def _run_section(info: RunInfo) -> str:
    facts = [
        ("seed", _e(info.seed)),
        ("rerun", f"<code>{_e(info.rerun)}</code>"),
        ("suite file", _e(info.suite_path)),
        ("config", _e(info.config)),
        ("template", _e(info.template)),
        ("toxiproxy", _e(info.toxiproxy)),
        ("workload", f"{_seconds(info.workload_start_s)} to {_seconds(info.workload_end_s)}"),
        ("every fault healed", _seconds(info.heal_all_s)),
        ("quiet", _seconds(info.quiet_s)),
        ("expect", _e(_compact(info.suite_expect))),
    ]
    versions = _table(
        ["component", "version"], [[_e(k), _e(v)] for k, v in sorted(info.versions.items())]
    )
    return (
        "<h2>Run</h2>"
        + _table(["", ""], [[k, v] for k, v in facts])
        + "<p>versions:</p>"
        + versions
    )


def _table(head: Sequence[str], rows: Iterable[Sequence[str]]) -> str:
    """Cells are HTML already (the callers escape what came from the run)."""
    header = "".join(f"<th>{_e(cell)}</th>" for cell in head)
    body = "".join("<tr>" + "".join(f"<td>{cell}</td>" for cell in row) + "</tr>" for row in rows)
    return f"<table><thead><tr>{header}</tr></thead><tbody>{body}</tbody></table>"


def _badge(ok: bool, yes: str, no: str) -> str:
    return f'<span class="pass">{yes}</span>' if ok else f'<span class="fail">{no}</span>'


def _e(value: object) -> str:
    return html.escape(_clip("" if value is None else str(value), CELL_CHARS_MAX), quote=True)


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "\u2026"


def _compact(value: object) -> str:
    return json.dumps(value, separators=(",", ":"), sort_keys=True, default=str)


def _seconds(value: object) -> str:
    return f"{value:.3f}" if isinstance(value, int | float) else "-"


def _nan(value: float | None) -> float:
    return math.nan if value is None else float(value)


def _targets_text(fault: FaultRecord) -> str:
    return ", ".join(f"{k}={_compact(v)}" for k, v in sorted(fault.targets.items())) or _compact(
        fault.params
    )


def _heal_of(fault: FaultRecord, info: RunInfo) -> float | None:
    """Its own heal, else the runner's heal-all; None for a fault never injected."""
    if fault.injected_s is None:
        return None
    return fault.healed_s if fault.healed_s is not None else info.heal_all_s


def _x_end(info: RunInfo, metrics: Metrics) -> float:
    last_s = metrics.per_second[-1]["t"] + 1.0 if metrics.per_second else info.workload_end_s
    moments = [last_s, info.workload_end_s, info.heal_all_s or 0.0, info.quiet_s or 0.0]
    moments += [f.injected_s or 0.0 for f in info.faults]
    return max(moments) + 1.0
