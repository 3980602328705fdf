"""``hongbao dump``: ledger documents (log entries, rows) as JSON, for people debugging.

Rows and log entries are MessagePack behind a version byte (``hongbao.ledger.codec``), or,
for a ledger entry of effects, behind its marker byte (``hongbao.ledger.effects``): this
prints them readably. Either documents given in hex (copied from a log line or a tool), or
the rows of one table of one shard, read from a node's LMDB environment with LMDB's
read-only flag (safe on a running node: readers never block the writer).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Final

import click

from hongbao.ledger.codec import CodecError, to_json
from hongbao.ledger.effects import decode_effects, is_effects
from hongbao.ledger.store import Table, iterate

ROWS_MAX: Final = 10_000
"""Most rows one ``--table`` dump prints: a dump is for looking, not for exporting."""


def _value(data: bytes) -> object:
    """A document as JSON, an effects log entry as its writes (each row decoded if it can be)."""
    if not is_effects(data):
        return json.loads(to_json(data))
    writes = []
    for table, key, row in decode_effects(data):
        write: dict[str, object] = {"table": table.value, "key": key.hex()}
        if row is None:
            write["delete"] = True
        else:
            try:
                write["value"] = json.loads(to_json(row))
            except CodecError:
                write["raw"] = row.hex()  # a plain u64 or index row
        writes.append(write)
    return {"effects": writes}


def _line(key: bytes | None, data: bytes) -> str:
    """One JSON line: the record, or the raw bytes in hex when they are no document."""
    shown: dict[str, object] = {} if key is None else {"key": key.hex()}
    try:
        shown["value"] = _value(data)
    except CodecError as error:
        shown |= {"raw": data.hex(), "error": str(error)}  # plain u64 rows, or garbage
    return json.dumps(shown, ensure_ascii=False)


@click.command("dump")
@click.argument("documents", nargs=-1)
@click.option(
    "--node-dir",
    type=click.Path(file_okay=False, exists=True, path_type=Path),
    help="A node's LMDB environment (DATA_DIR/node-ID), opened read-only.",
)
@click.option("--shard", "shard_id", type=click.IntRange(0), help="The shard to read.")
@click.option("--table", type=click.Choice([table.value for table in Table]), default=None)
@click.option("--prefix", default="", help="Only keys starting with these (UTF-8) bytes.")
@click.option("--limit", type=click.IntRange(1, ROWS_MAX), default=100, show_default=True)
def dump(
    documents: tuple[str, ...],
    node_dir: Path | None,
    shard_id: int | None,
    table: str | None,
    prefix: str,
    limit: int,
) -> None:
    """Print ledger documents as JSON lines: DOCUMENTS in hex, or a table's rows."""
    if documents and node_dir is not None:
        raise click.UsageError("give DOCUMENTS in hex or --node-dir, not both")
    undecodable = 0
    for text in documents:
        try:
            data = bytes.fromhex(text)
        except ValueError as error:
            raise click.UsageError(f"{text[:20]!r} is not hex: {error}") from None
        line = _line(None, data)
        undecodable += '"error"' in line and "value" not in json.loads(line)
        click.echo(line)
    if undecodable:
        raise click.ClickException(f"{undecodable} of {len(documents)} documents do not decode")
    if node_dir is None:
        return
    if shard_id is None or table is None:
        raise click.UsageError("--node-dir needs --shard and --table")
    from hongbao.ops.audit import read_node  # lmdb only when a node directory is read

    try:
        with read_node(node_dir) as reader:
            rows = iterate(reader.store(shard_id), Table(table), prefix=prefix.encode())
            for count, (key, data) in enumerate(rows):
                if count == limit:
                    break
                click.echo(_line(key, data))
    except FileNotFoundError as error:
        raise click.UsageError(str(error)) from None
