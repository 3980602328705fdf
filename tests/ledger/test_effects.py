"""Effects entries: what a leader's evaluation writes, as the log carries it.

Round trips keep every write in order (deflated); a replica refuses (skips and counts,
the same on every replica) anything else: garbage, a zlib stream truncated, padded or
inflating past its bound, an unknown table, a key out of bounds, a write of the applied
index, a shard state that does not balance. Fuzzed: the decoder raises nothing but
CodecError.
"""

from __future__ import annotations

import contextlib
import zlib
from dataclasses import replace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hongbao.ledger import Batch, Deposit, MemoryStore, Table, apply_batch, apply_entry, init_shard
from hongbao.ledger.books import read_state
from hongbao.ledger.codec import CodecError, encode
from hongbao.ledger.effects import (
    EFFECTS_BYTES_MAX,
    EFFECTS_MARKER,
    apply_effects,
    decode_effects,
    encode_effects,
    is_effects,
)
from hongbao.ledger.machine import applied_index
from hongbao.ledger.overlay import OverlayStore, Speculation
from hongbao.ledger.records import META_APPLIED_INDEX, META_STATE, ShardState
from hongbao.ledger.snapshot import dump

from .helpers import T0_MS, users_on

(ALICE,) = users_on(0, 1, 1, "alice")


def shard() -> MemoryStore:
    store = MemoryStore()
    init_shard(store, shard_id=0, shard_count=1)
    return store


def evaluated(store: MemoryStore, *commands: Deposit) -> bytes:
    speculation = Speculation()
    speculation.reset(term=1, start_index=0)
    view = OverlayStore(store, speculation)
    apply_batch(view, Batch(ts_ms=T0_MS, commands=commands))
    return encode_effects(view.writes())


def test_a_deposit_as_effects_leaves_the_store_a_command_apply_leaves() -> None:
    by_command, by_effects = shard(), shard()
    apply_batch(by_command, Batch(ts_ms=T0_MS, commands=(Deposit("d-1", ALICE, 500),)))
    data = evaluated(by_effects, Deposit("d-1", ALICE, 500))
    assert is_effects(data)
    assert data[0] == EFFECTS_MARKER
    applied = apply_entry(by_effects, index=1, data=data)
    assert applied.effects
    assert applied.results == ()
    assert applied.malformed is None
    assert applied_index(by_effects) == 1
    by_command.put(Table.META, META_APPLIED_INDEX, (1).to_bytes(8, "big"))
    assert dump(by_effects) == dump(by_command)


def test_writes_round_trip_in_order() -> None:
    writes = [
        (Table.OUTBOX, b"k1", b"v1"),
        (Table.ACCOUNTS, b"k2", None),
        (Table.IDEMPOTENCY_ORDER, b"\x00" * 8, b""),
    ]
    assert decode_effects(encode_effects(writes)) == writes


def deflated(packed: bytes) -> bytes:
    return bytes([EFFECTS_MARKER]) + zlib.compress(packed)


def unbalanced_state() -> bytes:
    return encode(replace(ShardState(), balances_fen=1))


@pytest.mark.parametrize(
    ("data", "why"),
    [
        (bytes([EFFECTS_MARKER]) + b"no zlib header", "not zlib"),
        (deflated(b"\xc1"), "effects:"),
        (deflated(b"\x91\x93\x63\xc4\x01k\xc0"), "no table 99"),
        (encode_effects([])[:-2], "truncated"),
        (encode_effects([]) + b"x", "followed by other bytes"),
        (deflated(b"\x00" * (EFFECTS_BYTES_MAX + 1)), "once inflated"),
        (encode_effects([(Table.OUTBOX, b"x" * 508, b"v")]), "key of 508 bytes"),
        (encode_effects([(Table.META, META_APPLIED_INDEX, b"\x00" * 8)]), "applied index"),
        (encode_effects([(Table.META, META_STATE, unbalanced_state())]), "does not balance"),
        (encode_effects([(Table.META, META_STATE, None)]), "state is deleted"),
        (encode_effects([(Table.META, META_STATE, b"\x01garbage")]), "shard state"),
    ],
)
def test_a_bad_entry_is_refused_and_skipped_alike_everywhere(data: bytes, why: str) -> None:
    with pytest.raises(CodecError, match=why):
        decode_effects(data)
    replicas = [shard(), shard()]
    for store in replicas:
        applied = apply_entry(store, index=1, data=data)
        assert applied.malformed is not None
        assert why in applied.malformed
        assert read_state(store).malformed_entries == 1
        assert applied_index(store) == 1
    assert dump(replicas[0]) == dump(replicas[1])


def test_an_empty_effects_entry_changes_nothing_but_the_applied_index() -> None:
    store = shard()
    before = read_state(store)
    apply_effects(store, decode_effects(encode_effects([])))
    assert apply_entry(store, index=1, data=encode_effects([])).effects
    assert read_state(store) == before


@settings(max_examples=400, deadline=None)
@given(st.binary(max_size=64), st.booleans())
def test_the_decoder_raises_only_codec_errors(tail: bytes, deflate: bool) -> None:
    with contextlib.suppress(CodecError):
        decode_effects(deflated(tail) if deflate else bytes([EFFECTS_MARKER]) + tail)
