"""The ledger: wallet and envelope state machines of one shard, exact to the fen.

Layering: this package imports only the standard library and ``hongbao._invariant``; the
node runtime drives it (LMDB transactions, Raft entries, the courier), never the reverse.
The modules, from the bottom up:

* ``store``: the storage seam (:class:`LedgerStore`) and :class:`MemoryStore`;
* ``codec``: canonical MessagePack (version byte first) for every record; ``limits``,
  ``reasons``, ``sharding``;
* ``records``, ``commands``, ``results``: the data;
* ``books`` (money moves only through it), ``wallet``, ``lucky``, ``envelope``,
  ``outbox``, ``idempotency``, ``validate``: the rules;
* ``machine`` (apply, query), ``snapshot`` (dump, load, digest), ``audit``.
"""

from hongbao.ledger.audit import AuditReport as AuditReport
from hongbao.ledger.audit import audit as audit
from hongbao.ledger.codec import CodecError as CodecError
from hongbao.ledger.commands import Acknowledge as Acknowledge
from hongbao.ledger.commands import Batch as Batch
from hongbao.ledger.commands import Command as Command
from hongbao.ledger.commands import Deliver as Deliver
from hongbao.ledger.commands import Deposit as Deposit
from hongbao.ledger.commands import ExpireEnvelopes as ExpireEnvelopes
from hongbao.ledger.commands import Fence as Fence
from hongbao.ledger.commands import Freeze as Freeze
from hongbao.ledger.commands import GetAccount as GetAccount
from hongbao.ledger.commands import GetHistory as GetHistory
from hongbao.ledger.commands import GetInboxSeq as GetInboxSeq
from hongbao.ledger.commands import GrabEnvelope as GrabEnvelope
from hongbao.ledger.commands import Query as Query
from hongbao.ledger.commands import SendEnvelope as SendEnvelope
from hongbao.ledger.commands import SetLimits as SetLimits
from hongbao.ledger.commands import ShowEnvelope as ShowEnvelope
from hongbao.ledger.commands import Transfer as Transfer
from hongbao.ledger.commands import Unfreeze as Unfreeze
from hongbao.ledger.commands import Withdraw as Withdraw
from hongbao.ledger.commands import decode_batch as decode_batch
from hongbao.ledger.commands import decode_command as decode_command
from hongbao.ledger.commands import decode_query as decode_query
from hongbao.ledger.commands import encode_batch as encode_batch
from hongbao.ledger.commands import encode_command as encode_command
from hongbao.ledger.commands import encode_query as encode_query
from hongbao.ledger.limits import Limits as Limits
from hongbao.ledger.machine import APPLIED_INDEX_KEY as APPLIED_INDEX_KEY
from hongbao.ledger.machine import AppliedEntry as AppliedEntry
from hongbao.ledger.machine import applied_index as applied_index
from hongbao.ledger.machine import apply_batch as apply_batch
from hongbao.ledger.machine import apply_entry as apply_entry
from hongbao.ledger.machine import init_shard as init_shard
from hongbao.ledger.machine import is_initialised as is_initialised
from hongbao.ledger.machine import query as query
from hongbao.ledger.machine import set_applied_index as set_applied_index
from hongbao.ledger.machine import shard_clock_ms as shard_clock_ms
from hongbao.ledger.outbox import deliver_command as deliver_command
from hongbao.ledger.outbox import inbox_seq as inbox_seq
from hongbao.ledger.outbox import outbox_destinations as outbox_destinations
from hongbao.ledger.outbox import pending_outbox as pending_outbox
from hongbao.ledger.reasons import ErrorClass as ErrorClass
from hongbao.ledger.reasons import Reason as Reason
from hongbao.ledger.records import CreditKind as CreditKind
from hongbao.ledger.records import EnvelopeKind as EnvelopeKind
from hongbao.ledger.records import EnvelopeStatus as EnvelopeStatus
from hongbao.ledger.records import OutboxEntry as OutboxEntry
from hongbao.ledger.results import Ok as Ok
from hongbao.ledger.results import Rejected as Rejected
from hongbao.ledger.results import Result as Result
from hongbao.ledger.results import decode_result as decode_result
from hongbao.ledger.results import encode_result as encode_result
from hongbao.ledger.sharding import envelope_id as envelope_id
from hongbao.ledger.sharding import parse_envelope_id as parse_envelope_id
from hongbao.ledger.sharding import shard_for_user as shard_for_user
from hongbao.ledger.snapshot import SnapshotError as SnapshotError
from hongbao.ledger.snapshot import dump as dump
from hongbao.ledger.snapshot import load as load
from hongbao.ledger.snapshot import state_digest as state_digest
from hongbao.ledger.store import LedgerStore as LedgerStore
from hongbao.ledger.store import MemoryStore as MemoryStore
from hongbao.ledger.store import Table as Table
from hongbao.ledger.validate import validate as validate
from hongbao.ledger.validate import validate_query as validate_query

__all__ = [
    "APPLIED_INDEX_KEY",
    "Acknowledge",
    "AppliedEntry",
    "AuditReport",
    "Batch",
    "CodecError",
    "Command",
    "CreditKind",
    "Deliver",
    "Deposit",
    "EnvelopeKind",
    "EnvelopeStatus",
    "ErrorClass",
    "ExpireEnvelopes",
    "Fence",
    "Freeze",
    "GetAccount",
    "GetHistory",
    "GetInboxSeq",
    "GrabEnvelope",
    "LedgerStore",
    "Limits",
    "MemoryStore",
    "Ok",
    "OutboxEntry",
    "Query",
    "Reason",
    "Rejected",
    "Result",
    "SendEnvelope",
    "SetLimits",
    "ShowEnvelope",
    "SnapshotError",
    "Table",
    "Transfer",
    "Unfreeze",
    "Withdraw",
    "applied_index",
    "apply_batch",
    "apply_entry",
    "audit",
    "decode_batch",
    "decode_command",
    "decode_query",
    "decode_result",
    "deliver_command",
    "dump",
    "encode_batch",
    "encode_command",
    "encode_query",
    "encode_result",
    "envelope_id",
    "inbox_seq",
    "init_shard",
    "is_initialised",
    "load",
    "outbox_destinations",
    "parse_envelope_id",
    "pending_outbox",
    "query",
    "set_applied_index",
    "shard_clock_ms",
    "shard_for_user",
    "state_digest",
    "validate",
    "validate_query",
]
