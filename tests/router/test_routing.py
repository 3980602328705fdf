"""The routing rules shared by the router and the SDK (hongbao.client.routing), in-process."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import pytest

from hongbao.client.routing import (
    FAILURES_SUSPECT,
    CallFailed,
    Deadline,
    HealthBook,
    NodeHealth,
    Outcome,
    RetryPolicy,
    Routing,
    run_call,
)
from hongbao.config.routers import RouterSettings
from hongbao.config.topology import Topology, parse_topology
from hongbao.ledger.sharding import shard_for_user
from hongbao.meta.state import ClusterState, RegionState, SetRegion, apply_set_region
from hongbao.node.errors import ErrorReason, HongbaoError, LeaderHint, make_error

REGIONS = ("shenzhen", "shanghai", "tianjin")


def three_nodes() -> Topology:
    return parse_topology(
        {
            "shard_count": 6,
            "replication_factor": 3,
            "regions": [{"name": name} for name in REGIONS],
            "nodes": [
                {"id": i + 1, "region": name, "host": "127.0.0.1", "port": 7100 + i}
                for i, name in enumerate(REGIONS)
            ],
        }
    )


class Clock:
    def __init__(self) -> None:
        self.now_ms = 1_000.0

    def __call__(self) -> float:
        return self.now_ms


SETTINGS = RouterSettings(suspect_after_ms=1_000, down_after_ms=3_000)


def routing(region: str | None = None, clock: Clock | None = None) -> Routing:
    return Routing(three_nodes(), SETTINGS, region=region, clock_ms=clock)


def not_leader(hint: int = 0) -> HongbaoError:
    return make_error(ErrorReason.NOT_LEADER, "not the leader", leader_hint=LeaderHint(hint))


def unreachable() -> HongbaoError:
    return make_error(ErrorReason.UNAVAILABLE, "connection refused", server_reported=False)


def draining(region: str) -> ClusterState:
    state = ClusterState.initial("c", REGIONS)
    return apply_set_region(state, SetRegion(region, RegionState.DRAINING))


# -- keys and leaders ------------------------------------------------------------------------


def test_keys_map_to_the_ledgers_shards() -> None:
    r = routing()
    assert r.user_shard("alice") == shard_for_user("alice", 6)
    assert r.envelope_shard("e5-17") == 5
    with pytest.raises(HongbaoError) as bad:
        r.envelope_shard("nonsense")
    assert bad.value.reason is ErrorReason.MALFORMED_ID
    with pytest.raises(HongbaoError) as missing:
        r.envelope_shard("e6-1")
    assert missing.value.reason is ErrorReason.NOT_FOUND


def test_the_home_leader_is_the_first_guess_then_the_other_replicas() -> None:
    r = routing()
    topology = r.topology
    for shard_id in range(topology.shard_count):
        order = r.candidates(shard_id)
        assert order[0] == topology.home_leader_of(shard_id)
        assert sorted(order) == sorted(int(n) for n in topology.replicas_of(shard_id))


def test_a_not_leader_hint_is_learnt_and_a_stranger_is_not() -> None:
    r = routing()
    first = r.leader_guess(0)
    other = next(n for n in r.candidates(0) if n != first)
    r.learn(0, not_leader(other), first)
    assert r.leader_guess(0) == other
    r.learn(0, not_leader(99), other)  # no such replica: the guess moves on, not to 99
    assert r.leader_guess(0) not in (99, other)


def test_without_a_hint_the_guess_moves_to_the_next_replica() -> None:
    r = routing()
    first = r.leader_guess(1)
    r.learn(1, not_leader(0), first)
    assert r.leader_guess(1) != first


# -- health ----------------------------------------------------------------------------------


def test_health_goes_suspect_then_down_by_the_thresholds_since_the_last_answer() -> None:
    clock = Clock()
    book = HealthBook(SETTINGS, clock)
    book.answered(1)
    book.failed(1)
    assert book.health_of(1) is NodeHealth.UP  # one lost call is not yet a pattern
    clock.now_ms += 1_000
    assert book.health_of(1) is NodeHealth.SUSPECT
    clock.now_ms += 2_000
    assert book.health_of(1) is NodeHealth.DOWN
    book.answered(1)
    assert book.health_of(1) is NodeHealth.UP


def test_consecutive_failures_make_a_node_suspect_before_the_threshold() -> None:
    book = HealthBook(SETTINGS, Clock())
    for _ in range(FAILURES_SUSPECT):
        book.failed(2)
    assert book.health_of(2) is NodeHealth.SUSPECT
    assert book.health_of(3) is NodeHealth.UP  # never seen: innocent


def test_down_nodes_are_guessed_last() -> None:
    clock = Clock()
    r = routing(clock=clock)
    leader = r.leader_guess(0)
    others = [n for n in r.candidates(0) if n != leader]
    r.health.failed(others[0])
    clock.now_ms += 5_000
    assert r.health.health_of(others[0]) is NodeHealth.DOWN
    assert r.candidates(0) == [leader, others[1], others[0]]


# -- the cluster state -----------------------------------------------------------------------


def test_a_draining_region_is_never_guessed() -> None:
    r = routing()
    r.cluster_state = draining("shanghai")  # node 2
    for shard_id in range(6):
        if r.leader_guess(shard_id) != 2:
            assert 2 not in r.candidates(shard_id)


def test_a_leader_known_to_be_in_a_draining_region_is_still_tried_first() -> None:
    """During a drain's transfer only that leader can serve a write; it hands the request
    on with a NOT_LEADER hint once the transfer lands."""
    r = routing()
    shard_id = next(s for s in range(6) if r.leader_guess(s) == 2)
    r.cluster_state = draining("shanghai")
    assert r.candidates(shard_id)[0] == 2
    r.learn(shard_id, not_leader(0), 2)  # it gave up leadership, no successor named yet
    assert r.leader_guess(shard_id) != 2
    assert 2 not in r.candidates(shard_id)


def test_stale_reads_prefer_the_own_region_but_never_a_draining_or_down_one() -> None:
    clock = Clock()
    r = routing(region="tianjin", clock=clock)
    for shard_id in range(6):
        assert r.candidates(shard_id, stale_ok=True)[0] == 3
    r.health.failed(3)
    clock.now_ms += 5_000
    assert r.candidates(0, stale_ok=True)[0] != 3
    r.health.answered(3)
    r.cluster_state = draining("tianjin")
    assert 3 not in r.candidates(0, stale_ok=True)


# -- retries, outcome and the call loop ------------------------------------------------------


def test_back_off_doubles_and_is_capped() -> None:
    policy = RetryPolicy(attempts_max=5, backoff_ms_min=20, backoff_ms_max=500)
    assert [policy.backoff_ms(n) for n in range(7)] == [20, 40, 80, 160, 320, 500, 500]


def test_once_maybe_applied_the_outcome_stays_unknown() -> None:
    outcome = Outcome()
    outcome.failed(make_error(ErrorReason.OUTCOME_UNKNOWN, "deadline"))
    outcome.failed(not_leader(2))
    assert outcome.final().reason is ErrorReason.OUTCOME_UNKNOWN
    fresh = Outcome()
    fresh.failed(not_leader(2))
    assert fresh.final().reason is ErrorReason.NOT_LEADER
    assert Outcome().final().reason is ErrorReason.UNAVAILABLE


class Script:
    """A fake attempt: per node, what it answers (an exception or a value)."""

    def __init__(self, answers: dict[int, list[object]]) -> None:
        self.answers = answers
        self.calls: list[int] = []

    def __call__(self, node_id: int, timeout_s: float) -> Awaitable[str]:
        assert timeout_s > 0
        self.calls.append(node_id)
        queue = self.answers.get(node_id, [])
        answer = queue.pop(0) if len(queue) > 1 else (queue[0] if queue else unreachable())

        async def run() -> str:
            if isinstance(answer, BaseException):
                raise answer
            return str(answer)

        return run()


@pytest.fixture
def sleeps(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """Back-offs taken, instead of waiting them out."""
    taken: list[float] = []
    real_sleep = asyncio.sleep

    async def fake_sleep(delay: float) -> None:
        taken.append(delay)
        await real_sleep(0)

    monkeypatch.setattr("hongbao.client.routing.asyncio.sleep", fake_sleep)
    return taken


def call(r: Routing, shard_id: int, attempt: Callable[[int, float], Awaitable[str]],
         attempts_max: int = 6, stale_ok: bool = False) -> str:  # fmt: skip
    return asyncio.run(
        run_call(
            r,
            shard_id,
            attempt,
            deadline=Deadline(10_000),
            policy=RetryPolicy(attempts_max=attempts_max),
            forward_timeout_ms=1_000,
            stale_ok=stale_ok,
        )
    )


def test_a_hint_is_followed_at_once(sleeps: list[float]) -> None:
    r = routing()
    first = r.leader_guess(0)
    target = next(n for n in r.candidates(0) if n != first)
    script = Script({first: [not_leader(target)], target: ["ok"]})
    assert call(r, 0, script) == "ok"
    assert script.calls == [first, target]
    assert sleeps == []
    assert r.leader_guess(0) == target


def test_a_node_that_does_not_answer_is_replaced_at_once(sleeps: list[float]) -> None:
    r = routing()
    first = r.leader_guess(0)
    order = r.candidates(0)
    script = Script({first: [unreachable()], order[1]: [not_leader(order[2])], order[2]: ["ok"]})
    assert call(r, 0, script) == "ok"
    assert script.calls == order
    assert sleeps == []


def test_no_leader_anywhere_backs_off_and_the_attempts_are_bounded(sleeps: list[float]) -> None:
    r = routing()
    script = Script({n: [not_leader(0)] for n in (1, 2, 3)})
    with pytest.raises(CallFailed) as failed:
        call(r, 0, script, attempts_max=6)
    assert len(script.calls) == 6
    assert len(sleeps) == 6
    assert sleeps == sorted(sleeps)  # growing back-off
    assert failed.value.error.reason is ErrorReason.NOT_LEADER


def test_a_refusal_is_final_and_keeps_its_cause(sleeps: list[float]) -> None:
    r = routing()
    refusal = make_error(ErrorReason.INSUFFICIENT_FUNDS, "poor")
    script = Script({r.leader_guess(0): [refusal]})
    with pytest.raises(CallFailed) as failed:
        call(r, 0, script)
    assert failed.value.error is refusal
    assert failed.value.cause is refusal
    assert len(script.calls) == 1


def test_maybe_applied_then_not_leader_answers_outcome_unknown(sleeps: list[float]) -> None:
    r = routing()
    first = r.leader_guess(0)
    maybe = make_error(ErrorReason.OUTCOME_UNKNOWN, "deadline", server_reported=False)
    script = Script({first: [maybe, not_leader(0)], 2: [not_leader(0)], 3: [not_leader(0)]})
    script.answers.setdefault(1, [not_leader(0)])
    with pytest.raises(CallFailed) as failed:
        call(r, 0, script, attempts_max=4)
    assert failed.value.error.reason is ErrorReason.OUTCOME_UNKNOWN


def test_the_deadline_bounds_the_call() -> None:
    r = routing()

    async def never(node_id: int, timeout_s: float) -> str:
        await asyncio.sleep(timeout_s)
        raise make_error(ErrorReason.OUTCOME_UNKNOWN, "deadline", server_reported=False)

    async def main() -> None:
        with pytest.raises(CallFailed) as failed:
            await run_call(r, 0, never, deadline=Deadline(200), policy=RetryPolicy(50),
                           forward_timeout_ms=80)  # fmt: skip
        assert failed.value.error.reason is ErrorReason.OUTCOME_UNKNOWN

    loop_started = asyncio.new_event_loop()
    try:
        start = loop_started.time()
        loop_started.run_until_complete(main())
        assert loop_started.time() - start < 1.0
    finally:
        loop_started.close()


def test_a_replica_that_cannot_serve_is_replaced_at_once(sleeps: list[float]) -> None:
    """A leader cut off from its quorum answers UNAVAILABLE at once: the next replica."""
    r = routing()
    order = r.candidates(0)
    cut_off = make_error(ErrorReason.UNAVAILABLE, "no quorum", shard_id=0)
    script = Script({order[0]: [cut_off], order[1]: ["ok"]})
    assert call(r, 0, script) == "ok"
    assert script.calls == order[:2]
    assert sleeps == []
