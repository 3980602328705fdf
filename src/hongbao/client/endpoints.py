"""The SDK's channels and stubs, one set per address it talks to (a node or a router).

Why a module of its own: the ledger stubs ride one channel, Admin another when the
certificates hold two identities (client and operator), and the same book serves
node-direct and router mode, so the client only ever asks "the stubs of that address".
"""

from __future__ import annotations

import grpc

from hongbao.config.topology import Topology
from hongbao.net.channels import channel_options, open_channel
from hongbao.proto.gen.hongbao.v1 import admin_pb2_grpc, ledger_pb2_grpc
from hongbao.security.tls import ClientCredentials, client_credentials


class Stubs:
    """The ledger stubs ride one channel, Admin another when its identity differs."""

    def __init__(self, ledger: grpc.aio.Channel, admin: grpc.aio.Channel) -> None:
        self.wallet = ledger_pb2_grpc.WalletStub(ledger)
        self.envelopes = ledger_pb2_grpc.EnvelopesStub(ledger)
        self.batch = ledger_pb2_grpc.BatchStub(ledger)
        self.admin = admin_pb2_grpc.AdminStub(admin)


class StubBook:
    """Channels opened lazily per address, all closed by :meth:`close`."""

    def __init__(
        self,
        topology: Topology,
        credentials: ClientCredentials | None,
        message_bytes_max: int,
    ) -> None:
        # TLS: raises TlsError when the certificates are missing or bad.
        credentials = (credentials or client_credentials(topology)) if topology.tls else None
        self._ledger_credentials = (
            credentials.ledger.channel_credentials() if credentials is not None else None
        )
        self._admin_credentials = self._ledger_credentials
        if credentials is not None and not credentials.one_identity:
            self._admin_credentials = credentials.admin.channel_credentials()
        self._options = channel_options(message_bytes_max)
        self._channels: dict[str, list[grpc.aio.Channel]] = {}
        self._stubs: dict[str, Stubs] = {}

    def of(self, address: str) -> Stubs:
        stubs = self._stubs.get(address)
        if stubs is None:
            ledger = open_channel(address, self._ledger_credentials, self._options)
            admin = ledger
            if self._admin_credentials is not self._ledger_credentials:
                admin = open_channel(address, self._admin_credentials, self._options)
            self._channels[address] = [ledger] if admin is ledger else [ledger, admin]
            stubs = self._stubs[address] = Stubs(ledger, admin)
        return stubs

    async def close(self) -> None:
        for channels in self._channels.values():
            for channel in channels:
                await channel.close()
        self._channels.clear()
        self._stubs.clear()
