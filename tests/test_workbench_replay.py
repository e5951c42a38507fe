"""Issue 9's replay and spectrum bugs, on a registry driven by the fake engine (no JAX work):

- opening a run with no stored frames replaces everything of the run opened before it (view,
  curves, exports) and says "no frames stored for this run";
- its exports are its own;
- a spectrum task cannot hold the one analysis thread indefinitely: a newer Compute stops
  it, a timeout ends it, and the next task runs meanwhile.
"""

import dataclasses
import json
import threading
import time
from contextvars import copy_context

import numpy as np
import pytest
from dash import no_update
from dash._callback_context import context_value
from dash._utils import AttributeDict
from workbench_fakes import FakeEngine, wait_for

from engine import SystemConfig
from workbench import forms, ids, jobs
from workbench import registry as reg
from workbench.config import ServerConfig
from workbench.panels import live, runs, spectrum
from workbench.registry import RunRegistry

SID = "session-a"


@pytest.fixture(scope="module")
def small_system():
    return jobs.build_system(SystemConfig(kind="lj-loop", n=50), 0)


@pytest.fixture
def engine(tmp_path, small_system):
    fake = FakeEngine(auto=True, n_rows=4, delay=0.01, system=small_system)
    registry = RunRegistry(
        ServerConfig(run_dir=str(tmp_path), structure_dirs=()),
        fake.runner,
        bundle_reader=jobs.read_bundle,
    )
    reg.install(registry)
    yield fake
    registry.shutdown()
    reg.install(None)


def call(fn, *args, trigger=None):
    """Run a callback with ctx.triggered set to a click on ``trigger``."""

    def run():
        key = json.dumps(trigger, sort_keys=True, separators=(",", ":"))
        context_value.set(
            AttributeDict(triggered_inputs=[{"prop_id": f"{key}.n_clicks", "value": 1}])
        )
        return fn(*args)

    return copy_context().run(run)


def form(**changes):
    values = {**forms.default_values(), "system.n": "50", **changes}
    return list(values.values()), [ids.field(n) for n in values]


def finished_run(method: str) -> str:
    values, field_ids = form()
    out = live.start_run(1, values, field_ids, [method], "loop", "file", None, SID)
    run_id = out[3]["runs"][0]["id"]
    wait_for(lambda: reg.get().snapshot(run_id, SID).terminal, what="the run to end")
    return run_id


# ---- opening a run that has no stored frames -------------------------------------------------
def test_a_run_without_frames_replaces_the_previous_replay_and_says_so(engine):
    with_frames = finished_run("gd")
    title, last, _, fig, exports, _, frame = runs.show_replay({"id": with_frames}, SID)
    assert last == 3 and frame["view"]["n"] == 50 and len(fig.data[0].x) == 4
    engine.outcome = "fail"  # the next run raises before its first frame
    no_frames = finished_run("gnn")
    assert reg.get().snapshot(no_frames, SID).status == "failed"
    assert not reg.get().frames(no_frames, SID)

    title, last, value, fig, exports, style, frame = runs.show_replay({"id": no_frames}, SID)
    assert title == f"GNN · failed · {runs.NO_FRAMES}" and runs.NO_FRAMES == (
        "no frames stored for this run"
    )
    assert last == value == 0 and style == {"display": "block"}
    assert [len(t.x) for t in fig.data] == [0]  # its own (empty) curve, not the GD run's
    assert {b.id["index"] for b in exports} == {no_frames}  # its own buttons only
    assert {b.id["fmt"] for b in exports} == {"csv", "json"}  # nothing needs coordinates
    # the viewer gets an empty structure under a new key: the GD run's beads are dropped
    assert frame["div"] == runs.ID.VIEW_DOM and frame["view"]["n"] == 0 and frame["xyz"] == []
    assert frame["key"] != f"replay-{with_frames}"
    name = runs.replay_name({"id": no_frames}, SID)
    assert name.startswith("lj-loop n=50 · GNN · ")


def test_the_export_of_a_run_without_frames_is_its_own(engine):
    with_frames = finished_run("gd")
    engine.outcome = "fail"
    no_frames = finished_run("gnn")
    runs.show_replay({"id": with_frames}, SID)
    runs.show_replay({"id": no_frames}, SID)
    mine = call(runs.export_run, [1], SID, trigger=ids.export_btn(no_frames, "csv"))
    theirs = call(runs.export_run, [1], SID, trigger=ids.export_btn(with_frames, "csv"))
    assert mine["filename"].startswith("lj-loop-n50_gnn_") and mine["filename"].endswith(
        "_curves.csv"
    )
    assert theirs["filename"].startswith("lj-loop-n50_gd_")
    assert mine["content"].splitlines()[1:] == [] and len(theirs["content"].splitlines()) == 5
    config = call(runs.export_run, [1], SID, trigger=ids.export_btn(no_frames, "json"))
    assert json.loads(config["content"])["status"] == "failed"
    for fmt in ("pdb", "traj"):  # no coordinates: nothing to download, never another run's
        assert call(runs.export_run, [1], SID, trigger=ids.export_btn(no_frames, fmt)) is (
            no_update
        )


# ---- spectrum tasks cannot block the analysis thread -----------------------------------------
class BlockingSpectrum:
    """``compute`` for jobs.spectrum_task: blocks until released (or forever), reporting."""

    def __init__(self):
        self.release = threading.Event()
        self.calls = []

    def __call__(self, spec, report):
        self.calls.append(spec.system.n)
        report("building the system")
        if spec.system.n == 50:  # the slow one
            report("computing the Hessian spectrum (stuck)")
            self.release.wait(30)
        return {"n": spec.system.n}


@pytest.fixture
def blocking(monkeypatch):
    compute = BlockingSpectrum()
    monkeypatch.setattr(jobs, "spectrum_payload", compute)
    yield compute
    compute.release.set()  # let the daemon computation end, before the next test starts one
    wait_for(lambda: jobs.computing() == 0, 10, "the computations under way to end")


def start_spectrum(previous=None, **changes):
    values, field_ids = form(**changes)
    task, _, _ = spectrum.start_spectrum(1, values, field_ids, "loop", "file", None, SID, previous)
    return task


def test_a_newer_spectrum_stops_the_stuck_one_and_runs_at_once(engine, blocking):
    r = reg.get()
    first = start_spectrum()
    wait_for(lambda: "stuck" in r.snapshot(first["id"], SID).progress, what="progress reported")
    second = start_spectrum(first, **{"system.n": "60"})
    t0 = time.time()
    wait_for(lambda: r.snapshot(second["id"], SID).status == "done", 5, "the next spectrum")
    assert time.time() - t0 < 2  # not queued behind the stuck computation
    assert r.snapshot(second["id"], SID).payload == {"n": 60}
    # the stuck task notices its stop request within a wait slice (tasks run side by side)
    wait_for(lambda: r.snapshot(first["id"], SID).status == "stopped", 5, "the first stopped")


def with_n(spec, n):
    return dataclasses.replace(spec, system=dataclasses.replace(spec.system, n=n))


def test_a_spectrum_task_times_out_and_the_next_one_runs(engine, blocking):
    r = reg.get()
    spec = forms.parse_run_form(
        {**forms.default_values(), "system.n": "50"}, "loop", ["gnn"], None
    )[0]
    stuck = r.submit_task(SID, "spectrum", jobs.spectrum_task(spec, timeout_s=0.3))
    # another session's spectrum (the same session's would replace the stuck one)
    after = r.submit_task("session-b", "spectrum", jobs.spectrum_task(with_n(spec, 60)))
    wait_for(lambda: r.snapshot(after, "session-b").status == "done", 5, "the task after it")
    # two task workers: the next task does not wait for the stuck one, which times out
    snap = wait_for(
        lambda: r.snapshot(stuck, SID).terminal and r.snapshot(stuck, SID), 5, "timeout"
    )
    assert snap.status == "failed" and "TimeoutError: no spectrum after 0 s" in snap.message
    assert "stuck" in snap.message  # the phase it was in


def test_a_retry_of_the_same_spectrum_joins_the_computation_under_way(engine, blocking):
    r = reg.get()
    first = start_spectrum()
    wait_for(lambda: "stuck" in r.snapshot(first["id"], SID).progress, what="progress")
    retry = start_spectrum(first)  # same form: the same computation
    wait_for(lambda: "joined" in r.snapshot(retry["id"], SID).progress, what="joined")
    blocking.release.set()
    wait_for(lambda: r.snapshot(retry["id"], SID).status == "done", 5, "the retry")
    assert blocking.calls == [50]  # computed once
    assert r.snapshot(first["id"], SID).status == "stopped"


def test_an_engine_error_in_the_computation_fails_the_task_with_its_message(engine):
    def broken(spec, report):
        raise ValueError("no slow modes for you")

    spec = forms.parse_run_form(
        {**forms.default_values(), "system.n": "70"}, "loop", ["gnn"], None
    )[0]
    task = reg.get().submit_task(SID, "spectrum", jobs.spectrum_task(spec, compute=broken))
    wait_for(lambda: reg.get().snapshot(task, SID).terminal, 5, "the task")
    snap = reg.get().snapshot(task, SID)
    assert snap.status == "failed" and "ValueError: no slow modes for you" in snap.message
    assert np.isfinite(snap.elapsed)
