"""Running totals of a shard never stop it: they are wide integers, not 64-bit ones."""

from __future__ import annotations

from hongbao.ledger import Deposit, Limits, Ok, Withdraw
from hongbao.ledger.commands import Command
from hongbao.ledger.results import Rejected

from .helpers import Cluster

# -- cumulative totals past 2**63 ------------------


def test_running_totals_cannot_outgrow_64_bits_and_wedge_the_shard() -> None:
    """ShardState.deposits_fen (and withdrawals, delivered_in, settled_out) only ever
    grow. At the highest allowed limits (10**15 fen per operation), 9,300 users each
    depositing and withdrawing again push the totals past 2**63 - 1, while no balance
    ever exceeds 10**15. In 64 bits the shard state would fail to encode inside apply and
    every replica would stop on the same committed entry; here it applies and audits."""
    ceiling = 10**15
    limits = Limits(amount_max_fen=ceiling, daily_outgoing_max_fen=ceiling)
    cluster = Cluster(shard_count=1, limits=limits)
    users = cluster.users(0, 9_300, stem="w")
    for start in range(0, len(users), 400):
        commands: list[Command] = []
        for user in users[start : start + 400]:
            commands.append(Deposit(cluster.rid(), user, ceiling))
            commands.append(Withdraw(cluster.rid(), user, ceiling))
        results = cluster.apply(0, *commands)  # raises InvariantViolation past 2**63
        assert all(isinstance(r, Ok | Rejected) for r in results)
    cluster.audit()
