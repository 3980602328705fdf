"""Hypothesis strategies for ledger values (any shape the codec must carry, valid or not)."""

from __future__ import annotations

from hypothesis import strategies as st

from hongbao.ledger import (
    Acknowledge,
    Batch,
    CreditKind,
    Deliver,
    Deposit,
    EnvelopeKind,
    ExpireEnvelopes,
    Freeze,
    GetAccount,
    GetHistory,
    GetInboxSeq,
    GrabEnvelope,
    Limits,
    SendEnvelope,
    SetLimits,
    ShowEnvelope,
    Transfer,
    Unfreeze,
    Withdraw,
)
from hongbao.ledger.codec import INT_MAX, INT_MIN
from hongbao.ledger.commands import TS_MS_MAX

ints = st.one_of(st.integers(-3, 3_000_000), st.integers(INT_MIN, INT_MAX))
texts = st.one_of(st.text(max_size=20), st.from_regex(r"[a-z0-9-]{1,12}", fullmatch=True))

commands = st.one_of(
    st.builds(Deposit, texts, texts, ints),
    st.builds(Withdraw, texts, texts, ints),
    st.builds(Transfer, texts, texts, texts, ints),
    st.builds(Freeze, texts, texts),
    st.builds(Unfreeze, texts, texts),
    st.builds(SendEnvelope, texts, texts, st.sampled_from(EnvelopeKind), ints, ints),
    st.builds(GrabEnvelope, texts, texts, texts),
    st.builds(ExpireEnvelopes, ints, ints),
    st.builds(Deliver, ints, ints, texts, ints, st.sampled_from(CreditKind), texts),
    st.builds(Acknowledge, ints, ints),
    st.builds(SetLimits, texts, st.builds(Limits, *[ints] * 11)),
)
batches = st.builds(Batch, st.integers(0, TS_MS_MAX), st.lists(commands, max_size=5).map(tuple))
queries = st.one_of(
    st.builds(GetAccount, texts),
    st.builds(GetHistory, texts, ints),
    st.builds(ShowEnvelope, texts),
    st.builds(GetInboxSeq, ints),
)
