"""The public API of ``hongbao.ledger``: nothing leaks or vanishes by accident."""

from __future__ import annotations

import hongbao.ledger as ledger

EXPECTED = {
    # the apply loop and the node runtime's calls
    "APPLIED_INDEX_KEY", "AppliedEntry", "apply_batch", "apply_entry", "applied_index",
    "set_applied_index", "init_shard", "is_initialised", "shard_clock_ms", "query",
    "dump", "load", "state_digest", "SnapshotError", "audit", "AuditReport",
    # the courier
    "pending_outbox", "outbox_destinations", "deliver_command", "inbox_seq", "OutboxEntry",
    # storage
    "LedgerStore", "MemoryStore", "Table",
    # commands, queries, batches and their bytes
    "Batch", "Command", "Query", "Deposit", "Withdraw", "Transfer", "Freeze", "Unfreeze",
    "SendEnvelope", "GrabEnvelope", "ExpireEnvelopes", "Deliver", "Acknowledge", "SetLimits",
    "Fence",
    "GetAccount", "GetHistory", "ShowEnvelope", "GetInboxSeq", "encode_batch", "decode_batch",
    "encode_command", "decode_command", "encode_query", "decode_query", "CodecError",
    # results
    "Result", "Ok", "Rejected", "Reason", "ErrorClass", "encode_result", "decode_result",
    # vocabulary and rules
    "Limits", "EnvelopeKind", "EnvelopeStatus", "CreditKind", "validate", "validate_query",
    "shard_for_user", "envelope_id", "parse_envelope_id",
}  # fmt: skip


def test_exported_names() -> None:
    assert set(ledger.__all__) == EXPECTED
    assert ledger.__all__ == sorted(ledger.__all__)
    for name in EXPECTED:
        assert getattr(ledger, name) is not None
