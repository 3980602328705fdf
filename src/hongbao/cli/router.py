"""``hongbao router run``: one stateless router process of a cluster."""

from __future__ import annotations

import logging
from dataclasses import replace
from pathlib import Path
from typing import cast

import click

from hongbao.cli.common import insecure_flag, security_options, serve_process
from hongbao.config.dial import with_dial_map
from hongbao.config.routers import PORT_MAX, RouterSpec
from hongbao.config.topology import Topology, TopologyError, load_topology
from hongbao.logs import LOG_FORMATS, LogFormat, setup_logging
from hongbao.node.bugs import ROUTER_BUG_NAMES, RouterBugs
from hongbao.security.tls import insecure_problem

log = logging.getLogger(__name__)

QUIET_AT_DEBUG = ("grpc", "asyncio")
"""Libraries whose debug lines (a line per RPC, per loop) stay off at --log-level debug."""


@click.group()
def router() -> None:
    """Run router processes (clients talk to their region's router)."""


def choose_spec(
    topology: Topology,
    region: str,
    router_id: int | None,
    host: str | None,
    port: int | None,
) -> RouterSpec:
    """The ``[[routers]]`` entry to run (by id, else the region's first), with --host and
    --port overriding it; without any entry both are needed. ValueError says why not."""
    if region not in {r.name for r in topology.regions}:
        names = ", ".join(r.name for r in topology.regions)
        raise ValueError(f"unknown region {region!r} (regions: {names})")
    spec: RouterSpec | None = None
    if router_id is not None:
        try:
            spec = topology.router_spec(router_id)
        except KeyError:
            if host is None or port is None:
                raise ValueError(
                    f"no router {router_id} in [[routers]]: give --host and --port"
                ) from None
        if spec is not None and spec.region != region:
            raise ValueError(f"router {router_id} serves {spec.region}, not {region}")
    else:
        in_region = topology.routers_in(region)
        spec = in_region[0] if in_region else None
    if spec is None:
        if host is None or port is None:
            raise ValueError(f"region {region} has no [[routers]] entry: give --host and --port")
        return RouterSpec(router_id=router_id or 0, region=region, host=host, port=port)
    return replace(spec, host=host or spec.host, port=port if port is not None else spec.port)


@router.command("run")
@click.option(
    "--config",
    "config_path",
    required=True,
    type=click.Path(dir_okay=False),
    help="The cluster topology (TOML), e.g. configs/local.toml.",
)
@click.option("--region", required=True, help="The region this router serves.")
@click.option(
    "--router-id",
    type=click.IntRange(min=1),
    default=None,
    help="Which [[routers]] entry (default: the region's first).",
)
@click.option("--host", default=None, help="Listen on this host (default: the entry's).")
@click.option(
    "--port",
    type=click.IntRange(min=0, max=PORT_MAX),
    default=None,
    help="Listen on this port (default: the entry's; 0: any free one).",
)
@click.option(
    "--ready-file",
    type=click.Path(dir_okay=False),
    default=None,
    help="Write host:port to this file once the router serves.",
)
@click.option(
    "--log-level", default="info", type=click.Choice(["debug", "info", "warning", "error"])
)
@click.option(
    "--log-format",
    default="text",
    type=click.Choice(LOG_FORMATS),
    help="json: one JSON object per line on stderr (router, region, shard, request_id).",
)
@click.option(
    "--dial-map",
    type=click.Path(dir_okay=False),
    default=None,
    help="JSON of node id to host:port: dial those nodes there instead (chaos proxies).",
)
@click.option(
    "--bug",
    "bug_names",
    multiple=True,
    hidden=True,
    type=click.Choice(ROUTER_BUG_NAMES),
    help="TEST ONLY: run with a deliberate bug (hongbao.node.bugs).",
)
@security_options
def run(
    config_path: str,
    region: str,
    router_id: int | None,
    host: str | None,
    port: int | None,
    ready_file: str | None,
    log_level: str,
    log_format: str,
    dial_map: str | None,
    bug_names: tuple[str, ...],
) -> None:
    """Serve the ledger services for REGION's clients, forwarding to the shard leaders.

    Stateless: it may be stopped or killed at any time; clients retry through another
    region's router with the same request id. With ``tls = true`` it serves and dials
    with router-N.crt of --certs-dir; without TLS it needs --insecure.
    """
    from hongbao.router.server import RouterServer

    try:
        topology = with_dial_map(load_topology(config_path), dial_map)
        spec = choose_spec(topology, region, router_id, host, port)
    except TopologyError as error:
        raise click.ClickException(str(error)) from error
    except ValueError as error:
        raise click.UsageError(str(error)) from error
    setup_logging(
        "router",
        spec.router_id,
        region=spec.region,
        level=log_level,
        fmt=cast(LogFormat, log_format),
    )
    for chatty in QUIET_AT_DEBUG:  # one line per call each: they would drown the router's
        logging.getLogger(chatty).setLevel(max(logging.INFO, logging.getLogger().level))
    insecure = insecure_flag()
    problem = insecure_problem(topology, insecure=insecure, starts_process=True)
    if problem is not None:
        raise click.ClickException(f"{config_path}: {problem}")
    if insecure:
        if topology.tls:
            log.warning("the topology says tls = true; --insecure runs this router WITHOUT TLS")
        topology = replace(topology, tls=False)

    async def main() -> None:
        server = RouterServer(
            topology=topology,
            spec=spec,
            config_path=Path(config_path),
            router_bugs=RouterBugs.of(bug_names) if bug_names else None,
        )

        def announce() -> None:
            if ready_file:
                Path(ready_file).write_text(f"{spec.host}:{server.port}\n")

        await server.serve_until_signal(announce)

    serve_process(f"router {spec.router_id}", main)
