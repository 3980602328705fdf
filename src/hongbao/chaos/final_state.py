"""What a chaos run read from the cluster after healing: the state the checks judge.

Why a file of its own: ``hongbao chaos check REPORT_DIR`` re-analyses a stored run
without a cluster, so everything the checks need is collected once, after the faults
are healed and the cluster is quiet, and kept in ``final_state.json`` beside the
history. ``chaos.collect`` fills it; ``chaos.checks`` reads it; nothing else writes it.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Final, Literal

FINAL_STATE_FILE: Final = "final_state.json"
Outcome = Literal["applied", "not_applied", "unknown"]


@dataclass(slots=True)
class Posting:
    """One line of a wallet's journal (ledger.proto Posting; kind without its prefix)."""

    seq: int
    kind: str  # "DEPOSIT", "WITHDRAW", "TRANSFER_OUT", "TRANSFER_IN", "ENVELOPE_SEND", ...
    amount_fen: int  # signed: positive credits the wallet
    balance_fen: int  # after this posting
    counterparty: str
    ref: str  # a request id, an envelope id or an outbox entry


@dataclass(slots=True)
class Wallet:
    balance_fen: int
    postings: list[Posting]  # oldest first, the whole journal


@dataclass(slots=True)
class EnvelopeGrab:
    ordinal: int
    user: str
    amount_fen: int


@dataclass(slots=True)
class Envelope:
    sender: str
    kind: str  # "LUCKY" or "FIXED"
    total_fen: int
    count: int
    state: str  # "OPEN", "EMPTY" or "EXPIRED"
    remaining_fen: int
    remaining_count: int
    refunded_fen: int
    grabs: list[EnvelopeGrab]


@dataclass(slots=True)
class RequestStatus:
    """The answer of ``RequestStatus`` for one request id the history left ``info``."""

    outcome: Outcome  # "unknown": the cluster could not be asked (counts as a failure)
    # applied: the first answer's fields as in history.Op.result, or {"reason": NAME}
    # when that first answer was a refusal.
    result: dict[str, object] = field(default_factory=dict)


@dataclass(slots=True)
class ShardTotals:
    """One shard's live audit (Admin.ShardAudit at its leader)."""

    balances_fen: int
    escrow_fen: int
    deposits_fen: int
    withdrawals_fen: int
    outbox_entries: int
    outbox_fen: int
    negative_balances: int
    problems: list[str]


@dataclass(slots=True)
class FinalState:
    wallets: dict[str, Wallet]  # every user the workload touched
    envelopes: dict[str, Envelope]  # every envelope a send acknowledged or resolved
    request_status: dict[str, RequestStatus]  # request id -> its resolution
    shards: dict[int, ShardTotals]  # every shard's audit, after quiet
    quiet: bool  # the outboxes drained and the replicas caught up before collection
    # The offline audit of every replica after the cluster stopped (ops.audit): ok when
    # the replicas of every shard are identical and every shard's books balance.
    replicas_ok: bool | None = None
    replicas_report: str = ""
    collected_at_s: float = 0.0  # seconds since the run's start
    notes: list[str] = field(default_factory=list)  # what could not be read, and why
    # What the collector could not read in all its passes, by kind ("statuses",
    # "wallets", "envelopes", "shards"): only nonzero counts; empty when complete.
    unread: dict[str, int] = field(default_factory=dict)

    def unread_summary(self) -> str:
        """'' when everything was read, else e.g. '12 wallets, 3 statuses unread'."""
        parts = [f"{count} {kind}" for kind, count in self.unread.items() if count]
        return f"{', '.join(parts)} unread" if parts else ""

    def save(self, directory: Path) -> Path:
        path = Path(directory) / FINAL_STATE_FILE
        path.write_text(json.dumps(asdict(self), indent=1, sort_keys=True) + "\n")
        return path

    @staticmethod
    def load(directory: Path) -> FinalState:
        data = json.loads((Path(directory) / FINAL_STATE_FILE).read_text())
        return FinalState(
            wallets={
                user: Wallet(w["balance_fen"], [Posting(**p) for p in w["postings"]])
                for user, w in data["wallets"].items()
            },
            envelopes={
                eid: Envelope(**{**e, "grabs": [EnvelopeGrab(**g) for g in e["grabs"]]})
                for eid, e in data["envelopes"].items()
            },
            request_status={rid: RequestStatus(**r) for rid, r in data["request_status"].items()},
            shards={int(s): ShardTotals(**t) for s, t in data["shards"].items()},
            quiet=data["quiet"],
            replicas_ok=data.get("replicas_ok"),
            replicas_report=data.get("replicas_report", ""),
            collected_at_s=data.get("collected_at_s", 0.0),
            notes=list(data.get("notes", [])),
            unread={str(k): int(v) for k, v in data.get("unread", {}).items()},
        )
