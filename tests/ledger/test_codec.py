"""The log's bytes: exact round trips, one spelling per value, clear errors for garbage."""

from __future__ import annotations

import json

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from hongbao.ledger import (
    AppliedEntry,
    Batch,
    CodecError,
    Deposit,
    MemoryStore,
    Ok,
    Reason,
    Rejected,
    apply_entry,
    decode_batch,
    decode_command,
    decode_query,
    decode_result,
    encode_batch,
    encode_command,
    encode_query,
    encode_result,
    init_shard,
)
from hongbao.ledger.commands import GrabEnvelope, SendEnvelope, Transfer, fingerprint
from hongbao.ledger.limits import Limits
from hongbao.ledger.records import EnvelopeKind
from hongbao.ledger.results import AccountView, LimitsView
from hongbao.ledger.store import Table, iterate

from .helpers import Cluster
from .strategies import batches, commands, queries

FAST = settings(derandomize=True, max_examples=150, deadline=None)
DEPOSIT = b'{"amount_fen":100,"request_id":"r1","t":"deposit","user_id":"alice"}'


@FAST
@given(commands)
def test_commands_round_trip(command) -> None:
    data = encode_command(command)
    assert decode_command(data) == command
    assert encode_command(decode_command(data)) == data


@FAST
@given(batches)
def test_batches_round_trip(batch) -> None:
    data = encode_batch(batch)
    assert decode_batch(data) == batch


@FAST
@given(queries)
def test_queries_round_trip(query) -> None:
    assert decode_query(encode_query(query)) == query


def test_results_round_trip() -> None:
    for result in (
        Ok(AccountView("alice", 5, frozen=True, outgoing_day=3, outgoing_today_fen=1)),
        Ok(LimitsView(Limits())),
        Rejected(Reason.INSUFFICIENT_FUNDS, "alice has 0 fen, needs 1 — \u4e2d"),
    ):
        assert decode_result(encode_result(result)) == result


def test_the_encoding_is_sorted_compact_ascii() -> None:
    assert encode_command(Deposit("r1", "alice", 100)) == DEPOSIT


@settings(derandomize=True, max_examples=300, deadline=None)
@given(st.one_of(st.binary(max_size=64), batches.map(encode_batch)), st.data())
@example(b"", None)
def test_any_bytes_decode_canonically_or_raise_codec_error(data, draw) -> None:
    if draw is not None and data:  # mutate a valid encoding a little
        position = draw.draw(st.integers(0, len(data) - 1))
        data = data[:position] + bytes([draw.draw(st.integers(0, 255))]) + data[position + 1 :]
    try:
        batch = decode_batch(data)
    except CodecError:
        return
    assert encode_batch(batch) == data


@pytest.mark.parametrize(
    ("data", "why"),
    [
        (DEPOSIT.replace(b"100", b"100.0"), "non-integer"),
        (DEPOSIT.replace(b"100", b"1e2"), "non-integer"),
        (DEPOSIT.replace(b"100", b"NaN"), "constant"),
        (DEPOSIT.replace(b"100", b"true"), "expected an integer"),
        (DEPOSIT.replace(b"100", b'"100"'), "expected an integer"),
        (DEPOSIT.replace(b"100", b"9" * 25), "outside 64 bits"),
        (DEPOSIT.replace(b'"alice"', b"null"), "expected str"),
        (DEPOSIT.replace(b'"deposit"', b'"teleport"'), "tag"),
        (DEPOSIT.replace(b'"deposit"', b'"withdrawal"'), "tag"),
        (DEPOSIT.replace(b'"user_id"', b'"user"'), "fields missing"),
        (DEPOSIT[:-1] + b',"note":"x"}', "fields missing"),
        (DEPOSIT[:-1] + b',"user_id":"bob"}', "duplicate"),
        (DEPOSIT.replace(b",", b", "), "canonical"),
        (DEPOSIT.replace(b"alice", b"\\u0061lice"), "canonical"),
        (b'{"t":"deposit","amount_fen":100,"request_id":"r1","user_id":"alice"}', "canonical"),
        (DEPOSIT.replace(b"alice", "al\u00efce".encode()), "not canonical JSON"),
        (b"[" * 100_000 + b"]" * 100_000, "not canonical JSON"),
        (DEPOSIT[:-1], "not canonical JSON"),
        (b"", "not canonical JSON"),
    ],
)
def test_garbage_is_refused_with_a_clear_error(data: bytes, why: str) -> None:
    with pytest.raises(CodecError, match=why):
        decode_command(data)


def test_batch_garbage_is_refused() -> None:
    good = encode_batch(Batch(5, (Deposit("r1", "alice", 1),)))
    with pytest.raises(CodecError, match="version"):
        decode_batch(good.replace(b'"version":1', b'"version":2'))
    with pytest.raises(CodecError, match="ts_ms"):
        decode_batch(good.replace(b'"ts_ms":5', b'"ts_ms":-5'))
    with pytest.raises(CodecError, match="ts_ms"):  # beyond TS_MS_MAX: expiry would overflow
        decode_batch(good.replace(b'"ts_ms":5', b'"ts_ms":9007199254740993'))
    with pytest.raises(CodecError, match="tag"):  # a query is not a command
        decode_batch(good.replace(b'"t":"deposit"', b'"t":"get_account"'))
    with pytest.raises(CodecError, match="expected tag 'batch'"):
        decode_batch(DEPOSIT)
    with pytest.raises(CodecError, match="bytes"):
        decode_batch(bytearray(good))  # type: ignore[arg-type]
    with pytest.raises(CodecError, match="exceeds"):
        decode_batch(b" " * (16 * 1024 * 1024 + 1))


def test_a_malformed_committed_entry_is_skipped_identically() -> None:
    store = MemoryStore()
    init_shard(store, shard_id=0, shard_count=1)
    entry = apply_entry(store, index=1, data=b"\x00garbage")
    assert isinstance(entry, AppliedEntry)
    assert entry.results == ()
    assert entry.malformed is not None
    assert "not canonical JSON" in entry.malformed


def test_fingerprint_tells_commands_apart() -> None:
    assert fingerprint(Deposit("r", "a", 1)) == fingerprint(Deposit("r", "a", 1))
    assert fingerprint(Deposit("r", "a", 1)) != fingerprint(Deposit("r", "a", 2))


def test_command_json_is_plain_json() -> None:
    parsed = json.loads(encode_command(Deposit("r1", "alice", 100)))
    assert parsed == {"t": "deposit", "request_id": "r1", "user_id": "alice", "amount_fen": 100}


def canonical_json(data: bytes) -> bytes:
    """What json.dumps writes for the same document: the spelling the codec promises."""
    plain = json.loads(data)
    return json.dumps(plain, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode()


@FAST
@given(commands, queries)
def test_every_encoding_is_what_json_dumps_writes(command, query) -> None:
    # The encoder writes text directly (no dict, no run-time sort); this pins it to the
    # stdlib's canonical JSON byte for byte, escapes of non-ASCII text included.
    for data in (encode_command(command), encode_query(query)):
        assert canonical_json(data) == data


@FAST
@given(batches)
def test_every_batch_encoding_is_what_json_dumps_writes(batch) -> None:
    data = encode_batch(batch)
    assert canonical_json(data) == data


def test_every_stored_row_is_what_json_dumps_writes() -> None:
    cluster = Cluster()
    alice, bob = cluster.users(0, 1, "alice")[0], cluster.users(1, 1, "bob")[0]
    assert isinstance(cluster.one(0, Deposit(cluster.rid(), alice, 10_000)), Ok)
    assert isinstance(cluster.one(0, Transfer(cluster.rid(), alice, bob, 1_234)), Ok)
    sent = cluster.one(0, SendEnvelope(cluster.rid(), alice, EnvelopeKind.LUCKY, 500, 3))
    assert isinstance(sent, Ok)
    envelope_id = sent.data.envelope_id
    assert isinstance(cluster.one(0, GrabEnvelope(cluster.rid(), envelope_id, bob)), Ok)
    cluster.deliver_all()
    rows = 0
    for store in cluster.stores.values():
        for table in Table:
            for _, data in iterate(store, table):
                if data[:1] == b"{":  # some meta rows are plain integers, not documents
                    assert canonical_json(data) == data, (table, data)
                    rows += 1
    assert rows > 20  # accounts, history, journal, envelope, grabs, outbox, idempotency...
    for result in (
        Rejected(Reason.INSUFFICIENT_FUNDS, "alice has 0 fen, needs 1 \u2014 \u4e2d \"q\" \\"),
        Ok(LimitsView(Limits())),
    ):
        data = encode_result(result)
        assert canonical_json(data) == data
