"""The Jepsen-style correctness checks of a chaos run: the history against the final state.

Why pure functions: ``hongbao chaos check REPORT_DIR`` re-analyses a stored run to the same
verdict, and the tests build histories by hand; so nothing here touches a cluster or a
file. :func:`correctness_checks` returns one :class:`~hongbao.chaos.verdict.CheckResult`
per check, in a fixed order, named exactly: ``conservation``, ``no-negative-balance``,
``no-double-grab``, ``grabs-within-envelope`` (``chaos.checks_money``),
``acknowledged-durable``, ``applied-once``, ``failed-absent``, ``indeterminate-resolved``,
``replicas-identical`` (``chaos.checks_requests``). This module holds what they share: the
index of the history and of the journals (:class:`Facts`) and the offense collector.

How the ledger journals each operation (read from ``ledger/``: wallet.py, envelope.py,
outbox.py, books.py; the API kind names from ``node/ledger_api.py``), which the checks
rely on to tie a posting to the request that caused it:

=============== ============================== =========================================
posting kind    ref                            counterparty
=============== ============================== =========================================
DEPOSIT         the request id                 ``@world``
WITHDRAW        the request id                 ``@world``
TRANSFER_OUT    the request id                 ``u:{to}`` (same shard) or ``@outbox:{d}``
TRANSFER_IN     the request id (delivered, the ``u:{from}`` (same shard) or ``@inbox:{s}``
                outbox entry carries it too)   (delivered from shard s)
ENVELOPE_SEND   the envelope id ``e{s}-{n}``   ``@escrow:{envelope id}``
ENVELOPE_GRAB   the envelope id (same and      ``@escrow:{envelope id}`` or ``@inbox:{s}``
                cross shard alike)
ENVELOPE_REFUND the envelope id (at expiry)    ``@escrow:{envelope id}`` (the sender's)
SETTLEMENT      ``{d}:{a}-{b}``                never on a wallet (outbox bookkeeping)
=============== ============================== =========================================

So a send and a grab are *not* journalled under their request id: a send is tied to its
envelope by the envelope id its answer carried (``result.envelope_id``), and a grab by the
pair (grabber, envelope id), which the ledger makes unique (its grabbers table: a second
grab is refused ALREADY_GRABBED). An ``ENVELOPE_SEND`` posting no effective send answered
is an envelope nobody asked for (a retry under a fresh id, or a failed send that took
effect). A request id took effect ("effective") when an op with it is ``ok``, or an
``info`` op with it was resolved ``applied`` with a success result; it is "absent" when
every op with it failed definitely, was resolved ``not_applied``, or was applied as a
refusal (``{"reason": ...}``: the id is spent, no money moved); otherwise "unresolved".
Credits that travel through an outbox are checked only once the money is "settled":
the collector saw the cluster quiet, or every shard's outbox empty.
"""

from __future__ import annotations

import bisect
import gc
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Final, Literal

from hongbao.chaos.final_state import FinalState, Posting
from hongbao.chaos.history import Op
from hongbao.chaos.verdict import CONTEXT_OPS_MAX, OFFENDING_MAX, CheckResult, Offense

EffectState = Literal["effective", "absent", "unresolved"]
REQUEST_REF_KINDS: Final = frozenset({"DEPOSIT", "WITHDRAW", "TRANSFER_OUT", "TRANSFER_IN"})
WALLET_PREFIX: Final = "u:"
OUTBOX_PREFIX: Final = "@outbox:"
INBOX_PREFIX: Final = "@inbox:"
ESCROW_PREFIX: Final = "@escrow:"


def text(data: dict[str, object], key: str) -> str | None:
    value = data.get(key)
    return value if isinstance(value, str) else None


def number(data: dict[str, object], key: str) -> int | None:
    """An integer field (bools are not amounts), or None when absent or mistyped."""
    value = data.get(key)
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def flag(data: dict[str, object], key: str) -> bool | None:
    value = data.get(key)
    return value if isinstance(value, bool) else None


def amount_of(op: Op) -> int:
    """What the op asks to move, in fen (0 for a grab: its amount is the ledger's draw)."""
    key = "total_fen" if op.kind == "send" else "amount_fen"
    return number(op.args, key) or 0


def users_of(op: Op) -> list[str]:
    names = ("user", "from", "to", "sender")
    return [user for user in (text(op.args, name) for name in names) if user is not None]


def posting_dict(posting: Posting) -> dict[str, Any]:
    return asdict(posting)


@dataclass(slots=True)
class Effect:
    """What one request id did, as far as the history and the resolutions tell."""

    op: Op  # the op that decided it: the ok one, the resolved one, else the first
    state: EffectState
    result: dict[str, object]  # the answer's fields (effective only)


@dataclass(slots=True)
class UnclaimedSend:
    """An ENVELOPE_SEND posting no effective send answered, and the op that may explain it."""

    user: str
    posting: Posting
    suspect: Op | None  # an absent (failed) send of the same sender and total, if any


class Facts:
    """The history and the final state indexed once, for every check (O(ops + postings))."""

    def __init__(self, history: Sequence[Op], final: FinalState) -> None:
        self.final = final
        self.ops = sorted(history, key=lambda op: (op.invoke_s, op.op_id))
        self.ops_by_id: dict[str, list[Op]] = defaultdict(list)
        for op in self.ops:
            self.ops_by_id[op.request_id].append(op)
        self.effects = {rid: self._effect(ops) for rid, ops in self.ops_by_id.items()}
        self._by_key: dict[str, list[Op]] | None = None  # built on the first offense
        self._times: dict[str, list[float]] = {}
        # (user, kind, ref) -> that wallet's postings; ref -> (user, posting) everywhere
        self.postings: dict[tuple[str, str, str], list[Posting]] = defaultdict(list)
        self.by_ref: dict[str, list[tuple[str, Posting]]] = defaultdict(list)
        for user, wallet in final.wallets.items():
            for posting in wallet.postings:
                self.postings[(user, posting.kind, posting.ref)].append(posting)
                self.by_ref[posting.ref].append((user, posting))
        outbox_empty = all(
            t.outbox_fen == 0 and t.outbox_entries == 0 for t in final.shards.values()
        )
        # Cross-shard credits must have arrived: nothing is left in any outbox.
        self.settled = final.quiet or (bool(final.shards) and outbox_empty)
        self.grab_ops: dict[tuple[str, str], list[Op]] = defaultdict(list)
        for op in self.ops:
            grabbed, grabber = text(op.args, "envelope_id"), text(op.args, "user")
            if op.kind == "grab" and grabbed is not None and grabber is not None:
                self.grab_ops[(grabber, grabbed)].append(op)
        self.sends_by_envelope: dict[str, list[Effect]] = defaultdict(list)
        for effect in self.effects.values():
            envelope = text(effect.result, "envelope_id")
            if effect.op.kind == "send" and effect.state == "effective" and envelope:
                self.sends_by_envelope[envelope].append(effect)
        self.unclaimed_sends = self._unclaimed_sends()

    # -- request ids ------------------------------------------------------------------------

    def _effect(self, ops: list[Op]) -> Effect:
        if len(ops) == 1 and ops[0].status != "info":  # the common case, fast
            op = ops[0]
            return (
                Effect(op, "effective", op.result)
                if op.status == "ok"
                else Effect(op, "absent", {})
            )
        for op in ops:
            if op.status == "ok":
                return Effect(op, "effective", op.result)
        unresolved: Op | None = None
        for op in ops:
            if op.status != "info":
                continue
            status = self.final.request_status.get(op.request_id)
            if status is None or status.outcome == "unknown":
                unresolved = unresolved or op
            elif status.outcome == "applied" and "reason" not in status.result:
                return Effect(op, "effective", status.result)
        if unresolved is not None:
            return Effect(unresolved, "unresolved", {})
        return Effect(ops[0], "absent", {})

    def effective(self, kind: str) -> Iterable[Effect]:
        return (e for e in self.effects.values() if e.state == "effective" and e.op.kind == kind)

    def absent(self, kind: str) -> Iterable[Effect]:
        return (e for e in self.effects.values() if e.state == "absent" and e.op.kind == kind)

    def count(self, kind: str, state: EffectState) -> int:
        return sum(1 for e in self.effects.values() if e.state == state and e.op.kind == kind)

    def effective_grabs(self, user: str, envelope: str) -> list[Effect]:
        rids = dict.fromkeys(op.request_id for op in self.grab_ops.get((user, envelope), []))
        return [self.effects[rid] for rid in rids if self.effects[rid].state == "effective"]

    def wallet_postings(self, user: str, kind: str, ref: str) -> list[Posting]:
        return self.postings.get((user, kind, ref), [])

    def repeated_postings(self) -> list[tuple[tuple[str, str, str], list[Posting]]]:
        """(user, kind, ref) keys with more than one posting, sorted."""
        return sorted((key, lines) for key, lines in self.postings.items() if len(lines) > 1)

    def _unclaimed_sends(self) -> list[UnclaimedSend]:
        """ENVELOPE_SEND postings whose envelope no effective send answered, each paired
        with an unresolved send of that sender and total (explained: no finding) or else
        an absent one (a failed send that took effect), consumed one for one."""
        pending: dict[tuple[str, int], list[Effect]] = defaultdict(list)
        for effect in self.effects.values():
            sender = text(effect.op.args, "sender")
            if effect.op.kind == "send" and sender is not None and effect.state != "effective":
                pending[(sender, amount_of(effect.op))].append(effect)
        for candidates in pending.values():  # unresolved first: they explain, not accuse
            candidates.sort(key=lambda e: (e.state != "unresolved", e.op.invoke_s))
        found = []
        for user, wallet in sorted(self.final.wallets.items()):
            for posting in wallet.postings:
                if posting.kind != "ENVELOPE_SEND" or posting.ref in self.sends_by_envelope:
                    continue
                candidates = pending.get((user, -posting.amount_fen), [])
                suspect = candidates.pop(0) if candidates else None
                if suspect is None or suspect.state == "absent":
                    found.append(UnclaimedSend(user, posting, suspect.op if suspect else None))
        return found

    # -- context ----------------------------------------------------------------------------

    @staticmethod
    def keys_of(op: Op) -> list[str]:
        keys = [f"u:{user}" for user in users_of(op)]
        envelope = text(op.args, "envelope_id") or text(op.result, "envelope_id")
        if envelope is not None:
            keys.append(f"e:{envelope}")
        return keys

    def context(self, keys: Sequence[str], near: Op | None) -> list[dict[str, Any]]:
        """Up to CONTEXT_OPS_MAX ops of the same users/envelopes nearest ``near`` in time
        (the first ones when there is no op to be near), oldest first."""
        if self._by_key is None:
            self._by_key = defaultdict(list)
            for op in self.ops:
                for key in self.keys_of(op):
                    self._by_key[key].append(op)
            self._times = {key: [op.invoke_s for op in ops] for key, ops in self._by_key.items()}
        at_s = near.invoke_s if near is not None else float("-inf")
        chosen: dict[int, Op] = {}
        for key in keys:
            ops, times = self._by_key.get(key, []), self._times.get(key, [])
            middle = bisect.bisect_left(times, at_s)
            for op in ops[max(0, middle - CONTEXT_OPS_MAX) : middle + CONTEXT_OPS_MAX + 1]:
                if near is None or op.op_id != near.op_id:
                    chosen[op.op_id] = op
        nearest = sorted(chosen.values(), key=lambda op: abs(op.invoke_s - at_s))
        kept = sorted(nearest[:CONTEXT_OPS_MAX], key=lambda op: (op.invoke_s, op.op_id))
        return [asdict(op) for op in kept]


@dataclass(slots=True)
class Findings:
    """The offenses of one check: all counted, the first OFFENDING_MAX kept in context."""

    name: str
    facts: Facts
    count: int = 0
    offending: list[Offense] = field(default_factory=list)

    def add(
        self,
        why: str,
        *,
        op: Op | None = None,
        keys: Sequence[str] = (),
        near: Op | None = None,
        evidence: dict[str, Any] | None = None,
    ) -> None:
        """One offense. ``keys`` ("u:USER", "e:ENVELOPE") select the context (default: the
        op's own); ``near`` centres it when there is no offending op."""
        self.count += 1
        if len(self.offending) >= OFFENDING_MAX:
            return
        centre = op or near
        context_keys = list(keys) or (Facts.keys_of(centre) if centre is not None else [])
        self.offending.append(
            Offense(
                why=why,
                op=asdict(op) if op is not None else None,
                context=self.facts.context(context_keys, centre),
                evidence=evidence or {},
            )
        )

    def result(self, summary: str, details: dict[str, Any], *, ok: bool = True) -> CheckResult:
        """``ok`` False fails the check even without an offense (e.g. nothing to check)."""
        details = {"offenses": self.count, **details}
        if self.count > len(self.offending):
            summary += f" ({self.count} offenses, first {len(self.offending)} shown)"
        return CheckResult(
            name=self.name,
            ok=ok and self.count == 0,
            summary=summary,
            offending=self.offending,
            details=details,
        )


def not_collected(name: str, final: FinalState) -> CheckResult:
    """The verdict of a check whose inputs the collector could not read: a failure that
    says so, with what was missing and why, not a judgement over a partial state."""
    return CheckResult(
        name=name,
        ok=False,
        summary=f"not judged: the final state was not collected ({final.unread_summary()})",
        details={"unread": dict(final.unread), "notes": final.notes[:20]},
    )


def correctness_checks(history: Sequence[Op], final: FinalState) -> list[CheckResult]:
    """Every correctness check of the run, in report order (module docstring).

    The cyclic garbage collector is paused meanwhile: indexing a history of a million ops
    allocates millions of small containers, each allocation burst triggering full
    collections over the (large, acyclic) history itself, which made the checks 3 to 5
    times slower. Nothing built here forms a cycle; the collector is restored on exit.
    """
    from hongbao.chaos import checks_money, checks_requests  # they import this module

    judged = [
        ("conservation", checks_money.conservation),
        ("no-negative-balance", checks_money.no_negative_balance),
        ("no-double-grab", checks_money.no_double_grab),
        ("grabs-within-envelope", checks_money.grabs_within_envelope),
        ("acknowledged-durable", checks_requests.acknowledged_durable),
        ("applied-once", checks_requests.applied_once),
        ("failed-absent", checks_requests.failed_absent),
        ("indeterminate-resolved", checks_requests.indeterminate_resolved),
    ]
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        facts = Facts(history, final)
        unread = final.unread_summary()
        if unread:  # a partial state would be judged as if the rest held zeros
            results = [not_collected(name, final) for name, _ in judged]
        else:
            results = [check(facts) for _, check in judged]
        return [*results, checks_requests.replicas_identical(facts)]
    finally:
        if was_enabled:
            gc.enable()
