"""What the client command families share: the config option, amounts, errors and exit codes.

Rules of this module: amounts typed by people are parsed exactly, with
:class:`decimal.Decimal` and a strict grammar (never a float); an error reaches stderr as
its reason, its message and, when the node gave one, the leader hint; the exit code says
what kind of failure it was, so scripts can tell "refused" from "try again":

====  ==========================================================================
0     success
1     an unexpected failure (a bug: please report it with the traceback)
2     usage: a bad option or argument, refused before anything was sent
3     refused or invalid: the cluster answered no (insufficient funds, frozen
      account, empty envelope, bad amount, unknown id...). Retrying will not help.
4     unavailable or outcome unknown: no leader answered in time, or the request may
      have been applied. Retry with the SAME --request-id: it is never applied twice.
====  ==========================================================================
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import sys
from collections.abc import Callable, Coroutine
from dataclasses import replace
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any, Final, NoReturn, TypeVar

import click
from rich.console import Console

from hongbao.client.sdk import ClientOptions, HongbaoClient, new_request_id
from hongbao.config.topology import Topology, TopologyError, load_topology
from hongbao.node.errors import (
    HongbaoError,
    InternalError,
    RetryableError,
)
from hongbao.security.tls import CERTS_DIR_ENV, TlsError, client_credentials, insecure_problem

T = TypeVar("T")
F = TypeVar("F", bound=Callable[..., Any])

EXIT_OK: Final = 0
EXIT_USAGE: Final = 2
EXIT_REFUSED: Final = 3
EXIT_UNAVAILABLE: Final = 4

EXIT_CODES_HELP: Final = (
    "\b\nExit codes:\n"
    "  0  success\n"
    "  2  usage: bad option or argument; nothing was sent\n"
    "  3  refused or invalid: the cluster said no (funds, frozen, empty, bad amount...)\n"
    "  4  unavailable or outcome unknown: retry with the same --request-id\n"
)

CONFIG_ENV: Final = "HONGBAO_CONFIG"
CONFIG_DEFAULT: Final = "configs/local.toml"
FEN_PER_YUAN: Final = 100
INT64_MAX: Final = 2**63 - 1
_YUAN = re.compile(r"[0-9]+(?:\.[0-9]+)?")


def default_config_path() -> str:
    """``$HONGBAO_CONFIG``, else ``configs/local.toml`` here, else the repository's copy."""
    from_env = os.environ.get(CONFIG_ENV)
    if from_env:
        return from_env
    if Path(CONFIG_DEFAULT).exists():
        return CONFIG_DEFAULT
    bundled = Path(__file__).resolve().parents[3] / CONFIG_DEFAULT
    return str(bundled) if bundled.exists() else CONFIG_DEFAULT


def config_option(function: F) -> F:
    """``--config``, with the TLS options every command that reads a topology takes."""
    function = security_options(function)
    return click.option(
        "--config",
        "config_path",
        default=default_config_path,
        show_default=f"${CONFIG_ENV} or {CONFIG_DEFAULT}",
        type=click.Path(dir_okay=False),
        help="The cluster topology (TOML).",
    )(function)


_INSECURE_KEY: Final = "hongbao.insecure"


def _set_certs_dir(context: click.Context, _: click.Parameter, value: str | None) -> None:
    """``--certs-dir`` is ``$HONGBAO_CERTS_DIR`` for this command and what it starts."""
    del context
    if value:
        os.environ[CERTS_DIR_ENV] = str(Path(value).resolve())


def _set_insecure(context: click.Context, _: click.Parameter, value: bool) -> None:
    context.meta[_INSECURE_KEY] = value


def security_options(function: F) -> F:
    """``--certs-dir`` and ``--insecure``; read back by :func:`load_config`.

    They take no parameter of the command (``expose_value=False``), so that adding them
    to every command that reads a topology changes no command's signature.
    """
    function = click.option(
        "--insecure", is_flag=True, expose_value=False, callback=_set_insecure,
        help="Run without TLS; needed when the topology says tls = false and a host "
             "is not loopback (and by `node run` whenever it says tls = false).",
    )(function)  # fmt: skip
    return click.option(
        "--certs-dir", type=click.Path(file_okay=False), default=None, expose_value=False,
        callback=_set_certs_dir, is_eager=True, envvar=CERTS_DIR_ENV,
        help=f"Certificates from `hongbao certs init` (default: ${CERTS_DIR_ENV}, "
             "else certs_dir in the topology).",
    )(function)  # fmt: skip


def insecure_flag() -> bool:
    """Whether the running command was given ``--insecure``."""
    context = click.get_current_context(silent=True)
    return bool(context is not None and context.meta.get(_INSECURE_KEY, False))


def json_option(function: F) -> F:
    return click.option(
        "--json", "as_json", is_flag=True, help="Print one JSON object on stdout (for machines)."
    )(function)


def load_config(config_path: str, *, starts_process: bool = False) -> Topology:
    """The topology, or a usage error (exit 2) that names the file and the problem.

    TLS is settled here: ``--insecure`` turns it off; otherwise a ``tls = false`` file
    with a host that is not loopback is refused, and a ``tls = true`` one must have
    usable client (or operator) certificates, checked now rather than at the first call.
    """
    try:
        topology = load_topology(config_path)
    except TopologyError as error:
        raise click.UsageError(str(error)) from error
    insecure = insecure_flag()
    problem = insecure_problem(topology, insecure=insecure, starts_process=starts_process)
    if problem is not None:
        raise click.UsageError(f"{config_path}: {problem}")
    if insecure:
        return replace(topology, tls=False)
    if topology.tls and not starts_process:
        try:
            client_credentials(topology)
        except TlsError as error:
            raise click.UsageError(f"{config_path}: {error}") from error
    return topology


# -- amounts ---------------------------------------------------------------------------


def parse_yuan(text: str) -> int:
    """``"12.34"`` yuan -> 1234 fen, exactly. Raises ValueError with a reason for people.

    Accepted: digits, optionally a point and digits, at most 2 significant decimals
    (``12.340`` is 12.34 exactly and accepted; ``12.345`` is refused, never rounded).
    Refused: signs, exponents, spaces, NaN, infinity, zero, and more than int64 fen.
    """
    if not _YUAN.fullmatch(text):
        raise ValueError(f"{text!r} is not an amount in yuan like 12.34")
    try:
        yuan = Decimal(text)
    except InvalidOperation as error:  # unreachable after the grammar, kept for safety
        raise ValueError(f"{text!r} is not a number") from error
    fen = yuan * FEN_PER_YUAN
    if fen != fen.to_integral_value():
        raise ValueError(f"{text!r} has more than 2 decimals: the smallest unit is 0.01 yuan")
    amount_fen = int(fen)
    _check_fen(amount_fen)
    return amount_fen


def _check_fen(amount_fen: int) -> None:
    if amount_fen <= 0:
        raise ValueError("the amount must be positive")
    if amount_fen > INT64_MAX:
        raise ValueError("the amount is too large")


def amount_options(function: F) -> F:
    function = click.option(
        "--amount-fen", type=int, default=None, help="The amount in fen (1 yuan = 100 fen)."
    )(function)
    return click.option(
        "--amount", "amount_yuan", default=None, metavar="YUAN",
        help="The amount in yuan, at most 2 decimals (12.34), parsed exactly.",
    )(function)  # fmt: skip


def resolve_amount(amount_yuan: str | None, amount_fen: int | None) -> int:
    """Exactly one of --amount (yuan) and --amount-fen; the result in fen (exit 2 if not)."""
    if (amount_yuan is None) == (amount_fen is None):
        raise click.UsageError("give the amount once: --amount YUAN or --amount-fen FEN")
    try:
        if amount_yuan is not None:
            return parse_yuan(amount_yuan)
        assert amount_fen is not None
        _check_fen(amount_fen)
        return amount_fen
    except ValueError as error:
        raise click.BadParameter(
            str(error), param_hint="--amount" if amount_yuan is not None else "--amount-fen"
        ) from error


def format_fen(amount_fen: int) -> str:
    """1234 -> ``12.34``; exact, with a sign for negatives."""
    sign = "-" if amount_fen < 0 else ""
    whole, cents = divmod(abs(amount_fen), FEN_PER_YUAN)
    return f"{sign}{whole:,}.{cents:02d}"


def yuan(amount_fen: int) -> str:
    """``1,234.56 yuan``: how every command shows an amount to a person."""
    return f"{format_fen(amount_fen)} yuan"


# -- running a client call and reporting its failure -----------------------------------


def exit_code_of(error: HongbaoError) -> int:
    """3: refused or invalid; 4: unavailable, retryable, or outcome unknown."""
    if isinstance(error, RetryableError | InternalError) or error.outcome_unknown:
        return EXIT_UNAVAILABLE
    return EXIT_REFUSED


def describe_error(error: HongbaoError, request_id: str | None = None) -> list[str]:
    """The lines an operator needs: reason, message, leader hint, what to do next."""
    message = error.message
    prefix = f"{error.reason.value}: "
    while message.startswith(prefix):  # some servers repeat the reason in the message
        message = message[len(prefix) :]
    lines = [f"error: {error.reason.value}: {message or error.reason.value}"]
    if error.shard_id is not None:
        lines.append(f"  shard: {error.shard_id}")
    hint = error.leader_hint
    if hint is not None:
        who = f"node {hint.node_id}" if hint.node_id else "unknown (try the shard's home node)"
        lines.append(f"  leader hint: {who}" + (f" at {hint.address}" if hint.address else ""))
    if exit_code_of(error) == EXIT_UNAVAILABLE and request_id:
        lines.append(
            f"  the outcome may be unknown: retry with --request-id {request_id} "
            "(it is never applied twice)"
        )
    return lines


PIPE_WIDTH: Final = 120


def stdout_console() -> Console:
    """Rich output for people; when piped (no terminal, no $COLUMNS) 120 columns wide."""
    console = Console(highlight=False, soft_wrap=True)
    if not console.is_terminal and "COLUMNS" not in os.environ:
        console.width = PIPE_WIDTH
    return console


def fail(error: HongbaoError, request_id: str | None = None) -> NoReturn:
    err = Console(stderr=True, highlight=False, soft_wrap=True)
    for line in describe_error(error, request_id):
        err.print(line, markup=False)
    raise SystemExit(exit_code_of(error))


def run_client(
    config_path: str,
    work: Callable[[HongbaoClient], Coroutine[Any, Any, T]],
    *,
    timeout_s: float,
    request_id: str | None = None,
) -> T:
    """Load the topology, run ``work`` with a client, turn a HongbaoError into its exit.

    The client goes through the routers when the topology has ``[[routers]]`` (its own
    region's first, failing over to another region's), else straight to the leaders.
    """
    topology = load_config(config_path)

    async def main() -> T:
        async with HongbaoClient.for_target(topology, ClientOptions(timeout_s=timeout_s)) as client:
            return await work(client)

    try:
        return asyncio.run(main())
    except HongbaoError as error:
        fail(error, request_id)


def timeout_option(function: F) -> F:
    return click.option(
        "--timeout-s", type=click.FloatRange(min=0.1, max=600), default=5.0, show_default=True,
        help="Deadline of each attempt (the client retries a few times on failover).",
    )(function)  # fmt: skip


def request_id_option(function: F) -> F:
    return click.option(
        "--request-id", default=None,
        help="Idempotency key; reuse it to retry safely (default: a fresh one, printed).",
    )(function)  # fmt: skip


def take_request_id(request_id: str | None) -> str:
    """The given id, or a new one announced on stderr before anything is sent."""
    if request_id is not None:
        return request_id
    rid = new_request_id()
    click.echo(f"request id: {rid}", err=True)
    return rid


def print_json(data: object) -> None:
    click.echo(json.dumps(data, sort_keys=True))


def serve_process(what: str, main: Callable[[], Coroutine[Any, Any, None]]) -> None:
    """Run a server process (``node run``, ``router run``) until it stops: bad or missing
    certificates are a clear message, a port that cannot be bound exits 1."""
    try:
        asyncio.run(main())
    except TlsError as error:
        raise click.ClickException(f"{what}: {error}") from error
    except OSError as error:
        click.echo(f"{what}: {error}", err=True)
        sys.exit(1)
