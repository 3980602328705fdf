"""The rules behind mutual TLS, without a cluster: who may say what, and when TLS is off.

- identity binding: a node's certificate speaks only for that node, about its shards;
- the role table of the interceptor, and the interceptor itself on a real TLS server;
- the topology's ``tls`` setting and the ``--insecure`` rule;
- the parser that turns gRPC's handshake trace into one log line per refusal.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import grpc
import pytest
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from hongbao.config.topology import TopologyError, load_topology, parse_topology
from hongbao.proto.gen.hongbao.v1 import peer_pb2, raft_pb2
from hongbao.security import certs
from hongbao.security.binding import PeerBinding
from hongbao.security.handshake_log import Refused, TraceParser
from hongbao.security.identity import Identity, Role, node_identity, parse_identity_uri
from hongbao.security.interceptor import LEDGER_ROLES, RoleInterceptor, allowed_roles
from hongbao.security.ratelimit import RateLimitedLog
from hongbao.security.tls import (
    TlsError,
    client_credentials_from,
    insecure_problem,
    load_files,
)

REPO = Path(__file__).resolve().parents[2]
FIVE = load_topology(REPO / "configs" / "five-nodes.toml")
LOCAL = REPO / "configs" / "local.toml"


def _message(sender: int) -> raft_pb2.Message:
    message = raft_pb2.Message(type=raft_pb2.MESSAGE_TYPE_HEARTBEAT, to=1, term=2)
    message.from_ = sender
    return message


def _batch(claimed: int, pairs: list[tuple[int, int]]) -> peer_pb2.RaftBatch:
    """A batch claiming ``claimed``, with one message per (shard, message sender)."""
    return peer_pb2.RaftBatch(
        from_node_id=claimed,
        messages=[peer_pb2.ShardMessage(shard_id=s, message=_message(m)) for s, m in pairs],
    )


# -- identity binding ------------------------------------------------------------------


def test_a_node_certificate_speaks_only_for_its_node_and_its_shards() -> None:
    binding = PeerBinding(FIVE)
    node = 2
    mine = [s for s in range(FIVE.shard_count) if node in FIVE.replicas_of(s)]
    theirs = [s for s in range(FIVE.shard_count) if node not in FIVE.replicas_of(s)]
    assert mine
    assert theirs  # five nodes, three replicas: node 2 lacks some shards
    me = node_identity(node)
    assert binding.batch_refusal(me, _batch(node, [(mine[0], node)])) == ""
    assert "claiming node 1" in binding.batch_refusal(me, _batch(1, [(mine[0], 1)]))
    assert "from node 1" in binding.batch_refusal(me, _batch(node, [(mine[0], 1)]))
    assert "no replica of shard" in binding.batch_refusal(me, _batch(node, [(theirs[0], node)]))
    chunk = peer_pb2.SnapshotChunk(shard_id=theirs[0], offset=0, data=b"x")
    staged = peer_pb2.RaftBatch(from_node_id=node, snapshot_chunks=[chunk])
    assert "no replica" in binding.batch_refusal(me, staged)
    last = peer_pb2.SnapshotChunk(shard_id=mine[0], last=True, message=_message(1))
    assert "from node 1" in binding.batch_refusal(
        me, peer_pb2.RaftBatch(from_node_id=node, snapshot_chunks=[last])
    )
    client = Identity(Role.CLIENT, "client")
    assert "only nodes" in binding.batch_refusal(client, _batch(node, []))
    assert "only nodes" in binding.batch_refusal(None, _batch(node, []))


def test_a_deliver_comes_only_from_its_node_about_a_shard_it_replicates() -> None:
    binding = PeerBinding(FIVE)
    source = next(s for s in range(FIVE.shard_count) if 2 in FIVE.replicas_of(s))
    foreign = next(s for s in range(FIVE.shard_count) if 2 not in FIVE.replicas_of(s))
    request = peer_pb2.DeliverRequest(from_node_id=2, source_shard=source)
    assert binding.deliver_refusal(node_identity(2), request) == ""
    assert "claiming node 2" in binding.deliver_refusal(node_identity(3), request)
    other = peer_pb2.DeliverRequest(from_node_id=2, source_shard=foreign)
    assert "no replica" in binding.deliver_refusal(node_identity(2), other)
    operator = Identity(Role.OPERATOR, "operator")
    assert "only nodes" in binding.deliver_refusal(operator, request)


def test_identity_uris_are_parsed_strictly() -> None:
    assert parse_identity_uri("hongbao://node/3") == Identity(Role.NODE, "3")
    assert parse_identity_uri("hongbao://operator/ops") == Identity(Role.OPERATOR, "ops")
    for bad in ("hongbao://node/0", "hongbao://node/x", "hongbao://king/1", "spiffe://node/1",
                "hongbao://client/", "hongbao://client/a/b"):  # fmt: skip
        assert parse_identity_uri(bad) is None, bad


# -- roles -----------------------------------------------------------------------------


def test_the_role_table() -> None:
    assert allowed_roles("/hongbao.v1.Peer/Stream") == {Role.NODE}
    assert allowed_roles("/hongbao.v1.Peer/Deliver") == {Role.NODE}
    assert allowed_roles("/hongbao.v1.Admin/TransferLeader") == {Role.OPERATOR}
    for method in ("/hongbao.v1.Wallet/Deposit", "/hongbao.v1.Envelopes/Grab",
                   "/hongbao.v1.Batch/Execute"):  # fmt: skip
        assert allowed_roles(method) == LEDGER_ROLES
        assert Role.NODE not in allowed_roles(method)
    assert allowed_roles("/grpc.health.v1.Health/Check") == set(Role)


def test_the_interceptor_guards_unary_and_streaming_handlers_on_a_tls_server(
    tmp_path: Path,
) -> None:
    """Health has a unary Check and a coroutine-style streaming Watch: both stay working
    for a role that may call them; a refused role gets PERMISSION_DENIED on both."""
    certs.init_certs(LOCAL, tmp_path, now=dt.datetime.now(dt.UTC))
    rules = {"/grpc.health.v1.Health/": frozenset({Role.OPERATOR})}

    async def scenario() -> dict[str, object]:
        server = grpc.aio.server(interceptors=[RoleInterceptor(rules)])
        health_pb2_grpc.add_HealthServicer_to_server(health.aio.HealthServicer(), server)
        node = load_files(tmp_path, node_identity(1))
        port = server.add_secure_port("127.0.0.1:0", node.server_credentials())
        await server.start()
        outcome: dict[str, object] = {}
        try:
            for stem in ("operator", "client"):
                identity = Identity(Role(stem), stem)
                files = load_files(tmp_path, identity)
                async with grpc.aio.secure_channel(
                    f"127.0.0.1:{port}", files.channel_credentials()
                ) as chan:
                    stub: Any = health_pb2_grpc.HealthStub(chan)
                    request = health_pb2.HealthCheckRequest()
                    try:
                        outcome[f"{stem} check"] = (await stub.Check(request, timeout=5)).status
                    except grpc.aio.AioRpcError as error:
                        outcome[f"{stem} check"] = error.code()
                    watch = stub.Watch(request, timeout=5)
                    try:
                        outcome[f"{stem} watch"] = (await watch.read()).status
                    except grpc.aio.AioRpcError as error:
                        outcome[f"{stem} watch"] = error.code()
                    watch.cancel()
        finally:
            await server.stop(0)
        return outcome

    serving = health_pb2.HealthCheckResponse.SERVING
    assert asyncio.run(scenario()) == {
        "operator check": serving,
        "operator watch": serving,
        "client check": grpc.StatusCode.PERMISSION_DENIED,
        "client watch": grpc.StatusCode.PERMISSION_DENIED,
    }


# -- when TLS is on, and --insecure ----------------------------------------------------


def _topology(host: str, **top: object) -> dict[str, object]:
    return {
        "shard_count": 1, "replication_factor": 1, "regions": [{"name": "a"}],
        "nodes": [{"id": 1, "region": "a", "host": host, "port": 7000}], **top,
    }  # fmt: skip


def test_tls_is_the_default_unless_every_host_is_loopback() -> None:
    assert not parse_topology(_topology("127.0.0.1")).tls
    assert not parse_topology(_topology("localhost")).tls
    assert parse_topology(_topology("10.1.2.3")).tls
    assert parse_topology(_topology("db1.example")).tls
    assert parse_topology(_topology("127.0.0.1", tls=True)).tls
    assert not parse_topology(_topology("10.1.2.3", tls=False)).tls
    # A router on a public address is as exposed as a node: TLS by default there too.
    public_router = [{"id": 1, "region": "a", "host": "10.1.2.4", "port": 7001}]
    assert parse_topology(_topology("127.0.0.1", routers=public_router)).tls
    loopback_router = [{"id": 1, "region": "a", "host": "127.0.0.1", "port": 7001}]
    assert not parse_topology(_topology("127.0.0.1", routers=loopback_router)).tls
    insecure = parse_topology(_topology("127.0.0.1", routers=public_router, tls=False))
    assert insecure_problem(insecure, insecure=False, starts_process=False) is not None
    with pytest.raises(TopologyError, match="tls: must be true or false"):
        parse_topology(_topology("127.0.0.1", tls="yes"))
    with pytest.raises(TopologyError, match="certs_dir"):
        parse_topology(_topology("127.0.0.1", certs_dir=""))


def test_certs_dir_is_relative_to_the_topology_file(tmp_path: Path) -> None:
    path = tmp_path / "conf" / "t.toml"
    path.parent.mkdir()
    path.write_text('tls = true\ncerts_dir = "../certs"\n' + LOCAL.read_text().replace(
        "tls = false\n", ""))  # fmt: skip
    assert load_topology(path).certs_dir == str((tmp_path / "certs").resolve())


def test_running_without_tls_needs_insecure() -> None:
    loopback = parse_topology(_topology("127.0.0.1", tls=False))
    remote = parse_topology(_topology("10.1.2.3", tls=False))
    secure = parse_topology(_topology("10.1.2.3"))
    assert "pass --insecure" in str(insecure_problem(loopback, insecure=False, starts_process=True))
    assert insecure_problem(loopback, insecure=False, starts_process=False) is None
    assert "not loopback" in str(insecure_problem(remote, insecure=False, starts_process=False))
    assert insecure_problem(remote, insecure=True, starts_process=True) is None
    assert insecure_problem(secure, insecure=False, starts_process=True) is None


def _hongbao(*args: str, environ: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "HONGBAO_CERTS_DIR"}
    return subprocess.run(
        [sys.executable, "-m", "hongbao.cli", *args], capture_output=True, text=True,
        timeout=60, cwd=REPO, check=False, env={**env, **(environ or {})},
    )  # fmt: skip


def _written(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "topology.toml"
    path.write_text(text)
    return path


def test_node_run_refuses_to_start_without_tls_or_insecure(tmp_path: Path) -> None:
    data = str(tmp_path / "data")
    plain = _written(tmp_path, LOCAL.read_text())  # tls = false
    refused = _hongbao("node", "run", "--config", str(plain), "--node", "1", "--data-dir", data)
    assert refused.returncode == 1
    assert "tls = false: pass --insecure" in refused.stderr
    secure = _written(tmp_path, LOCAL.read_text().replace("tls = false", "tls = true"))
    no_certs = _hongbao("node", "run", "--config", str(secure), "--node", "1", "--data-dir", data)
    assert no_certs.returncode == 1
    assert "names no certificates: pass --certs-dir DIR" in no_certs.stderr
    empty = tmp_path / "empty-certs"
    empty.mkdir()
    missing = _hongbao("node", "run", "--config", str(secure), "--node", "1",
                       "--data-dir", data, "--certs-dir", str(empty))  # fmt: skip
    assert missing.returncode == 1
    assert "cannot read the certificate of hongbao://node/1" in missing.stderr
    assert not (tmp_path / "data" / "node-1").exists() or "serving" not in missing.stderr


def test_a_client_command_refuses_a_remote_topology_without_tls(tmp_path: Path) -> None:
    remote = _written(tmp_path, LOCAL.read_text().replace('"127.0.0.1"', '"10.9.9.9"'))
    refused = _hongbao("wallet", "balance", "alice", "--config", str(remote))
    assert refused.returncode == 2
    assert "not loopback and says tls = false" in refused.stderr
    secure = _written(tmp_path, LOCAL.read_text().replace("tls = false", "tls = true"))
    no_certs = _hongbao("wallet", "balance", "alice", "--config", str(secure))
    assert no_certs.returncode == 2
    assert "names no certificates" in no_certs.stderr


def test_client_credentials_fall_back_on_the_other_role(tmp_path: Path) -> None:
    certs.init_certs(LOCAL, tmp_path, now=dt.datetime.now(dt.UTC))
    both = client_credentials_from(tmp_path)
    assert both.ledger.identity.role is Role.CLIENT
    assert both.admin.identity.role is Role.OPERATOR
    for suffix in (".crt", ".key"):
        (tmp_path / f"client{suffix}").unlink()
    only_operator = client_credentials_from(tmp_path)
    assert only_operator.one_identity
    assert only_operator.ledger.identity.role is Role.OPERATOR
    for suffix in (".crt", ".key"):
        (tmp_path / f"operator{suffix}").rename(tmp_path / f"node-9{suffix}")
    with pytest.raises(TlsError, match="no usable client or operator certificate"):
        client_credentials_from(tmp_path)
    with pytest.raises(TlsError, match="names hongbao://operator/operator, not hongbao://node/9"):
        load_files(tmp_path, node_identity(9))
    later = dt.datetime.now(dt.UTC) + dt.timedelta(days=certs.LEAF_DAYS_DEFAULT + 1)
    with pytest.raises(TlsError, match="expired on"):
        load_files(tmp_path, node_identity(1), now=later)


# -- the handshake trace ---------------------------------------------------------------

TRACE_FAILURE = [
    "I1201 23:52:34.636380    7776 ssl_transport_security.cc:2563] Handshake failed with "
    "error SSL_ERROR_SSL: error:1000007d:SSL routines:OPENSSL_internal:"
    "CERTIFICATE_VERIFY_FAILED: unable to get local issuer certificate",
    "I1201 23:52:34.636439    7776 handshaker.cc:155] CallNextHandshakerLocked: "
    "error=UNKNOWN: Ssl handshake failed (TSI_PROTOCOL_FAILURE): SSL_ERROR_SSL: "
    "error:1000007d:SSL routines:OPENSSL_internal:CERTIFICATE_VERIFY_FAILED: unable to get "
    "local issuer certificate: OK",
    "=== Source Location Trace: === ",
    "src/core/util/status_helper.cc:68",
    " shutdown=false index=2, args={endpoint=0x7f1ca4026b00, args={grpc.internal."
    "endpoint_local_address=ipv4:127.0.0.1:34039, grpc.internal.endpoint_peer_address="
    "ipv4:127.0.0.1:35382, grpc.internal.security_connector=0x557546382fd0, "
    "grpc.internal.server_credentials=0x5575462fac80}, read_buffer.Length()=0, exit_early=0}",
    "",
]


def test_the_trace_parser_reports_refusals_and_forwards_everything_else() -> None:
    parser = TraceParser()
    results = [parser.feed(line) for line in TRACE_FAILURE]
    assert [keep for keep, _ in results] == [False] * len(TRACE_FAILURE)
    refused = [r for _, r in results if r is not None]
    assert refused == [
        Refused(
            peer="ipv4:127.0.0.1:35382",
            incoming=True,
            reason="CERTIFICATE_VERIFY_FAILED: unable to get local issuer certificate",
        )
    ]
    ours = "2026-12-02 00:01:00,721 node-1 INFO hongbao.node.server: node 1 serving"
    assert parser.feed(ours) == (True, None)
    assert parser.feed("Traceback (most recent call last):") == (True, None)
    warning = "W1201 23:52:35.000001    7776 chttp2_transport.cc:1] something odd"
    assert parser.feed(warning) == (True, None)
    note = "W1201 23:52:12.948041 7511 log.cc:102] Log level INFO is not suitable for production."
    assert parser.feed(note) == (False, None)
    ok = (
        "I1201 23:52:35.000002    7776 handshaker.cc:155] CallNextHandshakerLocked: error=OK "
        "shutdown=false index=1, args={grpc.internal.endpoint_peer_address=ipv4:1.2.3.4:5}"
    )
    assert parser.feed(ok) == (False, None)


def test_refusal_logs_are_bounded_per_second(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    clock = [100.0]
    monkeypatch.setattr("hongbao.security.ratelimit.time.monotonic", lambda: clock[0])
    limited = RateLimitedLog(logging.getLogger("test.ratelimit"), 3, "refusals")
    with caplog.at_level(logging.WARNING, logger="test.ratelimit"):
        for n in range(50):
            limited.warning("refused %d", n)
        clock[0] = 101.0
        limited.warning("refused %d", 50)
    assert [r.getMessage() for r in caplog.records] == [
        "refused 0", "refused 1", "refused 2", "47 more refusals were not logged", "refused 50",
    ]  # fmt: skip
