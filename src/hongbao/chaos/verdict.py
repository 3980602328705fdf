"""One check's verdict, as every check (correctness and availability) reports it.

Why one shape: the report, the JUnit summary and ``hongbao chaos check`` print every
check the same way, and a failed check carries its first offending operations in
context (Jepsen #562) so that a reader sees what went wrong without the raw history.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Final

OFFENDING_MAX: Final = 10  # first offending operations kept per failed check
CONTEXT_OPS_MAX: Final = 8  # operations of the same user or envelope shown around each


@dataclass(slots=True)
class Offense:
    why: str  # one sentence: what is wrong, with the amounts and ids
    op: dict[str, Any] | None = None  # the offending history.Op as a dict, when there is one
    context: list[dict[str, Any]] = field(default_factory=list)  # ops around it, by time
    evidence: dict[str, Any] = field(default_factory=dict)  # postings, envelope, totals


@dataclass(slots=True)
class CheckResult:
    name: str  # kebab-case: "conservation", "no-negative-balance", "availability", ...
    ok: bool
    summary: str  # one line: what was checked and the counts behind the verdict
    offending: list[Offense] = field(default_factory=list)  # at most OFFENDING_MAX
    details: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @staticmethod
    def from_dict(data: dict[str, Any]) -> CheckResult:
        return CheckResult(
            name=data["name"],
            ok=data["ok"],
            summary=data["summary"],
            offending=[Offense(**o) for o in data.get("offending", [])],
            details=dict(data.get("details", {})),
        )
