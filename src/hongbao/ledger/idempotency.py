"""Remember each client command's first result, so a retry changes nothing.

Rules of this module: a client command is keyed by its ``request_id``. The first time it
applies, its result is stored with a fingerprint of the command; a retry with the same
fingerprint gets that stored result back and touches nothing; the same id with a different
command is refused (REQUEST_ID_REUSED) and the stored result stays. Beyond
``Limits.idempotency_results_max`` ids per shard the oldest *by apply order* is evicted
(a second table maps apply ordinal -> the shard clock then and the request id), but never
one younger than ``Limits.idempotency_retention_ms``: a retry within that time always gets
the first result. A retry that comes after its id was evicted is applied again, so the
retention must exceed the clients' retry horizon. A *fenced* id (a request status that
found nothing: :class:`~hongbao.ledger.commands.Fence`) is one more remembered id, and
ages out the same way. Lookups never write, so a retry leaves
the store byte-identical.
"""

from __future__ import annotations

from dataclasses import dataclass

from hongbao._invariant import fail, invariant
from hongbao.ledger.books import Books, state_with_idempotency
from hongbao.ledger.codec import registered
from hongbao.ledger.records import load, save, u64
from hongbao.ledger.results import Result
from hongbao.ledger.store import LedgerStore, Table

EVICTIONS_PER_RECORD_MAX = 8
"""Ids evicted per new id at most: after SetLimits shrinks the window, it drains over a few
commands instead of one unbounded apply."""


@registered("idempotency_record")
@dataclass(frozen=True, slots=True)
class IdempotencyRecord:
    request_id: str
    ordinal: int  # apply order among remembered ids
    fingerprint: str  # of the command, or FENCED_FINGERPRINT
    result: Result
    command: str  # the codec tag of the command ("fence" for a fenced id)


FENCED_FINGERPRINT = "fenced"
"""The fingerprint of a fenced id: never a digest (those are 32 hex digits), so no command
matches it and every later use of the id is refused (REQUEST_FENCED)."""


def lookup(store: LedgerStore, request_id: str) -> IdempotencyRecord | None:
    return load(store, Table.IDEMPOTENCY, request_id.encode("ascii"), IdempotencyRecord)


def remember(
    books: Books, *, request_id: str, fingerprint: str, result: Result, command: str
) -> None:
    """Store ``result`` as the answer to ``request_id`` and evict beyond the window."""
    key = request_id.encode("ascii")
    if books.store.get(Table.IDEMPOTENCY, key) is not None:
        fail(f"{request_id} remembered twice")
    state = books.state
    ordinal = state.idempotency_ordinal_last + 1
    record = IdempotencyRecord(request_id, ordinal, fingerprint, result, command)
    save(books.store, Table.IDEMPOTENCY, key, record)
    books.store.put(Table.IDEMPOTENCY_ORDER, u64(ordinal), u64(books.now_ms) + key)
    count = state.idempotency_count + 1
    overflow = min(count - books.limits.idempotency_results_max, EVICTIONS_PER_RECORD_MAX)
    if overflow > 0:
        kept_after_ms = books.now_ms - books.limits.idempotency_retention_ms
        # Remembered ordinals are contiguous: each new id takes the next one, and eviction
        # removes the oldest in order. So the oldest live one is known, and eviction reads
        # rows by key instead of scanning (a scan would also have to merge a leader's
        # speculative writes: see ledger/overlay.py).
        oldest = ordinal - count + 1
        for order_key in [u64(o) for o in range(oldest, oldest + overflow)]:
            value = books.store.get(Table.IDEMPOTENCY_ORDER, order_key)
            if value is None:
                fail(f"idempotency ordinal {int.from_bytes(order_key, 'big')} is missing")
            remembered_at_ms, old_key = int.from_bytes(value[:8], "big"), value[8:]
            if remembered_at_ms > kept_after_ms:
                break  # this one and every later one are within the retention: keep them
            invariant(old_key != key, "evicting the id just remembered")
            books.store.delete(Table.IDEMPOTENCY_ORDER, order_key)
            books.store.delete(Table.IDEMPOTENCY, old_key)
            count -= 1
    books.state = state_with_idempotency(state, ordinal_last=ordinal, count=count)
    invariant(count >= 1, "the id just remembered must be counted")
