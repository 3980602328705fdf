"""Conservation and the other money invariants, checked over every shard at once.

Rules of this module: read-only, and it trusts nothing it can recompute. The equation
(DESIGN section 4), in fen, exactly:

    sum(balances) + sum(escrow of open envelopes) + sum(undelivered outbox)
        == sum(deposits) - sum(withdrawals)

*Undelivered* needs care. An outbox entry lives on its source shard until acknowledged;
once its destination has applied it, the same money is also in a balance there. So an
entry counts only while ``seq > inbox_seq(destination, source)``: the destination's own
number says whether it has applied it, whatever the acknowledgement's progress. Entries
delivered but not yet acknowledged are thus counted once (in the balance), and nothing in
flight is missed. The stores must form a consistent cut (a quiesced cluster, or copies
taken together in a test): reading a source before and its destination after a new
transfer would count that money twice.

Also checked: no negative balance; every envelope's grabs are distinct users, never more
than its count, each within bounds, and grabs + escrow + refund == total; outbox seqs are
gap-free; the per-shard running totals equal what the tables hold. With ``deep=True`` the
journal is replayed: every transaction balances and every account's postings sum to what
the tables hold.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass, field

from hongbao.ledger.books import read_identity, read_state
from hongbao.ledger.codec import decode
from hongbao.ledger.outbox import inbox_seq
from hongbao.ledger.records import (
    META_OUTBOX_PREFIX,
    Account,
    Envelope,
    EnvelopeKind,
    EnvelopeStatus,
    Grab,
    HistoryEntry,
    JournalTx,
    OutboxCursor,
    OutboxEntry,
    expiry_key,
    grabs_prefix,
    history_prefix,
    outbox_prefix,
)
from hongbao.ledger.store import LedgerStore, Table, iterate


@dataclass(frozen=True, slots=True)
class AuditReport:
    problems: tuple[str, ...]
    balances_fen: int
    escrow_fen: int
    undelivered_fen: int
    deposits_fen: int
    withdrawals_fen: int
    accounts: int
    envelopes: int

    @property
    def ok(self) -> bool:
        return not self.problems


@dataclass(slots=True)
class _Tally:
    """Accumulates while the audit walks the shards."""

    problems: list[str] = field(default_factory=list)
    balances_fen: int = 0
    escrow_fen: int = 0
    undelivered_fen: int = 0
    deposits_fen: int = 0
    withdrawals_fen: int = 0
    accounts: int = 0
    envelopes: int = 0


def audit(stores_by_shard: Mapping[int, LedgerStore], *, deep: bool = False) -> AuditReport:
    tally = _Tally()
    shard_ids = sorted(stores_by_shard)
    if shard_ids != list(range(len(shard_ids))) or not shard_ids:
        tally.problems.append(f"expected shards 0..n-1, got {shard_ids}")
    for shard_id in shard_ids:
        store = stores_by_shard[shard_id]
        identity = read_identity(store)
        if identity.shard_id != shard_id or identity.shard_count != len(shard_ids):
            tally.problems.append(f"shard {shard_id} believes it is {identity}")
        _audit_shard(shard_id, store, tally, deep=deep)
    _audit_cross_shard(stores_by_shard, tally)
    held = tally.balances_fen + tally.escrow_fen + tally.undelivered_fen
    net = tally.deposits_fen - tally.withdrawals_fen
    if held != net:
        tally.problems.append(
            f"conservation: balances {tally.balances_fen} + escrow {tally.escrow_fen} + "
            f"undelivered {tally.undelivered_fen} = {held} != deposits - withdrawals = {net}"
        )
    return AuditReport(
        problems=tuple(tally.problems),
        balances_fen=tally.balances_fen,
        escrow_fen=tally.escrow_fen,
        undelivered_fen=tally.undelivered_fen,
        deposits_fen=tally.deposits_fen,
        withdrawals_fen=tally.withdrawals_fen,
        accounts=tally.accounts,
        envelopes=tally.envelopes,
    )


@dataclass(frozen=True, slots=True)
class ShardTotals:
    """One shard's money, recomputed from its tables (what ``Admin.ShardAudit`` serves).

    ``outbox_fen`` counts every entry not yet acknowledged, delivered or not: summed over
    shards it equals the money in flight only once the outboxes have drained (what the
    live audit waits for), since a delivered entry's money is also in a balance there.
    ``problems`` are the shard's own invariants that do not hold (running totals against
    tables, envelopes, outbox seqs, negative balances).
    """

    shard_id: int
    balances_fen: int
    escrow_fen: int
    deposits_fen: int
    withdrawals_fen: int
    outbox_entries: int
    outbox_fen: int
    accounts: int
    negative_balances: int
    problems: tuple[str, ...]


def shard_totals(store: LedgerStore) -> ShardTotals:
    """The totals of the one shard ``store`` holds, read in one (read) transaction.

    It walks every account, envelope and outbox row of the shard: O(rows), for an
    operator's audit, not for a hot path.
    """
    shard_id = read_identity(store).shard_id
    tally = _Tally()
    _audit_shard(shard_id, store, tally, deep=False)
    outbox = [decode(value, OutboxEntry).amount_fen for _, value in iterate(store, Table.OUTBOX)]
    negative = sum(
        1 for _, value in iterate(store, Table.ACCOUNTS) if decode(value, Account).balance_fen < 0
    )
    return ShardTotals(
        shard_id=shard_id,
        balances_fen=tally.balances_fen,
        escrow_fen=tally.escrow_fen,
        deposits_fen=tally.deposits_fen,
        withdrawals_fen=tally.withdrawals_fen,
        outbox_entries=len(outbox),
        outbox_fen=sum(outbox),
        accounts=tally.accounts,
        negative_balances=negative,
        problems=tuple(tally.problems),
    )


def _audit_shard(shard_id: int, store: LedgerStore, tally: _Tally, *, deep: bool) -> None:
    problems = tally.problems
    state = read_state(store)
    if not state.conserved():
        problems.append(f"shard {shard_id}: running totals do not balance: {state}")
    tally.deposits_fen += state.deposits_fen
    tally.withdrawals_fen += state.withdrawals_fen
    balances: dict[str, int] = {}
    for _, value in iterate(store, Table.ACCOUNTS):
        account = decode(value, Account)
        balances[account.user_id] = account.balance_fen
        if account.balance_fen < 0:
            problems.append(f"shard {shard_id}: {account.user_id} has {account.balance_fen} fen")
    tally.accounts += len(balances)
    tally.balances_fen += sum(balances.values())
    if sum(balances.values()) != state.balances_fen:
        problems.append(
            f"shard {shard_id}: balances sum to {sum(balances.values())}, "
            f"running total says {state.balances_fen}"
        )
    escrow: dict[str, int] = {}
    for _, value in iterate(store, Table.ENVELOPES):
        envelope = decode(value, Envelope)
        escrow[envelope.envelope_id] = envelope.remaining_fen
        _audit_envelope(shard_id, store, envelope, problems)
    tally.envelopes += len(escrow)
    tally.escrow_fen += sum(escrow.values())
    if sum(escrow.values()) != state.escrow_fen:
        problems.append(f"shard {shard_id}: escrow {sum(escrow.values())} != {state.escrow_fen}")
    outbox = _audit_outbox(shard_id, store, problems)
    if sum(outbox.values()) != state.outbox_fen:
        problems.append(f"shard {shard_id}: outbox {sum(outbox.values())} != {state.outbox_fen}")
    if deep:
        legs = _audit_journal(shard_id, store, balances, escrow, outbox, problems)
        _audit_statements(shard_id, store, legs, problems)


def _audit_envelope(shard_id: int, store: LedgerStore, envelope: Envelope, out: list[str]) -> None:
    where = f"shard {shard_id}: {envelope.envelope_id}"
    grabs = [
        decode(value, Grab)
        for _, value in iterate(store, Table.GRABS, prefix=grabs_prefix(envelope.envelope_id))
    ]
    grabbers = list(iterate(store, Table.GRABBERS, prefix=grabs_prefix(envelope.envelope_id)))
    users = {grab.user_id for grab in grabs}
    if [grab.ordinal for grab in grabs] != list(range(1, len(grabs) + 1)):
        out.append(f"{where}: grab ordinals are not 1..{len(grabs)}")
    if len(users) != len(grabs) or len(grabbers) != len(grabs):
        out.append(f"{where}: a user grabbed twice ({len(grabs)} grabs, {len(users)} users)")
    if len(grabs) > envelope.share_count or len(grabs) + envelope.remaining_count != (
        envelope.share_count
    ):
        out.append(
            f"{where}: {len(grabs)} grabs and {envelope.remaining_count} left "
            f"of {envelope.share_count}"
        )
    grabbed_fen = sum(grab.amount_fen for grab in grabs)
    if grabbed_fen + envelope.remaining_fen + envelope.refunded_fen != envelope.total_fen:
        out.append(f"{where}: grabbed {grabbed_fen} + escrow + refund != {envelope.total_fen}")
    for grab in grabs:
        if not 1 <= grab.amount_fen <= envelope.share_cap_fen:
            out.append(f"{where}: share {grab.amount_fen} outside [1, {envelope.share_cap_fen}]")
        if envelope.kind is EnvelopeKind.FIXED and grab.amount_fen != envelope.share_cap_fen:
            out.append(f"{where}: fixed share {grab.amount_fen} != {envelope.share_cap_fen}")
    indexed = store.get(Table.EXPIRY, expiry_key(envelope.expires_at_ms, envelope.envelope_seq))
    is_open = envelope.status is EnvelopeStatus.OPEN
    if (indexed is not None) != is_open:
        out.append(
            f"{where}: {envelope.status} but expiry index entry present={indexed is not None}"
        )
    if is_open and not envelope.remaining_count <= envelope.remaining_fen <= (
        envelope.share_cap_fen * envelope.remaining_count
    ):
        out.append(
            f"{where}: escrow {envelope.remaining_fen} cannot pay {envelope.remaining_count} shares"
        )
    if not is_open and envelope.remaining_fen != 0:
        out.append(f"{where}: {envelope.status} but {envelope.remaining_fen} fen still in escrow")
    if (envelope.status is EnvelopeStatus.EMPTY) != (envelope.remaining_count == 0):
        out.append(f"{where}: status {envelope.status} with {envelope.remaining_count} shares left")


def _audit_outbox(shard_id: int, store: LedgerStore, out: list[str]) -> dict[int, int]:
    """Checks seqs per destination; returns the unacknowledged fen per destination."""
    pending: dict[int, int] = {}
    for _, value in iterate(store, Table.META, prefix=META_OUTBOX_PREFIX):
        cursor = decode(value, OutboxCursor)
        destination = cursor.destination_shard
        entries = [
            decode(row, OutboxEntry)
            for _, row in iterate(store, Table.OUTBOX, prefix=outbox_prefix(destination))
        ]
        expected = list(range(cursor.acked_seq + 1, cursor.last_seq + 1))
        if [entry.seq for entry in entries] != expected:
            out.append(f"shard {shard_id}: outbox to {destination} is not seqs {expected[:3]}...")
        if any(e.source_shard != shard_id or e.destination_shard != destination for e in entries):
            out.append(f"shard {shard_id}: outbox to {destination} holds a misfiled entry")
        pending[destination] = sum(entry.amount_fen for entry in entries)
    total_rows = sum(1 for _ in iterate(store, Table.OUTBOX))
    counted = sum(c.last_seq - c.acked_seq for c in _cursors(store))
    if total_rows != counted:
        out.append(f"shard {shard_id}: {total_rows} outbox rows, cursors account for {counted}")
    return pending


def _audit_cross_shard(stores: Mapping[int, LedgerStore], tally: _Tally) -> None:
    for source, store in sorted(stores.items()):
        for cursor in _cursors(store):
            destination = cursor.destination_shard
            if destination not in stores:
                tally.problems.append(f"shard {source}: outbox toward missing shard {destination}")
                continue
            applied = inbox_seq(stores[destination], source)
            if not cursor.acked_seq <= applied <= cursor.last_seq:
                tally.problems.append(
                    f"{source}->{destination}: applied {applied} outside acked "
                    f"{cursor.acked_seq}..sent {cursor.last_seq}"
                )
            for _, value in iterate(store, Table.OUTBOX, prefix=outbox_prefix(destination)):
                entry = decode(value, OutboxEntry)
                if entry.seq > applied:
                    tally.undelivered_fen += entry.amount_fen
    for destination, store in sorted(stores.items()):
        for key, value in iterate(store, Table.INBOX):
            source = int.from_bytes(key, "big")
            sent = _cursor_last_seq(stores.get(source), destination)
            if int.from_bytes(value, "big") > sent:
                tally.problems.append(f"{source}->{destination}: applied beyond the {sent} sent")


def _audit_journal(
    shard_id: int,
    store: LedgerStore,
    balances: dict[str, int],
    escrow: dict[str, int],
    outbox: dict[int, int],
    out: list[str],
) -> dict[str, list[tuple[int, int]]]:
    """Replays the journal; returns each wallet's legs, (journal seq, fen), in order."""
    sums: dict[str, int] = defaultdict(int)
    legs: dict[str, list[tuple[int, int]]] = defaultdict(list)
    for _, value in iterate(store, Table.JOURNAL):
        tx = decode(value, JournalTx)
        if sum(leg.delta_fen for leg in tx.postings) != 0:
            out.append(f"shard {shard_id}: journal tx {tx.seq} does not balance")
        for leg in tx.postings:
            sums[leg.account] += leg.delta_fen
            if leg.account.startswith("u:"):
                legs[leg.account[2:]].append((tx.seq, leg.delta_fen))
    expected = {f"u:{user}": fen for user, fen in balances.items()}
    expected.update({f"@escrow:{eid}": fen for eid, fen in escrow.items()})
    expected.update({f"@outbox:{dest}": fen for dest, fen in outbox.items()})
    state = read_state(store)
    expected["@world"] = state.withdrawals_fen - state.deposits_fen
    inbox = sum(fen for account, fen in sums.items() if account.startswith("@inbox:"))
    settled = sum(fen for account, fen in sums.items() if account.startswith("@settled:"))
    if inbox != -state.delivered_in_fen or settled != state.settled_out_fen:
        out.append(
            f"shard {shard_id}: journal inbox/settled {inbox}/{settled} disagree with totals"
        )
    plain = {a for a in sums if not a.startswith(("@inbox:", "@settled:"))}
    for account in sorted(set(expected) | plain):
        if sums.get(account, 0) != expected.get(account, 0):
            out.append(
                f"shard {shard_id}: journal says {account} holds {sums.get(account, 0)}, "
                f"tables say {expected.get(account, 0)}"
            )
    return legs


def _audit_statements(
    shard_id: int, store: LedgerStore, legs: dict[str, list[tuple[int, int]]], out: list[str]
) -> None:
    """Every statement is numbered 1..N with no gap (N: the account's ``postings_last``),
    its lines are the wallet's journal legs in order, and each line's balance follows."""
    for _, value in iterate(store, Table.ACCOUNTS):
        account = decode(value, Account)
        user = account.user_id
        lines = [
            decode(row, HistoryEntry)
            for _, row in iterate(store, Table.HISTORY, prefix=history_prefix(user))
        ]
        lines.reverse()  # stored newest first
        where = f"shard {shard_id}: statement of {user}"
        if [line.seq for line in lines] != list(range(1, account.postings_last + 1)):
            out.append(f"{where} is not numbered 1..{account.postings_last}")
        if [(line.journal_seq, line.delta_fen) for line in lines] != legs.get(user, []):
            out.append(f"{where} differs from the journal's legs of u:{user}")
        balance_fen = 0
        for line in lines:
            balance_fen += line.delta_fen
            if line.balance_fen != balance_fen:
                out.append(f"{where}: line {line.seq} says {line.balance_fen}, sum {balance_fen}")
                break
        if balance_fen != account.balance_fen:
            out.append(f"{where} sums to {balance_fen}, the account holds {account.balance_fen}")


def _cursors(store: LedgerStore) -> list[OutboxCursor]:
    return [
        decode(v, OutboxCursor) for _, v in iterate(store, Table.META, prefix=META_OUTBOX_PREFIX)
    ]


def _cursor_last_seq(store: LedgerStore | None, destination: int) -> int:
    if store is None:
        return 0
    return next((c.last_seq for c in _cursors(store) if c.destination_shard == destination), 0)
