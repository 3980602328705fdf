"""The contract every :class:`~hongbao.ledger.store.LedgerStore` must meet.

The LMDB store in ``hongbao.node`` runs the same checks: call :func:`check_store_contract`
with a factory that returns a fresh, empty store (for LMDB: a write transaction on a new
environment, one shard's tables).
"""

from __future__ import annotations

from collections.abc import Callable

import pytest

from hongbao._invariant import InvariantViolation
from hongbao.ledger.store import KEY_BYTES_MAX, LedgerStore, Table, iterate


def check_store_contract(make_store: Callable[[], LedgerStore]) -> None:
    for check in CHECKS:
        check(make_store())


def _get_put_delete(store: LedgerStore) -> None:
    assert store.get(Table.ACCOUNTS, b"a") is None
    store.put(Table.ACCOUNTS, b"a", b"1")
    store.put(Table.ACCOUNTS, b"a", b"2")  # overwrite
    assert store.get(Table.ACCOUNTS, b"a") == b"2"
    assert store.get(Table.ENVELOPES, b"a") is None  # tables are separate
    store.delete(Table.ACCOUNTS, b"a")
    store.delete(Table.ACCOUNTS, b"a")  # deleting a missing key is fine
    assert store.get(Table.ACCOUNTS, b"a") is None
    store.put(Table.ACCOUNTS, b"e", b"")  # empty values are values
    assert store.get(Table.ACCOUNTS, b"e") == b""


def _scan_order_prefix_start_limit(store: LedgerStore) -> None:
    keys = [b"b\x00\x01", b"a", b"b", b"b\x00", b"b\xff", b"c", b"\x00", b"\xff\xff"]
    for key in keys:
        store.put(Table.HISTORY, key, key[::-1])
    everything = store.scan(Table.HISTORY, limit=100)
    assert [k for k, _ in everything] == sorted(keys)  # plain byte order
    assert all(v == k[::-1] for k, v in everything)
    under_b = [k for k, _ in store.scan(Table.HISTORY, prefix=b"b", limit=100)]
    assert under_b == [b"b", b"b\x00", b"b\x00\x01", b"b\xff"]
    from_b0 = [k for k, _ in store.scan(Table.HISTORY, prefix=b"b", start=b"b\x00\x00", limit=100)]
    assert from_b0 == [b"b\x00\x01", b"b\xff"]  # start is inclusive, prefix still applies
    before_prefix = store.scan(Table.HISTORY, prefix=b"b", start=b"a", limit=100)
    assert [k for k, _ in before_prefix] == under_b  # a start below the prefix is ignored
    assert [k for k, _ in store.scan(Table.HISTORY, prefix=b"b", limit=2)] == under_b[:2]
    assert store.scan(Table.HISTORY, prefix=b"d", limit=5) == []
    assert store.scan(Table.HISTORY, start=b"\xff\xff\x00", limit=5) == []


def _scan_result_is_a_snapshot(store: LedgerStore) -> None:
    for n in range(5):
        store.put(Table.OUTBOX, bytes([n]), b"x")
    rows = store.scan(Table.OUTBOX, limit=10)
    for key, _ in rows:  # writing while walking a materialised result is allowed
        store.delete(Table.OUTBOX, key)
        store.put(Table.OUTBOX, key + b"!", b"y")
    assert len(rows) == 5
    assert [k for k, _ in store.scan(Table.OUTBOX, limit=10)] == [
        bytes([n]) + b"!" for n in range(5)
    ]


def _iterate_pages(store: LedgerStore) -> None:
    keys = sorted(n.to_bytes(2, "big") for n in range(300))
    for key in reversed(keys):
        store.put(Table.JOURNAL, key, b"v")
    assert [k for k, _ in iterate(store, Table.JOURNAL, page_size=7)] == keys
    assert [k for k, _ in iterate(store, Table.JOURNAL, prefix=b"\x00", page_size=16)] == keys[:256]


def _keys_are_bounded_bytes(store: LedgerStore) -> None:
    store.put(Table.META, b"k" * KEY_BYTES_MAX, b"v")
    with pytest.raises(InvariantViolation):
        store.put(Table.META, b"k" * (KEY_BYTES_MAX + 1), b"v")
    with pytest.raises(InvariantViolation):
        store.put(Table.META, b"", b"v")
    with pytest.raises(InvariantViolation):
        store.scan(Table.META, limit=0)


CHECKS = (
    _get_put_delete,
    _scan_order_prefix_start_limit,
    _scan_result_is_a_snapshot,
    _iterate_pages,
    _keys_are_bounded_bytes,
)
