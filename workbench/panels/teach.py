"""Panel T, Teaching views: conditioning, the GNN's propagation graph, the energy landscape.

- Conditioning: the spectrum of the Hessian in positions at x0 against the Gauss-Newton
  spectra J^T H J of the form's CG map and of its GNN at step 0 and at its stage switch,
  on one log axis with condition numbers (engine.teaching.conditioning_report), in two
  tasks: H, CG and the GNN at step 0 are drawn as soon as they are there, then the GNN's
  replay to its switch runs and its row is added.
- Propagation graph: the matrix A the GNN propagates on (Psi Psi^T, Psi Lambda Psi^T or the
  bond graph, as a chosen run's settings say), its strongest edges drawn over that run's
  structure at any kept frame (live or replayed: a run opened for replay becomes the graph's
  run, and the replay slider moves the graph's frame), and the histogram of its weights.
  Ticked, the same edges are drawn as red lines over the run's own 3Dmol views (its live
  card, and the replay viewer when it shows that run; assets/workbench.js ``wb.edges``).
- Landscape slice: the energy on the plane of two chosen Hessian modes at x0, with the
  chosen runs' kept frames projected onto it.

Every computation is a registry task on the analysis thread (teach_views.background: the
engine work on its own thread, the wait bounded); a poll shows its phase and elapsed time.
"""

from __future__ import annotations

import numpy as np
from dash import (
    ALL,
    ClientsideFunction,
    Input,
    Output,
    State,
    callback,
    clientside_callback,
    ctx,
    dcc,
    html,
)
from dash import no_update as NU

from engine import RunSpec, SpecError

from .. import components as C
from .. import forms, ids, polls, teach_views
from .. import registry as reg
from . import PageContext, live, runs, system
from .spectrum import poll_task


class ID:
    TABS = "wb-teach-tabs"
    REFRESH = "wb-teach-refresh"
    COND_BTN = "wb-cond-run"
    COND_TASK = "wb-cond-task"  # Store: {"id": task id}
    COND_POLL = "wb-cond-poll"  # tick and reply stores of its poll (workbench/polls.py)
    COND_STATUS = "wb-cond-status"
    COND_GRAPH = "wb-cond-graph"
    GRAPH_RUN = "wb-tgraph-run"
    GRAPH_BTN = "wb-tgraph-btn"
    GRAPH_TASK = "wb-tgraph-task"
    GRAPH_POLL = "wb-tgraph-poll"
    GRAPH_STATUS = "wb-tgraph-status"
    GRAPH_FRAME = "wb-tgraph-frame"
    GRAPH_EDGES = "wb-tgraph-edges"  # checklist: ["on"] shows the edges
    GRAPH_CARDS = "wb-tgraph-cards"  # checklist: ["on"] draws them over the run's 3D views too
    GRAPH_OVERLAY = "wb-tgraph-overlay"  # Store: the clientside overlay (assets/workbench.js)
    GRAPH_OVERLAY_ACK = "wb-tgraph-overlay-ack"
    GRAPH_M = "wb-tgraph-m"
    GRAPH_3D = "wb-tgraph-3d"
    GRAPH_HIST = "wb-tgraph-hist"
    LAND_RUNS = "wb-land-runs"
    LAND_I = "wb-land-i"
    LAND_J = "wb-land-j"
    LAND_BTN = "wb-land-btn"
    LAND_TASK = "wb-land-task"
    LAND_POLL = "wb-land-poll"
    LAND_STATUS = "wb-land-status"
    LAND_GRAPH = "wb-land-graph"


M_MAX = 5000  # most edges drawn
COND_POLL, GRAPH_POLL, LAND_POLL = (
    polls.chain(name, 400) for name in (ID.COND_POLL, ID.GRAPH_POLL, ID.LAND_POLL)
)


def _hidden_graph(gid: str) -> dcc.Graph:
    return dcc.Graph(id=gid, config={"displaylogo": False}, style={"display": "none"})


def _task_row(btn: str, label: str, status: str) -> html.Div:
    return html.Div(
        [
            html.Button(label, id=btn, className="wb-btn"),
            html.Div(id=status, className="wb-spec-status", role="status"),
        ],
        className="wb-run-row",
    )


def layout(ctx: PageContext):
    del ctx
    tasks = (ID.COND_TASK, ID.GRAPH_TASK, ID.LAND_TASK, ID.GRAPH_OVERLAY, ID.GRAPH_OVERLAY_ACK)
    stores = [dcc.Store(id=s, data=None) for s in tasks]
    stores += [*COND_POLL.stores(), *GRAPH_POLL.stores(), *LAND_POLL.stores()]
    conditioning = [
        html.P(
            "How a reparametrization x = f(p) changes the curvature a step sees: the Hessian "
            "H in positions at x0 against J^T H J (J = ∂x/∂p) for the form's CG map and "
            "its GNN, at step 0 and at the GNN's stage switch. κ = max|λ| / min|λ| bounds "
            "how many steps descent needs; rigid-body motions and directions that do not "
            "move x are excluded.",
            className="wb-muted",
        ),
        _task_row(ID.COND_BTN, "Compute conditioning (the form's system)", ID.COND_STATUS),
        _hidden_graph(ID.COND_GRAPH),
    ]
    run_pick = html.Div(
        [
            html.Button("Refresh run list", id=ID.REFRESH, className="wb-btn"),
            html.Span("live, stored and replayed runs of this session", className="wb-muted"),
        ],
        className="wb-run-row",
    )
    graph = [
        html.P(
            "The graph the GNN propagates on, with the chosen run's settings: A = ΨΨᵀ "
            "(psi), ΨΛΨᵀ (psi-lambda) or the bonds + 0.2 I (bonds). Its strongest "
            "off-diagonal entries are drawn as edges over the run's structure, at any of "
            "its kept frames (those kept when Draw was pressed).",
            className="wb-muted",
        ),
        dcc.Dropdown(id=ID.GRAPH_RUN, options=[], placeholder="choose a run…"),
        _task_row(ID.GRAPH_BTN, "Draw the propagation graph", ID.GRAPH_STATUS),
        html.Div(
            [
                dcc.Checklist(
                    id=ID.GRAPH_EDGES,
                    options=[{"label": "show edges", "value": "on"}],
                    value=["on"],
                    inline=True,
                ),
                dcc.Checklist(
                    id=ID.GRAPH_CARDS,
                    options=[
                        {"label": "also over the run's 3D views (card, replay)", "value": "on"}
                    ],
                    value=[],
                    inline=True,
                ),
                html.Span("strongest edges drawn", className="wb-label-inline"),
                dcc.Input(
                    id=ID.GRAPH_M,
                    type="number",
                    value=200,
                    min=1,
                    max=M_MAX,
                    step=1,
                    debounce=True,
                    className="wb-input wb-input-small",
                ),
                html.Span("kept frame", className="wb-label-inline"),
                html.Div(
                    dcc.Slider(id=ID.GRAPH_FRAME, min=0, max=0, step=1, value=0, marks=None),
                    className="wb-slider",
                    style={"flex": "1"},
                ),
            ],
            className="wb-thresh",
        ),
        html.Div(
            [_hidden_graph(ID.GRAPH_3D), _hidden_graph(ID.GRAPH_HIST)],
            className="wb-teach-graph",
        ),
    ]
    landscape = [
        html.P(
            "The energy on the plane through x0 spanned by two Hessian modes at x0 (non-rigid "
            "modes numbered by |λ| ascending: 1 is the softest), and each chosen run's kept "
            "frames projected onto that plane. A path's energy is not the slice's: the "
            "legend says how much of |x − x0|² the plane holds.",
            className="wb-muted",
        ),
        dcc.Dropdown(id=ID.LAND_RUNS, options=[], multi=True, placeholder="choose runs…"),
        html.Div(
            [
                html.Span("mode i", className="wb-label-inline"),
                dcc.Input(
                    id=ID.LAND_I,
                    type="number",
                    value=1,
                    min=1,
                    step=1,
                    className="wb-input wb-input-small",
                ),
                html.Span("mode j", className="wb-label-inline"),
                dcc.Input(
                    id=ID.LAND_J,
                    type="number",
                    value=2,
                    min=1,
                    step=1,
                    className="wb-input wb-input-small",
                ),
            ],
            className="wb-thresh",
        ),
        _task_row(ID.LAND_BTN, "Compute the landscape slice", ID.LAND_STATUS),
        _hidden_graph(ID.LAND_GRAPH),
    ]
    return C.section(
        "Teaching views: conditioning, propagation graph, landscape",
        [
            *stores,
            run_pick,
            dcc.Tabs(
                id=ID.TABS,
                value="conditioning",
                children=[
                    dcc.Tab(label="Conditioning", value="conditioning", children=conditioning),
                    dcc.Tab(label="Propagation graph", value="graph", children=graph),
                    dcc.Tab(label="Landscape slice", value="landscape", children=landscape),
                ],
            ),
        ],
        number="T",
    )


# ---- pure helpers ----------------------------------------------------------------------------
def run_options(snaps) -> list[dict]:
    """Dropdown options of the session's runs (tasks left out)."""
    return [
        {"label": f"{s.label} · run {s.run_id[:6]}", "value": s.run_id}
        for s in snaps
        if s.kind == "run" and s.spec
    ]


def run_inputs(r, run_id: str, sid: str):
    """(spec, system or None, kept frames [(step, x)]) of a readable run, or None."""
    data = r.export_data(run_id, sid)
    if not data or not data.get("spec"):
        return None
    spec = RunSpec.from_dict(data["spec"])
    frames = [(int(s), x) for s, x in (data.get("frames") or [])]
    return spec, data.get("system"), frames


def check_modes(i, j, n_atoms: int) -> tuple[int, int]:
    """Validated 1-based mode numbers (raises SpecError naming the field)."""
    top = 3 * n_atoms - 6
    out = []
    for name, v in (("mode i", i), ("mode j", j)):
        if v is None or int(v) != v or not 1 <= int(v) <= top:
            raise SpecError(name, f"must be a whole number in [1, {top}], got {v}")
        out.append(int(v))
    if out[0] == out[1]:
        raise SpecError("mode j", "must differ from mode i")
    return out[0], out[1]


def _submit(sid, label, key, work, previous, join_active=False):
    r = reg.get()
    if previous and previous.get("id"):
        r.cancel(previous["id"], by=sid)
    task = teach_views.background(key, work)
    return {"id": r.submit_task(sid, label, task, join_active=join_active)}


# ---- callbacks -------------------------------------------------------------------------------
@callback(
    Output(ID.GRAPH_RUN, "options"),
    Output(ID.LAND_RUNS, "options"),
    Output(ID.GRAPH_RUN, "value"),
    Input(ID.REFRESH, "n_clicks"),
    Input(live.ID.LIVE, "data"),
    Input(runs.ID.REPLAY, "data"),
    State(ids.SESSION, "data"),
    State(ID.GRAPH_RUN, "value"),
)
def refresh_runs(n, live_data, replay, sid, current):
    """The run pickers' options; a run opened for replay becomes the graph's run."""
    if not sid:
        return NU, NU, NU
    opts = run_options(reg.get().list_runs(sid))
    value = current
    if ctx.triggered_id == runs.ID.REPLAY and replay and replay.get("id"):
        value = replay["id"]
    return opts, opts, value


@callback(
    Output(ID.COND_TASK, "data"),
    Output(COND_POLL.reply, "data"),
    Output(ID.COND_STATUS, "children"),
    Input(ID.COND_BTN, "n_clicks"),
    State(ids.field(ALL), "value"),
    State(ids.field(ALL), "id"),
    State(system.ID.TABS, "value"),
    State(system.ID.PROTEIN_SOURCE, "value"),
    State(system.ID.UPLOAD_TOKEN, "data"),
    State(ids.SESSION, "data"),
    State(ID.COND_TASK, "data"),
    prevent_initial_call=True,
)
def start_conditioning(n, values, field_ids, tab, source, token, sid, previous):
    """Conditioning of the form's system: H, CG's and the GNN's J^T H J."""
    try:
        v = system.form_values(values, field_ids)
        specs = system.run_specs(v, ["cg", "gnn"], tab, source, token)
    except SpecError as err:
        return NU, NU, f"Not computed: {err.field} {forms.message_of(err)}"
    n_atoms = specs[0].system.n
    if n_atoms > teach_views.TEACH_MAX_ATOMS:
        return NU, NU, f"Not computed: n must be at most {teach_views.TEACH_MAX_ATOMS} here."
    key = teach_views.spec_key("conditioning", *[s.to_dict() for s in specs])
    work = teach_views.conditioning_work(specs)
    task = _submit(sid, "conditioning", key, work, previous)
    return task, COND_POLL.start(), "queued: waiting for the analysis thread"


@callback(
    Output(ID.COND_GRAPH, "figure"),
    Output(ID.COND_GRAPH, "style"),
    Output(ID.COND_STATUS, "children", allow_duplicate=True),
    Output(COND_POLL.reply, "data", allow_duplicate=True),
    Output(ID.COND_TASK, "data", allow_duplicate=True),
    Input(COND_POLL.tick, "data"),
    State(ID.COND_TASK, "data"),
    State(ids.SESSION, "data"),
    prevent_initial_call=True,
)
def poll_conditioning(n, task, sid):
    """Draw the first part (H, CG, the GNN at step 0) as soon as it is there, then start the
    GNN's replay to its switch and add that row when it comes; the poll runs until then."""
    status, payload, done = poll_task(task, sid)
    if payload is None:
        if task and task.get("shown") and status is not NU:  # the switch part under way
            status = [html.Div(task["shown"]), html.Div(["The GNN at its switch: ", status])]
        return NU, NU, status, COND_POLL.answer(n, not done), NU
    rows = payload["rows"]
    fig = teach_views.conditioning_figure(rows)
    text = teach_views.conditioning_text(rows, payload["seconds"])
    if not teach_views.switch_pending(payload):
        note = text + teach_views.switch_note(payload)
        return fig, {"display": "block"}, note, COND_POLL.answer(n, False), NU
    specs = [RunSpec.from_dict(d) for d in payload["specs"]]
    key = teach_views.spec_key("conditioning-switch", *payload["specs"])
    work = teach_views.conditioning_work(specs, parts=("switch",), before=payload)
    # join_active: a poll overlaps another when the page re-sends a lost tick; the second
    # must not stop the switch task that the first one's response hands to the page
    nxt = _submit(sid, "conditioning", key, work, None, join_active=True)
    status = f"{text} Now the GNN at its switch: queued."
    return fig, {"display": "block"}, status, COND_POLL.answer(n, True), {**nxt, "shown": text}


@callback(
    Output(ID.GRAPH_TASK, "data"),
    Output(GRAPH_POLL.reply, "data"),
    Output(ID.GRAPH_STATUS, "children"),
    Input(ID.GRAPH_BTN, "n_clicks"),
    State(ID.GRAPH_RUN, "value"),
    State(ids.SESSION, "data"),
    State(ID.GRAPH_TASK, "data"),
    prevent_initial_call=True,
)
def start_graph(n, run_id, sid, previous):
    if not run_id:
        return NU, NU, "Not drawn: choose a run first."
    got = run_inputs(reg.get(), run_id, sid)
    if got is None:
        return NU, NU, "Not drawn: that run cannot be read (removed, or not yours)."
    spec, sys_, frames = got
    if spec.system.n > teach_views.TEACH_MAX_ATOMS:
        return NU, NU, f"Not drawn: n must be at most {teach_views.TEACH_MAX_ATOMS} here."
    key = ("graph", run_id, len(frames))
    task = _submit(sid, "graph", key, teach_views.graph_work(spec, sys_, frames), previous)
    return {**task, "run": run_id}, GRAPH_POLL.start(), "queued: waiting for the analysis thread"


@callback(
    Output(ID.GRAPH_3D, "figure"),
    Output(ID.GRAPH_3D, "style"),
    Output(ID.GRAPH_HIST, "figure"),
    Output(ID.GRAPH_HIST, "style"),
    Output(ID.GRAPH_STATUS, "children", allow_duplicate=True),
    Output(GRAPH_POLL.reply, "data", allow_duplicate=True),
    Output(ID.GRAPH_FRAME, "max"),
    Output(ID.GRAPH_FRAME, "value"),
    Output(ID.GRAPH_OVERLAY, "data"),
    Input(GRAPH_POLL.tick, "data"),
    Input(ID.GRAPH_FRAME, "value"),
    Input(ID.GRAPH_EDGES, "value"),
    Input(ID.GRAPH_M, "value"),
    Input(runs.ID.SLIDER, "value"),
    Input(ID.GRAPH_CARDS, "value"),
    State(ID.GRAPH_TASK, "data"),
    State(ids.SESSION, "data"),
    State(runs.ID.REPLAY, "data"),
    prevent_initial_call=True,
)
def show_graph(n, frame, edges, m, replay_index, cards, task, sid, replay=None):
    """The graph at the chosen frame: a new result starts at the last kept frame, and the
    replay slider moves it when the replayed run is the graph's run. With "also over the
    run's 3D views", the same edges go to the run's live card and replay viewers.

    Every reply answers the poll's tick, whatever triggered it: Dash drops a poll in flight
    when another input fires this callback, and its chain must go on from this reply."""
    status, p, done = poll_task(task, sid)
    reply = GRAPH_POLL.answer(n, not done)
    if ctx.triggered_id == runs.ID.SLIDER and not follows_replay(task, replay):
        return (NU,) * 5 + (reply,) + (NU,) * 3
    if p is None:
        return NU, NU, NU, NU, status, reply, NU, NU, NU
    m = graph_m(m)
    last = len(p["frames"]) - 1
    if ctx.triggered_id == GRAPH_POLL.tick:
        frame = last
    elif ctx.triggered_id == runs.ID.SLIDER and replay_index is not None:
        frame = replay_index
    frame = last if frame is None else min(int(frame), last)
    fig = teach_views.graph_figure(p, frame, m, "on" in (edges or []))
    hist = teach_views.weight_histogram(p, m)
    label = "GNN" if p["method"] == "gnn" else f"{p['method']} run, the GNN's settings"
    text = (
        f"A ({p['propagation']}; {label}) in {p['seconds']:.2f} s; mean diagonal A_ii = "
        f"{p['diag_mean']:.3g}; frame {frame + 1} of {last + 1}."
    )
    show = {"display": "block"}
    on = "on" in (edges or []) and "on" in (cards or [])
    overlay = card_overlay(task.get("run"), p, m) if on else {"targets": [], "pairs": []}
    if on:
        text += f" The {m} strongest edges are drawn over the run's 3D views too (red lines)."
    return fig, show, hist, show, text, reply, last, frame, overlay


def card_overlay(run_id: str | None, p: dict, m: int) -> dict:
    """The clientside overlay of the ``m`` strongest edges of a graph payload ``p`` on the
    run's live card and on the replay viewer when it shows that run."""
    if not run_id:
        return {"targets": [], "pairs": []}
    pairs = [int(i) for i in np.asarray(p["pairs"])[:m].ravel()]
    targets = [
        {"div": live.ID.viewer_dom(run_id), "key": run_id},
        {"div": runs.ID.VIEW_DOM, "key": f"replay-{run_id}"},
    ]
    return {"targets": targets, "pairs": pairs}


clientside_callback(
    ClientsideFunction("wb", "edges"),
    Output(ID.GRAPH_OVERLAY_ACK, "data"),
    Input(ID.GRAPH_OVERLAY, "data"),
    prevent_initial_call=True,
)


def follows_replay(task: dict | None, replay: dict | None) -> bool:
    """The graph shows the run opened for replay (so the replay slider moves its frame)."""
    return bool(task and replay and task.get("run") and task.get("run") == replay.get("id"))


def graph_m(m) -> int:
    """The edge count from its field (invalid: 200, clipped to [1, M_MAX])."""
    try:
        return max(1, min(M_MAX, int(m)))
    except (TypeError, ValueError):
        return 200


@callback(
    Output(ID.LAND_TASK, "data"),
    Output(LAND_POLL.reply, "data"),
    Output(ID.LAND_STATUS, "children"),
    Input(ID.LAND_BTN, "n_clicks"),
    State(ID.LAND_RUNS, "value"),
    State(ID.LAND_I, "value"),
    State(ID.LAND_J, "value"),
    State(ids.SESSION, "data"),
    State(ID.LAND_TASK, "data"),
    prevent_initial_call=True,
)
def start_landscape(n, run_ids, i, j, sid, previous):
    if not run_ids:
        return NU, NU, "Not computed: choose at least one run."
    r = reg.get()
    paths, ref, skipped = {}, None, []
    for rid in run_ids:
        got = run_inputs(r, rid, sid)
        if got is None:
            skipped.append(rid[:6])
            continue
        spec, sys_, frames = got
        key = teach_views.system_key(spec.to_dict())
        if ref is None:
            ref = (key, spec, sys_)
        if key != ref[0] or not frames:
            skipped.append(rid[:6])
            continue
        snap = r.snapshot(rid, sid, 1 << 62, 1 << 62)
        paths[f"{snap.label if snap else rid[:6]} · {rid[:6]}"] = frames
    if ref is None:
        return NU, NU, "Not computed: none of those runs can be read."
    spec = ref[1]
    if spec.system.n > teach_views.TEACH_MAX_ATOMS:
        return NU, NU, f"Not computed: n must be at most {teach_views.TEACH_MAX_ATOMS} here."
    try:
        i, j = check_modes(i, j, spec.system.n)
    except SpecError as err:
        return NU, NU, f"Not computed: {err.field} {forms.message_of(err)}"
    key = ("landscape", tuple(run_ids), tuple(len(f) for f in paths.values()), i, j)
    work = teach_views.landscape_work(spec, ref[2], paths, i, j)
    task = _submit(sid, "landscape", key, work, previous)
    note = f" (skipped, another system or no frames: {', '.join(skipped)})" if skipped else ""
    return task, LAND_POLL.start(), "queued: waiting for the analysis thread" + note


@callback(
    Output(ID.LAND_GRAPH, "figure"),
    Output(ID.LAND_GRAPH, "style"),
    Output(ID.LAND_STATUS, "children", allow_duplicate=True),
    Output(LAND_POLL.reply, "data", allow_duplicate=True),
    Input(LAND_POLL.tick, "data"),
    State(ID.LAND_TASK, "data"),
    State(ids.SESSION, "data"),
    prevent_initial_call=True,
)
def poll_landscape(n, task, sid):
    status, p, done = poll_task(task, sid)
    if p is None:
        return NU, NU, status, LAND_POLL.answer(n, not done)
    text = (
        f"Slice of {len(p['a'])} × {len(p['b'])} energies and {len(p['paths'])} path(s) in "
        f"{p['seconds']:.1f} s; E(x0) = {p['e0']:.5g}."
    )
    return teach_views.landscape_figure(p), {"display": "block"}, text, LAND_POLL.answer(n, False)
