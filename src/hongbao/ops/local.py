"""A cluster of real node processes on this machine, for the demo, tests and benchmarks.

Rules of this module: it starts and stops ``hongbao node run`` processes and nothing
else; every process it starts it also ends (``close`` kills whatever is left, and the
class is a context manager so that a failing test cannot leak a node). Nodes listen on
127.0.0.1 only. Waiting is always on a condition with a deadline, never a bare sleep.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import tomllib
from collections.abc import Callable, Iterable
from pathlib import Path

from hongbao.config.routers import RouterSpec
from hongbao.config.topology import Topology, load_topology

READY_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 15.0
POLL_S = 0.02
FREE_PORT_SPARE = 64  # binds beyond the excluded ones before giving up


class ClusterError(RuntimeError):
    """A node did not start or stop as asked; the message includes its log's tail."""


def free_ports(count: int, *, exclude: Iterable[int] = ()) -> list[int]:
    """Ports that were free a moment ago on 127.0.0.1 (held together, so all distinct).

    ``exclude``: ports already promised to processes that have not bound them yet (a
    topology written a moment ago), which the kernel may well hand out again.
    """
    taken = set(exclude)
    sockets: list[socket.socket] = []
    ports: list[int] = []
    try:
        while len(ports) < count:
            if len(sockets) >= count + len(taken) + FREE_PORT_SPARE:
                raise RuntimeError(f"could not find {count} free ports on 127.0.0.1")
            sock = socket.socket()
            sock.bind(("127.0.0.1", 0))
            sockets.append(sock)
            port = int(sock.getsockname()[1])
            if port not in taken:
                ports.append(port)
        return ports
    finally:
        for sock in sockets:
            sock.close()


def topology_ports(topology: Topology) -> set[int]:
    """Every 127.0.0.1 port a topology's processes will listen on (service and metrics)."""
    ports = {int(n.port) for n in topology.nodes} | {int(r.port) for r in topology.routers}
    ports |= {int(n.metrics_port) for n in topology.nodes if n.metrics_port}
    ports |= {int(r.metrics_port) for r in topology.routers if r.metrics_port}
    return ports


def write_topology(
    path: Path,
    *,
    template: Path,
    ports: Iterable[int] | None = None,
    overrides: dict[str, object] | None = None,
) -> Path:
    """Copy ``template`` to ``path`` with fresh 127.0.0.1 ports and top-level overrides.

    Nodes first, then ``[[routers]]`` (``ports`` covers both, in that order). A relative
    ``certs_dir`` is made absolute, so the copy names the template's certificates.
    """
    data = tomllib.loads(template.read_text())
    certs_dir = data.get("certs_dir")
    if isinstance(certs_dir, str):
        data["certs_dir"] = str((template.resolve().parent / certs_dir).resolve())
    listeners = [*data["nodes"], *data.get("routers", [])]
    chosen = list(ports) if ports is not None else free_ports(len(listeners))
    for listener, port in zip(listeners, chosen, strict=True):
        listener["host"] = "127.0.0.1"
        listener["port"] = port
    metered = [listener for listener in listeners if "metrics_port" in listener]
    # Ports held together are distinct; at most len(chosen) of them can be the listeners'.
    fresh = [p for p in free_ports(len(metered) + len(chosen)) if p not in chosen]
    for listener, port in zip(metered, fresh[: len(metered)], strict=True):
        listener["metrics_port"] = port
    data.update(overrides or {})
    path.write_text(_to_toml(data))
    return path


def _to_toml(data: dict[str, object]) -> str:
    """Enough TOML for topology files: scalars, tables of scalars, arrays of tables."""
    lines: list[str] = []
    tables: list[tuple[str, dict[str, object]]] = []
    arrays: list[tuple[str, list[dict[str, object]]]] = []
    for key, value in data.items():
        if isinstance(value, dict):
            tables.append((key, value))
        elif isinstance(value, list) and value and isinstance(value[0], dict):
            arrays.append((key, value))
        else:
            lines.append(f"{key} = {_scalar(value)}")
    for key, table in tables:
        lines += ["", f"[{key}]"] + [f"{k} = {_scalar(v)}" for k, v in table.items()]
    for key, items in arrays:
        for item in items:
            lines += ["", f"[[{key}]]"] + [f"{k} = {_scalar(v)}" for k, v in item.items()]
    return "\n".join(lines) + "\n"


def _scalar(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(value, list):
        return "[" + ", ".join(_scalar(v) for v in value) + "]"
    raise TypeError(f"cannot write {type(value).__name__} to TOML")



# -- child processes: spawn with a log, wait for the ready file, stop --------------------


def spawn_logged(command: list[str], log_path: Path) -> subprocess.Popen[bytes]:
    """Start ``command`` with stdout and stderr appended to ``log_path`` (unbuffered)."""
    with log_path.open("ab") as log:
        return subprocess.Popen(
            command, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )  # fmt: skip


def log_tail(path: Path, lines: int = 30) -> str:
    if not path.exists():
        return "(no log)"
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])


def wait_ready(process: subprocess.Popen[bytes], ready: Path, what: str, log_path: Path) -> None:
    """Wait until ``ready`` exists; ClusterError with the log's tail if the process exits."""
    wait_until(lambda: ready.exists() or process.poll() is not None, READY_TIMEOUT_S,
               f"{what} to start")  # fmt: skip
    if process.poll() is not None:
        raise ClusterError(f"{what} exited ({process.returncode}):\n{log_tail(log_path)}")


def stop_process(process: subprocess.Popen[bytes]) -> bool:
    """SIGTERM (after SIGCONT: a paused process cannot handle it), and wait; kill after
    STOP_TIMEOUT_S. True when it exited by itself, False when it had to be killed."""
    if process.poll() is not None:
        return True
    process.send_signal(signal.SIGCONT)
    process.terminate()
    try:
        process.wait(STOP_TIMEOUT_S)
        return True
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(STOP_TIMEOUT_S)
        return False


def router_command(
    config_path: Path, topology: Topology, spec: RouterSpec, ready: Path, *extra: str
) -> list[str]:
    """``hongbao router run`` for ``spec``, as the tests and the demo start it."""
    return [
        sys.executable, "-m", "hongbao.cli", "router", "run",
        "--config", str(config_path),
        "--region", spec.region,
        "--router-id", str(spec.router_id),
        "--ready-file", str(ready),
        *insecure_args(topology),
        *extra,
    ]  # fmt: skip


class LocalCluster:
    def __init__(
        self,
        config_path: Path,
        data_dir: Path,
        *,
        no_fsync: bool = False,
        node_args: Iterable[str] = (),
    ) -> None:
        self.config_path = Path(config_path)
        self.topology: Topology = load_topology(self.config_path)
        self.data_dir = Path(data_dir)
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.no_fsync = no_fsync
        self.node_args = list(node_args)
        self.processes: dict[int, subprocess.Popen[bytes]] = {}
        self.routers: dict[int, subprocess.Popen[bytes]] = {}  # router id -> its process
        # Extra arguments of one node's or one router's command line (the chaos runner's
        # --dial-map and test-only switches), by id; set before start.
        self.args_of_node: dict[int, list[str]] = {}
        self.args_of_router: dict[int, list[str]] = {}

    @property
    def node_ids(self) -> list[int]:
        return [int(n.node_id) for n in self.topology.nodes]

    def log_path(self, node_id: int) -> Path:
        return self.data_dir / f"node-{node_id}.log"

    def _ready_path(self, node_id: int) -> Path:
        return self.data_dir / f"node-{node_id}.ready"

    def start(self, node_ids: Iterable[int] | None = None) -> None:
        ids = list(node_ids) if node_ids is not None else self.node_ids
        for node_id in ids:
            self._spawn(node_id)
        for node_id in ids:
            self._wait_ready(node_id)

    def _spawn(self, node_id: int) -> None:
        if node_id in self.processes and self.processes[node_id].poll() is None:
            raise ClusterError(f"node {node_id} is already running")
        ready = self._ready_path(node_id)
        ready.unlink(missing_ok=True)
        command = [
            sys.executable, "-m", "hongbao.cli", "node", "run",
            "--config", str(self.config_path),
            "--node", str(node_id),
            "--data-dir", str(self.data_dir),
            "--ready-file", str(ready),
            *(["--no-fsync"] if self.no_fsync else []),
            *insecure_args(self.topology),
            *self.node_args,
            *self.args_of_node.get(node_id, ()),
        ]  # fmt: skip
        self.processes[node_id] = spawn_logged(command, self.log_path(node_id))

    def _wait_ready(self, node_id: int) -> None:
        wait_ready(self.processes[node_id], self._ready_path(node_id), f"node {node_id}",
                   self.log_path(node_id))  # fmt: skip

    def tail(self, node_id: int, lines: int = 30) -> str:
        return log_tail(self.log_path(node_id), lines)

    def is_running(self, node_id: int) -> bool:
        process = self.processes.get(node_id)
        return process is not None and process.poll() is None

    def signal(self, node_id: int, sig: int) -> None:
        process = self.processes[node_id]
        if process.poll() is None:
            process.send_signal(sig)

    def kill(self, node_id: int) -> None:
        """kill -9: the node gets no chance to clean up."""
        self.signal(node_id, signal.SIGKILL)
        self.processes[node_id].wait(STOP_TIMEOUT_S)

    def pause(self, node_id: int) -> None:
        self.signal(node_id, signal.SIGSTOP)

    def resume(self, node_id: int) -> None:
        self.signal(node_id, signal.SIGCONT)

    def stop(self, node_id: int) -> int:
        """SIGTERM, and wait for a clean exit; returns the exit code."""
        process = self.processes[node_id]
        if not stop_process(process):
            raise ClusterError(f"node {node_id} ignored SIGTERM:\n{self.tail(node_id)}")
        return process.returncode

    def stop_together(self, timeout_s: float = STOP_TIMEOUT_S) -> None:
        """Routers, then every node at once, each waited for (ClusterError on a bad exit).

        Why at once: a node stopped alone leaves the others to elect a new leader and
        append an entry it never sees, and an offline audit then finds its replicas one
        entry behind. SIGTERM to all, then wait, closes every peer stream together.
        """
        for router_id in list(self.routers):
            self.stop_router(router_id)
        running = [n for n in self.processes if self.is_running(n)]
        for node_id in running:
            self.signal(node_id, signal.SIGTERM)
        for node_id in running:
            try:
                code = self.processes[node_id].wait(timeout_s)
            except subprocess.TimeoutExpired:
                tail = self.tail(node_id)
                raise ClusterError(f"node {node_id} ignored SIGTERM:\n{tail}") from None
            if code != 0:
                raise ClusterError(f"node {node_id} exited with {code}:\n{self.tail(node_id)}")

    def stop_all(self) -> None:
        for router_id in list(self.routers):
            self.stop_router(router_id)
        for node_id in list(self.processes):
            self.stop(node_id)

    # -- routers (``hongbao router run``), children like the nodes ------------------------

    @property
    def router_ids(self) -> list[int]:
        return [r.router_id for r in self.topology.routers]

    def router_log_path(self, router_id: int) -> Path:
        return self.data_dir / f"router-{router_id}.log"

    def start_routers(self, router_ids: Iterable[int] | None = None) -> None:
        """Start the topology's routers (or the ones named) and wait until they serve."""
        ids = list(router_ids) if router_ids is not None else self.router_ids
        for router_id in ids:
            if router_id in self.routers and self.routers[router_id].poll() is None:
                raise ClusterError(f"router {router_id} is already running")
            spec = self.topology.router_spec(router_id)
            ready = self.data_dir / f"router-{router_id}.ready"
            ready.unlink(missing_ok=True)
            command = router_command(self.config_path, self.topology, spec, ready,
                                     *self.args_of_router.get(router_id, ()))  # fmt: skip
            self.routers[router_id] = spawn_logged(command, self.router_log_path(router_id))
        for router_id in ids:
            wait_ready(self.routers[router_id], self.data_dir / f"router-{router_id}.ready",
                       f"router {router_id}", self.router_log_path(router_id))  # fmt: skip

    def router_running(self, router_id: int) -> bool:
        process = self.routers.get(router_id)
        return process is not None and process.poll() is None

    def kill_router(self, router_id: int) -> None:
        process = self.routers[router_id]
        if process.poll() is None:
            process.kill()
        process.wait(STOP_TIMEOUT_S)

    def stop_router(self, router_id: int) -> int:
        """SIGTERM, and wait; kill after STOP_TIMEOUT_S. Returns the exit code."""
        process = self.routers[router_id]
        stop_process(process)
        return process.returncode

    def close(self) -> None:
        """Kill whatever is still running (used on every exit path)."""
        everything = [*self.routers.values(), *self.processes.values()]
        for process in everything:
            if process.poll() is None:
                process.kill()
        for process in everything:
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(STOP_TIMEOUT_S)

    def __enter__(self) -> LocalCluster:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def insecure_args(topology: Topology) -> list[str]:
    """``--insecure`` for a node of a ``tls = false`` topology, which says so in its file."""
    return [] if topology.tls else ["--insecure"]


def wait_until(condition: Callable[[], bool], timeout_s: float, what: str) -> None:
    """Poll ``condition`` until it holds; raise a TimeoutError naming ``what`` otherwise."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout_s} s waiting for {what}")
        time.sleep(POLL_S)
