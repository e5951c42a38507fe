"""RunRegistry with a fake engine (no JAX): ownership, sharing, the worker pool and its
queue, stop/cancel, failure statuses, and persistence across a new registry on the same
run_dir (house style §3.16)."""

import json
import re
import threading

import numpy as np
import pytest
from workbench_fakes import FakeEngine, wait_for

from engine import RunSpec
from engine import io as engine_io
from workbench.config import ServerConfig
from workbench.registry import Busy, RunRegistry
from workbench.runstore import RunStore


@pytest.fixture
def make(tmp_path):
    made = []

    def factory(workers=2, max_active=4, engine=None, run_dir=None):
        engine = engine or FakeEngine()
        cfg = ServerConfig(
            workers=workers, max_active_per_session=max_active, run_dir=str(run_dir or tmp_path)
        )
        reg = RunRegistry(cfg, engine.runner)
        made.append((reg, engine))
        return reg, engine

    yield factory
    for reg, engine in made:
        for run in engine.runs:
            run.release.set()
        reg.shutdown()


def finish(reg, engine, run_id, owner, rows=2):
    run = next(r for r in engine.runs if r.started.is_set() and not r.release.is_set())
    for _ in range(rows):
        run.tokens.release()
    run.release.set()
    return wait_for(
        lambda: reg.snapshot(run_id, owner).terminal and reg.snapshot(run_id, owner), what="finish"
    )


def saved(reg, run_dir, run_id, owner):
    """Wait until the run's bundle and its newest meta.json are on disk."""

    def done():
        d = run_dir / run_id
        if not (d / "metrics.csv").exists():
            return False
        config, meta = engine_io.read_json(d / "config.json"), engine_io.read_meta(d)
        return bool(config["timings"]) and meta["version"] == reg.snapshot(run_id, owner).version

    return wait_for(done, what="persisted")


def test_run_ids_are_unguessable_hex(make):
    reg, _ = make()
    ids = reg.submit_group([RunSpec(), RunSpec()], owner="A")
    assert all(re.fullmatch(r"[0-9a-f]{16}", i) for i in ids) and len(set(ids)) == 2


def test_other_session_cannot_read_or_stop_until_shared_and_never_stop(make):
    reg, engine = make()
    run_id = reg.submit(RunSpec(), owner="A")
    engine.wait_started(1)
    assert reg.snapshot(run_id, "A") is not None
    assert reg.snapshot(run_id, "B") is None  # reads as "not found"
    assert reg.snapshot(run_id, "") is None
    assert reg.cancel(run_id, by="B") is False
    assert reg.share(run_id, by="B") is False  # only the owner shares
    assert reg.share(run_id, by="A") is True
    snap = reg.snapshot(run_id, "B")
    assert snap is not None and not snap.is_owner
    assert reg.cancel(run_id, by="B") is False  # sharing grants reading only
    assert reg.snapshot(run_id, "A").status == "running"
    assert [s.run_id for s in reg.list_runs("B")] == []  # B's list shows only B's own runs
    assert reg.cancel(run_id, by="A") is True
    snap = wait_for(
        lambda: reg.snapshot(run_id, "A").terminal and reg.snapshot(run_id, "A"), what="stop"
    )
    assert snap.status == "stopped"


def test_pool_of_two_runs_two_at_once_and_queues_a_third(make):
    reg, engine = make(workers=2)
    a, b, c = reg.submit_group([RunSpec(), RunSpec(), RunSpec()], owner="A")
    engine.wait_started(2)
    assert engine.active == 2
    for run in engine.runs:
        run.tokens.release()  # both running ones report progress
    wait_for(
        lambda: reg.snapshot(a, "A").n_rows == 1 and reg.snapshot(b, "A").n_rows == 1,
        what="progress",
    )
    snap_c = reg.snapshot(c, "A")
    assert snap_c.status == "queued" and snap_c.queue_position == 1
    assert {reg.snapshot(i, "A").status for i in (a, b)} == {"running"}
    engine.runs[0].release.set()
    engine.wait_started(3)
    wait_for(lambda: reg.snapshot(c, "A").status == "running", what="third run starts")
    assert engine.max_active == 2


def test_quota_per_session_refuses_the_whole_group(make):
    reg, engine = make(max_active=2)
    reg.submit(RunSpec(), owner="A")
    with pytest.raises(Busy, match="limit is 2"):
        reg.submit_group([RunSpec(), RunSpec()], owner="A")
    assert len(reg.list_runs("A")) == 1
    reg.submit(RunSpec(), owner="B")  # another session is not affected
    with pytest.raises(PermissionError):
        reg.submit(RunSpec(), owner="")


def test_queued_run_cancelled_never_starts(make):
    reg, engine = make(workers=1)
    first, second = reg.submit_group([RunSpec(), RunSpec()], owner="A")
    engine.wait_started(1)
    assert reg.cancel(second, by="A")
    engine.runs[0].release.set()
    snap = wait_for(
        lambda: reg.snapshot(second, "A").terminal and reg.snapshot(second, "A"), what="cancel"
    )
    assert snap.status == "cancelled"
    assert len(engine.runs) == 1


def test_progress_rows_frames_and_stop_keep_everything(make):
    reg, engine = make()
    run_id = reg.submit(RunSpec(), owner="A")
    engine.wait_started(1)
    for _ in range(3):
        engine.runs[0].tokens.release()
    wait_for(lambda: reg.snapshot(run_id, "A").n_rows == 3, what="rows")
    snap = reg.snapshot(run_id, "A", since_rows=2, since_frame=0)
    assert (
        [r["step"] for r in snap.rows] == [40] and snap.frame_x is not None and snap.frame_no == 3
    )
    assert reg.snapshot(run_id, "A", since_frame=3).frame_x is None  # nothing new to draw
    assert snap.view["kind"] == "loop"
    reg.cancel(run_id, by="A")
    snap = wait_for(
        lambda: reg.snapshot(run_id, "A").terminal and reg.snapshot(run_id, "A"), what="stop"
    )
    assert snap.status == "stopped" and snap.n_rows == 3
    assert len(reg.frames(run_id, "A")) == 3


def test_diverged_keeps_curves_and_failure_keeps_traceback(make):
    reg, engine = make()
    d, f = reg.submit_group([RunSpec(seed=1), RunSpec(seed=2)], owner="A")
    engine.wait_started(2)
    runs = {r.spec.seed: r for r in engine.runs}
    runs[1].outcome = "diverge"
    runs[2].outcome = "fail"
    for _ in range(3):
        runs[1].tokens.release()
    snap_d = wait_for(
        lambda: reg.snapshot(d, "A").terminal and reg.snapshot(d, "A"), what="diverge"
    )
    snap_f = wait_for(lambda: reg.snapshot(f, "A").terminal and reg.snapshot(f, "A"), what="fail")
    assert snap_d.status == "diverged" and snap_d.n_rows == 3 and "not finite" in snap_d.message
    assert snap_f.status == "failed" and "RuntimeError: fake engine exploded" in snap_f.error
    assert "fake engine exploded" in snap_f.message


def test_frames_are_thinned_but_keep_the_last(make, tmp_path):
    engine = FakeEngine(auto=True, n_rows=30)
    cfg = ServerConfig(run_dir=str(tmp_path), max_frames=8)
    reg = RunRegistry(cfg, engine.runner)
    try:
        run_id = reg.submit(RunSpec(), owner="A")
        wait_for(lambda: reg.snapshot(run_id, "A").terminal, what="auto run")
        frames = reg.frames(run_id, "A")
        assert len(frames) <= 8 and frames[-1][0] == 29 * 20
        steps = [s for s, _ in frames]
        assert steps == sorted(steps)
    finally:
        reg.shutdown()


def test_new_registry_on_same_run_dir_lists_saved_runs_with_owners(make, tmp_path):
    reg, engine = make()
    run_id = reg.submit(RunSpec(seed=7), owner="A")
    engine.wait_started(1)
    snap = finish(reg, engine, run_id, "A", rows=2)
    assert snap.status == "done"
    reg.share(run_id, by="A")
    saved(reg, tmp_path, run_id, "A")
    files = sorted(p.name for p in (tmp_path / run_id).iterdir())
    assert files == ["config.json", "frames.npz", "meta.json", "metrics.csv", "view.json"]
    bundle = engine_io.read_bundle(tmp_path / run_id)  # one run format: the CLI's bundle
    assert RunSpec.from_dict(bundle["config"]["spec"]).seed == 7
    assert bundle["view"]["kind"] == "loop"

    reg2, _ = make(run_dir=tmp_path)
    assert [s.run_id for s in reg2.list_runs("A")] == [run_id]
    assert reg2.list_runs("B") == []
    snap2 = reg2.snapshot(run_id, "A")
    assert snap2.status == "done" and snap2.source == "stored" and snap2.shared
    assert snap2.n_rows == 2 and [r["step"] for r in snap2.rows] == [0, 20]  # arrays loaded lazily
    assert reg2.snapshot(run_id, "B") is not None  # it was shared before the restart
    assert reg2.cancel(run_id, by="A") is False  # finished runs cannot be stopped
    data = reg2.export_data(run_id, "A")
    np.testing.assert_allclose(data["x_final"], snap.frame_x)


def test_run_left_running_is_reindexed_as_interrupted(make, tmp_path):
    store = RunStore(str(tmp_path))
    store.save_meta(
        "0123456789abcdef",
        {
            "run_id": "0123456789abcdef",
            "owner": "A",
            "status": "running",
            "label": "gd",
            "created": 1.0,
        },
    )
    reg, _ = make(run_dir=tmp_path)
    snap = reg.snapshot("0123456789abcdef", "A")
    assert snap.status == "interrupted" and "server stopped" in snap.message
    assert (
        json.loads((tmp_path / "0123456789abcdef" / "meta.json").read_text())["status"]
        == "interrupted"
    )


def test_damaged_run_folder_is_skipped(make, tmp_path):
    (tmp_path / "fedcba9876543210").mkdir()
    (tmp_path / "fedcba9876543210" / "meta.json").write_text("{not json")
    reg, _ = make(run_dir=tmp_path)
    assert reg.list_runs("A") == []


def test_tasks_run_beside_busy_workers_and_report_progress(make):
    reg, engine = make(workers=1)
    reg.submit(RunSpec(), owner="A")
    engine.wait_started(1)  # the only run worker is busy

    def task(report, should_stop):
        report("halfway")
        return {"answer": 42}

    task_id = reg.submit_task("A", "spectrum", task)
    snap = wait_for(
        lambda: reg.snapshot(task_id, "A").terminal and reg.snapshot(task_id, "A"), what="task"
    )
    assert snap.status == "done" and snap.payload == {"answer": 42} and snap.progress == "halfway"
    assert reg.snapshot(task_id, "B") is None
    assert all(s.kind == "run" for s in reg.list_runs("A"))


def test_a_new_task_replaces_an_active_one_unless_it_joins_it(make):
    reg, _ = make(workers=1)
    release = threading.Event()
    calls = []

    def task(report, should_stop):
        calls.append(1)
        while not (release.wait(0.01) or should_stop()):
            pass
        return None if should_stop() else {"done": True}

    first = reg.submit_task("A", "conditioning", task)
    wait_for(lambda: reg.snapshot(first, "A").status == "running", what="first task runs")
    # a second poll starting the same next part joins the task the page already holds
    assert reg.submit_task("A", "conditioning", task, join_active=True) == first
    assert reg.snapshot(first, "A").status == "running" and len(calls) == 1
    # a plain submission of the label replaces it (a new spectrum, a new conditioning)
    second = reg.submit_task("A", "conditioning", task)
    assert second != first
    wait_for(lambda: reg.snapshot(first, "A").terminal, what="the replaced task stops")
    release.set()
    done = wait_for(
        lambda: reg.snapshot(second, "A").terminal and reg.snapshot(second, "A"), what="second"
    )
    assert done.status == "done" and done.payload == {"done": True}


def test_upload_tokens_never_resolve_paths(tmp_path):
    store = RunStore(str(tmp_path))
    token = store.save_upload(b"ATOM")
    assert store.upload_path(token).endswith("structure.pdb") and token not in store.upload_path(
        token
    )
    assert store.upload_path("../../etc/passwd") is None
    assert store.upload_path("0" * 32) is None
    with pytest.raises(ValueError):
        store.save_meta("../escape", {})
