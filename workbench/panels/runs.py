"""Panel 6, Runs: this session's runs and the CLI bundles, opening one (from the list, by id
or from a ``?run=<id>`` share link) for replay: its curves, a frame slider, its exports.

Runs are named by system, method and start time ("lj-loop n=400 · GNN · 14:02:31", see
``run_name``) and their export files likewise ("lj-loop-n400_gnn_20261130-140231_final.pdb",
``export_stem``). The list scrolls inside the panel (assets/workbench.css, "runs panel").

Also the one download callback of the page (``export_run``): every export button, on a live
card or in the replay, has the pattern id ``ids.export_btn(run_id, fmt)``.
"""

from __future__ import annotations

import hashlib
import time
from urllib.parse import parse_qs

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

from engine import RunSpec, SpecError
from engine.methods import METHODS

from .. import components as C
from .. import figures, forms, ids, jobs, polls
from .. import registry as reg
from . import PageContext, live, triggered_value


class ID:
    TABLE = "wb-runs-table"
    DIGEST = "wb-runs-digest"  # Store: {"key", "shape", "t"} of the last rendered runs list
    POLL = "wb-runs-poll"  # tick and reply stores of the list's refresh (workbench/polls.py)
    OPEN_ID = "wb-open-id"
    OPEN_BTN = "wb-open-btn"
    OPEN_MSG = "wb-open-msg"
    REPLAY = "wb-replay"  # Store: {"id": run id, "t"} of the run opened for replay
    TITLE = "wb-replay-title"
    SLIDER = "wb-replay-slider"
    CURVES = "wb-replay-curves"
    FRAME = "wb-replay-frame"  # Store: frame payload of the clientside viewer
    ACK = "wb-replay-ack"
    EXPORTS = "wb-replay-exports"
    VIEW_DOM = "wb-replay-view"
    BOX = "wb-replay-box"
    NAME = "wb-replay-name"  # the opened run's name, or "no frames stored for this run"
    STAGE = "wb-replay-stage"  # the viewer and its frame slider (hidden when no frames)

    @staticmethod
    def open_btn(run_id: str) -> dict:
        """The Open button of a run in the list."""
        return {"type": "run-open", "index": run_id}


BUNDLE_SCAN_S = 10.0  # CLI bundles written while the server runs appear within this
_last_bundle_scan = [0.0]
NO_COLOR = "#333"  # a run whose spec does not parse


POLL = polls.chain(ID.POLL, 2000)


# ---- layout --------------------------------------------------------------------------------
def layout(ctx: PageContext):
    del ctx  # nothing server-specific in this panel
    runs_list = html.Div(
        [
            html.Div(id=ID.TABLE, className="wb-runs-scroll"),
            html.Div(
                [
                    dcc.Input(
                        id=ID.OPEN_ID,
                        type="text",
                        placeholder="run id from a shared link",
                        className="wb-input",
                    ),
                    html.Button("Open", id=ID.OPEN_BTN, className="wb-btn"),
                ],
                className="wb-run-row",
            ),
            html.Div(id=ID.OPEN_MSG, className="wb-msg"),
        ],
        className="wb-runs-list",
    )
    replay = html.Div(
        [
            html.H3(id=ID.TITLE),
            html.Div(id=ID.NAME, className="wb-muted"),
            html.Div(
                [
                    html.Div(id=ID.VIEW_DOM, className="wb-viewer wb-viewer-small"),
                    dcc.Slider(
                        id=ID.SLIDER,
                        min=0,
                        max=1,
                        step=1,
                        value=0,
                        marks=None,
                        tooltip={"placement": "bottom"},
                        className="wb-slider",
                    ),
                ],
                id=ID.STAGE,
            ),
            dcc.Graph(id=ID.CURVES, config={"displaylogo": False}),
            html.Div(id=ID.EXPORTS, className="wb-card-buttons"),
        ],
        id=ID.BOX,
        className="wb-replay",
        style={"display": "none"},
    )
    return C.section(
        "Runs",
        [
            dcc.Store(id=ID.DIGEST, data=None),
            dcc.Store(id=ID.REPLAY, data=None),
            dcc.Store(id=ID.FRAME, data=None),
            dcc.Store(id=ID.ACK),
            *POLL.stores(),
            html.Div([runs_list, replay], className="wb-runs-body"),
        ],
        number="6",
    )


def runs_table(snaps: list) -> html.Div:
    """The runs list: name (system · method · start time), status, last step and energy, Open.

    It scrolls inside its panel (a bounded height, see assets/workbench.css) however many
    runs there are; a long name is cut with an ellipsis and shown whole on hover.
    """
    if not snaps:
        return html.Div(
            "No runs yet in this session. Press Run, or pass --bundle-dir to list CLI bundles.",
            className="wb-muted",
        )
    head = html.Tr([html.Th(h) for h in ("run", "status", "step", "energy", "")])
    body = []
    for s in snaps:
        origin = {"cli": " (CLI)", "stored": " (saved)"}.get(s.source, "")
        name = run_name(s.spec, s.label, s.created) + origin
        energy = s.last.get("energy")
        body.append(
            html.Tr(
                [
                    html.Td(name, title=name, className="wb-runs-name"),
                    status_cell(s),
                    html.Td(f"{s.last.get('step', '')}"),
                    html.Td("" if energy is None else f"{energy:.5g}"),
                    html.Td(
                        html.Button(
                            "Open", id=ID.open_btn(s.run_id), className="wb-btn wb-btn-small"
                        )
                    ),
                ]
            )
        )
    return html.Table([html.Thead(head), html.Tbody(body)], className="wb-table wb-runs")


def status_cell(s) -> html.Td:
    """A run's status; a damaged run (or one whose meta.json was rebuilt) says why under it."""
    message = getattr(s, "message", "") or ""  # a RunSnapshot (or a test's stand-in)
    why = message if s.status == "damaged" or "meta rebuilt" in message else ""
    children = [s.status, html.Div(why, className="wb-muted")] if why else s.status
    return html.Td(children, title=why or None, className=f"wb-st-{s.status}")


# ---- pure helpers ----------------------------------------------------------------------------
def system_name(spec: dict | None) -> str:
    """Short name of a stored spec's system ("protein 1vii.pdb", "lj-loop n=400"); an uploaded
    structure goes by the name its file had, not by the server's token path."""
    system = (spec or {}).get("system", {})
    if system.get("kind") == "protein":
        source = jobs.structure_name(system.get("pdb")) or system.get("sequence") or ""
        return f"protein {source}"[:40]
    return f"{system.get('kind', '?')} n={system.get('n')}"


def run_name(spec: dict | None, label: str, created: float | None) -> str:
    """A run's name: system, method and local start time ("lj-loop n=400 · GNN · 14:02:31")."""
    when = time.strftime("%H:%M:%S", time.localtime(created)) if created else ""
    return " · ".join(part for part in (system_name(spec), label.upper(), when) if part)


def export_stem(spec: dict | None, label: str, created: float | None) -> str:
    """The file-name stem of a run's exports: "lj-loop-n400_gnn_20261130-140231"."""
    system = system_name(spec).replace(" n=", "-n")
    system = system[:-4] if system.lower().endswith(".pdb") else system
    when = time.strftime("%Y%m%d-%H%M%S", time.localtime(created)) if created else ""
    return "_".join(part for part in (jobs.file_stem(system), jobs.file_stem(label), when) if part)


def runs_digest(snaps: list, steps: bool = True) -> str:
    """Changes when a run appears, changes status or (``steps``) logs a step (skip no-op
    re-renders)."""
    key = repr([(s.run_id, s.status) + ((s.last.get("step"),) if steps else ()) for s in snaps])
    return hashlib.sha1(key.encode()).hexdigest()


# A live run's step and energy in the list are refreshed at most this often (its card shows
# them live): re-rendering the table is a page-wide update that competes with the 3D frames.
STEP_REFRESH_S = 10.0


def run_from_search(search: str | None) -> str | None:
    """The run id of a ``?run=<id>`` share link, or None."""
    if not search:
        return None
    return (parse_qs(search.lstrip("?")).get("run") or [None])[0]


def run_to_open(trigger, fired, search: str | None, typed: str | None) -> str | None:
    """Which run to open (None: nothing asked): from the address on page load or a link, from
    the id box (a pasted link works too), or from a list button that was really clicked."""
    if trigger == ids.LOCATION or trigger is None:
        return run_from_search(search)
    if trigger == ID.OPEN_BTN:  # the id box sends text; other JSON is forged: nothing to open
        return typed.strip().split("run=")[-1] if isinstance(typed, str) else None
    return trigger["index"] if fired else None


def run_color(spec: dict | None) -> str:
    """Colour of a stored run's method, from the one method registry (forms.method_of): an
    OpenMM baseline is told apart by its label, which a local reading of the spec missed."""
    try:
        return METHODS[forms.method_of(RunSpec.from_dict(spec or {}))].color
    except (SpecError, TypeError, ValueError):
        return NO_COLOR


def replay_payload(run_id: str, view: dict, step: int, x, first: bool = False) -> dict:
    """Frame of the replay viewer (with the topology the first time)."""
    frame = {
        "div": ID.VIEW_DOM,
        "key": f"replay-{run_id}",
        "step": step,
        "xyz": jobs.view_xyz(x, view),
    }
    return {**frame, "view": view} if first else frame


def replay_view(snap, frames: list) -> tuple:
    """(title, last frame index, curves figure, first viewer payload or None) of a run."""
    last = len(frames) - 1
    protein = (snap.spec or {}).get("system", {}).get("kind") == "protein"
    fig = figures.replay_figure(
        snap.rows,
        snap.label,
        run_color(snap.spec),
        snap.stage_switch_step,
        frames[last][0],
        with_rmsd=protein and any(figures.RMSD in row for row in snap.rows[:1]),
    )
    who = "" if snap.is_owner else " (shared with you, read-only)"
    title = f"{snap.label.upper()} · {snap.status} · {len(snap.rows)} logged steps{who}"
    frame = None
    if snap.view is not None:
        frame = replay_payload(snap.run_id, snap.view, frames[last][0], frames[last][1], True)
    return title, last, fig, frame


NO_FRAMES = "no frames stored for this run"


def empty_replay(snap) -> tuple:
    """The 7 replay outputs of a run with no stored frames (a failed run, or one stopped before
    its first frame): everything of the previously opened run is replaced, none kept.

    Its own curves (empty if it logged nothing), a slider with one position, an empty view
    under a new key (so the viewer drops the previous run's structure), and only the exports
    that need no coordinates, of this run.
    """
    fig = figures.replay_figure(
        snap.rows, snap.label, run_color(snap.spec), snap.stage_switch_step, None
    )
    if snap.status == "damaged":  # nothing of it can be exported: say why, offer nothing
        title, exports = f"{snap.label.upper()} · damaged · {snap.message}", []
    else:
        title = f"{snap.label.upper()} · {snap.status} · {NO_FRAMES}"
        exports = [b for b in C.export_buttons(snap.run_id) if b.id["fmt"] in NO_FRAME_FORMATS]
    clear = {
        "div": ID.VIEW_DOM,
        "key": f"replay-{snap.run_id}-empty",
        "step": None,
        "xyz": [],
        "view": {"kind": "loop", "n": 0, "scale": 1.0, "x0": [], "bonds": []},
    }
    return title, 0, 0, fig, exports, {"display": "block"}, clear


NO_FRAME_FORMATS = ("csv", "json")  # exports a run without coordinates still has


def replay_marker(step: int, switch_step: int | None) -> Patch:
    """Patch moving the replay curves' frame marker to ``step`` (see figures.replay_figure:
    the marker is the shape after the stage-switch line, if any)."""
    patch = Patch()
    patch["layout"]["shapes"][0 if switch_step is None else 1] = {
        "type": "line",
        "x0": step,
        "x1": step,
        "y0": 0,
        "y1": 1,
        "yref": "y domain",
        "line": {"color": "#d62728", "width": 2},
    }
    return patch


# ---- callbacks -------------------------------------------------------------------------------
@callback(
    Output(ID.TABLE, "children"),
    Output(ID.DIGEST, "data"),
    Output(POLL.reply, "data"),
    Input(POLL.tick, "data"),
    Input(live.ID.LIVE, "data"),
    State(ids.SESSION, "data"),
    State(ID.DIGEST, "data"),
)
def refresh_runs(n, live_group, sid, digest):
    """This session's runs and the CLI bundles; re-rendered only when something changed.
    Polled from page load on, every 2 s after the previous reply."""
    r = reg.get()
    now = time.time()
    if now - _last_bundle_scan[0] > BUNDLE_SCAN_S:
        _last_bundle_scan[0] = now
        r.index_bundles(jobs.find_bundles(r.config.bundle_dirs))
    snaps = r.list_runs(sid)
    last = digest if isinstance(digest, dict) else {}
    key, shape = runs_digest(snaps), runs_digest(snaps, steps=False)
    again = POLL.answer(n, True)
    if key == last.get("key"):
        return NU, NU, again
    if shape == last.get("shape") and now - last.get("t", 0.0) < STEP_REFRESH_S:
        return NU, NU, again  # only steps moved: wait
    return runs_table(snaps), {"key": key, "shape": shape, "t": now}, again


@callback(
    Output(ID.REPLAY, "data"),
    Output(ID.OPEN_MSG, "children"),
    Input(ID.open_btn(ALL), "n_clicks"),
    Input(ID.OPEN_BTN, "n_clicks"),
    Input(ids.LOCATION, "search"),
    State(ID.OPEN_ID, "value"),
    State(ids.SESSION, "data"),
)
def open_run(clicks, n, search, typed, sid):
    """Open a run for replay: from the list, by id, or from a ?run=<id> share link."""
    run_id = run_to_open(ctx.triggered_id, triggered_value(), search, typed)
    if run_id is None:
        return NU, NU
    if reg.get().snapshot(run_id, sid) is None:
        return NU, "No such run, or it was not shared with you."
    return {"id": run_id, "t": time.time()}, ""


@callback(
    Output(ID.TITLE, "children"),
    Output(ID.SLIDER, "max"),
    Output(ID.SLIDER, "value"),
    Output(ID.CURVES, "figure"),
    Output(ID.EXPORTS, "children"),
    Output(ID.BOX, "style"),
    Output(ID.FRAME, "data"),
    Input(ID.REPLAY, "data"),
    State(ids.SESSION, "data"),
    prevent_initial_call=True,
)
def show_replay(opened, sid):
    """Replay panel of an opened run: its curves, a frame slider and its exports."""
    if not opened:
        return (NU,) * 7
    r = reg.get()
    snap, frames = r.snapshot(opened["id"], sid), r.frames(opened["id"], sid)
    if snap is None:
        return (NU,) * 7
    if not frames:
        return empty_replay(snap)
    title, last, fig, frame = replay_view(snap, frames)
    return title, last, last, fig, C.export_buttons(opened["id"]), {"display": "block"}, frame


@callback(
    Output(ID.NAME, "children"),
    Input(ID.REPLAY, "data"),
    State(ids.SESSION, "data"),
    prevent_initial_call=True,
)
def replay_name(opened, sid):
    """The opened run's name under the replay title (system · method · start time)."""
    snap = reg.get().snapshot(opened["id"], sid, since_rows=10**12) if opened else None
    return NU if snap is None else run_name(snap.spec, snap.label, snap.created)


@callback(
    Output(ID.SLIDER, "value", allow_duplicate=True),
    Input(ID.CURVES, "clickData"),
    State(ID.REPLAY, "data"),
    State(ids.SESSION, "data"),
    prevent_initial_call=True,
)
def replay_click(click, opened, sid):
    """Click a point on the curve -> the nearest stored frame."""
    if not click or not opened:
        return NU
    frames = reg.get().frames(opened["id"], sid) or []
    return figures.nearest_frame([s for s, _ in frames], click["points"][0]["x"])


@callback(
    Output(ID.FRAME, "data", allow_duplicate=True),
    Output(ID.CURVES, "figure", allow_duplicate=True),
    Input(ID.SLIDER, "value"),
    State(ID.REPLAY, "data"),
    State(ids.SESSION, "data"),
    prevent_initial_call=True,
)
def replay_frame(index, opened, sid):
    """Slider -> that frame's coordinates in the replay viewer and a marker on the curves."""
    if not opened or index is None:
        return NU, NU
    r = reg.get()
    frames = r.frames(opened["id"], sid) or []
    snap = r.snapshot(opened["id"], sid, since_rows=10**12)  # no rows: only view and switch
    if not frames or snap is None or snap.view is None:
        return NU, NU
    step, x = frames[min(int(index), len(frames) - 1)]
    frame = replay_payload(opened["id"], snap.view, step, x)
    return frame, replay_marker(step, snap.stage_switch_step)


@callback(
    Output(ids.DOWNLOAD, "data"),
    Input(ids.export_btn(ALL, ALL), "n_clicks"),
    State(ids.SESSION, "data"),
    prevent_initial_call=True,
)
def export_run(clicks, sid):
    """Download the final PDB, trajectory PDB, curves CSV or re-runnable config JSON (when
    there is nothing to download, ``export_refusal`` says why)."""
    if not triggered_value():
        return NU
    run_id, fmt = ctx.triggered_id["index"], ctx.triggered_id["fmt"]
    r = reg.get()
    data, snap = r.export_data(run_id, sid), r.snapshot(run_id, sid, since_rows=10**12)
    if data is None or snap is None or export_problem(snap, data, fmt):
        return NU
    if fmt in ("pdb", "traj") and data["system"] is None:
        spec = RunSpec.from_dict(data["spec"])
        data["system"] = jobs.build_system(spec.system, spec.seed)
        r.remember_system(run_id, data["system"])
    stem = export_stem(snap.spec, snap.label, snap.created)
    name, text = jobs.export_file(data, fmt, stem)
    return {"content": text, "filename": name, "type": "text/plain"}


def export_problem(snap, data: dict | None, fmt: str) -> str:
    """Why export ``fmt`` of a run downloads nothing ("" when it downloads a file)."""
    if snap is None:
        return "No such run, or it was not shared with you."
    if snap.status == "damaged":
        return f"Nothing exported: this run is damaged ({snap.message})."
    if data is None:
        return "Nothing exported: this run has no stored data."
    if (fmt == "pdb" and data["x_final"] is None) or (fmt == "traj" and not data["frames"]):
        return "Nothing exported: this run stored no coordinates."
    return ""


@callback(
    Output(ID.OPEN_MSG, "children", allow_duplicate=True),
    Input(ids.export_btn(ALL, ALL), "n_clicks"),
    State(ids.SESSION, "data"),
    prevent_initial_call=True,
)
def export_refusal(clicks, sid):
    """The message under the runs list when an export button downloads nothing (a damaged
    run, one without coordinates); cleared when it downloads."""
    if not triggered_value():
        return NU
    run_id, fmt = ctx.triggered_id["index"], ctx.triggered_id["fmt"]
    r = reg.get()
    snap = r.snapshot(run_id, sid, since_rows=10**12)
    data = None if snap is None or snap.status == "damaged" else r.export_data(run_id, sid)
    return export_problem(snap, data, fmt)


clientside_callback(
    ClientsideFunction("wb", "frame"),
    Output(ID.ACK, "data"),
    Input(ID.FRAME, "data"),
)
