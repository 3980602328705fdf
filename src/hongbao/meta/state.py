"""The replicated cluster state: its values, its one command, and its wire form.

Rules of this module: pure values, no I/O. :class:`ClusterState` is what the meta group
holds and every node and router follows; it changes only by a committed
:class:`SetRegion` (``apply_set_region``, deterministic, so every replica computes the
same state), and every change bumps ``version`` by one. A region's state answers the two
questions the rest of the system asks: may this region take new work (``takes_traffic``),
and may its replicas take leadership (``may_lead``)? Both are true only while ``active``.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, replace

from hongbao.proto.gen.hongbao.v1 import admin_pb2


class RegionState(enum.StrEnum):
    ACTIVE = "active"
    DRAINING = "draining"
    DRAINED = "drained"


_TO_PROTO: dict[RegionState, admin_pb2.RegionState] = {
    RegionState.ACTIVE: admin_pb2.REGION_STATE_ACTIVE,
    RegionState.DRAINING: admin_pb2.REGION_STATE_DRAINING,
    RegionState.DRAINED: admin_pb2.REGION_STATE_DRAINED,
}
_FROM_PROTO: dict[int, RegionState] = {int(value): key for key, value in _TO_PROTO.items()}


def region_state_to_proto(state: RegionState) -> admin_pb2.RegionState:
    return _TO_PROTO[state]


def region_state_from_proto(value: int) -> RegionState | None:
    """None for UNSPECIFIED or a value this build does not know."""
    return _FROM_PROTO.get(value)


@dataclass(frozen=True, slots=True)
class RegionEntry:
    name: str
    state: RegionState = RegionState.ACTIVE
    since_ms: int = 0
    deadline_ms: int = 0  # draining only: when the drain gives up (0: none)


@dataclass(frozen=True, slots=True)
class ClusterState:
    cluster_id: str
    version: int
    regions: tuple[RegionEntry, ...]  # in topology order

    @classmethod
    def initial(cls, cluster_id: str, region_names: tuple[str, ...]) -> ClusterState:
        """What every meta replica starts from (identical everywhere: from the topology)."""
        return cls(cluster_id, 0, tuple(RegionEntry(name) for name in region_names))

    def region(self, name: str) -> RegionEntry | None:
        return next((r for r in self.regions if r.name == name), None)

    def state_of(self, name: str) -> RegionState:
        entry = self.region(name)
        return entry.state if entry is not None else RegionState.ACTIVE

    def takes_traffic(self, name: str) -> bool:
        return self.state_of(name) is RegionState.ACTIVE

    def may_lead(self, name: str) -> bool:
        return self.state_of(name) is RegionState.ACTIVE


@dataclass(frozen=True, slots=True)
class SetRegion:
    """The meta group's one command: set a region's operator state."""

    region: str
    state: RegionState
    expected_version: int = 0  # 0: whatever the current version is
    deadline_ms: int = 0
    ts_ms: int = 0  # the proposer's clock, recorded as since_ms


class SetRegionRefused(ValueError):
    """Applied deterministically as a refusal: unknown region or a stale expected version."""


def apply_set_region(state: ClusterState, command: SetRegion) -> ClusterState:
    """The next state, or :class:`SetRegionRefused` (the state is then unchanged)."""
    entry = state.region(command.region)
    if entry is None:
        known = ", ".join(r.name for r in state.regions)
        raise SetRegionRefused(f"unknown region {command.region!r} (regions: {known})")
    if command.expected_version and command.expected_version != state.version:
        raise SetRegionRefused(
            f"the cluster state is at version {state.version}, not {command.expected_version}"
        )
    deadline_ms = command.deadline_ms if command.state is RegionState.DRAINING else 0
    updated = replace(entry, state=command.state, since_ms=command.ts_ms, deadline_ms=deadline_ms)
    regions = tuple(updated if r.name == entry.name else r for r in state.regions)
    return replace(state, version=state.version + 1, regions=regions)


def to_proto(
    state: ClusterState, *, meta_leader_node_id: int = 0, answered_by: int = 0, age_ms: int = 0
) -> admin_pb2.ClusterStateResponse:
    return admin_pb2.ClusterStateResponse(
        cluster_id=state.cluster_id,
        version=state.version,
        regions=[
            admin_pb2.RegionStatus(
                name=r.name,
                state=region_state_to_proto(r.state),
                since_ms=r.since_ms,
                deadline_ms=r.deadline_ms,
            )
            for r in state.regions
        ],
        meta_leader_node_id=meta_leader_node_id,
        answered_by_node_id=answered_by,
        age_ms=age_ms,
    )


def from_proto(pb: admin_pb2.ClusterStateResponse) -> ClusterState:
    """Unknown region states read as ``active`` would be unsafe: they read as draining."""
    regions = tuple(
        RegionEntry(
            name=r.name,
            state=region_state_from_proto(r.state) or RegionState.DRAINING,
            since_ms=r.since_ms,
            deadline_ms=r.deadline_ms,
        )
        for r in pb.regions
    )
    return ClusterState(cluster_id=pb.cluster_id, version=pb.version, regions=regions)
