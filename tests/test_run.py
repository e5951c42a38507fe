"""run(): logging, two stages, stop, divergence, determinism; bundles and the CLI."""

import json
import os
import subprocess
import sys

import jax.numpy as jnp
import numpy as np
import pytest
from util import fake_modes

from engine import (
    EnergyConfig,
    OptimConfig,
    ReparamConfig,
    RunSpec,
    ScheduleConfig,
    SpecError,
    SystemConfig,
    cli,
    io,
    run,
)
from engine.presets import OPENING_PRESET, PRESETS, improved_spec, paper_spec, tuned_spec

BASE = RunSpec(
    system=SystemConfig(kind="lj-loop", n=60),
    energy=EnergyConfig(dtype="float64"),
    schedule=ScheduleConfig(max_steps=200, stopping="none"),
    chunk_size=20,
    frame_every=40,
)


def test_gd_run_logs_every_chunk_from_step_zero():
    progress = []
    result = run(BASE, on_progress=progress.append)
    m = result.metrics
    assert result.status == "done"
    np.testing.assert_array_equal(m["step"], np.arange(0, 201, 20))
    assert set(m) >= {
        "step",
        "stage",
        "wall_time_s",
        "energy",
        "grad_norm",
        "bond_ok_frac",
        "loop_contact_frac",
        "collapsed_pairs",
        "radius_of_gyration",
    }
    assert m["energy"][-1] < m["energy"][0]
    assert np.all(np.diff(m["wall_time_s"]) >= 0)
    assert [p.step for p in progress] == list(m["step"])
    np.testing.assert_array_equal(result.frames_step, [0, 40, 80, 120, 160, 200])
    assert result.frames_x.shape == (6, 60, 3)
    np.testing.assert_allclose(result.frames_x[0], result.system.x0)
    assert sum(p.x is not None for p in progress) == 6


def test_same_spec_same_result():
    a, b = run(BASE), run(BASE)
    np.testing.assert_array_equal(a.metrics["energy"], b.metrics["energy"])
    np.testing.assert_array_equal(a.x_final, b.x_final)


def test_stop_request_keeps_what_was_computed():
    progress = []  # should_stop is also asked while preparing: stop after four rows
    result = run(BASE, on_progress=progress.append, should_stop=lambda: len(progress) >= 4)
    assert result.status == "stopped"
    assert list(result.metrics["step"]) == [0, 20, 40, 60]
    assert result.x_final.shape == (60, 3)


def test_divergence_is_a_status_with_history(monkeypatch):
    # An energy that turns NaN once descent pushes |x|^2 below half its start.
    import importlib

    run_module = importlib.import_module("engine.run")  # the module, not the function
    from engine.types import EnergyModel

    def nan_energy(system, cfg):
        c = 0.5 * float(np.sum(system.x0**2))
        fn = lambda x: jnp.log(jnp.sum(x**2) - c)  # noqa: E731
        return EnergyModel(
            fn, lambda x, aux: fn(x), lambda key, x: jnp.zeros((0, 2), jnp.int32), None, None, "nan"
        )

    monkeypatch.setattr(run_module, "make_energy", nan_energy)
    result = run(BASE.replace(**{"optim.learning_rate": 0.5, "schedule.max_steps": 2000}))
    assert result.status == "diverged"
    assert "not finite or exploded" in result.message
    assert len(result.metrics["step"]) >= 2 and np.isfinite(result.metrics["energy"][0])
    assert not np.isfinite(result.metrics["energy"][-1])


@pytest.mark.parametrize("kind", ["linear", "gnn"])
def test_two_stage_fixed_switch(kind):
    spec = BASE.replace(
        **{
            "reparam.kind": kind,
            "reparam.hidden": 16,
            "schedule.switch": "fixed",
            "schedule.stage1_steps": 80,
        }
    )
    progress = []
    result = run(spec, modes=fake_modes("node", 15), on_progress=progress.append)
    stages = result.metrics["stage"]
    assert result.stage_switch_step == 80
    # each row travels once, and the switch step once, on the first stage-2 report
    assert [r["step"] for p in progress for r in p.rows] == list(result.metrics["step"])
    switch_reports = [p for p in progress if p.stage_switch_step is not None]
    assert [(p.stage_switch_step, p.stage) for p in switch_reports] == [(80, 2)]
    assert set(stages[result.metrics["step"] <= 80]) == {1}
    assert set(stages[result.metrics["step"] > 80]) == {2}
    # stage 2 starts where stage 1 ended: the energy is continuous across the switch
    e = result.metrics["energy"]
    assert e[-1] < e[0]


def test_early_stopping_reference_rule_ends_run():
    spec = BASE.replace(
        **{
            "schedule.stopping": "reference",
            "schedule.patience": 2,
            "schedule.min_delta": 10.0,
            "schedule.max_steps": 2000,
        }
    )
    result = run(spec)
    assert result.status == "done" and result.message.startswith("converged")
    # step 20 sets best; steps 40 and 60 are two checks without a gain of 10
    assert result.metrics["step"][-1] == 60


def test_switch_never_lets_the_stopping_rule_end_the_run():
    # "never" keeps stage 1 for the whole run, so the stopping rule must be able to end it
    spec = BASE.replace(
        **{
            "reparam.kind": "linear",
            "schedule.switch": "never",
            "schedule.stopping": "reference",
            "schedule.patience": 2,
            "schedule.min_delta": 10.0,
            "schedule.stage1_delta_factor": 1.0,
            "schedule.max_steps": 2000,
        }
    )
    result = run(spec, modes=fake_modes("node", 15))
    assert result.status == "done"
    assert result.message.startswith("converged: stopping rule 'reference' fired at step")
    assert result.metrics["step"][-1] < 2000
    assert set(result.metrics["stage"]) == {1} and result.stage_switch_step is None


def test_run_parts_compile_each_stage_once():
    from engine.run import advance, apply_policy, init_run

    spec = BASE.replace(
        **{"reparam.kind": "linear", "schedule.switch": "fixed", "schedule.stage1_steps": 40}
    )
    parts, state, first = init_run(spec, modes=fake_modes("node", 15))
    assert (first.step, first.stage, sorted(parts.stages)) == (0, 1, [1, 2])
    stages = []
    for _ in range(5):
        state, obs = advance(parts, state)
        state = apply_policy(parts, state, obs)
        stages.append(obs.stage)
    assert stages == [1, 1, 2, 2, 2] and state.schedule.switch_step == 40
    # both stages were compiled up front; no chunk traced again, across the switch included
    assert [parts.stages[n].chunk.n_traces for n in (1, 2)] == [1, 1]


def test_a_repeated_spec_reuses_its_prepared_parts_with_the_same_result():
    """The server warms the opening demo up, then the user runs it: the second init_run of
    a spec on the same structure skips slow modes and compilation and starts identically."""
    from engine.run import clear_prepared, init_run

    spec = BASE.replace(**{"reparam.kind": "gnn", "schedule.switch": "fixed"})
    seen = []
    parts, _, first = init_run(spec, on_phase=lambda phase, detail="": seen.append(phase))
    assert "modes" in seen and "compiling" in seen
    again = []  # a schedule change does not touch what was compiled
    longer = spec.replace(**{"schedule.max_steps": 400})
    parts2, _, first2 = init_run(longer, on_phase=lambda phase, detail="": again.append(phase))
    assert again == [] and parts2.stages[1].chunk is parts.stages[1].chunk
    assert first2.energy == first.energy and parts2.modes is parts.modes
    assert parts2.timings["compile_s"] < parts.timings["compile_s"]
    other, _, _ = init_run(spec.replace(seed=1))  # another structure: prepared afresh
    assert other.stages[1].chunk is not parts.stages[1].chunk
    reused = run(spec)
    clear_prepared()
    fresh = run(spec)
    np.testing.assert_array_equal(reused.metrics["energy"], fresh.metrics["energy"])
    np.testing.assert_array_equal(reused.x_final, fresh.x_final)


def test_a_run_waits_for_the_same_spec_being_prepared_instead_of_compiling_it_twice():
    import threading

    from engine.run import init_run

    spec = BASE.replace(**{"reparam.kind": "gnn", "schedule.switch": "fixed"})
    results, phases = {}, {"a": [], "b": []}

    def start(name):
        on_phase = lambda phase, detail="": phases[name].append((phase, detail))  # noqa: E731
        results[name] = init_run(spec, on_phase=on_phase)

    threads = [threading.Thread(target=start, args=(name,)) for name in "ab"]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    a, b = results["a"][0], results["b"][0]
    assert a.stages[1].chunk is b.stages[1].chunk  # prepared once
    modes_seen = [name for name in "ab" if any(p == "modes" for p, _ in phases[name])]
    assert len(modes_seen) == 1, phases


def test_random_subset_run_reports_full_energy():
    spec = BASE.replace(**{"energy.repulsion": "random-subset", "energy.resample_every": 40})
    full = run(BASE.replace(**{"schedule.max_steps": 20}))
    sub = run(spec.replace(**{"schedule.max_steps": 20}))
    # row 0 is the same configuration, reported with the full deterministic energy
    assert sub.metrics["energy"][0] == full.metrics["energy"][0]


def test_spec_validation_names_field():
    with pytest.raises(SpecError, match=r"system.n must be .*\[50, 100000\].*got 10"):
        SystemConfig(kind="lj-loop", n=10)
    with pytest.raises(SpecError, match="optim.learning_rate"):
        OptimConfig(learning_rate=float("nan"))
    with pytest.raises(SpecError, match="reparam.kind"):
        ReparamConfig(kind="mlp")
    spec = paper_spec("lj-loop", 400, "gnn", 2)
    assert RunSpec.from_dict(json.loads(json.dumps(spec.to_dict()))) == spec
    with pytest.raises(SpecError, match="optim.bogus"):
        RunSpec.from_dict({"optim": {"bogus": 1}})


def test_presets_are_valid_specs():
    for name, (desc, specs) in PRESETS.items():
        assert desc and specs, name
        expected = {
            "trp-cage": {"gd", "gnn", "openmm-min"},
            OPENING_PRESET: {"gd", "gnn"},
            "fold-trp-cage": {"gd", "gnn", "openmm-md"},
        }.get(name, {"gd", "cg", "gnn"})
        assert {s.label for s in specs} == expected
        assert len({s.system for s in specs}) == 1, "a preset compares methods on one system"


@pytest.mark.parametrize("system", ["lj-loop", "bond-lj-loop"])
def test_figure3_protocols_differ_only_where_documented(system):
    for method in ("gd", "cg", "gnn"):
        specs = [f(system, 400, method, 3) for f in (paper_spec, improved_spec, tuned_spec)]
        paper, improved, tuned = specs
        assert paper.energy.repulsion == "random-subset"
        assert improved.energy.repulsion == "all-pairs"
        assert improved.energy == tuned.energy and improved.schedule == tuned.schedule
        assert tuned.reparam.anchor == ("none" if method == "gd" else "x0")
        assert tuned.replace(**{"reparam.anchor": improved.reparam.anchor, "optim": improved.optim,
                                "method_label": improved.method_label}) == improved  # fmt: skip
        assert RunSpec.from_dict(json.loads(json.dumps(tuned.to_dict()))) == tuned


def test_bundle_roundtrip(tmp_path):
    result = run(BASE)
    io.write_bundle(result, tmp_path / "b", trajectory=True)
    bundle = io.read_bundle(tmp_path / "b")
    assert bundle["config"]["spec"] == BASE.to_dict()
    assert "jax" in bundle["config"]["versions"]
    np.testing.assert_allclose(bundle["metrics"]["energy"], result.metrics["energy"], rtol=1e-15)
    np.testing.assert_allclose(bundle["x_final"], result.x_final)
    pdb = (tmp_path / "b" / "final.pdb").read_text()
    assert pdb.count("ATOM") == 60 and "CONECT" in pdb
    assert (tmp_path / "b" / "trajectory.pdb").read_text().count("MODEL") == len(result.frames_step)
    with pytest.raises(ValueError, match="not a run bundle"):
        io.read_bundle(tmp_path)


def _cli(*args, cwd=None):
    """``python -m engine`` as a subprocess (proves the entry point works end to end)."""
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([root, os.environ.get("PYTHONPATH", "")])}
    return subprocess.run(  # this checkout's engine, wherever the venv's editable install points
        [sys.executable, "-m", "engine", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        env=env,
        timeout=300,
    )


@pytest.mark.parametrize(
    "args, needle",
    [
        (["run", "--n", "10", "--out", "X"], "--n: must be"),
        (["run", "--n", "abc", "--out", "X"], "--n"),
        (["run", "--lr", "-1", "--out", "X"], "--lr: must be a number in (0, 10], got '-1'"),
        (["run", "--method", "magic", "--out", "X"], "--method"),
        (["run", "--n", "100"], "--out"),
        (["compare", "--methods", "gd,xx", "--out", "X"], "--methods"),
        (["modes", "--n", "60", "--K", "0"], "--K: must be in [1, 60]"),
        (["run", "--config", "missing.json", "--out", "X"], "cannot read JSON"),
        (["run", "--config", "list.json", "--out", "X"], "--config: list.json holds a list"),
        (["run", "--config", "null.json", "--out", "X"], "--config: null.json: spec is null"),
        (["run", "--n", "50", "--out", ""], "--out: an output folder is required"),
        (["run", "--n", "50", "--out", "  "], "--out: an output folder is required"),
        (["run", "--n", "50", "--out", "/proc/forbidden/X"], "--out: cannot write"),
        (["run", "--n", "50", "--out", "file.json/X"], "--out: cannot write"),
        (["compare", "--n", "50", "--out", ""], "--out: an output folder is required"),
    ],
)
def test_cli_bad_arguments_one_line_exit_2(args, needle, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "list.json").write_text("[]")  # issue 10.11: configs of the wrong shape
    (tmp_path / "null.json").write_text('{"spec": null}')
    (tmp_path / "file.json").write_text("{}")
    before = sorted(p.name for p in tmp_path.iterdir())
    assert cli.main(args) == 2
    err = capsys.readouterr().err
    assert needle in err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == before  # nothing written anywhere


def test_cli_entry_point_exit_code(tmp_path):
    proc = _cli("run", "--n", "10", "--out", "X", cwd=tmp_path)
    assert (
        proc.returncode == 2
        and proc.stderr.strip() == "error: --n: must be an integer in [50, 100000], got '10'"
    )


def test_cli_run_and_rerun_from_config(tmp_path):
    out = tmp_path / "gd"
    assert (
        cli.main(
            [
                "run",
                "--system",
                "bond-lj-loop",
                "--n",
                "50",
                "--steps",
                "60",
                "--method",
                "gd",
                "--dtype",
                "float64",
                "--out",
                str(out),
                "--quiet",
            ]
        )
        == 0
    )
    lines = (out / "metrics.csv").read_text().splitlines()
    assert lines[0].startswith("step,stage,wall_time_s,energy,grad_norm")
    assert lines[1].startswith("0,")
    again = tmp_path / "again"
    assert (
        cli.main(["run", "--config", str(out / "config.json"), "--out", str(again), "--quiet"]) == 0
    )
    a, b = io.read_bundle(out), io.read_bundle(again)
    np.testing.assert_array_equal(a["metrics"]["energy"], b["metrics"]["energy"])


def test_cli_compare_shares_start_and_writes_summary(tmp_path, capsys):
    out = tmp_path / "cmp"
    assert (
        cli.main(
            [
                "compare",
                "--system",
                "lj-loop",
                "--n",
                "60",
                "--steps",
                "100",
                "--methods",
                "gd,cg",
                "--k",
                "10",
                "--stopping",
                "none",
                "--out",
                str(out),
                "--quiet",
            ]
        )
        == 0
    )
    table = (out / "summary.csv").read_text().splitlines()
    assert table[0].startswith("method,status,final_energy") and len(table) == 3
    gd, cg = io.read_bundle(out / "gd"), io.read_bundle(out / "cg")
    assert gd["config"]["spec"]["seed"] == cg["config"]["spec"]["seed"]
    assert cg["config"]["timings"]["modes_s"] > 0
    assert "time to reach" in capsys.readouterr().out


def test_cli_modes_prints_eigenvalues(capsys):
    assert cli.main(["modes", "--system", "lj-loop", "--n", "60", "--K", "5"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert "lowest 5 modes" in out[0] and len(out) == 6
    assert "rigid-body" in out[1]  # the constant (translation) mode comes first


def test_a_run_that_destroys_its_structure_ends_diverged_with_its_data():
    # issue 10.5: Adam at lr 10 without clipping blows pure LJ apart to a "converged" energy
    spec = BASE.replace(
        **{
            "optim.learning_rate": 10.0,
            "optim.clip": "none",
            "schedule.stopping": "reference",
            "schedule.max_steps": 2000,
        }
    )
    result = run(spec)
    assert result.status == "diverged" and result.message.startswith("structure destroyed")
    m = result.metrics
    assert len(m["step"]) >= 2 and m["radius_of_gyration"][-1] > 10 * m["radius_of_gyration"][0]
    assert result.frames_step[-1] == m["step"][-1]  # the destroyed positions are kept
    np.testing.assert_allclose(result.x_final, result.frames_x[-1])


@pytest.mark.parametrize("kind", ["lj-loop", "bond-lj-loop"])
@pytest.mark.parametrize("repulsion", ["all-pairs", "random-subset", "cutoff"])
@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_non_finite_positions_diverge_in_every_loop_energy(kind, repulsion, bad):
    # issue 10.7: a safe distance maps NaN positions to a finite energy (49.8755 for lj-loop)
    import dataclasses

    from engine.systems import build_system

    spec = BASE.replace(**{"system.kind": kind, "energy.repulsion": repulsion})
    system = build_system(spec.system, spec.seed)
    x0 = system.x0.copy()
    x0[7, 1] = bad
    result = run(spec, system=dataclasses.replace(system, x0=x0))
    assert result.status == "diverged"
    assert result.message == "initial positions are not finite (1 of 60 atoms)"
    assert len(result.metrics["step"]) == 0 and result.x_final.shape == (60, 3)


def test_live_frames_between_rows_leave_the_run_bitwise_unchanged():
    """on_frame: a chunk cut into pieces (one step each here: the period is shorter than a
    step) shows positions between rows, while rows, stored frames and the final positions
    are bitwise those of the run without it, across the stage switch of a GNN run."""
    spec = BASE.replace(
        **{"reparam.kind": "gnn", "schedule.switch": "fixed", "schedule.stage1_steps": 100}
    )
    plain = run(spec)
    shown = []
    paced = run(spec, on_frame=lambda step, x: shown.append((step, x.copy())), frame_s=1e-9)
    for name in ("step", "stage", "energy", "grad_norm"):
        np.testing.assert_array_equal(paced.metrics[name], plain.metrics[name])
    np.testing.assert_array_equal(paced.frames_step, plain.frames_step)
    np.testing.assert_array_equal(paced.frames_x, plain.frames_x)
    np.testing.assert_array_equal(paced.x_final, plain.x_final)
    steps = [s for s, _ in shown]
    # the first chunk runs whole (it measures the step time); then every step but the
    # chunk's last is a live frame (the last one is the chunk's row)
    assert steps == [s for s in range(21, 201) if s % 20], steps[:25]
    assert all(x.shape == (60, 3) and np.all(np.isfinite(x)) for _, x in shown)


def test_frame_pacer_cuts_chunks_to_the_frame_period():
    from engine.run import FramePacer

    pacer = FramePacer(lambda step, x: None, period_s=0.06)
    assert pacer.piece(20) == 20  # nothing measured yet: the whole chunk
    pacer.measured(20, 0.4)  # 20 ms a step (a loaded machine at n = 1000)
    assert pacer.piece(20) == 3 and pacer.piece(2) == 2
    pacer.measured(3, 0.03)  # the machine got freer: 10 ms a step, the mean of the two
    assert pacer.step_s == pytest.approx(0.015) and pacer.piece(20) == 4
    pacer.measured(1, 0.5)  # a step slower than a frame: one step a piece
    assert pacer.piece(20) == 1
    pacer.measured(20, 1e-5)
    pacer.measured(10, 1e-5)  # cheap steps again: the chunk whole
    assert pacer.piece(10) == 10
    with pytest.raises(ValueError, match="period_s"):
        FramePacer(lambda step, x: None, period_s=0)


def test_a_stop_between_pieces_ends_the_chunk_where_it_is():
    spec = BASE.replace(**{"schedule.max_steps": 10_000})
    shown = []
    stop = lambda: len(shown) >= 5  # noqa: E731
    result = run(spec, on_frame=lambda s, x: shown.append(s), should_stop=stop, frame_s=1e-9)
    assert result.status == "stopped"
    assert result.metrics["step"][-1] == shown[-1] + 1 and shown[-1] % 20 != 0
