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

Thread safety: one lock guards the caches; no engine call runs under it.
"""

from __future__ import annotations

import json
import threading
from collections import OrderedDict
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import plotly.graph_objects as go
from dash import html

from engine import RunSpec, make_energy
from engine.run import default_n_modes
from engine.teaching import (
    BAND_NAMES,
    FAST,
    MIDDLE,
    RIGID,
    SLOW,
    full_modes,
    loop_verdict,
    mode_bands,
    project,
)

MAX_ATOMS = 1000  # above: no projection (dense eigh of 3n x 3n: 6.6-9.5 s at n = 1000)
MAX_SYSTEMS = 3  # modes kept (72 MB each at n = 1000)
BAND_ORDER = (SLOW, MIDDLE, FAST, RIGID)  # stacking order, bottom to top
BAND_COLORS = {SLOW: "#2ca02c", MIDDLE: "#9ecae1", FAST: "#d62728", RIGID: "#bdbdbd"}
CHART_HEIGHT = 190


class _Modes:
    """Per-system eigenmodes (computed on one background thread) and per-run projections."""

    def __init__(self):
        self._lock = threading.Lock()
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="teach-modes")
        self._systems: OrderedDict = OrderedDict()  # key -> Future[(FullModes, bands)]
        self._runs: dict[tuple, dict] = {}  # (reader, run id) -> {"shares": {step: [4]}, ...}

    def request(self, key: str, system, spec: RunSpec):
        """The future of the modes of ``system`` (started now when unknown)."""
        with self._lock:
            fut = self._systems.get(key)
            if fut is None:
                fut = self._pool.submit(_compute, system, spec)
                self._systems[key] = fut
                while len(self._systems) > MAX_SYSTEMS:
                    self._systems.popitem(last=False)
            return fut

    def run_state(self, run_id: str, reader: str) -> dict:
        """What ``reader``'s chart of ``run_id`` has drawn (flags) and its projections."""
        with self._lock:
            return self._runs.setdefault((reader, run_id), {"shares": {}})


def _compute(system, spec: RunSpec):
    model = make_energy(system, spec.energy)
    modes = full_modes(model, system.x0)
    k = default_n_modes(spec, system.n_atoms)
    n_slow = 3 * k if spec.modes.method == "block-laplacian" else k
    n_slow = min(n_slow, int((~modes.rigid).sum()) // 2)
    return modes, mode_bands(modes.rigid, n_slow)


CACHE = _Modes()


def system_key(spec: dict) -> str:
    """The key of a run's system and energy (the runs of one group share it)."""
    return json.dumps([spec.get("system"), spec.get("energy"), spec.get("seed")], sort_keys=True)


# ---- figures (pure) --------------------------------------------------------------------------
def projection_figure(steps, shares, n_slow: int | None = None, note: str = "") -> go.Figure:
    """Stacked area of each band's share of |x - x0|^2 against step; ``shares`` [T, 4]
    (columns by band: RIGID, SLOW, MIDDLE, FAST), or an empty chart with ``note``."""
    fig = go.Figure()
    shares = np.asarray(shares, np.float64).reshape(-1, 4)
    total = shares.sum(axis=1)
    frac = np.divide(shares, total[:, None], out=np.zeros_like(shares), where=total[:, None] > 0)
    norm = np.sqrt(total)
    for b in BAND_ORDER:
        name = BAND_NAMES[b] + (f" ({n_slow})" if b == SLOW and n_slow else "")
        fig.add_trace(
            go.Scatter(
                x=list(map(int, steps)),
                y=(100 * frac[:, b]).tolist(),
                name=name,
                stackgroup="bands",
                mode="lines",
                line={"width": 0.5, "color": BAND_COLORS[b]},
                customdata=norm.tolist(),
                hovertemplate="%{y:.1f} % of |x−x0|² (|x−x0| = %{customdata:.3g})<extra>"
                + BAND_NAMES[b]
                + "</extra>",
            )
        )
    fig.update_layout(
        template="plotly_white",
        height=CHART_HEIGHT,
        margin={"l": 40, "r": 8, "t": 26, "b": 30},
        title={"text": "where x − x0 lies: Hessian modes at x0", "font": {"size": 12}},
        legend={"orientation": "h", "y": -0.3, "font": {"size": 10}},
        xaxis={"title": None},
        yaxis={"range": [0, 100], "ticksuffix": " %"},
        uirevision="projection",
    )
    if note:
        fig.add_annotation(text=note, showarrow=False, x=0.5, y=0.5, xref="paper", yref="paper")
    return fig


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
def card_projection(r, run_id: str, sid: str, spec_dict: dict | None):
    """(figure or None when nothing new, note) of one run's projection chart: reads the
    run's kept frames from the registry, projects those not seen yet."""
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
    if not fut.done():
        if state.get("waiting"):
            return None
        state["waiting"] = True
        return projection_figure([], [], note="computing the Hessian's modes at x0…")
    if fut.exception() is not None:
        state["failed"] = state.get("failed") or str(fut.exception())
        return projection_figure([], [], note="modes failed: " + state["failed"][:60])
    modes, bands = fut.result()
    frames = r.frames(run_id, sid) or []
    new = [(s, x) for s, x in frames if s not in state["shares"]]
    if not new and state.get("drawn") == len(frames):
        return None
    if new:
        got = project(np.stack([x - state["x0"] for _, x in new]), modes.vectors, bands)
        state["shares"].update({s: v for (s, _), v in zip(new, got, strict=True)})
    steps = [s for s, _ in frames]
    state["drawn"] = len(frames)
    n_slow = int((bands == SLOW).sum())
    return projection_figure(steps, [state["shares"][s] for s in steps], n_slow)


def card_views(r, live: dict | None, sid: str, card_ids: list[str]) -> tuple[list, list]:
    """(projection figures, verdict badges) of the cards ``card_ids``; NU-like None entries
    mean unchanged (the callback maps them to no_update)."""
    runs = {run["id"]: run for run in (live or {}).get("runs", [])}
    figs, badges = [], []
    loop = not (live or {}).get("rmsd")
    for rid in card_ids:
        snap = r.snapshot(rid, sid, 1 << 62, 1 << 62) if rid in runs else None
        figs.append(card_projection(r, rid, sid, snap.spec if snap else None))
        if snap is None or not loop:
            badges.append(None)
            continue
        contacts = r.curve_final(rid, sid, "loop_contact_frac")
        intact = r.curve_final(rid, sid, "bonds_intact_frac")
        badges.append(verdict_badge(contacts, intact))
    return figs, badges
