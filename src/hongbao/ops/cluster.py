"""Operating a running cluster: detached node processes, their status, waiting for leaders.

Rules of this module: ``hongbao cluster up`` must leave the nodes running after the CLI
exits, so unlike :class:`~hongbao.ops.local.LocalCluster` (which keeps its nodes as
children and ends them with itself) the nodes here are spawned detached, in their own
session, with a pid file and a log per node in the data directory. A pid file is trusted
only while the process it names is alive *and* is the node it claims to be (its command
line names the node and the data directory), so a recycled pid is never signalled.
Nodes listen on 127.0.0.1 only (the topology says so; ``up`` refuses anything else).
Every wait has a deadline; nothing sleeps and hopes.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import json
import os
import signal
import socket
import sys
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import grpc

from hongbao.client.sdk import ClientOptions, HongbaoClient
from hongbao.config.topology import NodeSpec, Topology, load_topology
from hongbao.ops.local import insecure_args, wait_until
from hongbao.proto.gen.hongbao.v1 import admin_pb2

READY_TIMEOUT_S = 30.0
LEADERS_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 15.0
STATUS_TIMEOUT_S = 1.0
POLL_S = 0.02
TRANSFER_ROUND_S = 2.0  # one round of leadership transfers waits this long at most
LOOPBACK = "127.0.0.1"


class ClusterOpsError(RuntimeError):
    """A cluster operation was refused or failed; the message says why, for an operator."""


# -- pid files -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class NodeProcess:
    """What a pid file records about one detached node."""

    node_id: int
    pid: int
    config_path: str
    data_dir: str
    started_at_ms: int


def pid_path(data_dir: Path, node_id: int) -> Path:
    return data_dir / f"node-{node_id}.pid"


def log_path(data_dir: Path, node_id: int) -> Path:
    return data_dir / f"node-{node_id}.log"


def ready_path(data_dir: Path, node_id: int) -> Path:
    return data_dir / f"node-{node_id}.ready"


def read_pid_file(data_dir: Path, node_id: int) -> NodeProcess | None:
    path = pid_path(data_dir, node_id)
    try:
        data = json.loads(path.read_text())
        return NodeProcess(
            node_id=int(data["node_id"]),
            pid=int(data["pid"]),
            config_path=str(data["config_path"]),
            data_dir=str(data["data_dir"]),
            started_at_ms=int(data["started_at_ms"]),
        )
    except FileNotFoundError:
        return None
    except (ValueError, KeyError, TypeError) as error:
        raise ClusterOpsError(f"{path}: unreadable pid file ({error}); remove it") from error


def _write_pid_file(data_dir: Path, process: NodeProcess) -> None:
    path = pid_path(data_dir, process.node_id)
    temporary = path.with_suffix(".pid.tmp")
    temporary.write_text(
        json.dumps(
            {
                "node_id": process.node_id,
                "pid": process.pid,
                "config_path": process.config_path,
                "data_dir": process.data_dir,
                "started_at_ms": process.started_at_ms,
            }
        )
        + "\n"
    )
    temporary.replace(path)


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


def _is_our_node(process: NodeProcess) -> bool:
    """The pid still names this node (not a recycled pid): check its command line."""
    if not pid_alive(process.pid):
        return False
    try:
        argv = Path(f"/proc/{process.pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return True  # no /proc: trust the pid file
    words = [a.decode(errors="replace") for a in argv]
    return (
        "run" in words
        and _option(words, "--node") == str(process.node_id)
        and _option(words, "--data-dir") == process.data_dir
    )


def _option(words: list[str], name: str) -> str | None:
    if name in words and words.index(name) + 1 < len(words):
        return words[words.index(name) + 1]
    return None


def running_node(data_dir: Path, node_id: int) -> NodeProcess | None:
    """The detached node ``node_id`` of ``data_dir`` if it is running, else None.

    A pid file whose process is gone is stale: it is removed.
    """
    process = read_pid_file(data_dir, node_id)
    if process is None:
        return None
    if _is_our_node(process):
        return process
    pid_path(data_dir, node_id).unlink(missing_ok=True)
    return None


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


# -- up and down -----------------------------------------------------------------------


@dataclass(slots=True)
class UpResult:
    started: list[NodeProcess] = field(default_factory=list)
    leaders_s: float = 0.0
    placement_warning: str | None = None  # leaders not all home: serving, but not balanced


def check_can_start(topology: Topology, data_dir: Path, node_ids: Iterable[int]) -> None:
    """Refuse, with every reason at once, when a node already runs or a port is taken."""
    problems: list[str] = []
    for node_id in node_ids:
        spec = topology.node(node_id)
        if spec.host != LOOPBACK:
            problems.append(f"node {node_id} would listen on {spec.host}; only {LOOPBACK}")
            continue
        running = running_node(data_dir, node_id)
        if running is not None:
            problems.append(f"node {node_id} is already running (pid {running.pid})")
        elif port_in_use(spec.host, spec.port):
            problems.append(f"node {node_id}: port {spec.address} is already in use")
    if problems:
        raise ClusterOpsError("; ".join(problems))


def spawn_node(
    config_path: Path, data_dir: Path, node_id: int, *, no_fsync: bool = False
) -> NodeProcess:
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
    log = str(log_path(data_dir, node_id))
    file_actions = [
        (os.POSIX_SPAWN_OPEN, 0, os.devnull, os.O_RDONLY, 0),
        (os.POSIX_SPAWN_OPEN, 1, log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644),
        (os.POSIX_SPAWN_DUP2, 1, 2),
    ]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    # posix_spawn, not Popen: no Popen object to outlive (or warn about) a detached child.
    pid = os.posix_spawn(sys.executable, argv, env, file_actions=file_actions, setsid=True)
    process = NodeProcess(
        node_id=node_id,
        pid=pid,
        config_path=str(config_path),
        data_dir=str(data_dir),
        started_at_ms=int(time.time() * 1000),
    )
    _write_pid_file(data_dir, process)
    return process


def log_tail(data_dir: Path, node_id: int, lines: int = 20) -> str:
    path = log_path(data_dir, node_id)
    if not path.exists():
        return "(no log)"
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])


def cluster_up(
    config_path: Path,
    data_dir: Path,
    *,
    no_fsync: bool = False,
    ready_timeout_s: float = READY_TIMEOUT_S,
    leaders_timeout_s: float = LEADERS_TIMEOUT_S,
) -> UpResult:
    """Start every node of the topology detached, wait until every shard has a leader,
    then hand each shard's leadership to its home region (active-active from the start:
    whichever replica won the first election, each city ends up leading its own shards).

    On any failure the nodes this call started are stopped again before it raises.
    """
    topology = load_topology(config_path)
    data_dir.mkdir(parents=True, exist_ok=True)
    data_dir = data_dir.resolve()
    node_ids = [int(n.node_id) for n in topology.nodes]
    check_can_start(topology, data_dir, node_ids)
    result = UpResult()
    try:
        for node_id in node_ids:
            result.started.append(
                spawn_node(config_path, data_dir, node_id, no_fsync=no_fsync)
            )
        for process in result.started:
            wait_ready(data_dir, process, ready_timeout_s)
        started = time.monotonic()
        result.placement_warning = asyncio.run(_wait_leaders_once(topology, leaders_timeout_s))
        result.leaders_s = time.monotonic() - started
    except BaseException:
        stop_nodes(data_dir, [p.node_id for p in result.started], timeout_s=STOP_TIMEOUT_S)
        raise
    return result


def wait_ready(data_dir: Path, process: NodeProcess, timeout_s: float) -> None:
    ready = ready_path(data_dir, process.node_id)
    try:
        wait_until(
            lambda: ready.exists() or not pid_alive(process.pid),
            timeout_s,
            f"node {process.node_id} to start",
        )
    except TimeoutError as error:
        raise ClusterOpsError(f"{error}:\n{log_tail(data_dir, process.node_id)}") from None
    if not ready.exists():
        raise ClusterOpsError(
            f"node {process.node_id} exited at start:\n{log_tail(data_dir, process.node_id)}"
        )


async def _wait_leaders_once(topology: Topology, timeout_s: float) -> str | None:
    """Wait for a leader everywhere (required), then move leaders home (best effort).

    Returns why leadership is not all at home, or None when it is.
    """
    async with HongbaoClient(topology, ClientOptions(timeout_s=STATUS_TIMEOUT_S)) as client:
        await wait_for_leaders(client, timeout_s)
        try:
            await move_leaders_home(client, timeout_s)
        except ClusterOpsError as error:
            return str(error)
    return None


@dataclass(frozen=True, slots=True)
class StopResult:
    stopped: list[int]
    killed: list[int]
    not_running: list[int]


def stop_nodes(
    data_dir: Path,
    node_ids: Iterable[int],
    *,
    timeout_s: float = STOP_TIMEOUT_S,
    sig: signal.Signals = signal.SIGTERM,
) -> StopResult:
    """Signal the running nodes (SIGTERM by default), wait for them, SIGKILL any left.

    With ``sig=SIGKILL`` (kill -9, for chaos demos) nothing is waited for but their end.
    """
    targets: dict[int, NodeProcess] = {}
    not_running: list[int] = []
    for node_id in node_ids:
        process = running_node(data_dir, node_id)
        if process is None:
            not_running.append(node_id)
        else:
            targets[node_id] = process
    for process in targets.values():
        with contextlib.suppress(ProcessLookupError):
            if sig != signal.SIGKILL:
                os.kill(process.pid, signal.SIGCONT)  # a paused node cannot handle SIGTERM
            os.kill(process.pid, sig)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and any(pid_alive(p.pid) for p in targets.values()):
        time.sleep(POLL_S)
    killed = [n for n, p in targets.items() if pid_alive(p.pid)]
    for node_id in killed:
        with contextlib.suppress(ProcessLookupError):
            os.kill(targets[node_id].pid, signal.SIGKILL)
    with contextlib.suppress(TimeoutError):
        wait_until(
            lambda: not any(pid_alive(targets[n].pid) for n in killed),
            timeout_s,
            "killed nodes to exit",
        )
    for node_id in targets:
        if not pid_alive(targets[node_id].pid):
            pid_path(data_dir, node_id).unlink(missing_ok=True)
            ready_path(data_dir, node_id).unlink(missing_ok=True)
    stopped = [n for n in targets if n not in killed]
    if sig == signal.SIGKILL:
        stopped, killed = [], list(targets)
    return StopResult(stopped=sorted(stopped), killed=sorted(killed), not_running=not_running)


# -- status ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class NodeStatus:
    spec: NodeSpec
    status: admin_pb2.StatusResponse | None  # None: did not answer
    error: str = ""

    @property
    def up(self) -> bool:
        return self.status is not None


@dataclass(frozen=True, slots=True)
class ClusterStatus:
    topology: Topology
    nodes: list[NodeStatus]

    def leaders(self) -> dict[int, int]:
        """shard -> node that reports itself its leader (the highest term wins a tie)."""
        best: dict[int, tuple[int, int]] = {}
        for node in self.nodes:
            if node.status is None:
                continue
            for shard in node.status.shards:
                if shard.role == admin_pb2.ROLE_LEADER:
                    term = int(shard.term)
                    if shard.shard_id not in best or term > best[shard.shard_id][0]:
                        best[shard.shard_id] = (term, int(node.spec.node_id))
        return {shard: node for shard, (_, node) in sorted(best.items())}

    def leaderless_shards(self) -> list[int]:
        leaders = self.leaders()
        return [s for s in range(self.topology.shard_count) if s not in leaders]

    def log_lag_of(self, node_id: int) -> int | None:
        """How far ``node_id``'s logs are behind, as its shards' leaders see it (max)."""
        lags: list[int] = []
        for node in self.nodes:
            if node.status is None:
                continue
            for shard in node.status.shards:
                if shard.role != admin_pb2.ROLE_LEADER:
                    continue
                for progress in shard.progress:
                    if progress.node_id == node_id:
                        lags.append(int(progress.lag_entries))
        return max(lags) if lags else None

    def to_json(self) -> dict[str, object]:
        leaders = self.leaders()
        nodes: list[dict[str, object]] = []
        for node in self.nodes:
            entry: dict[str, object] = {
                "node_id": int(node.spec.node_id),
                "region": node.spec.region,
                "address": node.spec.address,
                "up": node.up,
                "log_lag_entries": self.log_lag_of(int(node.spec.node_id)),
            }
            if node.status is None:
                entry["error"] = node.error
            else:
                entry["shards_led"] = [
                    s.shard_id for s in node.status.shards if s.role == admin_pb2.ROLE_LEADER
                ]
                entry["shards"] = [
                    {
                        "shard_id": s.shard_id,
                        "role": admin_pb2.Role.Name(s.role).removeprefix("ROLE_").lower(),
                        "term": s.term,
                        "leader_node_id": s.leader_node_id,
                        "commit_index": s.commit_index,
                        "applied_index": s.applied_index,
                        "last_index": s.last_index,
                        "apply_lag_entries": s.apply_lag_entries,
                        "log_lag_entries_max": s.log_lag_entries_max,
                    }
                    for s in node.status.shards
                ]
            nodes.append(entry)
        return {
            "shard_count": self.topology.shard_count,
            "leaders": {str(s): n for s, n in leaders.items()},
            "leaderless_shards": self.leaderless_shards(),
            "nodes": nodes,
        }


async def cluster_status(
    client: HongbaoClient, timeout_s: float = STATUS_TIMEOUT_S
) -> ClusterStatus:
    """Ask every node of the topology for its Admin.Status at once; a silent node is down."""
    topology = client.topology

    async def one(spec: NodeSpec) -> NodeStatus:
        try:
            response: admin_pb2.StatusResponse = await client.stubs(
                int(spec.node_id)
            ).admin.Status(admin_pb2.StatusRequest(), timeout=timeout_s)
        except grpc.aio.AioRpcError as error:
            return NodeStatus(spec, None, f"{error.code().name}: {error.details() or ''}")
        return NodeStatus(spec, response)

    nodes = await asyncio.gather(*(one(spec) for spec in topology.nodes))
    return ClusterStatus(topology, list(nodes))


async def wait_for_leaders(
    client: HongbaoClient,
    timeout_s: float = LEADERS_TIMEOUT_S,
    *,
    without: Iterable[int] = (),
) -> ClusterStatus:
    """Poll until every shard has a leader (on a node not in ``without``); raise at the deadline."""
    excluded = set(without)
    deadline = time.monotonic() + timeout_s
    while True:
        status = await cluster_status(client)
        leaders = status.leaders()
        missing = [
            s
            for s in range(client.topology.shard_count)
            if s not in leaders or leaders[s] in excluded
        ]
        if not missing:
            return status
        if time.monotonic() > deadline:
            raise ClusterOpsError(
                f"timed out after {timeout_s} s waiting for leaders of shards {missing}"
            )
        await asyncio.sleep(POLL_S)


async def wait_for_quiet(
    client: HongbaoClient, timeout_s: float = 10.0, quiet_s: float = 0.2
) -> bool:
    """Wait until the cluster is idle: no log grows for ``quiet_s``, every replica that
    answers has applied its shard's highest known commit index, and no shard lacks a leader.

    True when that happened in time (cross-shard deliveries drained, their acknowledgements
    applied everywhere), else False.
    """
    deadline = time.monotonic() + timeout_s
    previous: tuple[int, ...] | None = None
    since = time.monotonic()
    while time.monotonic() < deadline:
        status = await cluster_status(client)
        shards = [s for n in status.nodes if n.status is not None for s in n.status.shards]
        shape = tuple(int(s.last_index) for s in shards)
        commit: dict[int, int] = {}
        for s in shards:
            commit[s.shard_id] = max(commit.get(s.shard_id, 0), int(s.commit_index))
        settled = not status.leaderless_shards() and all(
            s.applied_index == commit[s.shard_id] for s in shards
        )
        now = time.monotonic()
        if shape != previous or not settled:
            previous, since = shape, now
        elif now - since >= quiet_s:
            return True
        await asyncio.sleep(POLL_S * 2)
    return False


async def move_leaders_home(
    client: HongbaoClient, timeout_s: float = LEADERS_TIMEOUT_S
) -> list[int]:
    """Hand every shard's leadership back to its home region (Raft leadership transfer).

    Returns the shards that moved. Shards whose home node is down stay where they are.
    A transfer can be abandoned (the target was slow to catch up, an election intervened,
    the leader changed meanwhile), so each round asks the current leaders again and
    retries what is not home yet, until the deadline. Raises ClusterOpsError when a live
    home has still not taken office by then.
    """
    topology = client.topology
    deadline = time.monotonic() + timeout_s
    moved: set[int] = set()
    while True:
        status = await cluster_status(client)
        up = {int(n.spec.node_id) for n in status.nodes if n.up}
        leaders = status.leaders()
        homes = {shard: int(topology.home_leader_of(shard)) for shard in leaders}
        wanted = {
            shard: home
            for shard, home in homes.items()
            if leaders[shard] != home and home in up
        }
        if not wanted:
            return sorted(moved)
        remaining_s = deadline - time.monotonic()
        if remaining_s <= 0:
            raise ClusterOpsError(f"shards {sorted(wanted)} did not return to their home regions")
        wait_ms = int(min(remaining_s, TRANSFER_ROUND_S) * 1000)
        results = await asyncio.gather(
            *(
                _transfer(client, shard, leaders[shard], home, wait_ms)
                for shard, home in sorted(wanted.items())
            )
        )
        moved.update(shard for shard, ok in zip(sorted(wanted), results, strict=True) if ok)
        await asyncio.sleep(POLL_S)


async def _transfer(
    client: HongbaoClient, shard: int, leader: int, target: int, wait_ms: int
) -> bool:
    """Ask ``leader`` to hand ``shard`` to ``target``; True once the target leads it.

    A refusal (no longer the leader, target not a voter yet) is not an error here: the
    caller looks again and retries with whoever leads then.
    """
    request = admin_pb2.TransferLeaderRequest(
        shard_id=shard, target_node_id=target, wait_ms=wait_ms
    )
    try:
        response = await client.stubs(leader).admin.TransferLeader(
            request, timeout=wait_ms / 1000 + STATUS_TIMEOUT_S
        )
    except grpc.aio.AioRpcError:
        return False
    return int(response.leader_node_id) == target
