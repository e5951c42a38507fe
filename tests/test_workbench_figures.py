"""Pure figure and text builders: spectrum, live curves and their Patches, speed-up readout,
status and structure lines, replay."""

import copy
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


def apply_patch(fig: dict, patch) -> dict:
    """Apply a Dash Patch to a figure dict the way dash-renderer does (Assign / Extend / Append)."""
    fig = copy.deepcopy(fig)
    for op in patch.to_plotly_json()["operations"]:
        *path, last = op["location"]
        node = fig
        for key in path:
            node = node.setdefault(key, {}) if isinstance(node, dict) else node[key]
        value = copy.deepcopy(op["params"].get("value"))
        if op["operation"] == "Assign":
            node[last] = value
        elif op["operation"] == "Extend":
            node[last] = list(node.get(last, [])) + value
        elif op["operation"] == "Append":
            node[last] = list(node.get(last, [])) + [value]
        else:
            raise AssertionError(op["operation"])
    return fig


def loop_columns(energy, click=None, **extra):
    n = len(energy)
    cols = {
        "step": np.arange(n) * 20,
        "wall_time_s": 5.0 + 0.1 * np.arange(n),  # each run's own clock
        "energy": np.asarray(energy, float),
        "bonds_intact_frac": np.linspace(0.5, 1.0, n),
        "loop_contact_frac": np.linspace(0.0, 0.4, n),
        "radius_of_gyration": np.linspace(3.0, 2.0, n),
    }
    if click is not None:
        cols["click_time_s"] = np.asarray(click, float)
    cols.update(extra)
    return cols


def test_curves_figure_has_one_trace_per_run_and_panel_and_a_log_gap_axis():
    fig = figures.curves_figure(RUNS, with_rmsd=True)
    assert len(fig.data) == 4 * 2
    assert [t.name for t in fig.data[:2]] == ["gd", "gnn"] and fig.data[0].showlegend
    assert not fig.data[2].showlegend
    assert fig.layout.uirevision == "keep"  # zoom survives updates
    assert fig.layout.yaxis.type == "log" and fig.layout.yaxis2.type == "log"
    assert "E − E_best" in fig.layout.yaxis.title.text
    loops = figures.curves_figure(RUNS)
    assert len(loops.data) == 5 * 2 and "bonds intact" in loops.layout.yaxis3.title.text


def test_gap_axis_measures_from_the_best_energy_and_leaves_the_start_spike_out():
    gd = np.array([6.7] + list(-0.02 + 0.01 * 0.5 ** np.arange(19)))
    gnn = np.array([6.7, 0.5, 0.1, -0.01, -0.02, -0.023, -0.023, np.nan])
    gap = figures.gap_axis({"a": gd, "b": gnn})
    assert gap.best == pytest.approx(-0.023)
    lo, hi = gap.range
    assert 10**hi < 6.7 + 0.023  # the spike is above the default range
    assert 10**hi >= 0.5 + 0.023  # the rest of the descent is inside it
    assert 10**lo < gap.floor <= 0.003 / 2 + 1e-12  # floor: half the smallest positive gap
    assert figures.gap_axis({"a": np.array([np.nan])}).best is None


def test_curves_patch_assigns_gaps_time_from_the_click_and_switch_lines():
    cols = {
        "a": loop_columns([2.0, 1.0, 0.5], click=[0.2, 0.4, 0.6]),
        "b": loop_columns([3.0, 0.25, math.nan], click=[1.0, 2.0, 3.0]),
    }
    fig = apply_patch(figures.curves_figure(RUNS).to_plotly_json(), figures.curves_patch(
        RUNS, cols, {"b": 20}))  # fmt: skip
    data = fig["data"]
    assert data[0]["x"] == [0, 20, 40] and data[0]["customdata"] == [2.0, 1.0, 0.5]
    floor = figures.gap_axis({k: c["energy"] for k, c in cols.items()}).floor
    assert data[1]["y"][:2] == pytest.approx([2.75, floor]) and data[1]["y"][2] is None
    assert data[3]["x"] == [1.0, 2.0, 3.0]  # run b against the time since the Run click
    assert data[5]["y"] == pytest.approx([50.0, 75.0, 100.0])  # run b: bonds intact in %
    assert fig["layout"]["xaxis2"]["title"]["text"] == "time since Run (s)"
    assert [(s["x0"], s["xref"]) for s in fig["layout"]["shapes"]] == [(20.0, "x"), (2.0, "x2")]
    assert fig["layout"]["yaxis"]["range"] == figures.gap_axis(
        {k: c["energy"] for k, c in cols.items()}).range  # fmt: skip
    assert figures.curves_patch(RUNS, {}, {}) is None


def test_curves_fall_back_to_wall_time_before_click_times_exist():
    cols = {"a": loop_columns([1.0, 0.5])}
    fig = apply_patch(
        figures.curves_figure(RUNS).to_plotly_json(), figures.curves_patch(RUNS, cols)
    )
    assert fig["data"][2]["x"] == [5.0, 5.1]
    assert fig["layout"]["xaxis2"]["title"]["text"] == "time since each run's start (s)"


def test_curve_updates_are_idempotent_and_order_proof():
    base = figures.curves_figure(RUNS).to_plotly_json()
    full = loop_columns([3.0, 2.0, 1.5, 1.2, 1.0])
    early = {"a": {k: v[:2] for k, v in full.items()}}
    late = {"a": full}
    p_early, p_late = figures.curves_patch(RUNS, early), figures.curves_patch(RUNS, late)
    once = apply_patch(apply_patch(base, p_early), p_late)
    twice = apply_patch(apply_patch(once, p_late), p_late)  # a duplicated reply
    assert twice == once and twice["data"][0]["x"] == [0, 20, 40, 60, 80]
    # a late (reordered) reply shows an older curve, never a point twice; the next poll heals it
    stale = apply_patch(once, p_early)
    assert stale["data"][0]["x"] == [0, 20]
    assert apply_patch(stale, p_late) == once


def test_curves_are_thinned_to_a_bounded_number_of_points():
    cols = {"a": loop_columns(np.linspace(5, 0, 5000))}
    fig = apply_patch(
        figures.curves_figure(RUNS).to_plotly_json(),
        figures.curves_patch(RUNS, cols, max_points=100),
    )
    xs = fig["data"][0]["x"]
    assert len(xs) <= 100 and xs[0] == 0 and xs[-1] == 4999 * 20


def test_structure_line_says_when_the_structure_is_torn():
    row = {"bonds_intact_frac": 107 / 399, "bonds_stretched": 292, "loop_contact_frac": 0.05,
           "radius_of_gyration": 12.345}  # fmt: skip
    assert figures.structure_text(row, "loop") == (
        "bonds intact 26.8 % (292 stretched > 2× rest length: structure torn) · "
        "loop contacts 5.0 % · Rg 12.3"
    )
    ok = {"bonds_intact_frac": 1.0, "bonds_stretched": 0, "rmsd_ca": 0.4123,
          "radius_of_gyration": 1.1}  # fmt: skip
    assert figures.structure_text(ok, "protein") == (
        "CA RMSD 0.412 nm · bonds intact 100.0 % · Rg 1.100 nm"
    )
    assert figures.structure_text({"bonds_intact_frac": math.nan}, "loop").startswith("structure")


def test_speedup_rows_use_gd_as_reference_whatever_the_order():
    gd, gnn, cg = Reach(500, 5.0), Reach(200, 1.5), None
    labels = {"a": "gd", "b": "gnn", "c": "cg"}
    finals = {"a": -0.02, "b": -0.023, "c": 0.5}
    bests = {"a": -0.021, "b": -0.023, "c": 0.4}
    rows = figures.speedup_rows({"b": gnn, "c": cg, "a": gd}, labels, -0.0202, finals, bests, "a")
    by = {r["id"]: r for r in rows}
    assert [r["id"] for r in rows] == ["b", "c", "a"]  # display order kept
    assert by["a"]["reference"] and not by["b"]["reference"]
    assert by["a"]["speedup_time"] is None and by["a"]["step"] == 500
    assert by["b"]["speedup_steps"] == pytest.approx(2.5)
    assert by["b"]["speedup_time"] == pytest.approx(5.0 / 1.5)
    assert not by["c"]["reached"] and by["c"]["speedup_time"] is None
    # best of each column: GNN has the lowest final and best energy, fewest steps, least time
    assert by["b"]["best_in"] == {"final", "best", "step", "time", "speedup_time",
                                  "speedup_steps"}  # fmt: skip
    assert by["a"]["best_in"] == set() and by["c"]["best_in"] == set()
    # without a reference the first run is the reference
    first = figures.speedup_rows({"a": gd, "b": gnn}, labels, 0.5)
    assert first[0]["reference"] and first[1]["speedup_steps"] == pytest.approx(2.5)
    unreached = figures.speedup_rows({"a": None, "b": None}, labels, -5.0)
    assert [r["reached"] for r in unreached] == [False, False]
    assert figures.speedup_rows({"a": gd}, labels, None) == []


def test_threshold_note_explains_who_did_not_reach_it_and_why():
    labels = {"a": "gd", "b": "gnn"}
    rows = figures.speedup_rows(
        {"a": Reach(500, 5.0), "b": None}, labels, -0.02, {"a": -0.0198, "b": 0.3},
        {"a": -0.0201, "b": 0.1}, "a",
    )  # fmt: skip
    note = figures.threshold_note("energy", -0.02, rows, True, {"a": "done", "b": "running"})
    assert note == (
        "Threshold: energy ≤ -0.02 (auto: GD's final value + 1 % of its magnitude). "
        "GNN did not reach it: its best, 0.1, stays above it; still running."
    )
    rows = figures.speedup_rows({"a": None, "b": Reach(10, 1.0)}, labels, 0.0, {}, {}, "a")
    note = figures.threshold_note("energy", 0.0, rows, False, {"a": "diverged"})
    assert "GD did not reach it: it has logged no finite value; it diverged." in note
    assert note.startswith("Threshold: energy ≤ 0 (as entered).")
    assert note.endswith("Speed-ups need GD (the reference) to reach it.")


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
    assert queued == "GNN · queued: position 2 in the queue · 3.2 s elapsed"
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


def test_gap_axis_names_the_reported_energy():
    from engine.config import RunSpec

    full = RunSpec()
    cut = RunSpec().replace(**{"energy.repulsion": "cutoff", "energy.cutoff": 2.5})
    assert figures.reported_energy([full, full]) == "full"
    assert figures.reported_energy([cut]) == "cutoff (r_c 2.5)"
    mixed = figures.reported_energy([full, cut])
    assert mixed.startswith("full: ") and "; cutoff (r_c 2.5): " in mixed
    protein = types.SimpleNamespace(system=types.SimpleNamespace(kind="protein"), label="gd")
    assert figures.reported_energy([protein]) == ""
    fig = figures.curves_figure(RUNS, energy_label=figures.reported_energy([cut]))
    assert fig.layout.yaxis.title.text == "cutoff (r_c 2.5) E − E_best, log"
    assert fig.layout.yaxis2.title.text == fig.layout.yaxis.title.text
    assert figures.curves_figure(RUNS).layout.yaxis.title.text == "E − E_best, log"
