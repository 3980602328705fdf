"""Processes on the "machines" of :mod:`tests.multihost.netns`, and their topology.

Rules of this module: every process it starts runs under ``ip netns exec`` in one
machine's namespace, logs to a file and signals readiness with a ready file; ``close``
(the class is a context manager) kills whatever is left. Waits are conditions with
deadlines. The topology is written here, not copied from configs/local.toml's hosts:
three regions on three different hosts (addresses that exist only in the namespaces),
``tls = false`` said explicitly, so every process gets ``--insecure``.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from tests.multihost.netns import Network

REPO = Path(__file__).resolve().parents[2]
HONGBAO = [sys.executable, "-m", "hongbao.cli"]
REGIONS = ("shenzhen", "shanghai", "tianjin")
NODE_PORT = 7101
ROUTER_PORT = 7201
READY_TIMEOUT_S = 45.0
STOP_TIMEOUT_S = 15.0
COMMAND_TIMEOUT_S = 120.0


def write_topology(path: Path, network: Network, hosts: list[str], shard_count: int = 6) -> Path:
    """One node and one router per region, region i on ``hosts[i]``."""
    lines = [
        f"shard_count = {shard_count}",
        "replication_factor = 3",
        "tls = false  # namespaces of one test machine: explicitly without TLS",
        "",
        "[timing]",
        "tick_ms = 10",
        "election_timeout_ticks = 30",
        "heartbeat_interval_ticks = 5",
    ]
    for region in REGIONS:
        lines += ["", "[[regions]]", f'name = "{region}"']
    for kind, port in (("nodes", NODE_PORT), ("routers", ROUTER_PORT)):
        for index, (region, host) in enumerate(zip(REGIONS, hosts, strict=True), 1):
            lines += ["", f"[[{kind}]]", f"id = {index}", f'region = "{region}"',
                      f'host = "{network.address(host)}"', f"port = {port}"]  # fmt: skip
    path.write_text("\n".join(lines) + "\n")
    return path


@dataclass(slots=True)
class Spawned:
    label: str
    process: subprocess.Popen[bytes]
    log: Path
    ready: Path | None


class Machines:
    """Node and router processes, each in its machine's namespace."""

    def __init__(self, network: Network, work: Path) -> None:
        self.network = network
        self.work = work
        self.spawned: dict[str, Spawned] = {}

    def spawn(self, label: str, host: str, args: list[str], *, ready: bool = True) -> None:
        log = self.work / f"{label}.log"
        ready_file = self.work / f"{label}.ready" if ready else None
        argv = [*self.network.exec_prefix(host), *HONGBAO, *args]
        if ready_file is not None:
            ready_file.unlink(missing_ok=True)
            argv += ["--ready-file", str(ready_file)]
        with log.open("ab") as out:
            process = subprocess.Popen(
                argv, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                cwd=REPO, env={**os.environ, "PYTHONUNBUFFERED": "1"},
            )  # fmt: skip
        self.spawned[label] = Spawned(label, process, log, ready_file)

    def wait_ready(self) -> None:
        deadline = time.monotonic() + READY_TIMEOUT_S
        for item in self.spawned.values():
            while item.ready is not None and not item.ready.exists():
                if item.process.poll() is not None:
                    raise RuntimeError(
                        f"{item.label} exited ({item.process.returncode}):\n{self.tail(item.label)}"
                    )
                if time.monotonic() > deadline:
                    raise TimeoutError(f"{item.label} not ready:\n{self.tail(item.label)}")
                time.sleep(0.05)

    def tail(self, label: str, lines: int = 25) -> str:
        log = self.spawned[label].log
        text = log.read_text(errors="replace") if log.exists() else "(no log)"
        return "\n".join(text.splitlines()[-lines:])

    def tails(self) -> str:
        return "\n".join(f"--- {label}\n{self.tail(label)}" for label in self.spawned)

    def run(self, host: str, args: list[str]) -> subprocess.CompletedProcess[str]:
        """A command on ``host``, to its end (bounded)."""
        return subprocess.run(
            [*self.network.exec_prefix(host), *args], capture_output=True, text=True,
            timeout=COMMAND_TIMEOUT_S, cwd=REPO, check=False,
            env={**os.environ, "COLUMNS": "200"},
        )  # fmt: skip

    def start_probe(self, host: str, *args: str) -> subprocess.Popen[str]:
        """A probe running in the background (the caller waits for it: :meth:`finish`)."""
        return subprocess.Popen(
            [*self.network.exec_prefix(host), sys.executable, "-m", "tests.multihost.probe",
             *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO,
        )  # fmt: skip

    def finish(self, probe: subprocess.Popen[str]) -> dict[str, object]:
        try:
            out, err = probe.communicate(timeout=COMMAND_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            probe.kill()
            probe.communicate()
            raise
        if probe.returncode != 0:
            raise AssertionError(f"probe failed:\n{err}\n{self.tails()}")
        result: dict[str, object] = json.loads(out)
        return result

    def probe(self, host: str, *args: str) -> dict[str, object]:
        done = self.run(host, [sys.executable, "-m", "tests.multihost.probe", *args])
        if done.returncode != 0:
            raise AssertionError(f"probe {args[0]} failed:\n{done.stderr}\n{self.tails()}")
        result: dict[str, object] = json.loads(done.stdout)
        return result

    def close(self) -> None:
        for item in self.spawned.values():
            if item.process.poll() is None:
                item.process.send_signal(signal.SIGKILL)
        for item in self.spawned.values():
            with contextlib.suppress(subprocess.TimeoutExpired):
                item.process.wait(STOP_TIMEOUT_S)

    def __enter__(self) -> Machines:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
