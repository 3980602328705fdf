"""``hongbao chaos run``: one suite against a real cluster whose every link is proxied.

The order of a run, and why:
1. a copy of the suite's topology with fresh ports, a Toxiproxy (real or embedded), a
   proxy per link (``chaos.net``) and dial maps so each process dials its own proxies;
2. the nodes and routers start, leaders are elected, the wallets are funded;
3. the workload's clock starts; the faults run on their schedule beside it;
4. when the workload ends, every fault still on is healed, then the cluster is given
   time to go quiet (cross-shard credits delivered, replicas caught up);
5. the final state is read, the cluster stopped, every replica audited offline;
6. the checks judge history + final state, and the reports are written.

Every fault is undone on every exit path (operations-asks 14): the schedule's heals,
then ``heal_everything`` in a ``finally``, which Ctrl-C and SIGTERM also reach (both
cancel the run's task). A run in progress is listed under :func:`active_dir` so that
``hongbao chaos stop`` can heal it from another shell.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import platform
import random
import shlex
import shutil
import signal
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Final

from hongbao import __version__
from hongbao.chaos.checks import correctness_checks
from hongbao.chaos.collect import collect_final_state
from hongbao.chaos.faults import Fault, FaultContext, build_fault, heal_everything
from hongbao.chaos.history import HistoryWriter, read_history
from hongbao.chaos.metrics import analyse, availability_check
from hongbao.chaos.net import ChaosNet
from hongbao.chaos.report import verdict, write_reports
from hongbao.chaos.run_info import FaultRecord, RunInfo
from hongbao.chaos.suite import Suite, load_suite
from hongbao.chaos.toxiproxy import open_toxiproxy, resolve_toxiproxy
from hongbao.chaos.verdict import CheckResult
from hongbao.chaos.workload import ChaosWorkload
from hongbao.config.topology import Topology, load_topology
from hongbao.ops.admin_pool import AdminPool
from hongbao.ops.audit import audit_cluster
from hongbao.ops.local import LocalCluster, topology_ports, write_topology
from hongbao.ops.status import wait_for_leaders, wait_for_quiet

log = logging.getLogger(__name__)

LEADERS_TIMEOUT_S: Final = 30.0
# Test-only switches (hongbao.node.bugs): which process kind each is passed to.
NODE_BUGS: Final = frozenset({"ack-before-commit", "double-credit-grab"})
ROUTER_BUGS: Final = frozenset({"retry-fresh-id"})
SEED_MAX: Final = 2**31 - 1

Say = Callable[[str], None]


@dataclass(slots=True)
class RunOptions:
    suite_path: Path
    report_dir: Path | None = None  # default: chaos-reports/<suite>-<seed>-<utc time>
    seed: int | None = None  # default: drawn from the OS
    toxiproxy: str = "auto"  # auto | embedded | URL
    bugs: tuple[str, ...] = ()  # test-only switches, see NODE_BUGS and ROUTER_BUGS
    duration_s: float | None = None  # overrides the suite's (short runs in tests)
    no_fsync: bool = False  # tests only
    keep_data: bool = False  # keep the cluster's LMDB files in the report directory


@dataclass(slots=True)
class RunOutcome:
    passed: bool
    report_dir: Path
    checks: list[CheckResult] = field(default_factory=list)
    interrupted: bool = False


def repository_root() -> Path:
    """The checkout this package runs from (``chaos/`` and ``configs/`` live there)."""
    return Path(__file__).resolve().parents[3]


def active_dir() -> Path:
    """Where running chaos runs list themselves for ``hongbao chaos stop``."""
    return Path(tempfile.gettempdir()) / f"hongbao-chaos-{os.getuid()}"


def rerun_line(suite: Suite, seed: int, options: RunOptions) -> str:
    parts = ["hongbao", "chaos", "run", suite.path, "--seed", str(seed)]
    if options.toxiproxy != "auto":
        parts += ["--toxiproxy", options.toxiproxy]
    if options.duration_s is not None:
        parts += ["--duration-s", f"{options.duration_s:g}"]
    return shlex.join(parts)


async def run_suite(options: RunOptions, say: Say = print) -> RunOutcome:
    suite = load_suite(options.suite_path)
    unknown = set(options.bugs) - NODE_BUGS - ROUTER_BUGS
    if unknown:
        raise ValueError(f"unknown --bug {sorted(unknown)[0]!r}")
    seed = options.seed if options.seed is not None else random.SystemRandom().randint(1, SEED_MAX)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    report_dir = options.report_dir or Path("chaos-reports") / f"{suite.name}-{seed}-{stamp}"
    if report_dir.is_dir() and any(report_dir.iterdir()):
        # An old history would be read as part of this run, and an old cluster directory
        # would start this run's nodes on another run's data: never mix two runs.
        raise ValueError(f"report directory {report_dir} is not empty: give a new or empty one")
    report_dir.mkdir(parents=True, exist_ok=True)
    template = _config_path(suite)
    config_path = write_topology(report_dir / "topology.toml", template=template)
    topology = load_topology(config_path)
    duration_s = options.duration_s if options.duration_s is not None else suite.duration_s
    zero = time.monotonic()

    def clock() -> float:
        return time.monotonic() - zero

    info = RunInfo(
        suite=suite.name,
        suite_path=suite.path,
        seed=seed,
        config=str(config_path),
        template=str(template),
        rerun=rerun_line(suite, seed, options),
        versions=_versions(),
        toxiproxy=options.toxiproxy,
        started_at=datetime.now(UTC).isoformat(timespec="seconds"),
        workload_start_s=0.0,
        bugs=list(options.bugs),
        faults=[
            FaultRecord(index=i, kind=spec.kind, params=dict(spec.params), planned_at_s=spec.at_s)
            for i, spec in enumerate(suite.faults)
        ],
        suite_expect={k: v for k, v in asdict(suite.expect).items() if v is not None},
    )
    say(f"chaos run {suite.name}: seed {seed}, {duration_s:g} s, report in {report_dir}")
    say(f"rerun: {info.rerun}")
    run = _Run(suite, options, topology, config_path, report_dir, info, clock, say, duration_s)
    task = asyncio.current_task()
    loop = asyncio.get_running_loop()
    if task is not None:
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(signal.SIGTERM, task.cancel)
    try:
        return await run.execute(seed)
    finally:
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.remove_signal_handler(signal.SIGTERM)


class _Run:
    """One run's moving parts, so that every exit path can undo what was started."""

    def __init__(
        self,
        suite: Suite,
        options: RunOptions,
        topology: Topology,
        config_path: Path,
        report_dir: Path,
        info: RunInfo,
        clock: Callable[[], float],
        say: Say,
        duration_s: float,
    ) -> None:
        self.suite = suite
        self.options = options
        self.topology = topology
        self.config_path = config_path
        self.report_dir = report_dir
        self.info = info
        self.clock = clock
        self.say = say
        self.duration_s = duration_s
        self.data_dir = report_dir / "cluster"
        self.faults: list[Fault] = [build_fault(spec) for spec in suite.faults]
        self.active_file = active_dir() / f"{os.getpid()}.json"
        self.cluster_stopped = False

    async def execute(self, seed: int) -> RunOutcome:
        choice = resolve_toxiproxy(self.options.toxiproxy)
        with open_toxiproxy(choice, seed=seed, avoid=topology_ports(self.topology)) as endpoint:
            self.info.toxiproxy = endpoint.url if choice.kind == "url" else choice.kind
            net = ChaosNet(self.topology, endpoint.host, endpoint.port)
            cluster = LocalCluster(self.config_path, self.data_dir, no_fsync=self.options.no_fsync)
            admin = AdminPool.for_topology(self.topology)
            ctx = FaultContext(
                topology=self.topology, cluster=cluster, net=net, admin=admin,
                rng=random.Random(seed), say=self.say,
            )  # fmt: skip
            try:
                await asyncio.to_thread(net.create)
                self._wire(net, cluster)
                self._list_active(endpoint.url, cluster)
                return await self._run(ctx, cluster, admin, seed)
            except asyncio.CancelledError:
                self.info.interrupted = True
                self.say("interrupted: healing every fault and stopping the cluster")
                raise
            finally:
                await self._undo(ctx, cluster, net, admin)

    def _wire(self, net: ChaosNet, cluster: LocalCluster) -> None:
        node_maps, router_maps = net.write_dial_maps(self.report_dir / "dial")
        node_bugs = [a for b in self.options.bugs if b in NODE_BUGS for a in ("--bug", b)]
        router_bugs = [a for b in self.options.bugs if b in ROUTER_BUGS for a in ("--bug", b)]
        for node_id, path in node_maps.items():
            cluster.args_of_node[node_id] = ["--dial-map", str(path), *node_bugs]
        for router_id, path in router_maps.items():
            cluster.args_of_router[router_id] = ["--dial-map", str(path), *router_bugs]

    async def _run(
        self, ctx: FaultContext, cluster: LocalCluster, admin: AdminPool, seed: int
    ) -> RunOutcome:
        info, say = self.info, self.say
        await asyncio.to_thread(cluster.start)
        await asyncio.to_thread(cluster.start_routers)
        await wait_for_leaders(admin, LEADERS_TIMEOUT_S, include_meta=True)
        say(f"cluster up: {len(cluster.node_ids)} nodes, {len(cluster.router_ids)} routers, "
            f"{len(ctx.net.links)} proxied links")  # fmt: skip
        history = HistoryWriter(self.report_dir)
        workload = ChaosWorkload(
            self.topology, self.suite.workload, history, seed=seed, clock=self.clock
        )
        try:
            await workload.prepare()
            info.workload_start_s = self.clock()
            end_s = info.workload_start_s + self.duration_s
            say(f"workload: {len(workload.users)} wallets funded; running until "
                f"{self.duration_s:g} s with {len(self.faults)} faults scheduled")  # fmt: skip
            schedule = asyncio.create_task(self._schedule(ctx, info.workload_start_s, end_s))
            try:
                await workload.run(end_s)
            finally:
                info.workload_end_s = self.clock()
                schedule.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await schedule
            await self._heal_remaining(ctx)
            info.heal_all_s = self.clock()
            quiet = await wait_for_quiet(admin, timeout_s=self.suite.quiet_timeout_s)
            info.quiet_s = self.clock() if quiet else None
            say("quiet: every replica caught up" if quiet else
                f"not quiet after {self.suite.quiet_timeout_s:g} s; collecting anyway")  # fmt: skip
        finally:
            history.close()
            await workload.close()
        ops = read_history(self.report_dir)
        final = await collect_final_state(self.topology, ops, clock=self.clock, quiet=quiet)
        # The collector's request-status lookups are writes (fences): let every replica
        # apply them before the stop, so that the offline audit compares equals.
        if not await wait_for_quiet(admin, timeout_s=self.suite.quiet_timeout_s):
            final.notes.append("not quiet after the collection: replicas may lag at the stop")
        await asyncio.to_thread(cluster.stop_together)
        self.cluster_stopped = True
        audit = await asyncio.to_thread(audit_cluster, self.data_dir, self.topology)
        final.replicas_ok = audit.ok
        final.replicas_report = audit.describe()
        final.save(self.report_dir)
        info.save(self.report_dir)
        checks = analyse_run(self.report_dir)
        passed = "PASS" if verdict(checks) else "FAIL"
        say(f"verdict: {passed}; report {self.report_dir}/report.html")
        return RunOutcome(verdict(checks), self.report_dir, checks)

    async def _schedule(self, ctx: FaultContext, start_s: float, end_s: float) -> None:
        """Each fault injected at its time and healed at its time, concurrently."""
        await asyncio.gather(
            *(self._one_fault(ctx, i, fault, start_s, end_s) for i, fault in enumerate(self.faults))
        )

    async def _one_fault(
        self, ctx: FaultContext, index: int, fault: Fault, start_s: float, end_s: float
    ) -> None:
        record = self.info.faults[index]
        await _sleep_until(self.clock, start_s + fault.spec.at_s)
        record.injected_s = self.clock()
        try:
            record.targets = await fault.inject(ctx)
        except Exception as error:  # a fault that cannot be injected is reported, not fatal
            record.error = f"inject: {error}"
            log.exception("fault %d (%s) could not be injected", index, fault.spec.kind)
        self.say(f"{record.injected_s:7.1f} s  inject {fault.spec.kind} {_describe(record)}")
        heal_at_s = fault.spec.heal_at_s
        if heal_at_s is None:
            return
        await _sleep_until(self.clock, min(start_s + heal_at_s, end_s))
        await self._heal(ctx, index, fault)

    async def _heal(self, ctx: FaultContext, index: int, fault: Fault) -> None:
        record = self.info.faults[index]
        if record.injected_s is None or record.healed_s is not None:
            return
        try:
            await fault.heal(ctx)
        except Exception as error:
            record.error = (record.error + "; " if record.error else "") + f"heal: {error}"
            log.exception("fault %d (%s) could not be healed", index, fault.spec.kind)
        record.healed_s = self.clock()
        self.say(f"{record.healed_s:7.1f} s  heal   {fault.spec.kind}")

    async def _heal_remaining(self, ctx: FaultContext) -> None:
        for index in reversed(range(len(self.faults))):
            await self._heal(ctx, index, self.faults[index])
        await heal_everything(ctx)

    async def _undo(
        self, ctx: FaultContext, cluster: LocalCluster, net: ChaosNet, admin: AdminPool
    ) -> None:
        """Whatever happened: heal, stop every process, delete the proxies, unlist."""
        if not self.cluster_stopped:  # after a clean stop there is nothing left to heal
            with contextlib.suppress(Exception):
                await asyncio.shield(heal_everything(ctx))
        await asyncio.to_thread(cluster.close)
        with contextlib.suppress(Exception):
            await asyncio.to_thread(net.destroy)
        with contextlib.suppress(Exception):
            await admin.close()
        self.active_file.unlink(missing_ok=True)
        if self.info.interrupted:
            self.info.save(self.report_dir)
        _keep_logs(self.data_dir, self.report_dir / "logs")
        if not self.options.keep_data and self.data_dir.exists():
            _remove_tree(self.data_dir)

    def _list_active(self, toxiproxy_url: str, cluster: LocalCluster) -> None:
        self.active_file.parent.mkdir(parents=True, exist_ok=True)
        self.active_file.write_text(
            json.dumps(
                {
                    "runner_pid": os.getpid(),
                    "suite": self.suite.name,
                    "report_dir": str(self.report_dir.resolve()),
                    "toxiproxy": toxiproxy_url,
                    "data_dir": str(self.data_dir.resolve()),
                }
            )
        )


def analyse_run(report_dir: Path, *, write: bool = True) -> list[CheckResult]:
    """Judge a stored run (history, final state, run info) and write its reports.

    Used by the runner at the end of a run and by ``hongbao chaos check``, so that a
    re-analysis takes exactly the same path to its verdict.
    """
    from hongbao.chaos.final_state import FinalState

    info = RunInfo.load(report_dir)
    ops = read_history(report_dir)
    final = FinalState.load(report_dir)
    metrics = analyse(ops, info)
    checks = [*correctness_checks(ops, final), availability_check(metrics, info.suite_expect)]
    if write:
        write_reports(report_dir, info, metrics, checks)
    return checks


def _config_path(suite: Suite) -> Path:
    """The suite's topology: relative to the working directory, else to the checkout."""
    relative = Path(suite.config)
    if relative.is_absolute() or relative.exists():
        return relative
    for root in (Path(suite.path).resolve().parent.parent, repository_root()):
        if (root / relative).exists():
            return root / relative
    raise FileNotFoundError(f"{suite.path}: config {suite.config} not found")


def _versions() -> dict[str, str]:
    import grpc

    return {
        "hongbao": __version__,
        "python": platform.python_version(),
        "grpcio": grpc.__version__,
        "platform": platform.platform(),
    }


def _describe(record: FaultRecord) -> str:
    if record.error:
        return f"FAILED: {record.error}"
    return ", ".join(f"{k}={v}" for k, v in record.targets.items()) or str(record.params)


async def _sleep_until(clock: Callable[[], float], at_s: float) -> None:
    delay_s = at_s - clock()
    if delay_s > 0:
        await asyncio.sleep(delay_s)  # a schedule, not a wait for a condition


def _keep_logs(data_dir: Path, logs_dir: Path) -> None:
    """Every node's and router's log moves into the report: what a failed check needs
    first, and small beside the LMDB files that go."""
    for log_file in sorted(data_dir.glob("*.log")) if data_dir.exists() else []:
        logs_dir.mkdir(parents=True, exist_ok=True)
        with contextlib.suppress(OSError):
            shutil.move(log_file, logs_dir / log_file.name)


def _remove_tree(path: Path) -> None:
    import shutil

    shutil.rmtree(path, ignore_errors=True)


def run_blocking(options: RunOptions, say: Say = print) -> RunOutcome:
    """``asyncio.run`` of :func:`run_suite`; Ctrl-C heals and re-raises KeyboardInterrupt."""
    return asyncio.run(run_suite(options, say))


def stop_active(say: Say = print) -> int:
    """``hongbao chaos stop``: heal every listed run's faults and ask its runner to stop.

    Returns how many runs were found. Healing here does not wait for the runner: the
    Toxiproxy is reset (every toxic removed, every proxy enabled) and every paused node
    continued, then the runner gets SIGTERM, on which it heals and stops its cluster.
    """
    found = 0
    directory = active_dir()
    for path in sorted(directory.glob("*.json")) if directory.exists() else []:
        try:
            entry = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        found += 1
        pid = int(entry.get("runner_pid", 0))
        _reset_toxiproxy(str(entry.get("toxiproxy", "")), say)
        _continue_paused(Path(str(entry.get("data_dir", ""))), say)
        if pid > 0 and _alive(pid):
            os.kill(pid, signal.SIGTERM)
            say(
                f"run {entry.get('suite')} (pid {pid}): asked to stop; "
                "it heals and stops its cluster"
            )
        else:
            path.unlink(missing_ok=True)
            say(f"run {entry.get('suite')} (pid {pid}) is gone; its entry was removed")
    return found


def _reset_toxiproxy(url: str, say: Say) -> None:
    import urllib.request

    if not url:
        return
    try:
        request = urllib.request.Request(url.rstrip("/") + "/reset", method="POST", data=b"")
        with urllib.request.urlopen(request, timeout=5) as answer:
            answer.read()
        say(f"toxiproxy {url}: reset (every toxic removed, every proxy enabled)")
    except OSError as error:
        say(f"toxiproxy {url}: could not reset: {error}")


def _continue_paused(data_dir: Path, say: Say) -> None:
    """SIGCONT every process whose command line names ``data_dir`` (paused nodes)."""
    if not str(data_dir) or not Path("/proc").exists():
        return
    needle = str(data_dir).encode()
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            if needle in (proc / "cmdline").read_bytes():
                os.kill(int(proc.name), signal.SIGCONT)
        except OSError:
            continue
    say(f"every node of {data_dir} continued (SIGCONT)")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except OSError:
        return False
    return True


def main_exit_code(outcome: RunOutcome) -> int:
    return 0 if outcome.passed else 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit("use: hongbao chaos run SUITE")
