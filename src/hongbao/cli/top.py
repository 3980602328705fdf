"""``hongbao top``: the console's cluster view in a terminal, refreshed in place.

Rules of this module: presentation only. Every frame is one
:func:`hongbao.observe.collect.collect_view` (the same view the web console shows),
drawn with ``rich.live.Live``; ``--once`` prints a single frame and exits (scripts,
tests, a server without a terminal). Rates need two views, so ``--once`` takes two,
``--interval-s`` apart, and prints the second.
"""

from __future__ import annotations

import asyncio
import contextlib

import click
from rich.console import Console, Group
from rich.live import Live
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from hongbao.cli.common import config_option, load_config, stdout_console
from hongbao.config.topology import Topology
from hongbao.observe.collect import collect_view
from hongbao.observe.scrape import Scraper
from hongbao.observe.view import ClusterView, RegionView, ShardView
from hongbao.ops.admin_pool import AdminPool

FRAMES_MAX = 10_000_000  # a bound on the loop; at 1 s a frame, about four months
_STATE_STYLE = {"active": "green", "draining": "yellow", "drained": "cyan"}
_HEALTH_STYLE = {"up": "green", "suspect": "yellow", "down": "red"}


def _rate(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"


def _regions_table(view: ClusterView) -> Table:
    table = Table(title=f"regions (cluster {view.cluster_id or '?'}, "
                  f"state v{view.cluster_state_version})")  # fmt: skip
    for name in ("region", "state", "lat, lon", "nodes", "routers", "leads",
                 "req/s", "err/s", "drain"):  # fmt: skip
        table.add_column(name, justify="right" if name in ("leads", "req/s", "err/s") else "left")
    for region in view.regions:
        style = _STATE_STYLE.get(region.state, "red")
        where = "-" if region.latitude is None else f"{region.latitude:.2f}, {region.longitude:.2f}"
        nodes = " ".join(
            f"{n.node_id}:[{_HEALTH_STYLE[n.health]}]{n.health}[/]" for n in region.nodes
        )
        routers = " ".join(
            f"{r.router_id}:" + ("[green]up[/]" if r.up else "[red]down[/]")
            + ("" if r.metrics == "ok" else " [dim](no metrics)[/]")
            for r in region.routers
        )  # fmt: skip
        table.add_row(
            region.name, f"[{style}]{region.state}[/]", where, nodes or "-", routers or "-",
            str(region.leaders_count), _rate(region.requests_per_s),
            _rate(region.errors_per_s), _drain_text(region),
        )  # fmt: skip
    return table


def _drain_text(region: RegionView) -> str:
    if region.drain is None:
        return "-"
    drain = region.drain
    waiting = [s.shard for s in drain.shards if not s.moved]
    text = f"{drain.moved_count}/{len(drain.shards)} led elsewhere"
    return text + (f"; still led here: {', '.join(waiting)}" if waiting else "")


def _nodes_table(view: ClusterView) -> Table:
    table = Table(title="nodes")
    for name in ("node", "region", "health", "rtt ms", "leads", "apply lag", "log lag",
                 "fsync mean ms", "fsync p99 ms", "metrics"):  # fmt: skip
        table.add_column(name)
    for region in view.regions:
        for n in region.nodes:
            table.add_row(
                str(n.node_id), n.region, f"[{_HEALTH_STYLE[n.health]}]{n.health}[/]",
                f"{n.latency_ms:.1f}", ",".join(n.shards_led) or "-", str(n.apply_lag_entries),
                "-" if n.log_lag_entries is None else str(n.log_lag_entries),
                "-" if n.fsync_ms_mean is None else f"{n.fsync_ms_mean:.2f}",
                ("[red]" if n.slow_disk else "") + ("-" if n.fsync_ms_p99 is None
                                                    else f"{n.fsync_ms_p99:g}"),
                n.metrics,
            )  # fmt: skip
    table.caption = escape(
        f"a disk is flagged slow when fsync takes over {view.slow_fsync_ms} ms"
        " ([runtime] slow_fsync_ms)"
    )
    return table


def _replicas_text(shard: ShardView) -> str:
    parts = []
    for r in shard.replicas:
        lag = "" if r.lag_entries in (None, 0) else f" lag {r.lag_entries}"
        mark = "*" if r.role == "leader" else ""
        parts.append(f"{r.node_id}{mark} {r.applied_index if r.applied_index is not None else '?'}"
                     f"{lag}")  # fmt: skip
    return "; ".join(parts)


def _shards_table(view: ClusterView) -> Table:
    table = Table(title="shards (replicas: node, * leader, applied index, lag in entries)")
    for name in ("shard", "leader", "leader region", "home", "term", "commit", "replicas"):
        table.add_column(name)
    for s in view.shards:
        away = s.leader_region is not None and s.leader_region != s.home_region
        region = s.leader_region or "-"
        table.add_row(
            s.shard, "[red]none[/]" if s.leader_node_id is None else str(s.leader_node_id),
            f"[yellow]{region}[/]" if away else region, s.home_region,
            "-" if s.term is None else str(s.term),
            "-" if s.commit_index is None else str(s.commit_index), _replicas_text(s),
        )  # fmt: skip
    return table


def render_view(view: ClusterView) -> Group:
    """One frame: regions, nodes, shards, then the flags."""
    flags: list[Text | str] = [Text("flags: none", style="green")]
    if view.flags:
        flags = [Text(f"flags ({len(view.flags)}):", style="red")]
        flags += [f"  [red]{f.kind}[/]: {f.message}" for f in view.flags]
    return Group(_regions_table(view), _nodes_table(view), _shards_table(view), *flags)


async def _views(topology: Topology, interval_s: float, once: bool, out: Console) -> None:
    async with AdminPool.for_topology(topology) as pool, Scraper() as scraper:
        view = await collect_view(topology, pool, scraper, None)
        if once:
            await asyncio.sleep(interval_s)  # a second view, so that rates have a delta
            view = await collect_view(topology, pool, scraper, view)
            out.print(render_view(view))
            return
        with Live(render_view(view), console=out, refresh_per_second=4) as live:
            for _ in range(FRAMES_MAX):
                await asyncio.sleep(interval_s)
                view = await collect_view(topology, pool, scraper, view)
                live.update(render_view(view))


@click.command("top")
@config_option
@click.option(
    "--interval-s",
    type=click.FloatRange(min=0.1, max=60),
    default=1.0,
    show_default=True,
    help="Seconds between two views (rates are over this).",
)
@click.option("--once", is_flag=True, help="Print one frame and exit (for scripts).")
def top(config_path: str, interval_s: float, once: bool) -> None:
    """The cluster live in the terminal: regions, nodes, shard leaders, traffic, flags."""
    topology = load_config(config_path)
    out = stdout_console()
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_views(topology, interval_s, once, out))
