"""A chaos suite: one TOML file of ``chaos/`` saying what to break, when, and what to expect.

Why files and not code: a chaos engineer reads and edits a suite without reading the
runner, and ``hongbao chaos list`` shows each with its one-line summary. The loader is
strict (an unknown key is an error naming it) because a typo in a fault schedule would
otherwise run a suite that tests nothing. Fault parameters are checked by the fault's
own builder (``chaos.faults.build_fault``), which the loader calls.

    name = "partition-region"
    summary = "one line for chaos list"
    description = \"\"\"what it does\"\"\"
    expects = \"\"\"what the system should do\"\"\"
    duration_s = 180           # the workload runs this long; faults fit inside it
    config = "configs/local.toml"   # relative to the repository root (or absolute)

    [workload]                 # every key optional, see Workload
    concurrency = 32

    [[faults]]
    at_s = 30                  # injected this long after the workload starts
    duration_s = 40            # healed this long after (omit: healed at the end)
    kind = "partition-region"
    region = "shanghai"        # the fault's own parameters

    [expect]                   # thresholds of the availability check, all optional
    max_unavailable_s = 20.0
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Final

SUITE_BYTES_MAX: Final = 256 * 1024
DURATION_S_MAX: Final = 6 * 3600
FAULTS_MAX: Final = 64
_TOP_KEYS: Final = frozenset(
    {"name", "summary", "description", "expects", "duration_s", "config", "workload",
     "faults", "expect", "quiet_timeout_s"}
)  # fmt: skip
_FAULT_KEYS: Final = frozenset({"at_s", "duration_s", "kind"})


class SuiteError(ValueError):
    """A suite file that cannot run; the message names the file and the bad key."""


@dataclass(frozen=True, slots=True)
class Workload:
    """The red-envelope workload driven through the routers while faults run."""

    # 12 callers x 100 operations keep this 2-core machine saturated, every link proxied:
    # 1,400-2,400 answered ops/s through the routers by suite and run (smoke: 12 x 50 gave
    # 1,550-1,900, 12 x 100 2,145), p50 about 0.4 s and p99 under the call deadline
    # (24 x 100 added little and put p99 at 4.8 s).
    concurrency: int = 12  # callers, spread over the regions' routers
    batch: int = 100  # operations per Batch.Execute call (1: single RPCs)
    users: int = 600  # wallets, funded before the clock starts
    initial_fen: int = 1_000_000  # each wallet's opening deposit (10,000 yuan)
    # Relative weights of the operation kinds.
    deposit: int = 2
    withdraw: int = 1
    transfer: int = 6
    send: int = 1
    grab: int = 6
    amount_max_fen: int = 5_000  # transfers, deposits and withdrawals: 1..this
    envelope_total_max_fen: int = 20_000
    envelope_count_max: int = 10
    call_timeout_ms: int = 5_000  # one call's deadline; past it the op is ``info``
    rate_ops_s: int = 0  # 0: as fast as the cluster answers; else a target rate


@dataclass(frozen=True, slots=True)
class FaultSpec:
    kind: str
    at_s: float
    duration_s: float | None  # None: healed when the workload ends
    params: dict[str, Any]  # the fault's own keys, checked by its builder

    @property
    def heal_at_s(self) -> float | None:
        return None if self.duration_s is None else self.at_s + self.duration_s


@dataclass(frozen=True, slots=True)
class Expect:
    """Thresholds of the availability check (correctness checks have none: exact)."""

    max_unavailable_s: float | None = None  # longest window with no successful request
    min_availability: float | None = None  # share of requests that succeeded, whole run
    max_recovery_s: float | None = None  # after each heal, until throughput is back


@dataclass(frozen=True, slots=True)
class Suite:
    name: str
    summary: str
    description: str
    expects: str
    duration_s: float
    config: str
    workload: Workload
    faults: tuple[FaultSpec, ...]
    expect: Expect
    quiet_timeout_s: float = 60.0
    path: str = ""

    def config_path(self, root: Path) -> Path:
        path = Path(self.config)
        return path if path.is_absolute() else root / path


def load_suite(path: str | Path) -> Suite:
    where = str(path)
    try:
        raw = Path(path).read_bytes()
    except OSError as error:
        raise SuiteError(f"{where}: {error.strerror or error}") from error
    if len(raw) > SUITE_BYTES_MAX:
        raise SuiteError(f"{where}: over {SUITE_BYTES_MAX} bytes")
    try:
        data = tomllib.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, tomllib.TOMLDecodeError) as error:
        raise SuiteError(f"{where}: {error}") from error
    return parse_suite(data, where)


def parse_suite(data: dict[str, Any], where: str = "<suite>") -> Suite:
    _no_unknown(data, _TOP_KEYS, where)
    for key in ("name", "summary", "description", "expects"):
        if not isinstance(data.get(key), str) or not data[key].strip():
            raise SuiteError(f"{where}: {key} must be a non-empty string")
    duration_s = _number(data.get("duration_s"), f"{where}: duration_s", 1, DURATION_S_MAX)
    workload = _table(Workload, data.get("workload", {}), f"{where}: [workload]")
    expect = _table(Expect, data.get("expect", {}), f"{where}: [expect]")
    raw_faults = data.get("faults", [])
    if not isinstance(raw_faults, list) or len(raw_faults) > FAULTS_MAX:
        raise SuiteError(f"{where}: faults must be a list of at most {FAULTS_MAX} tables")
    faults = tuple(
        _fault(item, f"{where}: faults[{index}]", duration_s)
        for index, item in enumerate(raw_faults)
    )
    suite = Suite(
        name=data["name"],
        summary=data["summary"].strip(),
        description=data["description"].strip(),
        expects=data["expects"].strip(),
        duration_s=duration_s,
        config=str(data.get("config", "configs/local.toml")),
        workload=workload,
        faults=faults,
        expect=expect,
        quiet_timeout_s=_number(
            data.get("quiet_timeout_s", 60.0), f"{where}: quiet_timeout_s", 1, 3600
        ),
        path=where,
    )
    from hongbao.chaos.faults import build_fault  # the faults check their own parameters

    for index, spec in enumerate(suite.faults):
        try:
            build_fault(spec)
        except ValueError as error:
            raise SuiteError(f"{where}: faults[{index}] ({spec.kind}): {error}") from error
    return suite


def _fault(item: object, where: str, duration_s: float) -> FaultSpec:
    if not isinstance(item, dict):
        raise SuiteError(f"{where}: expected a table")
    kind = item.get("kind")
    if not isinstance(kind, str):
        raise SuiteError(f"{where}: kind must be a string")
    at_s = _number(item.get("at_s"), f"{where}: at_s", 0, duration_s)
    length = item.get("duration_s")
    lasting = None if length is None else _number(length, f"{where}: duration_s", 0,
                                                  duration_s - at_s)  # fmt: skip
    params = {k: v for k, v in item.items() if k not in _FAULT_KEYS}
    return FaultSpec(kind=kind, at_s=at_s, duration_s=lasting, params=params)


def _table(cls: Any, raw: object, where: str) -> Any:
    if not isinstance(raw, dict):
        raise SuiteError(f"{where}: expected a table")
    known = {f.name: f for f in fields(cls)}
    _no_unknown(raw, frozenset(known), where)
    values: dict[str, Any] = {}
    for key, value in raw.items():
        default = getattr(cls(), key)
        if isinstance(default, bool) or isinstance(value, bool):
            raise SuiteError(f"{where}: {key} must be a number")
        if isinstance(default, int) and not isinstance(value, int):
            raise SuiteError(f"{where}: {key} must be an integer")
        values[key] = _number(value, f"{where}: {key}", 0, 10**12)
    return cls(**values)


def _number(value: object, where: str, low: float, high: float) -> Any:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise SuiteError(f"{where} must be a number")
    if not low <= value <= high:
        raise SuiteError(f"{where} must be in [{low}, {high}], not {value}")
    return value


def _no_unknown(data: dict[str, Any], known: frozenset[str], where: str) -> None:
    unknown = sorted(set(data) - known)
    if unknown:
        raise SuiteError(f"{where}: unknown key {unknown[0]!r} (known: {', '.join(sorted(known))})")


def suite_files(directory: Path) -> list[Path]:
    return sorted(Path(directory).glob("*.toml"))


@dataclass(slots=True)
class SuiteListing:
    name: str
    summary: str
    path: Path
    duration_s: float
    faults: list[str] = field(default_factory=list)
