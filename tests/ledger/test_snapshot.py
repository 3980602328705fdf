"""Snapshots: deterministic bytes, exact round trip, refusal of anything damaged."""

from __future__ import annotations

import pytest

from hongbao.ledger import (
    Deposit,
    EnvelopeKind,
    GrabEnvelope,
    MemoryStore,
    SendEnvelope,
    SnapshotError,
    Table,
    Transfer,
    dump,
    load,
    state_digest,
)
from hongbao.ledger.snapshot import parse

from .helpers import Cluster


def busy_cluster() -> Cluster:
    c = Cluster(shard_count=2)
    (alice,) = c.users(0, 1)
    (bob,) = c.users(1, 1)
    c.one(0, Deposit(c.rid(), alice, 10_000))
    c.one(0, Transfer(c.rid(), alice, bob, 100))
    c.one(0, SendEnvelope(c.rid(), alice, EnvelopeKind.LUCKY, 1_000, 3))
    c.one(0, GrabEnvelope(c.rid(), "e0-1", bob))
    return c


def test_dump_load_round_trips_exactly() -> None:
    c = busy_cluster()
    data = dump(c.stores[0])
    twin = MemoryStore()
    twin.put(Table.ACCOUNTS, b"stale", b"gone after load")
    load(twin, data)
    assert dump(twin) == data
    assert state_digest(twin) == state_digest(c.stores[0]) == data[-32:].hex()
    assert twin.get(Table.ACCOUNTS, b"stale") is None


def test_a_restored_replica_continues_identically() -> None:
    c = busy_cluster()
    restored = MemoryStore()
    load(restored, dump(c.stores[0]))
    twin = Cluster(shard_count=2)
    twin.stores[0], twin.log_index[0] = restored, c.log_index[0]
    (carol,) = c.users(0, 2)[1:]
    for cluster in (c, twin):
        cluster.one(0, GrabEnvelope("g-1", "e0-1", carol))
        cluster.one(0, Deposit("d-1", carol, 5))
    assert state_digest(twin.stores[0]) == state_digest(c.stores[0])


def test_damaged_snapshots_are_refused_before_anything_changes() -> None:
    data = dump(busy_cluster().stores[0])
    target = busy_cluster().stores[1]
    before = state_digest(target)
    flipped = bytearray(data)
    flipped[len(data) // 2] ^= 1
    for bad, why in (
        (bytes(flipped), "checksum"),
        (data[:-1], "checksum"),
        (b"NOTLEDGER" + data[9:], "not a hongbao"),
        (b"", "not a hongbao"),
    ):
        with pytest.raises(SnapshotError, match=why):
            load(target, bad)
    assert state_digest(target) == before


def test_parse_checks_structure_under_a_valid_checksum() -> None:
    import hashlib
    import struct

    def sealed(body: bytes) -> bytes:
        return body + hashlib.blake2b(body, digest_size=32).digest()

    with pytest.raises(SnapshotError, match="version"):
        parse(sealed(b"HBLEDGER" + struct.pack(">HH", 9, len(Table))))
    with pytest.raises(SnapshotError, match="tables"):
        parse(sealed(b"HBLEDGER" + struct.pack(">HH", 1, 3)))
    with pytest.raises(SnapshotError, match="truncated"):
        parse(sealed(b"HBLEDGER" + struct.pack(">HH", 1, len(Table))))
    body = dump(MemoryStore())[:-32]
    with pytest.raises(SnapshotError, match="trailing"):
        parse(sealed(body + b"x"))
