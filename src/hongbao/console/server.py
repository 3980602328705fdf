"""The web console's server: the page, the live view, and the region actions.

Rules of this module: one collector task takes a view every ``interval_s``
(:func:`hongbao.observe.collect.collect_view`) and every page gets it from there (the
cluster is asked once per interval however many pages are open). ``/api/view`` is the
latest view as JSON, ``/api/events`` streams each new one (server-sent events) with the
actions' outcomes. Actions call the same :mod:`hongbao.ops` functions as ``hongbao
region ...`` and ``cluster balance``; each runs as a task, at most one at a time (two
drains racing each other help nobody), and its result or error is kept (the last
``ACTIONS_KEPT``) and shown. It binds 127.0.0.1 unless told otherwise: the actions are
unauthenticated, so who can reach the port can drain a city.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

from aiohttp import web

from hongbao.config.topology import META_GROUP_ID, Topology
from hongbao.observe.collect import collect_view
from hongbao.observe.scrape import Scraper
from hongbao.observe.view import ClusterView
from hongbao.ops.admin_pool import AdminPool
from hongbao.ops.balance import move_leaders_home
from hongbao.ops.drain import drain_region, undrain_region
from hongbao.ops.regions import start_region, stop_region
from hongbao.ops.status import wait_for_leaders

STATIC_DIR = Path(__file__).parent / "static"
ACTIONS_KEPT = 20
EVENT_STREAMS_MAX = 32  # open pages at once; more are refused with 503
DRAIN_DEADLINE_S_DEFAULT = 120.0
DRAIN_DEADLINE_S_MAX = 3600.0
BALANCE_TIMEOUT_S = 30.0
START_TIMEOUT_S = 120.0
REGION_ACTIONS = ("drain", "undrain", "stop", "start")


@dataclass(slots=True)
class Action:
    action_id: int
    kind: str  # drain, undrain, stop, start, rebalance
    region: str | None
    state: str = "running"  # running, done, failed
    message: str = ""
    started_ms: int = field(default_factory=lambda: int(time.time() * 1000))
    elapsed_s: float = 0.0


@dataclass(slots=True)
class ConsoleSettings:
    topology: Topology
    config_path: Path
    data_dir: Path
    interval_s: float = 1.0
    no_fsync: bool = False  # for ``region start``: the nodes it starts


class Console:
    """The aiohttp application and the collector behind it."""

    def __init__(self, settings: ConsoleSettings) -> None:
        self.settings = settings
        self.view: ClusterView | None = None
        self.view_error = ""
        self.actions: deque[Action] = deque(maxlen=ACTIONS_KEPT)
        self._ids = itertools.count(1)
        self._changed = asyncio.Event()
        self._streams = 0
        self._running: asyncio.Task[None] | None = None
        self._collector: asyncio.Task[None] | None = None
        self._pool = AdminPool.for_topology(settings.topology)
        self._scraper = Scraper()
        self._runner: web.AppRunner | None = None
        self.app = self._build_app()

    def _build_app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/", self._index)
        app.router.add_get("/api/view", self._api_view)
        app.router.add_get("/api/events", self._api_events)
        app.router.add_post("/api/regions/{region}/{action}", self._api_region_action)
        app.router.add_post("/api/rebalance", self._api_rebalance)
        app.router.add_static("/static/", STATIC_DIR, follow_symlinks=False)
        return app

    # -- lifecycle ------------------------------------------------------------------------

    async def start(self, host: str, port: int) -> int:
        """Serve on host:port (0: any free port); returns the port."""
        self._collector = asyncio.create_task(self._collect_forever())
        self._runner = web.AppRunner(self.app, handle_signals=False)
        await self._runner.setup()
        site = web.TCPSite(self._runner, host, port)
        await site.start()
        server = site._server  # aiohttp exposes the bound sockets only here
        sockets = getattr(server, "sockets", None) or []
        return int(sockets[0].getsockname()[1]) if sockets else port

    async def close(self) -> None:
        for task in (self._collector, self._running):
            if task is not None and not task.done():
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        if self._runner is not None:
            await self._runner.cleanup()
        await self._scraper.close()
        await self._pool.close()

    async def _collect_forever(self) -> None:
        while True:
            started = time.monotonic()
            try:
                self.view = await collect_view(
                    self.settings.topology, self._pool, self._scraper, self.view
                )
                self.view_error = ""
            except Exception as error:
                self.view_error = f"{type(error).__name__}: {error}"
            self._publish()
            left_s = self.settings.interval_s - (time.monotonic() - started)
            await asyncio.sleep(max(0.05, left_s))

    def _publish(self) -> None:
        changed, self._changed = self._changed, asyncio.Event()
        changed.set()

    def payload(self) -> dict[str, object]:
        return {
            "view": None if self.view is None else self.view.to_json(),
            "view_error": self.view_error,
            "actions": [asdict(a) for a in reversed(self.actions)],
            "topology": {
                "regions": [r.name for r in self.settings.topology.regions],
                "meta_group": str(META_GROUP_ID),
            },
        }

    # -- pages and the view ---------------------------------------------------------------

    async def _index(self, request: web.Request) -> web.FileResponse:
        del request
        return web.FileResponse(STATIC_DIR / "index.html")

    async def _api_view(self, request: web.Request) -> web.Response:
        del request
        return web.json_response(self.payload())

    async def _api_events(self, request: web.Request) -> web.StreamResponse:
        if self._streams >= EVENT_STREAMS_MAX:
            raise web.HTTPServiceUnavailable(text="too many open consoles")
        self._streams += 1
        try:
            response = web.StreamResponse(headers={
                "Content-Type": "text/event-stream", "Cache-Control": "no-cache",
            })  # fmt: skip
            await response.prepare(request)
            while True:
                data = json.dumps(self.payload(), separators=(",", ":"))
                await response.write(f"data: {data}\n\n".encode())
                await self._changed.wait()
        except (ConnectionResetError, asyncio.CancelledError):
            return response
        finally:
            self._streams -= 1

    # -- actions --------------------------------------------------------------------------

    async def _api_region_action(self, request: web.Request) -> web.Response:
        region = request.match_info["region"]
        kind = request.match_info["action"]
        names = [r.name for r in self.settings.topology.regions]
        if kind not in REGION_ACTIONS:
            raise web.HTTPNotFound(text=f"no action {kind!r} (actions: {REGION_ACTIONS})")
        if region not in names:
            return _refused(f"unknown region {region!r} (regions: {', '.join(names)})", 404)
        body = await _json_body(request)
        if kind == "drain":
            deadline_s = body.get("deadline_s", DRAIN_DEADLINE_S_DEFAULT)
            if (
                not isinstance(deadline_s, int | float)
                or not 0.1 <= deadline_s <= DRAIN_DEADLINE_S_MAX
            ):
                return _refused(
                    f"deadline_s must be a number in [0.1, {DRAIN_DEADLINE_S_MAX}]", 400
                )
            return self._launch(kind, region, lambda: self._drain(region, float(deadline_s)))
        work = {"undrain": self._undrain, "stop": self._stop, "start": self._start}[kind]
        return self._launch(kind, region, lambda: work(region))

    async def _api_rebalance(self, request: web.Request) -> web.Response:
        del request
        return self._launch("rebalance", None, self._rebalance)

    def _launch(
        self, kind: str, region: str | None, work: Callable[[], Awaitable[str]]
    ) -> web.Response:
        if self._running is not None and not self._running.done():
            busy = next((a for a in self.actions if a.state == "running"), None)
            what = "another action" if busy is None else f"{busy.kind} {busy.region or ''}"
            return _refused(f"{what.strip()} is still running; wait for it to finish", 409)
        action = Action(next(self._ids), kind, region)
        self.actions.append(action)
        self._running = asyncio.create_task(self._run(action, work))
        self._publish()
        return web.json_response({"action": asdict(action)}, status=202)

    async def _run(self, action: Action, work: Callable[[], Awaitable[str]]) -> None:
        started = time.monotonic()
        try:
            action.message = await work()
            action.state = "done"
        except asyncio.CancelledError:
            action.state, action.message = "failed", "cancelled: the console stopped"
            raise
        except Exception as error:
            action.state, action.message = "failed", f"{type(error).__name__}: {error}"
        finally:
            action.elapsed_s = round(time.monotonic() - started, 3)
            self._publish()

    async def _drain(self, region: str, deadline_s: float) -> str:
        report = await drain_region(self._pool, region, deadline_s=deadline_s)
        moved = len(report.evacuation.moved)
        if report.done:
            return f"{region} {report.final_state}: {moved} leaderships moved in " \
                   f"{report.elapsed_s:.2f} s"  # fmt: skip
        stuck = "; ".join(s.describe() for s in report.evacuation.stuck)
        raise RuntimeError(f"deadline passed after {report.elapsed_s:.1f} s; {region} stays "
                           f"draining; still led there: {stuck}")  # fmt: skip

    async def _undrain(self, region: str) -> str:
        state = await undrain_region(self._pool, region)
        return f"{region} is active (cluster state version {state.version}); " \
               "rebalance brings its leaders home"  # fmt: skip

    async def _stop(self, region: str) -> str:
        settings = self.settings
        result = await asyncio.to_thread(stop_region, settings.data_dir, settings.topology, region)
        nodes, routers = result.nodes, result.routers
        text = f"{region}: nodes {nodes.stopped + nodes.killed} and routers " \
               f"{routers.stopped + routers.killed} stopped"  # fmt: skip
        if nodes.not_running or routers.not_running:
            text += f"; not running (not started by `cluster up` in {settings.data_dir}?): " \
                    f"nodes {nodes.not_running}, routers {routers.not_running}"  # fmt: skip
        return text

    async def _start(self, region: str) -> str:
        s = self.settings
        result = await asyncio.to_thread(
            start_region, s.config_path, s.data_dir, region, no_fsync=s.no_fsync,
            timeout_s=START_TIMEOUT_S,
        )  # fmt: skip
        text = (
            f"{region}: nodes {result.started_nodes} caught up in {result.catch_up_s:.2f} s; "
            f"routers {result.started_routers} started; moved home: {result.moved_home}"
        )
        return text + (f"; warning: {result.balance_warning}" if result.balance_warning else "")

    async def _rebalance(self) -> str:
        await wait_for_leaders(self._pool, BALANCE_TIMEOUT_S)
        moved = await move_leaders_home(self._pool, BALANCE_TIMEOUT_S)
        names = ["meta" if g == META_GROUP_ID else str(g) for g in moved]
        return f"moved {', '.join(names)} home" if names else "every shard is led from home"


def _refused(text: str, status: int) -> web.Response:
    return web.json_response({"error": text}, status=status)


async def _json_body(request: web.Request) -> dict[str, object]:
    if not request.can_read_body:
        return {}
    try:
        body = await request.json()
    except (json.JSONDecodeError, UnicodeDecodeError):
        return {}
    return body if isinstance(body, dict) else {}
