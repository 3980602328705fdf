"""Network namespaces joined by a bridge: three "machines" (and a client) on one host.

Rules of this module: everything it creates carries the prefix ``hbmh`` (namespaces
``hbmh-<run>-<name>``, links ``hbmh<run><n>``) and is removed by ``close`` on every exit
path (the class is a context manager); ``sweep`` removes what an earlier, killed run may
have left, processes inside them included. The bridge lives in a namespace of its own,
so nothing is added to the host's own network stack: each machine's address exists only
inside its namespace, in a random 10.x.y.0/24. Every command is ``ip ...`` with a
deadline; a failure raises with its stderr.
"""

from __future__ import annotations

import contextlib
import os
import random
import shutil
import signal
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass, field

PREFIX = "hbmh"
IP_TIMEOUT_S = 10.0


class NetnsError(RuntimeError):
    """An ``ip`` command failed; the message has its command line and stderr."""


def ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    command = ["ip", *args]
    done = subprocess.run(
        command, capture_output=True, text=True, timeout=IP_TIMEOUT_S, check=False
    )
    if check and done.returncode != 0:
        raise NetnsError(f"{' '.join(command)}: {done.stderr.strip()}")
    return done


def unavailable_reason() -> str | None:
    """Why namespaces cannot be made here (not root, no ``ip``), or None."""
    if shutil.which("ip") is None:
        return "the ip command (iproute2) is not installed"
    if os.geteuid() != 0:
        return "network namespaces need root"
    return None


def sweep() -> list[str]:
    """Remove namespaces and links of earlier runs (our prefix only); return their names."""
    removed: list[str] = []
    for line in ip("netns", "list").stdout.splitlines():
        name = line.split()[0] if line.split() else ""
        if name.startswith(f"{PREFIX}-"):
            _kill_processes_in(name)  # a killed test run's nodes and routers
            ip("netns", "delete", name, check=False)
            removed.append(name)
    for line in ip("-o", "link", "show").stdout.splitlines():
        parts = line.split(":")
        if len(parts) > 1:
            name = parts[1].strip().split("@")[0]
            if name.startswith(PREFIX):
                ip("link", "delete", name, check=False)
                removed.append(name)
    return removed


def _kill_processes_in(namespace: str) -> None:
    """SIGKILL the processes left inside one of our namespaces, by their pids."""
    for word in ip("netns", "pids", namespace, check=False).stdout.split():
        with contextlib.suppress(ValueError, ProcessLookupError):
            os.kill(int(word), signal.SIGKILL)


@dataclass(slots=True)
class Network:
    """``hosts`` namespaces, each with one address, on one bridge (``switch`` namespace)."""

    hosts: Sequence[str]
    run: str = field(default_factory=lambda: f"{random.randrange(16**4):04x}")
    subnet: tuple[int, int] = field(
        default_factory=lambda: (random.randrange(64, 250), random.randrange(1, 250))
    )
    created: list[str] = field(default_factory=list)  # namespaces, in creation order

    def namespace(self, host: str) -> str:
        return f"{PREFIX}-{self.run}-{host}"

    @property
    def switch(self) -> str:
        return f"{PREFIX}-{self.run}-sw"

    def address(self, host: str) -> str:
        x, y = self.subnet
        return f"10.{x}.{y}.{10 + list(self.hosts).index(host)}"

    def exec_prefix(self, host: str) -> list[str]:
        """What goes before a command to run it on ``host``."""
        return ["ip", "netns", "exec", self.namespace(host)]

    def open(self) -> Network:
        self._add_namespace(self.switch)
        self.in_ns(self.switch, "ip", "link", "add", "br0", "type", "bridge")
        self.in_ns(self.switch, "ip", "link", "set", "br0", "up")
        for index, host in enumerate(self.hosts):
            ns = self.namespace(host)
            self._add_namespace(ns)
            outer, inner = f"{PREFIX}{self.run}s{index}", f"{PREFIX}{self.run}h{index}"
            # Both ends are made in the switch's namespace (never in the host's own).
            self.in_ns(self.switch, "ip", "link", "add", outer, "type", "veth",
                       "peer", "name", inner)  # fmt: skip
            self.in_ns(self.switch, "ip", "link", "set", inner, "netns", ns)
            self.in_ns(self.switch, "ip", "link", "set", outer, "master", "br0")
            self.in_ns(self.switch, "ip", "link", "set", outer, "up")
            self.in_ns(ns, "ip", "link", "set", inner, "name", "eth0")
            self.in_ns(ns, "ip", "addr", "add", f"{self.address(host)}/24", "dev", "eth0")
            self.in_ns(ns, "ip", "link", "set", "eth0", "up")
        return self

    def _add_namespace(self, name: str) -> None:
        ip("netns", "add", name)
        self.created.append(name)
        self.in_ns(name, "ip", "link", "set", "lo", "up")

    def in_ns(self, ns: str, *command: str) -> subprocess.CompletedProcess[str]:
        done = subprocess.run(
            ["ip", "netns", "exec", ns, *command],
            capture_output=True, text=True, timeout=IP_TIMEOUT_S, check=False,
        )  # fmt: skip
        if done.returncode != 0:
            raise NetnsError(f"in {ns}: {' '.join(command)}: {done.stderr.strip()}")
        return done

    def close(self) -> None:
        """Delete every namespace made (their veth ends and the bridge go with them), after
        killing any process still inside one (the callers end theirs first)."""
        for name in reversed(self.created):
            _kill_processes_in(name)
            with contextlib.suppress(NetnsError, subprocess.TimeoutExpired):
                ip("netns", "delete", name)
        self.created.clear()

    def __enter__(self) -> Network:
        try:
            return self.open()
        except BaseException:
            self.close()
            raise

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def leftovers() -> list[str]:
    """Namespaces and links with our prefix that exist now (for the test's own check)."""
    names = [
        line.split()[0]
        for line in ip("netns", "list").stdout.splitlines()
        if line.split() and line.split()[0].startswith(f"{PREFIX}-")
    ]
    for line in ip("-o", "link", "show").stdout.splitlines():
        parts = line.split(":")
        if len(parts) > 1 and parts[1].strip().startswith(PREFIX):
            names.append(parts[1].strip())
    return names
