"""The money checks: conservation, no negative balance, no double grab, envelope bounds.

Why conservation is judged three ways: the shards' own totals can agree with each other
and still disagree with what clients were told (a deposit acknowledged but lost, a
withdrawal applied twice), and the wallets' journals can disagree with the totals (a
credit applied twice on delivery). Each view is exact to the fen:

1. the shards: ``sum(balances + escrow + outbox) == sum(deposits - withdrawals)``. An
   outbox entry delivered but not yet acknowledged is counted on both shards, so the
   identity is exact only with every outbox empty. A non-empty outbox fails the check:
   with ``quiet`` it contradicts quiet; without, the totals were read while money was
   moving (each shard at its own moment, so an entry can even be missed on both), and
   conservation is *unproven*, which is not a pass: a credit acknowledged at its source
   but never applied looks exactly like one in flight. The amount left is a detail.
2. the clients: the deposits that took effect minus the withdrawals that took effect (ok,
   or info resolved applied) equal the shards' deposits minus withdrawals (exact when
   every info op is resolved; otherwise the shards' value must lie in the possible range).
3. the wallets: final balances + the envelopes' remaining escrow + the credits debited
   but not yet credited (found in the journals: a cross-shard TRANSFER_OUT without its
   TRANSFER_IN, an envelope grab entry without its ENVELOPE_GRAB posting) equal the same
   net; once settled (quiet, or every outbox empty) nothing may be in flight. Every
   journal is also checked to be whole: seqs 1..N, each balance the previous plus the
   amount, the last one the wallet's balance.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import asdict
from typing import Any

from hongbao.chaos.checks import (
    OUTBOX_PREFIX,
    Facts,
    Findings,
    amount_of,
    number,
    posting_dict,
)
from hongbao.chaos.final_state import Envelope
from hongbao.chaos.verdict import CheckResult

BALANCE_FIELDS = ("balance_fen", "from_balance_fen", "sender_balance_fen")
POSTINGS_SHOWN_MAX = 6  # postings quoted as evidence per offense
_SIGNS = {"deposit": 1, "withdraw": -1}


def conservation(facts: Facts) -> CheckResult:
    """The three views of the module docstring, and every refund where its envelope says."""
    found = Findings("conservation", facts)
    final = facts.final
    held_fen, shard_net_fen, outbox_fen = _shard_view(facts, found)
    client_low, client_high = _client_net_range(facts)
    if final.shards and not client_low <= shard_net_fen <= client_high:
        span = f"{client_low}" if client_low == client_high else f"{client_low}..{client_high}"
        found.add(
            f"the clients saw deposits - withdrawals of {span} fen take effect; the shards"
            f" count {shard_net_fen}",
            evidence={"shards": _totals(facts)},
        )
    if final.shards or client_low == client_high:
        reference_fen = shard_net_fen if final.shards else client_low
        wallet_view = _wallet_view(facts, found, reference_fen)
    else:
        wallet_view = {}
    _check_refunds(facts, found)
    _check_journals(facts, found)
    summary = (
        f"shards hold {held_fen} fen for deposits - withdrawals {shard_net_fen};"
        f" wallets + escrow + in flight {sum(wallet_view.values())} fen;"
        f" outbox left {outbox_fen} fen"
    )
    details: dict[str, Any] = {
        "held_fen": held_fen,
        "net_fen": shard_net_fen,
        "client_net_fen": [client_low, client_high],
        **wallet_view,
        "outbox_left_fen": outbox_fen,
        "quiet": final.quiet,
        "settled": facts.settled,
        "wallets": len(final.wallets),
        "envelopes": len(final.envelopes),
    }
    return found.result(summary, details)


def _totals(facts: Facts) -> dict[str, Any]:
    return {str(s): asdict(t) for s, t in sorted(facts.final.shards.items())}


def _shard_view(facts: Facts, found: Findings) -> tuple[int, int, int]:
    """View 1; returns (held, deposits - withdrawals, outbox left), in fen."""
    final, shards = facts.final, facts.final.shards.values()
    held_fen = sum(t.balances_fen + t.escrow_fen + t.outbox_fen for t in shards)
    net_fen = sum(t.deposits_fen - t.withdrawals_fen for t in shards)
    outbox_fen = sum(t.outbox_fen for t in shards)
    outbox_entries = sum(t.outbox_entries for t in shards)
    if not final.shards:
        found.add(
            "no shard's totals were read: conservation cannot be judged",
            evidence={"notes": final.notes[:20]},
        )
    for shard, totals in sorted(final.shards.items()):
        if totals.problems:
            found.add(
                f"shard {shard}'s audit reports problems: {totals.problems[:5]}",
                evidence={"shard": shard, "totals": asdict(totals)},
            )
    if outbox_fen or outbox_entries:
        why = "quiet, yet" if final.quiet else "not quiet (conservation unproven):"
        found.add(
            f"{why} {outbox_fen} fen in {outbox_entries} outbox entries were left when the"
            f" totals were read; held {held_fen}, deposits - withdrawals {net_fen}",
            evidence={"shards": _totals(facts)},
        )
    elif final.shards and held_fen != net_fen:
        found.add(
            f"the shards hold {held_fen} fen but deposits - withdrawals is {net_fen}"
            f" ({held_fen - net_fen:+d} fen)",
            evidence={"shards": _totals(facts)},
        )
    return held_fen, net_fen, outbox_fen


def _wallet_view(facts: Facts, found: Findings, reference_fen: int) -> dict[str, int]:
    """View 3 against ``reference_fen``; returns its parts, in fen."""
    final = facts.final
    balances_fen = sum(wallet.balance_fen for wallet in final.wallets.values())
    escrow_fen = sum(envelope.remaining_fen for envelope in final.envelopes.values())
    in_flight_fen, in_flight = _in_flight(facts)
    total_fen = balances_fen + escrow_fen + in_flight_fen
    if total_fen != reference_fen:
        unknown = sorted({u.posting.ref for u in facts.unclaimed_sends})
        found.add(
            f"wallets {balances_fen} + escrow {escrow_fen} + in flight {in_flight_fen} ="
            f" {total_fen} fen, but deposits - withdrawals is {reference_fen}"
            f" ({total_fen - reference_fen:+d} fen)",
            evidence={"envelopes_not_collected": unknown[:20], "notes": final.notes[:20]},
        )
    if facts.settled and in_flight:
        found.add(
            f"{len(in_flight)} credits ({in_flight_fen} fen) were debited but never credited,"
            " though every outbox is empty",
            evidence={"credits": in_flight[:20]},
        )
    return {"balances_fen": balances_fen, "escrow_fen": escrow_fen, "in_flight_fen": in_flight_fen}


def _check_refunds(facts: Facts, found: Findings) -> None:
    for eid, envelope in sorted(facts.final.envelopes.items()):
        refunds = facts.wallet_postings(envelope.sender, "ENVELOPE_REFUND", eid)
        refunded_fen = sum(p.amount_fen for p in refunds)
        if refunded_fen != envelope.refunded_fen:
            found.add(
                f"{eid} says {envelope.refunded_fen} fen went back to {envelope.sender}; the"
                f" sender's journal has {len(refunds)} refunds of it for {refunded_fen} fen",
                keys=[f"e:{eid}", f"u:{envelope.sender}"],
                evidence={"envelope": asdict(envelope)},
            )


def _client_net_range(facts: Facts) -> tuple[int, int]:
    """Deposits minus withdrawals that took effect; unresolved ones widen the range."""
    low = high = 0
    for effect in facts.effects.values():
        sign = _SIGNS.get(effect.op.kind, 0)
        amount = sign * amount_of(effect.op)
        if effect.state == "effective":
            low, high = low + amount, high + amount
        elif effect.state == "unresolved":
            low, high = low + min(amount, 0), high + max(amount, 0)
    return low, high


def _in_flight(facts: Facts) -> tuple[int, list[dict[str, Any]]]:
    """Money debited into an outbox whose credit is in no journal (yet)."""
    credits: list[dict[str, Any]] = []
    for user, wallet in sorted(facts.final.wallets.items()):
        for posting in wallet.postings:
            if posting.kind != "TRANSFER_OUT" or not posting.counterparty.startswith(OUTBOX_PREFIX):
                continue
            if not any(p.kind == "TRANSFER_IN" for _, p in facts.by_ref.get(posting.ref, [])):
                credits.append({"transfer": posting.ref, "from": user, "fen": -posting.amount_fen})
    for eid, envelope in sorted(facts.final.envelopes.items()):
        for grab in envelope.grabs:
            if not facts.wallet_postings(grab.user, "ENVELOPE_GRAB", eid):
                credits.append({"envelope": eid, "user": grab.user, "fen": grab.amount_fen})
    return sum(int(c["fen"]) for c in credits), credits


def _check_journals(facts: Facts, found: Findings) -> None:
    for user, wallet in sorted(facts.final.wallets.items()):
        balance_fen = 0
        for index, posting in enumerate(wallet.postings, start=1):
            balance_fen += posting.amount_fen
            if posting.seq != index or posting.balance_fen != balance_fen:
                found.add(
                    f"{user}'s journal breaks at line {index}: seq {posting.seq}, balance"
                    f" {posting.balance_fen} fen where the amounts sum to {balance_fen}",
                    keys=[f"u:{user}"],
                    evidence=_around(wallet.postings, index),
                )
                break
        else:
            if wallet.balance_fen != balance_fen:
                found.add(
                    f"{user}'s balance is {wallet.balance_fen} fen but the journal sums to"
                    f" {balance_fen}",
                    keys=[f"u:{user}"],
                    evidence=_around(wallet.postings, len(wallet.postings)),
                )


def _around(postings: list[Any], index: int) -> dict[str, Any]:
    start = max(0, index - POSTINGS_SHOWN_MAX // 2)
    return {"postings": [posting_dict(p) for p in postings[start : start + POSTINGS_SHOWN_MAX]]}


def no_negative_balance(facts: Facts) -> CheckResult:
    """No balance below 0: final, after any posting, in any answer, in any shard's audit."""
    found = Findings("no-negative-balance", facts)
    final = facts.final
    postings = 0
    for user, wallet in sorted(final.wallets.items()):
        if wallet.balance_fen < 0:
            found.add(f"{user}'s final balance is {wallet.balance_fen} fen", keys=[f"u:{user}"])
        for posting in wallet.postings:
            postings += 1
            if posting.balance_fen < 0:
                found.add(
                    f"{user}'s posting {posting.seq} ({posting.kind} {posting.ref}) left"
                    f" {posting.balance_fen} fen",
                    keys=[f"u:{user}"],
                    evidence={"posting": posting_dict(posting)},
                )
    answers = 0
    for effect in facts.effects.values():
        if effect.state != "effective":
            continue
        answers += 1
        for name in BALANCE_FIELDS:
            value = number(effect.result, name)
            if value is not None and value < 0:
                found.add(
                    f"{effect.op.kind} {effect.op.request_id} answered {name} {value}",
                    op=effect.op,
                    evidence={"result": effect.result},
                )
    for shard, totals in sorted(final.shards.items()):
        if totals.negative_balances:
            found.add(
                f"shard {shard}'s audit counts {totals.negative_balances} negative balances",
                evidence={"totals": asdict(totals)},
            )
    summary = (
        f"{len(final.wallets)} wallets, {postings} postings, {answers} answers and"
        f" {len(final.shards)} shard audits checked for a balance below 0"
    )
    return found.result(summary, {"wallets": len(final.wallets), "postings": postings})


def no_double_grab(facts: Facts) -> CheckResult:
    """One share per user per envelope: in its grabs, in the credits, in the answers."""
    found = Findings("no-double-grab", facts)
    final = facts.final
    for eid, envelope in sorted(final.envelopes.items()):
        if len({g.user for g in envelope.grabs}) == len(envelope.grabs):
            continue
        for user, times in sorted(Counter(g.user for g in envelope.grabs).items()):
            if times > 1:
                found.add(
                    f"{user} appears {times} times in {eid}'s grabs",
                    keys=[f"u:{user}", f"e:{eid}"],
                    evidence={"envelope": asdict(envelope)},
                )
    for (user, kind, ref), postings in facts.repeated_postings():
        if kind == "ENVELOPE_GRAB" and len(postings) > 1:
            found.add(
                f"{user} was credited {len(postings)} grabs of {ref}"
                f" ({sum(p.amount_fen for p in postings)} fen)",
                keys=[f"u:{user}", f"e:{ref}"],
                evidence={"postings": [posting_dict(p) for p in postings]},
            )
    for (user, eid), _ in sorted(facts.grab_ops.items()):
        effective = facts.effective_grabs(user, eid)
        if len(effective) > 1:
            found.add(
                f"{user} was answered {len(effective)} successful grabs of {eid}",
                op=effective[1].op,
                evidence={"results": [e.result for e in effective]},
            )
    grabs = sum(len(e.grabs) for e in final.envelopes.values())
    summary = f"{len(final.envelopes)} envelopes, {grabs} grabs: one share per user"
    return found.result(summary, {"envelopes": len(final.envelopes), "grabs": grabs})


def grabs_within_envelope(facts: Facts) -> CheckResult:
    """Each envelope's own numbers add up, and every grab that took effect is in it."""
    found = Findings("grabs-within-envelope", facts)
    final = facts.final
    for eid, envelope in sorted(final.envelopes.items()):
        for why in envelope_problems(envelope):
            found.add(f"{eid}: {why}", keys=[f"e:{eid}"], evidence={"envelope": asdict(envelope)})
    checked = 0
    for effect in facts.effective("grab"):
        checked += 1
        op, answer = effect.op, effect.result
        eid, user = str(op.args.get("envelope_id")), str(op.args.get("user"))
        held = final.envelopes.get(eid)
        if held is None:
            found.add(
                f"grab of {eid} by {user} took effect but {eid} is not in the final state",
                op=op,
                evidence={"result": answer},
            )
            continue
        entries = [g for g in held.grabs if g.user == user]
        ordinal, amount_fen = number(answer, "ordinal"), number(answer, "amount_fen")
        remaining = number(answer, "remaining_count")
        if not any(g.ordinal == ordinal and g.amount_fen == amount_fen for g in entries):
            found.add(
                f"{user} was answered share {ordinal} of {eid} ({amount_fen} fen); the"
                f" envelope's grabs by {user}: {[asdict(g) for g in entries]}",
                op=op,
                evidence={"envelope": asdict(held), "result": answer},
            )
        elif remaining is not None and ordinal is not None and remaining != held.count - ordinal:
            found.add(
                f"{user} was answered {remaining} shares remaining after share {ordinal} of"
                f" {held.count}",
                op=op,
                evidence={"envelope": asdict(held), "result": answer},
            )
    summary = (
        f"{len(final.envelopes)} envelopes within count and total; {checked} effective grabs"
        " found in their envelopes"
    )
    return found.result(summary, {"envelopes": len(final.envelopes), "grabs_checked": checked})


def envelope_problems(envelope: Envelope) -> list[str]:
    """What is wrong with one envelope's own numbers (empty when nothing is)."""
    problems: list[str] = []
    grabs, count, total = envelope.grabs, envelope.count, envelope.total_fen
    grabbed_fen = sum(g.amount_fen for g in grabs)
    if len(grabs) > count:
        problems.append(f"{len(grabs)} grabs of {count} shares")
    if grabbed_fen + envelope.remaining_fen + envelope.refunded_fen != total:
        problems.append(
            f"grabbed {grabbed_fen} + remaining {envelope.remaining_fen} + refunded"
            f" {envelope.refunded_fen} != total {total} fen"
        )
    if envelope.remaining_count != count - len(grabs):
        problems.append(f"remaining_count {envelope.remaining_count} with {len(grabs)} of {count}")
    if sorted(g.ordinal for g in grabs) != list(range(1, len(grabs) + 1)):
        problems.append(f"ordinals {[g.ordinal for g in grabs]} are not 1..{len(grabs)}")
    cap_fen = total // count if envelope.kind == "FIXED" else 2 * total // max(count, 1)
    for grab in grabs:
        if grab.amount_fen < 1 or grab.amount_fen > cap_fen:
            problems.append(
                f"share {grab.ordinal} of {grab.amount_fen} fen is outside 1..{cap_fen}"
            )
        elif envelope.kind == "FIXED" and grab.amount_fen != cap_fen:
            problems.append(f"fixed share {grab.ordinal} is {grab.amount_fen}, not {cap_fen} fen")
    problems.extend(_state_problems(envelope))
    return problems


def _state_problems(envelope: Envelope) -> list[str]:
    state, left_fen, left = envelope.state, envelope.remaining_fen, envelope.remaining_count
    if state == "EMPTY" and (left or left_fen or envelope.refunded_fen):
        return [f"EMPTY with {left} shares, {left_fen} fen left, {envelope.refunded_fen} refunded"]
    if state == "OPEN" and (left < 1 or left_fen < left or envelope.refunded_fen):
        return [f"OPEN with {left} shares, {left_fen} fen left, {envelope.refunded_fen} refunded"]
    if state == "EXPIRED" and (left_fen or envelope.refunded_fen < 1):
        return [f"EXPIRED with {left_fen} fen in escrow and {envelope.refunded_fen} refunded"]
    if state not in ("OPEN", "EMPTY", "EXPIRED"):
        return [f"unknown state {state!r}"]
    return []
