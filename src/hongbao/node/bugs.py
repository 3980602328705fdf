"""Test-only bug switches: deliberate faults that prove the chaos checker can fail.

Why: a checker that never failed proves nothing. Each switch plants one classic bug of a
replicated ledger, so that a chaos suite run with it must end with a failed check:

- ``ack-before-commit`` (node): the leader answers a client command as soon as its entry
  is proposed, with the answer it evaluated for the entry (effect replication).
  The entry still goes through Raft; a partition may then lose an acknowledged request.
- ``double-credit-grab`` (node): the destination shard credits a cross-shard grab's
  delivery twice. It happens where the batch is evaluated (the leader's evaluation, or
  the apply of a command entry), so every replica gets the same rows; each shard's own
  books still balance (the extra credit is booked from the inbox), but money is
  created: cluster-wide conservation fails.
- ``retry-fresh-id`` (router): a forwarded mutation whose outcome is unknown (the node
  did not answer, answered OUTCOME_UNKNOWN, or took longer than ``forward_timeout_ms``)
  is sent on under a new request id (:func:`fresh_request_id`): the duplicate payment.

Rules of this module: a switch is off unless its name is passed (``--bug NAME``, a
hidden option of ``hongbao node run`` and ``hongbao router run``), and a process started
with one logs a WARNING naming it (:func:`announce`). Every use of a switch in the node
and router code is one call marked ``# BUG SWITCH`` that lands here.
"""

from __future__ import annotations

import asyncio
import enum
import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Final

from google.protobuf.message import Message as ProtoMessage

from hongbao.ledger.books import close_books, inbox_account, move, open_books, wallet
from hongbao.ledger.commands import (
    Deliver,
    Deposit,
    Freeze,
    GrabEnvelope,
    SendEnvelope,
    Transfer,
    Unfreeze,
    Withdraw,
    decode_batch,
)
from hongbao.ledger.limits import REQUEST_ID_BYTES_MAX
from hongbao.ledger.records import CreditKind, TxKind
from hongbao.ledger.results import DeliveryReceipt, Ok
from hongbao.ledger.store import LedgerStore
from hongbao.proto.gen.hongbao.v1 import ledger_pb2


class NodeBug(enum.StrEnum):
    ACK_BEFORE_COMMIT = "ack-before-commit"
    DOUBLE_CREDIT_GRAB = "double-credit-grab"


class RouterBug(enum.StrEnum):
    RETRY_FRESH_ID = "retry-fresh-id"


NODE_BUG_NAMES: tuple[str, ...] = tuple(bug.value for bug in NodeBug)
ROUTER_BUG_NAMES: tuple[str, ...] = tuple(bug.value for bug in RouterBug)

EARLY_ACK_COMMANDS: tuple[type, ...] = (
    Deposit,
    Withdraw,
    Transfer,
    Freeze,
    Unfreeze,
    SendEnvelope,
    GrabEnvelope,
)
"""What ack-before-commit answers early: client mutations only. A request status (Fence)
and the node's own commands (deliveries, acknowledgements, expiries) still wait for
their entry to apply, so the bug is exactly "a client heard ok too soon"."""


@dataclass(frozen=True, slots=True)
class NodeBugs:
    """The switches a node runs with; all off by default."""

    ack_before_commit: bool = False
    double_credit_grab: bool = False

    @classmethod
    def of(cls, names: Iterable[str]) -> NodeBugs:
        """From ``--bug`` names; ValueError for a name that is not a node switch."""
        chosen = {NodeBug(name) for name in names}
        return cls(
            ack_before_commit=NodeBug.ACK_BEFORE_COMMIT in chosen,
            double_credit_grab=NodeBug.DOUBLE_CREDIT_GRAB in chosen,
        )

    @property
    def names(self) -> tuple[str, ...]:
        on = {
            NodeBug.ACK_BEFORE_COMMIT: self.ack_before_commit,
            NodeBug.DOUBLE_CREDIT_GRAB: self.double_credit_grab,
        }
        return tuple(bug.value for bug, enabled in on.items() if enabled)


@dataclass(frozen=True, slots=True)
class RouterBugs:
    """The switches a router runs with; all off by default."""

    retry_fresh_id: bool = False

    @classmethod
    def of(cls, names: Iterable[str]) -> RouterBugs:
        """From ``--bug`` names; ValueError for a name that is not a router switch."""
        chosen = {RouterBug(name) for name in names}
        return cls(retry_fresh_id=RouterBug.RETRY_FRESH_ID in chosen)

    @property
    def names(self) -> tuple[str, ...]:
        return (RouterBug.RETRY_FRESH_ID.value,) if self.retry_fresh_id else ()


def announce(log: logging.Logger, process: str, names: Sequence[str]) -> None:
    """The loud line at start: nobody may mistake a process with a bug for a real one."""
    for name in names:
        log.warning(
            "%s runs with the TEST-ONLY BUG SWITCH --bug %s: it is deliberately wrong"
            " (for proving the chaos checker can fail); never use it for real money",
            process,
            name,
        )


# -- double-credit-grab ---------------------------------------------------------------------


def credit_grabs_twice(store: LedgerStore, data: bytes, results: Sequence[object]) -> int:
    """BUG: credit every cross-shard grab just delivered by entry ``data`` once more.

    Called right after the batch ran on ``store``: the leader's evaluation (the extra
    rows go into the entry's effects) or a command entry's apply (every replica alike).
    The extra credit is booked from the source's inbox account, so the shard's own
    running totals still balance (its apply-time invariants hold) while the cluster
    holds money nobody paid in. Returns the fen created.
    """
    credited = [
        command
        for command, result in zip(decode_batch(data).commands, results, strict=False)
        if isinstance(command, Deliver)
        and command.kind is CreditKind.GRAB
        and isinstance(result, Ok)
        and isinstance(result.data, DeliveryReceipt)
        and result.data.applied
    ]
    if not credited:
        return 0
    books = open_books(store, decode_batch(data).ts_ms)
    for command in credited:
        move(
            books,
            source=inbox_account(command.source_shard),
            destination=wallet(command.user_id),
            amount_fen=command.amount_fen,
            kind=TxKind.ENVELOPE_GRAB,
            ref=command.ref,
        )
    close_books(books)
    return sum(command.amount_fen for command in credited)


# -- ack-before-commit ----------------------------------------------------------------------


def answer_early(
    waiting: Sequence[tuple[object, asyncio.Future[Any]]], results: Sequence[object]
) -> int:
    """BUG: answer the client commands of an entry now, as it is proposed, not committed.

    The answers are the ones the leader evaluated for the entry (state_machine.py):
    exactly what the client would get if the entry committed. ``waiting`` is each command
    of the entry with its future, in entry order. Returns how many futures were answered.
    """
    answered = 0
    for (command, future), result in zip(waiting, results, strict=False):
        if isinstance(command, EARLY_ACK_COMMANDS) and not future.done():
            future.set_result(result)
            answered += 1
    return answered


# -- retry-fresh-id (the router) ---------------------------------------------------------------

FRESH_ID_OPERATIONS: Final = frozenset(
    {"deposit", "withdraw", "transfer", "freeze", "unfreeze", "send", "grab"}
)
"""The mutations (Batch ``Operation`` names; single methods by their lower-cased name)."""
FRESH_ID_SUFFIX: Final = "~bug-retry"


def fresh_request_id(request_id: str) -> str:
    """The "new" id of a retry: the same for the same id, so one request is doubled once."""
    kept = REQUEST_ID_BYTES_MAX - len(FRESH_ID_SUFFIX)
    return request_id[:kept] + FRESH_ID_SUFFIX


def request_with_fresh_id(request_class: type[ProtoMessage], raw: bytes) -> bytes:
    """A single request's bytes under :func:`fresh_request_id` of its id."""
    request = request_class.FromString(raw)
    request.request_id = fresh_request_id(request.request_id)  # type: ignore[attr-defined]
    return request.SerializeToString()


def operation_with_fresh_id(chunk: bytes) -> bytes:
    """A Batch ``Operation``'s bytes with a fresh id if it is a mutation, else as it was."""
    operation = ledger_pb2.Operation.FromString(chunk)
    name = operation.WhichOneof("op")
    if name not in FRESH_ID_OPERATIONS:
        return chunk
    inner = getattr(operation, name)
    inner.request_id = fresh_request_id(inner.request_id)
    return operation.SerializeToString()
