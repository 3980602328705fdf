"""Admin.ShardAudit on a node: one shard's money totals, read on its leader.

Rules of this module: read-only, linearizable. Only the shard's leader answers (anyone
else: NOT_LEADER with a hint), after a ReadIndex barrier, so the totals include every
command acknowledged before the call; they come from
:func:`hongbao.ledger.audit.shard_totals` over one read transaction, so they are one
consistent cut of the shard. The cluster-wide equation is the caller's
(:mod:`hongbao.ops.live_audit`): a single shard cannot know what is in flight toward it.
"""

from __future__ import annotations

import asyncio

from hongbao.ledger import machine
from hongbao.ledger.audit import ShardTotals, shard_totals
from hongbao.ledger.store import LedgerStore
from hongbao.node.errors import ErrorReason, make_error
from hongbao.node.runtime import NodeRuntime
from hongbao.proto.gen.hongbao.v1 import admin_pb2

READ_TIMEOUT_S = 5.0
INT64_MAX = 2**63 - 1


async def shard_audit(
    runtime: NodeRuntime, request: admin_pb2.ShardAuditRequest
) -> admin_pb2.ShardAuditResponse:
    """The totals of ``request.shard_id``; raises HongbaoError (the caller aborts with it)."""
    shard_id = request.shard_id
    shard_count = runtime.topology.shard_count
    if shard_id >= shard_count:
        raise make_error(
            ErrorReason.INVALID_REQUEST, f"no shard {shard_id}: shards are 0..{shard_count - 1}"
        )
    barrier = runtime.read_barrier(shard_id)  # NOT_LEADER (with a hint) off the leader
    try:
        await asyncio.wait_for(barrier, READ_TIMEOUT_S)
    except TimeoutError:
        raise make_error(
            ErrorReason.UNAVAILABLE, "could not confirm leadership in time", shard_id=shard_id
        ) from None

    def read(store: LedgerStore) -> tuple[int, ShardTotals]:
        return machine.applied_index(store), shard_totals(store)

    applied_index, totals = runtime.query(shard_id, read)
    return to_proto(totals, applied_index)


def to_proto(totals: ShardTotals, applied_index: int) -> admin_pb2.ShardAuditResponse:
    """The wire form; a total beyond int64 (a shard's lifetime deposits, in theory) is
    clamped and named in ``problems`` rather than failing the call."""
    problems = list(totals.problems)

    def fen(name: str, value: int) -> int:
        if abs(value) <= INT64_MAX:
            return value
        problems.append(f"shard {totals.shard_id}: {name} {value} does not fit int64")
        return INT64_MAX if value > 0 else -INT64_MAX

    response = admin_pb2.ShardAuditResponse(
        shard_id=totals.shard_id,
        applied_index=applied_index,
        balances_fen=fen("balances_fen", totals.balances_fen),
        escrow_fen=fen("escrow_fen", totals.escrow_fen),
        deposits_fen=fen("deposits_fen", totals.deposits_fen),
        withdrawals_fen=fen("withdrawals_fen", totals.withdrawals_fen),
        outbox_entries=totals.outbox_entries,
        outbox_fen=fen("outbox_fen", totals.outbox_fen),
        accounts=totals.accounts,
        negative_balances=totals.negative_balances,
    )
    response.problems.extend(problems)
    return response
