"""The checks a ``Peer.Deliver`` passes before its credits are proposed on the destination.

Rules of this module: a Deliver is a claim, by a node, that the source shard debited
money for these credits. The destination believes only what it can verify:

- the shard ids are valid and differ, the sender is a replica of the source shard (in the
  topology) and, when this node hosts a replica of the source shard, the very node that
  replica knows as the source's leader (only that leader runs the courier; during a
  leader change the real courier is refused once and retries);
- the commands decode, are Delivers of the source, at most ``outbox_batch_max``, with
  consecutive seqs starting at or below the next one the destination expects (a gap is
  refused; duplicates are skipped, they change nothing);
- **every credit that would be applied matches, field for field, the outbox entry of the
  source shard as this node's own replica of the source has applied it**. Applied means
  committed by the source's Raft group, so a forged credit (money from nothing, or one
  that takes the seq of a real credit so that the real one is later dropped as a
  duplicate) is never proposed. A replica that lags behind has not applied the newest
  entries yet: the credits it confirms, from the first, are applied and the courier sends
  the rest again; when it confirms none, UNAVAILABLE, and the courier retries.

Part B's certificates add: the sender is authenticated as the node it claims. On a node
that hosts no replica of the source shard (a topology with more nodes than the
replication factor) only the first two checks apply, plus the amount bound: there the
forged-credit probe is closed only by part B's identity (the sender must then be the
leader of the source shard, and only a real node can be that).
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence

from hongbao.ledger.commands import Deliver
from hongbao.ledger.outbox import deliver_command, inbox_seq
from hongbao.ledger.records import OutboxEntry, load, outbox_key
from hongbao.ledger.store import LedgerStore, Table
from hongbao.node.errors import ErrorReason, HongbaoError, make_error
from hongbao.node.peer_guard import Refusal, RefusalLog
from hongbao.node.runtime import NodeRuntime
from hongbao.proto.gen.hongbao.v1 import peer_pb2


def credits_to_apply(
    runtime: NodeRuntime,
    request: peer_pb2.DeliverRequest,
    commands: Sequence[Deliver],
    refusals: RefusalLog,
) -> list[Deliver]:
    """The commands of ``request`` that may be proposed on the destination, in order.

    Raises a :class:`HongbaoError` (and counts the refusal under the sender) otherwise.
    """
    sender = int(request.from_node_id)
    try:
        return _checked(runtime, request, commands)
    except HongbaoError as error:
        reason = (
            Refusal.DELIVER_UNCONFIRMED
            if error.reason is ErrorReason.UNAVAILABLE
            else Refusal.DELIVER_REFUSED
        )
        route = f"{request.source_shard}->{request.destination_shard}"
        refusals.refuse(reason, sender, f"Deliver {route}: {error.message}")
        raise


def _checked(
    runtime: NodeRuntime, request: peer_pb2.DeliverRequest, commands: Sequence[Deliver]
) -> list[Deliver]:
    topology = runtime.topology
    source, destination = int(request.source_shard), int(request.destination_shard)
    sender = int(request.from_node_id)
    if not (source < topology.shard_count and destination < topology.shard_count):
        raise _invalid(f"no shard {max(source, destination)}")
    if source == destination:
        raise _invalid("a shard does not deliver to itself")
    if sender == runtime.node_id:
        raise _invalid(f"node {sender} is this node: its courier needs no Deliver")
    if sender not in topology.replicas_of(source):
        raise _invalid(f"node {sender} has no replica of shard {source}")
    local_source = source in runtime.replicas
    if local_source and runtime.leader_of(source) != sender:
        raise make_error(
            ErrorReason.UNAVAILABLE,
            f"node {sender} is not the leader of shard {source} as node {runtime.node_id} knows it",
            shard_id=source,
        )
    _check_sequence(commands)
    applied = runtime.query(destination, lambda store: inbox_seq(store, source))
    fresh = [command for command in commands if command.seq > applied]
    if fresh and fresh[0].seq != applied + 1:
        raise _invalid(f"seq {fresh[0].seq} from shard {source}; the next is {applied + 1}")
    if not fresh:
        return []
    if local_source:
        entries = runtime.query(source, lambda store: _outbox_entries(store, destination, fresh))
        return fresh[: _confirmed(fresh, entries, source)]
    else:
        ceiling = max(topology.limits.amount_max_fen, topology.limits.envelope_total_max_fen)
        if any(command.amount_fen > ceiling for command in fresh):
            raise _invalid(f"a credit above {ceiling} fen")
    return fresh


def _check_sequence(commands: Sequence[Deliver]) -> None:
    for before, after in itertools.pairwise(commands):
        if after.seq != before.seq + 1:
            raise _invalid(f"seqs {before.seq} then {after.seq}: not consecutive")


def _outbox_entries(
    store: LedgerStore, destination: int, commands: Sequence[Deliver]
) -> list[OutboxEntry | None]:
    return [
        load(store, Table.OUTBOX, outbox_key(destination, command.seq), OutboxEntry)
        for command in commands
    ]


def _confirmed(
    commands: Sequence[Deliver], entries: Sequence[OutboxEntry | None], source: int
) -> int:
    """How many of ``commands``, from the first, this node's replica of the source confirms.

    The courier reads its outbox as soon as its leader applies, so the newest entries of
    a Deliver are often not applied here yet: the confirmed ones are applied now and the
    courier sends the rest again (it acknowledges up to the seq it is answered). Only when
    not even the first is here is the call refused, UNAVAILABLE; a credit that differs
    from its outbox entry is refused whole, as a forgery.
    """
    count = 0
    for command, entry in zip(commands, entries, strict=True):
        if entry is None:
            break
        if deliver_command(entry) != command:
            raise _invalid(f"seq {command.seq} does not match shard {source}'s outbox entry")
        count += 1
    if count == 0:
        raise make_error(
            ErrorReason.UNAVAILABLE,
            f"seq {commands[0].seq} is not in shard {source}'s outbox as this node has"
            " applied it (yet)",
            shard_id=source,
        )
    return count


def _invalid(message: str) -> HongbaoError:
    return make_error(ErrorReason.INVALID_REQUEST, message)
