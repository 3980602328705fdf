"""Configuration of one Raft core: timing in ticks and a named bound on everything."""

from __future__ import annotations

from dataclasses import dataclass, field

from hongbao.raft.types import LogIndex, NodeId


@dataclass(frozen=True, slots=True)
class DeliberateBugs:
    """Test-only switches that break Raft on purpose, to prove the simulator can fail.

    Never set outside tests: each one is a real bug that loses or duplicates money.
    """

    commit_old_term_by_count: bool = False  # breaks raft-pitfalls 14 (Figure 8)
    vote_without_log_check: bool = False  # breaks raft-pitfalls 4
    ack_before_persist: bool = False  # breaks raft-pitfalls 2 (acted on by the runtime)

    @property
    def any(self) -> bool:
        return self.commit_old_term_by_count or self.vote_without_log_check or (
            self.ack_before_persist
        )


@dataclass(frozen=True, slots=True)
class RaftConfig:
    node_id: NodeId
    election_timeout_ticks: int = 10
    heartbeat_interval_ticks: int = 1
    pre_vote: bool = True
    check_quorum: bool = True
    # The state machine's applied index at start-up (it is durable with the state).
    applied_index: LogIndex = 0
    # Limits (TigerBeetle: a limit on everything).
    entries_per_message_max: int = 256
    message_size_bytes_max: int = 1 << 20
    inflight_messages_max: int = 64
    inflight_bytes_max: int = 16 << 20
    uncommitted_bytes_max: int = 64 << 20
    committed_bytes_per_ready_max: int = 8 << 20
    pending_reads_max: int = 4096
    bugs: DeliberateBugs = field(default_factory=DeliberateBugs)

    def validate(self) -> None:
        """Reject settings that cannot work, with a message that names the problem."""
        problems: list[str] = []
        if self.node_id <= 0:
            problems.append("node_id must be positive (0 means 'nobody')")
        if self.heartbeat_interval_ticks <= 0:
            problems.append("heartbeat_interval_ticks must be positive")
        if self.election_timeout_ticks <= self.heartbeat_interval_ticks:
            problems.append("election_timeout_ticks must exceed heartbeat_interval_ticks")
        for name in (
            "entries_per_message_max",
            "message_size_bytes_max",
            "inflight_messages_max",
            "inflight_bytes_max",
            "uncommitted_bytes_max",
            "committed_bytes_per_ready_max",
            "pending_reads_max",
        ):
            if getattr(self, name) <= 0:
                problems.append(f"{name} must be positive")
        if self.inflight_bytes_max < self.message_size_bytes_max:
            problems.append("inflight_bytes_max must be >= message_size_bytes_max")
        if self.applied_index < 0:
            problems.append("applied_index must be >= 0")
        if problems:
            raise ValueError("invalid raft config: " + "; ".join(problems))
