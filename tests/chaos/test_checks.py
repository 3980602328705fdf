"""The correctness checks judge hand-built and simulated runs: pass when right, fail when not.

Histories and final states come from :class:`Ledger`, a tiny model of the ledger that
journals every operation the way ``hongbao.ledger`` does (kinds, refs, counterparties,
outbox credits across two shards), so a test states a run as a script of operations and
then breaks one thing in what the model produced.
"""

from __future__ import annotations

import json
import random
from collections import Counter
from collections.abc import Callable
from copy import deepcopy
from dataclasses import dataclass, field, replace
from typing import Literal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hongbao.chaos.checks import correctness_checks
from hongbao.chaos.final_state import (
    Envelope,
    EnvelopeGrab,
    FinalState,
    Posting,
    RequestStatus,
    ShardTotals,
    Wallet,
)
from hongbao.chaos.history import Kind, Op
from hongbao.chaos.verdict import CONTEXT_OPS_MAX, OFFENDING_MAX, CheckResult
from hongbao.ledger.lucky import share_bounds
from hongbao.ledger.sharding import shard_for_user

SHARDS = 2
USERS = ("u0", "u1", "u2", "u5")  # u0, u1 on shard 1; u2, u5 on shard 0
NAMES = [
    "conservation", "no-negative-balance", "no-double-grab", "grabs-within-envelope",
    "acknowledged-durable", "applied-once", "failed-absent", "indeterminate-resolved",
    "replicas-identical",
]  # fmt: skip
Outcome = Literal["ok", "fail", "applied", "fenced", "lost"]
# ok: acknowledged; fail: definite error; applied / fenced: info, resolved applied / not
# applied; lost: info the collector could not resolve (not applied in the model).


def shard(user: str) -> int:
    return shard_for_user(user, SHARDS)


Answer = dict[str, object] | str  # an answer's fields, or the reason of a refusal


@dataclass
class Ledger:
    """Applies operations like the ledger and records them like the workload."""

    rng: random.Random = field(default_factory=lambda: random.Random(7))
    ops: list[Op] = field(default_factory=list)
    journals: dict[str, list[Posting]] = field(default_factory=dict)
    envelopes: dict[str, Envelope] = field(default_factory=dict)
    status: dict[str, RequestStatus] = field(default_factory=dict)
    totals: list[Counter[str]] = field(default_factory=lambda: [Counter() for _ in range(SHARDS)])
    pending: list[tuple[int, str, str, str, int]] = field(default_factory=list)  # outboxes
    envelope_seq: list[int] = field(default_factory=lambda: [0] * SHARDS)

    def balance(self, user: str) -> int:
        lines = self.journals.get(user)
        return lines[-1].balance_fen if lines else 0

    def _post(self, user: str, kind: str, fen: int, counterparty: str, ref: str) -> int:
        lines = self.journals.setdefault(user, [])
        after = self.balance(user) + fen
        lines.append(Posting(len(lines) + 1, kind, fen, after, counterparty, ref))
        self.totals[shard(user)]["balances_fen"] += fen
        return after

    def _ship(self, source: int, user: str, kind: str, ref: str, fen: int) -> None:
        self.totals[source]["outbox_fen"] += fen
        self.pending.append((source, user, kind, ref, fen))

    def _record(
        self, kind: Kind, args: dict[str, object], outcome: Outcome, apply: Callable[[str], Answer]
    ) -> dict[str, object] | None:
        """Runs ``apply`` when the outcome lets the request reach the ledger; records the op."""
        rid, at_s = f"r{len(self.ops)}", float(len(self.ops))
        op = Op(len(self.ops), kind, rid, "shenzhen", args, at_s, at_s + 0.5, "ok")
        self.ops.append(op)
        if outcome in ("fail", "fenced", "lost"):
            op.status, op.reason = ("fail", "UNAVAILABLE") if outcome == "fail" else ("info", "")
            if outcome != "fail":
                self.status[rid] = RequestStatus(
                    "not_applied" if outcome == "fenced" else "unknown"
                )
            return None
        answer = apply(rid)
        if isinstance(answer, str):  # a refusal: applied, no money moved
            if outcome == "ok":
                op.status, op.reason = "fail", answer
            else:
                op.status, self.status[rid] = "info", RequestStatus("applied", {"reason": answer})
            return None
        if outcome == "ok":
            op.result = answer
        else:
            op.status, self.status[rid] = "info", RequestStatus("applied", answer)
        return answer

    def deposit(self, user: str, fen: int, outcome: Outcome = "ok") -> None:
        def apply(rid: str) -> Answer:
            self.totals[shard(user)]["deposits_fen"] += fen
            return {"balance_fen": self._post(user, "DEPOSIT", fen, "@world", rid)}

        self._record("deposit", {"user": user, "amount_fen": fen}, outcome, apply)

    def withdraw(self, user: str, fen: int, outcome: Outcome = "ok") -> None:
        def apply(rid: str) -> Answer:
            if self.balance(user) < fen:
                return "INSUFFICIENT_FUNDS"
            self.totals[shard(user)]["withdrawals_fen"] += fen
            return {"balance_fen": self._post(user, "WITHDRAW", -fen, "@world", rid)}

        self._record("withdraw", {"user": user, "amount_fen": fen}, outcome, apply)

    def transfer(self, sender: str, receiver: str, fen: int, outcome: Outcome = "ok") -> None:
        def apply(rid: str) -> Answer:
            if self.balance(sender) < fen:
                return "INSUFFICIENT_FUNDS"
            cross = shard(sender) != shard(receiver)
            if cross:
                left = self._post(sender, "TRANSFER_OUT", -fen, f"@outbox:{shard(receiver)}", rid)
                self._ship(shard(sender), receiver, "TRANSFER_IN", rid, fen)
            else:
                left = self._post(sender, "TRANSFER_OUT", -fen, f"u:{receiver}", rid)
                self._post(receiver, "TRANSFER_IN", fen, f"u:{sender}", rid)
            return {"from_balance_fen": left, "cross_shard": cross}

        args: dict[str, object] = {"from": sender, "to": receiver, "amount_fen": fen}
        self._record("transfer", args, outcome, apply)

    def send(
        self, sender: str, total: int, count: int, kind: str = "lucky", outcome: Outcome = "ok"
    ) -> str:
        """The envelope id ("" when the send did not take effect)."""

        def apply(rid: str) -> Answer:
            if self.balance(sender) < total:
                return "INSUFFICIENT_FUNDS"
            home = shard(sender)
            self.envelope_seq[home] += 1
            eid = f"e{home}-{self.envelope_seq[home]}"
            left = self._post(sender, "ENVELOPE_SEND", -total, f"@escrow:{eid}", eid)
            self.totals[home]["escrow_fen"] += total
            self.envelopes[eid] = Envelope(sender, kind.upper(), total, count, "OPEN", total,
                                           count, 0, [])  # fmt: skip
            return {"envelope_id": eid, "sender_balance_fen": left}

        args = {"sender": sender, "total_fen": total, "count": count, "envelope_kind": kind}
        answer = self._record("send", dict(args), outcome, apply)
        return "" if answer is None else str(answer["envelope_id"])

    def grab(self, eid: str, user: str, outcome: Outcome = "ok") -> None:
        def apply(rid: str) -> Answer:
            env = self.envelopes[eid]
            if any(g.user == user for g in env.grabs):
                return "ALREADY_GRABBED"
            if env.state != "OPEN":
                return "ENVELOPE_EXPIRED" if env.state == "EXPIRED" else "ENVELOPE_EMPTY"
            left, fen = env.remaining_count, env.total_fen // env.count
            if env.kind == "LUCKY":
                cap = 2 * env.total_fen // env.count
                bounds = share_bounds(remaining_fen=env.remaining_fen, remaining_count=left,
                                      cap_fen=cap)  # fmt: skip
                fen = self.rng.randint(*bounds)
            ordinal = env.count - left + 1
            env.grabs.append(EnvelopeGrab(ordinal, user, fen))
            env.remaining_count, env.remaining_fen = left - 1, env.remaining_fen - fen
            env.state = "EMPTY" if left == 1 else "OPEN"
            home = home_of(eid)
            self.totals[home]["escrow_fen"] -= fen
            cross = shard(user) != home
            if cross:
                self._ship(home, user, "ENVELOPE_GRAB", eid, fen)
            else:
                self._post(user, "ENVELOPE_GRAB", fen, f"@escrow:{eid}", eid)
            return {"amount_fen": fen, "ordinal": ordinal, "remaining_count": left - 1,
                    "cross_shard": cross}  # fmt: skip

        self._record("grab", {"envelope_id": eid, "user": user}, outcome, apply)

    def expire(self, eid: str) -> None:
        env = self.envelopes[eid]
        if env.state == "OPEN":
            refund = env.remaining_fen
            self._post(env.sender, "ENVELOPE_REFUND", refund, f"@escrow:{eid}", eid)
            self.totals[home_of(eid)]["escrow_fen"] -= refund
            env.state, env.remaining_fen, env.refunded_fen = "EXPIRED", 0, refund

    def final(self, *, deliver: bool = True) -> tuple[list[Op], FinalState]:
        """The history and the final state (fresh copies: corrupting them is harmless);
        ``deliver``: every outbox credit applied first (the cluster is quiet)."""
        for source, user, kind, ref, fen in self.pending if deliver else []:
            self._post(user, kind, fen, f"@inbox:{source}", ref)
            self.totals[source]["outbox_fen"] -= fen
        self.pending = [] if deliver else self.pending
        users = sorted({u for op in self.ops for u in _users(op)})
        wallets = {u: Wallet(self.balance(u), deepcopy(self.journals.get(u, []))) for u in users}
        shards = {
            s: ShardTotals(t["balances_fen"], t["escrow_fen"], t["deposits_fen"],
                           t["withdrawals_fen"], sum(1 for p in self.pending if p[0] == s),
                           t["outbox_fen"], 0, [])
            for s, t in enumerate(self.totals)
        }  # fmt: skip
        final = FinalState(wallets, deepcopy(self.envelopes), deepcopy(self.status), shards,
                           quiet=deliver, replicas_ok=True)  # fmt: skip
        return deepcopy(self.ops), final


def home_of(eid: str) -> int:
    return int(eid[1 : eid.index("-")])


def _users(op: Op) -> list[str]:
    return [str(op.args[k]) for k in ("user", "from", "to", "sender") if k in op.args]


def verdict(history: list[Op], final: FinalState) -> dict[str, CheckResult]:
    results = correctness_checks(history, final)
    assert [r.name for r in results] == NAMES
    return {r.name: r for r in results}


def failed(history: list[Op], final: FinalState) -> set[str]:
    return {name for name, r in verdict(history, final).items() if not r.ok}


def scripted() -> Ledger:
    """A small run with every kind of op, both shards, every outcome but ``lost``."""
    ledger = Ledger()
    for user in USERS:
        ledger.deposit(user, 10_000)
    ledger.withdraw("u0", 500)
    ledger.withdraw("u2", 99_999)  # refused INSUFFICIENT_FUNDS
    ledger.transfer("u0", "u1", 700)  # same shard
    ledger.transfer("u1", "u2", 300)  # cross shard
    ledger.transfer("u5", "u0", 50, outcome="applied")
    ledger.deposit("u5", 40, outcome="fenced")
    ledger.deposit("u5", 41, outcome="fail")
    lucky = ledger.send("u0", 1_000, 3)
    fixed = ledger.send("u2", 600, 2, kind="fixed", outcome="applied")
    for user in ("u1", "u2", "u5"):
        ledger.grab(lucky, user)
    ledger.grab(lucky, "u0")  # ENVELOPE_EMPTY
    ledger.grab(fixed, "u0", outcome="applied")
    ledger.grab(fixed, "u0")  # ALREADY_GRABBED
    ledger.send("u1", 500, 5, outcome="fail")
    open_one = ledger.send("u5", 300, 3)
    ledger.grab(open_one, "u1")
    ledger.expire(open_one)
    ledger.grab(open_one, "u2")  # ENVELOPE_EXPIRED
    return ledger


def op_of(history: list[Op], kind: str, status: str = "ok") -> Op:
    return next(op for op in history if op.kind == kind and op.status == status)


# -- a correct run --------------------------------------------------------------------------


def test_a_correct_run_passes_every_check() -> None:
    history, final = scripted().final()
    results = verdict(history, final)
    assert {name: r.summary for name, r in results.items() if not r.ok} == {}
    assert results["indeterminate-resolved"].details["info_ops"] == 4
    assert results["applied-once"].details["counts"]["DEPOSIT"] == [4, 4, 0]
    assert results["acknowledged-durable"].details["checked"]["grab"] == 5


def test_money_in_flight_when_not_quiet_is_unproven() -> None:
    history, final = scripted().final(deliver=False)
    results = verdict(history, final)
    assert not results["conservation"].ok
    assert "not quiet" in results["conservation"].offending[0].why
    assert results["conservation"].details["in_flight_fen"] > 0
    assert results["acknowledged-durable"].ok  # credits on their way are not missing yet
    assert results["acknowledged-durable"].details["credits_unverified"] > 0


# -- each way a check must fail -------------------------------------------------------------


def bump(record: object, name: str, by: int) -> None:
    setattr(record, name, getattr(record, name) + by)


def fail(op: Op) -> None:
    op.status, op.reason, op.result = "fail", "UNAVAILABLE", {}


def drop_postings(final: FinalState, ref: str) -> None:
    for wallet in final.wallets.values():
        wallet.postings = [p for p in wallet.postings if p.ref != ref]


Mutation = Callable[[list[Op], FinalState], object]
BROKEN: dict[str, tuple[Mutation, set[str], bool]] = {  # what, then the checks that fail
    "money created on a shard": (
        lambda h, f: bump(f.shards[0], "balances_fen", 1), {"conservation"}, True),
    "no shard's totals read": (lambda h, f: f.shards.clear(), {"conservation"}, True),
    "money lost from a wallet": (
        lambda h, f: bump(f.wallets["u5"], "balance_fen", -3), {"conservation"}, True),
    "negative balance in a journal": (
        lambda h, f: setattr(f.wallets["u1"].postings[0], "balance_fen", -1),
        {"no-negative-balance", "conservation"}, False),
    "a shard counts a negative balance": (
        lambda h, f: bump(f.shards[1], "negative_balances", 1), {"no-negative-balance"}, True),
    "double grab": (
        lambda h, f: f.envelopes["e1-1"].grabs.append(EnvelopeGrab(4, "u1", 1)),
        {"no-double-grab", "grabs-within-envelope"}, False),
    "too many grabs": (  # e0-1 is fixed, 2 shares of 300, both taken
        lambda h, f: f.envelopes["e0-1"].grabs.append(EnvelopeGrab(3, "u1", 300)),
        {"grabs-within-envelope"}, False),
    "acknowledged deposit missing": (
        lambda h, f: drop_postings(f, op_of(h, "deposit").request_id),
        {"acknowledged-durable"}, False),
    "acknowledged transfer missing": (
        lambda h, f: drop_postings(f, op_of(h, "transfer").request_id),
        {"acknowledged-durable"}, False),
    "posting with an unknown request id": (
        lambda h, f: setattr(f.wallets["u0"].postings[0], "ref", "router-fresh-1"),
        {"applied-once", "acknowledged-durable"}, True),
    "failed deposit took effect": (
        lambda h, f: fail(op_of(h, "deposit")), {"failed-absent"}, False),
    "failed transfer took effect": (
        lambda h, f: fail(op_of(h, "transfer")), {"failed-absent"}, False),
    "failed send took effect": (lambda h, f: fail(op_of(h, "send")), {"failed-absent"}, False),
    "failed grab took effect": (lambda h, f: fail(op_of(h, "grab")), {"failed-absent"}, False),
    "unresolved info op": (
        lambda h, f: f.request_status.pop(op_of(h, "transfer", "info").request_id),
        {"indeterminate-resolved"}, False),
    "replicas differ": (
        lambda h, f: setattr(f, "replicas_ok", False), {"replicas-identical"}, True),
    "replicas not audited": (
        lambda h, f: setattr(f, "replicas_ok", None), {"replicas-identical"}, True),
}  # fmt: skip


@pytest.mark.parametrize("what", sorted(BROKEN))
def test_each_way_of_being_wrong_fails_its_check(what: str) -> None:
    mutate, expected, exactly = BROKEN[what]
    history, final = scripted().final()
    mutate(history, final)
    bad = failed(history, final)
    assert bad == expected if exactly else expected <= bad, bad


def test_lost_cross_shard_credit_fails_even_when_quiet() -> None:
    ledger = scripted()
    ledger.pending.pop()  # acknowledged at its source, never applied at its destination
    history, final = ledger.final()
    assert {"conservation", "acknowledged-durable"} <= failed(history, final)


def test_cross_shard_grab_credited_twice_fails() -> None:
    ledger = scripted()
    ledger.pending += [p for p in ledger.pending if p[2] == "ENVELOPE_GRAB"][:1]
    history, final = ledger.final()
    assert {"no-double-grab", "applied-once", "conservation"} <= failed(history, final)


def test_deposit_applied_twice_fails() -> None:
    history, final = scripted().final()
    wallet, first = final.wallets["u2"], final.wallets["u2"].postings[0]
    wallet.balance_fen += first.amount_fen
    wallet.postings.append(replace(first, seq=len(wallet.postings) + 1,
                                   balance_fen=wallet.balance_fen))  # fmt: skip
    bump(final.shards[0], "balances_fen", first.amount_fen)
    bump(final.shards[0], "deposits_fen", first.amount_fen)
    assert failed(history, final) == {"applied-once", "conservation"}


def test_envelope_nobody_asked_for_fails() -> None:
    ledger = scripted()
    ledger.send("u1", 100, 1)
    history, final = ledger.final()
    assert history.pop().kind == "send"  # a router's retry under a fresh id, say
    assert "applied-once" in failed(history, final)


def test_info_op_the_collector_could_not_resolve_fails() -> None:
    ledger = scripted()
    ledger.deposit("u0", 5, outcome="lost")
    history, final = ledger.final()
    assert failed(history, final) == {"indeterminate-resolved"}


def test_offenses_are_capped_and_carry_their_context() -> None:
    ledger = Ledger()
    for index in range(30):
        ledger.deposit("u0", index + 1)
    history, final = ledger.final()
    for op in history:
        op.status, op.reason = "fail", "NOT_LEADER"
    result = verdict(history, final)["failed-absent"]
    assert result.details["offenses"] == 30
    assert len(result.offending) == OFFENDING_MAX
    offense = result.offending[0]
    assert offense.op is not None
    assert offense.op["request_id"] == "r0"
    assert 0 < len(offense.context) <= CONTEXT_OPS_MAX
    assert all(o["request_id"] != "r0" for o in offense.context)
    assert offense.evidence["postings"][0]["ref"] == "r0"
    assert CheckResult.from_dict(json.loads(json.dumps(result.to_dict()))) == result


# -- property: simulated runs pass; one corruption fails ------------------------------------


def random_run(seed: int) -> Ledger:
    rng = random.Random(seed)
    ledger = Ledger(rng=random.Random(seed + 1))
    kinds: tuple[Outcome, ...] = ("ok", "fail", "applied", "fenced")
    for user in USERS:
        ledger.deposit(user, rng.randint(500, 5_000))
    sent: list[str] = []
    for _ in range(rng.randint(5, 40)):
        user, other = rng.sample(USERS, 2)
        outcome = rng.choices(kinds, weights=(7, 1, 1, 1))[0]
        kind = rng.choice(("deposit", "withdraw", "transfer", "send", "grab", "grab", "expire"))
        if kind == "deposit":
            ledger.deposit(user, rng.randint(1, 900), outcome)
        elif kind == "withdraw":
            ledger.withdraw(user, rng.randint(1, 900), outcome)
        elif kind == "transfer":
            ledger.transfer(user, other, rng.randint(1, 900), outcome)
        elif kind == "send":
            count = rng.randint(1, 4)
            fixed = rng.random() < 0.3
            total = count * rng.randint(1, 200) if fixed else rng.randint(count, 800)
            eid = ledger.send(user, total, count, "fixed" if fixed else "lucky", outcome)
            sent += [eid] if eid else []
        elif kind == "grab" and sent:
            ledger.grab(rng.choice(sent), user, outcome)
        elif kind == "expire" and sent:
            ledger.expire(rng.choice(sent))
    return ledger


ANSWER_FIELDS = {
    "deposit": ("balance_fen",), "withdraw": ("balance_fen",),
    "transfer": ("from_balance_fen",), "send": ("sender_balance_fen",),
    "grab": ("amount_fen", "ordinal", "remaining_count"),
}  # fmt: skip


def corrupt(history: list[Op], final: FinalState, rng: random.Random) -> str:
    """Breaks one thing at random; returns what (for the failure message)."""
    wallets = [w for w in final.wallets.values() if w.postings]
    ok_ops = [op for op in history if op.status == "ok"]
    infos = [op for op in history if op.status == "info"]
    choices = ["shard", "wallet", "drop", "duplicate", "ref", "flip", "answer", "replicas"]
    fails = [op for op in history if op.status == "fail"]
    resolved = [op for op in infos if "reason" not in final.request_status[op.request_id].result]
    choices += ["resolution"] if infos else []
    choices += ["forge"] if fails else []
    choices += ["swap"] if resolved else []
    choices += ["share"] if any(e.grabs for e in final.envelopes.values()) else []
    what = rng.choice(choices)
    if what == "shard":
        name = rng.choice(("balances_fen", "escrow_fen", "deposits_fen", "withdrawals_fen"))
        bump(final.shards[rng.randrange(SHARDS)], name, rng.choice((-1, 1)))
    elif what == "wallet":
        rng.choice(wallets).balance_fen += rng.choice((-1, 1))
    elif what in ("drop", "duplicate"):
        wallet = rng.choice(wallets)
        line = rng.choice(wallet.postings)
        if what == "drop":
            wallet.postings.remove(line)
        else:
            wallet.postings.append(replace(line))
        balance = 0
        for seq, posting in enumerate(wallet.postings, start=1):
            balance += posting.amount_fen
            posting.seq, posting.balance_fen = seq, balance
        wallet.balance_fen = balance
    elif what == "ref":
        rng.choice(rng.choice(wallets).postings).ref += "x"
    elif what == "flip":
        fail(rng.choice(ok_ops))
    elif what == "answer":
        op = rng.choice(ok_ops)
        name = rng.choice(sorted(k for k, v in op.result.items() if isinstance(v, int)
                                 and not isinstance(v, bool)))  # fmt: skip
        op.result[name] = int(str(op.result[name])) + 1
    elif what == "replicas":
        final.replicas_ok = rng.choice((False, None))
    elif what == "resolution":
        final.request_status.pop(rng.choice(infos).request_id, None)
    elif what == "forge":  # a failed op reported as acknowledged, with a made-up answer
        op = rng.choice(fails)
        op.status, op.reason = "ok", ""
        op.result = {name: 1 for name in ANSWER_FIELDS[op.kind]} | {"envelope_id": "e0-999"}
    elif what == "swap":  # a resolution that says the opposite of what happened
        status = final.request_status[rng.choice(resolved).request_id]
        applied = status.outcome == "applied"
        status.outcome, status.result = ("not_applied", {}) if applied else ("applied", {})
    else:
        envelope = rng.choice([e for e in final.envelopes.values() if e.grabs])
        rng.choice(envelope.grabs).amount_fen += 1
    return what


@settings(max_examples=150, deadline=None)
@given(st.integers(0, 2**32))
def test_simulated_runs_pass_and_any_corruption_fails(seed: int) -> None:
    history, final = random_run(seed).final()
    bad = {n: r.summary for n, r in verdict(history, final).items() if not r.ok}
    assert bad == {}
    what = corrupt(history, final, random.Random(seed))
    assert failed(history, final), f"corruption {what!r} passed every check"
