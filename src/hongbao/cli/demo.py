"""``hongbao demo``: the three-city story on a real local cluster (or, ``--simulated``, in
the deterministic simulator).

A thin shell. The real story is :func:`hongbao.demo.live.run_live_demo`: three node
processes and three routers on fresh 127.0.0.1 ports in a temporary directory, removed at
the end, Ctrl-C included; a client that goes through the routers; a city drained for
maintenance under load and brought back; a city killed (kill -9) and brought back; the
audits. The simulated one is :func:`hongbao.sim.demo.run_demo`. ``--geo`` tells the same
story with the cities tens of milliseconds apart (every link through its own proxy, the
one-way delays of ``--latency-file``, switched on after bootstrap): see
:mod:`hongbao.demo.geo_story`.
"""

from __future__ import annotations

import signal
import time
from pathlib import Path
from types import FrameType

import click
from rich.console import Console

from hongbao.cli.common import config_option, load_config
from hongbao.demo.geo import GeoLatency, LatencyFileError, load_latency_file
from hongbao.sim.demo import DEFAULT_SEED, run_demo

INVARIANTS = (
    "election safety, log matching, leader completeness, state machine safety, durability"
)
EXIT_INTERRUPTED = 130
INTERRUPT_GRACE_S = 0.2  # after an error, time for a Ctrl-C that caused it to arrive
LATENCY_DEFAULT = "configs/geo-latency.toml"


class CtrlC:
    """A SIGINT handler that counts, then raises KeyboardInterrupt as Python's own does.

    Why not asyncio's (which turns the first Ctrl-C into a cancellation of the main task):
    Ctrl-C reaches the nodes and routers (one process group) as it reaches us, and on a busy
    machine their going away can end the story with an error (an RPC error from a health
    check through a proxy) before the cancellation lands; asyncio then raises that error,
    not KeyboardInterrupt, and the demo said "failed" (exit 1) for an interruption. With
    the count, any error that follows a Ctrl-C is known to be the interruption (exit 130).
    """

    def __init__(self) -> None:
        self.count = 0

    def __call__(self, signum: int, frame: FrameType | None) -> None:
        self.count += 1
        raise KeyboardInterrupt


def default_latency_path() -> str:
    """``configs/geo-latency.toml`` here, else the repository's copy."""
    if Path(LATENCY_DEFAULT).exists():
        return LATENCY_DEFAULT
    bundled = Path(__file__).resolve().parents[3] / LATENCY_DEFAULT
    return str(bundled) if bundled.exists() else LATENCY_DEFAULT


@click.command("demo")
@click.option("--simulated", is_flag=True,
              help="Tell the story in the deterministic simulator instead (no processes).")
@click.option("--seed", type=click.IntRange(min=0), default=DEFAULT_SEED, show_default=True,
              help="Seed of the story's random choices.")
@click.option("--geo", is_flag=True,
              help="Put the cities tens of ms apart: every link through its own proxy, "
                   "latency switched on after bootstrap; prints the measured matrix and "
                   "commit latency beside the round trip to the nearest quorum.")  # fmt: skip
@click.option("--latency-file", type=click.Path(dir_okay=False), default=None,
              help=f"One-way delays between the regions, for --geo (default: "
                   f"{LATENCY_DEFAULT}).")  # fmt: skip
@config_option
def demo(simulated: bool, seed: int, geo: bool, latency_file: str | None, config_path: str) -> None:
    """Three regions: one is drained and brought back, one goes dark and comes back, and no
    money is lost (audited)."""
    out = Console(highlight=False, soft_wrap=True)
    if latency_file is not None and not geo:
        raise click.UsageError("--latency-file is for --geo")
    if simulated:
        if geo:
            raise click.UsageError("--geo runs real processes: it does not go with --simulated")
        _simulated(out, seed)
        return
    topology = load_config(config_path)  # a usage error before anything starts
    latency: GeoLatency | None = None
    if geo:
        try:
            latency = load_latency_file(latency_file or default_latency_path(),
                                        [r.name for r in topology.regions])  # fmt: skip
        except LatencyFileError as error:
            raise click.UsageError(str(error)) from error
    from hongbao.demo.live import run_live_demo

    where = "three cities apart" if geo else "a real cluster on this machine"
    out.print(f"[bold]hongbao demo[/bold]: {where} "
              f"({config_path}, fresh ports, temporary data)")  # fmt: skip
    started = time.monotonic()

    def say(text: str) -> None:
        out.print(f"  [dim]{time.monotonic() - started:5.2f}s[/dim]  {text}")

    ctrl_c = CtrlC()
    previous = signal.signal(signal.SIGINT, ctrl_c)
    try:
        try:
            result = run_live_demo(Path(config_path), say, seed=seed, latency=latency)
        except Exception as error:
            time.sleep(INTERRUPT_GRACE_S)  # a Ctrl-C that caused the error is raised here
            if ctrl_c.count:
                raise KeyboardInterrupt from None  # it came first and was swallowed
            if not isinstance(error, (RuntimeError, TimeoutError, OSError)):
                raise
            out.print(f"[red]the demo failed[/red]: {error}", markup=True)
            raise SystemExit(1) from None
    except KeyboardInterrupt:
        stopped = "the nodes, routers and proxies were" if geo else "the nodes and routers were"
        out.print(f"interrupted: {stopped} stopped and their data removed")
        raise SystemExit(EXIT_INTERRUPTED) from None
    finally:
        signal.signal(signal.SIGINT, previous)
    if not result.ok:
        raise SystemExit(1)


def _simulated(out: Console, seed: int) -> None:
    out.print("[bold]hongbao demo[/bold] (simulated: shenzhen, shanghai, tianjin; "
              f"one node each; seed {seed})")  # fmt: skip
    report = run_demo(seed)
    for step in report.steps:
        out.print(f"  [dim]t={step.tick:>4}[/dim]  {step.text}")
    if not report.ok:
        out.print(f"[red]invariant broken[/red]: {report.failure}", markup=True)
        raise SystemExit(1)
    out.print(f"[green]invariants held[/green] after every step ({INVARIANTS}); "
              f"{report.commits} writes acknowledged, none lost.")  # fmt: skip
