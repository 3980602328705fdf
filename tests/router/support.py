"""Router processes for the tests: ``hongbao router run`` children of the test, with
--ready-file, killed on every exit path (like the nodes of ``LocalCluster``)."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

from hongbao.config.routers import RouterSpec
from hongbao.config.topology import Topology
from hongbao.ops.local import STOP_TIMEOUT_S, insecure_args, wait_until

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
        path = self.log_path(router_id)
        if not path.exists():
            return "(no log)"
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])

    def start(self, spec: RouterSpec, *extra: str) -> None:
        ready = self.log_dir / f"router-{spec.router_id}.ready"
        ready.unlink(missing_ok=True)
        command = [
            sys.executable, "-m", "hongbao.cli", "router", "run",
            "--config", str(self.config_path), "--region", spec.region,
            "--router-id", str(spec.router_id), "--ready-file", str(ready),
            *insecure_args(self.topology), *extra,
        ]  # fmt: skip
        with self.log_path(spec.router_id).open("ab") as log:
            process = subprocess.Popen(
                command, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                env={**os.environ, "PYTHONUNBUFFERED": "1"},
            )  # fmt: skip
        self.processes[spec.router_id] = process
        wait_until(
            lambda: ready.exists() or process.poll() is not None,
            READY_TIMEOUT_S,
            f"router {spec.router_id} to start",
        )
        if process.poll() is not None:
            raise RuntimeError(f"router {spec.router_id} exited:\n{self.tail(spec.router_id)}")

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
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(STOP_TIMEOUT_S)
                raise RuntimeError(f"router {router_id} ignored SIGTERM") from None
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
