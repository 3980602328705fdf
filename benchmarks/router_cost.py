"""The router's cost, mix by mix: ``hongbao bench --local --compare-targets`` per mix.

Why: a router adds a hop (client -> router -> leader), so the figure that matters is
how much it costs relative to a client that goes to the leaders itself, measured on the
same cluster in the same runs (the bench alternates the targets within each run). This
runs the bench once per mix, each on a fresh local cluster of the topology (nodes and
routers, fsync on, fresh ports, temporary data), and prints, per mix, the median
figures through the routers and directly to the nodes and the median of the per-run
ratios routers / nodes.

    .venv/bin/python benchmarks/router_cost.py [--duration-s 5] [--runs 3] [--json]
        [--mixes deposit,transfer,envelope,mixed,hot-envelope] [--concurrency N]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
MIXES = ("deposit", "transfer", "envelope", "mixed", "hot-envelope")
RUN_TIMEOUT_S = 900.0


def bench(
    mix: str, duration_s: float, runs: int, config: str, extra: list[str]
) -> dict[str, object]:
    command = [
        sys.executable, "-m", "hongbao.cli", "bench", "--local", "--compare-targets",
        "--mix", mix, "--duration-s", str(duration_s), "--runs", str(runs),
        "--config", config, "--json", *extra,
    ]  # fmt: skip
    done = subprocess.run(
        command, capture_output=True, text=True, timeout=RUN_TIMEOUT_S, cwd=REPO, check=False
    )
    if done.returncode != 0:
        raise SystemExit(f"bench --mix {mix} failed ({done.returncode}):\n{done.stderr}")
    result: dict[str, object] = json.loads(done.stdout)
    return result


def headline(target: dict[str, object]) -> str:
    hot = target.get("hot_envelope")
    transfer = target["latency_ms"]["transfer"]  # type: ignore[index]
    if isinstance(hot, dict):
        empty = hot["time_to_empty_ms"]
        return (f"{hot['grab_attempts_per_s']:>9,.0f} grab attempts/s, empty p50 "
                f"{empty['p50']:.0f} ms p99 {empty['p99']:.0f} ms")  # fmt: skip
    return f"{target['ops_per_s']:>9,.0f} ops/s, single transfer p50 {transfer['p50']:.2f} ms"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mixes", default=",".join(MIXES))
    parser.add_argument("--duration-s", type=float, default=5.0)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--config", default="configs/local.toml")
    parser.add_argument("--concurrency", type=int, default=None,
                        help="passed to hongbao bench (default: its own)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    extra = [] if args.concurrency is None else ["--concurrency", str(args.concurrency)]
    results: dict[str, dict[str, object]] = {}
    for mix in args.mixes.split(","):
        result = bench(mix, args.duration_s, args.runs, args.config, extra)
        results[mix] = result
        if not args.json:
            targets = result["targets"]
            assert isinstance(targets, dict)
            ratios = result["routers_over_nodes"]
            assert isinstance(ratios, dict)
            shown = ", ".join(f"{k} {v:.2f}" for k, v in ratios.items() if v is not None)
            print(f"{mix}:")
            for name in ("routers", "nodes"):
                print(f"  {name:>7}: {headline(targets[name])}")
            print(f"  routers/nodes (median of per-run ratios): {shown}")
    if args.json:
        print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
