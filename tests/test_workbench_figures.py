"""Pure figure and text builders: spectrum, live curves and their Patches, speed-up readout,
status lines, replay."""

import math
import types

import numpy as np
import pytest

from engine.analysis import Reach
from workbench import figures

RUNS = [
    {"id": "a", "label": "gd", "color": "#d62728"},
    {"id": "b", "label": "gnn", "color": "#1f77b4"},
]


def test_spectrum_marks_rigid_modes_on_a_log_axis_with_the_k_cutoff():
    values = np.array([0.0, 1e-12, 0.2, 0.5, 3.0, -0.1, 0.0])
    rigid = np.array([True, True, False, False, False, False, False])
    fig = figures.spectrum_figure(values, rigid, k=3, selected=2, space="cartesian")
    assert fig.layout.yaxis.type == "log" and fig.layout.yaxis.title.text == "|Hessian eigenvalue|"
    names = [t.name for t in fig.data]
    assert names == ["|λ|", "λ < 0 (|λ| shown)", "0 (clamped)", "rigid-body (λ≈0)", "animated"]
    assert list(fig.data[2].x) == [7]
    rigid_trace = fig.data[3]
    assert list(rigid_trace.x) == [1, 2] and all(
        y == pytest.approx(0.1 * 1e-3) for y in rigid_trace.y
    )
    assert list(fig.data[0].customdata) == [2, 3, 4]  # 0-based mode index for clicks
    (line,) = fig.layout.shapes
    assert line.x0 == line.x1 == 3.5


def test_dragging_the_cutoff_line_gives_k():
    assert figures.k_from_shape_drag({"shapes[0].x0": 10.4, "shapes[0].x1": 10.4}, 50) == 10
    assert figures.k_from_shape_drag({"shapes[0].x0": -3}, 50) == 1
    assert figures.k_from_shape_drag({"shapes[0].x0": 99}, 50) == 50
    assert figures.k_from_shape_drag({"xaxis.range[0]": 1}, 50) is None  # a zoom, not a drag


def test_curves_figure_has_one_trace_per_run_and_panel():
    fig = figures.curves_figure(RUNS, with_rmsd=True)
    assert len(fig.data) == 4 * 2
    assert [t.name for t in fig.data[:2]] == ["gd", "gnn"] and fig.data[0].showlegend
    assert not fig.data[2].showlegend
    assert fig.layout.uirevision == "keep"  # zoom survives updates


def test_curves_patch_extends_the_right_traces_and_marks_switches():
    rows = (
        {"step": 20, "wall_time_s": 0.5, "energy": 1.5},
        {"step": 40, "wall_time_s": 0.9, "energy": math.nan},
    )
    patch = figures.curves_patch(RUNS, {"b": rows}, {"b": (40, 0.9)})
    ops = patch.to_plotly_json()["operations"]
    extends = {
        tuple(op["location"]): op["params"]["value"] for op in ops if op["operation"] == "Extend"
    }
    # run b is index 1 of 2 runs: traces 1 (vs step) and 3 (vs wall time)
    assert extends[("data", 1, "x")] == [20, 40]
    assert extends[("data", 1, "y")] == [1.5, None]  # non-finite energies become gaps
    assert extends[("data", 3, "x")] == [0.5, 0.9]
    shapes = [op["params"]["value"] for op in ops if op["operation"] == "Append"]
    assert [(s["x0"], s["xref"]) for s in shapes] == [(40, "x"), (0.9, "x2")]
    assert figures.curves_patch(RUNS, {}, {}) is None


def test_speedup_rows_against_the_first_run():
    gd, gnn = Reach(500, 5.0), Reach(200, 1.5)
    labels = {"a": "gd", "b": "gnn"}
    rows = figures.speedup_rows({"a": gd, "b": gnn}, labels, 0.5)
    assert rows[0]["speedup_time"] is None and rows[0]["step"] == 500
    assert rows[1]["step"] == 200 and rows[1]["time"] == pytest.approx(1.5)
    assert rows[1]["speedup_steps"] == pytest.approx(2.5)
    assert rows[1]["speedup_time"] == pytest.approx(5.0 / 1.5)
    unreached = figures.speedup_rows({"a": None, "b": None}, labels, -5.0)
    assert [r["reached"] for r in unreached] == [False, False]
    assert figures.speedup_rows({"a": gd}, labels, None) == []


def snap(**kw):
    base = dict(
        label="gnn",
        status="running",
        queue_position=None,
        last={"step": 400, "stage": 1, "energy": -0.1234567, "wall_time": 2.0},
        stage_switch_step=None,
        elapsed=3.25,
        message="",
    )
    base.update(kw)
    return types.SimpleNamespace(**base)


def test_status_lines():
    assert (
        figures.status_text(snap())
        == "GNN · running · step 400 · 200 steps/s · stage 1 · E = -0.12346 · 3.2 s elapsed"
    )
    assert "switched at step 300" in figures.status_text(snap(stage_switch_step=300))
    queued = figures.status_text(snap(status="queued", queue_position=2))
    assert queued == "GNN · queued: waiting for a free worker (position 2 in the queue)"
    assert figures.status_text(snap(status="diverged", message="energy nan")).endswith(
        "— energy nan"
    )


def test_replay_figure_and_nearest_frame():
    rows = [{"step": s, "energy": 1.0 / (1 + s)} for s in range(0, 101, 10)]
    fig = figures.replay_figure(rows, "gd", "#000", switch_step=30, marker_step=50)
    assert [s.x0 for s in fig.layout.shapes] == [30, 50]
    assert figures.nearest_frame([0, 20, 40, 100], 33) == 2
    assert figures.nearest_frame([], 5) == 0


def test_heatmap_is_square_with_residue_axes():
    fig = figures.heatmap_figure("VdW", np.eye(4) - 0.5)
    assert fig.data[0].z.shape == (4, 4) and fig.data[0].zmid == 0.0
