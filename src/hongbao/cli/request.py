"""``hongbao request status``: what became of a request whose reply was lost.

A thin shell over ``Wallet.RequestStatus``. The question goes through the user's shard's
log, so the answer is final: ``applied`` (with the request's first result, a refusal
included), or ``not applied``, and then the id is fenced: a late retry of it is refused
(REQUEST_FENCED) instead of applying. ``unknown`` while the shard has no leader, or when
no answer came in time: ask again later (asking is always safe).
"""

from __future__ import annotations

import asyncio
from typing import Final, NoReturn

import click
from google.protobuf.json_format import MessageToDict

from hongbao.cli.common import (
    config_option,
    describe_error,
    json_option,
    load_config,
    print_json,
    stdout_console,
    timeout_option,
)
from hongbao.client.sdk import ClientOptions, HongbaoClient
from hongbao.ledger.sharding import is_request_id, is_user_id
from hongbao.node.errors import ErrorReason, HongbaoError, RetryableError
from hongbao.proto.gen.hongbao.v1 import errors_pb2, ledger_pb2

EXIT_APPLIED: Final = 0
EXIT_FAILED: Final = 1
EXIT_USAGE: Final = 2
EXIT_NOT_APPLIED: Final = 3
EXIT_UNKNOWN: Final = 4

STATUS_EXIT_HELP: Final = (
    "\b\nExit codes:\n"
    "  0  applied: the request took effect once; its first result is shown\n"
    "     (a refusal such as INSUFFICIENT_FUNDS is a result too)\n"
    "  1  an unexpected failure\n"
    "  2  usage: a bad option, or an id the cluster calls malformed\n"
    "  3  not applied: and now fenced, so a late retry of the id is refused\n"
    "  4  unknown: the user's shard has no leader or did not answer in time; ask again\n"
)

_UNKNOWN_REASONS: Final = frozenset(
    {ErrorReason.UNAVAILABLE, ErrorReason.OUTCOME_UNKNOWN, ErrorReason.NOT_LEADER}
)


@click.group()
def request() -> None:
    """Requests by their id: what became of one whose reply was lost."""


@request.command("status", epilog=STATUS_EXIT_HELP)
@click.argument("request_id")
@click.option(
    "--user",
    "user_id",
    required=True,
    help="The user the request was about (the sender of a transfer or an envelope,"
    " the depositor...): the id is looked up on that user's shard.",
)
@config_option
@timeout_option
@json_option
def status(
    request_id: str, user_id: str, config_path: str, timeout_s: float, as_json: bool
) -> None:  # fmt: skip
    """Whether REQUEST_ID was applied; if it was not, fence it so it never is.

    The fence lasts as long as the shard remembers request ids (its idempotency window:
    at least idempotency_retention_ms, 10 minutes by default); after that the id is
    unknown again, like any id that old.
    """
    if not is_request_id(request_id):
        raise click.UsageError(f"request id {request_id[:80]!r} is malformed")
    if not is_user_id(user_id):
        raise click.UsageError(f"user id {user_id[:80]!r} is malformed")
    topology = load_config(config_path)

    async def ask() -> ledger_pb2.RequestStatusResponse:
        async with HongbaoClient.for_target(topology, ClientOptions(timeout_s=timeout_s)) as client:
            question = ledger_pb2.RequestStatusRequest(request_id=request_id, user_id=user_id)
            shard_id = client.user_shard(user_id)
            return await client.call(shard_id, lambda s: s.wallet.RequestStatus, question)

    try:
        answer = asyncio.run(ask())
    except HongbaoError as error:
        _unanswered(error, request_id, user_id, as_json)
    _report(answer, request_id, user_id, as_json)


def _unanswered(error: HongbaoError, request_id: str, user_id: str, as_json: bool) -> NoReturn:
    unknown = isinstance(error, RetryableError) or error.reason in _UNKNOWN_REASONS
    if as_json:
        print_json({"request_id": request_id, "user_id": user_id,
                    "outcome": "unknown" if unknown else "error",
                    "error": {"reason": error.reason.value, "message": error.message}})  # fmt: skip
    for line in describe_error(error):
        click.echo(line, err=True)
    if unknown:
        click.echo(f"unknown: ask again later (asking about {request_id} is always safe)", err=True)
        raise SystemExit(EXIT_UNKNOWN)
    if error.reason in (ErrorReason.MALFORMED_ID, ErrorReason.INVALID_REQUEST):
        raise SystemExit(EXIT_USAGE)
    raise SystemExit(EXIT_FAILED)


def _report(
    answer: ledger_pb2.RequestStatusResponse, request_id: str, user_id: str, as_json: bool
) -> NoReturn:
    applied = answer.outcome == ledger_pb2.REQUEST_OUTCOME_APPLIED
    if not applied and answer.outcome != ledger_pb2.REQUEST_OUTCOME_NOT_APPLIED:
        click.echo(f"error: the server answered outcome {answer.outcome}", err=True)
        raise SystemExit(EXIT_FAILED)
    result = answer.result
    kind = result.WhichOneof("result") if applied else None
    detail = MessageToDict(getattr(result, kind)) if kind is not None else {}
    if as_json:
        print_json({"request_id": request_id, "user_id": user_id,
                    "outcome": "applied" if applied else "not_applied",
                    "result": {"kind": kind, **detail} if applied else None})  # fmt: skip
    elif not applied:
        stdout_console().print(
            f"{request_id}: [bold]not applied[/bold]; it is fenced now: a late retry of it "
            "is refused (REQUEST_FENCED)"
        )
    elif kind == "error":
        reason = errors_pb2.ErrorReason.Name(result.error.reason)
        stdout_console().print(
            f"{request_id}: [bold]applied[/bold]; its first result was a refusal: "
            f"{reason}: {result.error.message}",
            markup=False,
        )
    else:
        fields = ", ".join(f"{key} {value}" for key, value in detail.items())
        stdout_console().print(
            f"{request_id}: [bold]applied[/bold] ({kind or 'set_limits'}){': ' if fields else ''}"
            f"{fields}"
        )
    raise SystemExit(EXIT_APPLIED if applied else EXIT_NOT_APPLIED)
