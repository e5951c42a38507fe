"""Per-step overhead of the optimizer loop (issue targets: GD <= 1.2x one energy+grad
evaluation; GNN step <= 1.5x the GD step at n=1000, k=250, h=32).

Run: .venv/bin/python -m bench.bench_overhead   (writes bench/results/overhead.json)
All times in one process, float32, medians of round-robin repeats (so load changes on a
shared machine hit every variant alike); ratios are what we report. A chunk of 100 steps
includes one extra energy+grad evaluation at its end (the logged values): 1% of its cost.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from engine import (
    EnergyConfig,
    ModesConfig,
    OptimConfig,
    ReparamConfig,
    SystemConfig,
    build_system,
    make_energy,
)
from engine.loop import make_chunk_fn
from engine.optim import make_optimizer
from engine.reparam import make_reparam

from .common import DOCS, replace_marked, save_json, timeit_interleaved

CHUNK = 100


def measure(n: int = 1000, k: int = 250, hidden: int = 32) -> dict:
    system = build_system(SystemConfig(kind="lj-loop", n=n), seed=0)
    model = make_energy(system, EnergyConfig(dtype="float32"))
    x0 = jnp.asarray(system.x0, jnp.float32)
    aux = model.aux_init(jax.random.PRNGKey(0), x0)
    eval_fn = jax.jit(jax.value_and_grad(model.energy_fn))

    from engine.modes import slow_modes

    modes = slow_modes(system, model, ModesConfig(), k, seed=0)
    out = {"n": n, "k": k, "hidden": hidden, "chunk": CHUNK, "modes_s": modes.seconds}
    # eval: CHUNK separate jitted energy+grad calls, so every entry times CHUNK evaluations
    fns = {"eval": lambda: [jax.block_until_ready(eval_fn(x0)) for _ in range(CHUNK)]}
    for label, cfg in (
        ("gd", ReparamConfig(kind="none")),
        ("cg", ReparamConfig(kind="linear", n_modes=k)),
        ("gnn", ReparamConfig(kind="gnn", n_modes=k, hidden=hidden)),
    ):
        reparam = make_reparam(cfg, modes, n, jnp.float32)
        params = reparam.init(jax.random.PRNGKey(1), x0)
        tx = make_optimizer(OptimConfig(name="adam", learning_rate=0.01))
        chunk = make_chunk_fn(
            lambda p, a, r=reparam: model.train_energy_fn(r.apply(p), a),
            reparam.apply,
            model.energy_fn,
            tx,
            CHUNK,
        )
        state = tx.init(params)
        chunk.compile(params, state, aux)
        fns[label] = lambda c=chunk, p=params, s_=state: jax.block_until_ready(c(p, s_, aux))
    medians = timeit_interleaved(fns, rounds=7)
    out["eval_s"] = medians.pop("eval") / CHUNK
    for label, t in medians.items():
        out[f"{label}_step_s"] = t / CHUNK
    out["gd_over_eval"] = out["gd_step_s"] / out["eval_s"]
    out["gnn_over_gd"] = out["gnn_step_s"] / out["gd_step_s"]
    out["cg_over_gd"] = out["cg_step_s"] / out["gd_step_s"]
    return out


def main():
    result = measure()
    path = save_json(
        "overhead", {"overhead": result, "targets": {"gd_over_eval": 1.2, "gnn_over_gd": 1.5}}
    )
    r = result
    replace_marked(
        DOCS / "benchmarks.md",
        "overhead-table",
        "\n".join(
            [
                "| quantity (n=1000, k=250, h=32, float32) | value | target |",
                "|---|---|---|",
                f"| one jitted energy+grad evaluation | {r['eval_s'] * 1e3:.1f} ms | |",
                f"| GD step (Adam, clip) / evaluation | {r['gd_over_eval']:.2f} | <= 1.2 |",
                f"| GNN step / GD step | {r['gnn_over_gd']:.2f} | <= 1.5 |",
                f"| CG step / GD step | {r['cg_over_gd']:.2f} | |",
            ]
        ),
    )
    for key, value in result.items():
        print(f"{key:>14}: {value:.4g}" if isinstance(value, float) else f"{key:>14}: {value}")
    print("->", path)


if __name__ == "__main__":
    main()
