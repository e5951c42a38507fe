"""Figure 4 benchmark (bench/bench_protein_fold.py): chignolin from its sequence, the round-robin
plan, the budget projection and the paper's two ratios on synthetic records."""

import dataclasses
import math

import pytest

from bench import bench_protein_fold as fig4


def _rec(protein, method, run, e, t, modes=0.0, n=100, rmsd=0.3, process=None, stopped=False):
    return {
        "protein": protein, "method": method, "run": run, "n_atoms": n, "final_energy": e,
        "wall_time_s": t, "modes_s": modes, "final_rmsd_ca": rmsd, "steps": 5000,
        "rmsd_ca_to_start": 0.01, "ms_per_step": 1.0, "early_stopped": stopped,
        "initial_energy": 100.0, "initial_rmsd_ca": 0.35, "start": "extended",
        "loadavg_start": [4.0, 3.0, 2.0], "loadavg_end": [5.0, 3.0, 2.0],
        "process_s": t if process is None else process,
    }  # fmt: skip


def test_chignolin_is_built_from_its_sequence():
    pytest.importorskip("openmm")
    from engine import build_system

    cfg = fig4.system_config("chignolin")
    assert cfg.pdb is None and cfg.sequence == "GYDPETGTWG" and cfg.start == "extended"
    # the sequence's own structure (its helix) only: the extended start builds the same atoms
    # a second time (tests/test_protein_build.py checks that starts share atoms)
    system = build_system(dataclasses.replace(cfg, start="native"), 0)
    assert system.meta["sequence"] == "GYDPETGTWG"
    assert system.meta["n_residues"] == 10
    assert system.reference is None  # no native structure offline: no CA-RMSD to native
    assert system.n_atoms == 138  # all atoms with hydrogens (amber14 templates, pH 7)
    assert any("built from sequence" in note for note in system.meta["notes"])


def test_specs_are_the_project_protein_settings():
    fg, gnn = fig4.make_spec("2jof", "fg", 3), fig4.make_spec("2jof", "gnn", 3)
    assert fg.reparam.kind == "none" and gnn.reparam.kind == "gnn"
    assert fg.optim.learning_rate == gnn.optim.learning_rate == 4e-4
    assert gnn.reparam.anchor == "x0" and gnn.modes.method == "hessian" and gnn.modes.at == "x0"
    assert fg.seed == gnn.seed == 3
    assert fg.schedule.max_steps == fig4.MAX_STEPS and fg.schedule.stopping == "reference"
    assert fg.system.start.endswith("2JOF_unfolded.pdb")


def test_plan_is_round_robin_alternates_order_and_skips_done_runs():
    done = {("a", "fg", 0), ("b", "fg", 0), ("b", "gnn", 0)}
    p = fig4.plan(["a", "b"], 2, done)
    assert p == [("a", 0, ["gnn"]), ("a", 1, ["gnn", "fg"]), ("b", 1, ["gnn", "fg"])]


def test_projection_scales_from_the_largest_known_protein():
    recs = [_rec("small", "gnn", 0, -1.0, 10.0, modes=2.0, n=100, process=20.0)]
    assert fig4.project_s("small", "gnn", 100, recs, True) == pytest.approx(22.0)
    assert fig4.project_s("small", "gnn", 100, recs, False) == pytest.approx(24.0)
    # twice the atoms: run x4, modes x8
    assert fig4.project_s("big", "gnn", 200, recs, True) == pytest.approx(80.0 + 16.0)
    assert fig4.project_s("big", "fg", 200, recs, True) is None


def test_pairs_and_summary_ratios_with_negative_energies():
    recs = [
        _rec("p", "fg", 0, -1000.0, 10.0), _rec("p", "gnn", 0, -1010.0, 20.0, modes=5.0),
        _rec("p", "fg", 1, -1000.0, 12.0), _rec("p", "gnn", 1, -990.0, 8.0, modes=5.0),
        _rec("p", "fg", 2, -1000.0, 9.0),  # no GNN partner: not a pair
    ]  # fmt: skip
    pr = fig4.pairs(recs)
    assert [(r["run"], r["E_FG_over_E_GNN"], r["t_FG_over_t_GNN"]) for r in pr] == [
        (0, pytest.approx(1000 / 1010), 0.5),
        (1, pytest.approx(1000 / 990), 1.5),
    ]
    assert pr[0]["dE_GNN_minus_FG"] == -10.0  # GNN lower: the ratio is below 1
    assert pr[0]["t_FG_over_t_GNN_excl_modes"] == pytest.approx(10 / 15)
    (s,) = fig4.summarize(recs, proteins=("p",))
    assert s["pairs"] == 2 and s["runs_FG"] == 3 and s["runs_GNN"] == 2
    assert s["t_FG_over_t_GNN"] == pytest.approx(1.0)
    assert s["t_FG_over_t_GNN_sd"] == pytest.approx(math.sqrt(0.5))
    assert s["E_FG_over_E_GNN"] == pytest.approx((1000 / 1010 + 1000 / 990) / 2)
    assert s["gnn_lower_in"] == 1 and s["gnn_faster_in"] == 1
    assert s["FG_energy_spread"] == 0.0  # FG repeats one computation
    assert s["all_same_sign"] and s["loadavg_1min_range"] == [4.0, 4.0]
    line = fig4.table_lines([s])[-1]
    assert "| 2 |" in line and "1.00 ± 0.71" in line


def test_missing_reference_is_shown_as_such():
    recs = [_rec("c", "fg", 0, -5.0, 1.0, rmsd=None), _rec("c", "gnn", 0, -5.0, 2.0, rmsd=None)]
    (s,) = fig4.summarize(recs, proteins=("c",))
    assert math.isnan(s["rmsd_ca_FG"])
    assert "no reference offline" in fig4.table_lines([s])[-1]


def test_speed_up_to_the_energy_both_reached():
    fg = _rec("p", "fg", 0, -100.0, 10.0)
    gnn = _rec("p", "gnn", 0, -110.0, 20.0, modes=5.0)
    fg["curve"] = {"step": [0, 50, 100], "wall_time_s": [0.0, 5.0, 10.0],
                   "energy": [0.0, -90.0, -100.0]}  # fmt: skip
    gnn["curve"] = {"step": [0, 50, 100], "wall_time_s": [5.0, 8.0, 20.0],
                    "energy": [0.0, -101.0, -110.0]}  # fmt: skip
    (pr,) = fig4.pairs([fg, gnn])
    # both reached -100 (FG's final): FG at 10 s, the GNN at 8 s (its modes included)
    assert pr["E_both_reached"] == -100.0
    assert (pr["t_FG_reach"], pr["t_GNN_reach"]) == (10.0, 8.0)
    assert pr["t_FG_over_t_GNN_equal_E"] == pytest.approx(1.25)
    assert math.isnan(fig4.reach_time({"curve": None}, -1.0))
