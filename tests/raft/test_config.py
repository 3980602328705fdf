"""RaftConfig refuses settings that cannot work, naming each problem."""

from __future__ import annotations

import pytest

from hongbao.raft.config import DeliberateBugs, RaftConfig
from hongbao.raft.types import NodeId


@pytest.mark.parametrize(
    ("overrides", "named"),
    [
        ({"node_id": NodeId(0)}, "node_id must be positive"),
        ({"heartbeat_interval_ticks": 0}, "heartbeat_interval_ticks must be positive"),
        ({"election_timeout_ticks": 5, "heartbeat_interval_ticks": 5},
         "election_timeout_ticks (5) must exceed heartbeat_interval_ticks (5)"),
        ({"election_timeout_ticks": 9, "heartbeat_interval_ticks": 5},
         "check_quorum needs election_timeout_ticks (9) >= 2 * heartbeat_interval_ticks (5)"),
        ({"inflight_messages_max": 0}, "inflight_messages_max must be positive, got 0"),
        ({"inflight_bytes_max": 0}, "inflight_bytes_max must be positive, got 0"),
        ({"entries_per_message_max": 0}, "entries_per_message_max must be positive"),
        ({"pending_reads_max": 0}, "pending_reads_max must be positive"),
        ({"pending_reads_max": 1 << 41}, "pending_reads_max must be <= 1099511627776"),
        ({"uncommitted_bytes_max": -1}, "uncommitted_bytes_max must be positive"),
        ({"message_size_bytes_max": 4 << 20, "inflight_bytes_max": 1 << 20},
         "inflight_bytes_max (1048576) must be >= message_size_bytes_max (4194304)"),
        ({"applied_index": -1}, "applied_index must be >= 0"),
        ({"pending_reads_max": True}, "pending_reads_max must be an integer, got True"),
        ({"election_timeout_ticks": 10.5}, "election_timeout_ticks must be an integer, got 10.5"),
    ],
)
def test_a_setting_that_cannot_work_is_refused_by_name(
    overrides: dict[str, object], named: str
) -> None:
    options: dict[str, object] = {"node_id": NodeId(1), **overrides}
    config = RaftConfig(**options)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="invalid raft config") as refused:
        config.validate()
    assert named in str(refused.value)


def test_every_problem_is_named_at_once() -> None:
    config = RaftConfig(node_id=NodeId(1), inflight_messages_max=0, pending_reads_max=0)
    with pytest.raises(ValueError, match="invalid raft config") as refused:
        config.validate()
    assert "inflight_messages_max" in str(refused.value)
    assert "pending_reads_max" in str(refused.value)


@pytest.mark.parametrize(
    "overrides",
    [
        {},  # the defaults
        {"pending_reads_max": 1, "inflight_messages_max": 1, "entries_per_message_max": 1},
        {"pre_vote": False, "check_quorum": False, "election_timeout_ticks": 2},
        {"election_timeout_ticks": 30, "heartbeat_interval_ticks": 5},  # configs/local.toml
    ],
)
def test_small_and_unusual_settings_that_work_are_accepted(overrides: dict[str, object]) -> None:
    RaftConfig(node_id=NodeId(1), **overrides).validate()  # type: ignore[arg-type]


def test_any_deliberate_bug_is_seen() -> None:
    assert not DeliberateBugs().any
    assert DeliberateBugs(stale_vote_unanswered=True).any
    assert DeliberateBugs(requeue_reads_unchecked=True).any
