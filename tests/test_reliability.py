"""Issue 10 (reliability): each defect reproduced, then held fixed.

Diverged runs in the frame stream, quota slots of stopped queued runs, structural divergence
and non-finite positions in the engine, damaged run files, exports of diverged runs, CLI
argument checks and a clean shutdown of the server on SIGINT/SIGTERM.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from workbench_fakes import FakeEngine, wait_for

from engine import RunSpec
from workbench import frames
from workbench.config import ServerConfig
from workbench.registry import Busy, RunRegistry


@pytest.fixture
def make(tmp_path):
    made = []

    def factory(workers=2, max_active=4, engine=None, run_dir=None, **kw):
        engine = engine or FakeEngine()
        cfg = ServerConfig(
            workers=workers, max_active_per_session=max_active, run_dir=str(run_dir or tmp_path)
        )
        reg = RunRegistry(cfg, engine.runner, **kw)
        made.append((reg, engine))
        return reg, engine

    yield factory
    for reg, engine in made:
        for run in engine.runs:
            run.release.set()
        reg.shutdown()


def ended(reg, run_id, owner="A"):
    return wait_for(
        lambda: reg.snapshot(run_id, owner).terminal and reg.snapshot(run_id, owner), what="end"
    )


# ---- 2: a diverged run's frames are strict JSON -------------------------------------------------
def test_nonfinite_frame_is_skipped_with_a_flag_and_the_reply_is_strict_json(make):
    from flask import Flask

    from workbench import registry as reg_module

    reg, engine = make(engine=FakeEngine(outcome="diverge"))
    run_id = reg.submit(RunSpec(), owner="A")
    engine.wait_started(1)
    for _ in range(3):
        engine.runs[0].tokens.release()
    ended(reg, run_id)
    reg._records[run_id].live.frame_x[0, 0] = math.nan  # a diverged run's last positions
    reg._records[run_id].live.frame_no += 1
    reply = frames.frames_reply(reg, "A", [(run_id, 0)])[run_id]
    assert reply["nonfinite"] is True and "xyz" not in reply and reply["terminal"]
    reg_module.install(reg)
    try:
        app = Flask(__name__)
        app.add_url_rule("/_wb/frames", "wb_frames", frames.frames_view)
        got = app.test_client().get(f"/_wb/frames?runs={run_id}:0", headers={"X-WB-Session": "A"})
        text = got.data.decode()
        assert "NaN" not in text and "Infinity" not in text
        json.loads(text, parse_constant=lambda c: pytest.fail(f"non-JSON token {c}"))
    finally:
        reg_module.install(None)


# ---- 3: a stop on a queued run frees its quota slot at once ---------------------------------------
def test_stopping_queued_runs_frees_their_slots_at_once(make):
    reg, engine = make(workers=1, max_active=4)
    ids = reg.submit_group([RunSpec()] * 4, owner="A")
    engine.wait_started(1)
    for run_id in ids[1:]:  # three queued behind the one worker
        assert reg.cancel(run_id, by="A")
    assert reg.active_count("A") == 1
    assert [reg.snapshot(i, "A").status for i in ids[1:]] == ["cancelled"] * 3
    reg.submit_group([RunSpec()] * 3, owner="A")  # the slots are free before the worker is
    with pytest.raises(Busy):
        reg.submit(RunSpec(), owner="A")


def test_a_stop_the_engine_does_not_honour_frees_the_slot_after_the_grace(make):
    from workbench.records import STOP_GRACE_S

    engine = FakeEngine(phases=(("modes", ""),), hold="modes", uninterruptible=("modes",))
    reg, engine = make(engine=engine, max_active=1)
    run_id = reg.submit(RunSpec(), owner="A")
    wait_for(lambda: engine.runs and engine.runs[0].holding.is_set(), what="held")
    assert reg.cancel(run_id, by="A") and reg.active_count("A") == 1  # still stopping
    wait_for(lambda: reg.active_count("A") == 0, timeout=STOP_GRACE_S + 5, what="slot freed")
    reg.submit(RunSpec(), owner="A")  # no snapshot was needed to settle it
    engine.runs[0].proceed.set()
