"""Amounts typed by people are parsed exactly; bad input exits 2 before anything is sent."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from hongbao.cli.common import (
    EXIT_REFUSED,
    EXIT_UNAVAILABLE,
    describe_error,
    exit_code_of,
    format_fen,
    parse_yuan,
)
from hongbao.cli.main import _register, cli
from hongbao.node.errors import ErrorReason, LeaderHint, make_error

_register()


@pytest.mark.parametrize(
    ("text", "fen"),
    [
        ("12.34", 1234),
        ("0.01", 1),
        ("0.1", 10),
        ("1", 100),
        ("12.340", 1234),  # equal to 12.34 exactly: accepted, not rounded
        ("0.29", 29),  # float(0.29) * 100 == 28.999999999999996
        ("1.15", 115),  # float(1.15) * 100 == 114.99999999999999
        ("19999999.99", 1_999_999_999),
        ("92233720368547758.07", 2**63 - 1),
    ],
)
def test_yuan_is_parsed_exactly(text: str, fen: int) -> None:
    assert parse_yuan(text) == fen


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("12.345", "more than 2 decimals"),
        ("0.001", "more than 2 decimals"),
        ("0", "positive"),
        ("0.00", "positive"),
        ("-1", "not an amount"),
        ("+1", "not an amount"),
        ("1e3", "not an amount"),
        ("NaN", "not an amount"),
        ("Infinity", "not an amount"),
        (" 1", "not an amount"),
        ("1,000", "not an amount"),
        (".5", "not an amount"),
        ("5.", "not an amount"),
        ("", "not an amount"),
        ("92233720368547758.08", "too large"),
    ],
)
def test_bad_yuan_is_refused_with_a_reason(text: str, why: str) -> None:
    with pytest.raises(ValueError, match=why):
        parse_yuan(text)


@pytest.mark.parametrize(
    ("fen", "text"), [(0, "0.00"), (1, "0.01"), (1234, "12.34"), (-1005, "-10.05"),
                      (123456789, "1,234,567.89")],
)  # fmt: skip
def test_fen_is_formatted_exactly(fen: int, text: str) -> None:
    assert format_fen(fen) == text


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["wallet", "deposit", "alice", "--amount", "1.234"], "more than 2 decimals"),
        (["wallet", "deposit", "alice", "--amount", "-5"], "not an amount in yuan"),
        (["wallet", "deposit", "alice", "--amount", "abc"], "not an amount in yuan"),
        (["wallet", "deposit", "alice", "--amount-fen", "0"], "must be positive"),
        (["wallet", "deposit", "alice", "--amount-fen", "1.5"], "not a valid integer"),
        (["wallet", "deposit", "alice"], "give the amount once"),
        (["wallet", "withdraw", "alice", "--amount", "1", "--amount-fen", "100"],
         "give the amount once"),
        (["wallet", "transfer", "alice", "--amount", "1"], "Missing argument"),
        (["envelope", "send", "alice", "--amount", "5"], "Missing option '--count'"),
        (["envelope", "send", "alice", "--amount", "5", "--count", "0"], "--count"),
        (["wallet", "frobnicate"], "No such command"),
    ],
)  # fmt: skip
def test_bad_input_exits_2_with_a_clear_message(
    args: list[str], message: str, topology_path: Path
) -> None:
    result = CliRunner().invoke(cli, [*args, "--config", str(topology_path)])
    assert result.exit_code == 2, result.output
    assert message in result.output + (result.stderr or "")


def test_a_missing_config_is_a_usage_error(tmp_path: Path) -> None:
    missing = tmp_path / "nope.toml"
    result = CliRunner().invoke(cli, ["wallet", "balance", "alice", "--config", str(missing)])
    assert result.exit_code == 2
    assert "nope.toml" in result.output + (result.stderr or "")


def test_exit_codes_and_messages_of_errors() -> None:
    refused = make_error(ErrorReason.INSUFFICIENT_FUNDS, "alice has 5 fen, needs 10", shard_id=3)
    assert exit_code_of(refused) == EXIT_REFUSED
    lines = describe_error(refused, "rid-1")
    assert lines[0] == "error: INSUFFICIENT_FUNDS: alice has 5 fen, needs 10"
    assert "shard: 3" in lines[1]
    assert not any("retry" in line for line in lines)  # a refusal is final

    moved = make_error(
        ErrorReason.NOT_LEADER, "node 1 does not lead shard 3",
        leader_hint=LeaderHint(2, "127.0.0.1:7102"),
    )  # fmt: skip
    assert exit_code_of(moved) == EXIT_UNAVAILABLE
    text = "\n".join(describe_error(moved, "rid-2"))
    assert "leader hint: node 2 at 127.0.0.1:7102" in text
    assert "--request-id rid-2" in text

    unknown = make_error(ErrorReason.OUTCOME_UNKNOWN, "deadline", server_reported=False)
    assert exit_code_of(unknown) == EXIT_UNAVAILABLE
    for reason in (ErrorReason.INVALID_AMOUNT, ErrorReason.NOT_FOUND, ErrorReason.ENVELOPE_EMPTY,
                   ErrorReason.REQUEST_ID_REUSED):  # fmt: skip
        assert exit_code_of(make_error(reason, "x")) == EXIT_REFUSED


def test_a_repeated_reason_prefix_is_shown_once() -> None:
    error = make_error(ErrorReason.AMOUNT_TOO_LARGE, "AMOUNT_TOO_LARGE: amount 9 > 5 fen")
    assert describe_error(error)[0] == "error: AMOUNT_TOO_LARGE: amount 9 > 5 fen"


def test_help_documents_the_exit_codes() -> None:
    for group in ("wallet", "envelope"):
        result = CliRunner().invoke(cli, [group, "--help"])
        assert result.exit_code == 0
        for line in ("2  usage", "3  refused", "4  unavailable"):
            assert line in result.output
