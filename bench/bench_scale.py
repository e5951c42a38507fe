"""Scale of the loop energies: energy+gradient, one optimizer step and compile time vs n.

Run: python -m bench.bench_scale [--max-n 32000] [--repeat 10]
Writes bench/results/scale_<platform>.json (cpu, gpu, ...) and scale_<platform>.png, and on
the CPU the table in docs/benchmarks.md ("Scale: pair energies"). Pure-LJ loop, float32,
seed 0, x0 of the reference start. Energies:
  old all-pairs: main's dense [n, n] host mask folded into the program, autodiff (n <= 4000);
  blocked: the all-pairs energy in tiles (engine/pairs.py), the default model;
  cutoff: the cutoff model's training energy over a neighbour list (cutoff 3, skin 1).
"Step" is one Adam step (elementwise clip) inside a jitted 20-step lax.scan chunk, divided
by 20. Compile time: lowering + compilation of the jitted energy+gradient.
Imports only jax, optax, numpy (and matplotlib for the plot, skipped if missing).
"""

from __future__ import annotations

import argparse
import functools
import statistics
import time

import jax
import jax.numpy as jnp
import numpy as np

from engine import EnergyConfig, OptimConfig, SystemConfig, build_system, make_energy, potentials
from engine.loop import make_chunk_fn
from engine.optim import make_optimizer

from .common import DOCS, RESULTS, replace_marked, save_json

SIZES = (1000, 4000, 16000, 32000)
OLD_MAX_N = 4000
CHUNK = 20


def old_all_pairs(system, cfg):
    """main's energy before issue 13: dense host mask constant, autodiff (for comparison)."""
    n = system.n_atoms
    stride = int(system.meta["loop_stride"])
    i, j = np.triu_indices(n, 1)
    keep = (j - i != 1) & (j - i != stride)
    mask_np = np.zeros((n, n), bool)
    mask_np[i[keep], j[keep]] = True
    scale = cfg.repel_mag / int(keep.sum())
    rep = functools.partial(potentials.soft_repulsion, power=cfg.repel_pow, eps=cfg.lj_eps)
    model = make_energy(system, cfg)  # its bonded part is reused through the difference
    mask = jnp.asarray(mask_np)

    def repulsion(x):
        d = x[:, None, :] - x[None, :, :]
        d2 = jnp.sum(d * d, axis=-1)
        r2 = jnp.where(mask, d2, 1.0)
        return scale * jnp.sum(jnp.where(mask, rep(jnp.sqrt(r2)), 0.0))

    from engine import pairs

    new_rep = pairs.make_blocked_energy(n, rep, scale, (1, stride))
    return lambda x: model.energy_fn(x) - new_rep(x) + repulsion(x)


def _median(fn, repeat):
    jax.block_until_ready(fn())
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        jax.block_until_ready(fn())
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def measure(n: int, variant: str, repeat: int) -> dict:
    system = build_system(SystemConfig(kind="lj-loop", n=n), seed=0)
    repulsion = "cutoff" if variant == "cutoff" else "all-pairs"
    cfg = EnergyConfig(repulsion=repulsion, cutoff=3.0, dtype="float32")
    model = make_energy(system, cfg)
    x = jnp.asarray(system.x0, jnp.float32)
    aux = model.aux_init(jax.random.PRNGKey(0), x)
    if variant == "old":
        energy = old_all_pairs(system, cfg)
        objective = lambda y, a: energy(y)  # noqa: E731
    else:
        objective = model.train_energy_fn
    t = time.perf_counter()
    vg = jax.jit(jax.value_and_grad(objective)).lower(x, aux).compile()
    compile_s = time.perf_counter() - t
    out = {"n": n, "variant": variant, "compile_s": compile_s}
    out["eval_s"] = _median(lambda: vg(x, aux), repeat)
    tx = make_optimizer(OptimConfig(name="adam", learning_rate=0.01))
    chunk = make_chunk_fn(objective, lambda p: p, lambda p: objective(p, aux), tx, CHUNK)
    state = tx.init(x)
    chunk.compile(x, state, aux)
    out["step_s"] = _median(lambda: chunk(x, state, aux), max(2, repeat // 3)) / CHUNK
    if variant == "cutoff":
        out["neighbors_per_atom"] = int(aux.idx.shape[1])
    return out


def table(rows: list[dict], platform: str) -> str:
    by = {(r["variant"], r["n"]): r for r in rows}
    sizes = sorted({r["n"] for r in rows})
    lines = [
        f"| n | old all-pairs E+grad | blocked E+grad | blocked step | cutoff E+grad | cutoff "
        f"step | compile old / blocked / cutoff ({platform}) |",
        "|---|---|---|---|---|---|---|",
    ]

    def ms(r, key):
        return f"{r[key] * 1e3:.1f} ms" if r else "–"

    for n in sizes:
        old, blk, cut = by.get(("old", n)), by.get(("blocked", n)), by.get(("cutoff", n))
        comp = " / ".join(f"{r['compile_s']:.2f} s" if r else "–" for r in (old, blk, cut))
        lines.append(
            f"| {n} | {ms(old, 'eval_s')} | {ms(blk, 'eval_s')} | {ms(blk, 'step_s')} | "
            f"{ms(cut, 'eval_s')} | {ms(cut, 'step_s')} | {comp} |"
        )
    return "\n".join(lines)


def plot(rows: list[dict], path) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return
    fig, ax = plt.subplots(figsize=(6, 4))
    for variant, style in (("old", "s--"), ("blocked", "o-"), ("cutoff", "^-")):
        rs = sorted((r for r in rows if r["variant"] == variant), key=lambda r: r["n"])
        if rs:
            ax.loglog([r["n"] for r in rs], [r["eval_s"] for r in rs], style, label=variant)
    ns = np.array(sorted({r["n"] for r in rows}), float)
    ref = [r for r in rows if r["variant"] == "blocked" and r["n"] == ns[0]]
    if ref:
        ax.loglog(ns, ref[0]["eval_s"] * (ns / ns[0]) ** 2, ":", color="grey", label="∝ n²")
    ax.set_xlabel("n (beads)")
    ax.set_ylabel("energy + gradient (s)")
    ax.set_title("Loop energy, float32")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--max-n", type=int, default=32000)
    ap.add_argument("--repeat", type=int, default=10)
    ap.add_argument("--sizes", type=int, nargs="*", default=list(SIZES))
    ap.add_argument("--no-docs", action="store_true", help="do not rewrite docs/benchmarks.md")
    args = ap.parse_args(argv)
    platform = jax.devices()[0].platform
    rows = []
    for n in [s for s in args.sizes if s <= args.max_n]:
        for variant in ("old", "blocked", "cutoff"):
            if variant == "old" and n > OLD_MAX_N:
                continue
            if variant == "blocked" and n > 10_000 and platform == "cpu" and args.max_n < n:
                continue
            row = measure(n, variant, args.repeat)
            rows.append(row)
            print(
                f"n={n:>6} {variant:>8}: E+grad {row['eval_s'] * 1e3:9.2f} ms, "
                f"step {row['step_s'] * 1e3:9.2f} ms, compile {row['compile_s']:.2f} s",
                flush=True,
            )
    path = save_json(f"scale_{platform}", {"platform": platform, "rows": rows})
    plot(rows, RESULTS / f"scale_{platform}.png")
    if platform == "cpu" and not args.no_docs:
        replace_marked(DOCS / "benchmarks.md", "scale-table", table(rows, platform))
    print(table(rows, platform))
    print("->", path)


if __name__ == "__main__":
    main()
