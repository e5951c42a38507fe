"""Figure 6 (issue 14): learning-rate sweep for GD, GNN (1 layer) and GNN (2 layers) on 2JOF,
through the sweep machinery (``engine.sweep``, Dask), with OpenMM MD after 5k and 10k steps.

System: Trp-cage from ../shared/data/pdb/2JOF_unfolded.pdb (reference 2JOF_native.pdb),
AMBER ff14SB + OBC2, float32. Every run is engine.presets.protein_spec's (Adam, elementwise
clip 0.01, GNN anchored at x0 on the 120 lowest Hessian modes at x0, stage 1 at most 1000
steps, reference early stopping with min_delta 0.1 kJ/mol, patience 20 checks) with
``--steps`` (default 10,000) as the budget. Swept (one SweepSpec per family):
  gd     optim.learning_rate in GD_LRS (plain positions)
  gnn-1  optim.stage1_lr in GNN_LRS, 1 graph layer (stage 2: Adam lr 4e-4 on positions)
  gnn-2  the same with 2 graph layers
  gd-init  GD at lr GD_INIT_LR from ``--init-seeds`` seeded random-coil starts (start "random":
         engine/protein/build.py), the paper's panel c ("GD is sensitive to initialisation"):
         each start's and end's CA-RMSD to native, and the pairwise CA-RMSD between the starts
         and between the ends (do different inits end in different conformations?)
GD has no randomness from a fixed start, so it runs seed 0 only; the GNNs run ``--seeds``
seeds (default 3: the network's initialization) and each setting shows its best run (lowest
final energy), as the paper's "best of 3". OpenMM: Langevin MD at 298 K, 2 fs (method
"openmm-md", the same sweep machinery), 10,000 steps logged every 1000, its potential energy
and wall time after 5,000 and 10,000 steps marked (mean over its seeds).

Runs go to runs/sweeps/fig6-* (resumable: a rerun skips finished runs); the summary to
bench/results/fig6.json and the figure (energy vs iteration and vs wall time) to fig6.png.
  nice -n 19 .venv/bin/python -m bench.bench_fig6 [--families gd,gnn-1] [--lrs-gd 4e-4]
"""

from __future__ import annotations

import argparse
import math
import os
from pathlib import Path

import numpy as np

from .common import RESULTS, replace_marked, save_json

DATA = Path(os.environ.get("SLOWMODE_PDB_DIR", "/work/shared/data/pdb"))
GD_LRS = (1e-4, 4e-4, 1e-3, 4e-3)
GNN_LRS = (3e-5, 1e-4, 3e-4, 1e-3)
GD_INIT_LR = 4e-4  # protein_spec's GD learning rate, the fastest GD of the lr sweep
FAMILIES = ("gd", "gnn-1", "gnn-2", "md", "gd-init")
MD_MARKS = (5000, 10000)
OUT_ROOT = Path("runs") / "sweeps"
COLORS = {"gd": "Reds", "gnn-1": "Blues", "gnn-2": "Greens"}


def system_config(start: str | None = None):
    """Trp-cage (2JOF) from the unfolded structure, or from ``start`` (e.g. "random")."""
    from engine import SystemConfig

    return SystemConfig(
        kind="protein",
        pdb=str(DATA / "2JOF_native.pdb"),
        start=start or str(DATA / "2JOF_unfolded.pdb"),
        model="amber-obc2",
    )


def sweep_of(family: str, lrs, seeds, steps: int):
    """The SweepSpec of one family (module docstring)."""
    from engine.presets import protein_spec
    from engine.sweeps import Axis, SweepSpec

    if family == "md":
        base = protein_spec("gd", max_steps=MD_MARKS[-1]).replace(
            system=system_config(), chunk_size=1000, frame_every=MD_MARKS[-1], method_label=None
        )
        return SweepSpec(base, (), ("openmm-md",), tuple(seeds), name="fig6-md")
    if family == "gd-init":
        base = protein_spec("gd", max_steps=steps).replace(
            system=system_config("random"), frame_every=steps, method_label=None,
            **{"optim.learning_rate": GD_INIT_LR},
        )  # fmt: skip
        return SweepSpec(base, (), ("gd",), tuple(seeds), name="fig6-gd-init")
    method = "gd" if family == "gd" else "gnn"
    base = protein_spec(method, max_steps=steps).replace(
        system=system_config(), frame_every=steps, method_label=None
    )
    if family == "gd":
        axis = Axis("optim.learning_rate", "list", values=tuple(lrs))
        return SweepSpec(base, (axis,), ("gd",), (0,), name="fig6-gd")
    layers = int(family[-1])
    spec = base.replace(**{"reparam.n_layers": layers})
    axis = Axis("optim.stage1_lr", "list", values=tuple(lrs))
    return SweepSpec(spec, (axis,), ("gnn",), tuple(seeds), name=f"fig6-{family}")


def curves_of(out: Path, rows: list[dict]) -> list[dict]:
    """Each finished run's energy against step and wall time, read from its bundle."""
    from engine import io

    curves = []
    for row in rows:
        if row["status"] not in ("done", "diverged"):
            continue
        bundle = io.read_bundle(out / "runs" / row["key"])
        m, optim = bundle["metrics"], bundle["config"]["spec"]["optim"]
        # the learning rate of the stage the sweep varies (GNN: stage 1), an axis or not
        lr = optim["stage1_lr"] or optim["learning_rate"]
        curves.append({
            **{k: row[k] for k in ("key", "method", "seed", "status")},
            "lr": None if row["method"] == "openmm-md" else lr,
            "step": [int(v) for v in m["step"]],
            "wall_time_s": [float(v) for v in m["wall_time_s"]],
            "energy": [float(v) for v in m["energy"]],
            "rmsd_ca": [float(v) for v in m.get("rmsd_ca", [])],
        })  # fmt: skip
    return curves


def pairwise_ca_rmsd(xs: list[np.ndarray], system) -> dict:
    """CA-RMSD (nm, after superposition) over every pair of structures: mean, min, max."""
    from engine.protein.measures import rmsd

    ca = [a.index for a in system.topology.atoms if a.name == "CA"]
    d = [rmsd(a, b, system.topology, ca) for i, a in enumerate(xs) for b in xs[i + 1 :]]
    return {"pairs": len(d), "mean": float(np.mean(d)), "min": float(np.min(d)),
            "max": float(np.max(d))}  # fmt: skip


def init_sensitivity(out: Path, curves: list[dict]) -> dict:
    """Panel c from the gd-init family's curves (``curves_of``): per random-coil start, its
    energy and CA-RMSD to native at the start and the end; and how far apart the starts are,
    and the ends, pair by pair (positions read from the run bundles)."""
    from engine import build_system, io

    done = [c for c in curves if c["status"] == "done"]
    if len(done) < 2:
        return {}
    frames = [io.read_bundle(out / "runs" / c["key"]) for c in done]
    system = build_system(system_config("random"), 0)  # the topology (same for every seed)
    runs = [{"seed": c["seed"], "energy_start": c["energy"][0], "energy_end": c["energy"][-1],
             "rmsd_ca_start": c["rmsd_ca"][0], "rmsd_ca_end": c["rmsd_ca"][-1],
             "steps": c["step"][-1]} for c in done]  # fmt: skip
    return {
        "lr": GD_INIT_LR,
        "runs": runs,
        "between_starts": pairwise_ca_rmsd([f["frames_x"][0] for f in frames], system),
        "between_ends": pairwise_ca_rmsd([f["x_final"] for f in frames], system),
        "curves": done,
    }


def best_of(curves: list[dict]) -> dict:
    """lr -> the curve with the lowest final energy among that setting's seeds."""
    out = {}
    for c in curves:
        lr = c["lr"]
        if lr not in out or c["energy"][-1] < out[lr]["energy"][-1]:
            out[lr] = c
    return out


def md_marks(curves: list[dict]) -> list[dict]:
    """OpenMM MD's energy and wall time at each of MD_MARKS steps, mean and sd over seeds."""
    out = []
    for mark in MD_MARKS:
        hits = [(c["energy"][c["step"].index(mark)], c["wall_time_s"][c["step"].index(mark)])
                for c in curves if mark in c["step"]]  # fmt: skip
        if hits:
            e, t = np.asarray(hits).T
            out.append({"steps": mark, "runs": len(hits), "energy_mean": float(e.mean()),
                        "energy_sd": float(e.std(ddof=1)) if len(e) > 1 else math.nan,
                        "wall_s_mean": float(t.mean())})  # fmt: skip
    return out


def plot(best: dict, marks: list[dict], init: dict) -> None:
    """fig6.png: a, b energy against iteration and wall time (the starts, +884 kJ/mol, and
    the GNNs' first stage-1 steps off scale); a zoomed onto the ends, where the families
    differ by ~0.5 %; c GD from random-coil starts."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, 2, figsize=(14, 9.5))
    (a, b), (zoom, c_ax) = axes
    ends = []
    for family, by_lr in best.items():
        cmap = plt.get_cmap(COLORS[family])
        lrs = sorted(by_lr)
        for i, lr in enumerate(lrs):
            c = by_lr[lr]
            color = cmap(0.4 + 0.6 * i / max(len(lrs) - 1, 1))
            label = f"{family} lr {lr:g}" if family == "gd" else f"{family} stage-1 lr {lr:g}"
            for ax in (a, zoom):
                ax.plot(c["step"], c["energy"], color=color, label=label, lw=1.2)
            b.plot(c["wall_time_s"], c["energy"], color=color, lw=1.2)
            ends.append(c["energy"][-1])
    for m in marks:
        for ax, x in ((a, m["steps"]), (b, m["wall_s_mean"])):
            ax.axhline(m["energy_mean"], color="k", ls=":", lw=0.8)
            ax.plot([x], [m["energy_mean"]], "k*", ms=10)
            ax.annotate(f"OpenMM MD {m['steps'] // 1000}k", (x, m["energy_mean"]), fontsize=8,
                        xytext=(-40, 8), textcoords="offset points")  # fmt: skip
    if ends:
        top = max([m["energy_mean"] for m in marks] or [min(ends)]) + 400
        for ax in (a, b):
            ax.set_ylim(min(ends) - 40, top)
        zoom.set_ylim(min(ends) - 5, min(ends) + 80)
        zoom.set_xlim(4000, max(c["step"][-1] for v in best.values() for c in v.values()))
    a.set_title("a: energy against iteration (starts at +884 kJ/mol, off scale)", fontsize=9)
    b.set_title("b: against wall time (compilation excluded, slow modes included)", fontsize=9)
    zoom.set_title("a, zoomed: the last iterations (best of the seeds per setting)", fontsize=9)
    a.set_xlabel("iteration (optimizer step; MD step for OpenMM)")
    zoom.set_xlabel("iteration")
    b.set_xlabel("wall time (s)")
    for ax in (a, b, zoom, c_ax):
        ax.set_ylabel("energy (kJ/mol)")
        ax.grid(alpha=0.3)
    zoom.legend(fontsize=7, ncol=2)
    if init:
        for c, r in zip(init["curves"], init["runs"], strict=True):
            c_ax.plot(c["step"], c["energy"], lw=1.2,
                      label=f"seed {c['seed']}: CA-RMSD to native {r['rmsd_ca_start']:.2f} → "
                      f"{r['rmsd_ca_end']:.2f} nm")  # fmt: skip
        late = [e for c in init["curves"] for e in c["energy"][len(c["energy"]) // 10 :]]
        c_ax.set_ylim(min(late) - 30, max(late) + 30)
        e, s = init["between_ends"], init["between_starts"]
        c_ax.set_title(
            f"c: GD lr {init['lr']:g} from {len(init['runs'])} random-coil starts\n"
            f"pairwise CA-RMSD: starts {s['mean']:.2f} nm ({s['min']:.2f}–{s['max']:.2f}),"
            f" ends {e['mean']:.2f} nm ({e['min']:.2f}–{e['max']:.2f})",
            fontsize=9,
        )
        c_ax.set_xlabel("iteration")
        c_ax.legend(fontsize=7)
    else:
        c_ax.axis("off")
    fig.suptitle("Figure 6: Trp-cage (2JOF, unfolded start), best of the seeds per setting")
    fig.tight_layout()
    fig.savefig(RESULTS / "fig6.png", dpi=80)
    plt.close(fig)


TARGET = -2250.0  # kJ/mol: "to −2250" in the doc table (every minimizer gets there)
DOC = Path(__file__).resolve().parent.parent / "docs" / "benchmarks-protein.md"
DOC_MARK = "fig6-table"


def kj(value: float) -> str:
    """An energy as the docs write it: one decimal, a true minus sign."""
    return f"{value:.1f}".replace("-", "−")


def lr_text(lr: float) -> str:
    """A learning rate as the docs write it: 4e-4, 3e-5."""
    mantissa, exponent = f"{lr:.0e}".split("e")
    return f"{mantissa}e{int(exponent)}"


def reach_text(c: dict, target: float) -> str:
    """ "step, s" of the first logged energy at or below ``target`` ("not reached")."""
    from engine.analysis import first_reach

    hit = first_reach(c["energy"], target, c["step"], c["wall_time_s"])
    return "not reached" if hit is None else f"{hit.step:,}, {hit.time_s:.1f}"


def doc_tables(best: dict, marks: list[dict], init: dict, steps: int) -> str:
    """The markdown tables of docs/benchmarks-protein.md's Figure 6 section: the best run of
    each setting, OpenMM MD's marks, and panel c's runs."""
    rows = [
        f"| run | best seed | final E kJ/mol ({steps:,} steps) | E at 5,000 steps "
        f"| to {kj(TARGET)[:-2]}: step, s | wall s |",
        "|---|---|---|---|---|---|",
    ]
    names = {"gd": "GD lr {}", "gnn-1": "GNN 1 layer, stage-1 lr {}", "gnn-2": "GNN 2 layers, {}"}
    for family, by_lr in best.items():
        for lr, c in sorted(by_lr.items()):
            end = kj(c["energy"][-1])
            if c["step"][-1] < steps:
                end += f" (early stop at {c['step'][-1]:,})"
            at5k = kj(c["energy"][c["step"].index(5000)]) if 5000 in c["step"] else "–"
            rows.append(f"| {names[family].format(lr_text(lr))} | {c['seed']} | {end} | {at5k} "
                        f"| {reach_text(c, TARGET)} | {c['wall_time_s'][-1]:.1f} |")  # fmt: skip
    for m in marks:
        rows.append(f"| OpenMM MD 298 K, {m['steps']:,} steps ({m['runs']} seeds) | – "
                    f"| {kj(m['energy_mean'])} ± {m['energy_sd']:.1f} | – | – "
                    f"| {m['wall_s_mean']:.1f} |")  # fmt: skip
    text = "\n".join(rows)
    if init:
        lines = [
            "| seed | E start → end kJ/mol | CA-RMSD to native start → end nm | steps |",
            "|---|---|---|---|",
        ]
        for r in init["runs"]:
            note = "" if r["steps"] >= steps else " (early stop)"
            lines.append(f"| {r['seed']} | {kj(r['energy_start'])} → {kj(r['energy_end'])} "
                         f"| {r['rmsd_ca_start']:.3f} → {r['rmsd_ca_end']:.3f} "
                         f"| {r['steps']:,}{note} |")  # fmt: skip
        s, e = init["between_starts"], init["between_ends"]
        lines.append(
            f"\nPairwise CA-RMSD between the {len(init['runs'])} starts {s['mean']:.3f} nm "
            f"({s['min']:.3f}–{s['max']:.3f}), between the ends {e['mean']:.3f} nm "
            f"({e['min']:.3f}–{e['max']:.3f})."
        )
        text += "\n\nPanel c, GD from random-coil starts:\n\n" + "\n".join(lines)
    return text


def main(argv=None) -> None:
    import engine

    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--families", default=",".join(FAMILIES))
    p.add_argument("--lrs-gd", default=",".join(f"{v:g}" for v in GD_LRS))
    p.add_argument("--lrs-gnn", default=",".join(f"{v:g}" for v in GNN_LRS))
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--init-seeds", type=int, default=5, help="random-coil starts (gd-init)")
    p.add_argument("--steps", type=int, default=10_000)
    p.add_argument("--workers", type=int, default=1, help="Dask workers (one core each)")
    args = p.parse_args(argv)
    families = [f for f in args.families.split(",") if f]
    for f in families:
        if f not in FAMILIES:
            p.error(f"--families: {f!r} is not one of {', '.join(FAMILIES)}")
    if not 1 <= args.seeds <= 10:
        p.error("--seeds must be in [1, 10]")
    if not 2 <= args.init_seeds <= 20:
        p.error("--init-seeds must be in [2, 20]")
    if not 100 <= args.steps <= 10**6:
        p.error("--steps must be in [100, 1000000]")
    lrs = {"gd": [float(v) for v in args.lrs_gd.split(",")],
           "gnn": [float(v) for v in args.lrs_gnn.split(",")]}  # fmt: skip
    from engine.cluster import connect

    client, cluster = connect(n_workers=args.workers)
    best, marks, runs, init = {}, [], {}, {}
    try:
        for family in families:
            seeds = range(args.init_seeds if family == "gd-init" else args.seeds)
            sweep = sweep_of(family, lrs["gd" if family == "gd" else "gnn"], seeds, args.steps)
            out = OUT_ROOT / sweep.name
            rows = engine.sweep(sweep, client, out_dir=out)
            curves = curves_of(out, rows)
            runs[family] = [{k: c[k] for k in ("key", "seed", "lr", "status")}
                            | {"final_energy": c["energy"][-1], "steps": c["step"][-1],
                               "wall_s": c["wall_time_s"][-1]} for c in curves]  # fmt: skip
            if family == "md":
                marks = md_marks(curves)
            elif family == "gd-init":
                init = init_sensitivity(out, curves)
            else:
                best[family] = best_of(curves)
            print(family, len(curves), "runs finished", flush=True)
    finally:
        client.close()
        if cluster is not None:
            cluster.close()
    table = [{"family": f, "lr": lr, "best_seed": c["seed"], "final_energy": c["energy"][-1],
              "steps": c["step"][-1], "wall_s": c["wall_time_s"][-1]}
             for f, by_lr in best.items() for lr, c in sorted(by_lr.items())]  # fmt: skip
    save_json("fig6", {
        "what": "Figure 6 (issue 14): see bench/bench_fig6.py's docstring",
        "loadavg_end": list(os.getloadavg()), "steps": args.steps, "table": table,
        "openmm_md": marks, "runs": runs,
        "init_sensitivity": {k: v for k, v in init.items() if k != "curves"},
    })  # fmt: skip
    plot(best, marks, init)
    if set(FAMILIES) <= set(families):  # the doc holds the full sweep only
        replace_marked(DOC, DOC_MARK, doc_tables(best, marks, init, args.steps))
    for r in table:
        print(r, flush=True)
    print("OpenMM MD:", marks)
    if init:
        print("GD from random coils:", {k: v for k, v in init.items() if k != "curves"})


if __name__ == "__main__":
    main()
