"""What one workload operation was told, in the words of the history (``history.Op``).

Why apart from the workload: the collector reads request-status answers with the same
rules (a result's documented fields, an error's reason, a deadline as ``info``), and the
rules are easier to test and to trust when they are one small set of pure functions.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Final

import grpc

from hongbao.chaos.history import Status, status_of
from hongbao.node.errors import error_from_rpc_error
from hongbao.proto.gen.hongbao.v1 import errors_pb2, ledger_pb2

MESSAGE_CHARS_MAX: Final = 300
# Refusals that speak for one attempt only, not for the request id.
ATTEMPT_LOCAL: Final = frozenset({"NOT_LEADER", "UNAVAILABLE", "OVERLOADED", "CLUSTER_MISMATCH"})
_CODE_NAMES: Final = {code.value[0]: code.name for code in grpc.StatusCode}


@dataclass(frozen=True, slots=True)
class Answer:
    """What one operation was finally told (the outcome fields of a history.Op)."""

    status: Status
    code: str = ""
    reason: str = ""
    message: str = ""
    result: dict[str, object] = field(default_factory=dict)


def result_fields(result: ledger_pb2.OperationResult) -> dict[str, object]:
    """The documented ``Op.result`` fields of a successful answer (history.Op)."""
    which = result.WhichOneof("result")
    if which in ("deposit", "withdraw"):
        return {"balance_fen": int(getattr(result, which).balance_fen)}
    if which == "transfer":
        t = result.transfer
        return {"from_balance_fen": int(t.from_balance_fen), "cross_shard": bool(t.cross_shard)}
    if which == "send":
        s = result.send
        return {"envelope_id": s.envelope_id, "sender_balance_fen": int(s.sender_balance_fen)}
    if which == "grab":
        g = result.grab
        return {
            "amount_fen": int(g.amount_fen),
            "ordinal": int(g.ordinal),
            "remaining_count": int(g.remaining_count),
            "cross_shard": bool(g.cross_shard),
        }
    return {}


def reason_name(error: errors_pb2.Error) -> str:
    """The ErrorReason name of an in-band error, "" when it carries none we know."""
    if error.reason == 0 or error.reason not in errors_pb2.ErrorReason.values():
        return ""
    return errors_pb2.ErrorReason.Name(error.reason)


def error_answer(error: errors_pb2.Error) -> Answer:
    reason = reason_name(error)
    return Answer(
        status=status_of(reason) if reason else "info",
        code=_CODE_NAMES.get(error.code, str(error.code)),
        reason=reason,
        message=error.message[:MESSAGE_CHARS_MAX],
    )


def rpc_answer(rpc_error: grpc.aio.AioRpcError) -> tuple[Answer, bool]:
    """The answer of a failed call, and whether a hongbao server built it (an answer);
    an error no server reported (a deadline, a dropped connection) is ``info``."""
    error = error_from_rpc_error(rpc_error)
    code, message = rpc_error.code().name, (rpc_error.details() or "")[:MESSAGE_CHARS_MAX]
    if not error.server_reported:
        return Answer("info", code=code, message=message), False
    reason = error.reason.value
    return Answer(status_of(reason), code=code, reason=reason, message=message), True


def settle(
    kind: str,
    result: ledger_pb2.OperationResult | None,
    failure: Answer | None,
    maybe: Answer | None,
) -> Answer:
    """One op's final answer: its result, else the call's failure; an attempt-local
    refusal after an earlier attempt that may have applied the op is that earlier one."""
    if result is not None:
        which = result.WhichOneof("result")
        if which == kind:
            return Answer("ok", result=result_fields(result))
        if which == "error":
            answer = error_answer(result.error)
        else:
            answer = Answer("info", message=f"a {which or 'empty'} answer to a {kind}")
    else:
        # No attempt and no failure: the deadline passed before the request was sent, so
        # it never reached a router and never will take effect (definite, not indeterminate).
        answer = failure or Answer(
            "fail", code="DEADLINE_EXCEEDED", message="not sent: the deadline passed first"
        )
    if maybe is not None and answer.status == "fail" and answer.reason in ATTEMPT_LOCAL:
        note = f"{maybe.message}; then {answer.reason}: {answer.message}"
        return Answer(maybe.status, maybe.code, maybe.reason, note[:MESSAGE_CHARS_MAX])
    return answer
