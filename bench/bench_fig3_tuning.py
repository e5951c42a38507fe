"""The learning-rate sweep behind engine.presets.TUNED (Figure 3's "tuned" protocol).

improved_spec at n = 400, seed 100 (not one of the benchmark's seeds 0-4), 20,000 steps:
GD's learning rate x {0.5, 1, 2} (and 4 for Bond+LJ); CG and GNN started at x0 with
stage-1 learning rates {3e-4, 1e-3, 3e-3, 1e-2, 3e-2, 0.1} where the sweep's edge was best.
Every run appends a line to bench/results/fig3_tuning.jsonl. Run:
  .venv/bin/python -m bench.bench_fig3_tuning
"""

from __future__ import annotations

import json

from engine import run
from engine.presets import improved_spec

from .common import RESULTS

OUT = RESULTS / "fig3_tuning.jsonl"
BASE_LR = {"lj-loop": 0.02, "bond-lj-loop": 0.01}
STAGE1 = {
    ("lj-loop", "cg"): (1e-3, 3e-3, 1e-2, 3e-2, 0.1),
    ("lj-loop", "gnn"): (3e-4, 1e-3, 3e-3, 1e-2, 3e-2),
    ("bond-lj-loop", "cg"): (1e-3, 3e-3, 1e-2, 3e-2, 0.1),
    ("bond-lj-loop", "gnn"): (3e-4, 1e-3, 3e-3, 1e-2, 3e-2),
}
GD_FACTORS = {"lj-loop": (0.5, 1, 2), "bond-lj-loop": (0.5, 1, 2, 4)}


def cases():
    for system in ("lj-loop", "bond-lj-loop"):
        for f in GD_FACTORS[system]:
            yield system, "gd", {"optim.learning_rate": BASE_LR[system] * f}
        for method in ("cg", "gnn"):
            for lr1 in STAGE1[(system, method)]:
                yield system, method, {"reparam.anchor": "x0", "optim.stage1_lr": lr1}


def main() -> None:
    with OUT.open("a") as out:
        for system, method, changes in cases():
            result = run(
                improved_spec(system, 400, method, 100, max_steps=20000).replace(**changes)
            )
            row = {
                "system": system, "method": method, "changes": changes,
                "E": float(result.metrics["energy"][-1]), "steps": int(result.metrics["step"][-1]),
                "wall": result.timings["total_s"], "switch": result.stage_switch_step,
            }  # fmt: skip
            out.write(json.dumps(row) + "\n")
            out.flush()
            print(row, flush=True)


if __name__ == "__main__":
    main()
