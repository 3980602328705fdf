"""The SDK's two modes: which routers it prefers, and when it picks routers at all."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from hongbao.client.sdk import ClientOptions, HongbaoClient
from hongbao.config.topology import load_topology
from hongbao.node.errors import RetryableError
from hongbao.ops.local import free_ports, write_topology
from hongbao.proto.gen.hongbao.v1 import ledger_pb2

TEMPLATE = Path(__file__).resolve().parents[2] / "configs" / "local.toml"


def test_own_regions_router_first_then_the_others(tmp_path: Path) -> None:
    topology = load_topology(write_topology(tmp_path / "t.toml", template=TEMPLATE))
    client = HongbaoClient.via_routers(topology, region="tianjin")
    assert [r.region for r in client.routers] == ["tianjin", "shenzhen", "shanghai"]
    assert client.via_router == topology.routers_in("tianjin")[0]
    assert HongbaoClient.for_target(topology).routers  # auto: routers when the file has them
    assert not HongbaoClient.for_target(topology, target="nodes").routers
    with pytest.raises(ValueError, match="target"):
        HongbaoClient.for_target(topology, target="sideways")


def test_all_routers_gone_ends_unavailable_within_the_deadline(tmp_path: Path) -> None:
    """Nothing listens on any router port: each is tried once at once, then back-off,
    and the call ends with a retryable error within its deadline."""
    config = write_topology(tmp_path / "t.toml", template=TEMPLATE, ports=free_ports(6))
    topology = load_topology(config)

    async def main() -> None:
        options = ClientOptions(timeout_s=0.5, attempts_max=6, deadline_s=3.0)
        async with HongbaoClient.via_routers(topology, options, region="shanghai") as client:
            loop = asyncio.get_running_loop()
            started = loop.time()
            with pytest.raises(RetryableError) as failed:
                await client.execute(
                    [(0, ledger_pb2.Operation(balance=ledger_pb2.BalanceRequest(user_id="a")))]
                )
            assert loop.time() - started < 4.0
            assert client.router_failovers >= 2
            assert failed.value.outcome_unknown  # no router said it was not applied

    asyncio.run(main())
