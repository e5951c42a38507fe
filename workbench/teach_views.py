"""Teaching views of the live run cards: the slow-mode projection chart and the loop verdict.

Projection (engine/teaching.py): every run's displacement from x0, at each kept frame, split
over the Hessian's eigenmodes at x0 in four bands (rigid body, the k slowest, the middle, the
k fastest), drawn as a stacked area of shares against step, one chart per card. The modes
are computed once per system (key: the spec's system, energy and seed, so the runs of one
group share them) on one background thread, never inside a callback: a callback only reads
what is ready and projects the frames it has not seen (a [T, 3n] x [3n, 3n] product).

k: the run's ``reparam.n_modes`` (default n/4, ``engine.run.default_n_modes``); node-space
modes (block-Laplacian) span 3k Cartesian directions, so the slow band then holds 3k modes.
Above ``MAX_ATOMS`` atoms the chart says it is off (a dense 3n x 3n eigensolver).

Verdict: ``engine.teaching.loop_verdict`` of a loop run's last logged loop contacts and
intact bonds, as a badge.

Gradient: at the same frames, ∇E(x) (the full energy) is split over the same bands, in a
second chart below the displacement's: where the force pulls, against where the run moved.

Conditioning, propagation graph and landscape slice (panel "teach", workbench/panels/teach.py):
figures and the background work of each, below.

Thread safety: one lock guards the caches; no engine call runs under it.
"""

from __future__ import annotations

import concurrent.futures
import functools
import json
import threading
from collections import OrderedDict
from concurrent.futures import ThreadPoolExecutor

import jax.numpy as jnp
import numpy as np
import plotly.graph_objects as go
from dash import html
from plotly.subplots import make_subplots

from engine import RunSpec, make_energy
from engine.teaching import (
    BAND_NAMES,
    FAST,
    MIDDLE,
    RIGID,
    SLOW,
    loop_verdict,
    project_frames,
    projection_basis,
)

MAX_ATOMS = 1000  # above: no projection (dense eigh of 3n x 3n: 6.6-9.5 s at n = 1000)
MAX_SYSTEMS = 3  # modes kept (72 MB each at n = 1000)
MAX_RUN_CHARTS = 256  # (session, run) projections kept; an older card starts its chart afresh
BAND_ORDER = (SLOW, MIDDLE, FAST, RIGID)  # stacking order, bottom to top
BAND_COLORS = {SLOW: "#2ca02c", MIDDLE: "#9ecae1", FAST: "#d62728", RIGID: "#bdbdbd"}
CHART_HEIGHT = 300  # two stacked charts (displacement, gradient); = .wb-projection in the CSS
FINAL_WAIT_S = 30.0  # a run that ended before its modes were ready: its last poll waits this long


class _Modes:
    """Per-system eigenmodes (computed on one background thread) and per-run projections."""

    def __init__(self):
        self._lock = threading.Lock()
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="teach-modes")
        self._systems: OrderedDict = OrderedDict()  # key -> Future[ProjectionBasis]
        # (reader, run id) -> {"shares": {step: [4]}, ...}, the most recently drawn last
        self._runs: OrderedDict = OrderedDict()

    def request(self, key: str, system, spec: RunSpec):
        """The future of the modes of ``system`` (started now when unknown)."""
        with self._lock:
            fut = self._systems.get(key)
            if fut is None:
                fut = self._pool.submit(projection_basis, system, spec)
                self._systems[key] = fut
                while len(self._systems) > MAX_SYSTEMS:
                    self._systems.popitem(last=False)
            return fut

    def run_state(self, run_id: str, reader: str) -> dict:
        """What ``reader``'s chart of ``run_id`` has drawn (flags) and its projections."""
        with self._lock:
            state = self._runs.pop((reader, run_id), None) or {"shares": {}}
            self._runs[(reader, run_id)] = state
            while len(self._runs) > MAX_RUN_CHARTS:  # a long-lived server's old cards
                self._runs.popitem(last=False)
            return state

    def clear(self) -> None:
        """Forget every system's modes and every chart (tests)."""
        with self._lock:
            self._systems.clear()
            self._runs.clear()


CACHE = _Modes()


def system_key(spec: dict) -> str:
    """The key of a run's system and energy (the runs of one group share it)."""
    return json.dumps([spec.get("system"), spec.get("energy"), spec.get("seed")], sort_keys=True)


# ---- figures (pure) --------------------------------------------------------------------------
def projection_figure(
    steps, shares, n_slow: int | None = None, note: str = "", grad_shares=None
) -> dict:
    """Stacked areas of each band's share of |x - x0|^2 (top) and of |∇E(x)|^2 (bottom)
    against step; ``shares`` and ``grad_shares`` [T, 4] (columns by band: RIGID, SLOW,
    MIDDLE, FAST), or an empty chart with ``note``.

    A plain figure dict: the styled template is built once per (n_slow, note) and only the
    traces' values are filled in (building it with plotly's validated objects took ~40 ms a
    chart, redrawn for every card at each chart redraw, on the server's request threads)."""
    template = _projection_template(n_slow, note)
    data = []
    for trace, values in zip(template["data"], _band_columns(steps, shares, grad_shares),
                             strict=True):  # fmt: skip
        data.append({**trace, **values})
    return {"data": data, "layout": template["layout"]}


def _band_columns(steps, shares, grad_shares):
    """Per trace of the template (panel by panel, bands in BAND_ORDER): its x, y (the band's
    share in %) and customdata (the panel's norm)."""
    for values in (shares, grad_shares):
        values = np.asarray([] if values is None else values, np.float64).reshape(-1, 4)
        total = values.sum(axis=1)
        frac = np.divide(
            values, total[:, None], out=np.zeros_like(values), where=total[:, None] > 0
        )
        norm = np.sqrt(total).tolist()
        x = list(map(int, steps)) if len(values) == len(steps) else []
        for b in BAND_ORDER:
            yield {"x": x, "y": (100 * frac[:, b]).tolist(), "customdata": norm}


@functools.lru_cache(maxsize=64)
def _projection_template(n_slow: int | None, note: str) -> dict:
    """The projection chart without values, as a figure dict (shared: never mutated)."""
    fig = make_subplots(rows=2, cols=1, shared_xaxes=True, vertical_spacing=0.14)
    panels = (("bands", "x − x0", "|x−x0|"), ("grad", "∇E(x)", "|∇E|"))
    for row, (group, what, norm_name) in enumerate(panels, start=1):
        for b in BAND_ORDER:
            name = BAND_NAMES[b] + (f" ({n_slow})" if b == SLOW and n_slow else "")
            fig.add_trace(
                go.Scatter(
                    x=[],
                    y=[],
                    name=name,
                    legendgroup=BAND_NAMES[b],
                    showlegend=row == 1,
                    stackgroup=group,
                    mode="lines",
                    line={"width": 0.5, "color": BAND_COLORS[b]},
                    hovertemplate=f"%{{y:.1f}} % of {what} squared ({norm_name} = "
                    "%{customdata:.3g})<extra>" + BAND_NAMES[b] + "</extra>",
                ),
                row=row,
                col=1,
            )
        fig.update_yaxes(
            range=[0, 100], ticksuffix=" %", title={"text": what, "font": {"size": 10}}, row=row
        )
    fig.update_layout(
        template="plotly_white",
        height=CHART_HEIGHT,
        margin={"l": 48, "r": 8, "t": 26, "b": 30},
        title={
            "text": "share of |x − x0|² and |∇E|² per band of H's modes at x0",
            "font": {"size": 11},
        },
        legend={"orientation": "h", "y": -0.18, "font": {"size": 10}},
        uirevision="projection",
    )
    if note:
        fig.add_annotation(text=note, showarrow=False, x=0.5, y=0.5, xref="paper", yref="paper")
    return fig.to_plotly_json()


def verdict_badge(contacts, intact) -> html.Span:
    """The loop verdict as a badge (class wb-verdict wb-verdict-<kind>)."""
    v = loop_verdict(contacts, intact)
    return html.Span(v.text, className=f"wb-verdict wb-verdict-{v.kind}", title=VERDICT_HELP)


VERDICT_HELP = (
    "loop closed: ≥ 95 % of loop contacts (loop pairs closer than 1.5) and ≥ 99 % of chain "
    "bonds intact (≤ 2× rest length); torn apart: < 95 % of bonds intact; loop open: < 25 % "
    "of contacts; otherwise partly closed (engine.teaching.VERDICT_THRESHOLDS)."
)


# ---- per-poll update -------------------------------------------------------------------------
def card_projection(r, run_id: str, sid: str, spec_dict: dict | None, final: bool = False):
    """(figure or None when nothing new, note) of one run's projection chart: reads the
    run's kept frames from the registry, projects those not seen yet. ``final``: the run has
    ended, so no later poll will come: wait for its modes (at most FINAL_WAIT_S) rather than
    leave the chart saying they are being computed."""
    if not spec_dict:
        return None
    state = CACHE.run_state(run_id, sid)
    spec = RunSpec.from_dict(spec_dict)
    if spec.system.n > MAX_ATOMS:
        if state.get("off"):
            return None
        state["off"] = True
        return projection_figure([], [], note=f"projection off above n = {MAX_ATOMS}")
    if "future" not in state:
        data = r.export_data(run_id, sid)
        system = data and data.get("system")
        if system is None:
            return None  # not built yet
        state["x0"] = np.asarray(system.x0, np.float64)
        state["future"] = CACHE.request(system_key(spec_dict), system, spec)
    fut = state["future"]
    if final and not fut.done():
        concurrent.futures.wait([fut], timeout=FINAL_WAIT_S)
    if not fut.done():
        if state.get("waiting"):
            return None
        state["waiting"] = True
        return projection_figure([], [], note="computing the Hessian's modes at x0…")
    if fut.exception() is not None:
        state["failed"] = state.get("failed") or str(fut.exception())
        return projection_figure([], [], note="modes failed: " + state["failed"][:60])
    basis = fut.result()
    frames = r.frames(run_id, sid) or []
    new = [(s, x) for s, x in frames if s not in state["shares"]]
    if not new and state.get("drawn") == len(frames):
        return None
    if new:
        got, got_g = project_frames(basis, state["x0"], [x for _, x in new])
        state["shares"].update({s: v for (s, _), v in zip(new, got, strict=True)})
        state.setdefault("grad", {}).update({s: v for (s, _), v in zip(new, got_g, strict=True)})
    steps = [s for s, _ in frames]
    state["drawn"] = len(frames)
    n_slow = int((basis.bands == SLOW).sum())
    return projection_figure(
        steps,
        [state["shares"][s] for s in steps],
        n_slow,
        grad_shares=[state["grad"][s] for s in steps],
    )


def card_views(r, live: dict | None, sid: str, card_ids: list[str]) -> tuple[list, list]:
    """(projection figures, verdict badges) of the cards ``card_ids``; NU-like None entries
    mean unchanged (the callback maps them to no_update)."""
    runs = {run["id"]: run for run in (live or {}).get("runs", [])}
    figs, badges = [], []
    loop = not (live or {}).get("rmsd")
    for rid in card_ids:
        snap = r.snapshot(rid, sid, 1 << 62, 1 << 62) if rid in runs else None
        final = bool(snap and snap.terminal)
        figs.append(card_projection(r, rid, sid, snap.spec if snap else None, final))
        if snap is None or not loop:
            badges.append(None)
            continue
        contacts = r.curve_final(rid, sid, "loop_contact_frac")
        intact = r.curve_final(rid, sid, "bonds_intact_frac")
        badges.append(verdict_badge(contacts, intact))
    return figs, badges


# ---- conditioning, propagation graph and landscape slice (panel "teach") -------------------------
# Each is a registry task (``background``): the engine work runs on its own daemon thread
# (workbench.jobs.shared_computation, shared by identical requests), the analysis thread only
# waits for it in slices, so a stop or TEACH_TIMEOUT_S frees it at once (as the spectrum does).
TEACH_TIMEOUT_S = 600.0
TEACH_MAX_ATOMS = 1000  # dense 3n x 3n eigensolvers and kernels (n = 1000: seconds each)
EDGE_COLORS = ("#d62728", "#1f77b4")  # positive, negative weight
HIST_BINS = 60


def background(key, work, timeout_s: float | None = None):
    """A registry task ``fn(report, should_stop)`` waiting for ``work(report)`` (a shared
    computation keyed by ``key``); returns its payload, None when stopped."""
    import time

    from . import jobs

    limit = TEACH_TIMEOUT_S if timeout_s is None else timeout_s

    def task(report, should_stop):
        if should_stop():
            return None
        start = time.monotonic()
        while True:  # None: the server's limit of computations under way is reached
            comp, _ = jobs.shared_computation(key, work)
            if comp is not None:
                break
            report("waiting for a free computation slot (the server's limit of computations)")
            if should_stop():
                return None
            if time.monotonic() - start > limit:
                raise TimeoutError(f"no free computation slot after {limit:.0f} s")
            time.sleep(0.1)
        shown = None
        while not comp.done.wait(0.1):
            if comp.phase != shown:
                shown = comp.phase
                report(shown)
            if should_stop():
                return None
            if time.monotonic() - start > limit:
                raise TimeoutError(f"no result after {limit:.0f} s (last: {comp.phase})")
        if comp.error is not None:
            raise RuntimeError(comp.error.strip().splitlines()[-1])
        return comp.payload

    return task


def spec_key(kind: str, *parts) -> tuple:
    return (kind, *[json.dumps(p, sort_keys=True, default=str) for p in parts])


def _built(spec, system):
    """``system``, or the spec's system built (cached) when None (a stored run)."""
    from . import jobs

    return system if system is not None else jobs.build_system(spec.system, spec.seed)


def conditioning_work(specs, system=None, parts=("start",), before=None):
    """work(report) of the conditioning view: ``engine.teaching.conditioning_report`` of
    ``parts``. The view runs "start" (H, CG, the GNN at step 0) and then, with that payload
    as ``before``, "switch" (the GNN replayed to its stage switch): its payload holds every
    row so far."""
    from engine.teaching import conditioning_report

    def work(report):
        import time

        t = time.perf_counter()
        report("building the system")
        system_ = _built(specs[0], system)
        rows = conditioning_report(specs, system_, report, parts=parts)
        prior = before or {"rows": [], "seconds": 0.0}
        return {
            "rows": prior["rows"] + [r._asdict() for r in rows],
            "n": system_.n_atoms,
            "seconds": prior["seconds"] + time.perf_counter() - t,
            "specs": [s.to_dict() for s in specs],
            "parts": list(prior.get("parts", [])) + list(parts),
        }

    return work


def switch_pending(payload: dict) -> bool:
    """The conditioning payload has a GNN whose switch row is still to come."""
    kinds = [s.get("reparam", {}).get("kind") for s in payload.get("specs", [])]
    return "gnn" in kinds and "switch" not in payload.get("parts", [])


def switch_note(payload: dict) -> str:
    """What the text says when the GNN's replay ended without a stage switch."""
    if "switch" not in payload.get("parts", []):
        return ""
    if any(r["label"].startswith("GNN at its switch") for r in payload["rows"]):
        return ""
    steps = [s["schedule"]["max_steps"] for s in payload["specs"] if s["reparam"]["kind"] == "gnn"]
    return f" The GNN did not reach its stage switch within its {steps[0]} steps: no switch row."


def conditioning_figure(rows: list[dict]) -> go.Figure:
    """Every operator's |eigenvalues| on one log axis (one row each; hollow marks: negative
    eigenvalues), with κ = max|λ| / min|λ| and the counts in the row's label."""
    fig = go.Figure()
    labels = []
    for i, row in enumerate(rows):
        vals = np.asarray(row["values"], np.float64)
        label = (
            f"{row['label']}<br>κ = {row['kappa']:.3g}, κ₁₀ = {row['kappa_bulk']:.3g} · "
            f"{row['rank']} modes" + (f" ({row['n_negative']} < 0)" if row["n_negative"] else "")
        )
        labels.append(label)
        absval = np.abs(vals)
        for neg in (False, True):
            sel = (vals < 0) == neg
            if neg and not sel.any():
                continue
            jitter = np.random.default_rng(i).uniform(-0.25, 0.25, int(sel.sum()))
            fig.add_trace(
                go.Scatter(
                    x=np.maximum(absval[sel], 1e-300).tolist(),
                    y=(i + jitter).tolist(),
                    mode="markers",
                    name=row["label"] + (" (λ < 0)" if neg else ""),
                    marker={
                        "size": 4,
                        "symbol": "circle-open" if neg else "circle",
                        "color": COND_COLORS[i % len(COND_COLORS)],
                    },
                    hovertemplate="|λ| = %{x:.3g}<extra>" + row["label"] + "</extra>",
                    showlegend=False,
                )
            )
    fig.update_layout(
        template="plotly_white",
        height=120 + 70 * len(rows),
        margin={"l": 250, "r": 10, "t": 36, "b": 40},
        title={
            "text": "|λ| of each operator (hollow: λ < 0); κ = max|λ| / min|λ|, "
            "κ₁₀ = max|λ| / (10th percentile of |λ|)",
            "font": {"size": 12},
        },
        xaxis={"type": "log", "title": "|λ| (energy / length², or per parameter²)"},
        yaxis={
            "tickvals": list(range(len(rows))),
            "ticktext": labels,
            "range": [len(rows) - 0.5, -0.5],
            "zeroline": False,
        },
    )
    return fig


COND_COLORS = ("#444444", "#2ca02c", "#9467bd", "#d62728", "#ff7f0e")


def conditioning_text(rows: list[dict], seconds: float) -> str:
    """One line naming each κ and κ₁₀, and their ratio to those of H in positions."""
    if not rows:
        return ""
    k0, b0 = rows[0]["kappa"], rows[0]["kappa_bulk"]
    parts = [f"{rows[0]['label']}: κ = {k0:.3g}, κ₁₀ = {b0:.3g}"]
    parts += [
        f"{r['label']}: κ = {r['kappa']:.3g} ({r['kappa'] / k0:.2g}× H's), "
        f"κ₁₀ = {r['kappa_bulk']:.3g} ({r['kappa_bulk'] / b0:.2g}× H's)"
        for r in rows[1:]
    ]
    return "; ".join(parts) + f". In {seconds:.1f} s."


def graph_work(spec, system, frames):
    """work(report) of the graph inspector: the propagation matrix of ``spec``'s settings,
    its strongest edges, the weight histogram, at the run's frames [(step, x)]."""
    from engine.teaching import propagation_matrix, strongest_edges

    def work(report):
        import time

        t = time.perf_counter()
        report(f"the propagation matrix A ({spec.reparam.propagation}) and its slow modes")
        system_ = _built(spec, system)
        a = propagation_matrix(spec, system_)
        pairs, weights = strongest_edges(a, 4 * system_.n_atoms)
        iu = np.triu_indices(a.shape[0], 1)
        counts, edges = np.histogram(a[iu], bins=HIST_BINS)
        return {
            "pairs": pairs,
            "weights": weights,
            "counts": counts,
            "edges": edges,
            "diag_mean": float(np.mean(np.diag(a))),
            "frames": frames or [(0, system_.x0)],
            "bonds": None if system_.bonds is None else np.asarray(system_.bonds, np.int64),
            "propagation": spec.reparam.propagation,
            "method": spec.reparam.kind,
            "seconds": time.perf_counter() - t,
        }

    return work


def graph_figure(p: dict, frame: int, m: int, show_edges: bool = True) -> go.Figure:
    """The structure at kept frame ``frame`` (its bonds grey) with the ``m`` strongest
    off-diagonal edges of A (red positive, blue negative; width by |weight|)."""
    step, x = p["frames"][max(0, min(frame, len(p["frames"]) - 1))]
    x = np.asarray(x, np.float64)
    fig = go.Figure()
    if p.get("bonds") is not None and len(p["bonds"]):
        fig.add_trace(_segments(x, p["bonds"], "#9e9e9e", 2, "chain bonds"))
    fig.add_trace(
        go.Scatter3d(
            x=x[:, 0],
            y=x[:, 1],
            z=x[:, 2],
            mode="markers",
            marker={"size": 2.5, "color": "#555555"},
            name="beads",
            hovertemplate="bead %{text}<extra></extra>",
            text=[str(i) for i in range(len(x))],
        )
    )
    m = min(m, len(p["weights"]))
    if show_edges and m:
        pairs, w = np.asarray(p["pairs"])[:m], np.asarray(p["weights"])[:m]
        tiers = np.array_split(np.arange(m), 3)  # strongest first: thick, medium, thin
        for sign, color in zip((1, -1), EDGE_COLORS, strict=True):
            for tier, width in zip(tiers, (5, 3, 1.5), strict=True):
                sel = tier[np.sign(w[tier]) == sign]
                if not len(sel):
                    continue
                lo, hi = np.abs(w[sel]).min(), np.abs(w[sel]).max()
                name = f"A_ij {'> 0' if sign > 0 else '< 0'}, |A_ij| {lo:.3g}–{hi:.3g}"
                fig.add_trace(_segments(x, pairs[sel], color, width, f"{name} ({len(sel)})"))
    shown = m if show_edges else 0
    fig.update_layout(
        template="plotly_white",
        height=420,
        margin={"l": 0, "r": 0, "t": 30, "b": 0},
        title={
            "text": f"step {step}: the {shown} strongest edges of A over the structure",
            "font": {"size": 12},
        },
        legend={"orientation": "h", "y": 0.0, "font": {"size": 10}},
        scene={
            "aspectmode": "data",
            "xaxis": {"visible": False},
            "yaxis": {"visible": False},
            "zaxis": {"visible": False},
        },
        uirevision="graph",
    )
    return fig


def _segments(x, pairs, color, width, name) -> go.Scatter3d:
    pairs = np.asarray(pairs, np.int64).reshape(-1, 2)
    pts = np.full((3 * len(pairs), 3), np.nan)
    pts[0::3], pts[1::3] = x[pairs[:, 0]], x[pairs[:, 1]]
    return go.Scatter3d(
        x=pts[:, 0],
        y=pts[:, 1],
        z=pts[:, 2],
        mode="lines",
        line={"color": color, "width": width},
        name=name,
        hoverinfo="skip",
        connectgaps=False,
    )


def weight_histogram(p: dict, m: int) -> go.Figure:
    """Counts of the off-diagonal weights A_ij (i < j), log count axis, the cut-off of the
    ``m`` strongest drawn as dashed lines at ±|w_m|."""
    edges = np.asarray(p["edges"], np.float64)
    centers = 0.5 * (edges[1:] + edges[:-1])
    fig = go.Figure(
        go.Bar(
            x=centers.tolist(),
            y=np.asarray(p["counts"]).tolist(),
            width=float(edges[1] - edges[0]),
            marker={"color": "#7f7f7f"},
            hovertemplate="A_ij ≈ %{x:.3g}: %{y} pairs<extra></extra>",
        )
    )
    m = min(m, len(p["weights"]))
    if m:
        cut = float(np.abs(np.asarray(p["weights"])[m - 1]))
        for s in (cut, -cut):
            fig.add_vline(x=s, line={"dash": "dash", "color": "#d62728", "width": 1})
        fig.add_annotation(
            text=f"drawn: |A_ij| ≥ {cut:.3g} ({m} edges)",
            x=0.98,
            y=0.98,
            xref="paper",
            yref="paper",
            showarrow=False,
            xanchor="right",
            font={"size": 10},
        )
    fig.update_layout(
        template="plotly_white",
        height=260,
        margin={"l": 50, "r": 10, "t": 30, "b": 40},
        title={"text": "off-diagonal weights A_ij (i < j)", "font": {"size": 12}},
        xaxis={"title": "A_ij"},
        yaxis={"type": "log", "title": "pairs"},
        bargap=0,
    )
    return fig


def landscape_work(spec, system_or_none, paths: dict, i: int, j: int, grid: int = 41):
    """work(report) of the landscape slice: the energy on the plane of non-rigid Hessian
    modes i and j (1-based, |λ| ascending) at x0 through x0, the runs' kept frames
    ``paths`` {label: [(step, x)]} projected onto it. The extent covers every path
    (at least 0.5 length units either way)."""
    from engine.teaching import full_modes, landscape_slice, path_in_plane

    def work(report):
        import time

        t = time.perf_counter()
        system = _built(spec, system_or_none)
        model = make_energy(system, spec.energy)
        report(f"every Hessian mode at x0 ({3 * system.n_atoms} × {3 * system.n_atoms})")
        m = full_modes(model, system.x0)
        free = np.flatnonzero(~m.rigid)
        u, v = m.vectors[:, free[i - 1]], m.vectors[:, free[j - 1]]
        projected = {}
        reach_u = reach_v = 0.5
        for label, frames in paths.items():
            steps = [s for s, _ in frames]
            a, b, frac = path_in_plane(np.stack([x for _, x in frames]), system.x0, u, v)
            projected[label] = {"steps": steps, "a": a, "b": b, "frac": frac}
            reach_u = max(reach_u, 1.15 * float(np.abs(a).max()))
            reach_v = max(reach_v, 1.15 * float(np.abs(b).max()))
        report(f"energy on a {grid} × {grid} grid of the plane")
        a, b, e = landscape_slice(model, system.x0, u, v, reach_u, reach_v, grid)
        return {
            "a": a,
            "b": b,
            "E": e,
            "paths": projected,
            "i": i,
            "j": j,
            "lam_i": float(m.values[free[i - 1]]),
            "lam_j": float(m.values[free[j - 1]]),
            "e0": float(model.energy_fn(jnp.asarray(system.x0))),
            "seconds": time.perf_counter() - t,
        }

    return work


PATH_COLORS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b")


def landscape_figure(p: dict) -> go.Figure:
    """Contours of E(x0 + a u_i + b u_j) minus E(x0), each run's path (a, b) over it."""
    e = np.asarray(p["E"], np.float64) - p["e0"]
    fig = go.Figure(
        go.Contour(
            x=np.asarray(p["a"]).tolist(),
            y=np.asarray(p["b"]).tolist(),
            z=e.tolist(),
            colorscale="Viridis",
            ncontours=30,
            colorbar={"title": {"text": "E − E(x0)", "side": "right"}},
            hovertemplate="a = %{x:.3g}, b = %{y:.3g}: E − E(x0) = %{z:.4g}<extra></extra>",
        )
    )
    for n, (label, path) in enumerate(p["paths"].items()):
        frac = np.asarray(path["frac"], np.float64)
        fig.add_trace(
            go.Scatter(
                x=np.asarray(path["a"]).tolist(),
                y=np.asarray(path["b"]).tolist(),
                mode="lines+markers",
                name=f"{label} (last frame: {100 * frac[-1]:.1f} % of |x − x0|² in the plane)",
                line={"color": PATH_COLORS[n % len(PATH_COLORS)], "width": 2},
                marker={"size": 4},
                customdata=np.stack([path["steps"], 100 * frac], axis=1).tolist(),
                hovertemplate="step %{customdata[0]}: a = %{x:.3g}, b = %{y:.3g}, "
                "%{customdata[1]:.1f} % of |x − x0|² in the plane<extra>" + label + "</extra>",
            )
        )
    fig.update_layout(
        template="plotly_white",
        height=460,
        margin={"l": 60, "r": 10, "t": 36, "b": 40},
        title={
            "text": f"energy on the plane of Hessian modes {p['i']} and {p['j']} at x0 "
            "(non-rigid modes by |λ| ascending)",
            "font": {"size": 12},
        },
        xaxis={"title": f"a: along mode {p['i']} (λ = {p['lam_i']:.3g})"},
        yaxis={"title": f"b: along mode {p['j']} (λ = {p['lam_j']:.3g})"},
        legend={"orientation": "h", "y": -0.2, "font": {"size": 10}},
    )
    return fig
