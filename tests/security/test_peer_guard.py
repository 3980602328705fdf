"""The per-message rules of ``peer_guard``, one by one, against a core's view of a shard.

In-process and fast: each rule is shown to refuse its probe and to let the real traffic
through. The multi-process versions are in test_peer_probes.py.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field, replace

import pytest

from hongbao.ledger import machine
from hongbao.ledger.store import MemoryStore
from hongbao.node.peer_guard import (
    INDEX_MAX,
    LOG_BURST,
    REFUSAL_KEYS_MAX,
    TERM_MAX,
    PeerGuard,
    Refusal,
    RefusalLog,
    snapshot_problem,
    step_checked,
)
from hongbao.node.transport import PeerSender, TransportLimits
from hongbao.raft.types import (
    ConfState,
    Entry,
    Message,
    MessageType,
    NodeId,
    Role,
    Snapshot,
    SnapshotMeta,
)

MT = MessageType
ME, LEADER, OTHER = 1, 2, 3
LEASE_MS = 300


@dataclass
class FakeCore:
    term: int = 5
    role: Role = Role.FOLLOWER
    leader_id: int = LEADER
    conf_state: ConfState = field(
        default_factory=lambda: ConfState(voters=frozenset(NodeId(n) for n in (1, 2, 3)))
    )
    stepped: list[Message] = field(default_factory=list)

    def step(self, message: Message) -> None:
        if message.context == b"boom":
            raise AssertionError("a core bug")
        self.stepped.append(message)


class Clock:
    def __init__(self) -> None:
        self.now_ms = 1_000.0

    def __call__(self) -> float:
        return self.now_ms


def guard_for(
    core: FakeCore, clock: Clock | None = None, nodes: frozenset[int] = frozenset()
) -> PeerGuard:
    return PeerGuard(
        node_id=ME,
        cores=lambda shard_id: core if shard_id == 0 else None,
        election_timeout_ms=LEASE_MS,
        refusals=RefusalLog(),
        clock_ms=clock or Clock(),
        nodes=nodes,
    )


def msg(kind: MessageType, *, from_: int = LEADER, term: int = 5, **fields: object) -> Message:
    return Message(type=kind, to=NodeId(ME), from_=NodeId(from_), term=term, **fields)  # type: ignore[arg-type]


def reason(
    guard: PeerGuard, sender: int, message: Message, shard_id: int = 0, **kw: bool
) -> Refusal | None:
    verdict = guard.check(sender, shard_id, message, **kw)
    return None if verdict is None else verdict.reason


def test_real_traffic_passes() -> None:
    guard = guard_for(FakeCore())
    entries = (Entry(term=5, index=11, data=b"x"), Entry(term=5, index=12))
    assert (
        reason(guard, LEADER, msg(MT.APP, index=10, log_term=4, entries=entries, commit=9)) is None
    )
    assert reason(guard, LEADER, msg(MT.HEARTBEAT, commit=12)) is None
    assert reason(guard, LEADER, msg(MT.TIMEOUT_NOW)) is None
    assert reason(guard, OTHER, msg(MT.VOTE, from_=OTHER, term=6, index=12, log_term=5)) is None


@pytest.mark.parametrize(
    "kind",
    [MT.HUP, MT.BEAT, MT.CHECK_QUORUM, MT.PROP, MT.SNAP_STATUS, MT.UNREACHABLE, MT.TRANSFER_LEADER],
)
def test_local_message_types_are_refused(kind: MessageType) -> None:
    assert reason(guard_for(FakeCore()), LEADER, msg(kind)) is Refusal.LOCAL_TYPE


def test_who_sends_to_whom_for_which_shard() -> None:
    guard = guard_for(FakeCore())
    assert reason(guard, LEADER, msg(MT.HEARTBEAT, from_=99)) is Refusal.SENDER_MISMATCH
    assert reason(guard, 99, msg(MT.HEARTBEAT, from_=99)) is Refusal.NOT_A_MEMBER
    wrong_to = replace(msg(MT.HEARTBEAT), to=NodeId(OTHER))
    assert reason(guard, LEADER, wrong_to) is Refusal.RECIPIENT_MISMATCH
    assert reason(guard, LEADER, msg(MT.HEARTBEAT), shard_id=7) is Refusal.SHARD_NOT_HOSTED


@pytest.mark.parametrize("name", ["term", "log_term", "index", "commit", "reject_hint"])
def test_terms_and_indexes_leave_room_to_count(name: str) -> None:
    guard = guard_for(FakeCore(role=Role.CANDIDATE, leader_id=0))
    bound = TERM_MAX if "term" in name else INDEX_MAX
    kind = MT.APP_RESP
    assert reason(guard, LEADER, msg(kind, **{name: bound})) is Refusal.OUT_OF_BOUNDS
    assert reason(guard, LEADER, msg(kind, **{name: 2**64 - 1})) is Refusal.OUT_OF_BOUNDS
    assert reason(guard, LEADER, msg(kind, **{name: 7})) is None


def test_entries_must_follow_the_append() -> None:
    guard = guard_for(FakeCore())
    gap = (Entry(term=5, index=12),)
    assert reason(guard, LEADER, msg(MT.APP, index=10, entries=gap)) is Refusal.MALFORMED_ENTRIES
    future = (Entry(term=6, index=11),)
    assert reason(guard, LEADER, msg(MT.APP, index=10, entries=future)) is Refusal.MALFORMED_ENTRIES
    backwards = (Entry(term=5, index=11), Entry(term=4, index=12))
    assert reason(guard, LEADER, msg(MT.APP, index=10, log_term=4, entries=backwards)) is (
        Refusal.MALFORMED_ENTRIES
    )
    stray = (Entry(term=5, index=11),)
    assert reason(guard, LEADER, msg(MT.HEARTBEAT, index=10, entries=stray)) is (
        Refusal.MALFORMED_ENTRIES
    )


def test_a_snap_comes_only_whole_from_the_chunks() -> None:
    guard = guard_for(FakeCore())
    snapshot = Snapshot(SnapshotMeta(index=20, term=5, conf_state=FakeCore().conf_state), b"")
    assert reason(guard, LEADER, msg(MT.SNAP)) is Refusal.SNAP_NOT_CHUNKED
    assert reason(guard, LEADER, msg(MT.SNAP, snapshot=snapshot)) is Refusal.SNAP_NOT_CHUNKED
    assert reason(guard, LEADER, msg(MT.SNAP), chunked=True) is Refusal.SNAP_NOT_CHUNKED
    assert reason(guard, LEADER, msg(MT.SNAP, snapshot=snapshot), chunked=True) is None


def test_only_the_known_leader_of_the_term_appends() -> None:
    guard = guard_for(FakeCore())
    for kind in (MT.APP, MT.HEARTBEAT, MT.TIMEOUT_NOW):
        assert reason(guard, OTHER, msg(kind, from_=OTHER)) is Refusal.NOT_THE_LEADER
    unknown = guard_for(FakeCore(leader_id=0))  # just voted: the first append names him
    assert reason(unknown, OTHER, msg(MT.APP, from_=OTHER)) is None
    assert reason(unknown, OTHER, msg(MT.TIMEOUT_NOW, from_=OTHER)) is Refusal.NOT_THE_LEADER
    leader = guard_for(FakeCore(role=Role.LEADER, leader_id=ME))
    assert reason(leader, OTHER, msg(MT.APP, from_=OTHER)) is Refusal.NOT_THE_LEADER
    assert reason(guard, LEADER, msg(MT.TIMEOUT_NOW, term=6)) is Refusal.NOT_THE_LEADER


def test_a_follower_in_its_lease_refuses_higher_terms() -> None:
    clock = Clock()
    guard = guard_for(FakeCore(), clock)
    assert reason(guard, LEADER, msg(MT.HEARTBEAT)) is None  # the lease starts
    for kind in (MT.APP, MT.HEARTBEAT, MT.APP_RESP):
        assert reason(guard, OTHER, msg(kind, from_=OTHER, term=6)) is Refusal.LEASE_HELD
    snapshot = Snapshot(SnapshotMeta(index=20, term=6, conf_state=FakeCore().conf_state), b"")
    forged_snap = msg(MT.SNAP, from_=OTHER, term=6, snapshot=snapshot)
    assert reason(guard, OTHER, forged_snap, chunked=True) is Refusal.LEASE_HELD
    assert reason(guard, OTHER, msg(MT.VOTE, from_=OTHER, term=6)) is None  # the core's rule
    clock.now_ms += LEASE_MS  # the leader went quiet for an election timeout
    assert reason(guard, OTHER, msg(MT.APP, from_=OTHER, term=6)) is None


def test_a_leader_that_heard_a_quorum_refuses_higher_terms() -> None:
    clock = Clock()
    guard = guard_for(FakeCore(role=Role.LEADER, leader_id=ME), clock)
    assert reason(guard, OTHER, msg(MT.HEARTBEAT, from_=OTHER, term=6)) is None  # no lease yet
    assert reason(guard, LEADER, msg(MT.APP_RESP, index=3)) is None  # a quorum: 1 and 2
    assert reason(guard, OTHER, msg(MT.APP_RESP, from_=OTHER, index=3)) is None  # all three
    assert reason(guard, OTHER, msg(MT.HEARTBEAT, from_=OTHER, term=6)) is Refusal.LEASE_HELD
    # OTHER answers at term 5 and was heard just now: a term-6 answer "from" it is forged.
    assert reason(guard, OTHER, msg(MT.APP_RESP, from_=OTHER, term=6)) is Refusal.LEASE_HELD
    clock.now_ms += LEASE_MS
    assert reason(guard, OTHER, msg(MT.APP_RESP, from_=OTHER, term=6)) is None


def test_a_leader_steps_down_for_a_voter_stranded_at_a_higher_term() -> None:
    """A follower that moved to term 6 (it voted in an election that failed) answers the
    term-5 leader's appends from term 6 and is never heard at term 5 again. The leader
    keeps its lease through the other voter, yet must let that answer through (the core
    then steps down and a new election takes the follower back): refusing it left a chaos
    run's replica thousands of entries behind until the end."""
    clock = Clock()
    guard = guard_for(FakeCore(role=Role.LEADER, leader_id=ME), clock)
    assert reason(guard, OTHER, msg(MT.APP_RESP, from_=OTHER, index=3)) is None  # at term 5
    clock.now_ms += LEASE_MS  # then OTHER moved on to term 6
    assert reason(guard, LEADER, msg(MT.APP_RESP, index=4)) is None  # the lease holds: 1, 2
    assert reason(guard, OTHER, msg(MT.APP_RESP, from_=OTHER, term=6)) is None
    # Only an answer to the leader's appends: other kinds stay refused in the lease.
    assert reason(guard, OTHER, msg(MT.HEARTBEAT, from_=OTHER, term=6)) is Refusal.LEASE_HELD
    assert reason(guard, OTHER, msg(MT.HEARTBEAT_RESP, from_=OTHER, term=6)) is (
        Refusal.LEASE_HELD
    )
    # And a follower in its lease still refuses a higher-term answer (it sent no append).
    follower = guard_for(FakeCore(), clock)
    assert reason(follower, LEADER, msg(MT.HEARTBEAT)) is None
    assert reason(follower, OTHER, msg(MT.APP_RESP, from_=OTHER, term=6)) is Refusal.LEASE_HELD


def test_a_topology_node_outside_the_membership_may_lead_this_replica_but_not_vote() -> None:
    """A replica behind a membership change knows the old members only; its new leader,
    a node added since, reaches it with appends and heartbeats (the simulator's seeds 14,
    64, 230 and 250 left such a replica refusing that leader for good). Votes and answers
    from a non-member stay refused, and so does anything from a node outside the topology."""
    topology = frozenset({1, 2, 3, 4, 5})
    guard = guard_for(FakeCore(leader_id=0), nodes=topology)
    assert reason(guard, 5, msg(MT.APP, from_=5, index=10, log_term=5)) is None
    assert reason(guard, 5, msg(MT.HEARTBEAT, from_=5, commit=10)) is None
    assert guard.staging_problem(5, 0) is None  # a snapshot from it may be staged
    assert reason(guard, 5, msg(MT.VOTE, from_=5, term=6, index=12, log_term=5)) is (
        Refusal.NOT_A_MEMBER
    )
    assert reason(guard, 5, msg(MT.APP_RESP, from_=5, index=3)) is Refusal.NOT_A_MEMBER
    assert reason(guard, 99, msg(MT.HEARTBEAT, from_=99)) is Refusal.NOT_A_MEMBER
    assert guard.staging_problem(99, 0) is not None
    # The leadership rules hold for it as for a member: node 2 leads term 5 here.
    led = guard_for(FakeCore(), nodes=topology)
    assert reason(led, 5, msg(MT.APP, from_=5, index=10, log_term=5)) is Refusal.NOT_THE_LEADER
    # Without the topology the guard is strict: members only.
    strict = guard_for(FakeCore(leader_id=0))
    assert reason(strict, 5, msg(MT.HEARTBEAT, from_=5)) is Refusal.NOT_A_MEMBER
    assert strict.staging_problem(5, 0) is not None


def test_refusals_are_counted_per_reason_and_sender_and_logged_rate_limited(
    caplog: pytest.LogCaptureFixture,
) -> None:
    guard = guard_for(FakeCore())
    with caplog.at_level(logging.WARNING, logger="hongbao.node.peer_guard"):
        for _ in range(LOG_BURST + 30):
            assert not guard.admit(LEADER, 0, msg(MT.HUP))
        assert not guard.admit(OTHER, 0, msg(MT.HUP, from_=OTHER))
    assert guard.log.refusals[("local_type", LEADER)] == LOG_BURST + 30
    assert guard.log.refusals[("local_type", OTHER)] == 1
    assert guard.log.count(Refusal.LOCAL_TYPE) == LOG_BURST + 31
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == LOG_BURST + 1  # the flood costs its burst, the other sender one line
    assert all("refused from node" in line for line in lines)


def _ledger_snapshot(shard_id: int, index: int) -> bytes:
    store = MemoryStore()
    machine.init_shard(store, shard_id=shard_id, shard_count=4)
    machine.set_applied_index(store, index)
    return machine.dump(store)


def _snap(data: bytes, index: int) -> Message:
    meta = SnapshotMeta(index=index, term=5, conf_state=FakeCore().conf_state)
    return msg(MT.SNAP, snapshot=Snapshot(meta, data))


def test_snapshot_data_must_be_this_shards_ledger_at_its_index() -> None:
    good = _ledger_snapshot(shard_id=0, index=9)
    assert snapshot_problem(0, _snap(good, 9)) is None
    assert "not a ledger snapshot" in (snapshot_problem(0, _snap(b"\x00" * 64, 9)) or "")
    assert "shard 1" in (snapshot_problem(0, _snap(_ledger_snapshot(1, 9), 9)) or "")
    assert "index 9" in (snapshot_problem(0, _snap(good, 10)) or "")
    flipped = good[:20] + bytes([good[20] ^ 1]) + good[21:]
    assert snapshot_problem(0, _snap(flipped, 9)) is not None
    assert snapshot_problem(0, msg(MT.SNAP)) is not None


def test_the_runtime_steps_only_good_snapshots_and_survives_a_failing_core() -> None:
    core, refusals = FakeCore(), RefusalLog()
    step_checked(core, 0, _snap(b"garbage", 9), refusals)
    step_checked(core, 0, msg(MT.HEARTBEAT, context=b"boom"), refusals)
    good = _snap(_ledger_snapshot(0, 9), 9)
    step_checked(core, 0, good, refusals)
    assert core.stepped == [good]
    assert refusals.count(Refusal.BAD_SNAPSHOT) == 1
    assert refusals.count(Refusal.STEP_FAILED) == 1


def test_a_message_that_does_not_encode_is_dropped_loudly_not_the_stream(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The term 2^64 - 1 probe: the next term does not fit the wire's uint64."""

    class Events:
        def deliver(self, shard_id: int, message: Message) -> None: ...
        def unreachable(self, peer_id: int) -> None: ...

        def heard(self, peer_id: int) -> None: ...
        def snapshot_done(self, shard_id: int, peer_id: int, *, ok: bool) -> None: ...

    sender = PeerSender(
        node_id=ME,
        peer_id=LEADER,
        address="127.0.0.1:1",
        cluster_id="c",
        limits=TransportLimits(),
        events=Events(),
    )
    too_big = replace(msg(MT.HEARTBEAT_RESP), term=2**64)
    fine = msg(MT.HEARTBEAT_RESP)
    with caplog.at_level(logging.WARNING, logger="hongbao.node.transport"):
        batch = sender._batch([(0, too_big), (1, fine)], ())
    assert [m.shard_id for m in batch.messages] == [1]
    assert sender.unencodable_messages == 1
    assert any("does not encode" in r.getMessage() for r in caplog.records)


def test_refusal_counters_stay_bounded_whatever_ids_are_claimed() -> None:
    refusals = RefusalLog()
    with_logging_off = logging.getLogger("hongbao.node.peer_guard")
    level = with_logging_off.level
    with_logging_off.setLevel(logging.CRITICAL)
    try:
        for claimed in range(REFUSAL_KEYS_MAX + 500):
            refusals.refuse(Refusal.UNKNOWN_NODE, claimed + 1, "forged")
    finally:
        with_logging_off.setLevel(level)
    assert len(refusals.refusals) == REFUSAL_KEYS_MAX + 1
    assert refusals.refusals[("unknown_node", 0)] == 500
    assert refusals.count() == REFUSAL_KEYS_MAX + 500
