"""The paper's qualitative claim at small n, on pure LJ: reparametrized optimization (CG,
GNN on slow modes) reaches lower energy than direct gradient descent more often than not.

Reference protocol and hyperparameters (engine.presets.paper_spec: pure-LJ n=400 settings,
k scaled with n) with two changes: deterministic all-pairs repulsion, and the paper's
A = Psi Psi^T propagation for the GNN. With the reference code's Psi Lambda Psi^T the GNN
loses to GD on all three seeds at n=150 (measured: +1.68/+1.41/+3.12 vs GD -0.119/+0.199/
+1.04): Lambda follows the per-pair-mean energy, about 4x larger at n=150 than at n=400, so
the reference learning rate overshoots (stage-1 energy climbs). Three seeds with a different
x0 each; energies are the full deterministic ones. See docs/benchmarks.md for larger runs.
"""

import numpy as np
import pytest

from engine import build_system, make_energy, run
from engine.presets import paper_spec
from engine.run import compute_modes, first_modes

N, SEEDS, STEPS = 150, (0, 1, 2), 3000
CHANGES = {"energy.repulsion": "all-pairs", "reparam.propagation": "psi"}


@pytest.fixture(scope="module")
def finals():
    out = {}
    for seed in SEEDS:
        specs = {
            m: paper_spec("lj-loop", N, m, seed, max_steps=STEPS).replace(**CHANGES)
            for m in ("gd", "cg", "gnn")
        }
        system = build_system(specs["gd"].system, seed)
        modes = compute_modes(specs["cg"], system, make_energy(system, specs["cg"].energy))
        for method, spec in specs.items():
            k = spec.reparam.n_modes
            shared = None if k is None else first_modes(modes, k)
            out[(method, seed)] = run(spec, system=system, modes=shared).summary()["final_energy"]
    return out


def test_reparametrized_beats_gd_more_often_than_not(finals):
    wins = [finals[(m, s)] < finals[("gd", s)] for m in ("cg", "gnn") for s in SEEDS]
    assert all(np.isfinite(list(finals.values())))
    assert sum(wins) > len(wins) / 2, f"wins {sum(wins)}/{len(wins)}: {finals}"
