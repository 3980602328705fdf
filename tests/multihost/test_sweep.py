"""The multi-host tests' own cleanup: what a killed run left is swept by the next one.

A separate module so that it never runs while :mod:`tests.multihost.test_multihost`'s
cluster (a module fixture) is still up: the sweep removes every namespace of the prefix.
"""

from __future__ import annotations

import subprocess

import pytest

from tests.cluster.support import wait_for
from tests.multihost.netns import Network, leftovers, sweep
from tests.multihost.test_multihost import require_namespaces

pytestmark = [pytest.mark.cluster]


def test_the_sweep_removes_what_a_killed_run_left() -> None:
    """A run killed before its cleanup leaves namespaces, links and processes: the next
    run's sweep removes all three (only ours: the prefix)."""
    require_namespaces()
    network = Network(hosts=["a", "b"]).open()  # never closed: as if the test were killed
    sleeper = subprocess.Popen([*network.exec_prefix("a"), "sleep", "600"])
    try:
        wait_for(lambda: network.namespace("a") in leftovers(), 10.0, "the namespace")
        removed = sweep()
        assert network.namespace("a") in removed
        assert network.switch in removed
        assert sleeper.wait(10.0) != 0  # killed by the sweep
        assert leftovers() == []
    finally:
        if sleeper.poll() is None:
            sleeper.kill()
            sleeper.wait(10.0)
        network.close()
