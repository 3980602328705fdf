"""The log's bytes: exact round trips, one spelling per value, clear errors for garbage."""

from __future__ import annotations

import json

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hongbao._invariant import InvariantViolation
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
from hongbao.ledger.codec import (
    FORMAT_VERSION,
    INT_MAX,
    INT_MIN,
    WIDE_INT_MAX,
    decode,
    decode_any,
    encode,
    to_json,
)
from hongbao.ledger.commands import GetAccount, GrabEnvelope, SendEnvelope, Transfer, fingerprint
from hongbao.ledger.idempotency import IdempotencyRecord
from hongbao.ledger.limits import Limits
from hongbao.ledger.records import MONEY_FIELDS, EnvelopeKind, ShardState
from hongbao.ledger.results import (
    AccountView,
    LimitsView,
    RequestStatusView,
    TransferReceipt,
)
from hongbao.ledger.store import Table, iterate

from .helpers import Cluster
from .strategies import batches, commands, queries

FAST = settings(derandomize=True, max_examples=150, deadline=None)
VERSION = bytes([FORMAT_VERSION])
DEPOSIT = VERSION + b"\x94\xa7deposit\xa2r1\xa5alice\x64"
"""Deposit("r1", "alice", 100): the version byte, then [tag, request_id, user_id, amount]."""


def document(*plain: object) -> bytes:
    """A document written by hand: the version byte and any MessagePack value."""
    return VERSION + msgspec.msgpack.encode(list(plain))


def deposit(amount: object = 100, user: object = "alice") -> list[object]:
    return ["deposit", "r1", user, amount]


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
    assert encode_batch(decode_batch(data)) == data


@FAST
@given(queries)
def test_queries_round_trip(query) -> None:
    assert decode_query(encode_query(query)) == query


RESULTS = (
    Ok(AccountView("alice", 5, frozen=True, outgoing_day=3, outgoing_today_fen=1)),
    Ok(LimitsView(Limits())),
    Ok(TransferReceipt("alice", "bob", 5, 0, 1, None)),
    Rejected(Reason.INSUFFICIENT_FUNDS, 'alice has 0 fen, needs 1 \u2014 \u4e2d "q" \\'),
    Ok(RequestStatusView("r1", True, "deposit", Ok(LimitsView(Limits())).data, None)),
    Ok(RequestStatusView("r2", True, "transfer", None, Rejected(Reason.AMOUNT_NOT_POSITIVE, "no"))),
    Ok(RequestStatusView("r3", False, "", None, None)),
)


@pytest.mark.parametrize("result", RESULTS)
def test_results_round_trip_through_the_union(result) -> None:
    data = encode_result(result)
    assert decode_result(data) == result
    assert encode_result(decode_result(data)) == data


def test_the_encoding_is_pinned_byte_for_byte() -> None:
    # A change here changes what replicas write: it needs a new FORMAT_VERSION.
    assert encode_command(Deposit("r1", "alice", 100)) == DEPOSIT
    assert document(*deposit()) == DEPOSIT


@FAST
@given(commands)
def test_equal_values_give_equal_bytes(command) -> None:
    rebuilt = type(command)(*[getattr(command, name) for name in command.__dataclass_fields__])
    assert rebuilt is not command
    assert encode_command(rebuilt) == encode_command(command) == encode_command(command)


def test_every_document_starts_with_the_version_byte() -> None:
    for data in (DEPOSIT, encode_result(RESULTS[0]), encode(ShardState()), encode(Limits())):
        assert data[:1] == VERSION
    with pytest.raises(CodecError, match="unknown format version 2"):
        decode_command(bytes([2]) + DEPOSIT[1:])
    with pytest.raises(CodecError, match="unknown format version 123"):  # the old JSON rows
        decode_command(b'{"amount_fen":100,"request_id":"r1","t":"deposit","user_id":"alice"}')
    with pytest.raises(CodecError, match="empty document"):
        decode_command(b"")


@pytest.mark.parametrize(
    ("data", "why"),
    [
        (document(*deposit(100.0)), r"\$\.amount_fen: Expected `int`, got `float`"),
        (document(*deposit(True)), r"\$\.amount_fen: Expected `int`, got `bool`"),
        (document(*deposit("100")), r"\$\.amount_fen: Expected `int`, got `str`"),
        (document(*deposit(INT_MAX + 1)), r"\$\.amount_fen: Expected `int` <= "),
        (document(*deposit(b"\x01")), r"\$\.amount_fen: Expected `int`, got `bytes`"),
        (document(*deposit(user=None)), r"\$\.user_id: Expected `str`, got `None`"),
        (document(*deposit(user=["alice"])), r"\$\.user_id: Expected `str`, got `array`"),
        (document("teleport", "r1", "alice", 100), r"\$\.t: tag not allowed here"),
        (document("get_account", "alice"), r"\$\.t: tag not allowed here"),
        (document(5, "r1", "alice", 100), r"\$\.t: "),
        (document("deposit", "r1", "alice"), "at least length 4, got 3"),
        (document(*deposit(), "note"), "Expected `array` of at most length"),
        (VERSION + msgspec.msgpack.encode({"t": "deposit"}), "Expected `array`, got `object`"),
        (DEPOSIT[:-1] + b"\xcc\x64", "not the canonical encoding"),  # 100 as uint8
        (DEPOSIT.replace(b"\xa5alice", b"\xd9\x05alice"), "not the canonical encoding"),
        (DEPOSIT.replace(b"\x94", b"\xdc\x00\x04"), "not the canonical encoding"),  # array16
        (DEPOSIT.replace(b"alice", b"al\xffce"), "not MessagePack: Invalid UTF-8"),
        (DEPOSIT[:-1], "not MessagePack: Input data was truncated"),
        (DEPOSIT + b"\x00", "not MessagePack: .*trailing"),
        (VERSION + b"\x91" * 100_000 + b"\xc0", r"\$\.t: .*got `array`"),
        (VERSION + b"\xdd\xff\xff\xff\xff", "not MessagePack"),
    ],
)
def test_garbage_is_refused_with_the_path_of_the_bad_part(data: bytes, why: str) -> None:
    with pytest.raises(CodecError, match=why):
        decode_command(data)


def test_paths_name_fields_through_unions_and_tuples() -> None:
    good = ["batch", 5, [deposit(), ["transfer", "r2", "alice", "bob", 7]], 1]
    assert decode_batch(document(*good)) == Batch(
        5, (Deposit("r1", "alice", 100), Transfer("r2", "alice", "bob", 7))
    )
    bad = ["batch", 5, [deposit(), ["transfer", "r2", "alice", "bob", False]], 1]
    with pytest.raises(CodecError, match=r"^\$\.commands\[1\]\.amount_fen: Expected `int`"):
        decode_batch(document(*bad))
    query = ["batch", 5, [deposit(), ["get_account", "alice"]], 1]
    with pytest.raises(CodecError, match=r"^\$\.commands\[1\]\.t: tag not allowed here"):
        decode_batch(document(*query))  # a query is not a command
    limits = ["limits", *([1] * 11), True]
    nested = ["set_limits", "r1", limits]
    with pytest.raises(
        CodecError, match=r"^\$\.limits\.outbox_batch_max: Expected `int`, got `bool`"
    ):
        decode_command(document(*nested))
    status = ["request_status", "r1", True, "deposit", None, ["rejected", "nope", "m"]]
    with pytest.raises(CodecError, match=r"^\$\.data\.first_rejected\.reason: Invalid enum"):
        decode_result(document("ok", status))


def test_batch_checks_of_the_dataclass_itself_are_applied() -> None:
    with pytest.raises(CodecError, match=r"^\$: unsupported batch format version 2"):
        decode_batch(document("batch", 5, [], 2))
    with pytest.raises(CodecError, match="ts_ms must be"):
        decode_batch(document("batch", -5, [], 1))
    with pytest.raises(CodecError, match="ts_ms must be"):  # beyond TS_MS_MAX: expiry overflows
        decode_batch(document("batch", 9007199254740993, [], 1))
    with pytest.raises(CodecError, match=r"\$\.t: tag not allowed here"):
        decode_batch(DEPOSIT)
    with pytest.raises(CodecError, match="expected bytes, got bytearray"):
        decode_batch(bytearray(DEPOSIT))  # type: ignore[arg-type]
    with pytest.raises(CodecError, match="exceeds"):
        decode_batch(b" " * (16 * 1024 * 1024 + 1))


def test_wide_ints_carry_128_bits_in_16_bytes() -> None:
    extremes = dict.fromkeys(MONEY_FIELDS, WIDE_INT_MAX) | {"escrow_fen": -WIDE_INT_MAX}
    state = ShardState(clock_ms=INT_MAX, malformed_entries=INT_MIN, **extremes)
    data = encode(state)
    assert decode(data, ShardState) == state
    assert WIDE_INT_MAX.to_bytes(16, "big", signed=True) in data
    assert json.loads(to_json(data))["balances_fen"] == WIDE_INT_MAX  # printed as a number
    too_wide = data.replace((-WIDE_INT_MAX).to_bytes(16, "big", signed=True), b"\x80" + bytes(15))
    with pytest.raises(CodecError, match=r"^\$\.escrow_fen: integer outside 128 bits"):
        decode(too_wide, ShardState)
    short = ["shard_state", *([0] * 6), *([b"\x00" * 16] * 6), b"\x00" * 15]
    with pytest.raises(CodecError, match=r"^\$\.settled_out_fen: Expected `bytes` of length >= 16"):
        decode(document(*short), ShardState)
    as_int = ["shard_state", *([0] * 6), 0, *([b"\x00" * 16] * 6)]
    with pytest.raises(CodecError, match=r"^\$\.balances_fen: Expected `bytes`, got `int`"):
        decode(document(*as_int), ShardState)


def test_values_that_do_not_fit_their_annotations_are_programmer_errors() -> None:
    with pytest.raises(InvariantViolation, match="not an integer within 128 bits"):
        encode(ShardState(balances_fen=WIDE_INT_MAX + 1))
    with pytest.raises(InvariantViolation, match="does not encode"):
        encode(Deposit("r1", "alice", INT_MAX + 1))
    with pytest.raises(InvariantViolation, match="does not encode"):
        encode(Deposit("r1", "alice", True))
    with pytest.raises(InvariantViolation, match="does not encode"):
        encode(Deposit("r1", 5, 1))  # type: ignore[arg-type]
    with pytest.raises(InvariantViolation, match="does not encode"):
        encode(Ok(GetAccount("alice")))  # type: ignore[arg-type]  # a query is no result
    with pytest.raises(InvariantViolation, match="not a registered record"):
        encode(("deposit", "r1"))
    with pytest.raises(InvariantViolation, match="does not encode"):
        encode(Batch(5, [Deposit("r1", "alice", 1.5)]))  # type: ignore[arg-type]
    with pytest.raises(InvariantViolation, match="does not encode"):
        encode(Deposit("r1", "alice", 2**64))  # beyond what MessagePack can write at all


def test_unions_dispatch_on_the_tag() -> None:
    assert isinstance(decode_result(encode_result(RESULTS[0])), Ok)
    assert isinstance(decode_result(encode_result(RESULTS[3])), Rejected)
    with pytest.raises(CodecError, match="tag not allowed"):
        decode_result(DEPOSIT)
    with pytest.raises(CodecError, match="tag not allowed"):
        decode_query(DEPOSIT)
    with pytest.raises(CodecError, match="tag not allowed"):
        decode_command(encode_query(GetAccount("alice")))
    ok = encode_result(RESULTS[0])
    record = IdempotencyRecord("r1", 1, "f" * 32, decode_result(ok), "deposit")
    assert decode(encode(record), IdempotencyRecord) == record


def test_to_json_is_readable_for_any_document() -> None:
    assert json.loads(to_json(DEPOSIT)) == {
        "t": "deposit",
        "request_id": "r1",
        "user_id": "alice",
        "amount_fen": 100,
    }
    assert list(json.loads(to_json(DEPOSIT))) == ["t", "request_id", "user_id", "amount_fen"]
    batch = encode_batch(Batch(5, (SendEnvelope("r", "a", EnvelopeKind.LUCKY, 9, 3),)))
    plain = json.loads(to_json(batch, indent=2))
    assert plain["commands"][0] == {
        "t": "send_envelope",
        "request_id": "r",
        "sender_user_id": "a",
        "kind": "lucky",
        "total_fen": 9,
        "share_count": 3,
    }
    assert "\u2014 \u4e2d" in to_json(encode_result(RESULTS[3]))  # not escaped
    with pytest.raises(CodecError):
        to_json(b"\x01garbage")


def test_a_malformed_committed_entry_is_skipped_identically() -> None:
    store = MemoryStore()
    init_shard(store, shard_id=0, shard_count=1)
    entry = apply_entry(store, index=1, data=b"\x00garbage")
    assert isinstance(entry, AppliedEntry)
    assert entry.results == ()
    assert entry.malformed is not None
    assert "unknown format version 0" in entry.malformed


def test_fingerprint_tells_commands_apart() -> None:
    assert fingerprint(Deposit("r", "a", 1)) == fingerprint(Deposit("r", "a", 1))
    assert fingerprint(Deposit("r", "a", 1)) != fingerprint(Deposit("r", "a", 2))


@settings(derandomize=True, max_examples=50, deadline=None)
@given(st.lists(commands, min_size=1, max_size=3).map(tuple))
def test_a_batch_is_its_commands_encodings_inside_one_array(commands_t) -> None:
    data = encode_batch(Batch(7, commands_t))
    for command in commands_t:
        assert encode_command(command)[1:] in data  # each command keeps its own spelling


def test_every_stored_row_is_canonical_and_dumps_as_json() -> None:
    cluster = Cluster()
    alice, bob = cluster.users(0, 1, "alice")[0], cluster.users(1, 1, "bob")[0]
    assert isinstance(cluster.one(0, Deposit(cluster.rid(), alice, 10_000)), Ok)
    assert isinstance(cluster.one(0, Transfer(cluster.rid(), alice, bob, 1_234)), Ok)
    sent = cluster.one(0, SendEnvelope(cluster.rid(), alice, EnvelopeKind.LUCKY, 500, 3))
    assert isinstance(sent, Ok)
    envelope_id = sent.data.envelope_id
    assert isinstance(cluster.one(0, GrabEnvelope(cluster.rid(), envelope_id, bob)), Ok)
    cluster.deliver_all()
    tags = set()
    for store in cluster.stores.values():
        for table in Table:
            for _, data in iterate(store, table):
                if data[:1] != VERSION:  # some meta rows are plain u64 integers, not documents
                    continue
                plain = json.loads(to_json(data))
                value = decode_any(data)  # canonical=True: re-encodes and compares
                assert decode(data, type(value)) == value
                assert encode(value) == data
                tags.add(plain["t"])
    assert {"account", "journal_tx", "history_entry", "envelope", "grab", "outbox_cursor"} <= tags
    assert {"idempotency_record", "shard_state", "shard_identity", "limits"} <= tags
