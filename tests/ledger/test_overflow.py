"""A committed entry that would overflow 64 bits is refused, the same on every replica.

The probe: 19 forged deliveries pushed one balance past 2^63 - 1 and every replica of the
shard stopped while applying the committed entry, and again after each restart. Here the
shard's holdings reach the bound for real (deposits of 10^15 fen) and the next credit, a
deposit or a delivery from another shard, is refused with HOLDINGS_LIMIT_EXCEEDED instead
of raising inside apply.
"""

from __future__ import annotations

from hongbao.ledger import Deposit, Limits, Reason, Rejected, Transfer
from hongbao.ledger.books import HOLDINGS_MAX_FEN
from hongbao.ledger.outbox import deliver_command, inbox_seq, pending_outbox
from hongbao.ledger.snapshot import state_digest

from .helpers import Cluster, money_view

BIG_FEN = 10**15  # AMOUNT_CEILING_FEN: the largest single amount any limit allows
LIMITS = Limits(amount_max_fen=BIG_FEN, daily_outgoing_max_fen=BIG_FEN, batch_commands_max=1_000)


def _full_shard() -> tuple[Cluster, str]:
    """Two shards; shard 0 holds exactly HOLDINGS_MAX_FEN, all in one wallet."""
    cluster = Cluster(shard_count=2, limits=LIMITS)
    (rich,) = cluster.users(0, 1, "rich")
    count, rest_fen = divmod(HOLDINGS_MAX_FEN, BIG_FEN)
    for start in range(0, count, 1_000):
        deposits = [Deposit(cluster.rid(), rich, BIG_FEN) for _ in range(min(1_000, count - start))]
        results = cluster.apply(0, *deposits)
        assert not any(isinstance(r, Rejected) for r in results)
    assert not isinstance(cluster.one(0, Deposit(cluster.rid(), rich, rest_fen)), Rejected)
    return cluster, rich


def test_a_deposit_past_the_bound_is_refused_and_changes_nothing() -> None:
    cluster, rich = _full_shard()
    before = money_view(cluster.stores[0])
    refusal = cluster.one(0, Deposit(cluster.rid(), rich, 1))
    assert isinstance(refusal, Rejected)
    assert refusal.reason is Reason.HOLDINGS_LIMIT_EXCEEDED
    assert money_view(cluster.stores[0]) == before
    (other,) = cluster.users(0, 1, "other")  # any wallet of the shard: the bound is the shard's
    refusal = cluster.one(0, Deposit(cluster.rid(), other, 1))
    assert isinstance(refusal, Rejected)
    assert refusal.reason is Reason.HOLDINGS_LIMIT_EXCEEDED
    cluster.audit()


def test_a_delivery_past_the_bound_waits_in_the_outbox_on_every_replica() -> None:
    replicas = [_full_shard(), _full_shard()]
    digests = []
    for cluster, rich in replicas:
        (payer,) = cluster.users(1, 1, "payer")
        cluster.one(1, Deposit(cluster.rid(), payer, 700))
        receipt = cluster.one(1, Transfer(cluster.rid(), payer, rich, 600))
        assert not isinstance(receipt, Rejected)
        (entry,) = pending_outbox(cluster.stores[1], 0, 10)
        refusal = cluster.one(0, deliver_command(entry))
        assert isinstance(refusal, Rejected)
        assert refusal.reason is Reason.HOLDINGS_LIMIT_EXCEEDED
        assert inbox_seq(cluster.stores[0], 1) == 0  # not consumed: a later retry may apply
        assert pending_outbox(cluster.stores[1], 0, 10) == [entry]  # the money is still owed
        cluster.audit()
        digests.append(state_digest(cluster.stores[0]))
    assert digests[0] == digests[1]
