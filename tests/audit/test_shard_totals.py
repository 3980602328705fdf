"""The pieces of the live audit that need no cluster: one shard's totals, their wire form,
and the verdict over a round of them (exit 0, 1 and 3)."""

from __future__ import annotations

from dataclasses import replace

from hongbao.ledger import Deposit, EnvelopeKind, SendEnvelope, Transfer, Withdraw
from hongbao.ledger.audit import shard_totals
from hongbao.node.admin_audit import INT64_MAX, to_proto
from hongbao.ops.live_audit import LiveAuditReport, ShardLine, _with_verdict
from tests.ledger.helpers import Cluster


def traffic() -> Cluster:
    c = Cluster(shard_count=3)
    (alice,) = c.users(0, 1)
    (bob,) = c.users(1, 1)
    c.one(0, Deposit(c.rid(), alice, 10_000))
    c.one(0, Transfer(c.rid(), alice, bob, 700))  # cross-shard: in the outbox until acked
    c.one(0, SendEnvelope(c.rid(), alice, EnvelopeKind.FIXED, 900, 3))
    c.one(1, Deposit(c.rid(), bob, 50))
    c.one(1, Withdraw(c.rid(), bob, 20))
    return c


def test_shard_totals_recompute_the_tables() -> None:
    c = traffic()
    zero = shard_totals(c.stores[0])
    assert (zero.shard_id, zero.balances_fen, zero.escrow_fen) == (0, 8_400, 900)
    assert (zero.outbox_entries, zero.outbox_fen, zero.deposits_fen) == (1, 700, 10_000)
    assert (zero.accounts, zero.negative_balances, zero.problems) == (1, 0, ())
    c.deliver_all()
    drained = [shard_totals(store) for store in c.stores.values()]
    assert all(t.outbox_entries == 0 and not t.problems for t in drained)
    held = sum(t.balances_fen + t.escrow_fen + t.outbox_fen for t in drained)
    assert held == sum(t.deposits_fen - t.withdrawals_fen for t in drained) == 10_030
    wire = to_proto(drained[1], applied_index=42)
    assert (wire.shard_id, wire.applied_index, wire.balances_fen) == (1, 42, 730)
    assert (wire.withdrawals_fen, wire.accounts, list(wire.problems)) == (20, 1, [])


def test_a_total_beyond_int64_is_clamped_and_named() -> None:
    totals = replace(shard_totals(traffic().stores[0]), deposits_fen=2**70)
    wire = to_proto(totals, applied_index=1)
    assert wire.deposits_fen == INT64_MAX
    assert any("does not fit int64" in problem for problem in wire.problems)


def line(shard_id: int, **fen: int) -> ShardLine:
    values = {"balances_fen": 0, "escrow_fen": 0, "deposits_fen": 0, "withdrawals_fen": 0,
              "outbox_entries": 0, "outbox_fen": 0, "negative_balances": 0} | fen  # fmt: skip
    return ShardLine(shard_id=shard_id, leader_node_id=1, applied_index=5, accounts=1,
                     problems=(), **values)  # fmt: skip


def report(*lines: ShardLine, quiet: bool = True) -> LiveAuditReport:
    return LiveAuditReport(
        shards=lines, shard_count=len(lines), drained=True, quiet=quiet, waited_ms=1,
        unreachable=(),
    )  # fmt: skip


def test_the_verdict_names_what_does_not_hold() -> None:
    good = _with_verdict(report(line(0, balances_fen=70, deposits_fen=100, withdrawals_fen=30),
                                line(1, escrow_fen=5, deposits_fen=5)))  # fmt: skip
    assert (good.ok, good.exit_code, good.held_fen, good.net_in_fen) == (True, 0, 75, 75)
    lost = _with_verdict(report(line(0, balances_fen=69, deposits_fen=100, withdrawals_fen=30)))
    assert lost.exit_code == 1
    assert any(p.startswith("conservation:") for p in lost.problems)
    negative = _with_verdict(report(line(0, balances_fen=0, negative_balances=1), quiet=False))
    assert negative.exit_code == 1
    assert any("negative" in p for p in negative.problems)
    assert any("consistent cut" in p for p in negative.problems)


def test_an_undrained_or_incomplete_round_is_not_judged() -> None:
    undrained = replace(report(line(0)), drained=False, unreachable=("shard 0: 1 outbox entry",))
    assert (undrained.judged, undrained.exit_code) == (False, 3)
    missing = replace(report(line(0)), shard_count=2)
    assert (missing.judged, missing.exit_code) == (False, 3)
