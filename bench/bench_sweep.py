"""The same 24-run sweep sequentially, on 1 Dask worker and on 2, cold and warm cache.

Sweep: Bond+LJ loop (n = 200 by default), GD / CG / GNN x 4 learning rates x 2 seeds, 2000
steps each, fixed budget (stopping "none"), so every configuration does the same work.

  sequential  one process, engine.methods.execute run after run (in-process JIT cache)
  1 worker    engine.cluster.run_sweep on an embedded LocalCluster of 1 worker
  2 workers   the same on 2 workers (one per core)

Each Dask configuration runs twice: with an empty persistent compilation cache (cold), then
with the cache the first pass filled (warm), each into a fresh output folder. Reported: total
wall time, runs per minute, and the share of the workers' time spent compiling (sum of the
runs' compile_s over workers x total time). Results: bench/results/sweep.json and a table in
docs/benchmarks.md.

Run:  .venv/bin/python -m bench.bench_sweep [--n 200] [--steps 2000] [--quick]
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import time
from pathlib import Path

from engine import EnergyConfig, RunSpec, ScheduleConfig, SystemConfig, methods
from engine.cluster import run_sweep
from engine.sweeps import SweepSpec, expand, parse_vary

from .common import DOCS, RESULTS, machine, replace_marked

OUT = RESULTS / "sweep.json"


def bench_sweep(n: int, steps: int, lrs: str) -> SweepSpec:
    base = RunSpec(
        system=SystemConfig(kind="bond-lj-loop", n=n),
        energy=EnergyConfig(soft_core="monotone"),
        schedule=ScheduleConfig(max_steps=steps, stopping="none"),
    )
    axes = (parse_vary(f"optim.learning_rate={lrs}"),)
    return SweepSpec(base, axes, ("gd", "cg", "gnn"), (0, 1), name="bench-sweep")


def sequential(sweep: SweepSpec) -> dict:
    t0 = time.perf_counter()
    compile_s = 0.0
    for run in expand(sweep):
        result = methods.execute(run.spec)
        compile_s += result.timings.get("compile_s", 0.0)
    total = time.perf_counter() - t0
    return {"total_s": total, "compile_share": compile_s / total}


def on_cluster(sweep: SweepSpec, workers: int, cache: Path, scratch: Path, label: str) -> dict:
    out = scratch / label
    t0 = time.perf_counter()
    outcome = run_sweep(sweep, out, n_workers=workers, cache_dir=str(cache))
    total = time.perf_counter() - t0
    compile_s = sum(r["compile_s"] for r in outcome.rows if r["compile_s"] == r["compile_s"])
    failed = sum(r["status"] == "failed" for r in outcome.rows)
    return {"total_s": total, "compile_share": compile_s / (workers * total), "failed": failed}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=200)
    parser.add_argument("--steps", type=int, default=2000)
    parser.add_argument("--lrs", default="0.005,0.01,0.02,0.04")
    parser.add_argument("--quick", action="store_true", help="n=50, 100 steps (a smoke test)")
    args = parser.parse_args()
    if args.quick:
        args.n, args.steps = 50, 100
    sweep = bench_sweep(args.n, args.steps, args.lrs)
    n_runs = sweep.n_runs
    rows = {"sequential": sequential(sweep)}
    scratch = Path(tempfile.mkdtemp(prefix="bench-sweep-"))
    try:
        for workers in (1, 2):
            cache = scratch / f"cache-{workers}"
            for temp in ("cold", "warm"):
                label = f"{workers} worker{'s' if workers > 1 else ''}, {temp} cache"
                rows[label] = on_cluster(sweep, workers, cache, scratch, label.replace(" ", "_"))
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    for r in rows.values():
        r["runs_per_min"] = 60 * n_runs / r["total_s"]
    result = {"machine": machine(), "runs": n_runs, "n": args.n, "steps": args.steps, "rows": rows}
    if not args.quick:
        OUT.write_text(json.dumps(result, indent=1) + "\n")
    lines = [
        f"{n_runs}-run sweep (Bond+LJ n = {args.n}, GD/CG/GNN x 4 learning rates x 2 seeds, "
        f"{args.steps} steps each):",
        "",
        "| configuration | total s | runs / min | share compiling |",
        "|---|---|---|---|",
    ]
    for label, r in rows.items():
        lines.append(
            f"| {label} | {r['total_s']:.1f} | {r['runs_per_min']:.1f} | "
            f"{100 * r['compile_share']:.0f} % |"
        )
    print("\n".join(lines))
    if not args.quick:
        replace_marked(DOCS / "benchmarks.md", "sweep-table", "\n".join(lines))


if __name__ == "__main__":
    main()
