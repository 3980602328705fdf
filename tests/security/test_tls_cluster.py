"""A 3-node cluster with mutual TLS on every link: it commits, and it refuses strangers.

Real ``hongbao node run`` processes on 127.0.0.1, certificates made by the test. Callers
without a certificate of the cluster CA (another CA, expired, none, plaintext) fail the
handshake, and the node logs each refusal with the caller's address; callers with one
may call only what their role allows.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import grpc
import pytest

from hongbao.client.sdk import HongbaoClient
from hongbao.proto.gen.hongbao.v1 import (
    admin_pb2,
    admin_pb2_grpc,
    ledger_pb2,
    ledger_pb2_grpc,
)
from tests.cluster.support import users_per_shard, wait_for
from tests.security.tls_support import (
    CALL_TIMEOUT_S,
    HANDSHAKE_LOG,
    TlsCluster,
    add_expired_client,
    batch,
    channel,
    credentials,
    failed_code,
    stream_code,
    tls_cluster,
)

pytestmark = pytest.mark.cluster

DEPOSIT_FEN = 50_000
TRANSFER_FEN = 1_234


@pytest.fixture(scope="module")
def tls(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TlsCluster]:
    """One TLS cluster for the module; at the end quiesced, stopped and audited."""
    with tls_cluster(tmp_path_factory.mktemp("tls")) as cluster:
        yield cluster
        cluster.harness.quiesce_stop_audit()  # replicas agree, money is conserved


def test_a_tls_cluster_commits_deposits_and_a_cross_shard_transfer(tls: TlsCluster) -> None:
    topology = tls.harness.topology
    assert topology.tls
    users = users_per_shard(topology, 1, "tls-user-")
    payer, payee = users[0][0], users[5][0]

    async def workload() -> tuple[int, int]:
        async with HongbaoClient(topology) as client:  # client.crt of the topology's certs
            for user in (payer, payee):
                assert await client.deposit(user, DEPOSIT_FEN) == DEPOSIT_FEN
            sent = await client.transfer(payer, payee, TRANSFER_FEN)
            assert sent.cross_shard
            assert sent.from_balance_fen == DEPOSIT_FEN - TRANSFER_FEN
            credited = DEPOSIT_FEN + TRANSFER_FEN
            for _ in range(200):  # the credit crosses shards through the courier (TLS too)
                balance = await client.balance(payee)
                if balance.balance_fen == credited:
                    break
                await asyncio.sleep(0.05)
            payer_balance = await client.balance(payer)
            return int(payer_balance.balance_fen), int(balance.balance_fen)

    payer_fen, payee_fen = asyncio.run(workload())
    assert (payer_fen, payee_fen) == (DEPOSIT_FEN - TRANSFER_FEN, DEPOSIT_FEN + TRANSFER_FEN)
    assert payer_fen + payee_fen == 2 * DEPOSIT_FEN  # nothing made or lost in transit


@pytest.mark.parametrize(
    ("case", "reason"),
    [
        ("another CA", "CERTIFICATE_VERIFY_FAILED"),
        ("expired", "certificate has expired"),
        ("no certificate", "PEER_DID_NOT_RETURN_A_CERTIFICATE"),
    ],
)
def test_callers_without_a_valid_cluster_certificate_fail_the_handshake_and_are_logged(
    tls: TlsCluster, case: str, reason: str
) -> None:
    if case == "another CA":
        creds = credentials(tls.certs_dir, tls.other_dir, "client")
    elif case == "expired":
        creds = credentials(tls.certs_dir, tls.certs_dir, add_expired_client(tls.certs_dir))
    else:
        creds = credentials(tls.certs_dir)
    logged = tls.log_count(1, HANDSHAKE_LOG)
    with channel(tls.address(1), creds) as chan:
        wallet = ledger_pb2_grpc.WalletStub(chan)
        with pytest.raises(grpc.RpcError) as refused:
            wallet.Balance(ledger_pb2.BalanceRequest(user_id="alice"), timeout=CALL_TIMEOUT_S)
    assert failed_code(refused.value) == grpc.StatusCode.UNAVAILABLE
    tls.wait_logged(1, HANDSHAKE_LOG, logged)
    lines = [
        line
        for line in tls.cluster.log_path(1).read_text(errors="replace").splitlines()
        if HANDSHAKE_LOG in line
    ]
    assert any(reason in line for line in lines), lines[-5:]


def test_a_plaintext_caller_gets_nothing_and_is_logged(tls: TlsCluster) -> None:
    logged = tls.log_count(2, HANDSHAKE_LOG)
    with channel(tls.address(2), None) as chan:
        admin = admin_pb2_grpc.AdminStub(chan)
        with pytest.raises(grpc.RpcError) as refused:
            admin.Status(admin_pb2.StatusRequest(), timeout=CALL_TIMEOUT_S)
    assert failed_code(refused.value) == grpc.StatusCode.UNAVAILABLE
    tls.wait_logged(2, HANDSHAKE_LOG, logged)


def test_each_role_may_call_only_its_services(tls: TlsCluster) -> None:
    certs_dir = tls.certs_dir
    status = admin_pb2.StatusRequest()
    with channel(tls.address(1), credentials(certs_dir, certs_dir, "client")) as chan:
        with pytest.raises(grpc.RpcError) as admin_refused:
            admin_pb2_grpc.AdminStub(chan).Status(status, timeout=CALL_TIMEOUT_S)
        assert failed_code(admin_refused.value) == grpc.StatusCode.PERMISSION_DENIED
        details = str(admin_refused.value)
        assert "needs a certificate of role operator" in details
        assert "hongbao://client/client" in details
        # What a client may do, it can: a read of an unknown account is answered.
        with pytest.raises(grpc.RpcError) as unknown:
            ledger_pb2_grpc.WalletStub(chan).Balance(
                ledger_pb2.BalanceRequest(user_id="nobody-here", stale_ok=True),
                timeout=CALL_TIMEOUT_S,
            )
        assert failed_code(unknown.value) == grpc.StatusCode.NOT_FOUND
    with channel(tls.address(1), credentials(certs_dir, certs_dir, "operator")) as chan:
        answered = admin_pb2_grpc.AdminStub(chan).Status(status, timeout=CALL_TIMEOUT_S)
        assert answered.node_id == 1
    empty = batch(tls.cluster_id, claimed_from=2, to=1, messages=[])
    for stem in ("client", "operator"):  # nothing but nodes may open Peer streams
        creds = credentials(certs_dir, certs_dir, stem)
        assert stream_code(tls.address(1), creds, empty) == grpc.StatusCode.PERMISSION_DENIED
    with channel(tls.address(1), credentials(certs_dir, certs_dir, "node-2")) as chan:
        with pytest.raises(grpc.RpcError) as node_wallet:
            ledger_pb2_grpc.WalletStub(chan).Balance(
                ledger_pb2.BalanceRequest(user_id="alice"), timeout=CALL_TIMEOUT_S
            )
        assert failed_code(node_wallet.value) == grpc.StatusCode.PERMISSION_DENIED
    assert tls.log_count(1, "refused /hongbao.v1.Admin/Status from ipv4:127.0.0.1:") >= 1


def test_the_operator_commands_work_over_tls(tls: TlsCluster) -> None:
    leaders = wait_for(
        lambda: tls.harness.leaders() or None, 10.0, "the leaders, through operator.crt"
    )
    assert set(leaders) == set(range(tls.harness.topology.shard_count))


def test_a_stranger_node_certificate_cannot_open_a_peer_stream(tls: TlsCluster) -> None:
    creds = credentials(tls.certs_dir, tls.other_dir, "node-2")  # right name, wrong CA
    empty = batch(tls.cluster_id, claimed_from=2, to=1, messages=[])
    assert stream_code(tls.address(1), creds, empty) == grpc.StatusCode.UNAVAILABLE


def test_the_cluster_still_serves_after_the_refusals(tls: TlsCluster) -> None:
    for node_id in tls.cluster.node_ids:
        assert tls.cluster.is_running(node_id)
    assert set(tls.harness.leaders()) == set(range(tls.harness.topology.shard_count))
