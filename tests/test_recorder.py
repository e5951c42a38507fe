"""The recorder shared by engine.run and the OpenMM baselines: rows, frames, Progress."""

import math

import numpy as np
import pytest

from engine import SystemConfig, build_system, structure_metrics
from engine.loop import Observation
from engine.recorder import BASE_COLUMNS, make_recorder


@pytest.fixture(scope="module")
def system():
    return build_system(SystemConfig(kind="lj-loop", n=50), 0)


def ticks():
    t = iter(range(1000))
    return lambda: float(next(t))


def record_all(recorder, observations, state=None, **kw):
    state = recorder.init() if state is None else state
    reports = []
    for o in observations:
        state, p = recorder.record(state, o, **kw)
        reports.append(p)
    return state, reports


def obs(system, step, stage=2, x=None):
    x = system.x0 + 0.01 * step if x is None else x
    return Observation(step, stage, -float(step), 1.0 / (1 + step), x)


def test_rows_columns_and_frames(system):
    recorder = make_recorder(system, frame_every=50, clock=ticks())
    state, reports = record_all(recorder, [obs(system, s) for s in range(0, 201, 20)])
    out = recorder.result(state)
    metric_names = list(structure_metrics(system.x0, system))
    assert list(out.metrics) == list(BASE_COLUMNS) + metric_names
    np.testing.assert_array_equal(out.metrics["step"], np.arange(0, 201, 20))
    np.testing.assert_array_equal(out.metrics["wall_time_s"], np.arange(11.0))
    assert out.metrics["step"].dtype == np.int64 and out.metrics["energy"][3] == -60.0
    # a frame at row 0, at the first row at or past each multiple of 50, and at the last row
    np.testing.assert_array_equal(out.frames_step, [0, 60, 100, 160, 200])
    assert out.frames_step.dtype == np.int64
    assert out.frames_x.shape == (5, 50, 3)
    np.testing.assert_allclose(out.frames_x[1], system.x0 + 0.6)
    # each report carries its one new row, and its positions when a frame was kept
    assert [p.rows for p in reports] == [[r] for r in _rows(out.metrics)]
    assert [p.step for p in reports if p.x is not None] == [0, 60, 100, 160, 200]
    assert all(p.stage_switch_step is None for p in reports)


def _rows(metrics):
    n_rows = len(metrics["step"])
    return [{k: v[i].item() for k, v in metrics.items()} for i in range(n_rows)]


def test_last_row_is_always_a_frame_and_frames_can_be_forced(system):
    recorder = make_recorder(system, frame_every=100, clock=ticks())
    state, reports = record_all(recorder, [obs(system, s) for s in (0, 20, 40)])
    state, (forced,) = record_all(recorder, [obs(system, 50)], state, frame=True)
    assert forced.x is not None
    state, _ = record_all(recorder, [obs(system, 70)], state)
    out = recorder.result(state)
    np.testing.assert_array_equal(out.frames_step, [0, 50, 70])
    np.testing.assert_allclose(out.frames_x[-1], system.x0 + 0.7)
    assert state.last_step == 70


def test_stage_switch_step_travels_once_on_the_first_stage_2_report(system):
    recorder = make_recorder(system, frame_every=1000, clock=ticks())
    steps = [(0, 1), (20, 1), (40, 1), (60, 2), (80, 2)]
    _, reports = record_all(recorder, [obs(system, s, stage) for s, stage in steps])
    assert [p.stage_switch_step for p in reports] == [None, None, None, 40, None]
    assert reports[3].stage == 2


def test_non_finite_positions_keep_the_columns(system):
    recorder = make_recorder(system, frame_every=1000, clock=ticks())
    bad = np.full_like(system.x0, np.nan)
    state, reports = record_all(recorder, [obs(system, 0), obs(system, 20, x=bad)])
    out = recorder.result(state)
    names = [k for k in out.metrics if k not in BASE_COLUMNS]
    assert names and all(math.isnan(out.metrics[k][1]) for k in names)
    assert not math.isnan(out.metrics[names[0]][0])
    # even as the very first row (column names read off the starting positions)
    state, _ = record_all(recorder, [obs(system, 0, x=bad)])
    assert list(recorder.result(state).metrics) == list(out.metrics)


def test_states_are_immutable(system):
    recorder = make_recorder(system, frame_every=20, clock=lambda: 0.0)
    base, _ = record_all(recorder, [obs(system, 0), obs(system, 20)])
    a, _ = record_all(recorder, [obs(system, 40)], base)
    b, _ = record_all(recorder, [obs(system, 40), obs(system, 60)], base)
    assert recorder.result(base).metrics["step"].tolist() == [0, 20]
    assert recorder.result(a).metrics["step"].tolist() == [0, 20, 40]
    assert recorder.result(b).metrics["step"].tolist() == [0, 20, 40, 60]
