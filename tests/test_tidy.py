"""House rules that a reviewer should not have to check by hand (TigerBeetle's tidy).

- lines are at most 100 columns;
- functions are at most 70 lines (a ratchet: existing longer ones are listed here);
- the Raft core and the ledger read no clock, no global randomness and do no I/O;
- no float near money in the ledger;
- no leftover FIXME.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

SRC = Path(__file__).resolve().parent.parent / "src" / "hongbao"
GENERATED = SRC / "proto" / "gen"
LINE_COLUMNS_MAX = 100
FUNCTION_LINES_MAX = 70
# The ratchet: functions allowed to stay longer than the limit, with their current length.
FUNCTION_LINES_ALLOWED: dict[str, int] = {}

PURE_PACKAGES = ("raft", "ledger")
BANNED_IN_PURE = re.compile(
    r"^\s*(import|from)\s+(asyncio|grpc|lmdb|socket|threading|time|os)\b"
    r"|\brandom\.(random|randint|randrange|choice|uniform|shuffle|seed)\("
    r"|\btime\.(time|monotonic|perf_counter)\("
    r"|\bdatetime\.now\("
)


def python_files() -> list[Path]:
    return sorted(p for p in SRC.rglob("*.py") if GENERATED not in p.parents)


def test_lines_fit_in_100_columns() -> None:
    long_lines = [
        f"{path.relative_to(SRC)}:{number}"
        for path in python_files()
        for number, line in enumerate(path.read_text().splitlines(), 1)
        if len(line) > LINE_COLUMNS_MAX
    ]
    assert long_lines == []


def test_functions_stay_short() -> None:
    too_long: list[str] = []
    for path in python_files():
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                length = (node.end_lineno or node.lineno) - node.lineno + 1
                name = f"{path.relative_to(SRC)}:{node.name}"
                if length > FUNCTION_LINES_ALLOWED.get(name, FUNCTION_LINES_MAX):
                    too_long.append(f"{name} ({length} lines)")
    assert too_long == []


def test_pure_packages_do_no_io_and_read_no_clock() -> None:
    offenders = [
        f"{path.relative_to(SRC)}:{number}: {line.strip()}"
        for package in PURE_PACKAGES
        for path in sorted((SRC / package).rglob("*.py"))
        for number, line in enumerate(path.read_text().splitlines(), 1)
        if BANNED_IN_PURE.search(line)
    ]
    assert offenders == []


def test_no_float_near_money() -> None:
    pattern = re.compile(r"float\(|: float|-> float")
    offenders = [
        f"{path.relative_to(SRC)}:{number}"
        for path in sorted((SRC / "ledger").rglob("*.py"))
        for number, line in enumerate(path.read_text().splitlines(), 1)
        if pattern.search(line)
    ]
    assert offenders == []


def test_no_leftover_fixme() -> None:
    offenders = [
        f"{path.relative_to(SRC)}:{number}"
        for path in python_files()
        for number, line in enumerate(path.read_text().splitlines(), 1)
        if "FIXME" in line
    ]
    assert offenders == []


def test_the_banned_pattern_catches_what_it_should() -> None:
    """The rule above must be able to fail."""
    assert BANNED_IN_PURE.search("import time")
    assert BANNED_IN_PURE.search("x = random.randint(1, 2)")
    assert BANNED_IN_PURE.search("now = time.monotonic()")
    assert not BANNED_IN_PURE.search("rng = random.Random(seed)")
