"""Detached node and router processes: pid files, spawning, stopping.

Rules of this module: ``hongbao cluster up`` must leave its processes running after the
CLI exits, so unlike :class:`~hongbao.ops.local.LocalCluster` (which keeps its children
and ends them with itself) they are spawned detached, in their own session, with a pid
file, a log and a ready file per process in the data directory (``node-<id>.pid``,
``router-<id>.pid``, ...). A pid file is trusted only while the process it names is
alive *and* is the process it claims to be (its command line names it), so a recycled
pid is never signalled. Every wait has a deadline; nothing sleeps and hopes.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import signal
import socket
import sys
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from hongbao.config.topology import Topology, load_topology
from hongbao.ops.local import insecure_args, wait_until

READY_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 15.0
POLL_S = 0.02
LOOPBACK = "127.0.0.1"

Kind = Literal["node", "router"]
KINDS: tuple[Kind, ...] = ("node", "router")


class ClusterOpsError(RuntimeError):
    """A cluster operation was refused or failed; the message says why, for an operator."""


@dataclass(frozen=True, slots=True)
class ManagedProcess:
    """What a pid file records about one detached node or router."""

    node_id: int  # the node's or the router's id (``kind`` says which)
    pid: int
    config_path: str
    data_dir: str
    started_at_ms: int
    kind: Kind = "node"

    @property
    def label(self) -> str:
        return f"{self.kind} {self.node_id}"


NodeProcess = ManagedProcess  # the name callers of the node-only version used


def pid_path(data_dir: Path, node_id: int, kind: Kind = "node") -> Path:
    return data_dir / f"{kind}-{node_id}.pid"


def log_path(data_dir: Path, node_id: int, kind: Kind = "node") -> Path:
    return data_dir / f"{kind}-{node_id}.log"


def ready_path(data_dir: Path, node_id: int, kind: Kind = "node") -> Path:
    return data_dir / f"{kind}-{node_id}.ready"


def read_pid_file(data_dir: Path, node_id: int, kind: Kind = "node") -> ManagedProcess | None:
    path = pid_path(data_dir, node_id, kind)
    try:
        data = json.loads(path.read_text())
        return ManagedProcess(
            node_id=int(data["node_id"]),
            pid=int(data["pid"]),
            config_path=str(data["config_path"]),
            data_dir=str(data["data_dir"]),
            started_at_ms=int(data["started_at_ms"]),
            kind=kind,
        )
    except FileNotFoundError:
        return None
    except (ValueError, KeyError, TypeError) as error:
        raise ClusterOpsError(f"{path}: unreadable pid file ({error}); remove it") from error


def _write_pid_file(data_dir: Path, process: ManagedProcess) -> None:
    path = pid_path(data_dir, process.node_id, process.kind)
    temporary = path.with_suffix(".pid.tmp")
    record = {
        "node_id": process.node_id,
        "pid": process.pid,
        "config_path": process.config_path,
        "data_dir": process.data_dir,
        "started_at_ms": process.started_at_ms,
    }
    temporary.write_text(json.dumps(record) + "\n")
    temporary.replace(path)


def ids_in(data_dir: Path, kind: Kind) -> list[int]:
    """The ids that have a pid file of ``kind`` in ``data_dir``."""
    ids: list[int] = []
    for path in data_dir.glob(f"{kind}-*.pid"):
        suffix = path.name.removeprefix(f"{kind}-").removesuffix(".pid")
        if suffix.isdigit():
            ids.append(int(suffix))
    return sorted(ids)


def _reap(pid: int) -> None:
    """Collect ``pid`` if it is our own exited child (a test that ran ``up`` in-process)."""
    with contextlib.suppress(ChildProcessError, OSError):
        os.waitpid(pid, os.WNOHANG)


def pid_alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie does not count: it has exited, only unreaped)."""
    _reap(pid)
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    stat = Path(f"/proc/{pid}/stat")
    try:
        fields = stat.read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return True  # no /proc (not Linux): kill(0) said it exists
    return fields[0] not in ("Z", "X")


def _is_ours(process: ManagedProcess) -> bool:
    """The pid still names this process (not a recycled pid): check its command line."""
    if not pid_alive(process.pid):
        return False
    try:
        argv = Path(f"/proc/{process.pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return True  # no /proc: trust the pid file
    words = [a.decode(errors="replace") for a in argv]
    if "run" not in words or process.kind not in words:
        return False
    if process.kind == "router":
        ready = str(ready_path(Path(process.data_dir), process.node_id, "router"))
        return (
            _option(words, "--router-id") == str(process.node_id)
            and _option(words, "--ready-file") == ready
        )
    return (
        _option(words, "--node") == str(process.node_id)
        and _option(words, "--data-dir") == process.data_dir
    )


def _option(words: list[str], name: str) -> str | None:
    if name in words and words.index(name) + 1 < len(words):
        return words[words.index(name) + 1]
    return None


def running_process(data_dir: Path, node_id: int, kind: Kind = "node") -> ManagedProcess | None:
    """The detached process if it is running, else None (a stale pid file is removed)."""
    process = read_pid_file(data_dir, node_id, kind)
    if process is None:
        return None
    if _is_ours(process):
        return process
    pid_path(data_dir, node_id, kind).unlink(missing_ok=True)
    return None


def running_node(data_dir: Path, node_id: int) -> ManagedProcess | None:
    return running_process(data_dir, node_id, "node")


def port_in_use(host: str, port: int) -> bool:
    """Whether something listens on (host, port): a bind without SO_REUSEPORT fails."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as error:
            if error.errno in (errno.EADDRINUSE, errno.EACCES):
                return True
            raise
    return False


def check_can_start(
    topology: Topology,
    data_dir: Path,
    node_ids: Iterable[int],
    router_ids: Iterable[int] = (),
) -> None:
    """Refuse, with every reason at once, when a process already runs or a port is taken."""
    problems: list[str] = []
    listeners: list[tuple[Kind, int, str, int]] = [
        ("node", n, topology.node(n).host, topology.node(n).port) for n in node_ids
    ]
    for router_id in router_ids:
        spec = topology.router_spec(router_id)
        listeners.append(("router", router_id, spec.host, spec.port))
    for kind, ident, host, port in listeners:
        if host != LOOPBACK:
            problems.append(f"{kind} {ident} would listen on {host}; only {LOOPBACK}")
            continue
        running = running_process(data_dir, ident, kind)
        if running is not None:
            problems.append(f"{kind} {ident} is already running (pid {running.pid})")
        elif port_in_use(host, port):
            problems.append(f"{kind} {ident}: port {host}:{port} is already in use")
    if problems:
        raise ClusterOpsError("; ".join(problems))


def _spawn(argv: list[str], data_dir: Path, ident: int, kind: Kind, config: Path) -> ManagedProcess:
    log = str(log_path(data_dir, ident, kind))
    file_actions = [
        (os.POSIX_SPAWN_OPEN, 0, os.devnull, os.O_RDONLY, 0),
        (os.POSIX_SPAWN_OPEN, 1, log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644),
        (os.POSIX_SPAWN_DUP2, 1, 2),
    ]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    # posix_spawn, not Popen: no Popen object to outlive (or warn about) a detached child.
    pid = os.posix_spawn(sys.executable, argv, env, file_actions=file_actions, setsid=True)
    process = ManagedProcess(
        node_id=ident,
        pid=pid,
        config_path=str(config),
        data_dir=str(data_dir),
        started_at_ms=int(time.time() * 1000),
        kind=kind,
    )
    _write_pid_file(data_dir, process)
    return process


def spawn_node(
    config_path: Path, data_dir: Path, node_id: int, *, no_fsync: bool = False
) -> ManagedProcess:
    """Start ``hongbao node run`` detached (own session, log file, no terminal)."""
    config_path = config_path.resolve()
    data_dir = data_dir.resolve()
    ready_path(data_dir, node_id).unlink(missing_ok=True)
    argv = [
        sys.executable, "-m", "hongbao.cli", "node", "run",
        "--config", str(config_path),
        "--node", str(node_id),
        "--data-dir", str(data_dir),
        "--ready-file", str(ready_path(data_dir, node_id)),
        *(["--no-fsync"] if no_fsync else []),
        *insecure_args(load_topology(config_path)),
    ]  # fmt: skip
    return _spawn(argv, data_dir, node_id, "node", config_path)


def spawn_router(config_path: Path, data_dir: Path, router_id: int) -> ManagedProcess:
    """Start ``hongbao router run`` detached, like a node (its files sit in the data dir)."""
    config_path = config_path.resolve()
    data_dir = data_dir.resolve()
    topology = load_topology(config_path)
    spec = topology.router_spec(router_id)
    ready = ready_path(data_dir, router_id, "router")
    ready.unlink(missing_ok=True)
    argv = [
        sys.executable, "-m", "hongbao.cli", "router", "run",
        "--config", str(config_path),
        "--region", spec.region,
        "--router-id", str(router_id),
        "--ready-file", str(ready),
        *insecure_args(topology),
    ]  # fmt: skip
    return _spawn(argv, data_dir, router_id, "router", config_path)


def log_tail(data_dir: Path, node_id: int, lines: int = 20, kind: Kind = "node") -> str:
    path = log_path(data_dir, node_id, kind)
    if not path.exists():
        return "(no log)"
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])


def wait_ready(data_dir: Path, process: ManagedProcess, timeout_s: float = READY_TIMEOUT_S) -> None:
    """Wait for the process's ready file; raise with its log's tail if it died or hung."""
    ready = ready_path(data_dir, process.node_id, process.kind)

    def tail() -> str:
        return log_tail(data_dir, process.node_id, kind=process.kind)

    try:
        wait_until(
            lambda: ready.exists() or not pid_alive(process.pid),
            timeout_s,
            f"{process.label} to start",
        )
    except TimeoutError as error:
        raise ClusterOpsError(f"{error}:\n{tail()}") from None
    if not ready.exists():
        raise ClusterOpsError(f"{process.label} exited at start:\n{tail()}")


@dataclass(frozen=True, slots=True)
class StopResult:
    stopped: list[int]
    killed: list[int]
    not_running: list[int]


def stop_processes(
    data_dir: Path,
    ids: Iterable[int],
    *,
    kind: Kind = "node",
    timeout_s: float = STOP_TIMEOUT_S,
    sig: signal.Signals = signal.SIGTERM,
) -> StopResult:
    """Signal the running processes (SIGTERM by default), wait for them, SIGKILL any left.

    With ``sig=SIGKILL`` (kill -9, for outage drills) nothing is waited for but their end.
    """
    targets: dict[int, ManagedProcess] = {}
    not_running: list[int] = []
    for ident in ids:
        process = running_process(data_dir, ident, kind)
        if process is None:
            not_running.append(ident)
        else:
            targets[ident] = process
    for process in targets.values():
        with contextlib.suppress(ProcessLookupError):
            if sig != signal.SIGKILL:
                os.kill(process.pid, signal.SIGCONT)  # a paused process cannot handle SIGTERM
            os.kill(process.pid, sig)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and any(pid_alive(p.pid) for p in targets.values()):
        time.sleep(POLL_S)
    killed = [n for n, p in targets.items() if pid_alive(p.pid)]
    for ident in killed:
        with contextlib.suppress(ProcessLookupError):
            os.kill(targets[ident].pid, signal.SIGKILL)
    with contextlib.suppress(TimeoutError):
        wait_until(
            lambda: not any(pid_alive(targets[n].pid) for n in killed),
            timeout_s,
            f"killed {kind}s to exit",
        )
    for ident, process in targets.items():
        if not pid_alive(process.pid):
            pid_path(data_dir, ident, kind).unlink(missing_ok=True)
            ready_path(data_dir, ident, kind).unlink(missing_ok=True)
    stopped = [n for n in targets if n not in killed]
    if sig == signal.SIGKILL:
        stopped, killed = [], list(targets)
    return StopResult(stopped=sorted(stopped), killed=sorted(killed), not_running=not_running)


def stop_nodes(
    data_dir: Path,
    node_ids: Iterable[int],
    *,
    timeout_s: float = STOP_TIMEOUT_S,
    sig: signal.Signals = signal.SIGTERM,
) -> StopResult:
    return stop_processes(data_dir, node_ids, kind="node", timeout_s=timeout_s, sig=sig)
