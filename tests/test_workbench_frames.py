"""The live frame stream (/_wb/frames): newest coordinates only, ownership as everywhere."""

import json

import numpy as np
import pytest
from workbench_fakes import FakeEngine, wait_for

from engine import RunSpec
from workbench import frames
from workbench.config import ServerConfig
from workbench.registry import RunRegistry


@pytest.fixture
def registry(tmp_path):
    engine = FakeEngine()
    r = RunRegistry(ServerConfig(run_dir=str(tmp_path)), engine.runner)
    yield r, engine
    for run in engine.runs:
        run.release.set()
    r.shutdown()


def test_parse_query_drops_malformed_parts():
    assert frames.parse_query("ab:3,cd,ef:x, gh:-2") == [("ab", 3), ("cd", 0), ("gh", 0)]
    assert frames.parse_query("") == [] and frames.parse_query(":3") == []
    assert len(frames.parse_query(",".join(f"r{i}:1" for i in range(100)))) == frames.MAX_RUNS


def test_only_newer_frames_and_only_for_readers(registry):
    r, engine = registry
    run_id = r.submit(RunSpec(), owner="A")
    engine.wait_started(1)
    engine.runs[0].tokens.release()
    wait_for(lambda: r.snapshot(run_id, "A").frame_no == 1, what="first frame")
    reply = frames.frames_reply(r, "A", [(run_id, 0)])[run_id]
    assert reply["frame"] == 1 and not reply["terminal"] and reply["step"] == 0
    np.testing.assert_allclose(reply["xyz"], 0.1)
    assert "xyz" not in frames.frames_reply(r, "A", [(run_id, 1)])[run_id]  # nothing newer
    assert frames.frames_reply(r, "B", [(run_id, 0)]) == {run_id: {"gone": True}}
    assert frames.frames_reply(r, "A", [("0" * 16, 0)]) == {"0" * 16: {"gone": True}}
    r.share(run_id, by="A")
    assert frames.frames_reply(r, "B", [(run_id, 0)])[run_id]["frame"] == 1  # a shared link reads
    engine.runs[0].release.set()
    wait_for(lambda: r.snapshot(run_id, "A").terminal, what="end")
    last = frames.frames_reply(r, "A", [(run_id, 1)])[run_id]
    assert last["terminal"] and last["frame"] == 2  # the final positions are a last frame


def test_route_reads_the_session_header(registry, tmp_path):
    from flask import Flask

    from workbench import registry as reg

    r, engine = registry
    reg.install(r)
    try:
        app = Flask(__name__)
        app.add_url_rule("/_wb/frames", "wb_frames", frames.frames_view)
        run_id = r.submit(RunSpec(), owner="A")
        engine.wait_started(1)
        engine.runs[0].tokens.release()
        wait_for(lambda: r.snapshot(run_id, "A").frame_no == 1, what="frame")
        client = app.test_client()
        got = client.get(f"/_wb/frames?runs={run_id}:0", headers={"X-WB-Session": "A"})
        assert got.status_code == 200 and got.headers["Cache-Control"] == "no-store"
        assert len(json.loads(got.data)[run_id]["xyz"]) == 18
        anonymous = client.get(f"/_wb/frames?runs={run_id}:0")
        assert json.loads(anonymous.data) == {run_id: {"gone": True}}
    finally:
        reg.install(None)


def test_a_large_loop_is_drawn_as_every_kth_bead_and_says_so():
    from engine import SystemConfig, build_system
    from workbench import jobs

    small = jobs.system_view(build_system(SystemConfig(kind="lj-loop", n=300), 0))
    assert small["n"] == 300 and "every" not in small and len(small["x0"]) == 900
    n = 2 * jobs.VIEW_MAX_BEADS + 1  # needs every 3rd bead to stay within the limit
    system = build_system(SystemConfig(kind="lj-loop", n=n), 0)
    view = jobs.system_view(system)
    assert view["every"] == 3 and view["n_atoms"] == n and view["stretch"] == 0
    assert view["n"] == len(range(0, n, 3)) <= jobs.VIEW_MAX_BEADS
    assert len(view["x0"]) == 3 * view["n"] and max(view["bonds"]) == view["n"] - 1
    np.testing.assert_allclose(
        np.reshape(view["x0"], (-1, 3))[1], system.x0[3] * view["scale"], atol=1e-3
    )
    frame = jobs.view_xyz(system.x0 + 1.0, view)  # live, replay and stream frames alike
    assert len(frame) == len(view["x0"])


def test_live_frames_between_rows_are_streamed_but_not_kept_for_replay(tmp_path):
    """A runner taking ``on_frame`` (engine.run's positions within a chunk) gets it with the
    stream's period; such a frame is the stream's newest, never a replay frame."""
    import threading
    import types

    from workbench_fakes import fake_view

    from engine.types import Progress

    seen, go = {}, threading.Event()

    def runner(spec, on_progress, should_stop, on_system, on_phase=None, on_frame=None,
               frame_s=None):  # fmt: skip
        seen["frame_s"] = frame_s
        on_system(None, fake_view())
        x = np.zeros((6, 3))
        row = {"step": 0, "stage": 2, "wall_time_s": 0.0, "energy": 1.0, "grad_norm": 1.0}
        on_progress(Progress([row], x))
        on_frame(7, x + 0.7)
        go.wait(30)
        on_progress(Progress([{**row, "step": 20, "energy": 0.5}], x + 2.0))
        return types.SimpleNamespace(
            spec=spec, status="done", message="",
            metrics={k: np.asarray([v]) for k, v in row.items()},
            frames_step=np.asarray([0, 20]), frames_x=np.stack([x, x + 2.0]), x_final=x + 2.0,
            system=None, timings={}, stage_switch_step=None,
        )  # fmt: skip

    r = RunRegistry(ServerConfig(run_dir=str(tmp_path), frame_ms=40), runner)
    try:
        run_id = r.submit(RunSpec(), owner="A")
        wait_for(lambda: r.snapshot(run_id, "A").frame_no == 2, what="the live frame")
        reply = frames.frames_reply(r, "A", [(run_id, 1)])[run_id]
        assert (reply["frame"], reply["step"]) == (2, 7) and seen["frame_s"] == 0.04
        np.testing.assert_allclose(reply["xyz"], 0.7)
        assert [s for s, _ in r.frames(run_id, "A")] == [0]  # replay keeps rows' frames only
        go.set()
        wait_for(lambda: r.snapshot(run_id, "A").terminal, what="end")
        assert [s for s, _ in r.frames(run_id, "A")] == [0, 20]
    finally:
        go.set()
        r.shutdown()
