"""What the bench talks to: the routers (as clients do) or the nodes directly.

Rules of this module: the bench's workloads see one small interface,
:class:`BenchClient`, which both the node-direct smart client and the client that goes
through the routers provide, so the same run measures either, and a run with
``--compare-targets`` measures both on one cluster with one set of users. Admin calls
(waiting for leaders, for a quiet cluster) always go to the nodes: they are not what is
measured.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from hongbao.client.sdk import ClientOptions, HongbaoClient
from hongbao.config.topology import Topology
from hongbao.proto.gen.hongbao.v1 import ledger_pb2

TARGETS = ("routers", "nodes")


class BenchClient(Protocol):
    """The calls a workload makes; every one has the client's deadline and retries."""

    retries: int

    def user_shard(self, user_id: str) -> int: ...

    def envelope_shard(self, envelope_id: str) -> int: ...

    async def execute(
        self, operations: Sequence[tuple[int, ledger_pb2.Operation]]
    ) -> list[ledger_pb2.OperationResult]: ...

    async def balance(
        self, user_id: str, *, stale_ok: bool = False
    ) -> ledger_pb2.BalanceResponse: ...

    async def transfer(
        self, from_user_id: str, to_user_id: str, amount_fen: int, request_id: str = ""
    ) -> ledger_pb2.TransferResponse: ...

    async def send_envelope(
        self,
        sender_user_id: str,
        total_fen: int,
        count: int,
        *,
        lucky: bool = True,
        request_id: str = "",
    ) -> ledger_pb2.SendResponse: ...

    async def grab(
        self, envelope_id: str, user_id: str, request_id: str = ""
    ) -> ledger_pb2.GrabResponse: ...

    async def close(self) -> None: ...


def default_target(topology: Topology) -> str:
    """``routers`` when the topology names any, else ``nodes``."""
    return "routers" if topology.routers else "nodes"


def open_client(topology: Topology, target: str, options: ClientOptions) -> BenchClient:
    """A client for ``target``; the caller closes it."""
    if target == "nodes":
        return HongbaoClient(topology, options)
    if target != "routers":
        raise ValueError(f"target must be one of {', '.join(TARGETS)}")
    if not topology.routers:
        raise ValueError("the topology names no [[routers]]: use --target nodes")
    return router_client(topology, options)


def router_client(topology: Topology, options: ClientOptions) -> BenchClient:
    """The SDK's router mode, its own region being the first router's."""
    region = topology.routers[0].region
    return HongbaoClient.via_routers(topology, options, region=region)
