"""Figure 6's panel c (GD from several random-coil starts): its sweep and its structure measure."""

import dataclasses

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from bench import bench_fig6
from engine import build_system
from engine.sweeps import expand
from tests.conftest import shared_pdb


def test_the_init_family_runs_gd_from_one_random_coil_per_seed():
    sweep = bench_fig6.sweep_of("gd-init", (), range(4), 500)
    runs = expand(sweep)
    assert [r.seed for r in runs] == [0, 1, 2, 3]
    for r in runs:
        assert r.method == "gd" and r.spec.system.start == "random"
        assert r.spec.optim.learning_rate == bench_fig6.GD_INIT_LR
        assert r.spec.schedule.max_steps == 500


def test_pairwise_ca_rmsd_ignores_rigid_motion_and_sees_a_different_fold():
    cfg = dataclasses.replace(bench_fig6.system_config(), pdb=shared_pdb("1PLW_native.pdb"),
                              start="native")  # fmt: skip
    system = build_system(cfg, 0)
    x = np.asarray(system.x0, dtype=np.float64)
    moved = Rotation.from_euler("xyz", [0.3, -1.1, 2.0]).apply(x) + [1.0, -2.0, 0.5]
    other = np.asarray(build_system(dataclasses.replace(cfg, start="extended"), 0).x0)
    out = bench_fig6.pairwise_ca_rmsd([x, moved, other], system)
    assert out["pairs"] == 3
    assert out["min"] == pytest.approx(0.0, abs=1e-3)  # the same structure, rotated and moved
    assert out["max"] > 0.1  # native against extended


def test_each_curve_states_the_learning_rate_its_run_used_whether_swept_or_fixed(tmp_path):
    from engine import io

    runs = [*expand(bench_fig6.sweep_of("gd-init", (), range(1), 500)),
            *expand(bench_fig6.sweep_of("gnn-1", (3e-5,), range(1), 500)),
            *expand(bench_fig6.sweep_of("md", (), range(1), 500))]  # fmt: skip
    metrics = {"step": np.array([0, 500]), "wall_time_s": np.array([0.0, 1.0]),
               "energy": np.array([1.0, 0.5])}  # fmt: skip
    rows = []
    for i, r in enumerate(runs):
        key = f"run{i}"
        io.write_bundle_data(tmp_path / "runs" / key, {"spec": r.spec.to_dict()}, metrics,
                             [0], np.zeros((1, 2, 3)), np.zeros((2, 3)))  # fmt: skip
        rows.append({"key": key, "method": r.method, "seed": r.seed, "status": "done"})
    lrs = {c["method"]: c["lr"] for c in bench_fig6.curves_of(tmp_path, rows)}
    assert lrs == {"gd": bench_fig6.GD_INIT_LR, "gnn": 3e-5, "openmm-md": None}


def test_the_doc_tables_read_each_setting_its_marks_and_panel_c_off_the_curves():
    gd = {"seed": 0, "step": [0, 2500, 5000, 9900], "wall_time_s": [0.0, 4.0, 8.0, 15.5],
          "energy": [884.0, -2249.0, -2262.3, -2290.04]}  # fmt: skip
    gnn = {"seed": 2, "step": [0, 3000, 10000], "wall_time_s": [0.0, 30.0, 70.0],
           "energy": [884.0, -2251.0, -2307.2]}  # fmt: skip
    marks = [{"steps": 5000, "runs": 3, "energy_mean": -1447.04, "energy_sd": 50.3,
              "wall_s_mean": 7.9}]  # fmt: skip
    init = {"runs": [{"seed": 0, "energy_start": -1846.5, "energy_end": -2254.7,
                      "rmsd_ca_start": 0.736, "rmsd_ca_end": 0.741, "steps": 9900}],
            "between_starts": {"mean": 0.61, "min": 0.424, "max": 0.794},
            "between_ends": {"mean": 0.604, "min": 0.402, "max": 0.795}}  # fmt: skip
    text = bench_fig6.doc_tables({"gd": {4e-4: gd}, "gnn-1": {3e-5: gnn}}, marks, init, 10_000)
    lines = text.splitlines()
    assert (
        "| GD lr 4e-4 | 0 | −2290.0 (early stop at 9,900) | −2262.3 | 5,000, 8.0 | 15.5 |" in lines
    )
    assert "| GNN 1 layer, stage-1 lr 3e-5 | 2 | −2307.2 | – | 3,000, 30.0 | 70.0 |" in lines
    assert "| OpenMM MD 298 K, 5,000 steps (3 seeds) | – | −1447.0 ± 50.3 | – | – | 7.9 |" in lines
    assert "| 0 | −1846.5 → −2254.7 | 0.736 → 0.741 | 9,900 (early stop) |" in lines
    assert "between the ends 0.604 nm (0.402–0.795)" in text
