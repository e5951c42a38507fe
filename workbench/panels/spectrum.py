"""Panel 2, Spectrum and slow modes: the Hessian spectrum of the form's system, computed on the
registry's analysis thread; a click animates a mode (clientside) or picks k for CG and GNN.

The k picked here goes to ``ID.K_PICK``, which the method panel applies to its k fields.

A new Compute stops the session's previous spectrum task (its result would never be shown),
and a task waits at most ``jobs.SPECTRUM_TIMEOUT_S`` for its computation, so one slow spectrum
cannot hold the registry's one analysis thread for the ones after it (workbench/jobs.py).
"""

from __future__ import annotations

import math
import time

import numpy as np
from dash import (
    ALL,
    ClientsideFunction,
    Input,
    Output,
    Patch,
    State,
    callback,
    clientside_callback,
    ctx,
    dcc,
    html,
)
from dash import no_update as NU

from engine import SpecError

from .. import components as C
from .. import figures, forms, ids, jobs, polls
from .. import registry as reg
from ..registry import Busy
from . import PageContext, system


class ID:
    BTN = "wb-spec-run"
    TASK = "wb-spec-task"  # Store: {"id": task id, "k": k of the form, "n": n}
    POLL = "wb-spec-poll"  # its tick and reply stores (workbench/polls.py)
    STATUS = "wb-spec-status"
    GRAPH = "wb-spec-graph"
    CLICK = "wb-spec-click"  # radio: a click on the spectrum animates a mode or sets k
    AMP = "wb-spec-amp"
    MODE = "wb-spec-mode"  # Store: mode animation payload for the clientside animator
    MODE_INFO = "wb-spec-mode-info"
    ACK = "wb-spec-ack"
    VIEW_DOM = "wb-spec-view"
    HEATMAPS = "wb-heatmaps"
    K_PICK = "wb-k-pick"  # Store: {"k", "t"} chosen here, applied to the CG and GNN k fields


POLL = polls.chain(ID.POLL, 250)


# ---- layout --------------------------------------------------------------------------------
def layout(ctx: PageContext):
    del ctx  # nothing server-specific in this panel
    return C.section(
        "Spectrum and slow modes",
        [
            dcc.Store(id=ID.TASK, data=None),
            dcc.Store(id=ID.MODE, data=None),
            dcc.Store(id=ID.ACK),
            dcc.Store(id=ID.K_PICK, data=None),
            *POLL.stores(),
            html.Div(
                [
                    html.Button("Compute spectrum", id=ID.BTN, className="wb-btn"),
                    html.Div(id=ID.STATUS, className="wb-spec-status", role="status"),
                ],
                className="wb-run-row",
            ),
            dcc.Graph(
                id=ID.GRAPH,
                config={"displaylogo": False, "edits": {"shapePosition": True}},
                style={"display": "none"},
            ),
            html.Div(
                [
                    html.Span("click on the spectrum:", className="wb-label-inline"),
                    dcc.RadioItems(
                        id=ID.CLICK,
                        options=[
                            {"label": "animate that mode", "value": "animate"},
                            {"label": "set k (CG and GNN)", "value": "k"},
                        ],
                        value="animate",
                        inline=True,
                    ),
                ],
                className="wb-thresh",
            ),
            html.Div("Or drag the dashed green line to choose k.", className="wb-muted"),
            html.Div(
                [
                    html.Span("amplitude", className="wb-label-inline"),
                    dcc.Slider(
                        id=ID.AMP,
                        min=0,
                        max=3,
                        step=0.1,
                        value=1.0,
                        marks={0: "0", 1: "1", 2: "2", 3: "3"},
                        className="wb-slider",
                    ),
                ],
                className="wb-thresh",
            ),
            html.Div(id=ID.MODE_INFO, className="wb-muted"),
            html.Div(id=ID.VIEW_DOM, className="wb-viewer wb-viewer-small"),
            html.Div(
                "The mode animation oscillates the structure along the chosen eigenvector; "
                "its speed is arbitrary: it has no real timescale.",
                className="wb-note",
            ),
            html.Div(id=ID.HEATMAPS, className="wb-heatmaps"),
        ],
        number="2",
    )


# ---- pure helpers ----------------------------------------------------------------------------
def progress_bar(text: str, elapsed: float = 0.0) -> list:
    return [
        html.Div(html.Div(className="wb-progress-bar"), className="wb-progress"),
        html.Span(f"{text} · {elapsed:.1f} s", className="wb-muted"),
    ]


def task_progress(snap) -> list:
    """Progress line of an unfinished task: its phase and time, or its place in the queue."""
    if snap.status == "queued":
        place = f" (position {snap.queue_position})" if snap.queue_position else ""
        return progress_bar(f"queued{place}, waiting for the analysis thread")
    return progress_bar(snap.progress or snap.status, snap.elapsed)


def poll_task(task: dict | None, sid: str, what: str = "Task"):
    """(status line, payload or None, poll disabled?) of an analysis task ``task`` ({"id"})
    of session ``sid``: its progress while unfinished, why it ended when it did not finish,
    its payload when done. ``what`` names it in those lines (the spectrum, the teaching views
    of panel T)."""
    if not task:
        return NU, None, True
    snap = reg.get().snapshot(task["id"], sid)
    if snap is None:
        return f"{what} not found (server restarted?).", None, True
    if not snap.terminal:
        return task_progress(snap), None, False
    if snap.status != "done" or snap.payload is None:
        return f"{what} {snap.status}: {snap.message}", None, True
    return None, snap.payload, True


def mode_payload(p: dict, key: str, index: int | None = None) -> dict:
    """Payload of the clientside animator: the structure, and mode ``index``'s displacement
    (None: the structure at rest). ``p`` is the spectrum task's payload."""
    return {
        "div": ID.VIEW_DOM,
        "key": key,
        "view": p["view"],
        "base": jobs.flat(p["x"], p["scale"]),
        "disp": None if index is None else jobs.flat(jobs.mode_displacement(p, index)),
        "mode": index,
    }


def spectrum_result(p: dict, task: dict) -> tuple:
    """(figure, status text, heatmap graphs or None, animator payload) of a finished task."""
    k = task.get("k") or max(2, math.ceil(len(p["x"]) / 4))
    fig = figures.spectrum_figure(p["values"], p["rigid"], k, space=p["space"])
    n_rigid = int(np.sum(p["rigid"]))
    status = (
        f"{len(p['values'])} modes in {p['seconds']:.2f} s ({p['method']}); {n_rigid} rigid-body "
        f"mode(s) marked ×. Click a mode to animate it."
    )
    heat = [
        dcc.Graph(figure=figures.heatmap_figure(t, m), config={"displaylogo": False})
        for t, m in (p.get("heatmaps") or {}).items()
    ]
    return fig, status, heat or None, mode_payload(p, task["id"])


def clicked_mode(click: dict | None) -> int | None:
    """0-based mode index of a click on the spectrum (None: no point)."""
    if not click or not click.get("points"):
        return None
    point = click["points"][0]
    return int(point.get("customdata", point.get("x", 1) - 1))


def animate_mode(p: dict, index: int, key: str) -> tuple[dict, str]:
    """(animator payload, info line) for animating mode ``index``."""
    lam = float(p["values"][index])
    kind = "rigid-body mode (λ≈0)" if bool(p["rigid"][index]) else f"λ = {lam:.4g}"
    space = (
        "node-space mode: one ψ for x, y and z, drawn along the structure's long axis"
        if p["space"] == "node"
        else "Cartesian mode"
    )
    info = f"Animating mode {index + 1} ({kind}; {space}). No real timescale."
    return mode_payload(p, key, index), info


def pick_k(k: int) -> tuple[str, dict, Patch]:
    """(info line, K_PICK data, spectrum figure patch moving the dashed cut-off) for k."""
    patch = Patch()
    patch["layout"]["shapes"][0]["x0"] = k + 0.5
    patch["layout"]["shapes"][0]["x1"] = k + 0.5
    patch["layout"]["title"]["text"] = (
        f"k = {k} slow modes left of the dashed line (drag it, or click with 'set k')"
    )
    return f"k = {k} slow modes (set for CG and GNN).", {"k": k, "t": time.time()}, patch


# ---- callbacks -------------------------------------------------------------------------------
@callback(
    Output(ID.TASK, "data"),
    Output(POLL.reply, "data"),
    Output(ID.STATUS, "children"),
    Input(ID.BTN, "n_clicks"),
    State(ids.field(ALL), "value"),
    State(ids.field(ALL), "id"),
    State(system.ID.TABS, "value"),
    State(system.ID.PROTEIN_SOURCE, "value"),
    State(system.ID.UPLOAD_TOKEN, "data"),
    State(ids.SESSION, "data"),
    State(ID.TASK, "data"),
    prevent_initial_call=True,
)
def start_spectrum(n, values, field_ids, tab, source, token, sid, previous=None):
    """Compute the Hessian spectrum of the form's system on the analysis thread (stopping
    this page's previous spectrum task, whose result would no longer be shown)."""
    try:
        v = system.form_values(values, field_ids)
        spec = system.run_specs(v, ["gnn"], tab, source, token)[0]
    except SpecError as err:
        return NU, NU, f"Not computed: {err.field} {forms.message_of(err)}"
    r = reg.get()
    if previous and previous.get("id"):
        r.cancel(previous["id"], by=sid)  # a no-op once it has finished
    try:  # the registry stops this session's previous spectrum first
        task_id = r.submit_task(sid, "spectrum", jobs.spectrum_task(spec))
    except (Busy, PermissionError) as err:
        return NU, NU, f"Not computed: {err}"
    k = spec.reparam.n_modes
    return {"id": task_id, "k": k, "n": spec.system.n}, POLL.start(), progress_bar("queued")


@callback(
    Output(ID.GRAPH, "figure"),
    Output(ID.GRAPH, "style"),
    Output(ID.STATUS, "children", allow_duplicate=True),
    Output(POLL.reply, "data", allow_duplicate=True),
    Output(ID.MODE, "data"),
    Output(ID.HEATMAPS, "children"),
    Input(POLL.tick, "data"),
    State(ID.TASK, "data"),
    State(ids.SESSION, "data"),
    prevent_initial_call=True,
)
def poll_spectrum(n, task, sid):
    """Progress of the spectrum task; its figure, heatmaps and structure once done."""
    status, payload, done = poll_task(task, sid, "Spectrum")
    if payload is None:
        return NU, NU, status, POLL.answer(n, not done), NU, NU
    fig, status, heat, mode = spectrum_result(payload, task)
    return fig, {"display": "block"}, status, POLL.answer(n, False), mode, heat


@callback(
    Output(ID.MODE, "data", allow_duplicate=True),
    Output(ID.MODE_INFO, "children"),
    Output(ID.K_PICK, "data"),
    Output(ID.GRAPH, "figure", allow_duplicate=True),
    Input(ID.GRAPH, "clickData"),
    Input(ID.GRAPH, "relayoutData"),
    State(ID.CLICK, "value"),
    State(ID.TASK, "data"),
    State(ids.SESSION, "data"),
    prevent_initial_call=True,
)
def spectrum_click(click, relayout, click_mode, task, sid):
    """A click animates a mode or sets k; dragging the dashed line sets k."""
    snap = reg.get().snapshot(task["id"], sid) if task else None
    if snap is None or snap.payload is None:
        return NU, NU, NU, NU
    p = snap.payload
    if ctx.triggered and ctx.triggered[0]["prop_id"] == f"{ID.GRAPH}.relayoutData":
        k = figures.k_from_shape_drag(relayout, len(p["values"]))
        return (NU, *pick_k(k)) if k is not None else (NU,) * 4
    index = clicked_mode(click)
    if index is None:
        return (NU,) * 4
    if click_mode == "k":
        return NU, *pick_k(index + 1)
    return *animate_mode(p, index, task["id"]), NU, NU


clientside_callback(
    ClientsideFunction("wb", "animate"),
    Output(ID.ACK, "data"),
    Input(ID.MODE, "data"),
    Input(ID.AMP, "value"),
)
