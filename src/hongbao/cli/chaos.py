"""``hongbao chaos``: run fault suites, list them, re-check a stored run, stop a run, render
a report page to PNG.

Exit codes: 0 every check passed; 1 a check failed (or, for ``check``, the stored run
fails; for ``screenshot``, the browser rendered nothing); 2 bad usage or a suite that
cannot run; 3 ``check`` reached another verdict than the one stored (the analysis is not
reproducible: a bug of the checker); 130 the run was interrupted (every fault healed,
the cluster stopped, no verdict).
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import click

from hongbao.chaos.screenshot import CHROMIUM
from hongbao.chaos.suite import SuiteError, load_suite, suite_files

EXIT_FAILED = 1
EXIT_NOT_REPRODUCED = 3
EXIT_INTERRUPTED = 130


@click.group("chaos")
def chaos() -> None:
    """Fault suites against real clusters, through Toxiproxy, with Jepsen-style checks."""


@chaos.command("list")
@click.option("--dir", "directory", type=click.Path(file_okay=False, path_type=Path),
              default=None, help="Where the suites are (default: the checkout's chaos/).")
def list_suites(directory: Path | None) -> None:
    """One line per suite: name, duration, faults, and what it does."""
    from hongbao.chaos.runner import repository_root

    folder = directory or _default_dir(repository_root())
    files = suite_files(folder)
    if not files:
        raise click.ClickException(f"no suites (*.toml) in {folder}")
    for path in files:
        try:
            suite = load_suite(path)
        except SuiteError as error:
            click.echo(f"{path.stem:<26} INVALID: {error}")
            continue
        kinds = ",".join(dict.fromkeys(f.kind for f in suite.faults)) or "none"
        click.echo(f"{suite.name:<26} {suite.duration_s:>5g} s  {kinds:<40} {suite.summary}")


@chaos.command("run")
@click.argument("suite_path", metavar="SUITE", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--report", "report_dir", type=click.Path(file_okay=False, path_type=Path),
              default=None, help="Report directory (default: chaos-reports/SUITE-SEED-TIME).")
@click.option("--seed", type=click.IntRange(min=0), default=None,
              help="Seed of the workload and the fault targets (default: random; printed).")
@click.option("--toxiproxy", default="auto", show_default=True,
              help="auto (toxiproxy-server on PATH, else embedded), embedded, or a URL.")
@click.option("--duration-s", type=click.FloatRange(min=1), default=None,
              help="Override the suite's workload duration (faults past it are not run).")
@click.option("--keep-data", is_flag=True, help="Keep the cluster's data in the report dir.")
@click.option("--no-fsync", is_flag=True, hidden=True, help="Tests only.")
@click.option("--bug", "bugs", multiple=True, hidden=True,
              help="Test-only switch passed to the nodes or routers (proves the checks fail).")
def run(suite_path: Path, report_dir: Path | None, seed: int | None, toxiproxy: str,
        duration_s: float | None, keep_data: bool, no_fsync: bool,
        bugs: tuple[str, ...]) -> None:
    """Run SUITE (a chaos/*.toml file): cluster, workload, faults, heal, checks, report."""
    from hongbao.chaos.runner import RunOptions, run_blocking

    if not suite_path.exists():
        candidate = _default_dir(Path.cwd()) / f"{suite_path}.toml"
        if candidate.exists():
            suite_path = candidate
    options = RunOptions(
        suite_path=suite_path, report_dir=report_dir, seed=seed, toxiproxy=toxiproxy,
        bugs=bugs, duration_s=duration_s, no_fsync=no_fsync, keep_data=keep_data,
    )  # fmt: skip
    try:
        outcome = run_blocking(options, click.echo)
    except SuiteError as error:
        raise click.UsageError(str(error)) from error
    except (KeyboardInterrupt, asyncio.CancelledError):
        click.echo("interrupted: every fault was healed and the cluster stopped", err=True)
        raise SystemExit(EXIT_INTERRUPTED) from None
    except (ValueError, FileNotFoundError) as error:
        raise click.UsageError(str(error)) from error
    _print_checks(outcome.checks)
    if not outcome.passed:
        raise SystemExit(EXIT_FAILED)


@chaos.command("check")
@click.argument("report_dir", type=click.Path(file_okay=False, exists=True, path_type=Path))
@click.option("--rewrite", is_flag=True,
              help="Write the reports again from this analysis (default: only compare).")
def check(report_dir: Path, rewrite: bool) -> None:
    """Re-analyse a stored run (history + final state) and compare with its verdict."""
    from hongbao.chaos.report import load_report, verdict
    from hongbao.chaos.runner import analyse_run

    try:
        stored = load_report(report_dir)
    except (OSError, ValueError) as error:
        raise click.UsageError(f"{report_dir}: no readable report.json: {error}") from error
    stored_checks = {c["name"]: bool(c["ok"]) for c in stored.get("checks", [])}
    try:
        checks = analyse_run(report_dir, write=rewrite)
    except (OSError, ValueError, KeyError) as error:
        raise click.UsageError(f"{report_dir}: cannot re-analyse: {error}") from error
    _print_checks(checks)
    again = {c.name: c.ok for c in checks}
    if again != stored_checks:
        differ = sorted(n for n in again.keys() | stored_checks.keys()
                        if again.get(n) != stored_checks.get(n))  # fmt: skip
        click.echo(f"NOT REPRODUCED: {', '.join(differ)} differ from the stored report", err=True)
        raise SystemExit(EXIT_NOT_REPRODUCED)
    click.echo(f"same verdict as stored: {'PASS' if verdict(checks) else 'FAIL'}")
    if not verdict(checks):
        raise SystemExit(EXIT_FAILED)


@chaos.command("screenshot")
@click.argument("report_dir", type=click.Path(file_okay=False, exists=True, path_type=Path))
@click.option("--out", "png_path", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="The PNG to write (default: REPORT_DIR/report.png).")
@click.option("--chromium", default=CHROMIUM, show_default=True,
              help="The browser that renders the page (Debian's chromium package).")
def screenshot(report_dir: Path, png_path: Path | None, chromium: str) -> None:
    """Render a run's report.html in headless Chromium, as a PNG to attach to a note."""
    from hongbao.chaos.report import HTML_FILE
    from hongbao.chaos.screenshot import screenshot as render

    page = report_dir / HTML_FILE
    if not page.is_file():
        raise click.UsageError(f"{report_dir}: no {HTML_FILE} (is it a chaos report directory?)")
    target = png_path if png_path is not None else report_dir / "report.png"
    try:
        render(page, target, chromium=chromium)
    except RuntimeError as error:
        raise click.ClickException(str(error)) from error
    click.echo(f"wrote {target}")


@chaos.command("stop")
def stop() -> None:
    """Heal every fault of every chaos run on this machine and stop the runs."""
    from hongbao.chaos.runner import stop_active

    if stop_active(click.echo) == 0:
        click.echo("no chaos run is active")


def _print_checks(checks: list) -> None:  # type: ignore[type-arg]
    for result in checks:
        click.echo(f"  {'PASS' if result.ok else 'FAIL'}  {result.name:<24} {result.summary}")
        for offense in result.offending[:3]:
            op = json.dumps(offense.op, sort_keys=True) if offense.op else ""
            click.echo(f"        {offense.why} {op}")


def _default_dir(root: Path) -> Path:
    return root / "chaos"
