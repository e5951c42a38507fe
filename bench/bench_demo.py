"""The workbench's opening demo, chosen by measurement (issue 9, "The first ten minutes").

A candidate demo is one loop system at one size under one protocol of engine/presets.py,
run with GD, CG and the GNN for the same fixed number of steps (stopping rule "none", so
every method gets exactly the budget), from the same x0 per seed. For every method it records
the final energy (the run's own energy, the one the workbench plots), the per-method wall
time (slow modes included, compilation excluded, as in bench_fig3), and the final structure:
loop contacts (i, i+10 closer than 1.5), bonds in [0.9, 1.3] (the engine's ``bond_ok_frac``),
intact chain bonds (shorter than 1.5) and the radius of gyration. Runs of one seed execute
one after another (per-method times are not inflated by each other); ``--side-by-side``
instead runs the methods of a seed in concurrent threads, as the workbench does, and records
only their times (under "side_by_side").

The chosen candidate is ``engine.presets.OPENING``; its preset's caption quotes this script's
numbers from bench/results/demo.json (tests/test_presets.py checks that they agree).

Run:  .venv/bin/python -m bench.bench_demo                      (the chosen demo, 3 seeds)
      .venv/bin/python -m bench.bench_demo --candidates all --seeds 2   (exploration)
      .venv/bin/python -m bench.bench_demo --report             (table only, from the json)
      .venv/bin/python -m bench.bench_demo --protein-risks      (protein settings that blow up)
"""

from __future__ import annotations

import argparse
import concurrent.futures
import json
import math
import time

import numpy as np

from engine import build_system, make_energy, run
from engine.loops import loop_structure_metrics
from engine.presets import DEMO_CANDIDATES, OPENING, demo_spec
from engine.run import compute_modes, first_modes

from .common import DOCS, RESULTS, machine, replace_marked

PATH = RESULTS / "demo.json"
METHODS = ("gd", "cg", "gnn")
INTACT = 1.5  # a chain bond longer than this is broken (the LJ well is at 1.12)


def structure(x: np.ndarray, system) -> dict:
    m = loop_structure_metrics(x, system)
    bonds = np.asarray(system.bonds)
    rb = np.linalg.norm(x[bonds[:, 0]] - x[bonds[:, 1]], axis=1)
    return {
        "loop_contact_frac": m["loop_contact_frac"],
        "bond_ok_frac": m["bond_ok_frac"],
        "bonds_intact_frac": float(np.mean(rb < INTACT)),
        "max_bond": float(rb.max()),
        "radius_of_gyration": m["radius_of_gyration"],
        "collapsed_pairs": m["collapsed_pairs"],
    }


def run_seed(name: str, seed: int, methods, side_by_side: bool) -> list[dict]:
    specs = {m: demo_spec(name, m, seed) for m in methods}
    first = specs[methods[0]]
    system = build_system(first.system, seed)
    modes = None
    for spec in specs.values():
        if spec.reparam.kind != "none" and modes is None:
            k_max = max(
                (s.reparam.n_modes or math.ceil(system.n_atoms / 4)) for s in specs.values()
            )
            big = spec.replace(**{"reparam.n_modes": k_max})
            modes = compute_modes(big, system, make_energy(system, spec.energy))

    def one(method: str) -> dict:
        spec = specs[method]
        shared = None
        if spec.reparam.kind != "none":
            shared = first_modes(modes, spec.reparam.n_modes or math.ceil(system.n_atoms / 4))
        t = time.perf_counter()
        result = run(spec, system=system, modes=shared)
        s = result.summary()
        e, steps = result.metrics["energy"], result.metrics["step"]
        budget = spec.schedule.max_steps
        at = {}
        for frac in (0.25, 0.5):
            i = int(np.searchsorted(steps, frac * budget))
            at[f"energy_at_{frac:g}"] = float(e[min(i, len(e) - 1)])
        return {
            "candidate": name,
            "method": method,
            "seed": seed,
            "status": result.status,
            "steps": s["steps"],
            "final_energy": s["final_energy"],
            **at,
            "wall_time_s": s["wall_time_s"],
            "modes_s": s["modes_s"],
            "compile_s": s["compile_s"],
            "process_s": time.perf_counter() - t,
            "stage_switch_step": s["stage_switch_step"],
            **structure(np.asarray(result.x_final, np.float64), system),
        }

    if side_by_side:
        with concurrent.futures.ThreadPoolExecutor(len(methods)) as pool:
            rows = list(pool.map(one, methods))
    else:
        rows = [one(m) for m in methods]
    for r in rows:
        print(
            f"{name} seed={seed} {r['method']:3s}: E={r['final_energy']:+.5f} "
            f"(at 1/4 {r['energy_at_0.25']:+.5f}, 1/2 {r['energy_at_0.5']:+.5f}) "
            f"t={r['wall_time_s']:.1f}s loops={r['loop_contact_frac']:.2f} "
            f"bonds={r['bonds_intact_frac']:.3f} Rg={r['radius_of_gyration']:.1f} {r['status']}",
            flush=True,
        )
    return rows


def aggregate(rows: list[dict]) -> list[dict]:
    groups: dict = {}
    for r in rows:
        groups.setdefault((r["candidate"], r["method"]), []).append(r)
    out = []
    for (name, method), rs in groups.items():
        e = np.array([r["final_energy"] for r in rs])

        def mean(key, rs=rs):
            return float(np.mean([r[key] for r in rs]))

        out.append(
            {
                "candidate": name,
                "method": method,
                "runs": len(rs),
                "energy_mean": float(e.mean()),
                "energy_sd": float(e.std(ddof=1)) if len(e) > 1 else math.nan,
                "energy_worst": float(e.max()),
                "energy_at_0.5_mean": mean("energy_at_0.5"),
                "wall_time_mean": mean("wall_time_s"),
                "modes_s_mean": mean("modes_s"),
                "loop_contact_mean": mean("loop_contact_frac"),
                "loop_contact_min": float(min(r["loop_contact_frac"] for r in rs)),
                "bonds_intact_mean": mean("bonds_intact_frac"),
                "bonds_intact_min": float(min(r["bonds_intact_frac"] for r in rs)),
                "bond_ok_mean": mean("bond_ok_frac"),
                "rg_mean": mean("radius_of_gyration"),
                "collapsed_mean": mean("collapsed_pairs"),
                "diverged": sum(r["status"] == "diverged" for r in rs),
            }
        )
    return out


def table_markdown(data: dict) -> str:
    lines = [
        "| candidate | system | n | protocol | steps | method | runs | final E (mean ± sd) | "
        "E at half budget | wall s (mean) | modes s | loop contacts (mean, min) | "
        "intact bonds (mean, min) | Rg | pairs < 0.5 |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in data["table"]:
        c = DEMO_CANDIDATES[r["candidate"]]
        mark = " (opening)" if r["candidate"] == OPENING else ""
        lines.append(
            f"| {r['candidate']}{mark} | {c['system']} | {c['n']} | {c['protocol']} | "
            f"{c['steps']} | {r['method']} | {r['runs']} | "
            f"{r['energy_mean']:+.5f} ± {r['energy_sd']:.5f} | {r['energy_at_0.5_mean']:+.5f} | "
            f"{r['wall_time_mean']:.1f} | {r['modes_s_mean']:.1f} | "
            f"{r['loop_contact_mean']:.2f}, {r['loop_contact_min']:.2f} | "
            f"{r['bonds_intact_mean']:.3f}, {r['bonds_intact_min']:.3f} | {r['rg_mean']:.1f} | "
            f"{r['collapsed_mean']:.0f} |"
        )
    return "\n".join(lines)


# ---- protein settings that blow up (the thresholds of engine.presets.risk_warnings) ---------
RISK_PATH = RESULTS / "demo_protein_risks.json"
RISK_STEPS = 500


def risk_cases() -> dict:
    """name -> spec: Trp-cage (2JOF, by PDB id: the local file) from its native structure, the
    workbench's default start, with the benchmark's settings and one change each."""
    from engine.presets import protein_spec

    def p(method, **changes):
        spec = protein_spec(method, start="native", max_steps=RISK_STEPS)
        spec = spec.replace(**{"schedule.stopping": "none", "chunk_size": 10, **changes})
        return spec

    loop_optim = {"optim.learning_rate": 0.02, "optim.clip_value": 0.1}
    return {
        "gd benchmark (lr 4e-4, clip 0.01)": p("gd"),
        "gd lr 1e-3": p("gd", **{"optim.learning_rate": 1e-3}),
        "gd lr 4e-3": p("gd", **{"optim.learning_rate": 4e-3}),
        "gd lr 1e-2": p("gd", **{"optim.learning_rate": 1e-2}),
        "gd loop defaults (lr 0.02, clip 0.1)": p("gd", **loop_optim),
        "cg benchmark (anchor x0)": p("cg"),
        "cg anchor none": p("cg", **{"reparam.anchor": "none"}),
        "gnn benchmark (anchor x0)": p("gnn"),
        "gnn anchor none": p("gnn", **{"reparam.anchor": "none"}),
        "gnn anchor x0, stage-1 lr 1.6e-3": p("gnn", **{"optim.stage1_lr": 1.6e-3}),
    }


def protein_risks() -> None:
    cases = risk_cases()
    first = next(iter(cases.values()))
    system = build_system(first.system, first.seed)
    modes = None
    rows = []
    for name, spec in cases.items():
        shared = None
        if spec.reparam.kind != "none":
            if modes is None:
                modes = compute_modes(spec, system, make_energy(system, spec.energy))
            shared = modes
        result = run(spec, system=system, modes=shared)
        e = result.metrics["energy"]
        finite = e[np.isfinite(e)]
        row = {
            "case": name,
            "status": result.status,
            "start_energy": float(e[0]),
            "max_energy": float(finite.max()) if len(finite) else math.nan,
            "final_energy": float(e[-1]),
            "steps": int(result.metrics["step"][-1]),
            "nonfinite_rows": int(np.sum(~np.isfinite(e))),
            "learning_rate": spec.optim.learning_rate,
            "stage1_lr": spec.optim.stage1_lr,
            "clip_value": spec.optim.clip_value,
            "anchor": spec.reparam.anchor,
        }
        rows.append(row)
        print(
            f"{name:40s} E0={row['start_energy']:+.1f} max={row['max_energy']:+.4g} "
            f"final={row['final_energy']:+.4g} {row['status']}",
            flush=True,
        )
    data = {"machine": machine(), "system": "2JOF native (amber-obc2)", "steps": RISK_STEPS,
            "runs": rows}  # fmt: skip
    RISK_PATH.write_text(json.dumps(data, indent=1, default=float) + "\n")
    replace_marked(DOCS / "benchmarks.md", "demo-risks", risks_markdown(data))


def risks_markdown(data: dict) -> str:
    lines = [
        "| Trp-cage from native, 500 steps | status | E start | E max | E final (kJ/mol) |",
        "|---|---|---|---|---|",
    ]
    for r in data["runs"]:
        lines.append(
            f"| {r['case']} | {r['status']} | {r['start_energy']:+.6g} | "
            f"{r['max_energy']:+.4g} | {r['final_energy']:+.4g} |"
        )
    return "\n".join(lines)


def load() -> dict:
    return json.loads(PATH.read_text()) if PATH.exists() else {"runs": []}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--candidates", default=OPENING, help="comma-separated names, or 'all'")
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--first-seed", type=int, default=0)
    ap.add_argument("--methods", default=",".join(METHODS))
    ap.add_argument("--side-by-side", action="store_true", help="methods in concurrent threads")
    ap.add_argument("--report", action="store_true", help="only rebuild the table")
    ap.add_argument("--conditions", default="", help="e.g. 'loaded (load average 3)'")
    ap.add_argument("--protein-risks", action="store_true", help="only the protein settings")
    args = ap.parse_args(argv)
    if args.protein_risks:
        protein_risks()
        return
    data = load()
    if not isinstance(data.get("side_by_side"), dict):
        data["side_by_side"] = {}
    rows = data["runs"]
    if not args.report:
        names = list(DEMO_CANDIDATES) if args.candidates == "all" else args.candidates.split(",")
        methods = tuple(args.methods.split(","))
        seeds = range(args.first_seed, args.first_seed + args.seeds)
        side = data.get("side_by_side")
        side = side if isinstance(side, dict) else {}
        for name in names:
            if args.side_by_side:  # the workbench's view: methods at once, one clock
                for seed in seeds:
                    t = time.perf_counter()
                    got = run_seed(name, seed, methods, True)
                    side.setdefault(name, []).append(
                        {
                            "seed": seed,
                            "methods": list(methods),
                            "process_s": time.perf_counter() - t,
                            "wall_time_s": {r["method"]: r["wall_time_s"] for r in got},
                            "final_energy": {r["method"]: r["final_energy"] for r in got},
                        }
                    )
                continue
            # a re-run replaces those seeds of the candidate
            rows = [r for r in rows if not (r["candidate"] == name and r["seed"] in seeds)]
            for seed in seeds:
                rows += run_seed(name, seed, methods, False)
        data = {
            "machine": machine(),
            "conditions": args.conditions or data.get("conditions", ""),
            "opening": OPENING,
            "candidates": DEMO_CANDIDATES,
            "runs": rows,
            "side_by_side": side,
        }
    if args.report and RISK_PATH.exists():
        risks = json.loads(RISK_PATH.read_text())
        replace_marked(DOCS / "benchmarks.md", "demo-risks", risks_markdown(risks))
    data["table"] = aggregate(data["runs"])
    RESULTS.mkdir(parents=True, exist_ok=True)
    PATH.write_text(json.dumps(data, indent=1, default=float) + "\n")
    text = table_markdown(data)
    replace_marked(DOCS / "benchmarks.md", "demo-table", text)
    print(text)


if __name__ == "__main__":
    main()
