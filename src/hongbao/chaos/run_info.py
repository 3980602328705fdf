"""What a chaos run was (suite, seed, versions, rerun line) and every fault it injected.

Kept in ``run.json`` beside the history and the final state, so that a stored run can be
re-analysed (``hongbao chaos check``) and its report rebuilt without the cluster. The
runner writes it; the report and the checks read it.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Final

RUN_FILE: Final = "run.json"


@dataclass(slots=True)
class FaultRecord:
    """One fault of the schedule as it happened (times in s since the run's start)."""

    index: int  # its position in the suite's [[faults]]
    kind: str
    params: dict[str, Any]
    planned_at_s: float  # when the schedule said (relative to the workload's start)
    injected_s: float | None = None  # None: never injected (the run ended first)
    healed_s: float | None = None  # None: never healed by the schedule (see heal_all_s)
    targets: dict[str, Any] = field(default_factory=dict)  # what it hit, resolved at injection
    error: str = ""  # injection or heal failed: why


@dataclass(slots=True)
class RunInfo:
    suite: str  # its name
    suite_path: str
    seed: int
    config: str  # the topology file the cluster ran (the run's copy, with its ports)
    template: str  # the topology it was copied from (e.g. configs/local.toml)
    rerun: str  # one command line that runs the same suite with the same seed
    versions: dict[str, str]  # hongbao, python, grpcio, toxiproxy server
    toxiproxy: str  # "embedded" or the URL of the server used
    started_at: str  # wall clock, ISO 8601 UTC
    workload_start_s: float  # the workload's clock started here (s since the run's start)
    workload_end_s: float = 0.0
    heal_all_s: float | None = None  # every remaining fault healed here
    quiet_s: float | None = None  # the cluster was quiet (caught up, outboxes empty) here
    bugs: list[str] = field(default_factory=list)  # test-only switches, when any
    faults: list[FaultRecord] = field(default_factory=list)
    suite_expect: dict[str, Any] = field(default_factory=dict)  # the suite's [expect]
    interrupted: bool = False  # Ctrl-C or a signal ended the run early

    def save(self, directory: Path) -> Path:
        path = Path(directory) / RUN_FILE
        path.write_text(json.dumps(asdict(self), indent=1, sort_keys=True) + "\n")
        return path

    @staticmethod
    def load(directory: Path) -> RunInfo:
        data = json.loads((Path(directory) / RUN_FILE).read_text())
        data["faults"] = [FaultRecord(**f) for f in data.get("faults", [])]
        return RunInfo(**data)
