"""Pure figure and text builders: snapshots and arrays in, plotly figures / Patches / strings out.

No Dash state, no registry: callbacks pass plain values. The live curves are updated with a
``Patch`` that assigns whole (thinned) traces, so a repeated or late poll reply cannot add a
point twice (see ``curves_patch``). Trace layout of the live curves figure, for run i of R runs
and the panels of ``curve_panels``: trace index = p * R + i.
"""

from __future__ import annotations

import math
from typing import NamedTuple

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
# The energy panels plot log10 of the gap to the lowest energy any run of the group has logged,
# E - E_best, so the approach to the minimum stays readable; the start spike (E0 far above the
# minimum) lies above the default range (the first CURVE_SPIKE_SKIP of each run's rows is left
# out of it; double-click the plot to see everything). Gaps at or below GAP_FLOOR sit on it.
# Time is measured from the Run click (``click_time_s``) when the rows carry it, else from
# each run's own start (``wall_time_s``).
#
# Each poll assigns every trace's whole arrays (thinned to MAX_CURVE_POINTS) rather than
# extending them: E_best moves as runs improve, so old gaps change, and an assignment applied
# twice or out of order cannot add a point twice (a stale one is replaced by the next poll).
MAX_CURVE_POINTS = 400
CURVE_SPIKE_SKIP = 0.1
GAP_FLOOR_REL = 1e-9  # floor of the gap axis relative to max(1, |E_best|)
CLICK_TIME = "click_time_s"  # seconds from the group's Run click to the row's arrival
WALL_TIME = "wall_time_s"  # seconds from the run's own start
INTACT = "bonds_intact_frac"


class Panel(NamedTuple):
    """One trace per run: column ``y`` (times ``scale``) against "step" or "time"."""

    y: str
    x: str  # "step" or "time"
    row: int
    col: int
    dash: str = "solid"
    scale: float = 1.0
    name: str = ""


def curve_panels(with_rmsd: bool, rmsd_first: bool = False) -> list[Panel]:
    """The panels of the live curves, in trace order (trace index = panel * n_runs + run).
    ``rmsd_first`` (folding runs) puts the CA-RMSD to native in the top row, energy below."""
    e_row, r_row = (2, 1) if with_rmsd and rmsd_first else (1, 2)
    panels = [Panel("energy", "step", e_row, 1), Panel("energy", "time", e_row, 2)]
    if with_rmsd:
        return panels + [Panel(RMSD, "step", r_row, 1), Panel(RMSD, "time", r_row, 2)]
    return panels + [
        Panel(INTACT, "step", 2, 1, scale=100.0, name="bonds intact"),
        Panel("loop_contact_frac", "step", 2, 1, "dot", 100.0, "loop contacts"),
        Panel("radius_of_gyration", "step", 2, 2),
    ]


def time_column(columns: dict) -> str:
    """The time column to plot: ``click_time_s`` when the rows carry it, else ``wall_time_s``."""
    click = columns.get(CLICK_TIME)
    if click is not None and np.isfinite(np.asarray(click, np.float64)).any():
        return CLICK_TIME
    return WALL_TIME


def reported_energy(specs) -> str:
    """Which energy loop runs' curves report, for the gap axis title: the full deterministic
    energy (every pair) unless the run uses the cutoff model (``EnergyModel.reported``);
    "" for proteins. Runs of a group that differ are named."""
    names = {}
    for spec in specs:
        if spec.system.kind == "protein":
            continue
        cutoff = spec.energy.repulsion == "cutoff"
        text = f"cutoff (r_c {spec.energy.cutoff:g})" if cutoff else "full"
        names.setdefault(text, []).append(spec.label)
    if len(names) <= 1:
        return next(iter(names), "")
    return "; ".join(f"{t}: {', '.join(labels)}" for t, labels in names.items())


def curves_figure(
    runs: list[dict],
    with_rmsd: bool = False,
    energy_unit: str = "",
    energy_label: str = "",
    rmsd_first: bool = False,
) -> go.Figure:
    """Empty overlaid curves for a side-by-side group; ``runs`` = [{"id", "label", "color"}];
    ``energy_label`` (``reported_energy``) names the energy on the gap axes; ``rmsd_first``:
    the CA-RMSD to native is the top row (a protein folding from elsewhere)."""
    unit = f" ({energy_unit})" if energy_unit and energy_unit != "1" else ""
    fig = make_subplots(
        rows=2, cols=2, shared_xaxes=False, horizontal_spacing=0.1, vertical_spacing=0.16
    )
    for p in curve_panels(with_rmsd, rmsd_first):
        for r in runs:
            what = f"{r['label']} {p.name}".strip()
            hover = (
                f"{r['label']}: E = %{{customdata:.6g}} (gap %{{y:.3g}}) at %{{x:.4g}}"
                if p.y == "energy"
                else f"{what}: %{{y:.4g}} at %{{x:.4g}}"
            )
            fig.add_trace(
                go.Scatter(
                    x=[],
                    y=[],
                    mode="lines",
                    name=r["label"],
                    legendgroup=r["id"],
                    showlegend=p.y == "energy" and p.x == "step",
                    line={"color": r["color"], "width": 2 if p.dash == "solid" else 1.5,
                          "dash": p.dash},
                    hovertemplate=hover + "<extra></extra>",
                ),
                row=p.row,
                col=p.col,
            )  # fmt: skip
    gap = f"{energy_label + ' ' if energy_label else ''}E − E_best{unit}, log"
    e_row, r_row = (2, 1) if with_rmsd and rmsd_first else (1, 2)
    fig.update_xaxes(title_text="step", row=1, col=1)
    fig.update_xaxes(title_text="time since Run (s)", row=1, col=2)
    fig.update_yaxes(title_text=gap, type="log", row=e_row, col=1)
    fig.update_yaxes(title_text=gap, type="log", row=e_row, col=2)
    fig.update_xaxes(title_text="step", row=2, col=1)
    if with_rmsd:
        rmsd = "CA RMSD to native (nm)" if rmsd_first else "CA RMSD (nm)"
        fig.update_xaxes(title_text="time since Run (s)", row=2, col=2)
        fig.update_yaxes(title_text=rmsd, row=r_row, col=1)
        fig.update_yaxes(title_text=rmsd, row=r_row, col=2)
    else:
        fig.update_yaxes(title_text="bonds intact, ··· loop contacts (%)", row=2, col=1)
        fig.update_xaxes(title_text="step", row=2, col=2)
        fig.update_yaxes(title_text="radius of gyration", row=2, col=2)
    fig.update_layout(
        template=TEMPLATE,
        height=560,
        margin={"l": 60, "r": 10, "t": 20, "b": 45},
        legend={"orientation": "h", "y": 1.08},
        uirevision="keep",
        shapes=[],
    )
    return fig


class Gap(NamedTuple):
    """The energy gap axis of a group: E_best, the floor gaps are clipped to, and the default
    y range [log10 lo, log10 hi] (start spike left out)."""

    best: float | None
    floor: float
    range: list | None


def gap_axis(energies: dict[str, np.ndarray]) -> Gap:
    """The gap axis of runs' energy columns ({run_id: [n]}); non-finite values are ignored.

    E_best is the lowest finite energy of all runs; floor = half the smallest positive gap
    (at least GAP_FLOOR_REL * max(1, |E_best|)); the range spans the floor to the largest gap
    after each run's first CURVE_SPIKE_SKIP of rows (at least its first row).
    """
    finite = [e[np.isfinite(e)] for e in (np.asarray(v, np.float64) for v in energies.values())]
    finite = [e for e in finite if e.size]
    if not finite:
        return Gap(None, 1.0, None)
    best = float(min(e.min() for e in finite))
    gaps = np.concatenate(finite) - best
    positive = gaps[gaps > 0]
    tiny = GAP_FLOOR_REL * max(1.0, abs(best))
    floor = max(float(positive.min()) / 2, tiny) if positive.size else tiny
    tails = []
    for e in finite:
        skip = max(1, math.ceil(CURVE_SPIKE_SKIP * e.size)) if e.size > 1 else 0
        tails.append(e[skip:] - best)
    top = max((float(t.max()) for t in tails if t.size), default=floor)
    top = max(top, 10 * floor)
    return Gap(best, floor, [math.log10(floor) - 0.2, math.log10(top) + 0.3])


def thin_index(n: int, max_points: int = MAX_CURVE_POINTS) -> np.ndarray:
    """Indices of at most ``max_points`` rows spread evenly over n, first and last included."""
    if n <= max_points:
        return np.arange(n)
    return np.unique(np.round(np.linspace(0, n - 1, max_points)).astype(np.int64))


def _values(col, idx, scale=1.0) -> list:
    if col is None:
        return [None] * len(idx)
    return _finite(np.asarray(col, np.float64)[idx] * scale)


def curves_patch(
    runs: list[dict],
    columns: dict[str, dict],
    switches: dict[str, int] | None = None,
    with_rmsd: bool = False,
    max_points: int = MAX_CURVE_POINTS,
    rmsd_first: bool = False,
) -> Patch | None:
    """Patch assigning every trace of the live curves from the runs' logged columns.

    Args:
      runs: [{"id", "color", ...}] in trace order.
      columns: {run_id: {column name: [n] array}} (step, wall_time_s or click_time_s, energy,
        the structure metrics); runs without columns keep their traces.
      switches: {run_id: stage-switch step}, drawn as dotted lines on the step and time axes.

    Returns None when no run has columns. Idempotent: the same columns give the same figure
    however often or late the Patch is applied.
    """
    switches = switches or {}
    if not any(columns.get(r["id"]) for r in runs):
        return None
    panels = curve_panels(with_rmsd, rmsd_first)
    gap = gap_axis({r["id"]: columns[r["id"]].get("energy", ()) for r in runs
                    if columns.get(r["id"])})  # fmt: skip
    patch = Patch()
    n_runs = len(runs)
    shapes = []
    time_cols = set()
    for i, r in enumerate(runs):
        cols = columns.get(r["id"])
        if not cols:
            continue
        steps = np.asarray(cols.get("step", ()), np.float64)
        idx = thin_index(len(steps), max_points)
        tcol = time_column(cols)
        time_cols.add(tcol)
        xs = {"step": _finite(steps[idx]), "time": _values(cols.get(tcol), idx)}
        for p, panel in enumerate(panels):
            trace = patch["data"][p * n_runs + i]
            trace["x"] = xs[panel.x]
            if panel.y == "energy":
                raw = np.asarray(cols.get("energy", np.full(len(steps), np.nan)), np.float64)[idx]
                trace["customdata"] = _finite(raw)
                shown = np.maximum(raw - (gap.best if gap.best is not None else 0), gap.floor)
                trace["y"] = _finite(shown)
            else:
                trace["y"] = _values(cols.get(panel.y), idx, panel.scale)
        if switches.get(r["id"]) is not None:
            shapes += _switch_shapes(r["color"], switches[r["id"]], steps, cols.get(tcol))
    patch["layout"]["shapes"] = shapes
    if gap.range is not None:
        for axis in ("yaxis3", "yaxis4") if with_rmsd and rmsd_first else ("yaxis", "yaxis2"):
            patch["layout"][axis]["range"] = gap.range
            patch["layout"][axis]["autorange"] = False
    title = "time since Run (s)" if time_cols == {CLICK_TIME} else "time since each run's start (s)"
    patch["layout"]["xaxis2"]["title"]["text"] = title
    if with_rmsd:
        patch["layout"]["xaxis4"]["title"]["text"] = title
    return patch


def _switch_shapes(color: str, step: int, steps: np.ndarray, times) -> list[dict]:
    """Dotted vertical lines at a stage switch on the two top panels."""
    at = np.flatnonzero(steps == step)
    xs = [("x", "y domain", float(step))]
    if at.size and times is not None and math.isfinite(float(times[at[0]])):
        xs.append(("x2", "y2 domain", float(times[at[0]])))
    line = {"color": color, "width": 1.5, "dash": "dot"}
    return [
        {"type": "line", "xref": xref, "yref": yref, "x0": x, "x1": x, "y0": 0, "y1": 1,
         "line": line}
        for xref, yref, x in xs
    ]  # fmt: skip


def structure_text(row: dict | None, system_kind: str) -> str:
    """The card's structure line from a logged row: bonds intact (and how many are stretched
    beyond twice their rest length), loop contacts and radius of gyration for loops; CA RMSD,
    radius of gyration and bonds intact for proteins."""
    row = row or {}

    def num(key):
        v = row.get(key)
        return float(v) if v is not None and math.isfinite(float(v)) else None

    intact, stretched = num(INTACT), num("bonds_stretched")
    parts = []
    if intact is not None:
        text = f"bonds intact {100 * intact:.1f} %"
        if stretched:
            text += f" ({int(stretched)} stretched > 2× rest length: structure torn)"
        parts.append(text)
    if system_kind == "protein":
        rmsd, rg = num(RMSD), num("radius_of_gyration")
        if rmsd is not None:
            parts.insert(0, f"CA RMSD {rmsd:.3f} nm")
        if rg is not None:
            parts.append(f"Rg {rg:.3f} nm")
    else:
        contacts, rg = num("loop_contact_frac"), num("radius_of_gyration")
        if contacts is not None:
            parts.append(f"loop contacts {100 * contacts:.1f} %")
        if rg is not None:
            parts.append(f"Rg {rg:.3g}")
    return " · ".join(parts) if parts else "structure: no finite positions logged yet"


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
SPEEDUP_COLUMNS = ("final", "best", "step", "time", "speedup_time", "speedup_steps")
_LOWER_IS_BETTER = {"final", "best", "step", "time"}


def speedup_rows(
    reaches: dict[str, Reach | None],
    labels: dict[str, str],
    threshold: float | None,
    finals: dict[str, float | None] | None = None,
    bests: dict[str, float | None] | None = None,
    reference: str | None = None,
) -> list[dict]:
    """Per run: final and best value, steps and time to reach ``threshold``, the speed-ups
    against the reference run, and which columns it is best in.

    reaches: {run_id: engine.analysis.Reach or None} in display order. reference: the run the
    speed-ups divide by (the workbench passes GD's run whenever GD runs); the first run when
    None or unknown. Returns dicts with id, label, reference, reached, final, best, step, time,
    speedup_time, speedup_steps (None where undefined) and best_in (set of column names).
    """
    if threshold is None:
        return []
    finals, bests = finals or {}, bests or {}
    ids = list(reaches)
    ref = reference if reference in reaches else (ids[0] if ids else None)
    base = reaches.get(ref)
    out = []
    for rid in ids:
        r = reaches[rid]
        row = {
            "id": rid,
            "label": labels.get(rid, rid),
            "reference": rid == ref,
            "reached": r is not None,
            "final": finals.get(rid),
            "best": bests.get(rid),
            "step": None,
            "time": None,
            "speedup_time": None,
            "speedup_steps": None,
        }
        if r is not None:
            row["step"], row["time"] = int(r.step), float(r.time_s)
            if base is not None and rid != ref:
                row["speedup_time"] = base.time_s / r.time_s if r.time_s > 0 else None
                row["speedup_steps"] = base.step / r.step if r.step > 0 else None
        out.append(row)
    return mark_best(out)


def mark_best(rows: list[dict]) -> list[dict]:
    """Set each row's ``best_in``: the columns where it holds the best value (lowest final,
    best, steps and time; highest speed-up), ties included, when at least two rows compare."""
    for row in rows:
        row["best_in"] = set()
    for col in SPEEDUP_COLUMNS:
        vals = [(row[col], row) for row in rows if _number(row.get(col))]
        if col.startswith("speedup"):  # the reference's own 1× counts in the comparison
            vals += [(1.0, row) for row in rows if row["reference"] and row["reached"]]
        if len(vals) < 2:
            continue
        pick = min if col in _LOWER_IS_BETTER else max
        top = pick(v for v, _ in vals)
        for v, row in vals:
            if v == top:
                row["best_in"].add(col)
    return rows


def _number(v) -> bool:
    return v is not None and math.isfinite(float(v))


def threshold_note(
    metric: str,
    threshold: float,
    rows: list[dict],
    auto: bool,
    statuses: dict[str, str] | None = None,
) -> str:
    """One line: what the threshold is, where it comes from, and why a run did not reach it."""
    statuses = statuses or {}
    ref = next((r for r in rows if r["reference"]), None)
    ref_name = ref["label"].upper() if ref else "the reference"
    origin = (
        f"auto: {ref_name}'s final value + 1 % of its magnitude"
        if auto and ref is not None and ref["final"] is not None
        else "auto: the worst final value + 1 %"
        if auto
        else "as entered"
    )
    parts = [f"Threshold: {metric} ≤ {threshold:.5g} ({origin})."]
    for r in rows:
        if r["reached"]:
            continue
        status = statuses.get(r["id"], "")
        why = (
            f"its best, {r['best']:.5g}, stays above it"
            if r["best"] is not None
            else "it has logged no finite value"
        )
        when = {
            "running": "; still running",
            "queued": "; not started yet",
            "diverged": "; it diverged",
            "failed": "; it failed",
            "cancelled": "; stopped by hand",
            "stopped": "; stopped by hand",
        }.get(status, "")
        parts.append(f"{r['label'].upper()} did not reach it: {why}{when}.")
    if ref is not None and not ref["reached"]:
        parts.append(f"Speed-ups need {ref_name} (the reference) to reach it.")
    return " ".join(parts)


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
