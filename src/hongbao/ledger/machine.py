"""The shard state machine: applies committed batches, answers queries.

Rules of this module: this is the only entry point the node runtime calls to change a
shard. It is deterministic: the same store and the same batches give the same bytes on
every replica (no clock but ``Batch.ts_ms``, no randomness but seeds from the log, no
iteration over unordered containers). The caller owns the transaction: it opens one write
transaction per group of committed entries, calls :func:`apply_entry` (or
:func:`apply_batch` then :func:`set_applied_index`) for each, and commits once, so the
applied index and the state it describes always land together.

Per command: stateless validation again (never trust the proposer), then the
idempotency check for client commands, then the handler. A :class:`Fence` (a request
status) is the one client command that reads the idempotency table instead of being
remembered in it under its own answer: it reports an id's first result, or fences it.
A handler either refuses before writing anything, or completes; the books must balance
after every command.
"""

from __future__ import annotations

import typing
from dataclasses import dataclass, replace

from hongbao._invariant import fail, invariant
from hongbao.ledger import envelope, idempotency, outbox, snapshot, wallet
from hongbao.ledger.books import (
    Books,
    close_books,
    open_books,
    read_identity,
    read_limits,
    read_state,
)
from hongbao.ledger.codec import CodecError, tag_of
from hongbao.ledger.commands import (
    Acknowledge,
    Batch,
    Command,
    Deliver,
    Deposit,
    ExpireEnvelopes,
    Fence,
    Freeze,
    GetAccount,
    GetHistory,
    GetInboxSeq,
    GrabEnvelope,
    Query,
    SendEnvelope,
    SetLimits,
    ShowEnvelope,
    Transfer,
    Unfreeze,
    Withdraw,
    decode_batch,
    fingerprint,
)
from hongbao.ledger.effects import apply_effects, decode_effects, is_effects
from hongbao.ledger.limits import Limits, limits_problem
from hongbao.ledger.reasons import Reason
from hongbao.ledger.records import (
    META_APPLIED_INDEX,
    META_IDENTITY,
    META_LIMITS,
    META_STATE,
    ShardIdentity,
    ShardState,
    save,
    u64,
)
from hongbao.ledger.results import FirstData, LimitsView, Ok, Rejected, RequestStatusView, Result
from hongbao.ledger.sharding import SHARD_COUNT_MAX, is_request_id
from hongbao.ledger.store import LedgerStore, Table
from hongbao.ledger.validate import validate, validate_query

FIRST_DATA_TYPES: tuple[type, ...] = typing.get_args(FirstData)
APPLIED_INDEX_KEY = META_APPLIED_INDEX
"""Key of the applied index in :attr:`Table.META` (8 bytes, big-endian)."""


@dataclass(frozen=True, slots=True)
class AppliedEntry:
    """What applying one committed log entry produced."""

    index: int
    results: tuple[Result, ...]  # one per command, in order; empty for a no-op entry
    malformed: str | None = None  # why the entry's bytes were skipped, if they were
    effects: bool = False  # the entry carried effects (ledger/effects.py): no results here


def init_shard(
    store: LedgerStore, *, shard_id: int, shard_count: int, limits: Limits | None = None
) -> None:
    """Give an empty store its identity and limits (every replica, from the topology)."""
    chosen = Limits() if limits is None else limits
    problem = limits_problem(chosen)
    if problem is not None:
        raise ValueError(f"unusable limits: {problem}")
    if not 0 <= shard_id < shard_count <= SHARD_COUNT_MAX:
        raise ValueError(f"shard {shard_id} of {shard_count} is out of range")
    invariant(store.get(Table.META, META_IDENTITY) is None, "init_shard on an initialised store")
    save(store, Table.META, META_IDENTITY, ShardIdentity(shard_id, shard_count))
    save(store, Table.META, META_LIMITS, chosen)
    save(store, Table.META, META_STATE, ShardState())


def is_initialised(store: LedgerStore) -> bool:
    """Whether :func:`init_shard` (or a snapshot restore) already gave the store its identity."""
    return store.get(Table.META, META_IDENTITY) is not None


def dump(store: LedgerStore) -> bytes:
    """The shard's snapshot bytes (the Raft snapshot data): :func:`snapshot.dump`."""
    return snapshot.dump(store)


def restore(store: LedgerStore, data: bytes) -> None:
    """Replace the shard with snapshot ``data``; its applied index comes with it.

    Raises :class:`~hongbao.ledger.snapshot.SnapshotError` (store untouched) for damaged
    bytes. A snapshot of another shard is a programmer error and crashes.
    """
    before = read_identity(store) if is_initialised(store) else None
    snapshot.load(store, data)
    invariant(is_initialised(store), "a restored snapshot must carry the shard's identity")
    invariant(before in (None, read_identity(store)), f"snapshot of another shard than {before}")


def applied_index(store: LedgerStore) -> int:
    data = store.get(Table.META, APPLIED_INDEX_KEY)
    return 0 if data is None else int.from_bytes(data, "big")


def set_applied_index(store: LedgerStore, index: int) -> None:
    """Record ``index`` as applied, in the same transaction as its effects."""
    if index <= applied_index(store):
        fail(f"applied index {index} does not move forward")
    store.put(Table.META, APPLIED_INDEX_KEY, u64(index))


def shard_clock_ms(store: LedgerStore) -> int:
    """The shard's clock: the largest batch timestamp applied (for read-only queries)."""
    return read_state(store).clock_ms


def apply_entry(store: LedgerStore, *, index: int, data: bytes) -> AppliedEntry:
    """Apply the committed log entry ``index`` and record it as applied.

    An empty entry (a new leader's no-op) changes nothing but the applied index. An entry
    of effects (:mod:`hongbao.ledger.effects`) is written as it is: its results are the
    leader's. Bytes that do not decode are skipped identically on every replica and
    counted in the shard state: crashing instead would wedge every replica on the same
    entry forever.
    """
    if not data:
        set_applied_index(store, index)
        return AppliedEntry(index, ())
    try:
        if is_effects(data):
            apply_effects(store, decode_effects(data))
            set_applied_index(store, index)
            return AppliedEntry(index, (), effects=True)
        batch = decode_batch(data)
    except CodecError as error:
        books = open_books(store, 0)
        books.state = _bump_malformed(books.state)
        close_books(books)
        set_applied_index(store, index)
        return AppliedEntry(index, (), malformed=str(error))
    results = apply_batch(store, batch)
    set_applied_index(store, index)
    return AppliedEntry(index, tuple(results))


def apply_batch(store: LedgerStore, batch: Batch) -> list[Result]:
    """Apply every command of ``batch`` at the batch's time; one result per command."""
    books = open_books(store, batch.ts_ms)
    if len(batch.commands) > books.limits.batch_commands_max:
        refusal = Rejected(
            Reason.BATCH_TOO_LARGE,
            f"{len(batch.commands)} commands > {books.limits.batch_commands_max} per entry",
        )
        return [refusal] * len(batch.commands)
    results = []
    for command in batch.commands:
        results.append(_apply_command(books, command))
        if not books.state.conserved():
            fail(f"{type(command).__name__} broke conservation")
    close_books(books)
    return results


def _apply_command(books: Books, command: Command) -> Result:
    if isinstance(command, ExpireEnvelopes | Deliver | Acknowledge):
        return validate(command, books.limits) or _dispatch(books, command)
    if not is_request_id(command.request_id):  # no key to remember the refusal under
        refusal = validate(command, books.limits)
        invariant(refusal is not None, "validate() let a malformed request id through")
        return refusal or Rejected(Reason.MALFORMED_REQUEST_ID, "malformed request id")
    if isinstance(command, Fence):
        return validate(command, books.limits) or _fence(books, command)
    command_print = fingerprint(command)
    prior = idempotency.lookup(books.store, command.request_id)
    if prior is not None:
        if prior.fingerprint == command_print:
            return prior.result  # a retry: the first answer, and nothing changes
        if prior.fingerprint == idempotency.FENCED_FINGERPRINT:
            return Rejected(
                Reason.REQUEST_FENCED,
                f"request id {command.request_id} was reported not applied: it is fenced",
            )
        return Rejected(
            Reason.REQUEST_ID_REUSED,
            f"request id {command.request_id} was already used for a different command",
        )
    result = validate(command, books.limits) or _dispatch(books, command)
    idempotency.remember(
        books,
        request_id=command.request_id,
        fingerprint=command_print,
        result=result,
        command=tag_of(type(command)),
    )
    return result


def _fence(books: Books, command: Fence) -> Result:
    """A request status: the id's first result, or fence the id now (see :class:`Fence`)."""
    refusal = wallet.local_user(books, command.user_id)
    if refusal is not None:
        return refusal
    request_id = command.request_id
    prior = idempotency.lookup(books.store, request_id)
    if prior is None:
        fenced = Rejected(Reason.REQUEST_FENCED, f"request id {request_id} is fenced")
        idempotency.remember(
            books,
            request_id=request_id,
            fingerprint=idempotency.FENCED_FINGERPRINT,
            result=fenced,
            command=tag_of(Fence),
        )
    if prior is None or prior.fingerprint == idempotency.FENCED_FINGERPRINT:
        return Ok(RequestStatusView(request_id, False, "", None, None))
    first = prior.result
    first_ok = first.data if isinstance(first, Ok) else None
    invariant(first_ok is None or isinstance(first_ok, FIRST_DATA_TYPES), f"stored {first}")
    return Ok(
        RequestStatusView(
            request_id,
            True,
            prior.command,
            first_ok,  # type: ignore[arg-type]  # checked just above
            first if isinstance(first, Rejected) else None,
        )
    )


def _dispatch(books: Books, command: Command) -> Result:
    match command:
        case Deposit():
            return wallet.deposit(books, command)
        case Withdraw():
            return wallet.withdraw(books, command)
        case Transfer():
            return wallet.transfer(books, command)
        case Freeze() | Unfreeze():
            return wallet.set_frozen(books, command)
        case SendEnvelope():
            return envelope.send(books, command)
        case GrabEnvelope():
            return envelope.grab(books, command)
        case ExpireEnvelopes():
            return envelope.expire_due(books, command)
        case Deliver():
            return outbox.deliver(books, command)
        case Acknowledge():
            return outbox.acknowledge(books, command)
        case Fence():
            return _fence(books, command)
        case SetLimits():
            save(books.store, Table.META, META_LIMITS, command.limits)
            books.limits = command.limits
            return Ok(LimitsView(command.limits))


def _bump_malformed(state: ShardState) -> ShardState:
    return replace(state, malformed_entries=state.malformed_entries + 1)


# -- queries ------------------------------------------------------------------------------------


def query(store: LedgerStore, request: Query, *, now_ms: int = 0) -> Result:
    """Answer a read-only query; ``store`` may be a read transaction. Never writes.

    Every answer is the state the log left at the read point, in the log's time: a day
    counter is the one of the shard clock's day (:func:`shard_clock_ms`), never the
    reader's, so that no later answer can contradict it. ``now_ms`` is the reader's clock
    and decides nothing: it only flags an OPEN envelope whose TTL has passed but that no
    log entry has expired yet (``expiry_pending``; see :mod:`hongbao.ledger.envelope`).
    """
    problem = validate_query(request, read_limits(store))
    if problem is not None:
        return problem
    match request:
        case GetAccount():
            return wallet.get_account_view(store, request.user_id)
        case GetHistory():
            return wallet.get_history(store, request.user_id, request.limit, request.before_seq)
        case ShowEnvelope():
            shard_id = read_identity(store).shard_id
            clock_ms = max(now_ms, shard_clock_ms(store))
            return envelope.show(store, request.envelope_id, clock_ms=clock_ms, shard_id=shard_id)
        case GetInboxSeq():
            identity = read_identity(store)
            if request.source_shard >= identity.shard_count:
                return Rejected(Reason.INVALID_SHARD, f"no shard {request.source_shard}")
            return Ok(outbox.inbox_position(store, request.source_shard))
