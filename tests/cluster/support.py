"""Helpers for the multi-process tests: a running cluster, probed over gRPC and LMDB.

Rules of this module: every wait is a condition polled until a deadline (never a bare
sleep); every process and channel it opens it also closes, on every exit path. Only
127.0.0.1 is used (the topology template's hosts are rewritten by ``write_topology``).
"""

from __future__ import annotations

import contextlib
import signal
import subprocess
import time
import tomllib
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import grpc
import pytest

from hongbao.config.topology import Topology
from hongbao.ledger.sharding import shard_for_user
from hongbao.ledger.store import Table, iterate
from hongbao.node.errors import HongbaoError, error_from_rpc_error
from hongbao.ops.audit import ClusterAuditReport, audit_cluster, node_dir, read_node
from hongbao.ops.local import STOP_TIMEOUT_S, LocalCluster, write_topology
from hongbao.proto.gen.hongbao.v1 import admin_pb2, admin_pb2_grpc, ledger_pb2_grpc
from hongbao.security.tls import client_credentials

REPO = Path(__file__).resolve().parents[2]
TEMPLATE = REPO / "configs" / "local.toml"
STATUS_TIMEOUT_S = 1.0
POLL_S = 0.05
LEADERS_TIMEOUT_S = 30.0
QUIESCE_TIMEOUT_S = 60.0

T = TypeVar("T")


def make_topology(
    path: Path, *, limits: dict[str, int] | None = None, runtime: dict[str, int] | None = None
) -> Path:
    """A copy of configs/local.toml with fresh ports and, optionally, other [limits] and a
    [runtime] table (the node runtime's limits, e.g. a small snapshot interval)."""
    overrides: dict[str, object] = {}
    if limits:
        merged = dict(tomllib.loads(TEMPLATE.read_text()).get("limits", {}))
        merged.update(limits)
        overrides["limits"] = merged
    if runtime:
        overrides["runtime"] = dict(runtime)
    return write_topology(path, template=TEMPLATE, overrides=overrides)


def wait_for(
    probe: Callable[[], T | None], timeout_s: float, what: str, poll_s: float = POLL_S
) -> T:
    """Poll ``probe`` until it returns something other than None (or False); return it."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = probe()
        if value is not None and value is not False:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout_s} s waiting for {what}")
        time.sleep(poll_s)


def users_per_shard(topology: Topology, per_shard: int, prefix: str) -> dict[int, list[str]]:
    """``per_shard`` user ids on every shard (deterministic: ``{prefix}{n}``)."""
    found: dict[int, list[str]] = {s: [] for s in range(topology.shard_count)}
    n = 0
    while any(len(users) < per_shard for users in found.values()):
        user = f"{prefix}{n}"
        n += 1
        shard = shard_for_user(user, topology.shard_count)
        if len(found[shard]) < per_shard:
            found[shard].append(user)
    return found


@dataclass(frozen=True, slots=True)
class ShardView:
    """One shard as the cluster's running nodes report it at one moment."""

    shard_id: int
    leader: int  # 0 when the running nodes do not agree on one
    replicas: dict[int, admin_pb2.ShardStatus]  # node -> its status of this shard

    @property
    def leader_status(self) -> admin_pb2.ShardStatus:
        return self.replicas[self.leader]


class Harness:
    """A LocalCluster plus synchronous gRPC stubs and LMDB peeks for the tests."""

    def __init__(self, cluster: LocalCluster) -> None:
        self.cluster = cluster
        self.topology = cluster.topology
        self._channels: dict[int, grpc.Channel] = {}

    # -- channels and stubs --------------------------------------------------------------

    def channel(self, node_id: int) -> grpc.Channel:
        channel = self._channels.get(node_id)
        if channel is None:
            address = self.topology.node(node_id).address
            credentials = client_credentials(self.topology)  # None: tls = false
            if credentials is None:
                channel = grpc.insecure_channel(address)
            else:  # the operator's certificate: Status (Admin) and the ledger alike
                channel = grpc.secure_channel(address, credentials.admin.channel_credentials())
            self._channels[node_id] = channel
        return channel

    def forget_channel(self, node_id: int) -> None:
        """Drop a channel (after a node restarts, a fresh one skips reconnect back-off)."""
        channel = self._channels.pop(node_id, None)
        if channel is not None:
            channel.close()

    def wallet(self, node_id: int) -> ledger_pb2_grpc.WalletStub:
        return ledger_pb2_grpc.WalletStub(self.channel(node_id))

    def envelopes(self, node_id: int) -> ledger_pb2_grpc.EnvelopesStub:
        return ledger_pb2_grpc.EnvelopesStub(self.channel(node_id))

    def batch(self, node_id: int) -> ledger_pb2_grpc.BatchStub:
        return ledger_pb2_grpc.BatchStub(self.channel(node_id))

    def close(self) -> None:
        for node_id in list(self._channels):
            self.forget_channel(node_id)

    # -- status --------------------------------------------------------------------------

    def status(self, node_id: int) -> admin_pb2.StatusResponse | None:
        """The node's Admin.Status, or None if it is not running or does not answer."""
        if not self.cluster.is_running(node_id):
            return None
        stub = admin_pb2_grpc.AdminStub(self.channel(node_id))
        try:
            response: admin_pb2.StatusResponse = stub.Status(
                admin_pb2.StatusRequest(), timeout=STATUS_TIMEOUT_S
            )
        except grpc.RpcError:
            self.forget_channel(node_id)
            return None
        return response

    def running(self) -> list[int]:
        return [n for n in self.cluster.node_ids if self.cluster.is_running(n)]

    def shard_views(self) -> dict[int, ShardView] | None:
        """Every shard's view over the running nodes; None if a running node is silent."""
        statuses: dict[int, admin_pb2.StatusResponse] = {}
        for node_id in self.running():
            status = self.status(node_id)
            if status is None:
                return None
            statuses[node_id] = status
        views: dict[int, ShardView] = {}
        for shard_id in range(self.topology.shard_count):
            replicas = {
                node_id: shard
                for node_id, status in statuses.items()
                for shard in status.shards
                if shard.shard_id == shard_id
            }
            leaders = [n for n, s in replicas.items() if s.role == admin_pb2.ROLE_LEADER]
            leader = 0
            if len(leaders) == 1:
                term = replicas[leaders[0]].term
                agreed = all(
                    s.leader_node_id == leaders[0] and s.term == term for s in replicas.values()
                )
                leader = leaders[0] if agreed else 0
            views[shard_id] = ShardView(shard_id, leader, replicas)
        return views

    def leaders(self) -> dict[int, int]:
        """shard -> leader, once every shard has a leader all running replicas agree on."""

        def probe() -> dict[int, int] | None:
            views = self.shard_views()
            if views is None or any(v.leader == 0 for v in views.values()):
                return None
            return {s: v.leader for s, v in views.items()}

        return wait_for(probe, LEADERS_TIMEOUT_S, "every shard to have an agreed leader")

    def log_positions(self, shard_ids: Iterable[int] | None = None) -> dict[tuple[int, int], int]:
        """(node, shard) -> last log index, of every running node (for "nothing appended")."""
        wanted = set(range(self.topology.shard_count) if shard_ids is None else shard_ids)
        views = wait_for(self.shard_views, LEADERS_TIMEOUT_S, "every node to answer Status")
        return {
            (node_id, shard_id): int(status.last_index)
            for shard_id, view in views.items()
            if shard_id in wanted
            for node_id, status in view.replicas.items()
        }

    def terms(self) -> dict[tuple[int, int], int]:
        views = wait_for(self.shard_views, LEADERS_TIMEOUT_S, "every node to answer Status")
        return {
            (node_id, shard_id): int(status.term)
            for shard_id, view in views.items()
            for node_id, status in view.replicas.items()
        }

    # -- LMDB peeks ----------------------------------------------------------------------

    def outbox_entries(self, node_id: int) -> int:
        """Outbox rows of every shard on ``node_id`` (read-only, the node may run)."""
        with read_node(node_dir(self.cluster.data_dir, node_id)) as reader:
            return sum(
                sum(1 for _ in iterate(reader.store(shard_id), Table.OUTBOX))
                for shard_id in self.topology.shards_on(node_id)
            )

    # -- quiescence, stopping, auditing ---------------------------------------------------

    def quiescent_views(self) -> dict[int, ShardView] | None:
        """The views if the running cluster is quiet now, else None.

        Quiet: no outbox entry left on any running node (read first, so that nothing seen
        afterwards can still be caused by a delivery), then every shard has an agreed
        leader whose commit index is its last index, and every running replica has
        applied exactly that index.
        """
        if any(self.outbox_entries(node_id) for node_id in self.running()):
            return None
        views = self.shard_views()
        if views is None:
            return None
        for view in views.values():
            if view.leader == 0:
                return None
            commit = view.leader_status.commit_index
            if view.leader_status.last_index != commit:
                return None
            if any(
                s.commit_index != commit or s.applied_index != commit
                for s in view.replicas.values()
            ):
                return None
        return views

    def wait_quiescent(self, timeout_s: float = QUIESCE_TIMEOUT_S) -> dict[int, ShardView]:
        """Wait until the cluster is quiet twice in a row with the same indexes."""
        previous: list[dict[int, int]] = []

        def probe() -> dict[int, ShardView] | None:
            views = self.quiescent_views()
            if views is None:
                previous.clear()
                return None
            commits = {s: int(v.leader_status.commit_index) for s, v in views.items()}
            if previous and previous[-1] == commits:
                return views
            previous[:] = [commits]
            return None

        return wait_for(probe, timeout_s, "the cluster to quiesce", poll_s=0.1)

    def stop_all(self) -> None:
        """SIGTERM every running node at once, then wait; each must exit cleanly."""
        running = self.running()
        for node_id in running:
            self.cluster.signal(node_id, signal.SIGTERM)
        codes: dict[int, int] = {}
        for node_id in running:
            # Wait here rather than in LocalCluster.stop, which would signal once more: a
            # second SIGTERM after asyncio.run has removed its handlers kills with -15.
            process = self.cluster.processes[node_id]
            try:
                codes[node_id] = process.wait(STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                # Hung: SIGABRT makes faulthandler (PYTHONFAULTHANDLER, set in conftest)
                # write every thread's stack into the node's log before it dies.
                process.send_signal(signal.SIGABRT)
                with contextlib.suppress(subprocess.TimeoutExpired):
                    process.wait(STOP_TIMEOUT_S)
                self.cluster.close()
                raise AssertionError(
                    f"node {node_id} ignored SIGTERM for {STOP_TIMEOUT_S} s:\n"
                    + self.cluster.tail(node_id, 80)
                ) from None
        self.close()
        bad = {n: c for n, c in codes.items() if c != 0}
        assert not bad, f"nodes exited uncleanly: {bad}\n" + "\n".join(
            self.cluster.tail(n) for n in bad
        )

    def quiesce_stop_audit(self) -> ClusterAuditReport:
        """Quiesce, stop every node, and audit their environments; the audit must pass."""
        views = self.wait_quiescent()
        self.stop_all()
        report = audit_cluster(self.cluster.data_dir, self.topology, deep=True)
        assert report.ok, report.describe()
        for shard_id, view in views.items():
            commit = int(view.leader_status.commit_index)
            for node_id in self.topology.replicas_of(shard_id):
                applied = report.replica(int(node_id), shard_id).applied_index
                assert applied == commit, (
                    f"shard {shard_id} on node {node_id}: applied {applied}, leader commit"
                    f" {commit} at quiescence"
                )
        return report


def rpc_error(call: Callable[[], object]) -> tuple[grpc.StatusCode, HongbaoError]:
    """Run a sync gRPC call that must fail; its status code and decoded error."""
    with pytest.raises(grpc.RpcError) as caught:
        call()
    error = caught.value
    if not isinstance(error, grpc.Call):
        raise AssertionError(f"not a failed call: {error!r}")
    return error.code(), error_from_rpc_error(error)


@contextlib.contextmanager
def running_cluster(
    root: Path,
    *,
    no_fsync: bool = True,
    node_args: Iterable[str] = (),
    limits: dict[str, int] | None = None,
    runtime: dict[str, int] | None = None,
) -> Iterator[Harness]:
    """A started 3-node cluster whose shards all have leaders; killed on every exit path."""
    root.mkdir(parents=True, exist_ok=True)
    config = make_topology(root / "topology.toml", limits=limits, runtime=runtime)
    with LocalCluster(config, root / "data", no_fsync=no_fsync, node_args=node_args) as cluster:
        harness = Harness(cluster)
        try:
            cluster.start()
            harness.leaders()
            yield harness
        finally:
            harness.close()
