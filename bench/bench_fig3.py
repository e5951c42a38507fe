"""Figure 3 of the paper: final energy vs wall time for GD, CG and GNN on the loop systems.

Cases: {Bond+LJ, pure LJ} x n in {400, 1000} x {gd, cg, gnn} x 5 seeds (a different x0 per
seed), under three protocols:
  paper    - the reference protocol and best published hyperparameters (engine.presets.paper_spec)
  improved - the same hyperparameters on the fixed energy (monotone soft core, deterministic
             all-pairs repulsion) with the moving-average stopping rule (improved_spec)
  tuned    - improved, with CG and GNN started at x0 and learning rates from a small sweep
             (tuned_spec; bench/bench_fig3_tuning.py)
Wall time includes slow-mode computation (computed once per seed and shared by CG and GNN,
each charged its full time) and excludes JIT compilation (reported separately).
``final_energy`` is the full deterministic energy of the run's own energy model;
``final_energy_ref`` re-evaluates the final structure under the reference energy with
deterministic all-pairs repulsion, so both protocols (and the paper's numbers) compare on
one scale. Tables and plots use ``final_energy_ref``.

Each case (protocol, system, n) is a sweep (engine.sweeps.SweepSpec.from_method_specs: the
protocol's per-method specs x the seeds) run by engine.cluster on an embedded Dask cluster,
the same code path as ``python -m engine sweep`` and the workbench's Sweep panel.
Resumable: every finished run appends a line to bench/results/fig3_runs.jsonl and is skipped
next time (the sweep itself also resumes from its bundles under runs/bench/fig3/).
Run:  .venv/bin/python -m bench.bench_fig3 [--sizes 400,1000] [--seeds 5] [--workers 2]
then         .venv/bin/python -m bench.bench_fig3 --report   (table + PNG from the runs file)
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

import jax.numpy as jnp
import numpy as np

from engine import EnergyConfig, build_system, io, make_energy
from engine.cluster import run_sweep
from engine.presets import improved_spec, paper_spec, tuned_spec
from engine.sweeps import SweepSpec

from .common import DOCS, RESULTS, machine, replace_marked

RUNS = RESULTS / "fig3_runs.jsonl"
BUNDLES = Path("runs") / "bench" / "fig3"  # the sweeps' bundles (git-ignored)
SYSTEMS = ("bond-lj-loop", "lj-loop")
METHODS = ("gd", "cg", "gnn")
PROTOCOLS = {"paper": paper_spec, "improved": improved_spec, "tuned": tuned_spec}

# method.md §8: reference mean ± sd of final energy and mean wall time (their GPU) for the
# settings that paper_spec uses. None: not reported.
REFERENCE = {
    ("lj-loop", 1000, "gd"): (-0.00665, 0.0012, 7.7),
    ("lj-loop", 1000, "cg"): (-0.0720, 0.0102, 12.2),
    ("lj-loop", 1000, "gnn"): (-0.0327, 0.041, 11.0),
    ("bond-lj-loop", 1000, "gd"): (-0.02310, 0.00012, 20.6),
    ("bond-lj-loop", 1000, "cg"): (-0.02339, 0.00003, 22.6),
    ("bond-lj-loop", 1000, "gnn"): (-0.02287, 0.0006, 8.0),
    ("lj-loop", 400, "gd"): (0.2403, None, 7.1),
    ("lj-loop", 400, "cg"): (-0.0907, 0.0128, 6.9),
    ("lj-loop", 400, "gnn"): (-0.0344, 0.0033, 4.3),
    ("bond-lj-loop", 400, "gd"): (-0.02305, None, 16.9),
    ("bond-lj-loop", 400, "cg"): (-0.02320, None, 22.3),
    ("bond-lj-loop", 400, "gnn"): (-0.02245, 0.0008, 6.8),
}


def done_keys() -> set:
    if not RUNS.exists():
        return set()
    keys = set()
    for line in RUNS.read_text().splitlines():
        r = json.loads(line)
        keys.add((r["protocol"], r["system"], r["n"], r["method"], r["seed"]))
    return keys


def fig3_sweep(protocol: str, system_kind: str, n: int, seeds, max_steps: int) -> SweepSpec:
    """One Figure 3 case as a sweep: the protocol's per-method specs x the seeds."""
    specs = {m: PROTOCOLS[protocol](system_kind, n, m, 0, max_steps=max_steps) for m in METHODS}
    name = f"fig3-{protocol}-{system_kind}-{n}"
    return SweepSpec.from_method_specs(specs, seeds=tuple(seeds), name=name)


def legacy_row(protocol: str, sweep: SweepSpec, row: dict, folder: Path) -> dict:
    """A sweep row in fig3_runs.jsonl's columns, with the final structure re-evaluated under
    the reference energy (all-pairs repulsion, float64) so that protocols compare on one scale."""
    spec = sweep.method_spec(row["method"]).replace(seed=row["seed"])
    system = build_system(spec.system, spec.seed)
    ref_energy = make_energy(system, EnergyConfig(dtype="float64")).energy_fn
    x_final = io.read_bundle(folder)["x_final"]
    return {
        "protocol": protocol, "system": spec.system.kind, "n": spec.system.n,
        "method": row["method"], "seed": row["seed"], "status": row["status"],
        "final_energy": row["final_energy"], "best_energy": row["best_energy"],
        "final_energy_ref": float(ref_energy(jnp.asarray(x_final, jnp.float64))),
        "wall_time_s": row["wall_time_s"], "steps": row["steps"], "modes_s": row["modes_s"],
        "compile_s": row["compile_s"],
        "bond_ok_frac": row["final_bond_ok_frac"],
        "loop_contact_frac": row["final_loop_contact_frac"],
        "collapsed_pairs": row["final_collapsed_pairs"],
    }  # fmt: skip


def collect(args):
    """Run every missing case through the sweep machinery (engine.cluster) and append its
    rows; bundles go to runs/bench/fig3/<case>/ (not committed)."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    done = done_keys()
    for n in args.sizes:
        for system_kind in args.systems:
            for protocol in args.protocols:
                keys = [
                    (protocol, system_kind, n, m, s) for m in METHODS for s in range(args.seeds)
                ]
                if all(k in done for k in keys):
                    continue
                sweep = fig3_sweep(protocol, system_kind, n, range(args.seeds), args.max_steps)
                out = BUNDLES / sweep.name
                outcome = run_sweep(sweep, out, n_workers=args.workers)
                for row in outcome.rows:
                    if (protocol, system_kind, n, row["method"], row["seed"]) in done:
                        continue
                    new = legacy_row(protocol, sweep, row, out / "runs" / row["key"])
                    with open(RUNS, "a") as fh:
                        fh.write(json.dumps(new) + "\n")
                    print(
                        f"{protocol:8s} {system_kind:12s} n={n:4d} seed={new['seed']} "
                        f"{new['method']:3s}: E={new['final_energy']:+.5f} "
                        f"(ref {new['final_energy_ref']:+.5f}) t={new['wall_time_s']:.1f}s "
                        f"steps={new['steps']:.0f} {new['status']}",
                        flush=True,
                    )


def aggregate() -> list[dict]:
    rows = [json.loads(line) for line in RUNS.read_text().splitlines()]
    groups: dict = {}
    for r in rows:
        groups.setdefault((r["protocol"], r["system"], r["n"], r["method"]), []).append(r)
    table = []
    for (protocol, system_kind, n, method), rs in sorted(groups.items()):
        e = np.array([r["final_energy_ref"] for r in rs])
        t = np.array([r["wall_time_s"] for r in rs])
        table.append(
            {
                "protocol": protocol,
                "system": system_kind,
                "n": n,
                "method": method,
                "runs": len(rs),
                "energy_mean": float(e.mean()),
                "energy_sd": float(e.std(ddof=1)) if len(e) > 1 else math.nan,
                "energy_best": float(e.min()),
                "time_mean": float(t.mean()),
                "time_sd": float(t.std(ddof=1)) if len(t) > 1 else math.nan,
                "steps_mean": float(np.mean([r["steps"] for r in rs])),
                "modes_s_mean": float(np.mean([r["modes_s"] for r in rs])),
                "loop_contact_mean": float(np.mean([r["loop_contact_frac"] for r in rs])),
                "collapsed_mean": float(np.mean([r["collapsed_pairs"] for r in rs])),
                "diverged": sum(r["status"] == "diverged" for r in rs),
            }
        )
    return table


def report():
    table = aggregate()
    (RESULTS / "fig3.json").write_text(
        json.dumps(
            {
                "machine": machine(),
                "table": table,
                "reference": {"|".join(map(str, k)): v for k, v in REFERENCE.items()},
            },
            indent=2,
        )
        + "\n"
    )
    lines = [
        "| system | n | protocol | method | runs | final E (mean ± sd) | best run E | time s "
        "(mean) | steps | modes s | loop contacts | collapsed pairs | reference E (mean ± sd) | "
        "reference t (GPU) |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in table:
        ref = REFERENCE.get((r["system"], r["n"], r["method"]))
        ref_txt = (
            ("—", "—")
            if ref is None
            else (f"{ref[0]:+.5f}" + (f" ± {ref[1]:.5f}" if ref[1] else ""), f"{ref[2]:.1f}")
        )
        if r["protocol"] != "paper":
            ref_txt = ("", "")
        lines.append(
            f"| {r['system']} | {r['n']} | {r['protocol']} | {r['method']} | {r['runs']} | "
            f"{r['energy_mean']:+.5f} ± {r['energy_sd']:.5f} | {r['energy_best']:+.5f} | "
            f"{r['time_mean']:.1f} | "
            f"{r['steps_mean']:.0f} | {r['modes_s_mean']:.2f} | {r['loop_contact_mean']:.2f} | "
            f"{r['collapsed_mean']:.1f} | "
            f"{ref_txt[0]} | {ref_txt[1]} |"
        )
    (RESULTS / "fig3_table.md").write_text("\n".join(lines) + "\n")
    replace_marked(DOCS / "benchmarks.md", "fig3-table", "\n".join(lines))
    print("\n".join(lines))
    plot(table)


def plot(table):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cases = sorted({(r["system"], r["n"]) for r in table})
    fig, axes = plt.subplots(1, len(cases) * 2, figsize=(5 * len(cases) * 2, 4.2), squeeze=False)
    colors = {"gd": "tab:blue", "cg": "tab:orange", "gnn": "tab:green"}
    markers = {"paper": "o", "improved": "s", "tuned": "^"}
    for i, (system_kind, n) in enumerate(cases):
        ax, ax_ref = axes[0][2 * i], axes[0][2 * i + 1]
        for r in table:
            if (r["system"], r["n"]) != (system_kind, n):
                continue
            ax.errorbar(
                r["time_mean"],
                r["energy_mean"],
                yerr=0 if math.isnan(r["energy_sd"]) else r["energy_sd"],
                xerr=0 if math.isnan(r["time_sd"]) else r["time_sd"],
                fmt=markers[r["protocol"]],
                color=colors[r["method"]],
                label=f"{r['method']} ({r['protocol']})",
                capsize=3,
            )
        for m in METHODS:
            ref = REFERENCE.get((system_kind, n, m))
            if ref:
                ax_ref.errorbar(
                    ref[2],
                    ref[0],
                    yerr=ref[1] or 0,
                    fmt="D",
                    color=colors[m],
                    label=f"{m} (paper CSV)",
                    capsize=3,
                )
        label = {"lj-loop": "pure LJ", "bond-lj-loop": "Bond+LJ"}[system_kind]
        ax.set_title(f"{label}, n={n}: ours (2-core CPU)")
        ax_ref.set_title(f"{label}, n={n}: reference CSV (GPU)")
        for a in (ax, ax_ref):
            a.set_xlabel("wall time incl. slow modes (s)")
            a.set_ylabel("final energy")
            if a.get_legend_handles_labels()[0]:
                a.legend(fontsize=7)
            a.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(RESULTS / "fig3.png", dpi=110)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="400,1000")
    parser.add_argument("--systems", default=",".join(SYSTEMS))
    parser.add_argument("--protocols", default="paper,improved")
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--max-steps", type=int, default=20000)
    parser.add_argument("--report", action="store_true", help="only aggregate existing runs")
    parser.add_argument("--workers", type=int, default=None, help="Dask workers (default: cores)")
    args = parser.parse_args()
    args.sizes = [int(s) for s in args.sizes.split(",")]
    args.systems = args.systems.split(",")
    args.protocols = args.protocols.split(",")
    if not args.report:
        collect(args)
    report()


if __name__ == "__main__":
    main()
