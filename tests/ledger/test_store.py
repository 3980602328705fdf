from __future__ import annotations

from hongbao.ledger.store import LedgerStore, MemoryStore, Table

from .store_contract import check_store_contract


def test_memory_store_meets_the_contract() -> None:
    check_store_contract(MemoryStore)


def test_memory_store_is_a_ledger_store() -> None:
    assert isinstance(MemoryStore(), LedgerStore)


def test_copy_is_independent() -> None:
    original = MemoryStore()
    original.put(Table.ACCOUNTS, b"a", b"1")
    twin = original.copy()
    twin.put(Table.ACCOUNTS, b"a", b"2")
    twin.put(Table.ACCOUNTS, b"b", b"3")
    assert original.get(Table.ACCOUNTS, b"a") == b"1"
    assert original.scan(Table.ACCOUNTS, limit=10) == [(b"a", b"1")]
    assert twin.row_count(Table.ACCOUNTS) == 2
