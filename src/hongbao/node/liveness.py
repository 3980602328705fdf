"""Node-level liveness: what stands in for the heartbeats of quiesced groups.

Why: a quiesced group (``hongbao.raft.quiesce``) sends no heartbeats, so its followers
cannot notice a dead leader by silence, and its leader cannot notice a lost quorum. One
keepalive per node pair and heartbeat interval (an empty batch on the peer stream, sent
only when the stream has carried nothing else for that long) tells each node which peers
it still hears; a peer silent for an election timeout wakes every quiesced group that
depends on it, and their own timers take over. The cost is per node pair, not per group.

Pure: times are passed in (milliseconds of any monotonic clock), so the simulator drives
the same rules with its logical clock.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Protocol

from hongbao._invariant import invariant
from hongbao.raft.types import ConfState, NodeId, Role


class QuiescentCore(Protocol):
    """What the liveness rules read of a core, and the one thing they do to it."""

    @property
    def quiesced(self) -> bool: ...

    @property
    def role(self) -> Role: ...

    @property
    def leader_id(self) -> NodeId: ...

    @property
    def conf_state(self) -> ConfState: ...

    def unquiesce(self) -> None: ...


class PeerLiveness:
    """When each peer node was last heard; a peer not heard for ``timeout_ms`` is silent."""

    def __init__(self, *, node_id: int, peers: Iterable[int], timeout_ms: float) -> None:
        invariant(timeout_ms > 0, "a liveness timeout must be positive")
        self.node_id = node_id
        self.timeout_ms = timeout_ms
        # Unheard peers count as heard at the first check: a node that just started
        # gives its peers one timeout to say something before waking anything.
        self._heard_ms: dict[int, float | None] = {p: None for p in peers if p != node_id}
        self.silent: frozenset[int] = frozenset()
        self.wakes_total = 0  # quiesced groups woken because a node they need fell silent

    def heard(self, peer: int, now_ms: float) -> None:
        if peer in self._heard_ms:
            self._heard_ms[peer] = now_ms

    def refresh(self, now_ms: float) -> frozenset[int]:
        """Recompute :attr:`silent` as of ``now_ms``; returns it."""
        silent = []
        for peer, heard_ms in self._heard_ms.items():
            if heard_ms is None:
                self._heard_ms[peer] = now_ms
            elif now_ms - heard_ms > self.timeout_ms:
                silent.append(peer)
        self.silent = frozenset(silent)
        return self.silent

    def is_live(self, node: int) -> bool:
        return node == self.node_id or node not in self.silent

    def wake_if_stranded(self, core: QuiescentCore) -> bool:
        """Wake ``core`` if it is quiesced and a node it depends on is silent.

        A follower depends on its leader's node; a leader on a quorum of its voters'
        nodes (itself included). Returns True when it woke the core.
        """
        if not core.quiesced:
            return False
        if core.role is Role.LEADER:
            voters = core.conf_state.voters
            live = sum(1 for voter in voters if self.is_live(voter))
            stranded = live < len(voters) // 2 + 1
        else:
            stranded = not self.is_live(core.leader_id)
        if stranded:
            core.unquiesce()
            self.wakes_total += 1
        return stranded

    def wake_all_stranded(self, cores: Iterable[QuiescentCore]) -> int:
        """:meth:`wake_if_stranded` over ``cores`` when any peer is silent; how many woke."""
        if not self.silent:
            return 0
        return sum(1 for core in cores if self.wake_if_stranded(core))


