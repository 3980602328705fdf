"""``hongbao dump``: a stored document (MessagePack behind a version byte) read as JSON,
and garbage refused with a message and a non-zero exit."""

from __future__ import annotations

import json

from click.testing import CliRunner

from hongbao.cli.dump import dump
from hongbao.ledger import Deposit
from hongbao.ledger.codec import encode
from hongbao.ledger.effects import encode_effects
from hongbao.ledger.store import Table


def test_a_document_in_hex_prints_as_json() -> None:
    data = encode(Deposit("r-1", "alice", 1234))
    result = CliRunner().invoke(dump, [data.hex()])
    assert result.exit_code == 0, result.output
    shown = json.loads(result.output.splitlines()[0])
    text = json.dumps(shown)
    assert "r-1" in text
    assert "alice" in text
    assert "1234" in text


def test_an_effects_log_entry_prints_its_writes() -> None:
    account = encode(Deposit("r-1", "alice", 1234))  # any document stands for a row here
    data = encode_effects([(Table.ACCOUNTS, b"alice", account), (Table.GRABS, b"g", None)])
    result = CliRunner().invoke(dump, [data.hex()])
    assert result.exit_code == 0, result.output
    writes = json.loads(result.output)["value"]["effects"]
    assert writes[0]["table"] == "accounts"
    assert writes[0]["key"] == b"alice".hex()
    assert "alice" in json.dumps(writes[0]["value"])
    assert writes[1] == {"table": "grabs", "key": b"g".hex(), "delete": True}


def test_garbage_is_refused_with_a_message_and_exit_1() -> None:
    result = CliRunner().invoke(dump, ["00ff00"])
    assert result.exit_code == 1
    assert "do not decode" in result.output
    assert json.loads(result.output.splitlines()[0])["error"]


def test_not_hex_and_a_missing_table_are_usage_errors(tmp_path: object) -> None:
    assert CliRunner().invoke(dump, ["zz"]).exit_code == 2
    result = CliRunner().invoke(dump, ["--node-dir", str(tmp_path)])
    assert result.exit_code == 2
    assert "--shard and --table" in result.output
