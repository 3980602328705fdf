"""The operation history of a chaos run: what the workload asked and what it was told.

Why a history and not counters: the checks (``chaos.checks``) judge the final state
against every acknowledged, failed and indeterminate operation, Jepsen-style, and
``hongbao chaos check`` re-analyses a stored history to the same verdict. The file is
JSON Lines, one :class:`Op` per line, written as operations complete; this module is
the only place that knows its shape.

An operation's ``status`` follows Jepsen: ``ok`` (acknowledged), ``fail`` (a definite
error: it did not and never will take effect) and ``info`` (indeterminate: it may or
may not have taken effect; the collector asks ``RequestStatus``, which fences an id it
finds not applied, so every ``info`` gets a final answer when the cluster is reachable).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Final, Literal

Kind = Literal["deposit", "withdraw", "transfer", "send", "grab"]
Status = Literal["ok", "fail", "info"]
KINDS: Final = ("deposit", "withdraw", "transfer", "send", "grab")
MUTATIONS: Final = frozenset(KINDS)  # every kind of the workload moves money or may

# Reasons that say the request did not take effect and never will (errors.proto): the
# routing ones (not applied, retry may succeed), the validation ones and the business
# refusals (an applied refusal moves no money). Anything else, a bare transport error,
# OUTCOME_UNKNOWN, DEADLINE_EXCEEDED or INTERNAL, is indeterminate (``info``).
DEFINITE_REASONS: Final = frozenset(
    {
        "NOT_LEADER", "UNAVAILABLE", "OVERLOADED",
        "INVALID_AMOUNT", "AMOUNT_TOO_LARGE", "MALFORMED_ID", "LIMIT_EXCEEDED",
        "INVALID_REQUEST", "INSUFFICIENT_FUNDS", "ACCOUNT_FROZEN", "ENVELOPE_EXPIRED",
        "ENVELOPE_EMPTY", "ALREADY_GRABBED", "DAILY_LIMIT_EXCEEDED", "REQUEST_ID_REUSED",
        "NOT_FOUND", "CLUSTER_MISMATCH", "REQUEST_FENCED",
    }
)  # fmt: skip
# Definite refusals that the ledger applied as a result (the request id is spent, no
# money moved): RequestStatus answers APPLIED with this error as the result.
REFUSALS: Final = frozenset(
    {
        "INVALID_AMOUNT", "AMOUNT_TOO_LARGE", "INSUFFICIENT_FUNDS", "ACCOUNT_FROZEN",
        "ENVELOPE_EXPIRED", "ENVELOPE_EMPTY", "ALREADY_GRABBED", "DAILY_LIMIT_EXCEEDED",
    }
)  # fmt: skip
HISTORY_FILE: Final = "history.jsonl"
LINE_BYTES_MAX: Final = 64 * 1024


def status_of(reason: str) -> Status:
    """``fail`` for a definite reason (an ErrorReason name), ``info`` for anything else."""
    return "fail" if reason in DEFINITE_REASONS else "info"


@dataclass(slots=True)
class Op:
    """One operation as the workload saw it.

    ``args`` by kind (amounts in fen, ids as sent):
      deposit, withdraw: ``{"user": u, "amount_fen": n}``
      transfer: ``{"from": u, "to": v, "amount_fen": n}``
      send: ``{"sender": u, "total_fen": n, "count": k, "envelope_kind": "lucky"|"fixed"}``
      grab: ``{"envelope_id": e, "user": u}``
    ``result`` (ok only), the answer's fields by kind:
      deposit, withdraw: ``{"balance_fen"}``; transfer: ``{"from_balance_fen", "cross_shard"}``;
      send: ``{"envelope_id", "sender_balance_fen"}``;
      grab: ``{"amount_fen", "ordinal", "remaining_count", "cross_shard"}``.
    Times are seconds since the run's start (monotonic clock of the workload process).
    """

    op_id: int
    kind: Kind
    request_id: str
    region: str  # the region of the router that carried it
    args: dict[str, object]
    invoke_s: float
    complete_s: float
    status: Status
    code: str = ""  # gRPC status code name; "" when ok
    reason: str = ""  # ErrorReason name; "" when ok or when the error carried none
    message: str = ""
    result: dict[str, object] = field(default_factory=dict)

    def to_json(self) -> str:
        return json.dumps(asdict(self), separators=(",", ":"), sort_keys=True)

    @staticmethod
    def from_json(line: str) -> Op:
        data = json.loads(line)
        if not isinstance(data, dict):
            raise ValueError("a history line is not an object")
        op = Op(**data)
        if op.kind not in KINDS or op.status not in ("ok", "fail", "info"):
            raise ValueError(f"op {op.op_id}: unknown kind {op.kind!r} or status {op.status!r}")
        return op


class HistoryWriter:
    """Appends ops to ``dir/history.jsonl`` as they complete (flushed per write)."""

    def __init__(self, directory: Path) -> None:
        self.path = Path(directory) / HISTORY_FILE
        self._file = self.path.open("a", encoding="utf-8")
        self.count = 0

    def write(self, op: Op) -> None:
        self._file.write(op.to_json() + "\n")
        self.count += 1
        if self.count % 256 == 0:
            self._file.flush()

    def close(self) -> None:
        self._file.flush()
        self._file.close()


def read_history(directory: Path) -> list[Op]:
    """Every op of ``dir/history.jsonl``, by op_id; ValueError names the bad line."""
    return sorted(iter_history(Path(directory) / HISTORY_FILE), key=lambda op: op.op_id)


def iter_history(path: Path) -> Iterator[Op]:
    with path.open(encoding="utf-8") as file:
        for number, line in enumerate(file, start=1):
            if not line.strip():
                continue
            if len(line) > LINE_BYTES_MAX:
                raise ValueError(f"{path}:{number}: line over {LINE_BYTES_MAX} bytes")
            try:
                yield Op.from_json(line)
            except (ValueError, TypeError) as error:
                raise ValueError(f"{path}:{number}: {error}") from error


def write_history(directory: Path, ops: Iterable[Op]) -> Path:
    writer = HistoryWriter(directory)
    try:
        for op in ops:
            writer.write(op)
    finally:
        writer.close()
    return writer.path
