"""Issue 9, "no silent waits": every phase of a run is reported, the elapsed time ticks in each,
Stop ends a run in any phase, and compiled kernels persist across processes.

Engine: the phase sequence of GD and of CG/GNN, stops between slow-mode blocks and around
compilation. Registry (fake engine, no JAX): phases and details in snapshots, stop in each
phase (queued, building, modes, compiling, running, an engine that does not answer), the
elapsed counter, the ``click_time_s`` column. Server: the compilation cache settings, a cache
hit in a fresh process, the warm-up thread. No fixed sleeps: every wait is on a condition.
"""

import json
import logging
import os
import subprocess
import sys
import textwrap
import time
import types

import numpy as np
import pytest
from workbench_fakes import FakeEngine, wait_for

from engine import (
    EnergyConfig,
    ModesConfig,
    RunSpec,
    ScheduleConfig,
    SystemConfig,
    build_system,
    cli,
    make_energy,
    run,
    slow_modes,
)
from engine.types import Stopped
from workbench import figures, server
from workbench.config import ServerConfig, from_argv
from workbench.records import STOP_GRACE_S
from workbench.registry import RunRegistry

GD = RunSpec(
    system=SystemConfig(kind="lj-loop", n=60),
    energy=EnergyConfig(dtype="float64"),
    schedule=ScheduleConfig(max_steps=40, stopping="none"),
    chunk_size=20,
    frame_every=20,
)
GNN = GD.replace(**{"reparam.kind": "gnn", "reparam.n_modes": 8, "reparam.hidden": 8})
CG = GD.replace(**{"reparam.kind": "linear", "reparam.n_modes": 8})


class Phases(list):
    """on_phase recorder: [(phase, detail)]; ``names`` without repeats."""

    def __call__(self, phase, detail=""):
        self.append((phase, detail))

    @property
    def names(self) -> list[str]:
        out = []
        for phase, _ in self:
            if not out or out[-1] != phase:
                out.append(phase)
        return out


# ---- engine --------------------------------------------------------------------------------
def test_gd_phases_are_compiling_then_running():
    phases = Phases()
    result = run(GD, on_phase=phases)
    assert result.status == "done"
    assert phases.names == ["compiling", "running"]


@pytest.mark.parametrize("spec", [CG, GNN], ids=["cg", "gnn"])
def test_reparametrized_phases_report_slow_mode_progress(spec):
    phases, progress = Phases(), []

    def on_progress(p):
        progress.append(p)
        assert phases.names[-1] == "running"  # "running" comes before the step-0 row

    result = run(spec, on_progress=on_progress, on_phase=phases)
    assert result.status == "done" and progress
    assert phases.names == ["modes", "compiling", "running"]
    details = [d for p, d in phases if p == "modes" and d]
    assert details[0] == "Hessian of sample 1 of 40"  # the lj-loop's reference sampling
    assert details[39] == "Hessian of sample 40 of 40"
    assert details[-1].startswith("eigensolver")


def test_stop_during_slow_modes_returns_stopped_without_compiling():
    phases, seen = Phases(), []

    def should_stop():
        return any(d == "Hessian of sample 2 of 40" for _, d in phases)

    t = time.perf_counter()
    result = run(GNN, on_progress=seen.append, should_stop=should_stop, on_phase=phases)
    assert time.perf_counter() - t < 30  # a generous bound: it did not compute 40 samples
    assert result.status == "stopped" and "computing slow modes" in result.message
    assert phases.names == ["modes"]  # stopped at the next check point: never compiled
    assert phases[-1] == ("modes", "Hessian of sample 2 of 40")
    assert seen == [] and len(result.metrics["step"]) == 0  # no rows before "running"
    np.testing.assert_array_equal(result.frames_step, [0])
    np.testing.assert_allclose(result.x_final, result.system.x0)
    assert result.summary()["steps"] == 0


def test_stop_while_compiling_is_honoured_before_running():
    phases = Phases()
    result = run(GD, should_stop=lambda: "compiling" in phases.names, on_phase=phases)
    assert result.status == "stopped" and "compiling" in result.message
    assert "running" not in phases.names and len(result.metrics["energy"]) == 0


def test_stop_while_running_keeps_the_step_zero_row():
    phases, seen = Phases(), []
    result = run(GD, on_progress=seen.append, should_stop=lambda: bool(seen), on_phase=phases)
    assert result.status == "stopped" and list(result.metrics["step"]) == [0]


def test_slow_modes_stop_between_krylov_blocks():
    spec = GD.replace(**{"system.n": 120})
    system = build_system(spec.system, 0)
    model = make_energy(system, spec.energy)
    cfg = ModesConfig(method="block-laplacian", at="x0", solver="iterative")
    details = []
    modes = slow_modes(system, model, cfg, 4, on_block=details.append)
    assert modes.vectors.shape == (120, 4)
    blocks = [d for d in details if "shift-invert block" in d]
    assert blocks and blocks[0] == "eigensolver: shift-invert block 1 (at most 60)"
    details.clear()
    with pytest.raises(Stopped) as stop:
        slow_modes(
            system,
            model,
            cfg,
            4,
            on_block=details.append,
            should_stop=lambda: any("block 2" in d for d in details),
        )
    assert stop.value.phase == "modes"
    assert details[-1] == "eigensolver: shift-invert block 2 (at most 60)"


def test_relaxation_to_the_minimum_can_be_stopped():
    system = build_system(GD.system, 0)
    model = make_energy(system, GD.energy)
    cfg = ModesConfig(method="hessian", at="minimum")
    calls = []

    def should_stop():
        calls.append(1)
        return len(calls) > 3  # past the start: inside the L-BFGS relaxation

    with pytest.raises(Stopped):
        slow_modes(system, model, cfg, 4, should_stop=should_stop)


# ---- registry (fake engine) ----------------------------------------------------------------
@pytest.fixture
def make(tmp_path):
    made = []

    def factory(engine=None, workers=2, runner=None):
        engine = engine or FakeEngine()
        reg = RunRegistry(
            ServerConfig(workers=workers, run_dir=str(tmp_path)), runner or engine.runner
        )
        made.append((reg, engine))
        return reg, engine

    yield factory
    for reg, engine in made:
        for fake in engine.runs:  # a fake held in a phase would keep pytest from exiting
            fake.proceed.set()
            fake.release.set()
        reg.shutdown()


MODES = (("modes", "Hessian of sample 1 of 3"), ("compiling", ""))


def snap_of(reg, run_id):
    return reg.snapshot(run_id, "A")


def test_registry_reports_each_phase_with_its_detail(make):
    reg, engine = make(FakeEngine(phases=MODES, hold="modes"), workers=1)
    first, second = reg.submit_group([GNN, GNN], owner="A")
    wait_for(lambda: engine.runs and engine.runs[0].holding.is_set(), what="modes")
    s1, s2 = snap_of(reg, first), snap_of(reg, second)
    assert (s1.status, s1.phase, s1.phase_detail) == ("running", "modes", s1.phase_detail)
    assert s1.phase_detail == "Hessian of sample 1 of 3"
    assert (s2.status, s2.phase, s2.queue_position) == ("queued", "queued", 1)
    engine.runs[0].proceed.set()
    engine.runs[0].tokens.release()
    wait_for(lambda: snap_of(reg, first).n_rows == 1, what="the first row")
    assert snap_of(reg, first).phase == "running"
    engine.runs[0].release.set()
    snap = wait_for(lambda: snap_of(reg, first).terminal and snap_of(reg, first), what="end")
    assert (snap.status, snap.phase, snap.phase_detail) == ("done", "done", "")


def test_runner_without_on_phase_still_runs(make):
    def runner(spec, on_progress, should_stop, on_system):
        return FakeEngine(auto=True, n_rows=2).runner(spec, on_progress, should_stop, on_system)

    reg, _ = make(runner=runner)
    run_id = reg.submit(GD, owner="A")
    assert wait_for(lambda: snap_of(reg, run_id).terminal and snap_of(reg, run_id)).n_rows == 2


def test_stop_while_queued_cancels_at_once(make):
    reg, engine = make(workers=1)
    first, second = reg.submit_group([GD, GD], owner="A")
    engine.wait_started(1)
    assert reg.cancel(second, by="A")
    snap = snap_of(reg, second)  # no wait: the worker is still busy with the first run
    assert (snap.status, snap.phase) == ("cancelled", "cancelled")
    assert reg.store.path(second).joinpath("meta.json").is_file()
    engine.runs[0].release.set()
    wait_for(lambda: snap_of(reg, first).terminal, what="first run ends")
    assert len(engine.runs) == 1  # the cancelled run never started


@pytest.mark.parametrize("phase", ["building", "compiling"])
def test_stop_in_an_uninterruptible_phase_reports_stopped_at_once(make, phase):
    engine = FakeEngine(phases=((phase, ""),), hold=phase)
    reg, _ = make(engine, workers=1)
    first, second = reg.submit_group([GD, GD], owner="A")
    wait_for(lambda: engine.runs and engine.runs[0].holding.is_set(), what=phase)
    assert snap_of(reg, first).phase == phase
    assert reg.cancel(first, by="A")
    snap = snap_of(reg, first)  # at once, while the "compile" still holds the worker
    assert (snap.status, snap.phase) == ("stopped", "stopped") and snap.terminal
    words = {"building": "building the system", "compiling": "compiling"}[phase]
    assert snap.message == f"stopped by request while {words}"
    assert snap_of(reg, second).status == "queued"  # its worker is not free yet
    engine.runs[0].proceed.set()  # the compile returns: the worker is released
    wait_for(lambda: snap_of(reg, second).status == "running", what="the queued run starts")
    wait_for(lambda: snap_of(reg, first).finished and snap_of(reg, first).timings)
    final = snap_of(reg, first)
    assert final.status == "stopped" and final.finished == snap.finished
    assert "not saved" not in final.message
    wait_for(
        lambda: (
            json.loads(reg.store.path(first).joinpath("meta.json").read_text())["status"]
            == "stopped"
        ),
        what="meta.json",
    )
    # the second run is released by conftest's _release_fake_runs (the registry may report it
    # "running" before its worker has reached the engine, so engine.runs[1] may not exist yet)


def test_stop_during_modes_is_honoured_by_the_engine(make):
    engine = FakeEngine(phases=MODES, hold="modes")
    reg, _ = make(engine)
    run_id = reg.submit(GNN, owner="A")
    wait_for(lambda: engine.runs and engine.runs[0].holding.is_set(), what="modes")
    t = time.monotonic()
    reg.cancel(run_id, by="A")
    assert snap_of(reg, run_id).phase == "stopping"
    assert figures.status_text(snap_of(reg, run_id)).startswith("GNN · stopping · ")
    snap = wait_for(lambda: snap_of(reg, run_id).terminal and snap_of(reg, run_id), what="stop")
    assert time.monotonic() - t < 1.0
    assert snap.status == "stopped" and snap.n_rows == 0


def test_a_stop_the_engine_does_not_answer_is_reported_after_the_grace(make):
    engine = FakeEngine(phases=MODES, hold="modes", uninterruptible=("modes",))  # one LAPACK call
    reg, _ = make(engine)
    run_id = reg.submit(GNN, owner="A")
    wait_for(lambda: engine.runs and engine.runs[0].holding.is_set(), what="modes")
    t = time.monotonic()
    reg.cancel(run_id, by="A")
    snap = wait_for(lambda: snap_of(reg, run_id).terminal and snap_of(reg, run_id), what="stop")
    assert STOP_GRACE_S <= time.monotonic() - t < STOP_GRACE_S + 1.0
    assert snap.message == "stopped by request while computing slow modes"
    engine.runs[0].proceed.set()
    wait_for(lambda: snap_of(reg, run_id).timings, what="the engine's result")
    assert snap_of(reg, run_id).status == "stopped"


def test_a_runner_raising_stopped_ends_the_run_stopped(make):
    def runner(spec, on_progress, should_stop, on_system, on_phase):
        on_phase("building", "")
        raise Stopped("building", "stopped by request while building the system")

    reg, _ = make(runner=runner)
    run_id = reg.submit(GD, owner="A")
    snap = wait_for(lambda: snap_of(reg, run_id).terminal and snap_of(reg, run_id))
    assert snap.status == "stopped" and "building the system" in snap.message


@pytest.mark.parametrize("phase", ["queued", "building", "modes"])
def test_elapsed_ticks_before_the_first_row(make, phase):
    hold = None if phase == "queued" else phase
    engine = FakeEngine(phases=((hold, ""),) if hold else (), hold=hold)
    reg, _ = make(engine, workers=1)
    ids = reg.submit_group([GD, GD], owner="A")
    run_id = ids[1] if phase == "queued" else ids[0]
    wait_for(lambda: snap_of(reg, run_id).phase == phase, what=phase)
    e0 = snap_of(reg, run_id).elapsed
    assert e0 >= 0
    wait_for(lambda: snap_of(reg, run_id).elapsed > e0 + 0.05, what="the counter ticks")
    assert snap_of(reg, run_id).phase == phase
    reg.cancel_all("A")
    for r in engine.runs:
        r.proceed.set()


def test_rows_carry_seconds_since_the_run_click(make):
    reg, engine = make(FakeEngine(auto=True, n_rows=3))
    t_click = time.time()
    ids = reg.submit_group([GD, GD], owner="A")
    snaps = [wait_for(lambda i=i: snap_of(reg, i).terminal and snap_of(reg, i)) for i in ids]
    assert snaps[0].created == snaps[1].created  # one origin for the group
    t_end = time.time()
    for s in snaps:
        clicks = [r["click_time_s"] for r in s.rows]
        assert len(clicks) == 3 and clicks == sorted(clicks)
        assert 0 <= clicks[0] and clicks[-1] <= t_end - t_click + 1e-3
    cols = reg.export_data(ids[0], "A")["metrics"]
    assert "click_time_s" in cols


# ---- status lines ----------------------------------------------------------------------------
def status(**kw):
    base = dict(
        label="gnn",
        status="running",
        phase="running",
        phase_detail="",
        queue_position=None,
        last={},
        stage_switch_step=None,
        elapsed=3.25,
        message="",
    )
    return types.SimpleNamespace(**{**base, **kw})


def test_status_text_names_every_phase():
    t = figures.status_text
    q = t(status(status="queued", phase="queued", queue_position=2))
    assert q == "GNN · queued: position 2 in the queue · 3.2 s elapsed"
    assert t(status(phase="building")) == "GNN · building the system · 3.2 s elapsed"
    assert (
        t(status(phase="modes", phase_detail="Hessian of sample 3 of 40"))
        == "GNN · computing slow modes: Hessian of sample 3 of 40 · 3.2 s elapsed"
    )
    assert (
        t(status(phase="compiling"))
        == "GNN · compiling (first run of these shapes) · 3.2 s elapsed"
    )
    running = status(last={"step": 400, "stage": 1, "energy": -0.1234567, "wall_time": 2.0})
    assert (
        t(running)
        == "GNN · running · step 400 · 200 steps/s · stage 1 · E = -0.12346 · 3.2 s elapsed"
    )
    assert t(status(phase="stopping")) == "GNN · stopping · 3.2 s elapsed"
    early = status(status="stopped", phase="stopped", message="stopped by request while compiling")
    assert t(early) == "GNN · stopped by request while compiling · 3.2 s elapsed"


# ---- compilation cache and warm-up ---------------------------------------------------------
def test_cache_folders_of_the_server_and_the_cli(tmp_path):
    assert ServerConfig(run_dir=str(tmp_path)).compile_cache_path == str(tmp_path / ".jax-cache")
    assert ServerConfig(compile_cache_dir="").compile_cache_path is None
    assert ServerConfig(compile_cache_dir="/x").compile_cache_path == "/x"
    assert from_argv(["--compile-cache-dir", "/y"]).compile_cache_path == "/y"
    assert from_argv(["--no-warm-up"]).warm_up is False
    assert cli.compilation_cache_dir({"SLOWMODE_JAX_CACHE": "/z"}) == "/z"
    assert cli.compilation_cache_dir({"SLOWMODE_JAX_CACHE": "off"}) is None
    assert cli.compilation_cache_dir({"XDG_CACHE_HOME": "/c"}) == os.path.join(
        "/c", "slowmode", "jax"
    )


CACHE_PROBE = textwrap.dedent(
    """
    import sys
    import jax, jax.numpy as jnp
    from jax import monitoring
    from engine.run import use_compilation_cache
    hits = []
    monitoring.register_event_listener(
        lambda event, **kw: hits.append(event) if event.endswith("cache_hits") else None
    )
    jnp.zeros(3) + 1  # something compiled before the cache is configured
    use_compilation_cache(sys.argv[1])
    f = jax.jit(lambda x: jnp.sin(x) @ x.T + 0.5)
    f(jnp.ones((7, 7))).block_until_ready()
    print(len(hits))
    """
)


def test_compiled_kernels_are_a_cache_hit_in_a_fresh_process(tmp_path):
    cache = tmp_path / "cache"
    env = {**os.environ, "JAX_PLATFORMS": "cpu", "PYTHONPATH": os.getcwd()}

    def probe() -> int:
        out = subprocess.run(
            [sys.executable, "-c", CACHE_PROBE, str(cache)],
            env=env,
            capture_output=True,
            text=True,
            check=True,
            timeout=120,
        )
        return int(out.stdout.split()[-1])

    assert probe() == 0
    assert any(cache.iterdir())  # kernels written, small ones included
    assert probe() >= 1


def test_warm_up_compiles_the_start_preset_in_the_background(monkeypatch, caplog):
    monkeypatch.setattr(server, "_presets", lambda: {"tiny": ("tiny", [GD])})
    assert [s.label for s in server.start_specs("tiny")] == ["gd", "gnn"]  # + default methods
    monkeypatch.setattr(server, "start_specs", lambda preset: [GD])
    with caplog.at_level(logging.INFO, logger="workbench"):
        thread = server.warm_up("tiny")
        thread.join(timeout=120)
    assert not thread.is_alive() and thread.daemon
    text = caplog.text
    assert "warm-up: gd ready in" in text and "warm-up of tiny done" in text
