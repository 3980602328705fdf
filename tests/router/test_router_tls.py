"""A router with mutual TLS: it serves with router-N.crt, dials the nodes with it, and
clients reach the ledger through it with client.crt; a plaintext caller is refused."""

from __future__ import annotations

import asyncio
import datetime as dt
from pathlib import Path

import grpc
import pytest

from hongbao.client.sdk import HongbaoClient
from hongbao.ops.local import LocalCluster, write_topology
from hongbao.proto.gen.hongbao.v1 import ledger_pb2, ledger_pb2_grpc
from hongbao.security import certs
from tests.cluster.support import Harness
from tests.router.support import routers_of

pytestmark = pytest.mark.cluster
REPO = Path(__file__).resolve().parents[2]
ROUTERS = "".join(
    f'\n[[routers]]\nid = {i}\nregion = "{name}"\nhost = "127.0.0.1"\nport = {7200 + i}\n'
    for i, name in enumerate(("shenzhen", "shanghai", "tianjin"), start=1)
)


def test_a_tls_router_serves_clients_with_certificates_only(tmp_path: Path) -> None:
    template = tmp_path / "template.toml"
    template.write_text((REPO / "configs" / "local-tls.toml").read_text() + ROUTERS)
    certs_dir = tmp_path / "certs"
    certs.init_certs(template, certs_dir, now=dt.datetime.now(dt.UTC))
    assert (certs_dir / "router-1.crt").exists()
    config = write_topology(
        tmp_path / "topology.toml", template=template, overrides={"certs_dir": str(certs_dir)}
    )
    with LocalCluster(config, tmp_path / "data", no_fsync=True) as cluster:
        harness = Harness(cluster)
        try:
            cluster.start()
            harness.leaders()
            topology = harness.topology
            assert topology.tls
            with routers_of(config, topology, tmp_path) as routers:
                routers.start(topology.routers[0])

                async def main() -> None:
                    async with HongbaoClient.via_routers(topology, region="shenzhen") as c:
                        assert await c.deposit("tls-r", 70) == 70
                        assert (await c.balance("tls-r")).balance_fen == 70
                    address = topology.routers[0].address
                    async with grpc.aio.insecure_channel(address) as plain:
                        with pytest.raises(grpc.aio.AioRpcError) as refused:
                            await ledger_pb2_grpc.WalletStub(plain).Balance(
                                ledger_pb2.BalanceRequest(user_id="tls-r"), timeout=3
                            )
                        assert refused.value.code() is grpc.StatusCode.UNAVAILABLE

                asyncio.run(main())
        finally:
            harness.close()
