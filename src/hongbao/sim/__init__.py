"""The deterministic simulator: real Raft cores under a simulated network, disk and clock.

Layering: this package imports ``hongbao.raft`` and nothing above it. One seed and one
:class:`SimConfig` determine a run; :func:`run_seed` runs it and returns a
:class:`SeedResult` whose violation (if any) names the broken invariant.
"""

from hongbao.sim.checker import Violation as Violation
from hongbao.sim.checker import ViolationKind as ViolationKind
from hongbao.sim.config import SimConfig as SimConfig
from hongbao.sim.runner import SeedResult as SeedResult
from hongbao.sim.runner import TraceOptions as TraceOptions
from hongbao.sim.runner import run_seed as run_seed

__all__ = ["SeedResult", "SimConfig", "TraceOptions", "Violation", "ViolationKind", "run_seed"]
