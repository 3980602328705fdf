"""A small harness over several in-memory shards, shared by the ledger tests."""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field, replace
from typing import TypeVar

from hongbao.ledger import (
    Acknowledge,
    AuditReport,
    Batch,
    Command,
    Limits,
    MemoryStore,
    Ok,
    Reason,
    Rejected,
    Result,
    apply_entry,
    audit,
    deliver_command,
    encode_batch,
    inbox_seq,
    init_shard,
    outbox_destinations,
    pending_outbox,
    shard_for_user,
)
from hongbao.ledger.books import read_state
from hongbao.ledger.records import META_APPLIED_INDEX, META_STATE
from hongbao.ledger.snapshot import table_digests
from hongbao.ledger.store import Table, iterate

T = TypeVar("T")

T0_MS = 1_700_000_000_000  # a fixed, realistic epoch for the tests' clocks


def users_on(shard_id: int, shard_count: int, count: int, stem: str = "u") -> list[str]:
    """The first ``count`` user ids ``{stem}{n}`` that live on ``shard_id``."""
    found = (f"{stem}{n}" for n in itertools.count())
    return list(
        itertools.islice((u for u in found if shard_for_user(u, shard_count) == shard_id), count)
    )


@dataclass
class Cluster:
    """``shard_count`` shards, each one store, applying through encoded log entries."""

    shard_count: int = 3
    limits: Limits = field(default_factory=Limits)
    now_ms: int = T0_MS
    stores: dict[int, MemoryStore] = field(default_factory=dict)
    log_index: dict[int, int] = field(default_factory=dict)
    _request_ids: itertools.count[int] = field(default_factory=itertools.count)

    def __post_init__(self) -> None:
        for shard_id in range(self.shard_count):
            self.stores[shard_id] = MemoryStore()
            init_shard(
                self.stores[shard_id],
                shard_id=shard_id,
                shard_count=self.shard_count,
                limits=self.limits,
            )
            self.log_index[shard_id] = 0

    def rid(self) -> str:
        return f"req-{next(self._request_ids)}"

    def shard_of(self, user_id: str) -> int:
        return shard_for_user(user_id, self.shard_count)

    def users(self, shard_id: int, count: int, stem: str = "u") -> list[str]:
        return users_on(shard_id, self.shard_count, count, stem)

    def apply(self, shard_id: int, *commands: Command, ts_ms: int | None = None) -> list[Result]:
        """Commit one entry holding ``commands`` on ``shard_id`` (through the codec)."""
        batch = Batch(ts_ms=self.now_ms if ts_ms is None else ts_ms, commands=commands)
        self.log_index[shard_id] += 1
        entry = apply_entry(
            self.stores[shard_id], index=self.log_index[shard_id], data=encode_batch(batch)
        )
        assert entry.malformed is None
        return list(entry.results)

    def one(self, shard_id: int, command: Command, ts_ms: int | None = None) -> Result:
        (result,) = self.apply(shard_id, command, ts_ms=ts_ms)
        return result

    def deliver_all(self) -> int:
        """Run the courier until every outbox is empty; returns deliveries applied."""
        applied = 0
        progress = True
        while progress:
            progress = False
            for source in range(self.shard_count):
                for destination in outbox_destinations(self.stores[source]):
                    entries = pending_outbox(self.stores[source], destination, 100)
                    results = self.apply(destination, *(deliver_command(e) for e in entries))
                    applied += sum(1 for r in results if isinstance(r, Ok) and r.data.applied)
                    seq = inbox_seq(self.stores[destination], source)
                    ack = self.one(source, Acknowledge(destination, seq))
                    assert isinstance(ack, Ok), ack
                    progress = True
        return applied

    def audit(self) -> AuditReport:
        report = audit(self.stores, deep=True)
        assert report.ok, report.problems
        return report


def ok(result: Result, cls: type[T]) -> T:
    """The data of an Ok result, checked to be a ``cls``."""
    assert isinstance(result, Ok), result
    assert isinstance(result.data, cls), result.data
    return result.data


def refused(result: Result, reason: Reason) -> Rejected:
    assert isinstance(result, Rejected), result
    assert result.reason is reason, result
    return result


def money_view(store: MemoryStore) -> tuple[object, ...]:
    """Everything about a shard but its request-id memory and clock: what a refusal keeps."""
    digests = table_digests(store)
    kept = tuple(
        digests[table]
        for table in Table
        if table not in (Table.IDEMPOTENCY, Table.IDEMPOTENCY_ORDER, Table.META)
    )
    state = replace(read_state(store), clock_ms=0, idempotency_ordinal_last=0, idempotency_count=0)
    return (*kept, state)


def all_but_time(store: MemoryStore) -> tuple[object, ...]:
    """Every row of a shard except the applied index and the clock: what a retry keeps."""
    digests = table_digests(store)
    meta = [
        row for row in iterate(store, Table.META) if row[0] not in (META_APPLIED_INDEX, META_STATE)
    ]
    state = replace(read_state(store), clock_ms=0)
    return (*(digests[t] for t in Table if t is not Table.META), tuple(meta), state)
