"""A 3-node cluster from configs/local.toml commits operations on all of its 12 shards."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from hongbao.client.sdk import HongbaoClient
from hongbao.ledger.sharding import shard_for_user
from tests.cluster.support import running_cluster, users_per_shard

pytestmark = pytest.mark.cluster

DEPOSIT_FEN = 100_000
TRANSFER_FEN = 1_234
ENVELOPE_FEN = 900
ENVELOPE_SHARES = 3


def test_commits_on_all_shards(tmp_path: Path) -> None:
    with running_cluster(tmp_path) as harness:
        topology = harness.topology
        shard_count = topology.shard_count
        assert shard_count == 12
        before = harness.wait_quiescent()
        users = users_per_shard(topology, 2, "commit-user-")

        async def workload() -> dict[str, int]:
            expected: dict[str, int] = {}
            async with HongbaoClient(topology) as client:
                # Deposits: every shard gets writes.
                everyone = [u for shard in sorted(users) for u in users[shard]]
                balances = await asyncio.gather(*(client.deposit(u, DEPOSIT_FEN) for u in everyone))
                assert balances == [DEPOSIT_FEN] * len(everyone)
                expected.update(dict.fromkeys(everyone, DEPOSIT_FEN))
                # Cross-shard transfers around the ring of shards, and one same-shard each.
                for shard in range(shard_count):
                    source, target = users[shard][0], users[(shard + 1) % shard_count][1]
                    assert client.user_shard(source) != client.user_shard(target)
                    response = await client.transfer(source, target, TRANSFER_FEN)
                    assert response.cross_shard
                    assert response.from_balance_fen == expected[source] - TRANSFER_FEN
                    expected[source] -= TRANSFER_FEN
                    expected[target] += TRANSFER_FEN
                    same = await client.transfer(users[shard][1], users[shard][0], 1)
                    assert not same.cross_shard
                    expected[users[shard][1]] -= 1
                    expected[users[shard][0]] += 1
                # An envelope on every shard, grabbed by users of other shards.
                for shard in range(shard_count):
                    sender = users[shard][0]
                    sent = await client.send_envelope(
                        sender, ENVELOPE_FEN, ENVELOPE_SHARES, lucky=shard % 2 == 0
                    )
                    assert client.envelope_shard(sent.envelope_id) == shard
                    expected[sender] -= ENVELOPE_FEN
                    grabbed = 0
                    for offset in range(1, ENVELOPE_SHARES + 1):
                        grabber = users[(shard + offset) % shard_count][1]
                        receipt = await client.grab(sent.envelope_id, grabber)
                        assert receipt.cross_shard
                        assert receipt.remaining_count == ENVELOPE_SHARES - offset
                        expected[grabber] += receipt.amount_fen
                        grabbed += receipt.amount_fen
                    assert grabbed == ENVELOPE_FEN
                    shown = await client.show(sent.envelope_id)
                    assert shown.remaining_count == 0
                    assert sorted(g.user_id for g in shown.grabs) == sorted(
                        users[(shard + k) % shard_count][1] for k in (1, 2, 3)
                    )

                # Cross-shard credits arrive through the couriers: wait for every balance.
                async def settled() -> bool:
                    for user, fen in expected.items():
                        if (await client.balance(user)).balance_fen != fen:
                            return False
                    return True

                for _ in range(200):
                    if await settled():
                        break
                    await asyncio.sleep(0.05)
                else:
                    raise AssertionError("cross-shard credits did not all arrive in 10 s")
            return expected

        expected = asyncio.run(workload())

        # Every shard committed more on every node, and every replica applied it all.
        after = harness.wait_quiescent()
        for shard_id, view in after.items():
            assert sorted(view.replicas) == sorted(int(n) for n in topology.replicas_of(shard_id))
            for node_id, status in view.replicas.items():
                old = before[shard_id].replicas[node_id].commit_index
                assert status.commit_index > old, (shard_id, node_id, old, status.commit_index)
                assert status.applied_index == status.commit_index

        report = harness.quiesce_stop_audit()
        ledger = report.ledger
        assert ledger is not None
        assert ledger.deposits_fen == DEPOSIT_FEN * len(expected)
        assert ledger.withdrawals_fen == 0
        assert ledger.balances_fen == sum(expected.values()) == DEPOSIT_FEN * len(expected)
        assert ledger.escrow_fen == 0
        assert ledger.undelivered_fen == 0
        assert ledger.accounts == len(expected)
        assert ledger.envelopes == shard_count
        assert report.outbox_entries == 0
        assert {shard_for_user(u, shard_count) for u in expected} == set(range(shard_count))
