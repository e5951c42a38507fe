"""Figure 5 folding (issue 14): the plateau rule, resumable curves (engine and OpenMM MD), the
fold preset, OpenMM MD in the workbench form, the RMSD-first curves and the native overlay."""

import json
import subprocess
import types
from pathlib import Path

import numpy as np
import pytest

from bench import bench_fold
from bench.common import cpu_model, machine, source_commit
from engine import RunSpec, presets
from engine.methods import METHODS
from engine.presets import FOLD_PRESET, PRESETS, fold_spec
from engine.protein import baseline
from tests.conftest import shared_pdb
from workbench import figures, forms
from workbench.panels import live, method

RESULTS = Path(__file__).resolve().parents[1] / "bench" / "results"


# ---- the report's seed statistics ---------------------------------------------------------------
def _curve(seed, steps, rmsd, status="running", method="gnn-h10"):
    rows = {"step": list(steps), "wall_time_s": [2.0 * s for s in steps], "rmsd_ca": list(rmsd)}
    return {"seed": seed, "method": method, "step": steps[-1], "status": status, "rows": rows}


def test_seed_band_averages_only_where_every_seed_has_run():
    a = _curve(0, [0, 10, 20, 30], [0.7, 0.6, 0.5, 0.4], status="done")
    b = _curve(1, [0, 10, 20], [0.7, 0.8, 0.9])
    grid = np.array([0.0, 5.0, 20.0, 30.0])
    mean, lo, hi = bench_fold.seed_band([a, b], "step", "rmsd_ca", grid)
    np.testing.assert_allclose(mean[:3], [0.7, 0.7, 0.7])
    np.testing.assert_allclose(lo[:3], [0.7, 0.65, 0.5])
    np.testing.assert_allclose(hi[:3], [0.7, 0.75, 0.9])
    assert np.isnan(mean[3]) and np.isnan(lo[3])  # seed 1 has not reached step 30


def test_by_method_summarizes_each_methods_seeds_and_counts_the_finished():
    table = [
        {"start": "unfolded", "method": "gnn-h10", "status": s, "rmsd_ca_end": r, "steps": n,
         "md_rmsd_ca_at_same_wall": md}
        for s, r, n, md in (("done", 0.6, 400_000, 0.5), ("running", 0.7, 200_000, float("nan")),
                            ("plateau", 0.8, 300_000, 0.7))
    ]  # fmt: skip
    (entry,) = bench_fold.by_method(table)
    assert (entry["method"], entry["seeds"], entry["finished"]) == ("gnn-h10", 3, 2)
    assert entry["rmsd_ca_end"] == pytest.approx({"mean": 0.7, "min": 0.6, "max": 0.8})
    assert entry["md_rmsd_ca_at_same_wall"] == pytest.approx({"mean": 0.6, "min": 0.5, "max": 0.7})
    assert "wall_s" not in entry  # absent from every row: no made-up statistic


def test_the_race_reads_each_method_at_fixed_wall_times_where_its_seeds_ran_or_ended():
    def curve(method, seed, walls, rmsd, status="running"):
        return {"start": "unfolded", "method": method, "seed": seed, "status": status,
                "rows": {"wall_time_s": walls, "rmsd_ca": rmsd}}  # fmt: skip

    curves = [
        curve("gnn-h10", 0, [80.0, 200.0, 1500.0], [0.73, 0.70, 0.60]),  # modes took 80 s
        curve("gnn-h10", 1, [90.0, 400.0], [0.73, 0.65]),  # paused by the session before 1000 s
        curve("gnn-h100", 0, [90.0, 400.0], [0.73, 0.55], status="plateau"),  # ended at 400 s
        curve("md", 0, [0.0, 50.0, 3500.0], [0.73, 0.50, 0.45]),
    ]
    by = {e["method"]: e["rmsd_ca_at_wall"] for e in bench_fold.race(curves)}
    # at 30 s both GNN seeds still compute their modes: they stand at the start
    assert by["gnn-h10"]["30"] == pytest.approx({"seeds": 2, "mean": 0.73, "min": 0.73,
                                                 "max": 0.73})  # fmt: skip
    # the last row logged at or before 300 s: seed 0's at 200 s, seed 1's at 90 s
    assert by["gnn-h10"]["300"] == pytest.approx({"seeds": 2, "mean": 0.715, "min": 0.70,
                                                  "max": 0.73})  # fmt: skip
    assert by["gnn-h10"]["1000"]["seeds"] == 1  # seed 1 never ran that long
    assert "3000" not in by["gnn-h10"] and by["md"]["3000"]["mean"] == pytest.approx(0.50)
    assert "8000" not in by["md"]
    # a curve that ended stays where it ended: later checkpoints read its last value
    assert by["gnn-h100"]["8000"] == pytest.approx({"seeds": 1, "mean": 0.55, "min": 0.55,
                                                    "max": 0.55})  # fmt: skip


# ---- the plateau rule ---------------------------------------------------------------------------
def _rows(n=301, every=1000, e=None, r=None):
    steps = np.arange(n) * every
    return steps, (np.full(n, -2400.0) if e is None else e), (np.full(n, 0.3) if r is None else r)


def test_plateau_fires_on_a_flat_stretch_after_the_window_only():
    steps, e, r = _rows()
    e = e - 200 * np.exp(-steps / 20_000)  # falls early, flat for the last 100k steps
    msg = bench_fold.plateau(steps, e, r)
    assert msg and "plateau at step 300000" in msg and "100,000 steps" in msg
    # less than a window logged: never
    assert bench_fold.plateau(steps[:100], e[:100], r[:100]) is None


def test_plateau_does_not_fire_while_energy_or_rmsd_still_move():
    steps, e, r = _rows()
    falling = e - 0.0001 * steps  # 10 kJ/mol over the last 100k steps
    assert bench_fold.plateau(steps, falling, r) is None
    drifting = r + 0.3 * steps / steps[-1]  # 0.1 nm over the last window
    assert bench_fold.plateau(steps, e, drifting) is None
    # just inside the tolerances: fires
    slow = e - 0.5 * (steps >= 250_000)  # 0.5 kJ/mol < 1.0
    assert bench_fold.plateau(steps, slow, r + 0.01 * (steps >= 250_000)) is not None


# ---- resumable curves (small: Met-enkephalin, a few hundred steps) -----------------------------
@pytest.fixture
def tiny(monkeypatch, tmp_path):
    shared_pdb("1PLW_native.pdb")
    monkeypatch.setattr(bench_fold, "NATIVE", "1PLW_native.pdb")
    monkeypatch.setattr(bench_fold, "STARTS", {"unfolded": "1PLW_native.pdb"})
    monkeypatch.setattr(bench_fold, "OUT", tmp_path / "fold")
    monkeypatch.setattr(bench_fold, "MODES_CACHE", tmp_path / "modes")
    monkeypatch.setattr(bench_fold, "SEGMENT", 200)
    monkeypatch.setattr(bench_fold, "LOG_EVERY", 100)
    monkeypatch.setattr(bench_fold, "ENGINE_STEPS", 600)
    monkeypatch.setattr(bench_fold, "MD_STEPS", 400)
    monkeypatch.setattr(bench_fold, "STAGE1_STEPS", 200)
    monkeypatch.setattr(presets, "FOLD_STAGE1_STEPS", 200)
    return tmp_path


def _advance(runner, key):
    start, method_, seed = key.split("_")
    curve = bench_fold.load_curve(key) or bench_fold.blank_record(start, method_, int(seed[1:]))
    npz = bench_fold.OUT / f"{key}.npz"
    state = dict(np.load(npz)) if npz.exists() and curve.get("segments") else None
    bench_fold.save_curve(curve, runner.segment(curve, state))
    return bench_fold.load_curve(key)


def test_an_engine_curve_resumed_in_a_new_process_continues_the_same_run(tiny):
    key = bench_fold.key_of("unfolded", "gd", 0)
    first = _advance(bench_fold.EngineCurves(), key)
    assert first["step"] == 200 and first["status"] == "running" and len(first["segments"]) == 1
    # a new "session": nothing compiled, state read back from the checkpoint
    resumed = _advance(bench_fold.EngineCurves(), key)
    assert resumed["step"] == 400 and resumed["rows"]["step"] == [0, 100, 200, 300, 400]
    # the same 400 steps in one go (another key) give the same energies
    bench_fold.SEGMENT = 400
    straight = _advance(bench_fold.EngineCurves(), bench_fold.key_of("unfolded", "gd", 1))
    assert straight["rows"]["step"] == resumed["rows"]["step"]
    np.testing.assert_allclose(resumed["rows"]["energy"], straight["rows"]["energy"], rtol=1e-5)
    assert resumed["rows"]["energy"][-1] < resumed["rows"]["energy"][0] - 10  # it minimizes
    seg = resumed["segments"][-1]
    assert seg["backend"] in ("cpu", "gpu") and len(seg["loadavg"]) == 3 and seg["ms_per_step"] > 0
    assert seg["commit"] == source_commit() and resumed["wall_s"] > first["wall_s"] > 0


def test_benchmark_results_name_the_commit_of_the_code_that_made_them():
    head = subprocess.run(["git", "rev-parse", "--short=12", "HEAD"], capture_output=True,
                          text=True, check=True, cwd=RESULTS.parents[1]).stdout.strip()  # fmt: skip
    commit = source_commit()
    assert commit in (head, head + "+dirty")
    assert machine()["commit"] == commit
    cpu = bench_fold.where_run()["cpu"]  # a chaotic run's end can depend on it
    assert cpu == machine()["cpu"] and cpu != "unknown"


def test_a_gnn_curve_checkpoints_after_its_switch_and_resumes_in_stage_2(tiny):
    key = bench_fold.key_of("unfolded", "gnn-h10", 0)
    runner = bench_fold.EngineCurves()
    first = _advance(runner, key)
    assert first["switch_step"] == 200 and first["stage"] == 2 and first["modes_s"] > 0
    assert first["spec"]["reparam"]["hidden"] == 10 and first["spec"]["reparam"]["n_layers"] == 2
    assert set(first["rows"]["stage"]) == {1}  # rows report the stage their chunk ran in
    saved = np.load(bench_fold.OUT / f"{key}.npz")
    assert saved["x"].shape == (75, 3)  # stage 2: positions and Adam's state only
    again = _advance(bench_fold.EngineCurves(), key)
    assert again["step"] == 400 and again["rows"]["stage"][-1] == 2
    assert np.isfinite(again["rows"]["energy"]).all()


def test_an_md_curve_resumes_with_positions_and_velocities_and_ends_at_its_budget(tiny):
    key = bench_fold.key_of("unfolded", "md", 0)
    md = bench_fold.MDCurves(bench_fold.EngineCurves())
    first = _advance(md, key)
    assert first["md"]["temperature_K"] == baseline.MD_TEMPERATURE == 298.0
    assert first["md"]["timestep_ps"] == baseline.MD_TIMESTEP == 0.002
    saved = np.load(bench_fold.OUT / f"{key}.npz")
    assert saved["v"].shape == saved["x"].shape == (75, 3) and np.abs(saved["v"]).max() > 0
    done = _advance(bench_fold.MDCurves(bench_fold.EngineCurves()), key)
    assert done["step"] == 400 and done["status"] == "done" and "298 K" in done["message"]
    assert done["segments"][-1]["openmm_platform"] in ("CPU", "CUDA", "OpenCL", "Reference")
    # MD runs the built-in OBC2 kernel; a segment from before that records none
    assert done["segments"][-1]["gb_force"] == "GBSAOBCForce"
    assert bench_fold.machine_of(done["segments"][-1]).split(" on ")[0].endswith(" GBSAOBCForce")
    older = {k: v for k, v in done["segments"][-1].items() if k != "gb_force"}
    assert bench_fold.machine_of(older).split(" on ")[0].endswith(" CustomGBForce")
    # 298 K dynamics: the potential energy fluctuates well above the start's minimum-free value
    assert np.isfinite(done["rows"]["energy"]).all() and len(done["rows"]["step"]) == 5


def test_report_marks_partial_results_and_compares_with_md_at_the_same_wall_time(tiny):
    for key in ("unfolded_gd_s0", "unfolded_md_s0"):
        runner = bench_fold.MDCurves(bench_fold.EngineCurves()) if "md" in key else None
        _advance(runner or bench_fold.EngineCurves(), key)
    curves = [bench_fold.load_curve(k) for k in ("unfolded_gd_s0", "unfolded_md_s0")]
    gd, md = curves
    t = md["rows"]["wall_time_s"][-1]
    assert bench_fold.at_wall_time(md, t, "rmsd_ca") == md["rows"]["rmsd_ca"][-1]
    assert np.isnan(bench_fold.at_wall_time(md, t + 1.0, "rmsd_ca"))
    assert gd["status"] == md["status"] == "running"
    data = bench_fold.summarize(curves)
    assert data["partial"] is True
    row = {r["method"]: r for r in data["table"]}["gd"]
    assert row["steps"] == 200 and row["fraction_done"] == pytest.approx(200 / 600)
    want = bench_fold.at_wall_time(md, gd["wall_s"], "rmsd_ca")  # nan: MD ran less long
    np.testing.assert_equal(row["md_rmsd_ca_at_same_wall"], want)
    assert row["commits"] == [source_commit()]
    assert row["machines"] == [f"{gd['segments'][0]['backend']} on {cpu_model()}"]
    table = bench_fold.doc_tables(data)
    assert "| unfolded_gd_s0 | running | 200 / 600 |" in table


def test_plan_runs_deterministic_methods_once_and_seed_zero_first():
    plan = bench_fold.plan(["unfolded", "t1000"], list(bench_fold.METHODS), 3, 1)
    assert len(plan) == 2 * (2 + 5 * 3)  # GD, CG once; 4 GNNs and MD three times
    assert all(s == 0 for _, _, s in plan[:14]) and plan[0] == ("unfolded", "gd", 0)


def test_bench_fold_specs_are_the_fold_preset_protocol():
    spec = bench_fold.make_spec("unfolded", "gnn-h300", 2)
    want = fold_spec("gnn", 2, hidden=300)
    assert spec.reparam == want.reparam and spec.optim == want.optim
    assert spec.schedule == want.schedule and spec.schedule.max_steps == 400_000
    assert spec.schedule.stopping == "none" and spec.schedule.switch == "fixed"
    md = bench_fold.make_spec("t1000", "md", 0)
    assert md.schedule.max_steps == 800_000 and md.system.start.endswith("2JOF_unfolded_T1000.pdb")


# ---- the workbench: fold preset, OpenMM MD in the form -----------------------------------------
def test_fold_preset_runs_gd_gnn_and_md_from_the_unfolded_start():
    shared_pdb("2JOF_unfolded.pdb")
    desc, specs = PRESETS[FOLD_PRESET]
    assert [s.method_label for s in specs] == ["gd", "gnn", "openmm-md"]
    assert {s.system.start for s in specs} == {presets.fold_start()}
    assert presets.fold_start() == "2JOF_unfolded.pdb"  # a structure name, not a path
    assert {s.schedule.max_steps for s in specs} == {presets.FOLD_PRESET_STEPS}
    assert f"{presets.FOLD_PRESET_STEPS:,} steps" in desc and "298 K, 2 fs" in desc
    assert METHODS["openmm-md"].runner == "openmm-md"
    assert "FOLD_NUMBERS" not in desc


def test_fold_preset_caption_quotes_the_fold_benchmark():
    desc, _ = PRESETS[FOLD_PRESET]
    data = json.loads((RESULTS / "fold.json").read_text())
    rows = {r["curve"]: r for r in data["table"]}
    curves = {k: json.loads((RESULTS / "fold" / f"{k}.json").read_text())
              for k in ("unfolded_gd_s0", "unfolded_gnn-h100_s0", "unfolded_md_s0")}  # fmt: skip
    at = presets.FOLD_PRESET_STEPS
    for key, c in curves.items():
        steps = c["rows"]["step"]
        assert at in steps, f"{key} has not reached {at} steps"
        r = c["rows"]["rmsd_ca"][steps.index(at)]
        assert f"{r:.3f} nm" in desc, key
        assert rows[key]["rmsd_ca_start"] == c["rows"]["rmsd_ca"][0]
        e = c["rows"]["energy"][steps.index(at)]
        assert f"{e:.1f}" in desc, key
    gd, gnn, md = curves.values()
    assert f"{gd['rows']['rmsd_ca'][0]:.3f} nm" in desc
    # the claim: only MD moves the chain towards the native within these steps
    i = gd["rows"]["step"].index(at)
    assert md["rows"]["rmsd_ca"][i] < gd["rows"]["rmsd_ca"][0] - 0.1
    for c in (gd, gnn):
        assert abs(c["rows"]["rmsd_ca"][i] - c["rows"]["rmsd_ca"][0]) < 0.02
    assert "docs/benchmarks-protein.md" in desc


def _first_wall_at(curve: dict, rmsd: float) -> float | None:
    rows = curve["rows"]
    hits = [t for t, r in zip(rows["wall_time_s"], rows["rmsd_ca"], strict=True) if r <= rmsd]
    return hits[0] if hits else None


def test_fold_preset_caption_quotes_the_race_to_0_60_nm_at_the_papers_length():
    desc, _ = PRESETS[FOLD_PRESET]
    curves = [json.loads(p.read_text()) for p in sorted((RESULTS / "fold").glob("unfolded_*.json"))]
    gnn = [_first_wall_at(c, 0.60) for c in curves if c["method"].startswith("gnn")]
    md = [_first_wall_at(c, 0.60) for c in curves if c["method"] == "md"]
    assert len(gnn) == 12 and len(md) == 3
    fastest = min(t for t in gnn if t is not None)
    first, second, third = sorted(md)  # every MD seed has got there (a first time is final)
    assert f"after {fastest:.0f} s of wall time" in desc
    assert f"MD reaches it after {first:.0f} and {second:.0f} s in two seeds" in desc
    assert f"after {third:,.0f} s in the third" in desc
    assert second < fastest < third and "first in 2 of 3 seeds" in desc


def test_openmm_md_is_a_protein_method_of_the_form_stating_temperature_and_step():
    assert "openmm-md" in forms.FORM_METHODS
    opts = {o["value"]: o for o in method.method_options("protein")}
    md = opts["openmm-md"]
    assert not md["disabled"] and {o["value"]: o for o in method.method_options("loop")}[
        "openmm-md"]["disabled"]  # fmt: skip
    label, title = md["label"].children, md["label"].title
    assert "298 K" in label and "298 K" in title and "2 fs" in title and "1/ps" in title
    names = [f.name for f in forms.FIELDS]
    values, methods_, _, tab, _ = method.preset_form(*PRESETS[FOLD_PRESET], names)
    assert tab == "protein" and methods_ == ["gd", "gnn", "openmm-md"]
    protein = {"pdb": "2JOF", "sequence": None, "start": presets.fold_start()}
    form = dict(zip(names, values, strict=True))
    form = {k: v for k, v in form.items() if v is not method.NU}
    gd, gnn, md_spec = forms.parse_run_form(form, "protein", methods_, protein)
    assert md_spec.method_label == "openmm-md"
    assert md_spec.schedule.max_steps == presets.FOLD_PRESET_STEPS
    assert gnn.reparam.hidden == 100 and gnn.reparam.n_layers == 2
    assert method.run_risks(form, "protein", methods_, lambda: protein) == []


# ---- the RMSD-first curves and the native overlay -----------------------------------------------
RUNS = [{"id": "a", "label": "gd", "color": "#d62728"}, {"id": "b", "label": "md", "color": "#777"}]


def test_folding_groups_put_the_rmsd_to_native_on_top():
    spec = PRESETS[FOLD_PRESET][1][0]
    assert live.folding(spec) and not live.folding(spec.replace(**{"system.start": "native"}))
    assert not live.folding(RunSpec())
    g = live.new_group(["a", "b"], PRESETS[FOLD_PRESET][1][:2], True, 2, 300)
    assert g.live["fold"] is True
    fig = g.figure
    assert fig.layout.yaxis.title.text == "CA RMSD to native (nm)"
    assert fig.layout.yaxis3.title.text.startswith("E − E_best") and fig.layout.yaxis3.type == "log"
    panels = figures.curve_panels(True, rmsd_first=True)
    assert [(p.y, p.row) for p in panels] == [("energy", 2), ("energy", 2), (figures.RMSD, 1),
                                              (figures.RMSD, 1)]  # fmt: skip
    ramp = np.arange(5.0)
    cols = {
        r: {"step": ramp * 100, "wall_time_s": ramp * 0.5, "energy": -2400 - ramp * (i + 1),
            figures.RMSD: 0.35 - 0.01 * ramp}
        for i, r in enumerate(("a", "b"))
    }  # fmt: skip
    patch = figures.curves_patch(RUNS, cols, with_rmsd=True, rmsd_first=True).to_plotly_json()
    ops = {tuple(op["location"]): op["params"]["value"] for op in patch["operations"]}
    assert ("layout", "yaxis3", "range") in ops and ("layout", "yaxis", "range") not in ops
    # trace order is the panel order: the RMSD traces of run "a" (panel 2) hold its RMSD
    assert ops[("data", 4, "y")] == pytest.approx(list(cols["a"][figures.RMSD]))
    # a non-folding protein group keeps energy on top
    plain = live.new_group(
        ["a"], [PRESETS["trp-cage"][1][0].replace(**{"system.start": "native"})], True, 2, 300
    )
    assert "fold" not in plain.live and plain.figure.layout.yaxis.title.text.startswith(
        "E − E_best"
    )


def test_native_overlay_is_the_native_superposed_on_the_start():
    shared_pdb("2JOF_unfolded.pdb")
    import mdtraj

    from engine.protein.measures import protein_metrics
    from workbench import jobs

    spec = PRESETS[FOLD_PRESET][1][0]
    text = live.native_overlay(spec.to_dict())
    system = jobs.build_system(spec.system, spec.seed)
    atoms = [line for line in text.splitlines() if line.startswith(("ATOM", "HETATM"))]
    assert len(atoms) == system.n_atoms == 284
    xyz = np.array([[float(a[30:38]), float(a[38:46]), float(a[46:54])] for a in atoms]) / 10
    ca = [a.index for a in system.topology.atoms if a.name == "CA"]
    # superposed: the plain CA deviation from x0 equals the optimal-superposition CA-RMSD
    plain = np.sqrt(np.mean(np.sum((xyz[ca] - np.asarray(system.x0)[ca]) ** 2, axis=1)))
    assert plain == pytest.approx(protein_metrics(system.x0, system)["rmsd_ca"], abs=2e-3)
    assert plain > 0.2  # the unfolded start is far from native (0.34 nm CA)
    ref = mdtraj.Trajectory(np.asarray(system.reference, np.float32)[None], system.topology)
    assert ref.xyz.shape[1] == 284
    # the first frame of a folding run carries the overlay; a native start does not
    snap = types.SimpleNamespace(view={"kind": "protein", "scale": 10.0, "pdb": "", "n": 284},
                                 spec=spec.to_dict(), run_id="r1", frame_step=0,
                                 frame_x=np.asarray(system.x0), frame_no=0)  # fmt: skip
    payload = live.frame_payload(snap, ["d"], 50)
    assert payload["view"]["native"] == text
    snap.spec = spec.replace(**{"system.start": "native"}).to_dict()
    assert "native" not in live.frame_payload(snap, ["d"], 50)["view"]
    assert live.native_overlay({"bogus": 1}) is None


def test_the_page_renders_the_fold_preset_and_the_md_checkbox():
    from workbench import layout
    from workbench.panels import PageContext

    text = str(layout.build(PageContext(presets=PRESETS, start_preset="fig2-lj-n400")))
    assert "'fold-trp-cage'" in text  # a preset dropdown option
    assert "'OpenMM MD 298 K'" in text and "2 fs of simulated time each" in text
    assert "'openmm-md'" in text  # its checkbox value
