"""Where each operation's CPU goes: microseconds per operation, stage by stage, per kind.

Why: issue 9 asks for ten times the throughput; this table says which stage to make
small first, and shows the change afterwards. For each kind (deposit, same-shard
transfer, cross-shard transfer, grab) it times the real code of every stage in one
process (``_op_cost_inproc``: client encode, the router's Forwarder, the leader's protobuf
parse, validation, proposal encoding, the Raft cores and log append on three real
runtimes over real LMDB, apply on the leader and on each follower, result encoding, LMDB
commits, the courier's rounds for cross-shard credits), in thread CPU time. Then it runs
the same operations end to end on a real local cluster (``_op_cost_e2e``: three nodes and
their routers, fsync on) and reads every process's CPU, so the table shows how much of the
total the stages explain; the rest is gRPC, asyncio and Python overhead between them.

    .venv/bin/python benchmarks/op_cost.py [--ops 2000] [--runs 3] [--batch 100]
        [--kinds deposit,transfer-same-shard,transfer-cross-shard,grab]
        [--concurrency 16] [--no-end-to-end] [--no-fsync] [--profile] [--json]

Figures are medians over ``--runs``. ``--batch``: operations per client Batch call, and
about the commands a leader packs into one log entry (a loaded leader packs concurrent
calls together). ``--profile``: one more in-process run under cProfile, top functions
printed (to stderr with ``--json``). Linux only (/proc).
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import io
import json
import logging
import pstats
import statistics
import sys
from collections.abc import Sequence
from pathlib import Path

from _op_cost_e2e import EndToEnd, run_end_to_end
from _op_cost_inproc import STAGES, KindRun, run_inprocess
from _op_cost_ops import KINDS
from rich.console import Console
from rich.table import Table

STAGES_SUM = "sum of the stages above"
E2E_ROWS = (
    "end to end: all processes",
    "  nodes",
    "  routers",
    "  client (this process)",
    "  idle cost over the load's time (an upper bound)",
    "rest: gRPC, asyncio, Python between stages (at least)",
)
PROFILE_TOP = 30


Figures = dict[str, dict[str, float]]  # kind -> row -> us per op
Shapes = dict[str, dict[str, object]]  # kind -> what the runs looked like (for --json)


def inprocess_medians(
    config: Path, kinds: Sequence[str], args: argparse.Namespace
) -> tuple[Figures, Shapes]:
    """Median us per op by kind and stage over the runs, and the shapes (for --json)."""
    runs: list[dict[str, KindRun]] = []
    for run in range(args.runs):
        runs.append(asyncio.run(run_inprocess(config, kinds, args.ops, args.batch, 100 * run,
                                              fsync=not args.no_fsync)))  # fmt: skip
    medians: dict[str, dict[str, float]] = {}
    shapes: dict[str, dict[str, object]] = {}
    for kind in kinds:
        medians[kind] = {
            stage: statistics.median(r[kind].ns.get(stage, 0) / 1000 / r[kind].ops for r in runs)
            for stage in STAGES
        }
        medians[kind][STAGES_SUM] = sum(medians[kind][s] for s in STAGES)
        last = runs[-1][kind]
        shapes[kind] = {
            "ops": last.ops,
            "log_entries": last.entries,
            "commands_per_entry": last.ops / max(1, last.entries),
            "courier_detail_us_per_op": {k: v / 1000 / last.ops
                                         for k, v in sorted(last.courier_detail_ns.items())},
        }  # fmt: skip
    return medians, shapes


def end_to_end_medians(figures: dict[str, list[EndToEnd]], medians: dict[str, dict[str, float]]
                       ) -> dict[str, float]:  # fmt: skip
    """Adds the end-to-end rows to ``medians``; returns ops/s by kind."""
    rates: dict[str, float] = {}
    for kind, samples in figures.items():
        row = medians[kind]
        total = statistics.median(s.total_us for s in samples)
        idle = statistics.median(s.idle_us for s in samples)
        row[E2E_ROWS[0]] = total
        row[E2E_ROWS[1]] = statistics.median(s.nodes_us for s in samples)
        row[E2E_ROWS[2]] = statistics.median(s.routers_us for s in samples)
        row[E2E_ROWS[3]] = statistics.median(s.client_us for s in samples)
        row[E2E_ROWS[4]] = idle
        row[E2E_ROWS[5]] = total - idle - row[STAGES_SUM]
        rates[kind] = statistics.median(s.ops_per_s for s in samples)
    return rates


def print_table(medians: dict[str, dict[str, float]], rates: dict[str, float],
                args: argparse.Namespace) -> None:  # fmt: skip
    kinds = list(medians)
    fsync = "off" if args.no_fsync else "on"
    table = Table(title=f"CPU us per operation (median of {args.runs} runs, {args.ops} ops, "
                        f"batches of {args.batch}, fsync {fsync})")  # fmt: skip
    table.add_column("stage")
    for kind in kinds:
        table.add_column(kind, justify="right")
    rows = [*STAGES, STAGES_SUM, *(E2E_ROWS if rates else ())]
    for stage in rows:
        if stage in (STAGES_SUM, E2E_ROWS[0]):
            table.add_section()
        table.add_row(stage, *(f"{medians[k].get(stage, 0.0):,.1f}" for k in kinds))
    if rates:
        table.add_row("end-to-end ops/s (load window)", *(f"{rates[k]:,.0f}" for k in kinds))
    Console(width=max(100, 52 + 22 * len(kinds))).print(table)


def profile(config: Path, kinds: Sequence[str], args: argparse.Namespace) -> str:
    """Top functions (by own time) of one more in-process run, under cProfile."""
    profiler = cProfile.Profile()
    profiler.enable()
    asyncio.run(run_inprocess(config, kinds, args.ops, args.batch, 7, fsync=not args.no_fsync))
    profiler.disable()
    out = io.StringIO()
    pstats.Stats(profiler, stream=out).sort_stats("tottime").print_stats(PROFILE_TOP)
    return out.getvalue()


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--config", type=Path, default=Path("configs/local.toml"))
    parser.add_argument("--ops", type=int, default=2_000, help="operations per kind per run")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--batch", type=int, default=100, help="operations per Batch call")
    parser.add_argument("--kinds", default=",".join(KINDS))
    parser.add_argument("--concurrency", type=int, default=16, help="end-to-end callers")
    parser.add_argument("--no-end-to-end", action="store_true", help="in-process stages only")
    parser.add_argument("--no-fsync", action="store_true", help="in-process LMDB unsynced")
    parser.add_argument("--profile", action="store_true")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    for kind in args.kinds.split(","):
        if kind not in KINDS:
            parser.error(f"unknown kind {kind!r}: choose from {', '.join(KINDS)}")
    if args.ops < 1 or args.runs < 1 or not 1 <= args.batch <= 250:
        parser.error("--ops and --runs must be positive, --batch in 1..250")
    return args


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    logging.disable(logging.WARNING)  # slow-fsync warnings of a busy disk are not results
    kinds = args.kinds.split(",")
    medians, shapes = inprocess_medians(args.config, kinds, args)
    rates: dict[str, float] = {}
    if not args.no_end_to_end:
        figures = run_end_to_end(args.config, kinds, args.ops, args.batch, args.runs,
                                 args.concurrency)  # fmt: skip
        rates = end_to_end_medians(figures, medians)
        for kind, samples in figures.items():
            shapes[kind]["end_to_end_retried_ops"] = [s.retried_ops for s in samples]
    if args.json:
        report = {"us_per_op": medians, "ops_per_s": rates, "shapes": shapes,
                  "options": {k: str(v) for k, v in vars(args).items()}}  # fmt: skip
        print(json.dumps(report, indent=2))
    else:
        print_table(medians, rates, args)
    if args.profile:
        print(profile(args.config, kinds, args), file=sys.stderr if args.json else sys.stdout)


if __name__ == "__main__":
    main()
