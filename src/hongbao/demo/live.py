"""The real demo: three cities on this machine; one is drained for maintenance, one goes
dark, and the money keeps moving.

Rules of this module: it tells one story (:mod:`hongbao.demo.story`) on a real cluster:
three ``hongbao node run`` processes and one ``hongbao router run`` per city, children
of a :class:`~hongbao.ops.local.LocalCluster`, fsync on, fresh 127.0.0.1 ports, a
temporary directory. Its client is the SDK every user has, in router mode (its own
city's router first). Every wait is a condition with a deadline; the processes are
killed and the directory removed on every exit path, Ctrl-C included. The story ends
with the audits: the client's (its users' balances + envelope escrow == its deposits -
withdrawals), the live one of ``hongbao audit`` (:func:`hongbao.ops.live_audit.live_audit`,
on the running cluster), and the offline one over every replica's LMDB after the stop
(:func:`hongbao.ops.audit.audit_cluster`: conservation to the fen including money in
flight, replicas identical, journals replayed). With a latency matrix (``--geo``) every
link goes through its own proxy and the story is :class:`~hongbao.demo.geo_story.GeoStory`
(latency switched on after bootstrap); the proxies go with the processes.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING

from hongbao.client.sdk import ClientOptions, HongbaoClient
from hongbao.config.topology import load_topology
from hongbao.demo.geo import GeoLatency
from hongbao.demo.story import DemoResult, Say, Story, fen
from hongbao.node.errors import HongbaoError
from hongbao.ops.admin_pool import AdminPool
from hongbao.ops.audit import audit_cluster
from hongbao.ops.drain import DrainRefused
from hongbao.ops.live_audit import live_audit
from hongbao.ops.local import LocalCluster, write_topology
from hongbao.ops.processes import ClusterOpsError

if TYPE_CHECKING:
    from hongbao.demo.geo_story import GeoNet

LIVE_AUDIT_TIMEOUT_S = 15.0

__all__ = ["DemoResult", "run_live_demo"]


def run_live_demo(
    template: Path,
    say: Say,
    *,
    seed: int = 2024,
    stop_timeout_s: float = 15.0,
    latency: GeoLatency | None = None,
    toxiproxy: str = "auto",
) -> DemoResult:
    """Start the cluster in a temporary directory, tell the story, audit, clean up.

    With ``latency``, every link goes through a proxy of a ``toxiproxy`` server (``auto``,
    ``embedded`` or a URL) and the matrix goes on after bootstrap (a
    :class:`~hongbao.demo.geo_story.GeoDemoResult` is returned). The processes are killed,
    the proxies removed and the directory deleted however this ends (Ctrl-C included).
    """
    started = time.monotonic()
    temporary = Path(tempfile.mkdtemp(prefix="hongbao-demo-"))
    try:
        topology_path = write_topology(temporary / "topology.toml", template=template)
        data_dir = temporary / "data"
        with contextlib.ExitStack() as stack:  # exits in reverse: processes, then proxies
            geo: GeoNet | None = None
            if latency is not None:
                from hongbao.demo.geo_story import geo_network  # the proxies' libraries

                geo = stack.enter_context(geo_network(
                    load_topology(topology_path), latency, temporary / "dial",
                    toxiproxy=toxiproxy,
                ))  # fmt: skip
            cluster = stack.enter_context(LocalCluster(topology_path, data_dir))
            if geo is not None:
                geo.apply_to(cluster)
            cluster.start()
            cluster.start_routers()
            result = asyncio.run(_tell(cluster, say, seed, geo))
            cluster.stop_together(stop_timeout_s)
            report = audit_cluster(data_dir, cluster.topology, deep=True, require_drained=True)
            if not report.ok or report.ledger is None:
                say("[red]offline audit FAILED[/red]:\n" + report.describe())
                return result
            ledger = report.ledger
            say(
                f"[green]conservation audit passed[/green]: balances {fen(ledger.balances_fen)}"
                f" + escrow {fen(ledger.escrow_fen)} + in flight {fen(ledger.undelivered_fen)}"
                f" == deposits {fen(ledger.deposits_fen)} - withdrawals "
                f"{fen(ledger.withdrawals_fen)} yuan, exact to the fen (client side, live, "
                f"and offline over all {len(report.replicas)} replicas after the stop: "
                f"identical, journals replayed); {time.monotonic() - started:.1f} s in all"
            )
            result.ok = True
            return result
    finally:
        shutil.rmtree(temporary, ignore_errors=True)


async def _tell(cluster: LocalCluster, say: Say, seed: int, geo: GeoNet | None) -> DemoResult:
    topology = cluster.topology
    options = ClientOptions(timeout_s=2.0, attempts_max=20, region=topology.regions[0].name)
    async with (
        HongbaoClient.via_routers(topology, options) as client,
        AdminPool.for_topology(topology) as pool,
    ):
        story = Story(cluster, client, pool, say, seed)
        if geo is not None:
            from hongbao.demo.geo_story import GeoStory

            story = GeoStory(cluster, client, pool, say, seed, geo=geo, options=options)
        try:
            result = await story.run()
        except (HongbaoError, ClusterOpsError, DrainRefused) as error:
            raise RuntimeError(str(error)) from error
        await _live_audit(cluster, say)
        return result


async def _live_audit(cluster: LocalCluster, say: Say) -> None:
    """``hongbao audit`` on the running cluster: every outbox drained, conservation exact."""
    report = await live_audit(cluster.topology, timeout_s=LIVE_AUDIT_TIMEOUT_S)
    if not report.ok:
        problems = "; ".join([*report.problems, *report.unreachable]) or "no verdict"
        raise RuntimeError(f"the live audit (hongbao audit) failed: {problems}")
    say(
        f"[green]hongbao audit passed[/green] on the running cluster: over "
        f"{report.shard_count} shards, balances {fen(report.total('balances_fen'))} + escrow "
        f"{fen(report.total('escrow_fen'))} + in flight {fen(report.total('outbox_fen'))} == "
        f"deposits {fen(report.total('deposits_fen'))} - withdrawals "
        f"{fen(report.total('withdrawals_fen'))} yuan, no negative balance"
    )
