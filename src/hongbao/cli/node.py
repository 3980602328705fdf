"""``hongbao node``: run one node process of a cluster."""

from __future__ import annotations

import logging
from dataclasses import replace
from pathlib import Path

import click

from hongbao.cli.common import insecure_flag, security_options, serve_process
from hongbao.config.dial import with_dial_map
from hongbao.config.topology import Topology, TopologyError, load_topology
from hongbao.logs import LOG_FORMATS, LogFormat, setup_logging
from hongbao.node.bugs import NODE_BUG_NAMES, NodeBugs
from hongbao.security.handshake_log import install_if_enabled
from hongbao.security.tls import insecure_problem

log = logging.getLogger(__name__)


@click.group()
def node() -> None:
    """Run and inspect node processes."""


@node.command("run")
@click.option("--config", "config_path", required=True, type=click.Path(dir_okay=False),
              help="The cluster topology (TOML), e.g. configs/local.toml.")
@click.option("--node", "node_id", required=True, type=int, help="This node's id.")
@click.option("--data-dir", required=True, type=click.Path(file_okay=False),
              help="Where this node keeps its LMDB environment.")
@click.option("--no-fsync", is_flag=True,
              help="Never fsync (tests and benchmarks only: an OS crash may lose data).")
@click.option("--log-level", default="info",
              type=click.Choice(["debug", "info", "warning", "error"]))
@click.option("--log-format", default="text", type=click.Choice(LOG_FORMATS),
              help="text (the default) or json: one object per line on stderr, with the "
                   "node, and the shard and request id where there is one.")
@click.option("--ready-file", type=click.Path(dir_okay=False), default=None,
              help="Write this file once the node serves (for scripts and tests).")
@click.option("--snapshot-interval-entries", type=click.IntRange(min=1), default=None,
              help="Snapshot a shard every this many applied entries "
                   "(default: the topology's [runtime], else 20000).")
@click.option("--trailing-entries", type=click.IntRange(min=0), default=None,
              help="Log entries kept behind a snapshot for followers that lag "
                   "(default: the topology's [runtime], else 5000).")
@click.option("--dial-map", type=click.Path(dir_okay=False), default=None,
              help="JSON of node id to host:port: dial those nodes there instead "
                   "(the chaos runner's proxies).")
@click.option("--bug", "bug_names", multiple=True, hidden=True,
              type=click.Choice(NODE_BUG_NAMES),
              help="TEST ONLY: run with a deliberate bug (hongbao.node.bugs).")
@security_options
def run(config_path: str, node_id: int, data_dir: str, no_fsync: bool, log_level: str,
        log_format: LogFormat, ready_file: str | None, snapshot_interval_entries: int | None,
        trailing_entries: int | None, dial_map: str | None,
        bug_names: tuple[str, ...]) -> None:
    """Host every shard replica placed on NODE and serve its gRPC API until SIGTERM.

    With the topology's ``tls = true`` (the default unless every host is loopback) the
    node serves and dials with mutual TLS, using node-NODE.crt of --certs-dir; running
    without TLS needs --insecure, always.
    """
    from hongbao.node.runtime_limits import runtime_limits_problem
    from hongbao.node.server import NodeServer
    from hongbao.node.storage import Durability

    topology, topology_text = _load(config_path, node_id)  # errors need no logging yet
    setup_logging("node", node_id, region=topology.region_of(node_id), level=log_level,
                  fmt=log_format)  # fmt: skip
    try:
        topology = with_dial_map(topology, dial_map)
    except TopologyError as error:
        raise click.ClickException(str(error)) from error
    insecure = insecure_flag()
    problem = insecure_problem(topology, insecure=insecure, starts_process=True)
    if problem is not None:
        raise click.ClickException(f"{config_path}: {problem}")
    if insecure:
        if topology.tls:
            log.warning("the topology says tls = true; --insecure runs this node WITHOUT TLS")
        topology = replace(topology, tls=False)
    else:
        install_if_enabled()  # refused handshakes are logged with the caller's address
    durability = Durability.NO_FSYNC if no_fsync else Durability.FSYNC
    snapshot_limits: dict[str, int] = {}
    if snapshot_interval_entries is not None:
        snapshot_limits["snapshot_interval_entries"] = snapshot_interval_entries
    if trailing_entries is not None:
        snapshot_limits["trailing_entries"] = trailing_entries
    runtime_limits = replace(topology.runtime, **snapshot_limits)  # flags beat the file
    problem = runtime_limits_problem(runtime_limits)
    if problem is not None:
        raise click.ClickException(f"node {node_id}: {problem}")

    def announce() -> None:
        if ready_file:
            Path(ready_file).write_text(f"{topology.node(node_id).address}\n")

    async def main() -> None:
        server = NodeServer(
            topology=topology,
            node_id=node_id,
            data_dir=Path(data_dir),
            durability=durability,
            runtime_limits=runtime_limits,
            topology_toml=topology_text,
            topology_source=str(Path(config_path).resolve()),
            node_bugs=NodeBugs.of(bug_names) if bug_names else None,
        )
        await server.serve_until_signal(announce)

    serve_process(f"node {node_id}", main)


def _load(config_path: str, node_id: int) -> tuple[Topology, str]:
    """The topology and its text (Admin.Topology answers the very text the node started with)."""
    try:
        topology = load_topology(config_path)
        topology.node(node_id)
        return topology, Path(config_path).read_text(encoding="utf-8")
    except TopologyError as error:
        raise click.ClickException(str(error)) from error
    except KeyError as error:
        raise click.ClickException(f"{config_path}: {error.args[0]}") from error
    except (OSError, UnicodeDecodeError) as error:
        raise click.ClickException(f"{config_path}: {error}") from error
