"""Configuration of one Raft core: timing in ticks and a named bound on everything."""

from __future__ import annotations

from dataclasses import dataclass, field, fields

from hongbao.raft.types import LogIndex, NodeId


@dataclass(frozen=True, slots=True)
class DeliberateBugs:
    """Test-only switches that break Raft on purpose, to prove the simulator can fail.

    Never set outside tests: each one is a real bug that loses or duplicates money.
    """

    commit_old_term_by_count: bool = False  # breaks raft-pitfalls 14 (Figure 8)
    vote_without_log_check: bool = False  # breaks raft-pitfalls 4
    ack_before_persist: bool = False  # breaks raft-pitfalls 2 (acted on by the runtime)
    # The four fixes of issue 6, each reverted (so the simulator can show it finds them).
    requeue_reads_unchecked: bool = False  # deferred reads re-queued past pending_reads_max
    leader_removes_itself_from_two: bool = False  # a two-voter group can lose its leader
    conf_state_from_unapplied_snapshot: bool = False  # applied_conf_state before the Ready
    stale_vote_unanswered: bool = False  # a VOTE of an older term gets no answer
    # Issue 7: the two halves of campaign gating, each broken.
    campaign_while_draining: bool = False  # set_campaign_allowed(False) is ignored (#66103)
    no_campaign_fallback: bool = False  # a draining replica never campaigns: no liveness

    @property
    def any(self) -> bool:
        return any(getattr(self, f.name) for f in fields(self))


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
    # While campaigning is not allowed (set_campaign_allowed(False): a draining region), a
    # replica still campaigns after this many consecutive election timeouts without hearing
    # any leader: it may be the only replica able to lead (liveness beats placement).
    campaign_fallback_timeouts: int = 3
    # Quiescence (CockroachDB): an idle, fully replicated group stops heartbeating; the
    # runtime's node-level liveness wakes it when a node it depends on falls silent.
    quiesce: bool = False
    bugs: DeliberateBugs = field(default_factory=DeliberateBugs)

    def validate(self) -> None:
        """Reject settings that cannot work, with a message that names the problem.

        Why each: a bool or a float where a count belongs is a typo in a config file
        (``True`` would pass ``> 0``); a window, batch or queue of 0 stops the group (the
        leader could never send, or never accept a read); a follower's election timeout
        at or below the heartbeat interval fires between two heartbeats of a healthy
        leader; with CheckQuorum a leader needs a whole heartbeat round trip inside one
        election timeout, or it steps down from a healthy group (pitfall 8).
        """
        problems: list[str] = []
        for name in _COUNT_FIELDS:
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int):
                problems.append(f"{name} must be an integer, got {value!r}")
        if problems:
            raise ValueError("invalid raft config: " + "; ".join(problems))
        if self.node_id <= 0:
            problems.append("node_id must be positive (0 means 'nobody')")
        if self.heartbeat_interval_ticks <= 0:
            problems.append("heartbeat_interval_ticks must be positive")
        if self.election_timeout_ticks <= self.heartbeat_interval_ticks:
            problems.append(
                f"election_timeout_ticks ({self.election_timeout_ticks}) must exceed "
                f"heartbeat_interval_ticks ({self.heartbeat_interval_ticks})"
            )
        elif self.check_quorum and self.election_timeout_ticks < 2 * (
            self.heartbeat_interval_ticks
        ):
            problems.append(
                f"check_quorum needs election_timeout_ticks ({self.election_timeout_ticks}) "
                f">= 2 * heartbeat_interval_ticks ({self.heartbeat_interval_ticks}), or a "
                "healthy leader steps down between heartbeats"
            )
        for name in _LIMIT_FIELDS:
            value = getattr(self, name)
            if value <= 0:
                problems.append(f"{name} must be positive, got {value}")
            elif value > _LIMIT_MAX:
                problems.append(f"{name} must be <= {_LIMIT_MAX}, got {value}")
        if self.inflight_bytes_max < self.message_size_bytes_max:
            problems.append(
                f"inflight_bytes_max ({self.inflight_bytes_max}) must be >= "
                f"message_size_bytes_max ({self.message_size_bytes_max}): a full message "
                "would never fit in the window"
            )
        if self.applied_index < 0:
            problems.append("applied_index must be >= 0")
        if not 1 <= self.campaign_fallback_timeouts <= _FALLBACK_TIMEOUTS_MAX:
            problems.append(
                f"campaign_fallback_timeouts must be in [1, {_FALLBACK_TIMEOUTS_MAX}], got "
                f"{self.campaign_fallback_timeouts} (0 would make a draining replica campaign "
                "at once; a huge value would leave a group leaderless for that long)"
            )
        if problems:
            raise ValueError("invalid raft config: " + "; ".join(problems))


# Every limit is a count or a size: positive, and bounded so a typo cannot mean "unbounded".
_LIMIT_FIELDS = (
    "entries_per_message_max",
    "message_size_bytes_max",
    "inflight_messages_max",
    "inflight_bytes_max",
    "uncommitted_bytes_max",
    "committed_bytes_per_ready_max",
    "pending_reads_max",
)
_LIMIT_MAX = 1 << 40
_FALLBACK_TIMEOUTS_MAX = 1000
_COUNT_FIELDS = (
    "node_id",
    "election_timeout_ticks",
    "heartbeat_interval_ticks",
    "applied_index",
    "campaign_fallback_timeouts",
    *_LIMIT_FIELDS,
)
