"""The request checks: every answer durable, every effect once, every failure absent.

Why by request and not by total: conservation holds for a ledger that silently drops an
acknowledged deposit together with its withdrawal, or applies a refused transfer and its
reverse; only tying each posting back to the request that caused it (``chaos.checks``'
table of refs) shows those. The ties: deposits, withdrawals and transfers by the request
id in the posting's ref; a send by the envelope id its answer carried; a grab by
(grabber, envelope id).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import asdict
from typing import Final

from hongbao.chaos.checks import (
    ESCROW_PREFIX,
    INBOX_PREFIX,
    OUTBOX_PREFIX,
    REQUEST_REF_KINDS,
    WALLET_PREFIX,
    Effect,
    Facts,
    Findings,
    amount_of,
    flag,
    number,
    posting_dict,
    text,
)
from hongbao.chaos.final_state import Posting
from hongbao.chaos.history import Op
from hongbao.chaos.verdict import CheckResult

# The history kind, and the args field naming the wallet, of each request-ref posting.
_REQUEST_OF: Final = {
    "DEPOSIT": ("deposit", "user"),
    "WITHDRAW": ("withdraw", "user"),
    "TRANSFER_OUT": ("transfer", "from"),
    "TRANSFER_IN": ("transfer", "to"),
}
# Postings per kind whose count must match the requests that took effect.
_COUNTED: Final = {
    "DEPOSIT": "deposit",
    "WITHDRAW": "withdraw",
    "TRANSFER_OUT": "transfer",
    "ENVELOPE_SEND": "send",
}


def acknowledged_durable(facts: Facts) -> CheckResult:
    """Every request that took effect is in the final state exactly as it was answered."""
    found = Findings("acknowledged-durable", facts)
    checked: Counter[str] = Counter()
    unverified = 0
    for effect in facts.effects.values():
        if effect.state != "effective":
            continue
        checked[effect.op.kind] += 1
        kind = effect.op.kind
        resolution = facts.final.request_status.get(effect.op.request_id)
        if resolution is not None and resolution.outcome == "not_applied":
            found.add(
                f"{kind} {effect.op.request_id} took effect ({effect.op.status}) yet its"
                " RequestStatus answered not applied",
                op=effect.op,
                evidence={"result": effect.result},
            )
        if kind in ("deposit", "withdraw"):
            _money_in_or_out(facts, found, effect)
        elif kind == "transfer":
            unverified += _transfer(facts, found, effect)
        elif kind == "send":
            _send(facts, found, effect)
        else:
            unverified += _grab(facts, found, effect)
    summary = (
        f"{sum(checked.values())} requests that took effect found as answered"
        f" ({dict(sorted(checked.items()))}); {unverified} cross-shard credits unverified"
        + ("" if facts.settled else " (not settled)")
    )
    details = {"checked": dict(checked), "credits_unverified": unverified}
    return found.result(summary, {**details, "settled": facts.settled})


def _posting(
    found: Findings,
    facts: Facts,
    effect: Effect,
    *,
    user: str,
    kind: str,
    ref: str,
    amount_fen: int | None,
    balance_fen: int | None = None,
) -> Posting | None:
    """The wallet's ``kind`` posting with ``ref``, or an offense when it is missing or
    differs from the answer (amount, and the balance when one was answered)."""
    postings = facts.wallet_postings(user, kind, ref)
    op = effect.op
    if not postings:
        found.add(
            f"{op.kind} {op.request_id} took effect but {user} has no {kind} posting"
            f" with ref {ref}",
            op=op,
            evidence={"result": effect.result},
        )
        return None
    posting = postings[0]
    wrong_amount = amount_fen is not None and posting.amount_fen != amount_fen
    wrong_balance = balance_fen is not None and posting.balance_fen != balance_fen
    if wrong_amount or wrong_balance:
        found.add(
            f"{op.kind} {op.request_id}: {user}'s {kind} posting moved {posting.amount_fen}"
            f" fen leaving {posting.balance_fen}; answered {amount_fen} leaving {balance_fen}",
            op=op,
            evidence={"posting": posting_dict(posting), "result": effect.result},
        )
    return posting


def _money_in_or_out(facts: Facts, found: Findings, effect: Effect) -> None:
    op = effect.op
    sign, kind = (1, "DEPOSIT") if op.kind == "deposit" else (-1, "WITHDRAW")
    _posting(
        found,
        facts,
        effect,
        user=str(op.args.get("user")),
        kind=kind,
        ref=op.request_id,
        amount_fen=sign * amount_of(op),
        balance_fen=number(effect.result, "balance_fen"),
    )


def _transfer(facts: Facts, found: Findings, effect: Effect) -> int:
    """Checks a transfer's debit, and its credit when it must have arrived; 1 if not yet."""
    op, answer = effect.op, effect.result
    sender, receiver, amount_fen = str(op.args.get("from")), str(op.args.get("to")), amount_of(op)
    debit = _posting(
        found,
        facts,
        effect,
        user=sender,
        kind="TRANSFER_OUT",
        ref=op.request_id,
        amount_fen=-amount_fen,
        balance_fen=number(answer, "from_balance_fen"),
    )
    cross = flag(answer, "cross_shard")
    if debit is not None:
        via_outbox = debit.counterparty.startswith(OUTBOX_PREFIX)
        to_receiver = debit.counterparty == WALLET_PREFIX + receiver
        if (cross is not None and cross != via_outbox) or not (via_outbox or to_receiver):
            found.add(
                f"transfer {op.request_id} answered cross_shard={cross} but its debit's"
                f" counterparty is {debit.counterparty}",
                op=op,
                evidence={"posting": posting_dict(debit), "result": answer},
            )
        cross = via_outbox if cross is None else cross
    due = _credit_due(facts, cross)
    if not due and not facts.wallet_postings(receiver, "TRANSFER_IN", op.request_id):
        return 1  # may still be on its way
    credit = _posting(
        found,
        facts,
        effect,
        user=receiver,
        kind="TRANSFER_IN",
        ref=op.request_id,
        amount_fen=amount_fen,
    )
    if credit is not None and cross is not None:
        source = credit.counterparty
        if not (source.startswith(INBOX_PREFIX) if cross else source == WALLET_PREFIX + sender):
            found.add(
                f"transfer {op.request_id}'s credit names {credit.counterparty} as its source",
                op=op,
                evidence={"posting": posting_dict(credit), "result": answer},
            )
    return 0


def _credit_due(facts: Facts, cross_shard: bool | None) -> bool:
    """A same-shard credit is applied with its debit; one through an outbox once settled."""
    return cross_shard is False or facts.settled


def _send(facts: Facts, found: Findings, effect: Effect) -> None:
    op, answer = effect.op, effect.result
    sender, eid = str(op.args.get("sender")), text(answer, "envelope_id")
    if not eid:
        found.add(
            f"send {op.request_id} took effect but its answer names no envelope",
            op=op,
            evidence={"result": answer},
        )
        return
    _posting(
        found,
        facts,
        effect,
        user=sender,
        kind="ENVELOPE_SEND",
        ref=eid,
        amount_fen=-amount_of(op),
        balance_fen=number(answer, "sender_balance_fen"),
    )
    envelope = facts.final.envelopes.get(eid)
    if envelope is None:
        found.add(
            f"send {op.request_id} answered {eid}, which is not in the final state",
            op=op,
            evidence={"result": answer},
        )
        return
    asked = (
        sender,
        amount_of(op),
        number(op.args, "count"),
        str(op.args.get("envelope_kind", "")).upper(),
    )
    stored = (envelope.sender, envelope.total_fen, envelope.count, envelope.kind)
    if asked != stored:
        found.add(
            f"send {op.request_id} asked (sender, total, count, kind) {asked}; {eid} is {stored}",
            op=op,
            evidence={"envelope": asdict(envelope), "result": answer},
        )


def _grab(facts: Facts, found: Findings, effect: Effect) -> int:
    """Checks a grab's entry and, when it must have arrived, its credit; 1 if not yet."""
    op, answer = effect.op, effect.result
    eid, user = str(op.args.get("envelope_id")), str(op.args.get("user"))
    amount_fen, ordinal = number(answer, "amount_fen"), number(answer, "ordinal")
    envelope = facts.final.envelopes.get(eid)
    entries = [] if envelope is None else [g for g in envelope.grabs if g.user == user]
    if not any(g.ordinal == ordinal and g.amount_fen == amount_fen for g in entries):
        found.add(
            f"grab {op.request_id} was answered share {ordinal} ({amount_fen} fen) of {eid};"
            f" the envelope's entries by {user}: {[asdict(g) for g in entries]}",
            op=op,
            evidence={"envelope": asdict(envelope) if envelope else None, "result": answer},
        )
    cross = flag(answer, "cross_shard")
    if not _credit_due(facts, cross) and not facts.wallet_postings(user, "ENVELOPE_GRAB", eid):
        return 1  # may still be on its way
    credit = _posting(
        found, facts, effect, user=user, kind="ENVELOPE_GRAB", ref=eid, amount_fen=amount_fen
    )
    source = INBOX_PREFIX if cross else ESCROW_PREFIX + eid
    if credit is not None and cross is not None and not credit.counterparty.startswith(source):
        found.add(
            f"grab {op.request_id} (cross_shard={cross}) credited from {credit.counterparty}",
            op=op,
            evidence={"posting": posting_dict(credit), "result": answer},
        )
    return 0


def applied_once(facts: Facts) -> CheckResult:
    """No effect twice, and no effect the history cannot explain (a fresh-id retry)."""
    found = Findings("applied-once", facts)
    final = facts.final
    for rid, ops in facts.ops_by_id.items():
        if len(ops) == 1:
            continue
        shapes = {(op.kind, repr(sorted(op.args.items()))) for op in ops}
        if len(shapes) > 1:
            found.add(
                f"request id {rid} was issued for {len(shapes)} different operations",
                op=ops[1],
                evidence={"ops": [asdict(op) for op in ops[:4]]},
            )
    for (user, kind, ref), postings in facts.repeated_postings():
        if len(postings) > 1:
            found.add(
                f"{user} has {len(postings)} {kind} postings with ref {ref}",
                op=_first_op(facts, ref),
                keys=[f"u:{user}"],
                evidence={"postings": [posting_dict(p) for p in postings]},
            )
    for user, wallet in sorted(final.wallets.items()):
        for posting in wallet.postings:
            why = _unknown_ref(facts, user, posting)
            if why:
                found.add(
                    why,
                    keys=[f"u:{user}"],
                    near=_first_op(facts, posting.ref),
                    evidence={"posting": posting_dict(posting)},
                )
    for unclaimed in facts.unclaimed_sends:
        if unclaimed.suspect is None:
            posting = unclaimed.posting
            found.add(
                f"{unclaimed.user} sent envelope {posting.ref} ({-posting.amount_fen} fen), an"
                " answer to no send of the history",
                keys=[f"u:{unclaimed.user}"],
                evidence={"posting": posting_dict(posting)},
            )
    for eid, effects in sorted(facts.sends_by_envelope.items()):
        if len(effects) > 1:
            found.add(
                f"{len(effects)} sends were answered the same envelope {eid}",
                op=effects[1].op,
                evidence={"ops": [asdict(e.op) for e in effects]},
            )
    for eid, envelope in sorted(final.envelopes.items()):
        for grab in envelope.grabs:
            if (grab.user, eid) not in facts.grab_ops:
                found.add(
                    f"{grab.user} holds share {grab.ordinal} of {eid} but never asked",
                    keys=[f"u:{grab.user}", f"e:{eid}"],
                    evidence={"envelope": asdict(envelope)},
                )
    counts = _check_counts(facts, found)
    summary = f"postings per kind against requests that took effect: {counts}"
    return found.result(summary, {"counts": counts})


def _first_op(facts: Facts, rid: str) -> Op | None:
    ops = facts.ops_by_id.get(rid)
    return ops[0] if ops else None


def _unknown_ref(facts: Facts, user: str, posting: Posting) -> str:
    """Why ``posting`` has no request of the history behind it ("" when it has one).
    ENVELOPE_SEND postings are judged by ``Facts.unclaimed_sends`` instead."""
    kind, ref = posting.kind, posting.ref
    if kind in REQUEST_REF_KINDS:
        history_kind, field = _REQUEST_OF[kind]
        for op in facts.ops_by_id.get(ref, []):
            if op.kind == history_kind and op.args.get(field) == user:
                return ""
        return (
            f"{user}'s {kind} of {posting.amount_fen} fen has ref {ref}, no {history_kind}"
            f" of {user} in the history"
        )
    if kind == "ENVELOPE_SEND":
        return ""
    if kind == "ENVELOPE_GRAB":
        if (user, ref) in facts.grab_ops:
            return ""
        return f"{user} was credited a grab of {ref} ({posting.amount_fen} fen) never asked for"
    if kind == "ENVELOPE_REFUND":
        envelope = facts.final.envelopes.get(ref)
        if envelope is None:
            return f"{user} was refunded {posting.amount_fen} fen from {ref}, not a known envelope"
        if (envelope.sender, envelope.state, envelope.refunded_fen) != (
            user,
            "EXPIRED",
            posting.amount_fen,
        ):
            return (
                f"{user} was refunded {posting.amount_fen} fen from {ref} ({envelope.state},"
                f" sent by {envelope.sender}, refunded {envelope.refunded_fen})"
            )
        return ""
    return f"{user}'s journal has a {kind} posting (ref {ref}), which no wallet should"


def _check_counts(facts: Facts, found: Findings) -> dict[str, list[int]]:
    """Postings of each counted kind: between the requests that took effect and those
    plus the unresolved ones. Returns kind -> [postings, effective, unresolved]."""
    postings: Counter[str] = Counter()
    for wallet in facts.final.wallets.values():
        postings.update(p.kind for p in wallet.postings if p.kind in _COUNTED)
    counts: dict[str, list[int]] = {}
    for kind, history_kind in _COUNTED.items():
        effective = facts.count(history_kind, "effective")
        unresolved = facts.count(history_kind, "unresolved")
        counts[kind] = [postings[kind], effective, unresolved]
        if not effective <= postings[kind] <= effective + unresolved:
            found.add(
                f"{postings[kind]} {kind} postings for {effective} {history_kind}s that"
                f" took effect and {unresolved} unresolved"
            )
    return counts


def failed_absent(facts: Facts) -> CheckResult:
    """A definite failure, a fenced id or an applied refusal left no posting, envelope or grab."""
    found = Findings("failed-absent", facts)
    absent = Counter(e.op.kind for e in facts.effects.values() if e.state == "absent")
    for kind in ("deposit", "withdraw", "transfer"):
        for effect in facts.absent(kind):
            hits = [
                (u, p)
                for u, p in facts.by_ref.get(effect.op.request_id, [])
                if p.kind in REQUEST_REF_KINDS
            ]
            if hits:
                found.add(
                    f"{kind} {effect.op.request_id} failed ({_outcome(facts, effect)}) but"
                    f" {len(hits)} postings carry its id",
                    op=effect.op,
                    evidence={"postings": [{"user": u, **posting_dict(p)} for u, p in hits]},
                )
    for unclaimed in facts.unclaimed_sends:
        if unclaimed.suspect is not None:
            effect = facts.effects[unclaimed.suspect.request_id]
            found.add(
                f"send {unclaimed.suspect.request_id} failed ({_outcome(facts, effect)}) but"
                f" {unclaimed.user} sent an envelope of the same total: {unclaimed.posting.ref}",
                op=unclaimed.suspect,
                evidence={"posting": posting_dict(unclaimed.posting)},
            )
    for (user, eid), ops in sorted(facts.grab_ops.items()):
        states = {facts.effects[op.request_id].state for op in ops}
        if states != {"absent"}:
            continue
        envelope = facts.final.envelopes.get(eid)
        entries = [] if envelope is None else [g for g in envelope.grabs if g.user == user]
        credits = facts.wallet_postings(user, "ENVELOPE_GRAB", eid)
        if entries or credits:
            effect = facts.effects[ops[-1].request_id]
            found.add(
                f"every grab of {eid} by {user} failed ({_outcome(facts, effect)}) but it holds"
                f" {len(entries)} shares and {len(credits)} credits",
                op=effect.op,
                evidence={
                    "grabs": [asdict(g) for g in entries],
                    "postings": [posting_dict(p) for p in credits],
                },
            )
    summary = f"{sum(absent.values())} requests that did not take effect left no trace"
    return found.result(summary, {"absent": dict(sorted(absent.items()))})


def _outcome(facts: Facts, effect: Effect) -> str:
    op = effect.op
    if op.status == "info":
        status = facts.final.request_status.get(op.request_id)
        reason = "" if status is None else text(status.result, "reason")
        return f"resolved applied as {reason}" if reason else "resolved not applied"
    return op.reason or op.code or "fail"


def indeterminate_resolved(facts: Facts) -> CheckResult:
    """Every info op got a final answer: an outcome nobody could prove is a failure."""
    found = Findings("indeterminate-resolved", facts)
    outcomes: Counter[str] = Counter()
    for op in facts.ops:
        if op.status != "info":
            continue
        status = facts.final.request_status.get(op.request_id)
        if facts.effects[op.request_id].op.status == "ok":
            outcomes["acknowledged by a retry"] += 1
        elif status is None or status.outcome == "unknown":
            outcomes["unresolved"] += 1
            found.add(
                f"{op.kind} {op.request_id} ({op.code or 'no code'} {op.reason}) has no resolution"
                + ("" if status is None else ": the cluster could not be asked"),
                op=op,
                evidence={"notes": facts.final.notes[:10]},
            )
        else:
            outcomes[status.outcome] += 1
    summary = f"{sum(outcomes.values())} info ops: {dict(sorted(outcomes.items()))}"
    return found.result(summary, {"info_ops": sum(outcomes.values()), **outcomes})


def replicas_identical(facts: Facts) -> CheckResult:
    """The offline audit found every shard's replicas identical (None: it did not run)."""
    found = Findings("replicas-identical", facts)
    replicas_ok, report = facts.final.replicas_ok, facts.final.replicas_report
    if replicas_ok is None:
        return found.result("not audited: no offline replica audit ran", {}, ok=False)
    if not replicas_ok:
        found.add(f"the offline replica audit failed: {report[:500]}", evidence={"report": report})
    verdict = "identical and balanced" if replicas_ok else "differ or do not balance"
    lagging_only = " differ in tables " not in report and "ledger:" not in report
    if not replicas_ok and " is behind node " in report and lagging_only:
        verdict = "behind at the stop (a replica had not caught up; none differ)"
    return found.result(f"replicas {verdict}", {"report": report[:2000]})
