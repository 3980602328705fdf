"""The demo's planned event: a city drained for maintenance under load, then brought back.

Rules of this module: it uses the operator's own functions (:func:`drain_region`,
:func:`undrain_region`, :func:`move_leaders_home` of :mod:`hongbao.ops`), exactly what
``hongbao region drain`` / ``undrain`` and ``cluster balance`` run. A steady load of
transfers goes through the routers from before the drain starts until the city leads
again, and every one of its requests is counted: the point is "0 failed requests",
printed from the count, never assumed. Progress is a few lines, not a log.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from hongbao.client.sdk import HongbaoClient
from hongbao.config.topology import Topology
from hongbao.demo.steady import LoadCount, SteadyLoad
from hongbao.ops.admin_pool import AdminPool
from hongbao.ops.balance import move_leaders_home
from hongbao.ops.drain import DrainReport, drain_region, undrain_region
from hongbao.ops.status import cluster_status, group_name
from hongbao.ops.transfer import TransferEvent

DRAIN_DEADLINE_S = 20.0
BALANCE_TIMEOUT_S = 20.0
LOAD_USERS = 8

Say = Callable[[str], None]


@dataclass(slots=True)
class MaintenanceResult:
    drain: DrainReport
    load: LoadCount
    moved_home: list[int]
    deposited_fen: int
    users: list[str]


async def drain_and_return(
    client: HongbaoClient, pool: AdminPool, city: str, say: Say
) -> MaintenanceResult:
    """Drain ``city`` under a steady load, undrain it, lead its shards from it again."""
    topology = client.topology
    led_before = _led_in(await _leaders(client), topology, city)
    users = [f"steady-{i}" for i in range(LOAD_USERS)]
    load = SteadyLoad(client, users)
    deposited = await load.fund()
    events: list[TransferEvent] = []
    async with load:
        say(f"maintenance in {city}: draining it while {load.workers} clients keep sending "
            f"transfers through the routers (it leads shards {_listing(led_before)})")  # fmt: skip
        report = await drain_region(
            pool, city, deadline_s=DRAIN_DEADLINE_S, on_event=events.append
        )
        if not report.done:
            stuck = "; ".join(s.describe() for s in report.evacuation.stuck)
            raise RuntimeError(f"the drain of {city} did not finish: {stuck}")
        moved = [e for e in events if e.kind == "moved"]
        seen = report.propagation
        if seen is not None:
            say(f"  marked draining first: {len(seen.following)} nodes and routers saw it "
                f"within {seen.elapsed_s * 1000:.0f} ms, so no new work goes there")  # fmt: skip
        say(f"  then its leaders moved out, {report.final_state} in {report.elapsed_s:.2f} s: "
            + ", ".join(f"{group_name(e.group_id)} -> {topology.region_of(int(e.target or 0))}"
                        f" ({e.seconds * 1000:.0f} ms)" for e in moved)
            + (f"; {len(events) - len(moved)} transfer attempts retried"
               if len(events) > len(moved) else ""))  # fmt: skip
        await undrain_region(pool, city)
        home = await move_leaders_home(pool, BALANCE_TIMEOUT_S)
        count = await load.stop()
    failed = ", ".join(f"{r} {n}" for r, n in sorted(count.failed_by_reason.items()))
    shards = sorted(g for g in home if g < topology.shard_count)  # not the meta group
    say(f"  {city} active again, shards {_listing(shards)} led from it again; the steady "
        f"load: {count.acknowledged} requests in {count.elapsed_s:.1f} s, "
        f"{count.failed} failed requests"
        + (f" ({failed})" if failed else ""))  # fmt: skip
    return MaintenanceResult(report, count, home, deposited, users)


async def _leaders(client: HongbaoClient) -> dict[int, int]:
    return (await cluster_status(client)).leaders()


def _led_in(leaders: dict[int, int], topology: Topology, city: str) -> list[int]:
    return sorted(s for s, n in leaders.items() if topology.region_of(n) == city)


def _listing(items: list[int]) -> str:
    return ",".join(map(str, items)) or "none"
