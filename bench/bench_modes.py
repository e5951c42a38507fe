"""Slow-mode timings vs system size: dense vs iterative eigensolvers, block-Laplacian.

Run: .venv/bin/python -m bench.bench_modes [--sizes 400 1000 4000] [--k 20]
Writes bench/results/modes.json, bench/results/modes.png and the table between the markers
in docs/benchmarks-modes.md.

Scale (the cutoff model's sparse route, n = 1000, 4000, 20000; about 2-6 minutes, a case
skipped when 1.5x its linear extrapolation exceeds --max-case-seconds):
.venv/bin/python -m bench.bench_modes --scale
Writes bench/results/modes_scale.json, modes_scale.png and the modes-scale table.

Cases (each timed through ``engine.modes.slow_modes``, whose ``seconds`` include building
the Hessian; the Hessian build alone is timed separately):

- "lj-loop @ x0": the paper's pure-LJ loop (all-pairs repulsion) at its random start. The
  Hessian is indefinite with O(n) near-zero modes: lowest |mu| needs a factorization at 0
  (LU).
- "fcc-network @ minimum": a harmonic elastic network on an FCC lattice (nearest-neighbour
  springs at rest length), an exact minimum with a positive semi-definite Hessian and six
  rigid-body zero modes, standing in for a minimised structure (minimising the n = 4000 loop
  takes ~10 min, platform-notes §2a). The Cholesky path.
- "block-laplacian": the reference construction on the pure-LJ loop, 40 sampled
  configurations, k modes and the reference's k = ceil(n / 3).

Every time is the fastest of 3 runs for n <= 1000 (1 run above), with the CPU seconds of
that run and the largest 1-minute load average seen around it.

Accuracy is measured against the dense solver where it runs: eigenvalue differences
relative to ||H||_inf and to |mu| (non-rigid modes), the largest principal angle between
the two k-dimensional subspaces, and each solver's largest residual |H psi - mu psi| / ||H||.
The dense solver is skipped when its n^3-extrapolated time exceeds --dense-max-seconds.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import time
from pathlib import Path

import jax.numpy as jnp
import numpy as np
from scipy.linalg import subspace_angles

from engine import EnergyConfig, ModesConfig, SystemConfig, build_system, make_energy
from engine import hessian as hess
from engine import modes as md
from engine.potentials import harmonic_bond
from engine.run import first_modes
from engine.types import EnergyModel, PairTerm, System

from .common import RESULTS, save_json

DOC = Path(__file__).resolve().parents[1] / "docs" / "benchmarks-modes.md"
TABLE_START, TABLE_END = "<!-- modes-table:start -->", "<!-- modes-table:end -->"


def fcc_network(n_cells: int) -> tuple[System, EnergyModel]:
    """FCC lattice of 4 n_cells^3 atoms, nearest-neighbour harmonic springs at rest length 1."""
    a = math.sqrt(2.0)  # cubic lattice constant for nearest-neighbour distance 1
    basis = np.array([[0, 0, 0], [0.5, 0.5, 0], [0.5, 0, 0.5], [0, 0.5, 0.5]])
    cells = np.stack(np.meshgrid(*[np.arange(n_cells)] * 3, indexing="ij"), -1).reshape(-1, 3)
    x = (a * (cells[:, None, :] + basis[None])).reshape(-1, 3)
    from scipy.spatial import cKDTree

    pairs = cKDTree(x).query_pairs(1.0 + 1e-6, output_type="ndarray")
    term = PairTerm(pairs, np.ones(len(pairs)), harmonic_bond, 1.0)
    pj = jnp.asarray(pairs)

    def energy_fn(y):
        d = y[pj[:, 0]] - y[pj[:, 1]]
        return jnp.sum(harmonic_bond(jnp.sqrt(jnp.sum(d * d, axis=-1))))

    model = EnergyModel(energy_fn, lambda y, aux: energy_fn(y), lambda key, y: None, None,
                        (term,), "FCC harmonic network")  # fmt: skip
    system = System(name=f"fcc network n={len(x)}", kind="loop", x0=x, bonds=pairs)
    return system, model


REPEAT = {"small": 3, "large": 1}  # repeats per measurement (n <= 1000 / above); minimum kept


def _timed_modes(system, model, cfg: ModesConfig, k: int):
    """slow_modes, its wall and CPU seconds (all threads), and the load average around it.

    Repeated REPEAT times for n <= 1000 and the fastest run kept: on a shared machine the
    minimum is the least disturbed measurement.
    """
    best = None
    for _ in range(REPEAT["small" if system.n_atoms <= 1000 else "large"]):
        load0 = os.getloadavg()[0]
        cpu = time.process_time()
        m = md.slow_modes(system, model, cfg, k)
        run = (m, time.process_time() - cpu, max(load0, os.getloadavg()[0]))
        if best is None or m.seconds < best[0].seconds:
            best = run
    return best


def _accuracy(h: np.ndarray, ref, other) -> dict:
    scale = md._inf_norm(h)
    out = {}
    for label, m in (("dense", ref), ("iterative", other)):
        if m is None:
            continue
        res = np.linalg.norm(h @ m.vectors - m.vectors * m.values, axis=0)
        free = ~m.rigid
        out[f"{label}_max_residual_rel"] = float(res[free].max() / scale) if free.any() else 0.0
    if ref is not None and other is not None:
        free = ~ref.rigid
        dv = np.abs(ref.values[free] - other.values[free])
        out["values_max_abs_diff_rel_to_norm"] = float(dv.max() / scale)
        out["values_max_rel_diff"] = float((dv / np.abs(ref.values[free])).max())
        out["max_principal_angle"] = float(np.max(subspace_angles(ref.vectors, other.vectors)))
    return out


def _dense_estimate(results: list[dict], case: str, n: int) -> float | None:
    """Dense seconds at n extrapolated as n^3 from the largest measured size of this case."""
    done = [r for r in results if r["case"] == case and r.get("dense_s") is not None]
    if not done:
        return None
    last = max(done, key=lambda r: r["n"])
    return last["dense_s"] * (n / last["n"]) ** 3


def run_hessian_case(case: str, system, model, cfg_kw: dict, k: int, results, dense_max_s):
    n = system.n_atoms
    x = system.x0
    hess.pair_hessian(x, model.pair_terms)  # compile the potentials' derivatives
    if cfg_kw.get("at") == "minimum":
        md.relax(model, x, max_steps=1)  # compile value_and_grad outside the timings
    build_s = math.inf
    for _ in range(REPEAT["small" if n <= 1000 else "large"]):
        t = time.perf_counter()
        h = hess.pair_hessian(x, model.pair_terms)
        build_s = min(build_s, time.perf_counter() - t)
    # The factorization alone (what shift-invert pays before its first block solve).
    psd = cfg_kw.get("at") == "minimum"
    t = time.perf_counter()
    _, kind = md._factorize(h, 1e-13 * md._inf_norm(h), psd)
    factor_s = time.perf_counter() - t
    row = {"case": case, "n": n, "n_dof": 3 * n, "k": k, "build_s": build_s,
           "factor_s": factor_s, "factor_kind": kind}  # fmt: skip
    est = _dense_estimate(results, case, n)
    it, cpu, load = _timed_modes(
        system, model, ModesConfig(method="hessian", solver="iterative", **cfg_kw), k
    )
    row.update(iterative_s=it.seconds, iterative_cpu_s=cpu, iterative_load=load,
               iterative_method=it.method, rigid=int(it.rigid.sum()))  # fmt: skip
    print(f"{case:24s} n={n:5d} iterative {it.seconds:8.2f} s  {it.method}", flush=True)
    ref = None
    if est is None or est <= dense_max_s:
        ref, cpu, load = _timed_modes(
            system, model, ModesConfig(method="hessian", solver="dense", **cfg_kw), k + 1
        )
        # The k-subspace is defined up to the gap between the k-th and (k+1)-th |mu|.
        mu = np.abs(ref.values)
        row.update(dense_s=ref.seconds, dense_cpu_s=cpu, dense_load=load, dense_method=ref.method,
                   relative_gap_after_k=float((mu[k] - mu[k - 1]) / mu[k]))  # fmt: skip
        ref = first_modes(ref, k)
        print(f"{case:24s} n={n:5d} dense     {ref.seconds:8.2f} s  {ref.method}", flush=True)
    else:
        row.update(dense_s=None, dense_skipped_estimate_s=est)
        print(f"{case:24s} n={n:5d} dense     skipped (n^3 estimate {est:.0f} s)", flush=True)
    if cfg_kw.get("at") == "x0":  # the same Hessian the solvers used
        row.update(_accuracy(h, ref, it))
    else:
        hx = hess.pair_hessian(md.relax(model, x)[0], model.pair_terms)
        row.update(_accuracy(hx, ref, it))
        del hx
    del h
    results.append(row)


def run_laplacian_case(system, model, k: int, results):
    n = system.n_atoms
    row = {"case": "block-laplacian lj-loop", "n": n, "n_dof": n, "k": k}
    cfg = ModesConfig(method="block-laplacian", at="samples", solver="auto")
    m, cpu, load = _timed_modes(system, model, cfg, k)
    row.update(auto_s=m.seconds, auto_cpu_s=cpu, auto_load=load, auto_method=m.method)
    k_ref = math.ceil(n / 3)
    m_ref, cpu, _ = _timed_modes(system, model, cfg, k_ref)
    row.update(k_reference=k_ref, reference_k_s=m_ref.seconds, reference_k_cpu_s=cpu,
               reference_k_method=m_ref.method)  # fmt: skip
    print(f"block-laplacian          n={n:5d} k={k}: {m.seconds:.2f} s ({m.method}); "
          f"k={k_ref}: {m_ref.seconds:.2f} s", flush=True)  # fmt: skip
    results.append(row)


def _fmt(v, digits=2):
    if v is None:
        return "—"
    if isinstance(v, float) and (abs(v) < 1e-2 or abs(v) >= 1e4) and v != 0:
        return f"{v:.1e}"
    return f"{v:.{digits}f}" if isinstance(v, float) else str(v)


def markdown_table(results: list[dict]) -> str:
    lines = [
        "| case | n | 3n | Hessian build (s) | factorization (s) | iterative (s) [CPU s, load] "
        "| dense (s) "
        "[CPU s, load] | dense / iterative "
        "| max \\|Δμ\\| / ‖H‖ | max \\|Δμ\\| / \\|μ\\| | max angle (rad) | gap after k "
        "| iterative residual / ‖H‖ |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        if r["case"].startswith("block-laplacian"):
            continue
        dense = r.get("dense_s")
        dense_txt = (
            f"{_fmt(dense)} [{_fmt(r['dense_cpu_s'])}, {r['dense_load']:.1f}]"
            if dense is not None
            else f"skipped (~{r['dense_skipped_estimate_s']:.0f} est.)"
        )
        ratio = _fmt(dense / r["iterative_s"], 1) + "×" if dense else "—"
        it_txt = (
            f"{_fmt(r['iterative_s'])} [{_fmt(r['iterative_cpu_s'])}, {r['iterative_load']:.1f}]"
        )
        lines.append(
            f"| {r['case']} | {r['n']} | {r['n_dof']} | {_fmt(r['build_s'])} | "
            f"{_fmt(r['factor_s'])} ({r['factor_kind']}) | {it_txt} | {dense_txt} | {ratio} | "
            f"{_fmt(r.get('values_max_abs_diff_rel_to_norm'))} | "
            f"{_fmt(r.get('values_max_rel_diff'))} | "
            f"{_fmt(r.get('max_principal_angle'))} | {_fmt(r.get('relative_gap_after_k'))} | "
            f"{_fmt(r.get('iterative_max_residual_rel'))} |"
        )
    lines += [
        "",
        "| block-Laplacian (pure-LJ loop, 40 samples) | n | k | seconds (auto) [CPU s, load] "
        "| solver | k = ⌈n/3⌉ | seconds |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in results:
        if not r["case"].startswith("block-laplacian"):
            continue
        solver = r["auto_method"].split("/")[-1]
        lines.append(f"| | {r['n']} | {r['k']} | {_fmt(r['auto_s'])} [{_fmt(r['auto_cpu_s'])}, "
                     f"{r['auto_load']:.1f}] | {solver} | {r['k_reference']} | "
                     f"{_fmt(r['reference_k_s'])} |")  # fmt: skip
    return "\n".join(lines)


def plot(results: list[dict], path: Path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    styles = {"lj-loop @ x0": "C0", "fcc-network @ minimum": "C1"}
    for case, color in styles.items():
        rows = sorted((r for r in results if r["case"] == case), key=lambda r: r["n"])
        if not rows:
            continue
        ns = [r["n"] for r in rows]
        ax.plot(ns, [r["iterative_s"] for r in rows], "o-", color=color, label=f"{case}: iterative")
        dn = [(r["n"], r["dense_s"]) for r in rows if r.get("dense_s") is not None]
        if dn:
            ax.plot(*zip(*dn, strict=True), "s--", color=color, label=f"{case}: dense")
        ax.plot(ns, [r["build_s"] for r in rows], ":", color=color, alpha=0.6,
                label=f"{case}: Hessian build only")  # fmt: skip
    lap = [r for r in results if r["case"].startswith("block-laplacian")]
    lap.sort(key=lambda r: r["n"])
    if lap:
        ax.plot([r["n"] for r in lap], [r["auto_s"] for r in lap], "^-", color="C2",
                label="block-Laplacian lj-loop, 40 samples, k = 20")  # fmt: skip
    ax.axhline(1.0, color="grey", lw=0.6)
    ax.axhline(10.0, color="grey", lw=0.6)
    load = max(r.get("iterative_load", 0.0) for r in results)
    ax.set(xscale="log", yscale="log", xlabel="n (atoms)", ylabel="wall seconds",
           title=f"Lowest 20 slow modes, 2-core CPU (load average up to {load:.1f})")  # fmt: skip
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def write_doc_table(table: str):
    text = DOC.read_text() if DOC.exists() else f"{TABLE_START}\n{TABLE_END}\n"
    if TABLE_START not in text:
        text += f"\n{TABLE_START}\n{TABLE_END}\n"
    pattern = re.compile(re.escape(TABLE_START) + ".*?" + re.escape(TABLE_END), re.S)
    DOC.write_text(pattern.sub(lambda _: f"{TABLE_START}\n{table}\n{TABLE_END}", text))


# ---- scale: the cutoff model's sparse route ----------------------------------------------

SCALE_CASES = {  # label -> ModesConfig keywords (k = --k modes, solver "auto")
    "hessian @ samples": {"method": "hessian", "at": "samples"},
    "block-laplacian @ samples": {"method": "block-laplacian", "at": "samples"},
}
SCALE_DENSE_MAX_N = 1000  # accuracy against the dense solver up to this n
SCALE_DOC_MARKER = "modes-scale-table"


def _sparse_parts(system, model, cfg: ModesConfig) -> dict:
    """Stored entries of the averaged matrix, and one sample's assembly time."""
    rng = np.random.default_rng(0)
    xs = md.sample_configurations(system, cfg, system.x0, rng)
    plan = hess.make_pair_plan(model.pair_terms, system.n_atoms)
    build = hess.sparse_pair_hessian if cfg.method == "hessian" else hess.sparse_block_norms
    build(xs[0], plan)  # compile the potentials' derivatives for this pair-list size
    t = time.perf_counter()
    a = build(xs[0], plan)
    build_s = time.perf_counter() - t
    for x in xs[1:]:
        a = a + build(x, plan)
    return {"nnz": int(a.nnz), "density": a.nnz / a.shape[0] ** 2, "build_one_s": build_s}


def run_scale(sizes, k: int, kind: str, max_case_s: float) -> list[dict]:
    results = []
    for n in sorted(sizes):
        system = build_system(SystemConfig(kind=kind, n=n), seed=0)
        model = make_energy(system, EnergyConfig(dtype="float64", repulsion="cutoff"))
        for case, kw in SCALE_CASES.items():
            row = {"case": case, "kind": kind, "n": n, "k": k, "cutoff": 3.0}
            done = [r for r in results if r["case"] == case and r.get("seconds")]
            if done:  # skip when 1.5x the linear extrapolation from the last size is too long
                last = max(done, key=lambda r: r["n"])
                est = 1.5 * last["seconds"] * n / last["n"]
                if est > max_case_s:
                    row.update(skipped_estimate_s=est)
                    results.append(row)
                    print(f"{case:26s} n={n:6d} skipped (estimate {est:.0f} s)", flush=True)
                    continue
            cfg = ModesConfig(**kw)
            row.update(_sparse_parts(system, model, cfg))
            load0 = os.getloadavg()[0]
            cpu = time.process_time()
            m = md.slow_modes(system, model, cfg, k)
            row.update(seconds=m.seconds, cpu_s=time.process_time() - cpu, method=m.method,
                       load=max(load0, os.getloadavg()[0]), rigid=int(m.rigid.sum()))  # fmt: skip
            if n <= SCALE_DENSE_MAX_N:
                ref = md.slow_modes(system, model, ModesConfig(**kw, solver="dense"), k + 1)
                mu = np.abs(ref.values)
                ref = first_modes(ref, k)
                free = ~ref.rigid
                rel = np.abs(m.values[free] - ref.values[free]) / np.abs(ref.values[free])
                row.update(dense_s=ref.seconds, values_max_rel_diff=float(rel.max()),
                           max_principal_angle=float(np.max(subspace_angles(ref.vectors,
                                                                            m.vectors))),
                           relative_gap_after_k=float((mu[k] - mu[k - 1]) / mu[k]))  # fmt: skip
            print(f"{case:26s} n={n:6d} {m.seconds:7.2f} s  nnz {row['nnz']:>9d}  {m.method}",
                  flush=True)  # fmt: skip
            results.append(row)
    return results


def scale_table(results: list[dict]) -> str:
    lines = [
        "| case | n | matrix rows | stored entries (density) | one sample's assembly (s) | "
        "slow modes, total (s) [CPU s, load] | solver | "
        r"vs dense: max \|Δμ\|/\|μ\|, max angle (rad), gap after k |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        rows = r["n"] * (3 if r["case"].startswith("hessian") else 1)
        if "seconds" not in r:
            lines.append(f"| {r['case']} | {r['n']} | {rows} | — | — | skipped "
                         f"(~{r['skipped_estimate_s']:.0f} s est.) | — | — |")  # fmt: skip
            continue
        solver = r["method"].split("/", 2)[-1]
        acc = "—"
        if "values_max_rel_diff" in r:
            acc = (f"{_fmt(r['values_max_rel_diff'])}, {_fmt(r['max_principal_angle'])}, "
                   f"{_fmt(r['relative_gap_after_k'])} (dense {_fmt(r['dense_s'])} s)")  # fmt: skip
        lines.append(
            f"| {r['case']} | {r['n']} | {rows} | {r['nnz']:,} ({r['density']:.1e}) | "
            f"{_fmt(r['build_one_s'])} | {_fmt(r['seconds'])} [{_fmt(r['cpu_s'])}, "
            f"{r['load']:.1f}] | {solver} | {acc} |"
        )
    return "\n".join(lines)


def plot_scale(results: list[dict], path: Path, k: int):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for c, case in enumerate(SCALE_CASES):
        rows = sorted((r for r in results if r["case"] == case and "seconds" in r),
                      key=lambda r: r["n"])  # fmt: skip
        if rows:
            ax.plot([r["n"] for r in rows], [r["seconds"] for r in rows], "o-", color=f"C{c}",
                    label=f"{case}: total")  # fmt: skip
    ax.plot([4000], [5.0], "k*", ms=10, label="target n=4000 (5 s)")
    ax.plot([20000], [60.0], "kX", ms=9, label="target n=20000 (60 s)")
    load = max((r.get("load", 0.0) for r in results), default=0.0)
    title = f"Lowest {k} slow modes, cutoff model, 2-core CPU (load up to {load:.1f})"
    ax.set(xscale="log", yscale="log", xlabel="n (beads)", ylabel="wall seconds", title=title)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main_scale(args) -> int:
    from .common import replace_marked

    results = run_scale(args.sizes or [1000, 4000, 20000], args.k, args.kind,
                        args.max_case_seconds)  # fmt: skip
    save_json("modes_scale", {"k": args.k, "kind": args.kind, "energy": "cutoff 3.0",
                              "loadavg_end": os.getloadavg(), "results": results})  # fmt: skip
    plot_scale(results, RESULTS / "modes_scale.png", args.k)
    table = scale_table(results)
    replace_marked(DOC, SCALE_DOC_MARKER, table)
    print(table)
    return 0


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=None)
    parser.add_argument("--k", type=int, default=20)
    parser.add_argument("--dense-max-seconds", type=float, default=120.0)
    parser.add_argument("--scale", action="store_true", help="the cutoff model's sparse route")
    parser.add_argument("--kind", default="bond-lj-loop", help="--scale: loop kind")
    parser.add_argument("--max-case-seconds", type=float, default=240.0,
                        help="--scale: skip a case extrapolated beyond this")  # fmt: skip
    args = parser.parse_args(argv)
    if args.scale:
        return main_scale(args)
    args.sizes = args.sizes or [400, 1000, 4000]
    results: list[dict] = []
    for n in sorted(args.sizes):
        system = build_system(SystemConfig(kind="lj-loop", n=n), seed=0)
        model = make_energy(system, EnergyConfig(dtype="float64"))
        run_hessian_case("lj-loop @ x0", system, model, {"at": "x0"}, args.k, results,
                         args.dense_max_seconds)  # fmt: skip
        run_laplacian_case(system, model, args.k, results)
        cells = max(2, round((n / 4) ** (1 / 3)))
        net_system, net_model = fcc_network(cells)
        run_hessian_case("fcc-network @ minimum", net_system, net_model, {"at": "minimum"},
                         args.k, results, args.dense_max_seconds)  # fmt: skip
    RESULTS.mkdir(parents=True, exist_ok=True)
    save_json("modes", {"k": args.k, "openblas_threads": os.environ.get("OPENBLAS_NUM_THREADS"),
                        "results": results})  # fmt: skip
    plot(results, RESULTS / "modes.png")
    table = markdown_table(results)
    write_doc_table(table)
    print(table)
    written = [str(RESULTS / "modes.json"), str(RESULTS / "modes.png"), str(DOC)]
    print(json.dumps({"written": written}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
