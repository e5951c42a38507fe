"""Protein benchmark (issue 3): GD, CG, GNN and OpenMM minimization on all-atom proteins.

Cases, in priority order (``--cases`` picks a subset):
  2jof-unfolded  Trp-cage 2JOF, start = data/pdb/2JOF_unfolded_T1000.pdb, reference = native
  2jof-extended  Trp-cage 2JOF from an extended chain
  1plw-extended  Met-enkephalin 1PLW from an extended chain
  2wxc-native    BBL 2WXC from the (hydrogen-added) native structure
Energy: AMBER ff14SB + OBC2 implicit solvent (model "amber-obc2"), float32, all pairs.
Methods (METHODS: engine.presets.protein_spec, the workbench's Trp-cage preset, with a few
changes; Adam, elementwise clip, one schedule for all):
  gd         plain positions;  gd-4e-3  the same with lr 4e-3
  cg         linear x = x0 + Psi z, Psi = K lowest Hessian modes at x0 (cartesian)
  gnn        slow-mode GNN in displacement form, same modes
  gnn-bonds  the same GNN on the covalent graph A_bond + 0.2 I (no modes)
  openmm     OpenMM LocalEnergyMinimizer (L-BFGS) on the identical OpenMM System
Schedule: the preset's step budget and reference early stopping; CG/GNN switch to plain
positions when their own stopping rule fires (min_delta x 10) or after the stage-1 budget.
The slow modes are computed once per case (the start is fixed) and shared by CG and GNN;
each run is charged their full time (second call: Hessian compilation excluded, like the
runs' own). The start is the same for every seed: GD, CG and OpenMM repeat one computation
(``--det-seeds`` timing samples); the seed changes the GNNs' initialization.

Resumable: every finished run appends a JSON line to bench/results/protein_runs.jsonl
(with downsampled energy / CA-RMSD vs wall time curves) and is skipped next time.
Run:  .venv/bin/python -m bench.bench_protein [--cases 2jof-unfolded,2wxc-native] [--seeds 5]
then  .venv/bin/python -m bench.bench_protein --report
(bench/results/protein.json, protein.png, and a table section in docs/benchmarks-protein.md).
"""

from __future__ import annotations

import argparse
import json
import math
import pickle
import sys
import time
from collections import Counter
from pathlib import Path

import numpy as np

from engine import analysis

from .common import RESULTS, machine

DATA = Path("/work/shared/data/pdb")
RUNS = RESULTS / "protein_runs.jsonl"
CACHE = Path("/tmp/bench_protein_cache")  # slow modes per case (not committed)
MODES_TIMING = RESULTS / "protein_modes_timing.json"
DOC = Path(__file__).resolve().parent.parent / "docs" / "benchmarks-protein.md"
HEADING = "## Optimization benchmark: GD, CG, GNN and OpenMM minimization"

CASES = {
    "2jof-unfolded": ("2JOF_native.pdb", "2JOF_unfolded_T1000.pdb"),
    "2jof-extended": ("2JOF_native.pdb", "extended"),
    "1plw-extended": ("1PLW_native.pdb", "extended"),
    "2wxc-native": ("2WXC_native.pdb", "native"),
}
# method -> (protein_spec method, changes to it). Stage-1 lrs (the preset's) from 300-step
# trials on 2JOF unfolded: CG 4e-4 vs 1.6e-3; GNN 1e-4 vs 4e-4 vs 1.6e-3 (reference: 8e-5),
# the same three for the bond-graph GNN.
METHODS = {
    "gd": ("gd", {}),
    "gd-4e-3": ("gd", {"optim.learning_rate": 4e-3}),  # method.md §6.4's GD lr from native/unfolded
    "cg": ("cg", {}),
    "gnn": ("gnn", {}),  # slow-mode graph
    "gnn-bonds": ("gnn", {"reparam.propagation": "bonds"}),  # covalent graph A_bond + 0.2 I
    "openmm": ("openmm-min", {}),
}
DETERMINISTIC = (
    "gd",
    "gd-4e-3",
    "cg",
    "openmm",
)  # fixed start: the seed changes nothing (OpenMM: round-off)
CURVE_POINTS = 120


def system_config(case: str):
    from engine import SystemConfig

    pdb, start = CASES[case]
    start = start if start in ("extended", "native") else str(DATA / start)
    return SystemConfig(kind="protein", pdb=str(DATA / pdb), start=start, model="amber-obc2")


def make_spec(
    case: str, method: str, seed: int, max_steps: int | None = None, stage1_lr: float | None = None
):
    """engine.presets.protein_spec (the workbench's Trp-cage preset) on ``case``, per METHODS.

    max_steps None keeps the preset's budget; stage1_lr overrides the preset's (for trials).
    """
    from engine.presets import protein_spec

    base, changes = METHODS[method]
    spec = protein_spec(base, seed, **({"max_steps": max_steps} if max_steps else {}))
    extra = {"optim.stage1_lr": stage1_lr} if stage1_lr else {}
    label = (
        spec.method_label if method == "openmm" else method
    )  # OpenMM keeps the preset's "openmm-min"
    return spec.replace(
        system=system_config(case), frame_every=10**6, method_label=label, **changes, **extra
    )


def settings() -> dict:
    """What every run shares, and each method's map and learning rates, read off the specs."""
    case = next(iter(CASES))
    gnn = make_spec(case, "gnn", 0)
    specs = {m: make_spec(case, m, 0) for m in METHODS}
    return {
        "clip_elementwise": gnn.optim.clip_value,
        "k_modes": gnn.reparam.n_modes,
        "hidden": gnn.reparam.hidden,
        "max_steps": gnn.schedule.max_steps,
        "stage1_max_steps": gnn.schedule.stage1_max_steps,
        "min_delta": gnn.schedule.min_delta,
        "patience_checks": gnn.schedule.patience,
        "check_every": gnn.chunk_size,
        "lr": specs["gd"].optim.learning_rate,
        "methods": {
            m: {
                "kind": s.reparam.kind,
                "propagation": s.reparam.propagation if s.reparam.kind == "gnn" else None,
                "stage1_lr": s.optim.stage1_lr,
                "lr": None if m == "openmm" else s.optim.learning_rate,
            }
            for m, s in specs.items()
        },
    }


def done_keys() -> set:
    if not RUNS.exists():
        return set()
    return {
        (r["case"], r["method"], r["seed"]) for r in map(json.loads, RUNS.read_text().splitlines())
    }


def downsample(metrics: dict, n: int = CURVE_POINTS) -> dict:
    m = len(metrics["energy"])
    idx = np.unique(np.linspace(0, m - 1, min(n, m)).round().astype(int))
    out = {}
    for key in ("step", "stage", "wall_time_s", "energy", "rmsd_ca"):
        if key in metrics:
            out[key] = [float(v) for v in np.asarray(metrics[key], float)[idx]]
    return out


def get_modes(case: str, system, spec):
    """Hessian slow modes at x0, computed once per case (cached under /tmp).

    Computed twice in a row: the first call includes XLA compiling the Hessian, the second
    does not. Runs are charged the second (their own compilation is excluded as well); both
    times go to MODES_TIMING.
    """
    from engine import make_energy
    from engine.run import compute_modes

    CACHE.mkdir(parents=True, exist_ok=True)
    k = spec.reparam.n_modes
    path = CACHE / f"{case}_k{k}.pkl"
    if path.exists():
        modes = pickle.loads(path.read_bytes())
        if modes.vectors.shape[0] == 3 * system.n_atoms:
            return modes
    model = make_energy(system, spec.energy)
    cold = compute_modes(spec, system, model)
    modes = compute_modes(spec, system, model)
    assert np.allclose(np.abs(cold.values), np.abs(modes.values), rtol=1e-6), (
        "mode computation not reproducible"
    )
    path.write_bytes(pickle.dumps(modes))
    timing = json.loads(MODES_TIMING.read_text()) if MODES_TIMING.exists() else {}
    timing[case] = {
        "n_dof": 3 * system.n_atoms,
        "k": k,
        "first_call_s": cold.seconds,
        "second_call_s": modes.seconds,
        "method": modes.method,
    }
    MODES_TIMING.write_text(json.dumps(timing, indent=2) + "\n")
    print(
        f"  slow modes: k={k} in {modes.seconds:.1f} s (first call {cold.seconds:.1f} s)",
        flush=True,
    )
    return modes


def run_one(case: str, method: str, seed: int, spec, system, modes) -> dict:
    from engine import run
    from engine.protein.baseline import gb_force_name, minimizer_system, run_openmm_result

    t = time.perf_counter()
    if method == "openmm":
        result = run_openmm_result(spec, "openmm-min", system=system)
    else:
        result = run(spec, system=system, modes=modes if spec.reparam.needs_modes else None)
    s = result.summary()
    m = result.metrics
    steps = max(int(m["step"][-1]), 1)
    run_s = s["wall_time_s"] - s["modes_s"]
    row = {
        "case": case,
        "method": method,
        "seed": seed,
        **(
            {"gb_force": gb_force_name(minimizer_system(system.payload["openmm_system"]))}
            if method == "openmm"
            else {}
        ),
        "n_atoms": int(system.n_atoms),
        "status": result.status,
        "message": result.message,
        "steps": s["steps"],
        "final_energy": s["final_energy"],
        "best_energy": s["best_energy"],
        "initial_energy": float(m["energy"][0]),
        "final_rmsd_ca": float(m["rmsd_ca"][-1]) if "rmsd_ca" in m else math.nan,
        "initial_rmsd_ca": float(m["rmsd_ca"][0]) if "rmsd_ca" in m else math.nan,
        "wall_time_s": s["wall_time_s"],
        "modes_s": s["modes_s"],
        "init_s": s["init_s"],
        "compile_s": s["compile_s"],
        "ms_per_step": 1000 * run_s / steps,
        "stage_switch_step": s["stage_switch_step"],
        "process_s": time.perf_counter() - t,
        "spec": spec.to_dict(),
        "curve": downsample(m),
    }
    print(
        f"{case} {method:9s} seed={seed}: E={row['final_energy']:.1f} (best "
        f"{row['best_energy']:.1f}) "
        f"RMSD_CA={row['final_rmsd_ca']:.3f} nm t={row['wall_time_s']:.1f}s (modes "
        f"{row['modes_s']:.1f}) "
        f"steps={row['steps']} {row['ms_per_step']:.1f} ms/step compile={row['compile_s']:.1f}s "
        f"{result.status}",
        flush=True,
    )
    return row


def plan(case: str, methods, seeds: int, det_seeds: int) -> list[tuple[str, int]]:
    """(method, seed) pairs, seed 0 of every method first so a cut-short case is still complete."""
    todo = [
        (m, s)
        for s in range(seeds)
        for m in methods
        if s < (det_seeds if m in DETERMINISTIC else seeds)
    ]
    return sorted(todo, key=lambda ms: (ms[1], list(methods).index(ms[0])))


def collect(args):
    from engine import build_system

    RESULTS.mkdir(parents=True, exist_ok=True)
    done = done_keys()
    for case in args.cases:
        todo = [
            (m, s)
            for m, s in plan(case, args.methods, args.seeds, args.det_seeds)
            if (case, m, s) not in done
        ]
        if not todo:
            continue
        print(f"== {case}: {len(todo)} runs", flush=True)
        system = build_system(system_config(case), 0)
        modes = None
        for method, seed in todo:
            spec = make_spec(case, method, seed, args.max_steps)
            if spec.reparam.needs_modes and modes is None:
                modes = get_modes(case, system, make_spec(case, "cg", 0))
            row = run_one(case, method, seed, spec, system, modes)
            with open(RUNS, "a") as fh:
                fh.write(json.dumps(row) + "\n")


def time_to_reach(curve: dict, target: float) -> float:
    """First wall time at which the energy is <= target (nan if never): engine.analysis."""
    steps = range(len(curve["energy"]))
    hit = analysis.first_reach(curve["energy"], target, steps, curve["wall_time_s"])
    return math.nan if hit is None else hit.time_s


def _stats(values):
    v = np.asarray(values, float)
    return float(v.mean()), (float(v.std(ddof=1)) if len(v) > 1 else math.nan)


def _reach(rows, target):
    reach = [time_to_reach(r["curve"], target) for r in rows]
    hit = [x for x in reach if not math.isnan(x)]
    return (float(np.mean(hit)) if hit else math.nan), len(hit)


def aggregate():
    rows = [json.loads(line) for line in RUNS.read_text().splitlines()]
    table, metrics = [], []
    for case in CASES:
        case_rows = [r for r in rows if r["case"] == case]
        gd = [r for r in case_rows if r["method"] == "gd"]
        e_gd = float(np.mean([r["final_energy"] for r in gd])) if gd else math.nan
        target = e_gd + 0.01 * abs(e_gd)  # within 1 % of GD's final energy (energies are negative)
        by = {}
        for method in METHODS:
            rs = [r for r in case_rows if r["method"] == method]
            if not rs:
                continue
            e, e_sd = _stats([r["final_energy"] for r in rs])
            t, t_sd = _stats([r["wall_time_s"] for r in rs])
            rmsd, rmsd_sd = _stats([r["final_rmsd_ca"] for r in rs])
            reach_s, reached = _reach(rs, target)
            by[method] = {
                "case": case,
                "method": method,
                "runs": len(rs),
                "n_atoms": rs[0]["n_atoms"],
                "initial_energy": rs[0]["initial_energy"],
                "initial_rmsd_ca": rs[0]["initial_rmsd_ca"],
                "energy_mean": e,
                "energy_sd": e_sd,
                "best_energy": float(min(r["best_energy"] for r in rs)),
                "rmsd_ca_mean": rmsd,
                "rmsd_ca_sd": rmsd_sd,
                "time_mean": t,
                "time_sd": t_sd,
                "modes_s": float(np.mean([r["modes_s"] for r in rs])),
                "steps_mean": float(np.mean([r["steps"] for r in rs])),
                "ms_per_step": float(np.mean([r["ms_per_step"] for r in rs])),
                "compile_s": float(np.mean([r["compile_s"] for r in rs])),
                "time_to_gd_1pct_mean": reach_s,
                "reached_gd_1pct": reached,
                "statuses": sorted({r["status"] for r in rs}),
            }
            table.append(by[method])
        if "gd" not in by:
            continue
        g = by["gd"]
        for name in [m for m in METHODS if m != "gd" and m in by]:
            n = by[name]
            metrics.append(
                {
                    "case": case,
                    "method": name,
                    "E_GD_over_E": g["energy_mean"] / n["energy_mean"],
                    "t_GD_over_t": g["time_mean"] / n["time_mean"],
                    "t_GD_over_t_excl_modes": g["time_mean"]
                    / max(n["time_mean"] - n["modes_s"], 1e-9),
                    "time_to_gd_final_within_1pct_s": n["time_to_gd_1pct_mean"],
                    "time_to_gd_final_within_1pct_excl_modes_s": n["time_to_gd_1pct_mean"]
                    - n["modes_s"],
                    "E_GD_best_over_E_best": g["best_energy"] / n["best_energy"],
                    "runs_reaching": n["reached_gd_1pct"],
                    "runs": n["runs"],
                }
            )
    return rows, table, metrics


def _f(x, fmt):
    return "nan" if x is None or (isinstance(x, float) and math.isnan(x)) else format(x, fmt)


def report():
    if not RUNS.exists():
        print(f"no runs in {RUNS}; nothing to report")
        return
    rows, table, metrics = aggregate()
    shared = settings()
    modes_timing = json.loads(MODES_TIMING.read_text()) if MODES_TIMING.exists() else {}
    (RESULTS / "protein.json").write_text(
        json.dumps(
            {
                "machine": machine(),
                "settings": shared,
                "modes_timing": modes_timing,
                "table": table,
                "paper_metrics": metrics,
            },
            indent=2,
        )
        + "\n"
    )
    lines = [
        "| case | atoms | method | runs | final E kJ/mol (mean ± sd) | best E | final CA-RMSD nm | "
        "wall s incl. modes (mean ± sd) | modes s | steps | ms/step | compile s | time to GD "
        "final ±1 % (s) |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in table:
        lines.append(
            f"| {r['case']} | {r['n_atoms']} | {r['method']} | {r['runs']} | "
            f"{_f(r['energy_mean'], '.1f')} ± "
            f"{_f(r['energy_sd'], '.1f')} | {_f(r['best_energy'], '.1f')} | "
            f"{_f(r['rmsd_ca_mean'], '.3f')} "
            f"(start {_f(r['initial_rmsd_ca'], '.3f')}) | {_f(r['time_mean'], '.1f')} ± "
            f"{_f(r['time_sd'], '.1f')} | "
            f"{_f(r['modes_s'], '.1f')} | {r['steps_mean']:.0f} | {_f(r['ms_per_step'], '.1f')} | "
            f"{_f(r['compile_s'], '.1f')} | {_f(r['time_to_gd_1pct_mean'], '.1f')} "
            f"({r['reached_gd_1pct']}/{r['runs']}) |"
        )
    mlines = [
        "| case | method X | E_GD / E_X | t_GD / t_X (incl. modes) | t_GD / t_X (excl. modes) | "
        "X's time to GD final ±1 % (s) | same, excl. modes (s) | E_GD / E_X, best runs |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for m in metrics:
        mlines.append(
            f"| {m['case']} | {m['method']} | {m['E_GD_over_E']:.4f} | {m['t_GD_over_t']:.3f} | "
            f"{m['t_GD_over_t_excl_modes']:.3f} | {_f(m['time_to_gd_final_within_1pct_s'], '.1f')} "
            f"({m['runs_reaching']}/{m['runs']}) | "
            f"{_f(m['time_to_gd_final_within_1pct_excl_modes_s'], '.1f')} | "
            f"{m['E_GD_best_over_E_best']:.4f} |"
        )
    tlines = [
        "| case | coordinates | K | first call (compiles the Hessian) s | second call s | method |",
        "|---|---|---|---|---|---|",
    ]
    for case, t in modes_timing.items():
        tlines.append(
            f"| {case} | {t['n_dof']} | {t['k']} | {t['first_call_s']:.1f} | "
            f"{t['second_call_s']:.1f} | "
            f"`{t['method']}` |"
        )
    print("\n".join(lines + [""] + mlines + [""] + tlines))
    plot(rows)
    write_doc(lines, mlines, tlines, shared, openmm_kernels(rows))


COLORS = {
    "gd": "tab:blue",
    "gd-4e-3": "tab:cyan",
    "cg": "tab:orange",
    "gnn": "tab:green",
    "gnn-bonds": "tab:purple",
    "openmm": "tab:red",
}


def plot(rows):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cases = [c for c in CASES if any(r["case"] == c for r in rows)]
    fig, axes = plt.subplots(2, len(cases), figsize=(6 * len(cases), 8), squeeze=False)
    for j, case in enumerate(cases):
        ax_e, ax_r = axes[0][j], axes[1][j]
        e_min, seen = math.inf, set()
        for r in rows:
            if r["case"] != case:
                continue
            c = r["curve"]
            label = r["method"] if r["method"] not in seen else None
            seen.add(r["method"])
            ax_e.plot(
                c["wall_time_s"],
                c["energy"],
                color=COLORS[r["method"]],
                alpha=0.8,
                lw=1.2,
                label=label,
            )
            if "rmsd_ca" in c:
                ax_r.plot(
                    c["wall_time_s"],
                    c["rmsd_ca"],
                    color=COLORS[r["method"]],
                    alpha=0.8,
                    lw=1.2,
                    label=label,
                )
            e_min = min(e_min, min(c["energy"]))
        if math.isfinite(e_min):
            ax_e.set_ylim(e_min - 0.02 * abs(e_min) - 20, e_min + 0.25 * abs(e_min) + 200)
        ax_e.set_title(f"{case}: energy (CG/slow-mode GNN start after the modes)")
        ax_e.set_ylabel("energy (kJ/mol)")
        ax_r.set_ylabel("CA-RMSD to native (nm)")
        for a in (ax_e, ax_r):
            a.set_xlabel("wall time incl. slow modes, excl. compilation (s)")
            a.grid(alpha=0.3)
            a.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(RESULTS / "protein.png", dpi=100)


# Written from the committed runs of session 14 (update when they change).
READING = """
Reading (numbers from the tables above). All four cases were re-run in session 14 with one
engine version, OpenMM on its built-in OBC2 kernel, one process per case, on the otherwise
idle machine. That machine was slower than the one of the earlier recording (sessions 3–9):
a GD step 2.4 against 2.1 ms on 2JOF and 42 against 32 ms on 2WXC, the slow modes 7.8
against 4.0 s on 2JOF, so only ratios within this run are quoted. Against that recording
the lr-4e-4 runs' mean final energies moved by at most 8.6 kJ/mol (GD by at most 1.5:
2JOF extended −2053.3 against −2051.8); the lr-4e-3 runs, which oscillate, by up to 18.
Gaps of that size make the 2JOF and 1PLW E_GD / E_GNN (0.9992–1.0031) ties, not orderings:

- **No reparametrization beats GD here by more than 0.4 % in energy, and none is faster
  beyond timing noise.** Every run at lr 4e-4 used its whole 3000-step budget (none met the
  stopping rule), so at equal steps the wall-time ratio is the per-step cost plus the slow
  modes. Final energies relative to GD (E_GD / E_X): slow-mode GNN 0.9992 (2JOF unfolded),
  1.0031 (2JOF extended), 1.0006 (1PLW), 0.9977 (2WXC); bond-graph GNN 1.0019, 1.0096,
  1.0008, 0.9984; CG 1.0097, 1.0021, 0.9993, 0.9960. Below 1 means X ended lower: only on
  2WXC do all three end lower than GD, by 0.2–0.4 % (13–32 kJ/mol of −8052). The bond-graph
  GNN's t_GD / t_X of 1.03 on 2JOF extended is inside GD's own spread (7.7 ± 1.6 s).
- **Why the GNN does not help: its head start is gone by the switch.** Energies at steps
  200 / 1000 / 3000, 2JOF unfolded (start +583 kJ/mol, seed 0): GD −2284 / −2390 / −2424,
  slow-mode GNN −2292 / −2360 / −2425, bond-graph GNN −2279 / −2348 / −2420. The slow-mode
  GNN is ahead early (its stage-1 map moves many atoms together), GD overtakes it well
  before the switch at step 1000, and after the switch the GNN is plain Adam on positions
  again, landing where GD does. 2WXC is the same picture (GD −7734 / −7960, GNN −7761 /
  −7951 at steps 200 / 1000); its small final gain appears after the switch.
- **CG's stage 1 hardly moves and its gain comes from the restart.** x = x0 + Ψz with 120
  Cartesian modes (of 852 or 2133 coordinates) cannot relax the stiff bonded terms: 2JOF
  unfolded went from +583 to +134 kJ/mol in 200 steps while GD reached −2284, and 2WXC from
  −5564 to −5971 in 1000 steps (GD: −7960). After the switch a fresh Adam on positions
  ends near (2JOF: 0.2–1.0 % above) or below (2WXC: 0.4 % below) GD; a restarted Adam after
  a stall, not the slow modes, is the likely cause.
- **The slow modes cost about a whole GD run.** K = 120 modes of the dense autodiff Hessian
  at x0 took 6.3–7.8 s for 2JOF (852 coordinates; GD's whole 3000-step run: 7.3–7.7 s) and
  96 s for 2WXC (2133 coordinates; GD: 126 s); the first call, which also compiles the
  Hessian, took 17–20 s and 104 s. One Hessian-vector product costs about one AMBER/OBC2
  gradient, and the dense Hessian needs one per coordinate. Charged to the run (the paper's
  accounting), t_GD / t_GNN = 0.46–0.56 (2JOF) and 0.55 (2WXC); the bond-graph GNN needs no
  modes and runs at GD's speed (t_GD / t_X = 0.92–1.03 on 2JOF and 2WXC; 0.79 on 1PLW, where
  the GNN map is a larger share of a 0.5 ms step).
- **OpenMM's L-BFGS wins on the identical energy, and now in time too:** −2471.5 (2JOF
  unfolded, converged to 1 kJ/mol/nm in 1,384–1,466 iterations, 3.1 s), −2266 (extended),
  −771.2 (1PLW), −8189 (2WXC), i.e. 0.3–10 % below the best Adam run. It reaches GD's final
  energy (±1 %) before GD itself does on every case (0.6 s against 3.6 s on 2JOF unfolded;
  2.3 s against 51.5 s on 2WXC), and its whole run is shorter than GD's except on 2JOF
  extended (t_GD / t_OpenMM = 2.4, 0.98, 3.1 and 5.4). Before session 14 it ran obc2.xml's
  CustomGBForce, 5.6× slower per iteration (docs/benchmarks.md), and took 12 s on 2JOF
  unfolded and 111 s on 2WXC.
- **GD's learning rate matters more than the method:** lr 4e-3 (method.md §6.4's GD value
  from native or unfolded starts) oscillates and ends 2–6 % above lr 4e-4 on every case; on
  the three small cases its early stopping ends it after 1,420–2,500 steps.
- **Structure: nothing folds; these are local minimizations.** CA-RMSD to the native stays
  at the start's (0.35 nm from the unfolded 2JOF, 1.50 nm from the extended chain) for every
  Adam run; L-BFGS moves further (0.375 and 1.27 nm). From the native 2WXC, the Adam runs
  drift 0.06–0.07 nm and L-BFGS 0.17 nm.
- **Stage-1 learning rates** were chosen by 300-step trials on 2JOF unfolded (stage 1 only):
  the bond-graph GNN at 1e-4 reached −2305 kJ/mol, at 4e-4 −2055, at 1.6e-3 it rose to
  +2222 (GD at lr 4e-4: −2327 in the same 300 steps); the slow-mode GNN and CG rates are
  from session 1's trials (GNN 1e-4 vs 4e-4 vs 1.6e-3; CG 4e-4 vs 1.6e-3).
"""


def openmm_kernels(rows: list[dict]) -> str:
    """Which OBC2 kernel the openmm rows ran (rows without ``gb_force`` ran obc2.xml's
    CustomGBForce, before session 14), as a sentence for the report."""
    counts = Counter(r.get("gb_force", "CustomGBForce") for r in rows if r["method"] == "openmm")
    said = ", ".join(f"{n} with {k}" for k, n in sorted(counts.items()))
    note = (
        " The CustomGBForce evaluates obc2.xml's expressions; openmm-min now runs OpenMM's"
        " built-in GBSAOBCForce, the same energy to 2e-7 and 5.6× faster per iteration"
        ' (docs/benchmarks.md, "OpenMM: the OBC2 kernel"), so these rows\' OpenMM times are'
        " an upper bound."
        if "CustomGBForce" in counts
        else ""
    )
    return f"OpenMM runs: {said}.{note}" if counts else ""


def write_doc(lines, mlines, tlines, shared, kernels: str = ""):
    text = DOC.read_text() if DOC.exists() else "# Protein benchmarks\n"
    if HEADING in text:
        text = text[: text.index(HEADING)].rstrip() + "\n"
    what = {"none": "plain positions", "linear": "linear CG x0 + Ψz", "gnn": "GNN"}

    def map_of(m, v):
        if m == "openmm":
            return "OpenMM L-BFGS"
        return what[v["kind"]] + (f" on {v['propagation']}" if v["propagation"] else "")

    rows = "\n".join(
        f"| {m} | {map_of(m, v)} | {v['stage1_lr'] or '–'} | {v['lr'] or '–'} |"
        for m, v in shared["methods"].items()
    )
    clip, k_modes, hidden, max_steps = (
        shared["clip_elementwise"],
        shared["k_modes"],
        shared["hidden"],
        shared["max_steps"],
    )
    section = f"""
{HEADING}

`python -m bench.bench_protein` (runs: `bench/results/protein_runs.jsonl`, aggregate:
`bench/results/protein.json`, curves: `bench/results/protein.png`). AMBER ff14SB + OBC2,
float32, all pairs, idle 2-core CPU (one run at a time; nothing else running).

Methods (Adam, elementwise clip {clip}; "lr" is the step size on plain positions, i.e. GD's
and the CG/GNN's after the switch; "psi" is the slow-mode graph ΨΨᵀ):

| method | map | stage-1 lr | lr |
|---|---|---|---|
{rows}

CG and both GNNs are in displacement form (x = x0 + f(θ) − f(θ0), anchor x0), so every run
starts at the same structure. CG and the slow-mode GNN ("gnn") use the K = {k_modes} lowest
modes (by |μ|) of the autodiff Hessian at x0 (cartesian); "gnn-bonds" is the same GNN
(hidden {hidden}, 1 layer, tanh) on the covalent graph A_bond + 0.2 I of the reference's
protein notebooks (method.md §5.3), which needs no modes. At most {max_steps} steps; reference
early stopping (min_delta {shared["min_delta"]} kJ/mol, patience {shared["patience_checks"]}
checks of 20 steps); stage 1 ends on its own early stop (min_delta × 10) or after
{shared["stage1_max_steps"]} steps. OpenMM: LocalEnergyMinimizer
(L-BFGS, tolerance 1 kJ/mol/nm RMS force, at most {max_steps} iterations, CPU platform).
{kernels}

Accounting: the slow modes are computed once per case and every CG/GNN run is charged their
full time (the paper's accounting), measured on a second call so that, like the runs' own
compilation, XLA compiling the Hessian is excluded (both calls are in the last table).
The start is fixed, so for GD and CG the seeds repeat one computation (identical energies;
the spread is timing only); OpenMM's CPU platform sums forces over threads in no fixed order,
so its L-BFGS paths differ slightly between repeats. For the GNNs the seed changes the
network's initialization. "Time to GD final ±1 %": mean first wall time at which a
run's energy is within 1 % of GD's mean final energy (runs that got there / runs).

{chr(10).join(lines)}

Paper metrics against GD (lr {shared["lr"]}) on the same case; energies are negative, so
E_GD / E_X < 1 means X ended lower:

{chr(10).join(mlines)}

Slow modes (K = {k_modes}) per case, first and second call in one process:

{chr(10).join(tlines)}

![energy and CA-RMSD vs wall time](../bench/results/protein.png)
{READING}"""
    DOC.write_text(text + section)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", default="2jof-unfolded,2jof-extended,1plw-extended,2wxc-native")
    parser.add_argument("--methods", default=",".join(METHODS))
    parser.add_argument("--seeds", type=int, default=5, help="seeds per GNN (its initialization)")
    parser.add_argument(
        "--det-seeds",
        type=int,
        default=5,
        help="repeats of the deterministic GD, CG and OpenMM runs (timing samples)",
    )
    parser.add_argument(
        "--max-steps", type=int, default=None, help="step budget (default: the preset's)"
    )
    parser.add_argument("--report", action="store_true", help="only aggregate existing runs")
    args = parser.parse_args()
    args.cases = args.cases.split(",")
    args.methods = args.methods.split(",")
    for c in args.cases:
        if c not in CASES:
            parser.error(f"unknown case {c!r}; choose from {', '.join(CASES)}")
    for m in args.methods:
        if m not in METHODS:
            parser.error(f"unknown method {m!r}; choose from {', '.join(METHODS)}")
    if not args.report:
        if not DATA.is_dir():
            print(
                f"skipping the protein benchmark: {DATA} is missing (PDB files for 2JOF, 1PLW, "
                "2WXC)"
            )
            sys.exit(0)
        collect(args)
    report()


if __name__ == "__main__":
    main()
