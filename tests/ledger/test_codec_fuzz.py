"""Fuzzing the decoders: whatever the bytes, the answer is a value or a CodecError.

A replica decodes every committed entry, and a node decodes whatever a peer or an old
disk hands it: any other exception (an IndexError, an OverflowError, a RecursionError)
would stop the replica instead of skipping the entry. And what is accepted must be the
one canonical spelling of its value, or replicas could disagree on bytes they re-encode.
"""

from __future__ import annotations

from collections.abc import Callable

import msgspec
from hypothesis import example, given, settings
from hypothesis import strategies as st

from hongbao.ledger import (
    CodecError,
    Ok,
    Reason,
    Rejected,
    decode_batch,
    decode_command,
    decode_query,
    decode_result,
    encode_batch,
    encode_command,
    encode_query,
    encode_result,
)
from hongbao.ledger.codec import (
    FORMAT_VERSION,
    WIDE_INT_MAX,
    decode,
    decode_any,
    encode,
    tag_of,
    to_json,
)
from hongbao.ledger.idempotency import IdempotencyRecord
from hongbao.ledger.limits import Limits
from hongbao.ledger.records import (
    MONEY_FIELDS,
    Account,
    Envelope,
    Grab,
    HistoryEntry,
    JournalTx,
    OutboxCursor,
    OutboxEntry,
    ShardIdentity,
    ShardState,
)
from hongbao.ledger.results import AccountView, TransferReceipt

from .strategies import batches, commands, ints, queries, texts

FUZZ = settings(derandomize=True, max_examples=400, deadline=None)
VERSION = bytes([FORMAT_VERSION])
ROW_TYPES: tuple[type, ...] = (
    Account,
    Envelope,
    Grab,
    HistoryEntry,
    JournalTx,
    OutboxCursor,
    OutboxEntry,
    ShardIdentity,
    ShardState,
    IdempotencyRecord,
    Limits,
)
DECODERS: tuple[Callable[[bytes], object], ...] = (
    decode_batch,
    decode_command,
    decode_query,
    decode_result,
    decode_any,
    *[lambda data, cls=cls: decode(data, cls) for cls in ROW_TYPES],
)

results = st.one_of(
    st.builds(Ok, st.builds(AccountView, texts, ints, st.booleans(), ints, ints)),
    st.builds(Ok, st.builds(TransferReceipt, texts, texts, ints, ints, ints, st.none() | ints)),
    st.builds(Rejected, st.sampled_from(Reason), texts),
)
wide = st.integers(-WIDE_INT_MAX, WIDE_INT_MAX)
states = st.builds(ShardState, ints, ints, ints, ints, ints, ints, *[wide] * len(MONEY_FIELDS))
idempotency = st.builds(IdempotencyRecord, texts, ints, texts, results, texts)
documents = st.one_of(
    batches.map(encode_batch),
    commands.map(encode_command),
    queries.map(encode_query),
    results.map(encode_result),
    states.map(encode),
    idempotency.map(encode),
)


def check_every_decoder(data: bytes) -> int:
    """Only CodecError escapes; an accepted document is canonical. Returns how many took it."""
    accepted = 0
    for decoder in DECODERS:
        try:
            value = decoder(data)
        except CodecError:
            continue
        accepted += 1
        assert encode(value) == data  # canonical=True: the one spelling of the value
    try:
        loose = decode_any(data, canonical=False)  # type-checked, any spelling
    except CodecError:
        loose = None
    else:
        assert decode_any(encode(loose)) == loose
    try:
        rendered = to_json(data)
    except CodecError:
        assert loose is None
    else:
        assert loose is not None
        assert rendered.startswith('{"t": "')
    return accepted


@FUZZ
@given(st.binary(max_size=96), st.booleans())
@example(b"", False)
@example(b"\x91" * 50_000, True)
@example(b"\xdd\xff\xff\xff\xff", True)
@example(b"\xc7\x01\x05\x00", True)  # an ext type
@example(b"\xcb" + bytes(8), True)  # a float
def test_random_bytes_raise_only_codec_error(data: bytes, versioned: bool) -> None:
    check_every_decoder(VERSION + data if versioned else data)


@FUZZ
@given(documents, st.data())
def test_mutated_documents_raise_only_codec_error(data: bytes, draw: st.DataObject) -> None:
    assert check_every_decoder(data) >= 1  # the unmutated document is accepted somewhere
    for _ in range(draw.draw(st.integers(1, 3), label="mutations")):
        position = draw.draw(st.integers(0, len(data) - 1), label="position")
        how = draw.draw(st.sampled_from(["replace", "insert", "delete", "truncate"]))
        byte = bytes([draw.draw(st.integers(0, 255), label="byte")])
        if how == "replace":
            data = data[:position] + byte + data[position + 1 :]
        elif how == "insert":
            data = data[:position] + byte + data[position:]
        elif how == "delete":
            data = data[:position] + data[position + 1 :]
        else:
            data = data[:position]
        if not data:
            break
    check_every_decoder(data)


leaves = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**63), 2**64 - 1),
    st.floats(allow_nan=True),
    st.text(max_size=8),
    st.binary(max_size=17),
    st.sampled_from(sorted({tag_of(cls) for cls in ROW_TYPES} | {"batch", "ok", "deposit"})),
)
trees = st.recursive(
    leaves,
    lambda children: st.lists(children, max_size=6) | st.dictionaries(texts, children, max_size=2),
    max_leaves=12,
)
heads = st.sampled_from(
    [
        "batch",
        "deposit",
        "transfer",
        "ok",
        "rejected",
        "shard_state",
        "idempotency_record",
        "journal_tx",
        "limits",
        "set_limits",
    ]
)


@settings(derandomize=True, max_examples=200, deadline=None)
@given(heads, st.lists(trees, max_size=14))
def test_well_formed_messagepack_of_the_wrong_shape_raises_only_codec_error(
    tag: str, fields: list[object]
) -> None:
    check_every_decoder(VERSION + msgspec.msgpack.encode([tag, *fields]))
