"""The offline audit's comparison of a shard's replicas: one at a lower applied index is
named as behind (how far, and not compared), never reported as a divergence; replicas at
the same index with different states are (a chaos run once read "node 1 (applied 5867)
and node 3 (applied 1747) differ in tables [...every table...]" for a lagging replica).
"""

from __future__ import annotations

from hongbao.ledger.snapshot import state_digest
from hongbao.ledger.store import LedgerStore, MemoryStore, Table
from hongbao.ops.audit import ReplicaState, _compare_replicas


def replica(
    node_id: int, applied_index: int, store: LedgerStore
) -> tuple[ReplicaState, LedgerStore]:
    return ReplicaState(node_id, 0, applied_index, state_digest(store), 0), store


def store_with(value: bytes) -> MemoryStore:
    store = MemoryStore()
    store.put(Table.ACCOUNTS, b"alice", value)
    return store


def test_a_replica_at_a_lower_index_is_behind_not_different() -> None:
    problems: list[str] = []
    _compare_replicas(
        0, [replica(1, 5867, store_with(b"new")), replica(3, 1747, store_with(b"old"))], problems
    )
    assert problems == [
        "shard 0: node 3 is behind node 1: applied 1747 of 5867 (4120 entries not applied"
        " when the cluster stopped; not compared)"
    ]


def test_replicas_at_one_index_with_different_states_differ() -> None:
    problems: list[str] = []
    same = store_with(b"x")
    _compare_replicas(
        0,
        [replica(1, 10, same), replica(2, 10, store_with(b"x")), replica(3, 10, store_with(b"y"))],
        problems,
    )
    assert len(problems) == 1
    assert problems[0].startswith("shard 0: node 1 (applied 10) and node 3 (applied 10) differ")
    assert "'accounts'" in problems[0]


def test_the_chaos_check_says_behind_when_no_replica_differs() -> None:
    from hongbao.chaos.checks import correctness_checks
    from hongbao.chaos.final_state import FinalState

    def verdict(report: str) -> str:
        final = FinalState({}, {}, {}, {}, quiet=True, replicas_ok=False, replicas_report=report)
        result = {r.name: r for r in correctness_checks([], final)}["replicas-identical"]
        assert not result.ok
        return result.summary

    behind = "cluster audit: FAILED\n  problem: shard 0: node 3 is behind node 1: applied 1 of 9"
    assert "behind at the stop" in verdict(behind)
    differs = (
        behind
        + "\n  problem: shard 2: node 1 (applied 4) and node 2 (applied 4)"
        + " differ in tables ['accounts']"
    )
    assert verdict(differs) == "replicas differ or do not balance"
