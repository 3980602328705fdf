"""A grab answered from the applied state (settled_grab) gets exactly what the log would.

The leader answers a grab of an envelope that is empty, expired or already grabbed by
that user without proposing it. That is only right if applying the grab, at any later
point, gives the very same refusal and changes nothing: these tests hold it to that, case
by case and over random histories.
"""

from __future__ import annotations

from hypothesis import event, given, settings
from hypothesis import strategies as st

from hongbao.ledger import (
    Deposit,
    EnvelopeKind,
    ExpireEnvelopes,
    GrabEnvelope,
    Limits,
    Reason,
    SendEnvelope,
)
from hongbao.ledger.envelope import settled_grab
from hongbao.ledger.results import EnvelopeCreated, Rejected

from .helpers import Cluster, money_view, ok, refused

TTL_MS = 60_000


def envelope_of(c: Cluster, count: int, kind: EnvelopeKind = EnvelopeKind.LUCKY) -> str:
    (sender,) = c.users(0, 1, stem="s")
    c.one(0, Deposit(c.rid(), sender, 1_000_000))
    created = c.one(0, SendEnvelope(c.rid(), sender, kind, 100 * count, count))
    return ok(created, EnvelopeCreated).envelope_id


def settled_then_applied(c: Cluster, grab: GrabEnvelope) -> Rejected:
    """settled_grab's answer, checked against applying the grab: same refusal, no change."""
    settled = settled_grab(c.stores[0], grab)
    assert settled is not None
    before = money_view(c.stores[0])
    assert c.one(0, grab) == settled
    assert money_view(c.stores[0]) == before
    return settled


def test_an_open_envelope_needs_the_log() -> None:
    c = Cluster(limits=Limits(envelope_ttl_ms=TTL_MS))
    envelope = envelope_of(c, 3)
    (user,) = c.users(1, 1)
    assert settled_grab(c.stores[0], GrabEnvelope(c.rid(), envelope, user)) is None


def test_an_empty_envelope_is_settled_for_a_new_grabber() -> None:
    c = Cluster(limits=Limits(envelope_ttl_ms=TTL_MS))
    envelope = envelope_of(c, 2)
    for user in c.users(1, 2):
        c.one(0, GrabEnvelope(c.rid(), envelope, user))
    late = GrabEnvelope(c.rid(), envelope, c.users(2, 1)[0])
    refused(settled_then_applied(c, late), Reason.ENVELOPE_EMPTY)


def test_a_second_grab_by_the_same_user_is_settled_while_shares_remain() -> None:
    c = Cluster(limits=Limits(envelope_ttl_ms=TTL_MS))
    envelope = envelope_of(c, 5)
    (user,) = c.users(1, 1)
    c.one(0, GrabEnvelope(c.rid(), envelope, user))
    again = GrabEnvelope(c.rid(), envelope, user)
    refused(settled_then_applied(c, again), Reason.ALREADY_GRABBED)


def test_an_expired_envelope_is_settled_but_one_only_past_its_ttl_is_not() -> None:
    c = Cluster(limits=Limits(envelope_ttl_ms=TTL_MS))
    envelope = envelope_of(c, 3)
    (user,) = c.users(1, 1)
    c.now_ms += TTL_MS
    # Past the TTL, still OPEN: only a log entry expires it (and refunds), never a read.
    assert settled_grab(c.stores[0], GrabEnvelope(c.rid(), envelope, user)) is None
    c.one(0, ExpireEnvelopes(c.now_ms, 10))
    refused(settled_then_applied(c, GrabEnvelope(c.rid(), envelope, user)), Reason.ENVELOPE_EXPIRED)


def test_a_request_id_already_applied_goes_to_the_log_for_its_first_answer() -> None:
    c = Cluster(limits=Limits(envelope_ttl_ms=TTL_MS))
    envelope = envelope_of(c, 1)
    (user,) = c.users(1, 1)
    first = GrabEnvelope(c.rid(), envelope, user)
    receipt = c.one(0, first)  # takes the only share: the envelope is now empty
    assert settled_grab(c.stores[0], first) is None  # a retry: the log answers the receipt
    assert c.one(0, first) == receipt


def test_a_missing_envelope_is_not_settled() -> None:
    """Not there yet is not final: a send may create it."""
    c = Cluster(limits=Limits(envelope_ttl_ms=TTL_MS))
    (user,) = c.users(1, 1)
    assert settled_grab(c.stores[0], GrabEnvelope(c.rid(), "e0-99", user)) is None
    envelope = envelope_of(c, 1)
    c.one(0, GrabEnvelope(c.rid(), envelope, user))
    assert settled_grab(c.stores[1], GrabEnvelope(c.rid(), envelope, user)) is None


STEPS = st.lists(
    st.one_of(
        st.tuples(st.just("grab"), st.integers(0, 5), st.booleans()),  # user, reuse a rid
        st.tuples(st.just("sweep"), st.integers(0, 2 * TTL_MS), st.just(False)),
    ),
    max_size=30,
)


@settings(max_examples=150, deadline=None)
@given(count=st.integers(1, 4), steps=STEPS)
def test_whenever_a_grab_is_settled_the_log_answers_the_same(
    count: int, steps: list[tuple[str, int, bool]]
) -> None:
    c = Cluster(limits=Limits(envelope_ttl_ms=TTL_MS))
    envelope = envelope_of(c, count)
    users = [u for shard in range(3) for u in c.users(shard, 2, stem="g")]
    used: list[GrabEnvelope] = []
    for kind, value, reuse in steps:
        if kind == "sweep":
            c.now_ms += value
            c.one(0, ExpireEnvelopes(c.now_ms, 10))
            continue
        grab = used[value % len(used)] if reuse and used else GrabEnvelope(
            c.rid(), envelope, users[value]
        )
        used.append(grab)
        if settled_grab(c.stores[0], grab) is not None:
            event(f"settled: {settled_then_applied(c, grab).reason.name}")
        else:
            c.one(0, grab)
    c.deliver_all()
    c.audit()
