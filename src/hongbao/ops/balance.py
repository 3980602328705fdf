"""Leading each shard from its home region again (``cluster balance``).

Rules of this module (operations-asks 3 and 6; TiKV #15874): a leadership goes home only
to a home replica that answers, sits in an ``active`` region (the cluster state as the
newest answering process reports it; the node's own view must agree), and has caught up:
its log within ``CAUGHT_UP_SLACK_ENTRIES`` of the leader's last index (the leader's
ReplicaProgress) *and* its applied index within that of the leader's commit index (its
own Status). Anything else stays where it is. Each attempt is bounded by an election
timeout; the whole balance by its deadline. Each transfer is logged by
:func:`~hongbao.ops.transfer.transfer_once`; the outcome here (``leaders_moved_home``,
``balance_incomplete``), at info.
"""

from __future__ import annotations

import asyncio
import logging
import time

import grpc

from hongbao.config.topology import META_GROUP_ID
from hongbao.logs import event
from hongbao.meta.state import ClusterState, RegionState, from_proto
from hongbao.ops.processes import ClusterOpsError
from hongbao.ops.status import (
    LEADERS_TIMEOUT_S,
    STATUS_TIMEOUT_S,
    AdminSource,
    ClusterStatus,
    cluster_status,
    group_name,
    node_admin,
)
from hongbao.ops.transfer import CAUGHT_UP_SLACK_ENTRIES, election_timeout_ms, transfer_once
from hongbao.proto.gen.hongbao.v1 import admin_pb2

log = logging.getLogger(__name__)

POLL_S = 0.02


async def newest_state(source: AdminSource) -> ClusterState | None:
    """The newest cluster state any node reports (None: no node answers ClusterState)."""

    async def one(node_id: int) -> admin_pb2.ClusterStateResponse | None:
        try:
            response: admin_pb2.ClusterStateResponse = await node_admin(
                source, node_id
            ).ClusterState(admin_pb2.ClusterStateRequest(), timeout=STATUS_TIMEOUT_S)
        except grpc.aio.AioRpcError:
            return None
        return response

    answers = await asyncio.gather(*(one(int(n.node_id)) for n in source.topology.nodes))
    found = [a for a in answers if a is not None]
    return from_proto(max(found, key=lambda a: int(a.version))) if found else None


def may_lead(status: ClusterStatus, state: ClusterState | None, node_id: int) -> bool:
    """The node answers and its region is active, by the cluster state and by its own view."""
    region = status.topology.region_of(node_id)
    if state is not None and state.state_of(region) is not RegionState.ACTIVE:
        return False
    own = next((n.status for n in status.nodes if int(n.spec.node_id) == node_id), None)
    if own is None:
        return False
    return own.region_state in (admin_pb2.REGION_STATE_UNSPECIFIED, admin_pb2.REGION_STATE_ACTIVE)


def caught_up(
    status: ClusterStatus, group_id: int, node_id: int, slack: int = CAUGHT_UP_SLACK_ENTRIES
) -> bool:
    """Its log is at the leader's last index and it has applied to the leader's commit."""
    lead = status.leader_replica(group_id)
    mine = status.replica(node_id, group_id)
    if lead is None or mine is None:
        return False
    progress = next((p for p in lead.progress if int(p.node_id) == node_id), None)
    if progress is None or not progress.recent_active or progress.learner:
        return False
    log_ok = int(lead.last_index) - int(progress.match_index) <= slack
    return log_ok and int(mine.applied_index) + slack >= int(lead.commit_index)


async def move_leaders_home(
    source: AdminSource, timeout_s: float = LEADERS_TIMEOUT_S, *, include_meta: bool = True
) -> list[int]:
    """Hand every group's leadership back to its home replica, where that is allowed.

    Returns the groups that moved. Homes that are down or in a region that is not active
    are skipped. A home that may lead but has not caught up yet is waited for; raises
    ClusterOpsError when some allowed home still does not lead at the deadline.
    """
    topology = source.topology
    wait_ms = election_timeout_ms(topology)
    deadline = time.monotonic() + timeout_s
    moved: set[int] = set()
    last_errors: dict[int, str] = {}
    while True:
        status, state = await asyncio.gather(cluster_status(source), newest_state(source))
        leaders = status.group_leaders()
        groups = [g for g in leaders if include_meta or g != META_GROUP_ID]
        wanted = {
            g: int(topology.home_leader_of(g))
            for g in groups
            if leaders[g] != int(topology.home_leader_of(g))
            and may_lead(status, state, int(topology.home_leader_of(g)))
        }
        if not wanted:
            names = ", ".join(group_name(g) for g in sorted(moved)) or "none needed to"
            event(log, "leaders_moved_home", f"leaderships moved home: {names}",
                  moved=len(moved))  # fmt: skip
            return sorted(moved)
        if time.monotonic() > deadline:
            detail = "; ".join(
                f"{group_name(g)}: {last_errors.get(g, 'not caught up')}" for g in sorted(wanted)
            )
            event(log, "balance_incomplete", f"{len(wanted)} groups are not led from home at "
                  f"the deadline ({detail})", moved=len(moved), left=len(wanted))  # fmt: skip
            raise ClusterOpsError(
                f"{len(wanted)} groups did not return to their home regions ({detail})"
            )
        ready = {g: home for g, home in wanted.items() if caught_up(status, g, home)}
        for g in wanted:
            if g not in ready:
                last_errors[g] = f"home node {wanted[g]} has not caught up"
        results = await asyncio.gather(
            *(
                transfer_once(source, g, leaders[g], home, wait_ms)
                for g, home in sorted(ready.items())
            )
        )
        for (g, _), (ok, error) in zip(sorted(ready.items()), results, strict=True):
            if ok:
                moved.add(g)
            else:
                last_errors[g] = error
        await asyncio.sleep(POLL_S if ready else POLL_S * 5)
