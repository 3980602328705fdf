"""Random command sequences over several shards, against the model, with a chaotic courier.

Every step: two replicas apply the same encoded log entries, and a third gets the same
batches as effects from a leader that evaluates them ahead of its applied state
(``effect_leader.py``); the ledger's answers match the model's and the effect leader's;
then conservation and the other audit checks hold, every balance and envelope matches
the model, the outboxes hold exactly what is in flight, and the replicas' digests are
equal (the effects replica's whole dump, whenever it has caught up). The courier
delivers in random order with duplicates and gaps, and acknowledges at random points up
to what the destination applied. One rule swaps a replica's shard for
a snapshot of it, so later steps also run on restored state. Another interleaves grabs,
sweeps and Shows stamped within a few ms of an envelope's expiry instant: every Show must
answer the model's applied state (no projected refund), and no Show answer may be
contradicted by anything applied after it.
"""

from __future__ import annotations

import itertools
import random

import pytest
from hypothesis import HealthCheck, Phase, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule, run_state_machine_as_test

from hongbao.ledger import (
    Acknowledge,
    Batch,
    Command,
    Deposit,
    EnvelopeKind,
    EnvelopeStatus,
    ExpireEnvelopes,
    Fence,
    Freeze,
    GetAccount,
    GetHistory,
    GrabEnvelope,
    Limits,
    MemoryStore,
    Ok,
    Reason,
    Rejected,
    SendEnvelope,
    ShowEnvelope,
    Transfer,
    Unfreeze,
    Withdraw,
    apply_entry,
    audit,
    deliver_command,
    dump,
    encode_batch,
    inbox_seq,
    init_shard,
    load,
    pending_outbox,
    query,
    state_digest,
)
from hongbao.ledger.results import AccountView, EnvelopeView

from .effect_leader import EffectLeader
from .helpers import T0_MS, users_on
from .model import Credit, Model

SHARDS = 3
LIMITS = Limits(
    amount_max_fen=3_000,
    daily_outgoing_max_fen=4_000,
    envelope_shares_max=5,
    envelope_share_average_max_fen=1_000,
    envelope_total_max_fen=4_000,
    envelope_ttl_ms=150_000,
    idempotency_results_max=12,
    idempotency_retention_ms=60_000,  # some ids age out within a run, some do not
    batch_commands_max=3,
    history_limit_max=10,
    expire_batch_max=2,
    outbox_batch_max=3,
)
USERS = {shard: users_on(shard, SHARDS, 2, stem="p") for shard in range(SHARDS)}
ALL_USERS = [user for users in USERS.values() for user in users]
DAY_MS = 86_400_000


def amount(rng: random.Random) -> int:
    """Mostly amounts that can pass; some at and beyond each bound."""
    if rng.random() < 0.1:
        return rng.choice([0, -5, LIMITS.amount_max_fen, LIMITS.amount_max_fen + 1])
    return rng.choice([1, 7, 50, 120, 300, 499, 800, 1_000, 1_500, 2_222, 2_999])


class LedgerMachine(RuleBasedStateMachine):
    model_class = Model

    def __init__(self) -> None:
        super().__init__()
        self.replicas: list[dict[int, MemoryStore]] = [{}, {}]
        for replica in self.replicas:
            for shard in range(SHARDS):
                replica[shard] = MemoryStore()
                init_shard(replica[shard], shard_id=shard, shard_count=SHARDS, limits=LIMITS)
        self.effect_leaders = {}
        for shard in range(SHARDS):
            store = MemoryStore()
            init_shard(store, shard_id=shard, shard_count=SHARDS, limits=LIMITS)
            self.effect_leaders[shard] = EffectLeader(store, lag_max=3, seed=shard)
        self.model = self.model_class(SHARDS, LIMITS)
        self.model.clock = [T0_MS] * SHARDS
        self.log_index = [0] * SHARDS
        self.request_ids = itertools.count()
        self.issued: dict[int, list[Command]] = {shard: [] for shard in range(SHARDS)}
        self.asked: dict[int, list[str]] = {shard: [] for shard in range(SHARDS)}
        self.answers: dict[str, list[EnvelopeView]] = {}  # every Show answer, in order
        for shard, users in USERS.items():  # everyone starts with 9,000 fen
            for user in users:
                seed = [Deposit(f"seed-{user}-{n}", user, 3_000) for n in range(3)]
                self.commit(shard, T0_MS, seed)

    # -- plumbing -------------------------------------------------------------------------------

    def commit(self, shard: int, ts: int, commands: list[Command]) -> list:
        """One log entry on ``shard``, applied by both replicas, checked against the model."""
        data = encode_batch(Batch(ts_ms=ts, commands=tuple(commands)))
        self.log_index[shard] += 1
        entries = [
            apply_entry(replica[shard], index=self.log_index[shard], data=data)
            for replica in self.replicas
        ]
        assert entries[0] == entries[1]
        results = list(entries[0].results)
        leader = self.effect_leaders[shard]
        assert leader.propose(self.log_index[shard], ts, commands) == results
        self.model.batch(shard, ts, commands, results)
        return results

    def rid(self) -> str:
        return f"r{next(self.request_ids)}"

    def deliver(self, source: int, destination: int, seqs: list[int], ts: int) -> None:
        pending = {e.seq: e for e in pending_outbox(self.replicas[0][source], destination, 100)}
        commands: list[Command] = []
        for seq in seqs:
            if seq in pending:
                command = deliver_command(pending[seq])
                credit = self.model.sent[(source, destination)][seq - 1]
                assert credit == Credit(
                    command.user_id, command.amount_fen, command.kind, command.ref
                )
            else:  # acknowledged already: the courier resends from its memory
                credit = self.model.sent[(source, destination)][seq - 1]
                command = deliver_command(pending_outbox_entry(source, destination, seq, credit))
            commands.append(command)
        self.commit(destination, ts, commands)

    # -- rules ----------------------------------------------------------------------------------

    @rule(data=st.data())
    def client_batches(self, data: st.DataObject) -> None:
        # Command contents come from a Random seeded by hypothesis, with explicit weights:
        # the interesting outcomes (grabs, cross-shard credits, limits, expiry) need a
        # steady mix that hypothesis's own (shrink-friendly) choices do not give.
        rng = data.draw(st.randoms(use_true_random=True), label="rng")
        for _ in range(rng.randint(1, 4)):
            shard = rng.randrange(SHARDS)
            size = rng.choices([1, 2, 3, LIMITS.batch_commands_max + 1], weights=[5, 4, 3, 1])[0]
            commands = [self.client_command(rng, shard) for _ in range(size)]
            self.issued[shard].extend(commands)
            jump = rng.choices([rng.randint(-2_000, 30_000), DAY_MS], weights=[12, 1])[0]
            ts = self.model.clock[shard] + jump
            if rng.random() < 0.15 and size < LIMITS.batch_commands_max:
                commands.append(self.sweep(rng, max(ts, self.model.clock[shard])))
            self.commit(shard, ts, commands)

    def sweep(self, rng: random.Random, clock: int) -> ExpireEnvelopes:
        back = rng.choice([0, 0, 10_000, 30_000, 80_000, -1])  # -1: ahead of the clock
        return ExpireEnvelopes(clock - back, rng.choice([1, 1, 2, 2, 0, 3]))

    def client_command(self, rng: random.Random, shard: int) -> Command:
        local = rng.choice(USERS[shard] * 6 + [USERS[(shard + 1) % SHARDS][0], "bad user"])
        anyone = rng.choice(ALL_USERS)
        mine = [e for e in self.model.envelopes if e.startswith(f"e{shard}-")]
        kinds = ["deposit", "withdraw", "transfer", "freeze", "unfreeze"]
        kinds += ["send", "grab", "retry", "reuse", "status", "late"]
        weights = [4, 2, 6, 1, 1, 4, 10 if mine else 0, 2, 1, 2, 1]
        kind = rng.choices(kinds, weights=weights)[0]
        if kind == "retry" and self.issued[shard]:
            return rng.choice(self.issued[shard])
        if kind == "status":  # a request status: of an id sent here, or one never sent
            known = [c.request_id for c in self.issued[shard] if hasattr(c, "request_id")]
            rid = rng.choice(known) if known and rng.random() < 0.6 else self.rid()
            self.asked[shard].append(rid)
            return Fence(rid, local)
        if kind == "late" and self.asked[shard]:  # a late retry after a status was asked
            return Deposit(rng.choice(self.asked[shard]), local, amount(rng))
        if kind == "reuse" and self.issued[shard]:  # the same request id, another command
            return Deposit(rng.choice(self.issued[shard]).request_id, local, amount(rng))
        if kind == "withdraw":
            return Withdraw(self.rid(), local, amount(rng))
        if kind == "transfer":
            return Transfer(self.rid(), local, anyone, amount(rng))
        if kind == "freeze":
            return Freeze(self.rid(), local)
        if kind == "unfreeze":
            return Unfreeze(self.rid(), local)
        if kind == "send":
            count = rng.choices([1, 2, 3, 4, 5, 0, 6], weights=[2, 3, 3, 3, 3, 1, 1])[0]
            if rng.random() < 0.8:
                total = count * rng.choice([1, 3, 40, 100, 333, 800, 1_000, 1_100])
            else:
                total = rng.choice([-1, 0, 1, 5, 99, 777, 2_500, 4_000, 4_001])
            kind_of = rng.choice(list(EnvelopeKind))
            return SendEnvelope(self.rid(), local, kind_of, total, count)
        if kind == "grab":
            envelope = rng.choice(mine[-3:] * 6 + mine + [f"e{shard}-999", "e9-1", "x"])
            return GrabEnvelope(self.rid(), envelope, rng.choice([*ALL_USERS, "bad user"]))
        return Deposit(self.rid(), local, amount(rng))

    @rule(data=st.data())
    def around_expiry(self, data: st.DataObject) -> None:
        """Grabs, sweeps and Shows stamped within a few ms of an envelope's expiry instant,
        in any order: a grab stamped before it may land after a Show read past it."""
        candidates = sorted(self.model.envelopes)
        if not candidates:
            return
        envelope_id = data.draw(st.sampled_from(candidates[-4:]), label="envelope")
        shard = int(envelope_id[1:].split("-")[0])
        expires = self.model.envelopes[envelope_id].expires_at
        offsets = st.integers(-2, 2)
        steps = st.tuples(st.sampled_from(["grab", "sweep", "show"]), offsets, st.integers(1, 2))
        for step, offset, limit in data.draw(st.lists(steps, min_size=2, max_size=6), "steps"):
            at = expires + offset
            if step == "grab":
                user = data.draw(st.sampled_from(ALL_USERS), label="grabber")
                self.commit(shard, at, [GrabEnvelope(self.rid(), envelope_id, user)])
            elif step == "sweep":
                self.commit(shard, at, [ExpireEnvelopes(min(at, self.model.clock[shard]), limit)])
            else:
                self.show_and_check(shard, envelope_id, reader_clock=at)

    def show_and_check(self, shard: int, envelope_id: str, *, reader_clock: int) -> None:
        result = query(self.replicas[0][shard], ShowEnvelope(envelope_id), now_ms=reader_clock)
        assert isinstance(result, Ok), result
        view = result.data
        assert isinstance(view, EnvelopeView)
        actual = {
            "status": view.status,
            "remaining_fen": view.remaining_fen,
            "remaining_count": view.remaining_count,
            "refunded_fen": view.refunded_fen,
            "grabs": {g.user_id: g.amount_fen for g in view.grabs},
            "expiry_pending": view.expiry_pending,
        }
        assert actual == self.model.shown(shard, envelope_id, reader_clock)
        self.answers.setdefault(envelope_id, []).append(view)

    @rule(data=st.data())
    def courier(self, data: st.DataObject) -> None:
        pairs = sorted(pair for pair, sent in self.model.sent.items() if sent)
        if not pairs:
            return
        source, destination = data.draw(st.sampled_from(pairs), label="pair")
        last = len(self.model.sent[(source, destination)])
        applied = self.model.applied[(source, destination)]
        if data.draw(st.booleans(), label="in order"):
            seqs = list(range(applied + 1, min(last, applied + LIMITS.batch_commands_max) + 1))
        else:
            seqs = data.draw(st.lists(st.integers(1, last), min_size=1, max_size=3), label="seqs")
        if seqs:
            ts = self.model.clock[destination] + data.draw(st.integers(0, 1_000))
            self.deliver(source, destination, seqs, ts)
        applied = inbox_seq(self.replicas[0][destination], source)
        up_to = data.draw(
            st.one_of(st.just(applied), st.integers(0, applied), st.just(last + 1)), label="ack"
        )
        self.commit(source, self.model.clock[source], [Acknowledge(destination, up_to)])

    @rule(shard=st.integers(0, SHARDS - 1))
    def restore_from_snapshot(self, shard: int) -> None:
        restored = MemoryStore()
        load(restored, dump(self.replicas[0][shard]))
        self.replicas[1][shard] = restored

    @rule()
    def drain(self) -> None:
        """Deliver everything in order and acknowledge it: nothing left in flight."""
        for (source, destination), sent in sorted(self.model.sent.items()):
            while self.model.applied[(source, destination)] < len(sent):
                first = self.model.applied[(source, destination)] + 1
                last = min(len(sent), first + LIMITS.batch_commands_max - 1)
                self.deliver(
                    source, destination, list(range(first, last + 1)), self.model.clock[destination]
                )
            while self.model.acked[(source, destination)] < len(sent):
                self.commit(source, self.model.clock[source], [Acknowledge(destination, len(sent))])
        assert audit(self.replicas[0]).undelivered_fen == 0

    # -- invariants -----------------------------------------------------------------------------

    @invariant()
    def replicas_are_identical(self) -> None:
        for shard in range(SHARDS):
            assert state_digest(self.replicas[0][shard]) == state_digest(self.replicas[1][shard])
            leader = self.effect_leaders[shard]
            if not leader.unapplied:  # behind: compared once it catches up, or at teardown
                assert dump(leader.store) == dump(self.replicas[0][shard])

    def teardown(self) -> None:
        for shard in range(SHARDS):
            assert dump(self.effect_leaders[shard].caught_up()) == dump(self.replicas[0][shard])

    @invariant()
    def audit_passes(self) -> None:
        report = audit(self.replicas[0], deep=True)
        assert report.ok, report.problems
        assert (
            report.deposits_fen - report.withdrawals_fen
            == self.model.deposits - self.model.withdrawals
        )

    @invariant()
    def balances_and_envelopes_match_the_model(self) -> None:
        for user in ALL_USERS:
            store = self.replicas[0][self.model.shard_of(user)]
            result = query(store, GetAccount(user), now_ms=0)
            if user not in self.model.balances:
                assert isinstance(result, Rejected)
                assert result.reason is Reason.ACCOUNT_NOT_FOUND
                continue
            assert isinstance(result, Ok), (user, result)
            view = result.data
            assert isinstance(view, AccountView)
            assert view.balance_fen == self.model.balances[user], user
            assert view.balance_fen >= 0
        for envelope_id, envelope in self.model.envelopes.items():
            store = self.replicas[0][int(envelope_id[1:].split("-")[0])]
            result = query(store, ShowEnvelope(envelope_id), now_ms=0)
            assert isinstance(result, Ok), result
            shown = result.data
            assert isinstance(shown, EnvelopeView)
            assert (
                shown.status,
                shown.remaining_fen,
                shown.remaining_count,
                shown.refunded_fen,
            ) == (envelope.status, envelope.remaining, envelope.remaining_count, envelope.refunded)
            assert shown.grabbed_count <= shown.share_count
            assert {g.user_id: g.amount_fen for g in shown.grabs} == envelope.grabs
            if shown.remaining_count == 0:
                assert shown.grabbed_fen == shown.total_fen

    @invariant()
    def no_show_answer_is_contradicted_later(self) -> None:
        """Every Show answered so far still holds as an earlier state of the same log."""
        for envelope_id, views in self.answers.items():
            now = self.model.envelopes[envelope_id]
            grabbed = list(now.grabs.items())
            for view in views:
                assert [(g.user_id, g.amount_fen) for g in view.grabs] == grabbed[: len(view.grabs)]
                if view.status is not EnvelopeStatus.OPEN:  # a closed envelope is final
                    assert (now.status, now.refunded, len(now.grabs)) == (
                        view.status,
                        view.refunded_fen,
                        len(view.grabs),
                    )
                assert view.refunded_fen in (0, now.refunded)

    @invariant()
    def statements_number_per_wallet_and_page_exactly(self) -> None:
        """Each wallet's lines are 1..N (however busy its shard's journal), the newest
        line's balance is the model's, and walking its pages returns each line once."""
        for user in ALL_USERS:
            if user not in self.model.balances:
                continue
            store = self.replicas[0][self.model.shard_of(user)]
            seqs: list[int] = []
            newest_balance = None
            before_seq = 0
            for _ in range(1_000):
                result = query(store, GetHistory(user, LIMITS.history_limit_max, before_seq))
                assert isinstance(result, Ok), result
                page = result.data.entries  # type: ignore[union-attr]
                if newest_balance is None and page:
                    newest_balance = page[0].balance_fen
                seqs.extend(line.seq for line in page)
                if not page or page[-1].seq == 1:
                    break
                before_seq = page[-1].seq
            assert seqs == list(range(len(seqs), 0, -1))
            assert newest_balance == self.model.balances[user]

    @invariant()
    def outboxes_hold_exactly_what_is_unacknowledged(self) -> None:
        for (source, destination), sent in self.model.sent.items():
            pending = pending_outbox(self.replicas[0][source], destination, 100)
            acked = self.model.acked[(source, destination)]
            assert [e.seq for e in pending] == list(range(acked + 1, len(sent) + 1))
            assert (
                inbox_seq(self.replicas[0][destination], source)
                == self.model.applied[(source, destination)]
            )


def pending_outbox_entry(source: int, destination: int, seq: int, credit: Credit):
    from hongbao.ledger.records import OutboxEntry

    return OutboxEntry(
        source, destination, seq, credit.user, credit.amount, credit.kind, credit.ref, 0
    )


PROPERTY_SETTINGS = settings(
    derandomize=True,
    max_examples=60,
    stateful_step_count=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)

TestLedgerProperties = LedgerMachine.TestCase
TestLedgerProperties.settings = PROPERTY_SETTINGS


class CreditsTooEarly(Model):
    credit_immediately = True


class BrokenModelMachine(LedgerMachine):
    model_class = CreditsTooEarly


def test_a_wrong_model_is_caught() -> None:
    """The comparison has teeth: a model that credits cross-shard money at once fails."""
    quick = settings(PROPERTY_SETTINGS, max_examples=30, phases=[Phase.generate])
    with pytest.raises(AssertionError):
        run_state_machine_as_test(BrokenModelMachine, settings=quick)
