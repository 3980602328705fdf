"""The probes of security-probe.md that need an identity, against a cluster with TLS on.

Each forged message is sent twice: from a process with no certificate (only the CA, to
be able to talk TLS at all), which fails the handshake, and with node 2's certificate
claiming to be node 1 (or with a client's certificate), which the node refuses with
PERMISSION_DENIED. Afterwards no leader moved, no term changed, and the forged money
exists nowhere; the audit at teardown checks conservation on every replica.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import grpc
import pytest

from hongbao.ledger.commands import Deliver, Deposit, encode_command
from hongbao.ledger.records import CreditKind
from hongbao.proto.gen.hongbao.v1 import (
    admin_pb2,
    admin_pb2_grpc,
    ledger_pb2,
    ledger_pb2_grpc,
    peer_pb2,
    peer_pb2_grpc,
    raft_pb2,
)
from tests.security.tls_support import (
    CALL_TIMEOUT_S,
    TlsCluster,
    batch,
    channel,
    credentials,
    failed_code,
    stream_code,
    tls_cluster,
)

pytestmark = pytest.mark.cluster

MALLORY = "mallory"
FORGED_DEPOSIT_FEN = 5_000_000
FORGED_CREDIT_FEN = 1_000_000_000


@pytest.fixture(scope="module")
def tls(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TlsCluster]:
    with tls_cluster(tmp_path_factory.mktemp("tls-probes")) as cluster:
        yield cluster
        cluster.harness.quiesce_stop_audit()


def _cast(tls: TlsCluster, shard: int) -> tuple[int, int, int]:
    """(the shard's leader, whom the forger claims to be; a follower, the target; the
    forger, the third node, whose own certificate it holds)."""
    leader = tls.harness.leaders()[shard]
    follower, forger = (n for n in tls.cluster.node_ids if n != leader)
    return leader, follower, forger


def _send_stream(tls: TlsCluster, to: int, creds: grpc.ChannelCredentials,
                 forged: peer_pb2.RaftBatch) -> grpc.StatusCode:  # fmt: skip
    return stream_code(tls.address(to), creds, forged)


def _no_certificate(tls: TlsCluster) -> grpc.ChannelCredentials:
    return credentials(tls.certs_dir)  # trusts the cluster CA, presents nothing


def _as(tls: TlsCluster, stem: str) -> grpc.ChannelCredentials:
    return credentials(tls.certs_dir, tls.certs_dir, stem)


def _probe_stream(
    tls: TlsCluster,
    cast: tuple[int, int, int],
    make: Callable[[int], peer_pb2.RaftBatch],
) -> None:
    """``make(batch_sender)``: refused at the handshake, then for what its certificate says."""
    leader, to, forger = cast
    denied = grpc.StatusCode.PERMISSION_DENIED
    assert _send_stream(tls, to, _no_certificate(tls), make(leader)) == grpc.StatusCode.UNAVAILABLE
    logged = tls.log_count(to, "refused a peer stream from ipv4:127.0.0.1:")
    assert _send_stream(tls, to, _as(tls, f"node-{forger}"), make(leader)) == denied
    tls.wait_logged(to, "refused a peer stream from ipv4:127.0.0.1:", logged)
    # Its own id on the batch but the leader's on the message: refused just the same.
    assert _send_stream(tls, to, _as(tls, f"node-{forger}"), make(forger)) == denied
    assert _send_stream(tls, to, _as(tls, "client"), make(leader)) == denied


def _message(kind: int, *, claimed: int, to: int, term: int, **fields: object) -> raft_pb2.Message:
    message = raft_pb2.Message(type=kind, to=to, term=term, **fields)  # type: ignore[arg-type]
    message.from_ = claimed  # the forger claims to be the shard's real leader
    return message


def test_a_forged_append_claiming_another_node_does_not_pass(tls: TlsCluster) -> None:
    shard = 5
    cast = leader, follower, _ = _cast(tls, shard)
    terms_before = tls.harness.terms()
    positions = tls.harness.log_positions([shard])
    term = terms_before[(follower, shard)]
    last = positions[(follower, shard)]
    entry = raft_pb2.Entry(
        term=term + 1, index=last + 1,
        data=encode_command(Deposit(request_id="forged", user_id=MALLORY,
                                    amount_fen=FORGED_DEPOSIT_FEN)),
    )  # fmt: skip
    append = _message(
        raft_pb2.MESSAGE_TYPE_APP, claimed=leader, to=follower, term=term + 1, log_term=term,
        index=last, entries=[entry], commit=last + 1,
    )  # fmt: skip

    def forged(sender: int) -> peer_pb2.RaftBatch:
        return batch(tls.cluster_id, claimed_from=sender, to=follower, messages=[(shard, append)])

    _probe_stream(tls, cast, forged)
    assert tls.harness.terms() == terms_before
    _assert_no_mallory(tls)


def test_forged_timeout_now_and_heartbeats_do_not_pass(tls: TlsCluster) -> None:
    shard = 5
    cast = leader, follower, _ = _cast(tls, shard)
    leaders_before = tls.harness.leaders()
    terms_before = tls.harness.terms()
    term = terms_before[(follower, shard)]
    timeout_now = _message(
        raft_pb2.MESSAGE_TYPE_TIMEOUT_NOW, claimed=leader, to=follower, term=term
    )
    heartbeat = _message(
        raft_pb2.MESSAGE_TYPE_HEARTBEAT, claimed=leader, to=follower, term=term + 1
    )
    for message in (timeout_now, heartbeat):

        def forged(sender: int, message: raft_pb2.Message = message) -> peer_pb2.RaftBatch:
            pairs = [(shard, message)]
            return batch(tls.cluster_id, claimed_from=sender, to=follower, messages=pairs)

        _probe_stream(tls, cast, forged)
    assert tls.harness.leaders() == leaders_before
    assert tls.harness.terms() == terms_before


def test_a_forged_deliver_does_not_pass(tls: TlsCluster) -> None:
    destination, source = 5, 6
    leader = tls.harness.leaders()[destination]
    source_leader = tls.harness.leaders()[source]
    forger = next(n for n in tls.cluster.node_ids if n not in (leader, source_leader))
    credit = Deliver(source_shard=source, seq=1, user_id=MALLORY, amount_fen=FORGED_CREDIT_FEN,
                     kind=CreditKind.TRANSFER, ref="forged")  # fmt: skip
    request = peer_pb2.DeliverRequest(  # claims the source's leader, on the forger's cert
        cluster_id=tls.cluster_id, from_node_id=source_leader,
        source_shard=source, destination_shard=destination,
        commands=[encode_command(credit)],
    )  # fmt: skip

    def deliver(creds: grpc.ChannelCredentials) -> grpc.StatusCode:
        with channel(tls.address(leader), creds) as chan, pytest.raises(grpc.RpcError) as refused:
            peer_pb2_grpc.PeerStub(chan).Deliver(request, timeout=CALL_TIMEOUT_S)
        return failed_code(refused.value)

    assert deliver(_no_certificate(tls)) == grpc.StatusCode.UNAVAILABLE
    logged = tls.log_count(leader, "refused a Deliver from ipv4:127.0.0.1:")
    assert deliver(_as(tls, f"node-{forger}")) == grpc.StatusCode.PERMISSION_DENIED
    tls.wait_logged(leader, "refused a Deliver from ipv4:127.0.0.1:", logged)
    assert deliver(_as(tls, "client")) == grpc.StatusCode.PERMISSION_DENIED
    _assert_no_mallory(tls)


def test_transfer_leader_needs_an_operator_certificate(tls: TlsCluster) -> None:
    leaders_before = tls.harness.leaders()
    shard = 5
    leader, target, _ = _cast(tls, shard)
    request = admin_pb2.TransferLeaderRequest(shard_id=shard, target_node_id=target, wait_ms=500)

    def transfer(creds: grpc.ChannelCredentials) -> grpc.StatusCode:
        with channel(tls.address(leader), creds) as chan, pytest.raises(grpc.RpcError) as refused:
            admin_pb2_grpc.AdminStub(chan).TransferLeader(request, timeout=CALL_TIMEOUT_S)
        return failed_code(refused.value)

    assert transfer(_no_certificate(tls)) == grpc.StatusCode.UNAVAILABLE
    assert transfer(_as(tls, "client")) == grpc.StatusCode.PERMISSION_DENIED
    assert transfer(_as(tls, f"node-{target}")) == grpc.StatusCode.PERMISSION_DENIED
    assert tls.harness.leaders() == leaders_before


def _assert_no_mallory(tls: TlsCluster) -> None:
    """The forged money exists on no replica (each answers from its own state)."""
    for node_id in tls.cluster.node_ids:
        with channel(tls.address(node_id), _as(tls, "operator")) as chan:
            wallet = ledger_pb2_grpc.WalletStub(chan)
            with pytest.raises(grpc.RpcError) as missing:
                wallet.Balance(
                    ledger_pb2.BalanceRequest(user_id=MALLORY, stale_ok=True),
                    timeout=CALL_TIMEOUT_S,
                )
            assert failed_code(missing.value) == grpc.StatusCode.NOT_FOUND, node_id
