"""Helpers of the TLS tests: a 3-node cluster with mutual TLS, and callers with any identity.

Rules of this module: the certificates are made by the test in its own directory (never a
checked-in key); every channel opened is closed; waits are conditions with deadlines.
"""

from __future__ import annotations

import contextlib
import datetime as dt
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import grpc

from hongbao.node.server import cluster_id_of
from hongbao.ops.local import LocalCluster, write_topology
from hongbao.proto.gen.hongbao.v1 import peer_pb2, peer_pb2_grpc, raft_pb2
from hongbao.security import certs
from hongbao.security.certs import CertSpec
from hongbao.security.identity import Identity, Role
from tests.cluster.support import Harness, wait_for

REPO = Path(__file__).resolve().parents[2]
TLS_TEMPLATE = REPO / "configs" / "local-tls.toml"
CALL_TIMEOUT_S = 5.0
HANDSHAKE_LOG = "refused a TLS handshake from ipv4:127.0.0.1:"


@dataclass(frozen=True, slots=True)
class TlsCluster:
    harness: Harness
    certs_dir: Path  # the cluster's CA and certificates
    other_dir: Path  # a second CA with the same names: trusted by nobody here

    @property
    def cluster(self) -> LocalCluster:
        return self.harness.cluster

    @property
    def cluster_id(self) -> str:
        return cluster_id_of(self.harness.topology)

    def address(self, node_id: int) -> str:
        return self.harness.topology.node(node_id).address

    def log_count(self, node_id: int, text: str) -> int:
        path = self.cluster.log_path(node_id)
        return path.read_text(errors="replace").count(text) if path.exists() else 0

    def wait_logged(self, node_id: int, text: str, more_than: int) -> int:
        """Wait until ``text`` appears more than ``more_than`` times in the node's log."""
        return wait_for(
            lambda: n if (n := self.log_count(node_id, text)) > more_than else None,
            10.0,
            f"node {node_id} to log {text!r}",
        )


def files_of(directory: Path, stem: str) -> tuple[bytes, bytes, bytes]:
    """(ca, certificate, key) of ``stem`` in ``directory``."""
    return (
        (directory / "ca.crt").read_bytes(),
        (directory / f"{stem}.crt").read_bytes(),
        (directory / f"{stem}.key").read_bytes(),
    )


def credentials(
    trusted_ca_dir: Path, holder_dir: Path | None = None, stem: str | None = None
) -> grpc.ChannelCredentials:
    """Trusting ``trusted_ca_dir``'s CA, presenting ``holder_dir/stem`` (or no certificate)."""
    ca = (trusted_ca_dir / "ca.crt").read_bytes()
    if holder_dir is None or stem is None:
        return grpc.ssl_channel_credentials(root_certificates=ca)
    _, cert, key = files_of(holder_dir, stem)
    return grpc.ssl_channel_credentials(
        root_certificates=ca, private_key=key, certificate_chain=cert
    )


def add_expired_client(directory: Path) -> str:
    """An expired client certificate of the cluster CA; returns its file stem."""
    ca_cert, ca_key = certs.load_ca(directory)
    now = dt.datetime.now(dt.UTC)
    spec = CertSpec(Identity(Role.CLIENT, "expired"))
    certificate, key = certs.issue(
        ca_cert, ca_key, spec,
        not_before=now - dt.timedelta(days=30), not_after=now - dt.timedelta(days=1),
    )  # fmt: skip
    certs.write_pair(directory, "expired", certificate, key)
    return "expired"


@contextlib.contextmanager
def channel(address: str, creds: grpc.ChannelCredentials | None) -> Iterator[grpc.Channel]:
    """A sync channel: TLS with ``creds``, or plaintext when None."""
    made = grpc.insecure_channel(address) if creds is None else grpc.secure_channel(address, creds)
    try:
        yield made
    finally:
        made.close()


def failed_code(call: object) -> grpc.StatusCode:
    """The status code of a failed sync call (``call`` raised grpc.RpcError)."""
    assert isinstance(call, grpc.Call), call
    return call.code()


def stream_code(
    address: str, creds: grpc.ChannelCredentials | None, forged: peer_pb2.RaftBatch
) -> grpc.StatusCode:
    """Open a Peer stream, send ``forged``, and return how the stream was ended."""
    with channel(address, creds) as chan:
        responses = peer_pb2_grpc.PeerStub(chan).Stream(iter([forged]), timeout=CALL_TIMEOUT_S)
        try:
            list(responses)
        except grpc.RpcError as error:
            return failed_code(error)
    raise AssertionError("the stream was accepted")


def batch(
    cluster_id: str,
    *,
    claimed_from: int,
    to: int,
    messages: list[tuple[int, raft_pb2.Message]],
) -> peer_pb2.RaftBatch:
    return peer_pb2.RaftBatch(
        cluster_id=cluster_id,
        from_node_id=claimed_from,
        to_node_id=to,
        batch_seq=1,
        messages=[peer_pb2.ShardMessage(shard_id=s, message=m) for s, m in messages],
    )


@contextlib.contextmanager
def tls_cluster(root: Path) -> Iterator[TlsCluster]:
    """A started 3-node cluster of configs/local-tls.toml with certificates made here."""
    now = dt.datetime.now(dt.UTC)
    certs_dir = root / "certs"
    certs.init_certs(TLS_TEMPLATE, certs_dir, now=now)
    other_dir = root / "other-ca"
    certs.init_certs(TLS_TEMPLATE, other_dir, now=now)
    topology = write_topology(
        root / "topology.toml", template=TLS_TEMPLATE, overrides={"certs_dir": str(certs_dir)}
    )
    with LocalCluster(topology, root / "data", no_fsync=True) as cluster:
        harness = Harness(cluster)
        try:
            cluster.start()
            harness.leaders()
            yield TlsCluster(harness, certs_dir, other_dir)
        finally:
            harness.close()
