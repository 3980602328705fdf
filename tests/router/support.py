"""Router processes for the tests: ``hongbao router run`` children of the test, with
--ready-file, killed on every exit path (like the nodes of ``LocalCluster``)."""

from __future__ import annotations

import contextlib
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

from hongbao.config.routers import RouterSpec
from hongbao.config.topology import Topology
from hongbao.ops.local import (
    STOP_TIMEOUT_S,
    log_tail,
    router_command,
    spawn_logged,
    stop_process,
    wait_ready,
)

READY_TIMEOUT_S = 30.0


class Routers:
    def __init__(self, config_path: Path, topology: Topology, log_dir: Path) -> None:
        self.config_path = config_path
        self.topology = topology
        self.log_dir = log_dir
        self.processes: dict[int, subprocess.Popen[bytes]] = {}

    def log_path(self, router_id: int) -> Path:
        return self.log_dir / f"router-{router_id}.log"

    def tail(self, router_id: int, lines: int = 40) -> str:
        return log_tail(self.log_path(router_id), lines)

    def start(self, spec: RouterSpec, *extra: str) -> None:
        ready = self.log_dir / f"router-{spec.router_id}.ready"
        ready.unlink(missing_ok=True)
        command = router_command(self.config_path, self.topology, spec, ready, *extra)
        process = spawn_logged(command, self.log_path(spec.router_id))
        self.processes[spec.router_id] = process
        wait_ready(process, ready, f"router {spec.router_id}", self.log_path(spec.router_id))

    def start_all(self) -> None:
        for spec in self.topology.routers:
            self.start(spec)

    def pid(self, router_id: int) -> int:
        return self.processes[router_id].pid

    def kill(self, router_id: int) -> None:
        process = self.processes[router_id]
        if process.poll() is None:
            process.send_signal(signal.SIGKILL)
        process.wait(STOP_TIMEOUT_S)

    def stop(self, router_id: int) -> int:
        process = self.processes[router_id]
        if not stop_process(process):
            raise RuntimeError(f"router {router_id} ignored SIGTERM")
        return process.returncode

    def close(self) -> None:
        for process in self.processes.values():
            if process.poll() is None:
                process.kill()
        for process in self.processes.values():
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(STOP_TIMEOUT_S)


@contextlib.contextmanager
def routers_of(config_path: Path, topology: Topology, log_dir: Path) -> Iterator[Routers]:
    routers = Routers(config_path, topology, log_dir)
    try:
        yield routers
    finally:
        routers.close()
