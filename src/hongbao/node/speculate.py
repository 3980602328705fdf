"""A leader's entries for a speculative machine: evaluated once, against the state ahead.

Rules of this module: the runtime calls :func:`ready_to_propose` before it packs a
group's queued commands, :func:`entry_for` to turn them into an entry, and
:func:`speculated` once the entry has its index; :func:`applied` after every commit of
applied entries. For a machine that is not speculative (the meta group) these are the old
path: the commands are encoded, and every replica executes them.

The one rule that makes speculation exact (see :mod:`hongbao.ledger.overlay`): a leader
evaluates nothing before every entry of earlier terms has applied. At its first proposal
of a term the speculation starts afresh at the log's last index (the term's no-op, or an
entry before it); until the applied index reaches it, commands wait in the queue, which
costs one commit round after an election.
"""

from __future__ import annotations

from collections.abc import Sequence

from hongbao.ledger.overlay import OverlayStore
from hongbao.node.replica import ShardReplica
from hongbao.node.storage import NodeEnv

ENTRY_BYTES_MAX = 1 << 20
"""An effects entry's bytes at most (one command alone may pass it): the Raft core's
``message_size_bytes_max`` default, and half the transport's batch."""


def ready_to_propose(replica: ShardReplica) -> bool:
    """Whether the leader ``replica`` may pack an entry now (always, unless speculative)."""
    if not replica.machine.speculative:
        return True
    core = replica.core
    speculation = replica.speculation
    if speculation.term != core.term:
        speculation.reset(term=core.term, start_index=core.last_index)
    return core.applied_index >= speculation.start_index


def entry_for(
    env: NodeEnv, replica: ShardReplica, ts_ms: int, commands: Sequence[object]
) -> tuple[int, bytes, tuple[object, ...] | None, OverlayStore | None]:
    """How many of ``commands`` the entry takes, and its bytes; for a speculative machine
    also their results and the view that holds their writes.

    Effects are bigger than commands (~96 deflated bytes a transfer, a Deliver of many
    credits far more): an evaluation over :data:`ENTRY_BYTES_MAX` is redone on the first half of
    its commands (an evaluation writes nothing but its view), so that every entry fits a
    Raft message and a transport batch; the rest wait for the next entry.
    """
    machine = replica.machine
    if not machine.speculative:
        return len(commands), machine.encode_entry(ts_ms, commands), None, None
    count = len(commands)
    with env.ledger_reader(replica.shard_id) as base:
        while True:
            view = OverlayStore(base, replica.speculation)
            evaluated = machine.evaluate(view, ts_ms, commands[:count])
            if len(evaluated.data) <= ENTRY_BYTES_MAX or count == 1:
                return count, evaluated.data, evaluated.results, view
            count //= 2


def speculated(replica: ShardReplica, index: int, view: OverlayStore | None) -> None:
    """The entry evaluated in ``view`` was proposed at ``index``: later ones build on it."""
    if view is not None:
        replica.speculation.add(index, view.writes())


def applied(replica: ShardReplica, index: int) -> None:
    """Entries up to ``index`` are applied and committed to LMDB: the base holds them."""
    if replica.machine.speculative:
        replica.speculation.applied(index)
