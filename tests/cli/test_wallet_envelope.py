"""The wallet and envelope commands against a real cluster: output, --json, exit codes."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from hongbao.cli.main import _register, cli

_register()
pytestmark = pytest.mark.cluster


def run(config: Path, *args: str) -> Result:
    return CliRunner().invoke(cli, [*args, "--config", str(config)])


def run_json(config: Path, *args: str) -> dict[str, Any]:
    result = run(config, *args, "--json")
    assert result.exit_code == 0, result.output + (result.stderr or "")
    data = json.loads(result.stdout)
    assert isinstance(data, dict)
    return data


def test_deposit_in_yuan_lands_exactly_in_fen(running: Path) -> None:
    data = run_json(running, "wallet", "deposit", "cli-alice", "--amount", "0.29")
    assert data["amount_fen"] == 29
    assert data["balance_fen"] == 29
    assert isinstance(data["request_id"], str)
    assert data["request_id"]
    human = run(running, "wallet", "deposit", "cli-alice", "--amount-fen", "71")
    assert human.exit_code == 0
    assert "deposited 0.71 yuan to cli-alice; balance 1.00 yuan" in human.stdout
    assert "request id: " in human.stderr  # generated, and shown so it can be retried


def test_a_retry_with_the_same_request_id_is_applied_once(running: Path) -> None:
    args = ("wallet", "deposit", "cli-bob", "--amount", "12.34", "--request-id", "cli-rid-1")
    first = run_json(running, *args)
    again = run_json(running, *args)
    assert first["balance_fen"] == again["balance_fen"] == 1234
    balance = run_json(running, "wallet", "balance", "cli-bob")
    assert balance["balance_fen"] == 1234


def test_refusals_exit_3_with_reason_and_message(running: Path) -> None:
    run_json(running, "wallet", "deposit", "cli-carol", "--amount", "1")
    poor = run(running, "wallet", "withdraw", "cli-carol", "--amount", "2")
    assert poor.exit_code == 3
    assert "error: INSUFFICIENT_FUNDS" in poor.stderr
    assert "shard:" in poor.stderr
    frozen = run_json(running, "wallet", "freeze", "cli-carol")
    assert frozen["frozen"] is True
    blocked = run(running, "wallet", "transfer", "cli-carol", "cli-bob", "--amount", "0.5")
    assert blocked.exit_code == 3
    assert "ACCOUNT_FROZEN" in blocked.stderr
    assert run_json(running, "wallet", "unfreeze", "cli-carol")["frozen"] is False
    run_json(running, "wallet", "deposit", "cli-carol", "--amount", "3", "--request-id", "rid-c")
    reused = run(running, "wallet", "deposit", "cli-carol", "--amount", "4",
                 "--request-id", "rid-c")  # fmt: skip
    assert reused.exit_code == 3
    assert "REQUEST_ID_REUSED" in reused.stderr
    too_big = run(running, "wallet", "deposit", "cli-carol", "--amount", "50000.01")
    assert too_big.exit_code == 3
    assert "AMOUNT_TOO_LARGE" in too_big.stderr


def test_transfer_history_and_balance(running: Path) -> None:
    run_json(running, "wallet", "deposit", "cli-dan", "--amount", "10")
    moved = run_json(running, "wallet", "transfer", "cli-dan", "cli-erin", "--amount", "2.50")
    assert moved["from_balance_fen"] == 750
    history = run_json(running, "wallet", "history", "cli-dan")
    postings = history["postings"]
    assert isinstance(postings, list)
    assert [p["kind"] for p in postings] == ["transfer_out", "deposit"]
    assert [p["amount_fen"] for p in postings] == [-250, 1000]
    table = run(running, "wallet", "history", "cli-dan")
    assert table.exit_code == 0
    assert "transfer_out" in table.stdout
    assert "-2.50" in table.stdout


def test_envelope_send_grab_show(running: Path) -> None:
    run_json(running, "wallet", "deposit", "cli-boss", "--amount", "100")
    sent = run_json(running, "envelope", "send", "cli-boss", "--amount", "10", "--count", "3")
    envelope_id = str(sent["envelope_id"])
    assert sent["sender_balance_fen"] == 9000
    amounts = []
    for user in ("cli-g1", "cli-g2", "cli-g3"):
        grab = run_json(running, "envelope", "grab", envelope_id, user)
        amounts.append(grab["amount_fen"])
    assert sum(amounts) == 1000
    late = run(running, "envelope", "grab", envelope_id, "cli-g4")
    assert late.exit_code == 3
    assert "ENVELOPE_EMPTY" in late.stderr
    twice = run(running, "envelope", "grab", envelope_id, "cli-g1")
    assert twice.exit_code == 3
    shown = run_json(running, "envelope", "show", envelope_id)
    assert shown["state"] == "empty"
    assert [g["user_id"] for g in shown["grabs"]] == ["cli-g1", "cli-g2", "cli-g3"]
    human = run(running, "envelope", "show", envelope_id)
    assert "best luck" in human.stdout
    fixed = run(running, "envelope", "send", "cli-boss", "--amount", "1", "--count", "3",
                "--fixed")  # fmt: skip
    assert fixed.exit_code == 3  # 100 fen does not split into 3 equal shares
    bad = run(running, "envelope", "show", "not-an-id")
    assert bad.exit_code == 3
    assert "MALFORMED_ID" in bad.stderr


def test_an_unreachable_cluster_exits_4(topology_path: Path) -> None:
    """Nothing listens on the fresh ports: unavailable, and the id to retry with is shown."""
    result = run(topology_path, "wallet", "deposit", "cli-zed", "--amount", "1",
                 "--request-id", "cli-rid-down", "--timeout-s", "0.5")  # fmt: skip
    assert result.exit_code == 4
    assert "error: UNAVAILABLE" in result.stderr
    assert "--request-id cli-rid-down" in result.stderr
