"""Pure figure and text builders: snapshots and arrays in, plotly figures / Patches / strings out.

No Dash state, no registry: callbacks pass plain values. Growing curves use ``Patch`` so a
poll sends only the new points. Trace layout of the live curves figure, for run i of R runs
and P panels (energy vs step, energy vs wall time, then RMSD vs step and vs time when the
system has a reference structure): trace index = p * R + i.
"""

from __future__ import annotations

import math

import numpy as np
import plotly.graph_objects as go
from dash import Patch
from plotly.subplots import make_subplots

from engine.analysis import Reach

RMSD = "rmsd_ca"  # engine protein metric: CA RMSD to the native structure (nm)
RIGID_FLOOR_FRACTION = 1e-3  # rigid (zero) modes are drawn this far below the smallest nonzero |λ|
TEMPLATE = "plotly_white"


def _finite(values) -> list:
    return [float(v) if v is not None and math.isfinite(float(v)) else None for v in values]


# ---- spectrum --------------------------------------------------------------------------------
# Marker classes of the spectrum: name, marker, hover text (the value shown is |λ| or a floor).
_SPECTRUM_CLASSES = (
    ("soft", "|λ|", {"size": 6, "color": "#1f77b4"}, "λ = %{y:.4g}"),
    ("neg", "λ < 0 (|λ| shown)", {"size": 7, "symbol": "triangle-down", "color": "#ff7f0e"},
     "λ = −%{y:.4g}"),
    ("zero", "0 (clamped)", {"size": 7, "symbol": "circle-open", "color": "#1f77b4"},
     "value 0 (clamped)"),
    ("rigid", "rigid-body (λ≈0)", {"size": 9, "symbol": "x", "color": "#7f7f7f"},
     "rigid-body, λ≈0"),
)  # fmt: skip


def _spectrum_points(values: np.ndarray, rigid: np.ndarray) -> tuple[np.ndarray, dict]:
    """(values drawn on the log axis, {class: mask}): rigid and zero modes sit at a floor
    RIGID_FLOOR_FRACTION below the smallest nonzero |λ|, negative ones at |λ|."""
    mag = np.abs(values)
    nonzero = mag[(~rigid) & (mag > 0)]
    floor = (nonzero.min() if len(nonzero) else 1.0) * RIGID_FLOOR_FRACTION
    masks = {
        "soft": ~rigid & (values > 0),
        "neg": ~rigid & (values < 0),
        "zero": ~rigid & (values == 0),
        "rigid": rigid,
    }
    return np.where(rigid | (mag <= 0), floor, mag), masks


def _cutoff_shape(k: int) -> dict:
    return {
        "type": "line",
        "x0": k + 0.5,
        "x1": k + 0.5,
        "y0": 0,
        "y1": 1,
        "yref": "paper",
        "line": {"color": "#2ca02c", "width": 3, "dash": "dash"},
    }


def spectrum_figure(
    values, rigid, k: int | None, selected: int | None = None, space: str = "node"
) -> go.Figure:
    """Eigenvalue spectrum on a log axis with rigid modes marked and the k cutoff drawn.

    Args:
      values: [K] mode values in slowness order (engine SlowModes.values). For the full
        Hessian ("cartesian") they are its eigenvalues sorted by |λ|; for the reference's
        block-norm Laplacian ("node") they are the Rayleigh quotients ψᵀKψ, clamped at 0 by
        the engine and not monotone. rigid: [K] bool.
      k: current number of slow modes (cutoff drawn between mode k and k+1), or None.
      selected: index of the mode being animated (highlighted).
    """
    values = np.asarray(values, np.float64)
    idx = np.arange(1, len(values) + 1)
    shown, masks = _spectrum_points(values, np.asarray(rigid, bool))
    fig = go.Figure()
    for cls, name, marker, hover in _SPECTRUM_CLASSES:
        m = masks[cls]
        if cls == "soft" or m.any():  # the |λ| trace always exists (clicks target it)
            fig.add_trace(go.Scatter(
                x=idx[m], y=shown[m], mode="markers", name=name, marker=marker,
                customdata=idx[m] - 1, hovertemplate=f"mode %{{x}}<br>{hover}<extra></extra>",
            ))  # fmt: skip
    if selected is not None and 0 <= selected < len(values):
        ring = {"size": 15, "color": "rgba(0,0,0,0)", "line": {"width": 2, "color": "#d62728"}}
        fig.add_trace(go.Scatter(
            x=[selected + 1], y=[shown[selected]], mode="markers", name="animated",
            marker=ring, hoverinfo="skip",
        ))  # fmt: skip
    y_title = "|Hessian eigenvalue|" if space == "cartesian" else "ψᵀKψ (block-norm K)"
    fig.update_layout(
        template=TEMPLATE,
        margin={"l": 55, "r": 10, "t": 30, "b": 40},
        height=280,
        title={
            "text": f"{len(values)} modes ({space} space); "
            f"k = {k if k else '—'} slow modes left of the line",
            "font": {"size": 13},
        },
        xaxis={"title": "mode index (slow → fast)"},
        yaxis={"title": y_title, "type": "log"},
        shapes=[_cutoff_shape(k)] if k is not None and 0 < k <= len(values) else [],
        legend={"orientation": "h", "y": -0.25},
        clickmode="event",
        dragmode="zoom",
    )
    return fig


def k_from_shape_drag(relayout: dict | None, n_values: int) -> int | None:
    """k implied by a dragged cutoff line (relayoutData 'shapes[0].x0'), clamped to [1, n]."""
    if not relayout:
        return None
    x = relayout.get("shapes[0].x0")
    if x is None:
        return None
    return int(min(max(round(float(x) - 0.5), 1), n_values))


def heatmap_figure(title: str, matrix) -> go.Figure:
    m = np.asarray(matrix, np.float64)
    fig = go.Figure(
        go.Heatmap(
            z=m,
            colorscale="RdBu_r",
            zmid=0.0 if (m < 0).any() else None,
            x=np.arange(1, m.shape[1] + 1),
            y=np.arange(1, m.shape[0] + 1),
        )
    )
    fig.update_layout(
        template=TEMPLATE,
        title={"text": title, "font": {"size": 12}},
        height=260,
        width=280,
        margin={"l": 35, "r": 5, "t": 30, "b": 30},
        xaxis={"title": "residue"},
        yaxis={"title": "residue", "scaleanchor": "x"},
    )
    return fig


# ---- live curves -------------------------------------------------------------------------------
def curve_panels(with_rmsd: bool) -> list[tuple[str, str]]:
    """(y column, x column) per panel, in trace order."""
    panels = [("energy", "step"), ("energy", "wall_time_s")]
    if with_rmsd:
        panels += [(RMSD, "step"), (RMSD, "wall_time_s")]
    return panels


def curves_figure(runs: list[dict], with_rmsd: bool = False, energy_unit: str = "") -> go.Figure:
    """Empty overlaid curves for a side-by-side group; ``runs`` = [{"id", "label", "color"}]."""
    panels = curve_panels(with_rmsd)
    rows = 2 if with_rmsd else 1
    unit = f" ({energy_unit})" if energy_unit and energy_unit != "1" else ""
    fig = make_subplots(
        rows=rows, cols=2, shared_xaxes=False, horizontal_spacing=0.08, vertical_spacing=0.14
    )
    for p in range(len(panels)):
        for r in runs:
            fig.add_trace(
                go.Scatter(
                    x=[],
                    y=[],
                    mode="lines",
                    name=r["label"],
                    legendgroup=r["id"],
                    showlegend=p == 0,
                    line={"color": r["color"], "width": 2},
                    hovertemplate=f"{r['label']}: %{{y:.5g}} at %{{x:.4g}}<extra></extra>",
                ),
                row=p // 2 + 1,
                col=p % 2 + 1,
            )
    fig.update_xaxes(title_text="step", row=1, col=1)
    fig.update_xaxes(title_text="wall time (s)", row=1, col=2)
    fig.update_yaxes(title_text=f"energy{unit}", row=1, col=1)
    if with_rmsd:
        fig.update_xaxes(title_text="step", row=2, col=1)
        fig.update_xaxes(title_text="wall time (s)", row=2, col=2)
        fig.update_yaxes(title_text="CA RMSD (nm)", row=2, col=1)
    fig.update_layout(
        template=TEMPLATE,
        height=300 if rows == 1 else 520,
        margin={"l": 60, "r": 10, "t": 20, "b": 45},
        legend={"orientation": "h", "y": 1.12},
        uirevision="keep",
        shapes=[],
    )
    return fig


def curves_patch(
    runs: list[dict],
    new_rows: dict[str, tuple],
    switches: dict[str, tuple[int, float]],
    with_rmsd: bool = False,
) -> Patch | None:
    """Patch appending ``new_rows[run_id]`` to each run's traces and marking stage switches.

    switches: {run_id: (step, wall_time_s)} of switches not yet drawn. Returns None when
    there is nothing to add (the callback then sends no update).
    """
    panels = curve_panels(with_rmsd)
    patch = Patch()
    changed = False
    n = len(runs)
    for i, r in enumerate(runs):
        rows = new_rows.get(r["id"]) or ()
        if rows:
            for p, (ycol, xcol) in enumerate(panels):
                ys = _finite(row.get(ycol) for row in rows)
                if all(y is None for y in ys) and ycol != "energy":
                    continue
                trace = patch["data"][p * n + i]
                trace["x"].extend([row.get(xcol) for row in rows])
                trace["y"].extend(ys)
            changed = True
        if r["id"] in switches:
            step, wall = switches[r["id"]]
            for col, xval in ((1, step), (2, wall)):
                xref = "x" if col == 1 else "x2"
                yref = "y domain" if col == 1 else "y2 domain"
                patch["layout"]["shapes"].append(
                    {
                        "type": "line",
                        "xref": xref,
                        "yref": yref,
                        "x0": xval,
                        "x1": xval,
                        "y0": 0,
                        "y1": 1,
                        "line": {"color": r["color"], "width": 1.5, "dash": "dot"},
                    }
                )
            changed = True
    return patch if changed else None


def status_text(snap) -> str:
    """One status line naming the run's phase, with the elapsed time since the Run click.

    queued: "GNN · queued: position 2 in the queue · 3.1 s elapsed"; then "building the
    system", "computing slow modes: Hessian of sample 3 of 40", "compiling (first run of these
    shapes)", "running · step 400 · 200 steps/s · stage 1 · E = -0.12346", "stopping", each
    followed by "· 12.3 s elapsed"; a finished run shows its status and step (and the message
    when it did not end normally; a run stopped before its first step: "stopped by request
    while compiling"). ``snap.phase`` (RunSnapshot) defaults to the status.
    """
    label = snap.label.upper()
    phase = getattr(snap, "phase", "") or snap.status
    detail = getattr(snap, "phase_detail", "") or ""
    elapsed = f"{snap.elapsed:.1f} s elapsed"
    if snap.status == "queued":
        pos = f": position {snap.queue_position} in the queue" if snap.queue_position else ""
        return f"{label} · queued{pos} · {elapsed}"
    if snap.status == "running" and phase in _PHASE_LINES:
        text = _PHASE_LINES[phase] + (f": {detail}" if detail else "")
        return f"{label} · {text} · {elapsed}"
    last = snap.last or {}
    if snap.status == "stopped" and not last:  # stopped before its first step
        return f"{label} · {snap.message or 'stopped'} · {elapsed}"
    step = last.get("step", 0)
    wall = last.get("wall_time", 0.0)
    rate = step / wall if wall > 0 else 0.0
    parts = [label, snap.status, f"step {step}", f"{rate:,.0f} steps/s"]
    if last.get("stage") is not None:
        stage = f"stage {last['stage']}"
        if snap.stage_switch_step is not None:
            stage += f" (switched at step {snap.stage_switch_step})"
        parts.append(stage)
    if "energy" in last and last["energy"] is not None:
        parts.append(f"E = {last['energy']:.5g}")
    parts.append(elapsed)
    text = " · ".join(parts)
    if snap.status in ("diverged", "failed", "interrupted", "cancelled") and snap.message:
        text += f" — {snap.message}"
    return text


# The status line of each phase before the first step (status "running"); "running" itself
# shows the step, the rate and the energy.
_PHASE_LINES = {
    "building": "building the system",
    "modes": "computing slow modes",
    "compiling": "compiling (first run of these shapes)",
    "stopping": "stopping",
}


# ---- speed-up readout ------------------------------------------------------------------------
def speedup_rows(
    reaches: dict[str, Reach | None], labels: dict[str, str], threshold: float | None
) -> list[dict]:
    """Per run: steps and time to reach ``threshold`` and the speed-up vs the first run (GD).

    reaches: {run_id: engine.analysis.Reach or None} in display order. Returns dicts with
    label, reached, step, time, speedup_time and speedup_steps (None where undefined).
    """
    if threshold is None:
        return []
    ids = list(reaches)
    base = reaches[ids[0]] if ids else None
    out = []
    for rid in ids:
        r = reaches[rid]
        row = {
            "label": labels.get(rid, rid),
            "reached": r is not None,
            "step": None,
            "time": None,
            "speedup_time": None,
            "speedup_steps": None,
        }
        if r is not None:
            row["step"], row["time"] = r
            if base is not None and rid != ids[0]:
                row["speedup_time"] = base.time_s / r.time_s if r.time_s > 0 else None
                row["speedup_steps"] = base.step / r.step if r.step > 0 else None
        out.append(row)
    return out


# ---- replay ------------------------------------------------------------------------------------
def replay_figure(
    rows,
    label: str,
    color: str,
    switch_step: int | None,
    marker_step: int | None,
    with_rmsd: bool = False,
) -> go.Figure:
    """A finished run's curves vs step (energy, and RMSD when present) with the shown frame marked.

    Clicking a point (clickData x = step) selects the nearest stored frame.
    """
    steps = [r["step"] for r in rows]
    fig = make_subplots(rows=1, cols=2 if with_rmsd else 1, horizontal_spacing=0.12)
    fig.add_trace(
        go.Scatter(
            x=steps,
            y=_finite(r.get("energy") for r in rows),
            mode="lines+markers",
            marker={"size": 3},
            line={"color": color},
            name=f"{label} energy",
            hovertemplate="step %{x}<br>E = %{y:.5g}<extra>click: show this frame</extra>",
        ),
        row=1,
        col=1,
    )
    if with_rmsd:
        fig.add_trace(
            go.Scatter(
                x=steps,
                y=_finite(r.get(RMSD) for r in rows),
                mode="lines+markers",
                marker={"size": 3},
                line={"color": color, "dash": "dot"},
                name=f"{label} RMSD",
            ),
            row=1,
            col=2,
        )
    shapes = []
    if switch_step is not None:
        shapes.append(
            {
                "type": "line",
                "x0": switch_step,
                "x1": switch_step,
                "y0": 0,
                "y1": 1,
                "yref": "y domain",
                "line": {"color": "#888", "dash": "dot"},
            }
        )
    if marker_step is not None:
        shapes.append(
            {
                "type": "line",
                "x0": marker_step,
                "x1": marker_step,
                "y0": 0,
                "y1": 1,
                "yref": "y domain",
                "line": {"color": "#d62728", "width": 2},
            }
        )
    fig.update_layout(
        template=TEMPLATE,
        height=260,
        margin={"l": 60, "r": 10, "t": 20, "b": 40},
        shapes=shapes,
        showlegend=False,
        clickmode="event",
    )
    fig.update_xaxes(title_text="step")
    fig.update_yaxes(title_text="energy", row=1, col=1)
    return fig


def nearest_frame(frame_steps: list[int], step: float) -> int:
    """Index of the stored frame closest to ``step``."""
    if not frame_steps:
        return 0
    return int(np.argmin(np.abs(np.asarray(frame_steps, np.float64) - float(step))))
