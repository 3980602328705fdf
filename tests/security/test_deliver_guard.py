"""Peer.Deliver's checks (deliver_guard) over a real two-shard ledger, in-process.

The probe: a forged Deliver of 10^9 fen with the next sequence number was applied, and
the next real credit on that route, carrying the same number, was dropped as a
duplicate. Here the destination confirms every credit against its own replica of the
source shard's outbox before proposing it.
"""

from __future__ import annotations

import pytest

from hongbao.ledger.commands import Deliver, encode_command
from hongbao.ledger.outbox import deliver_command, inbox_seq, pending_outbox
from hongbao.ledger.records import CreditKind
from hongbao.node.deliver_guard import credits_to_apply
from hongbao.node.errors import ErrorReason, HongbaoError
from hongbao.node.peer_guard import Refusal, RefusalLog
from hongbao.proto.gen.hongbao.v1 import peer_pb2
from tests.ledger.helpers import Cluster
from tests.security.fuzz_targets import _LedgerRuntime, deliver_world

SOURCE_LEADER = 2  # _LedgerRuntime: node 2 leads the source shard 1


def request(commands: list[Deliver], *, claiming: int = SOURCE_LEADER) -> peer_pb2.DeliverRequest:
    return peer_pb2.DeliverRequest(
        cluster_id="fuzz",
        from_node_id=claiming,
        source_shard=1,
        destination_shard=0,
        commands=[encode_command(c) for c in commands],
    )


def check(cluster: Cluster, commands: list[Deliver], **kw: int) -> list[Deliver]:
    refusals = RefusalLog()
    runtime = _LedgerRuntime(cluster)
    return credits_to_apply(runtime, request(commands, **kw), commands, refusals)  # type: ignore[arg-type]


def refusal(cluster: Cluster, commands: list[Deliver], **kw: int) -> HongbaoError:
    with pytest.raises(HongbaoError) as refused:
        check(cluster, commands, **kw)
    return refused.value


def real_credits(cluster: Cluster) -> list[Deliver]:
    return [deliver_command(e) for e in pending_outbox(cluster.stores[1], 0, 10)]


def test_the_real_credits_pass_and_apply() -> None:
    cluster, _ = deliver_world()
    credits = real_credits(cluster)
    assert check(cluster, credits) == credits
    cluster.apply(0, *credits)
    assert inbox_seq(cluster.stores[0], 1) == len(credits)
    assert check(cluster, credits) == []  # a retry: every one a duplicate, nothing to do
    cluster.audit()


def test_a_forged_next_credit_is_refused_and_the_real_one_still_applies() -> None:
    cluster, _ = deliver_world()
    (real, *_) = real_credits(cluster)
    forged = Deliver(
        1,
        seq=real.seq,
        user_id=real.user_id,
        amount_fen=10**9,
        kind=CreditKind.TRANSFER,
        ref="forged",
    )
    error = refusal(cluster, [forged])
    assert error.reason is ErrorReason.INVALID_REQUEST
    assert "does not match" in error.message
    reals = real_credits(cluster)
    forged_later = Deliver(
        1, seq=reals[-1].seq, user_id=real.user_id, amount_fen=10**9,
        kind=CreditKind.TRANSFER, ref="forged",
    )  # fmt: skip
    error = refusal(cluster, [*reals[:-1], forged_later])  # real ones first: refused whole
    assert "does not match" in error.message
    assert check(cluster, [real]) == [real]
    cluster.apply(0, real)
    assert inbox_seq(cluster.stores[0], 1) == 1
    cluster.audit()


def test_credits_not_applied_here_yet_wait_and_the_confirmed_ones_go_ahead() -> None:
    """The courier reads its outbox as soon as its leader applies; this node's replica of
    the source may not have applied the newest entries yet. Those are left for the
    courier's next attempt; only a Deliver of which none is confirmed is refused."""
    cluster, _ = deliver_world()
    reals = real_credits(cluster)
    (real, *_) = reals
    beyond = Deliver(
        1, seq=len(reals) + 1, user_id=real.user_id, amount_fen=1,
        kind=CreditKind.TRANSFER, ref="x",
    )  # fmt: skip
    assert check(cluster, [*reals, beyond]) == reals
    cluster.apply(0, *reals)
    assert refusal(cluster, [beyond]).reason is ErrorReason.UNAVAILABLE
    cluster.audit()


def test_only_the_source_leader_may_deliver_and_in_order() -> None:
    cluster, _ = deliver_world()
    credits = real_credits(cluster)
    assert refusal(cluster, credits, claiming=3).reason is ErrorReason.UNAVAILABLE  # a follower
    assert "is this node" in refusal(cluster, credits, claiming=1).message
    assert "not consecutive" in refusal(cluster, [credits[0], credits[2]]).message
    assert "the next is 1" in refusal(cluster, credits[1:]).message


def test_refusals_are_counted_under_the_sender() -> None:
    cluster, _ = deliver_world()
    refusals = RefusalLog()
    (real, *_) = real_credits(cluster)
    forged = Deliver(
        1, seq=1, user_id=real.user_id, amount_fen=7, kind=CreditKind.TRANSFER, ref="f"
    )
    runtime = _LedgerRuntime(cluster)
    with pytest.raises(HongbaoError):
        credits_to_apply(runtime, request([forged]), [forged], refusals)  # type: ignore[arg-type]
    assert refusals.refusals[(Refusal.DELIVER_REFUSED.value, SOURCE_LEADER)] == 1
