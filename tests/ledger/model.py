"""A deliberately simple model of the whole ledger, every shard in one place.

It knows the rules from the brief, written again the plain way (dicts and ints, no
tables, no codec), and predicts each command's outcome. It does not predict lucky
amounts: it takes the ledger's draw and checks it against bounds it computes itself.
The property test feeds the model and the ledger the same commands and compares.
"""

from __future__ import annotations

import re
from collections import OrderedDict, defaultdict
from dataclasses import dataclass, field

from hongbao.ledger import (
    Acknowledge,
    Command,
    CreditKind,
    Deliver,
    Deposit,
    EnvelopeKind,
    EnvelopeStatus,
    ExpireEnvelopes,
    Fence,
    Freeze,
    GrabEnvelope,
    Limits,
    Ok,
    Reason,
    Rejected,
    Result,
    SendEnvelope,
    Transfer,
    Unfreeze,
    Withdraw,
    shard_for_user,
)
from hongbao.ledger.results import (
    AccountView,
    AckReceipt,
    DeliveryReceipt,
    EnvelopeCreated,
    ExpiryReport,
    GrabReceipt,
    RequestStatusView,
    TransferReceipt,
)

DAY_MS = 86_400_000
CST_MS = 8 * 3_600_000
USER = re.compile(r"[A-Za-z0-9_.:-]{1,64}")
EVICT_MAX = 8


@dataclass
class ModelEnvelope:
    envelope_id: str
    seq: int
    sender: str
    kind: EnvelopeKind
    total: int
    count: int
    cap: int
    expires_at: int
    remaining: int
    remaining_count: int
    status: EnvelopeStatus = EnvelopeStatus.OPEN
    refunded: int = 0
    grabs: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class Credit:
    user: str
    amount: int
    kind: CreditKind
    ref: str


TAGS: dict[type, str] = {
    Deposit: "deposit",
    Withdraw: "withdraw",
    Transfer: "transfer",
    Freeze: "freeze",
    Unfreeze: "unfreeze",
    SendEnvelope: "send_envelope",
    GrabEnvelope: "grab_envelope",
}


class Mismatch(AssertionError):
    pass


def expect(condition: bool, message: str) -> None:
    if not condition:
        raise Mismatch(message)


class Model:
    credit_immediately = False  # a deliberate bug for the "can the test fail" check

    def __init__(self, shard_count: int, limits: Limits) -> None:
        self.n, self.limits = shard_count, limits
        self.balances: dict[str, int] = {}
        self.frozen: set[str] = set()
        self.outgoing: dict[str, tuple[int, int]] = {}
        self.envelopes: dict[str, ModelEnvelope] = {}
        self.envelope_seq = [0] * shard_count
        self.clock = [0] * shard_count
        self.sent: dict[tuple[int, int], list[Credit]] = defaultdict(list)
        self.acked: dict[tuple[int, int], int] = defaultdict(int)
        self.applied: dict[tuple[int, int], int] = defaultdict(int)
        # request id -> (command, first result, shard clock when remembered), oldest first
        self.memory: list[OrderedDict[str, tuple[Command, Result, int]]] = [
            OrderedDict() for _ in range(shard_count)
        ]
        self.deposits = self.withdrawals = 0

    def shard_of(self, user: str) -> int:
        return shard_for_user(user, self.n)

    # -- the log ----------------------------------------------------------------------------

    def batch(self, shard: int, ts: int, commands: list[Command], results: list[Result]) -> None:
        expect(len(results) == len(commands), "one result per command")
        if len(commands) > self.limits.batch_commands_max:
            for result in results:
                self.refused(result, Reason.BATCH_TOO_LARGE)
            return
        self.clock[shard] = max(self.clock[shard], ts)
        for command, result in zip(commands, results, strict=True):
            self.command(shard, command, result)

    def command(self, shard: int, command: Command, actual: Result) -> None:
        if isinstance(command, ExpireEnvelopes | Deliver | Acknowledge):
            self.system(shard, command, actual)
            return
        if isinstance(command, Fence):
            self.fence(shard, command, actual)
            return
        memory = self.memory[shard]
        if command.request_id in memory:
            first_command, first_result, _ = memory[command.request_id]
            if isinstance(first_command, Fence):
                self.refused(actual, Reason.REQUEST_FENCED)  # the first outcome was final
            elif first_command == command:
                expect(actual == first_result, f"retry answered {actual}, first {first_result}")
            else:
                self.refused(actual, Reason.REQUEST_ID_REUSED)
            return
        self.client(shard, command, actual)
        self.remember(shard, command, actual)

    def fence(self, shard: int, command: Fence, actual: Result) -> None:
        """A request status: the id's first result, or "not applied" and fenced from now."""
        if (reason := self.bad_user(command.user_id)) is not None:
            return self.refused(actual, reason)
        if self.shard_of(command.user_id) != shard:
            return self.refused(actual, Reason.WRONG_SHARD)
        remembered = self.memory[shard].get(command.request_id)
        if remembered is None or isinstance(remembered[0], Fence):
            expect(
                actual == Ok(RequestStatusView(command.request_id, False, "", None, None)),
                f"status of an unknown id answered {actual}",
            )
            if remembered is None:
                self.remember(shard, command, actual)
            return None
        first_command, first_result = remembered[0], remembered[1]
        first_ok = first_result.data if isinstance(first_result, Ok) else None
        first_rejected = first_result if isinstance(first_result, Rejected) else None
        tag = TAGS[type(first_command)]
        wanted = RequestStatusView(command.request_id, True, tag, first_ok, first_rejected)  # type: ignore[arg-type]
        expect(actual == Ok(wanted), f"status answered {actual}, first {first_result}")
        return None

    def remember(self, shard: int, command: Command, actual: Result) -> None:
        memory = self.memory[shard]
        memory[command.request_id] = (command, actual, self.clock[shard])  # type: ignore[union-attr]
        kept_after = self.clock[shard] - self.limits.idempotency_retention_ms
        for _ in range(min(len(memory) - self.limits.idempotency_results_max, EVICT_MAX)):
            _, (_, _, remembered_at) = next(iter(memory.items()))
            if remembered_at > kept_after:
                break  # never forget a request within the retention
            memory.popitem(last=False)

    def refused(self, actual: Result, reason: Reason) -> None:
        expect(isinstance(actual, Rejected) and actual.reason is reason, f"{actual} != {reason}")

    def ok(self, actual: Result, cls: type) -> object:
        expect(isinstance(actual, Ok) and isinstance(actual.data, cls), f"{actual} is not {cls}")
        assert isinstance(actual, Ok)
        return actual.data

    # -- client commands ----------------------------------------------------------------------

    def client(self, shard: int, command: Command, actual: Result) -> None:
        reason = self.invalid(command)
        if reason is not None:
            self.refused(actual, reason)
            return
        match command:
            case Deposit():
                if self.shard_of(command.user_id) != shard:
                    return self.refused(actual, Reason.WRONG_SHARD)
                self.balances[command.user_id] = self.balances.get(command.user_id, 0)
                self.balances[command.user_id] += command.amount_fen
                self.deposits += command.amount_fen
                self.check_view(actual, command.user_id)
            case Withdraw():
                if (refusal := self.payer(shard, command.user_id, command.amount_fen)) is not None:
                    return self.refused(actual, refusal)
                self.pay(shard, command.user_id, command.amount_fen)
                self.withdrawals += command.amount_fen
                self.check_view(actual, command.user_id)
            case Transfer():
                self.transfer(shard, command, actual)
            case Freeze() | Unfreeze():
                if self.shard_of(command.user_id) != shard:
                    return self.refused(actual, Reason.WRONG_SHARD)
                if command.user_id not in self.balances:
                    return self.refused(actual, Reason.ACCOUNT_NOT_FOUND)
                if isinstance(command, Freeze):
                    self.frozen.add(command.user_id)
                else:
                    self.frozen.discard(command.user_id)
                self.check_view(actual, command.user_id)
            case SendEnvelope():
                self.send(shard, command, actual)
            case GrabEnvelope():
                self.grab(shard, command, actual)
        return None

    def invalid(self, command: Command) -> Reason | None:
        """The stateless checks, in the ledger's documented order."""
        limits = self.limits
        match command:
            case Deposit() | Withdraw():
                return self.bad_user(command.user_id) or self.bad_amount(command.amount_fen)
            case Transfer():
                bad = self.bad_user(command.from_user_id) or self.bad_user(command.to_user_id)
                if bad is None and command.from_user_id == command.to_user_id:
                    bad = Reason.SAME_ACCOUNT
                return bad or self.bad_amount(command.amount_fen)
            case Freeze() | Unfreeze():
                return self.bad_user(command.user_id)
            case SendEnvelope():
                count, total = command.share_count, command.total_fen
                if (bad := self.bad_user(command.sender_user_id)) is not None:
                    return bad
                if not 1 <= count <= limits.envelope_shares_max:
                    return Reason.SHARE_COUNT_OUT_OF_RANGE
                if total <= 0:
                    return Reason.AMOUNT_NOT_POSITIVE
                if total < count:
                    return Reason.ENVELOPE_TOTAL_TOO_SMALL
                if total > limits.envelope_total_max_fen:
                    return Reason.ENVELOPE_TOTAL_TOO_LARGE
                if total > count * limits.envelope_share_average_max_fen:
                    return Reason.ENVELOPE_TOTAL_TOO_LARGE
                if command.kind is EnvelopeKind.FIXED and total % count:
                    return Reason.FIXED_TOTAL_NOT_DIVISIBLE
                return None
            case GrabEnvelope():
                if not re.fullmatch(r"e(0|[1-9][0-9]*)-[1-9][0-9]*", command.envelope_id):
                    return Reason.MALFORMED_ENVELOPE_ID
                return self.bad_user(command.user_id)
        return None

    def bad_user(self, user: str) -> Reason | None:
        return None if USER.fullmatch(user) else Reason.MALFORMED_USER_ID

    def bad_amount(self, amount: int) -> Reason | None:
        if amount <= 0:
            return Reason.AMOUNT_NOT_POSITIVE
        return Reason.AMOUNT_TOO_LARGE if amount > self.limits.amount_max_fen else None

    def day(self, shard: int) -> int:
        return (self.clock[shard] + CST_MS) // DAY_MS

    def spent_today(self, shard: int, user: str) -> int:
        day, spent = self.outgoing.get(user, (-1, 0))
        return spent if day == self.day(shard) else 0

    def payer(self, shard: int, user: str, amount: int) -> Reason | None:
        if self.shard_of(user) != shard:
            return Reason.WRONG_SHARD
        if user not in self.balances:
            return Reason.ACCOUNT_NOT_FOUND
        if user in self.frozen:
            return Reason.ACCOUNT_FROZEN
        if self.balances[user] < amount:
            return Reason.INSUFFICIENT_FUNDS
        if self.spent_today(shard, user) + amount > self.limits.daily_outgoing_max_fen:
            return Reason.DAILY_LIMIT_EXCEEDED
        return None

    def pay(self, shard: int, user: str, amount: int) -> None:
        self.balances[user] -= amount
        self.outgoing[user] = (self.day(shard), self.spent_today(shard, user) + amount)

    def credit(self, shard: int, credit: Credit) -> int | None:
        """Credit here, or queue for the courier; the outbox seq if queued."""
        destination = self.shard_of(credit.user)
        if destination == shard or self.credit_immediately:
            self.balances[credit.user] = self.balances.get(credit.user, 0) + credit.amount
            return None
        self.sent[(shard, destination)].append(credit)
        return len(self.sent[(shard, destination)])

    def check_view(self, actual: Result, user: str) -> None:
        view = self.ok(actual, AccountView)
        assert isinstance(view, AccountView)
        expect(view.balance_fen == self.balances[user], f"{user}: {view} vs {self.balances[user]}")
        expect(view.frozen == (user in self.frozen), f"{user}: frozen flag")

    def transfer(self, shard: int, command: Transfer, actual: Result) -> None:
        payer, amount = command.from_user_id, command.amount_fen
        if (refusal := self.payer(shard, payer, amount)) is not None:
            return self.refused(actual, refusal)
        self.pay(shard, payer, amount)
        seq = self.credit(
            shard, Credit(command.to_user_id, amount, CreditKind.TRANSFER, command.request_id)
        )
        receipt = self.ok(actual, TransferReceipt)
        assert isinstance(receipt, TransferReceipt)
        expect(receipt.from_balance_fen == self.balances[payer], "payer balance after transfer")
        expect(receipt.outbox_seq == seq or self.credit_immediately, "transfer outbox seq")
        return None

    # -- envelopes ----------------------------------------------------------------------------

    def send(self, shard: int, command: SendEnvelope, actual: Result) -> None:
        sender, total, count = command.sender_user_id, command.total_fen, command.share_count
        if (refusal := self.payer(shard, sender, total)) is not None:
            return self.refused(actual, refusal)
        self.pay(shard, sender, total)
        self.envelope_seq[shard] += 1
        envelope_id = f"e{shard}-{self.envelope_seq[shard]}"
        fixed = command.kind is EnvelopeKind.FIXED
        self.envelopes[envelope_id] = ModelEnvelope(
            envelope_id=envelope_id,
            seq=self.envelope_seq[shard],
            sender=sender,
            kind=command.kind,
            total=total,
            count=count,
            cap=total // count if fixed else 2 * total // count,
            expires_at=self.clock[shard] + self.limits.envelope_ttl_ms,
            remaining=total,
            remaining_count=count,
        )
        created = self.ok(actual, EnvelopeCreated)
        assert isinstance(created, EnvelopeCreated)
        expect(created.envelope_id == envelope_id, f"{created.envelope_id} != {envelope_id}")
        expect(created.expires_at_ms == self.envelopes[envelope_id].expires_at, "expiry time")
        return None

    def grab(self, shard: int, command: GrabEnvelope, actual: Result) -> None:
        if not command.envelope_id.startswith(f"e{shard}-"):
            return self.refused(actual, Reason.WRONG_SHARD)
        envelope = self.envelopes.get(command.envelope_id)
        if envelope is None:
            return self.refused(actual, Reason.ENVELOPE_NOT_FOUND)
        if envelope.status is EnvelopeStatus.OPEN and self.clock[shard] >= envelope.expires_at:
            self.expire(envelope)
        if command.user_id in envelope.grabs:
            return self.refused(actual, Reason.ALREADY_GRABBED)
        if envelope.status is EnvelopeStatus.EXPIRED:
            return self.refused(actual, Reason.ENVELOPE_EXPIRED)
        if envelope.status is EnvelopeStatus.EMPTY:
            return self.refused(actual, Reason.ENVELOPE_EMPTY)
        receipt = self.ok(actual, GrabReceipt)
        assert isinstance(receipt, GrabReceipt)
        amount = receipt.amount_fen
        left, remaining, cap = envelope.remaining_count, envelope.remaining, envelope.cap
        if envelope.kind is EnvelopeKind.FIXED or left == 1:
            expect(amount == (cap if envelope.kind is EnvelopeKind.FIXED else remaining), "share")
        else:
            low = max(1, remaining - cap * (left - 1))
            high = min(2 * remaining // left, remaining - (left - 1), cap)
            expect(low <= amount <= high, f"lucky share {amount} outside [{low}, {high}]")
        expect(receipt.ordinal == envelope.count - left + 1, "grab ordinal")
        envelope.grabs[command.user_id] = amount
        envelope.remaining -= amount
        envelope.remaining_count -= 1
        if envelope.remaining_count == 0:
            envelope.status = EnvelopeStatus.EMPTY
        seq = self.credit(
            shard, Credit(command.user_id, amount, CreditKind.GRAB, envelope.envelope_id)
        )
        expect(receipt.outbox_seq == seq or self.credit_immediately, "grab outbox seq")
        return None

    def shown(self, shard: int, envelope_id: str, reader_clock: int) -> dict[str, object]:
        """What Show must answer now: the envelope as applied, nothing projected; its expiry
        is pending when OPEN and the TTL passed by the reader's clock or the shard's."""
        e = self.envelopes[envelope_id]
        due = max(reader_clock, self.clock[shard]) >= e.expires_at
        return {
            "status": e.status,
            "remaining_fen": e.remaining,
            "remaining_count": e.remaining_count,
            "refunded_fen": e.refunded,
            "grabs": dict(e.grabs),
            "expiry_pending": e.status is EnvelopeStatus.OPEN and due,
        }

    def expire(self, envelope: ModelEnvelope) -> None:
        self.balances[envelope.sender] += envelope.remaining
        envelope.refunded, envelope.remaining = envelope.remaining, 0
        envelope.status = EnvelopeStatus.EXPIRED

    # -- system commands ----------------------------------------------------------------------

    def system(self, shard: int, command: Command, actual: Result) -> None:
        match command:
            case ExpireEnvelopes():
                if not 1 <= command.limit <= self.limits.expire_batch_max:
                    return self.refused(actual, Reason.LIMIT_OUT_OF_RANGE)
                if command.now_ms > self.clock[shard]:
                    return self.refused(actual, Reason.TIME_IN_FUTURE)
                due = sorted(
                    (e.expires_at, e.seq, e.envelope_id)
                    for e in self.envelopes.values()
                    if e.envelope_id.startswith(f"e{shard}-")
                    and e.status is EnvelopeStatus.OPEN
                    and e.expires_at <= command.now_ms
                )[: command.limit]
                refunded = sum(self.envelopes[eid].remaining for _, _, eid in due)
                for _, _, eid in due:
                    self.expire(self.envelopes[eid])
                report = self.ok(actual, ExpiryReport)
                expect(report == ExpiryReport(tuple(eid for _, _, eid in due), refunded), "sweep")
            case Deliver():
                source, pair = command.source_shard, (command.source_shard, shard)
                if command.seq < 1:
                    return self.refused(actual, Reason.INVALID_SEQUENCE)
                if source >= self.n or source == shard:
                    return self.refused(actual, Reason.INVALID_SHARD)
                if command.seq <= self.applied[pair]:
                    expect(actual == Ok(DeliveryReceipt(source, command.seq, False)), "dup")
                elif command.seq > self.applied[pair] + 1:
                    self.refused(actual, Reason.SEQUENCE_GAP)
                else:
                    credit = self.sent[pair][command.seq - 1]
                    expect(
                        credit
                        == Credit(command.user_id, command.amount_fen, command.kind, command.ref),
                        "courier",
                    )
                    self.balances[credit.user] = self.balances.get(credit.user, 0) + credit.amount
                    self.applied[pair] += 1
                    expect(actual == Ok(DeliveryReceipt(source, command.seq, True)), "delivery")
            case Acknowledge():
                destination, pair = command.destination_shard, (shard, command.destination_shard)
                if destination >= self.n or destination == shard:
                    return self.refused(actual, Reason.INVALID_SHARD)
                if command.up_to_seq > len(self.sent[pair]):
                    return self.refused(actual, Reason.ACK_BEYOND_OUTBOX)
                count = max(
                    0, min(command.up_to_seq - self.acked[pair], self.limits.outbox_batch_max)
                )
                dropped = sum(
                    c.amount for c in self.sent[pair][self.acked[pair] : self.acked[pair] + count]
                )
                self.acked[pair] += count
                expect(
                    actual == Ok(AckReceipt(destination, self.acked[pair], count, dropped)), "ack"
                )
        return None
