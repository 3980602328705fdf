"""Reading and changing the replicated cluster state (the meta group) from the CLI.

Rules of this module: a change goes to the meta group's leader (found from any meta
replica's ClusterState answer, or from a NOT_LEADER hint) and is retried on the next
replica until a deadline; a read meant to decide something is linearizable (the meta
leader's ReadIndex). Waiting for every process to follow a change is bounded, and a
process that does not answer is reported, not waited for forever.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field

import grpc

from hongbao.meta.state import ClusterState, RegionState, from_proto, region_state_to_proto
from hongbao.node.errors import ErrorReason, error_from_rpc_error
from hongbao.ops.admin_pool import AdminPool
from hongbao.proto.gen.hongbao.v1 import admin_pb2

CALL_TIMEOUT_S = 2.0
CHANGE_TIMEOUT_S = 10.0
POLL_S = 0.02


class MetaUnavailable(RuntimeError):
    """No meta replica answered (or none leads) within the deadline."""


class MetaRefused(RuntimeError):
    """The meta group refused the change (unknown region, stale expected version)."""


def _meta_addresses(pool: AdminPool, first: int = 0) -> list[str]:
    replicas = [int(n) for n in pool.topology.meta_replicas]
    if first in replicas:
        replicas.remove(first)
        replicas.insert(0, first)
    return [pool.topology.node(n).address for n in replicas]


async def read_state(
    pool: AdminPool, *, linearizable: bool = True, timeout_s: float = CHANGE_TIMEOUT_S
) -> tuple[ClusterState, int]:
    """The cluster state and the meta leader's node id, from the first meta replica that
    answers (``linearizable``: through the meta leader's ReadIndex)."""
    deadline = time.monotonic() + timeout_s
    errors: list[str] = []
    while True:
        for address in _meta_addresses(pool):
            try:
                response: admin_pb2.ClusterStateResponse = await pool.admin(address).ClusterState(
                    admin_pb2.ClusterStateRequest(linearizable=linearizable), timeout=CALL_TIMEOUT_S
                )
            except grpc.aio.AioRpcError as error:
                errors.append(f"{address}: {error.code().name}")
                continue
            return from_proto(response), int(response.meta_leader_node_id)
        if time.monotonic() > deadline:
            raise MetaUnavailable(
                f"no meta replica answered ClusterState in {timeout_s} s ({'; '.join(errors[-3:])})"
            )
        await asyncio.sleep(POLL_S * 5)


async def set_region_state(
    pool: AdminPool,
    region: str,
    state: RegionState,
    *,
    deadline_ms: int = 0,
    expected_version: int = 0,
    timeout_s: float = CHANGE_TIMEOUT_S,
) -> ClusterState:
    """Propose ``region``'s new state to the meta leader; return the committed state."""
    request = admin_pb2.SetRegionStateRequest(
        region=region,
        state=region_state_to_proto(state),
        expected_version=expected_version,
        deadline_ms=deadline_ms,
    )
    deadline = time.monotonic() + timeout_s
    leader_hint = 0
    last = "no meta replica tried"
    outcome_unknown = False  # an attempt timed out or was cut off: it may have committed
    while time.monotonic() < deadline:
        for address in _meta_addresses(pool, leader_hint):
            try:
                response: admin_pb2.ClusterStateResponse = await pool.admin(address).SetRegionState(
                    request, timeout=CALL_TIMEOUT_S
                )
            except grpc.aio.AioRpcError as rpc_error:
                error = error_from_rpc_error(rpc_error)
                last = f"{address}: {error}"
                if error.reason is ErrorReason.NOT_LEADER:
                    hint = error.leader_hint
                    if hint is not None and hint.node_id:
                        leader_hint = int(hint.node_id)
                        break  # start over from the leader it named
                    continue
                if error.reason is ErrorReason.STALE_VERSION and outcome_unknown:
                    # Our own earlier attempt may be what moved the version on: if the
                    # state is what we asked for, that attempt committed.
                    left_s = max(0.1, deadline - time.monotonic())
                    current, _ = await read_state(pool, timeout_s=left_s)
                    if current.state_of(region) is state:
                        return current
                if rpc_error.code() in (
                    grpc.StatusCode.FAILED_PRECONDITION, grpc.StatusCode.INVALID_ARGUMENT,
                    grpc.StatusCode.NOT_FOUND,
                ):  # fmt: skip
                    raise MetaRefused(str(error)) from None
                outcome_unknown = outcome_unknown or not error.server_reported or (
                    error.reason is ErrorReason.OUTCOME_UNKNOWN
                )
                continue
            return from_proto(response)
        await asyncio.sleep(POLL_S * 5)
    raise MetaUnavailable(f"the meta group took no change of {region} in {timeout_s} s ({last})")


@dataclass(slots=True)
class Propagation:
    """Which processes reported a cluster-state version at least the one waited for."""

    version: int
    following: list[str] = field(default_factory=list)  # "node 1", "router 2"
    behind: list[str] = field(default_factory=list)  # answered, older version, at the bound
    silent: list[str] = field(default_factory=list)  # did not answer (down: takes no work)
    elapsed_s: float = 0.0

    @property
    def complete(self) -> bool:
        return not self.behind


async def wait_for_version(pool: AdminPool, version: int, timeout_s: float) -> Propagation:
    """Until every node and router that answers reports ``version`` (or newer)."""
    topology = pool.topology
    processes = [(f"node {n.node_id}", n.address) for n in topology.nodes]
    processes += [(f"router {r.router_id}", r.address) for r in topology.routers]
    started = time.monotonic()
    deadline = started + timeout_s

    async def version_of(address: str) -> int | None:
        try:
            response: admin_pb2.ClusterStateResponse = await pool.admin(address).ClusterState(
                admin_pb2.ClusterStateRequest(), timeout=CALL_TIMEOUT_S
            )
        except grpc.aio.AioRpcError:
            return None
        return int(response.version)

    while True:
        versions = await asyncio.gather(*(version_of(address) for _, address in processes))
        result = Propagation(version)
        for (name, _), seen in zip(processes, versions, strict=True):
            if seen is None:
                result.silent.append(name)
            elif seen >= version:
                result.following.append(name)
            else:
                result.behind.append(f"{name} (at version {seen})")
        result.elapsed_s = time.monotonic() - started
        if result.complete or time.monotonic() > deadline:
            return result
        await asyncio.sleep(POLL_S)
