"""A client Batch's parts: which shards share a first call, and what an answer leaves to do.

Why group: a Batch split by shard costs one gRPC call per shard, and on a node the
per-call overhead (gRPC, asyncio) is what dominates a small part: 12 shards on 3 nodes
turned a 100-transfer Batch into ~12 calls of ~8 operations and doubled the nodes' CPU
per transfer compared to the node-direct SDK, which sends one call per leader
(:meth:`hongbao.client.sdk.HongbaoClient.execute`). So the first attempt of the shards
whose first candidate is the same node goes as ONE call; whatever it leaves unfinished
(a NOT_LEADER for one shard, a call that failed whole) goes on shard by shard, with
:meth:`hongbao.router.forward.Forwarder._part`'s usual retries, carrying a
:class:`Carried` so the outcome-unknown rule still holds across the two.

Rules of this module: no I/O; it reads answers and updates the routing (leader guesses,
health) exactly as :func:`hongbao.client.routing.run_call` would after that attempt.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from hongbao.client.routing import Routing
from hongbao.node.errors import (
    HongbaoError,
    RetryableError,
    error_from_proto,
    error_to_proto,
)
from hongbao.proto.gen.hongbao.v1 import errors_pb2, ledger_pb2
from hongbao.router import wire

OPS: Final = 1  # ExecuteRequest.operations / ExecuteResponse.results
ERROR_FIELD: Final = ledger_pb2.OperationResult.DESCRIPTOR.fields_by_name["error"].number

ShardPositions = dict[int, list[int]]
"""Shard id -> the client positions of its operations, in client order."""


@dataclass(slots=True)
class Carried:
    """What one shard's part inherits from the grouped first attempt at ``node_id``: the
    positions still without a final result, those that attempt may have applied (so a
    later definite failure still answers OUTCOME_UNKNOWN for them), and why it failed."""

    positions: list[int]
    maybe_applied: set[int]
    error: HongbaoError
    node_id: int


def in_client_order(shards: ShardPositions) -> list[int]:
    """Every position of a group, in the client's order: the order of the grouped call."""
    return sorted(p for positions in shards.values() for p in positions)


def after_failure(
    routing: Routing, node_id: int, shards: ShardPositions, error: HongbaoError
) -> dict[int, Carried]:
    """The grouped call failed whole with a retryable ``error``: every shard goes on by
    itself, all of its positions maybe applied if the call may have applied them."""
    carried: dict[int, Carried] = {}
    for shard_id, positions in shards.items():
        routing.learn(shard_id, error, node_id)
        maybe_applied = set(positions) if error.outcome_unknown else set()
        carried[shard_id] = Carried(list(positions), maybe_applied, error, node_id)
    return carried


def after_answer(
    routing: Routing,
    node_id: int,
    shards: ShardPositions,
    parts: list[bytes],
    results: list[bytes | None],
) -> dict[int, Carried]:
    """The grouped call answered ``parts`` (one per position, in client order): keep the
    final results; return, by shard, what to send again."""
    part_of = dict(zip(in_client_order(shards), parts, strict=True))
    carried: dict[int, Carried] = {}
    for shard_id, positions in shards.items():
        maybe_applied: set[int] = set()
        again, retry = collect(positions, [part_of[p] for p in positions], results, maybe_applied)
        if retry is None:
            routing.answered(shard_id, node_id)
            continue
        routing.learn(shard_id, retry, node_id)
        carried[shard_id] = Carried(again, maybe_applied, retry, node_id)
    return carried


def collect(
    pending: list[int], parts: list[bytes], results: list[bytes | None], maybe_applied: set[int]
) -> tuple[list[int], HongbaoError | None]:
    """Keep each final result of a part's answer; return what to send again, and why."""
    again: list[int] = []
    retry: HongbaoError | None = None
    for position, part in zip(pending, parts, strict=True):
        number, payload = wire.oneof_message(part)
        if number == ERROR_FIELD:
            error = error_from_proto(errors_pb2.Error.FromString(payload))
            if isinstance(error, RetryableError):
                if error.outcome_unknown:
                    maybe_applied.add(position)
                again.append(position)
                retry = prefer(retry, error)
                continue
        results[position] = part
    return again, retry


def prefer(kept: HongbaoError | None, error: HongbaoError) -> HongbaoError:
    """Which in-band error steers the retry: one naming a leader beats one that does not."""
    if kept is None or (kept.leader_hint is None and error.leader_hint is not None):
        return error
    return kept


def error_result(error: HongbaoError) -> bytes:
    return ledger_pb2.OperationResult(error=error_to_proto(error)).SerializeToString()
