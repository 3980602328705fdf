"""Audit a whole cluster offline, from its nodes' LMDB environments.

Rules of this module: read-only, always. Each node's environment is opened with LMDB's
``readonly`` flag (nothing is created, no format key is written, no sync is done), so the
audit can never change what it audits. :func:`audit_cluster` is meant for a STOPPED
cluster (after quiescence: every outbox drained, every replica applied up to its leader's
commit index): then the replicas of a shard must be byte-identical and one replica of
every shard forms the consistent cut that :func:`hongbao.ledger.audit` needs. On a
running cluster it still reads safely (LMDB readers never block the writer), but the
stores of different nodes and shards are then read at different moments and may
disagree; :func:`read_node` is there for such live peeks (the tests use it to wait until
outboxes are empty).

What it checks:

- every node of the topology has an environment holding every shard placed on it;
- all replicas of a shard have the same applied index (one that has not is named as
  behind, with how far) and, at that index, the same
  :func:`~hongbao.ledger.snapshot.state_digest` (a mismatch names the tables that differ);
- :func:`hongbao.ledger.audit` over the most advanced replica of every shard:
  conservation exact to the fen, no negative balance, envelopes consistent, outbox
  sequences gap-free (with ``deep`` the journal is replayed too);
- with ``require_drained``, that no outbox holds an entry (the couriers delivered and
  acknowledged everything).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import lmdb

from hongbao.config.topology import Topology
from hongbao.ledger import machine
from hongbao.ledger.audit import AuditReport, audit
from hongbao.ledger.snapshot import state_digest, table_digests
from hongbao.ledger.store import LedgerStore, Table, iterate
from hongbao.node.storage import LmdbLedgerStore

_MAP_SIZE_BYTES: Final = 64 << 30  # as the nodes open it (address space only)
_TABLES_MAX: Final = 32


def node_dir(data_dir: Path, node_id: int) -> Path:
    """Where ``hongbao node run --data-dir DATA_DIR --node ID`` keeps its environment."""
    return Path(data_dir) / f"node-{node_id}"


class NodeReader:
    """One read transaction on one node's environment: a consistent view of all its shards."""

    def __init__(self, dbs: dict[str, lmdb._Database], txn: lmdb.Transaction[bytes]) -> None:
        self._dbs = dbs
        self._txn = txn

    def store(self, shard_id: int) -> LedgerStore:
        return LmdbLedgerStore(self._dbs, self._txn, shard_id, writable=False)


@contextmanager
def read_node(path: Path) -> Iterator[NodeReader]:
    """A read-only view of the node environment at ``path`` (running or stopped).

    Raises ``FileNotFoundError`` when there is no environment there.
    """
    if not (Path(path) / "data.mdb").exists():
        raise FileNotFoundError(f"no LMDB environment in {path}")
    env = lmdb.open(
        str(path),
        readonly=True,
        subdir=True,
        map_size=_MAP_SIZE_BYTES,
        max_dbs=_TABLES_MAX,
        readahead=False,
        create=False,
    )
    try:
        with env.begin(write=False) as txn:
            dbs = {
                f"ledger.{table.value}": env.open_db(
                    f"ledger.{table.value}".encode(), txn=txn, create=False
                )
                for table in Table
            }
            yield NodeReader(dbs, txn)
    finally:
        env.close()


@dataclass(frozen=True, slots=True)
class ReplicaState:
    node_id: int
    shard_id: int
    applied_index: int
    digest: str
    outbox_entries: int


@dataclass(frozen=True, slots=True)
class ClusterAuditReport:
    problems: tuple[str, ...]
    ledger: AuditReport | None  # None when some shard had no readable replica at all
    replicas: tuple[ReplicaState, ...]

    @property
    def ok(self) -> bool:
        return not self.problems

    @property
    def outbox_entries(self) -> int:
        """Undelivered or unacknowledged outbox entries, counted once per shard."""
        seen: dict[int, int] = {}
        for replica in self.replicas:
            seen.setdefault(replica.shard_id, replica.outbox_entries)
        return sum(seen.values())

    def replica(self, node_id: int, shard_id: int) -> ReplicaState:
        for replica in self.replicas:
            if replica.node_id == node_id and replica.shard_id == shard_id:
                return replica
        raise KeyError(f"no replica of shard {shard_id} on node {node_id}")

    def describe(self) -> str:
        lines = [f"cluster audit: {'ok' if self.ok else 'FAILED'}"]
        lines += [f"  problem: {problem}" for problem in self.problems]
        if self.ledger is not None:
            report = self.ledger
            lines.append(
                f"  balances {report.balances_fen} + escrow {report.escrow_fen} + undelivered"
                f" {report.undelivered_fen} fen; deposits {report.deposits_fen} - withdrawals"
                f" {report.withdrawals_fen} fen; {report.accounts} accounts,"
                f" {report.envelopes} envelopes"
            )
        return "\n".join(lines)


def audit_cluster(
    data_dir: Path,
    topology: Topology,
    *,
    deep: bool = True,
    require_drained: bool = True,
) -> ClusterAuditReport:
    """Check every replica of every shard under ``data_dir`` (see the module docstring)."""
    problems: list[str] = []
    replicas: list[ReplicaState] = []
    chosen: dict[int, LedgerStore] = {}
    with ExitStack() as stack:
        readers: dict[int, NodeReader] = {}
        for spec in topology.nodes:
            node_id = int(spec.node_id)
            try:
                readers[node_id] = stack.enter_context(read_node(node_dir(data_dir, node_id)))
            except (FileNotFoundError, lmdb.Error) as error:
                problems.append(f"node {node_id}: cannot read its environment: {error}")
        for shard_id in range(topology.shard_count):
            states = _shard_replicas(shard_id, topology, readers, problems)
            # the most advanced replica first: the one compared against and audited
            states.sort(key=lambda pair: -pair[0].applied_index)
            replicas.extend(state for state, _ in states)
            if not states:
                problems.append(f"shard {shard_id}: no readable replica")
                continue
            _compare_replicas(shard_id, states, problems)
            chosen[shard_id] = states[0][1]
            if require_drained and states[0][0].outbox_entries:
                problems.append(
                    f"shard {shard_id}: {states[0][0].outbox_entries} outbox entries were"
                    " never delivered and acknowledged"
                )
        ledger: AuditReport | None = None
        if len(chosen) == topology.shard_count:
            ledger = audit(chosen, deep=deep)
            problems.extend(f"ledger: {problem}" for problem in ledger.problems)
    return ClusterAuditReport(tuple(problems), ledger, tuple(replicas))


def _shard_replicas(
    shard_id: int,
    topology: Topology,
    readers: dict[int, NodeReader],
    problems: list[str],
) -> list[tuple[ReplicaState, LedgerStore]]:
    states: list[tuple[ReplicaState, LedgerStore]] = []
    for node in topology.replicas_of(shard_id):
        reader = readers.get(int(node))
        if reader is None:
            continue
        store = reader.store(shard_id)
        if not machine.is_initialised(store):
            problems.append(f"shard {shard_id}: node {node} holds no replica of it")
            continue
        outbox_entries = sum(1 for _ in iterate(store, Table.OUTBOX))
        state = ReplicaState(
            node_id=int(node),
            shard_id=shard_id,
            applied_index=machine.applied_index(store),
            digest=state_digest(store),
            outbox_entries=outbox_entries,
        )
        states.append((state, store))
    return states


def _compare_replicas(
    shard_id: int, states: list[tuple[ReplicaState, LedgerStore]], problems: list[str]
) -> None:
    """Replicas at the most advanced one's applied index must be identical; one at a lower
    index is reported as behind (it had not caught up when the cluster stopped: a liveness
    finding, not a divergence) and not compared, since its state is legitimately older."""
    first, first_store = states[0]
    for other, other_store in states[1:]:
        if other.applied_index < first.applied_index:
            problems.append(
                f"shard {shard_id}: node {other.node_id} is behind node {first.node_id}:"
                f" applied {other.applied_index} of {first.applied_index}"
                f" ({first.applied_index - other.applied_index} entries not applied when"
                " the cluster stopped; not compared)"
            )
            continue
        if other.digest == first.digest:
            continue
        tables_a, tables_b = table_digests(first_store), table_digests(other_store)
        differ = sorted(t.value for t in Table if tables_a[t] != tables_b[t])
        problems.append(
            f"shard {shard_id}: node {first.node_id} (applied {first.applied_index}) and node"
            f" {other.node_id} (applied {other.applied_index}) differ in tables {differ}"
        )
