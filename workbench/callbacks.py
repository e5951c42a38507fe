"""Every Dash callback of the workbench, each a thin adapter: parse (forms), act (registry),
render (figures/components). Importing this module registers them with Dash.

The browser holds only ids (session token, run ids, counters of what it has already drawn);
arrays stay in the registry. Callbacks are plain functions and are unit-tested as such.
"""

from __future__ import annotations

import hashlib
import math
import time

import numpy as np
from dash import (
    ALL,
    MATCH,
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

from engine import RunSpec, SpecError, analysis

from . import components as C
from . import figures, forms, ids, jobs
from . import registry as reg
from .registry import Busy

BUNDLE_SCAN_S = 10.0  # CLI bundles written while the server runs appear within this
_last_bundle_scan = [0.0]


# ---- helpers ------------------------------------------------------------------------------------
def _values(values, field_ids) -> dict:
    return {fid["name"]: v for fid, v in zip(field_ids or [], values or [], strict=True)}


def _protein(values: dict, source: str | None, token: str | None) -> dict:
    """SystemConfig protein fields from the protein widgets (SpecError names the widget)."""
    r = reg.get()
    offered = {path for _, path in jobs.list_structures(r.config.structure_dirs)}
    choice = forms.ProteinChoice(
        source=source or "file",
        structure=values.get("protein.structure"),
        upload_path=r.store.upload_path(token),
        pdb_id=values.get("protein.pdb_id") or "",
        sequence=values.get("protein.sequence") or "",
        start=values.get("protein.start") or "native",
    )
    return forms.protein_system(choice, lambda p: p in offered)


def _specs(values: dict, methods, tab, source, token):
    protein = _protein(values, source, token) if tab == "protein" else None
    return forms.parse_run_form(values, tab, list(methods or []), protein)


def _trigger_value():
    """Value of the property that fired (None/0 when a new pattern component merely appeared)."""
    return ctx.triggered[0]["value"] if ctx.triggered else None


# ---- 1/3: forms ----------------------------------------------------------------------------------
@callback(
    Output(ids.field_msg(ALL), "children"),
    Output(ids.SYSTEM_SUMMARY, "children"),
    Input(ids.field(ALL), "value"),
    Input(ids.METHODS, "value"),
    Input(ids.SYSTEM_TABS, "value"),
    Input(ids.PROTEIN_SOURCE, "value"),
    Input(ids.UPLOAD_TOKEN, "data"),
    State(ids.field(ALL), "id"),
    State(ids.field_msg(ALL), "id"),
)
def validate_form(values, methods, tab, source, token, field_ids, msg_ids):
    """Messages next to every invalid field, as the user types (nothing is started)."""
    v = _values(values, field_ids)
    methods = list(methods or [])
    protein, errors = None, {}
    if tab == "protein":
        try:
            protein = _protein(v, source, token)
        except SpecError as err:
            errors[err.field] = forms.message_of(err)
    errors.update(forms.validate_form(v, tab, methods, protein))
    if not methods:
        errors["methods"] = "choose at least one method"
    return [errors.get(m["name"], "") for m in msg_ids], system_summary(v, tab, source)


def system_summary(v: dict, tab: str, source: str | None) -> str:
    if tab == "protein":
        what = {
            "file": v.get("protein.structure"),
            "pdbid": v.get("protein.pdb_id"),
            "sequence": v.get("protein.sequence"),
            "upload": "uploaded file",
        }.get(source or "file")
        start, model = v.get("protein.start"), v.get("system.model")
        return f"Protein: {what or '—'}, start {start}, model {model}."
    kind = dict(forms.FIELD_BY_NAME["system.kind"].options).get(v.get("system.kind"), "?")
    return (
        f"{kind}, n = {v.get('system.n')} beads, loop contacts i→i+{v.get('system.loop_stride')} "
        f"(strength {v.get('system.loop_strength')}), reduced units (bond length 1)."
    )


@callback(Output(ids.METHODS, "options"), Input(ids.SYSTEM_TABS, "value"))
def method_options(tab):
    return C.method_options(tab)


@callback(
    Output({"type": "method-params", "index": ALL}, "style"),
    Input(ids.METHODS, "value"),
    State({"type": "method-params", "index": ALL}, "id"),
)
def show_method_params(methods, block_ids):
    return [None if b["index"] in (methods or []) else {"display": "none"} for b in block_ids]


@callback(
    Output(ids.field(ALL), "value"),
    Output(ids.METHODS, "value"),
    Output(ids.PRESET_DESC, "children"),
    Output(ids.SYSTEM_TABS, "value"),
    Output(ids.PROTEIN_SOURCE, "value", allow_duplicate=True),
    Input(ids.PRESET, "value"),
    Input(ids.K_PICK, "data"),
    State(ids.field(ALL), "id"),
    State(ids.field(ALL), "value"),
    prevent_initial_call=True,
)
def fill_form(preset, k_pick, field_ids, current):
    """Fill the form from a paper preset, or set both k fields from a click on the spectrum."""
    keep = [NU] * len(field_ids)
    if ctx.triggered_id == ids.K_PICK:
        if not k_pick:
            return keep, NU, NU, NU, NU
        out = [
            str(k_pick["k"]) if f["name"] in ("cg.n_modes", "gnn.n_modes") else NU
            for f in field_ids
        ]
        return out, NU, NU, NU, NU
    if not preset:
        return keep, NU, "", NU, NU
    from engine.presets import PRESETS

    desc, specs = PRESETS[preset]
    values, methods = forms.values_from_specs(specs)
    source = NU
    tab = "protein" if specs[0].system.kind == "protein" else "loop"
    if tab == "protein":
        source, widgets = forms.protein_widgets(specs[0])
        values.update(widgets)
    return [values.get(f["name"], NU) for f in field_ids], methods, desc, tab, source


@callback(
    Output(ids.UPLOAD_TOKEN, "data"),
    Output(ids.UPLOAD_MSG, "children"),
    Output(ids.PROTEIN_SOURCE, "value"),
    Input(ids.UPLOAD, "contents"),
    State(ids.UPLOAD, "filename"),
    prevent_initial_call=True,
)
def upload_structure(contents, filename):
    """Check an uploaded file (size cap, PDB records) and keep it server-side under a token."""
    r = reg.get()
    try:
        data = forms.check_upload(contents, filename, r.config.max_upload_bytes)
    except SpecError as err:
        return None, forms.message_of(err), NU
    token = r.store.save_upload(data)
    return token, f"{filename}: accepted ({len(data) / 1e3:.0f} kB)", "upload"


# ---- 4/5: live runs ------------------------------------------------------------------------
@callback(
    Output(ids.LIVE_CARDS, "children"),
    Output(ids.CURVES, "figure"),
    Output(ids.CURVES, "style"),
    Output(ids.LIVE, "data"),
    Output(ids.SEEN, "data"),
    Output(ids.RUN_MSG, "children"),
    Output(ids.SPEEDUP, "children"),
    Input(ids.RUN_BTN, "n_clicks"),
    State(ids.field(ALL), "value"),
    State(ids.field(ALL), "id"),
    State(ids.METHODS, "value"),
    State(ids.SYSTEM_TABS, "value"),
    State(ids.PROTEIN_SOURCE, "value"),
    State(ids.UPLOAD_TOKEN, "data"),
    State(ids.SESSION, "data"),
    prevent_initial_call=True,
)
def start_run(n_clicks, values, field_ids, methods, tab, source, token, sid):
    """Validate the form and queue one run per checked method, all from the same seed."""
    nothing = (NU,) * 5
    try:
        specs = _specs(_values(values, field_ids), methods, tab, source, token)
        run_ids = reg.get().submit_group(specs, owner=sid)
    except SpecError as err:
        return (*nothing, f"Not started: {err.field} {forms.message_of(err)}", NU)
    except (Busy, PermissionError) as err:
        return (*nothing, f"Not started: {err}", NU)
    runs = [
        {
            "id": rid,
            "label": s.label,
            "method": forms.method_of(s),
            "color": forms.COLORS[forms.method_of(s)],
            "div": ids.viewer_dom(rid),
        }
        for rid, s in zip(run_ids, specs, strict=True)
    ]
    protein = tab == "protein"
    live = {"runs": runs, "rmsd": protein}
    fig = figures.curves_figure(runs, with_rmsd=protein, energy_unit="kJ/mol" if protein else "")
    workers = reg.get().config.workers
    queued = max(0, len(runs) - workers)
    msg = f"Started {', '.join(r['label'].upper() for r in runs)} (seed {specs[0].seed})."
    if queued:
        msg += f" {queued} run(s) wait for a free worker ({workers} workers)."
    seen = {"_active": True, "_ms": reg.get().config.poll_ms, "_n": 0}  # starts the poll chain
    return [C.run_card(r) for r in runs], fig, {"display": "block"}, live, seen, msg, None


@callback(
    Output(ids.run_frame(ALL), "data"),
    Output(ids.run_status(ALL), "children"),
    Output(ids.stop_btn(ALL), "disabled"),
    Output(ids.CURVES, "figure", allow_duplicate=True),
    Output(ids.SEEN, "data", allow_duplicate=True),
    Output(ids.SPEEDUP, "children", allow_duplicate=True),
    Input(ids.POLL, "data"),
    State(ids.LIVE, "data"),
    State(ids.SEEN, "data"),
    State(ids.SESSION, "data"),
    State(ids.THRESH_METRIC, "value"),
    State(ids.THRESH_VALUE, "value"),
    State(ids.run_frame(ALL), "id"),
    prevent_initial_call=True,
)
def poll_runs(tick, live, seen, sid, metric, threshold, frame_ids):
    """Send each live card what is new: its topology once, status, curve points (a Patch).

    Coordinates after the first frame stream through /_wb/frames (workbench/frames.py), not
    through this callback. Polls form a chain (the next tick is scheduled only after this
    reply is applied), so the browser's ``seen`` counters are never stale and no point is
    sent twice.
    """
    card_ids = [f["index"] for f in frame_ids]
    if not live or not card_ids or not (seen or {}).get("_active"):
        return [NU] * len(card_ids), [NU] * len(card_ids), [NU] * len(card_ids), NU, NU, NU
    runs = [r for r in live["runs"] if r["id"] in card_ids]
    seen = dict(seen or {})
    snaps = reg.get().snapshots(card_ids, sid, seen)
    frames, status, stops, new_rows, switches = [], [], [], {}, {}
    divs = [r["div"] for r in runs]
    for rid in card_ids:
        snap, s = snaps.get(rid), dict(seen.get(rid) or {})
        if snap is None:
            frames.append(NU)
            status.append("not found")
            stops.append(True)
            seen[rid] = {**s, "done": True}
            continue
        payload = NU if s.get("view") else frame_payload(snap, divs)
        frames.append(payload)
        if payload is not NU:
            s["frame"], s["view"] = snap.frame_no, True
        stops.append(True if snap.terminal and not s.get("ended") else NU)
        status.append(figures.status_text(snap) if snap.version != s.get("version") else NU)
        if snap.rows:
            new_rows[rid] = snap.rows
            s["rows"] = snap.n_rows
        if snap.stage_switch_step is not None and not s.get("switch"):
            rows = _all_rows(rid, sid)
            wall = next(
                (r.get("wall_time_s") for r in rows if r["step"] == snap.stage_switch_step), None
            )
            switches[rid] = (snap.stage_switch_step, wall)
            s["switch"] = True
        s["version"] = snap.version
        s["ended"] = snap.terminal
        s["done"] = snap.terminal and not snap.rows and bool(s.get("view") or snap.view is None)
        seen[rid] = s
    patch = figures.curves_patch(runs, new_rows, switches, with_rmsd=bool(live.get("rmsd")))
    all_done = all(seen.get(rid, {}).get("done") for rid in card_ids)
    speedup = speedup_block(live, sid, metric, threshold)[0] if new_rows or all_done else NU
    seen["_active"], seen["_n"] = not all_done, tick
    return frames, status, stops, patch if patch is not None else NU, seen, speedup


def frame_payload(snap, link: list[str]):
    """First frame of a live run for the clientside viewer: its topology, the newest
    coordinates, the group to link cameras with, and where its frame stream starts."""
    if snap.view is None:
        return NU
    scale = snap.view.get("scale", 1.0)
    return {
        "div": ids.viewer_dom(snap.run_id),
        "key": snap.run_id,
        "step": snap.frame_step,
        "xyz": jobs.flat(snap.frame_x, scale) if snap.frame_x is not None else None,
        "view": snap.view,
        "link": link,
        "run": snap.run_id,
        "since": snap.frame_no,
        "period": reg.get().config.frame_ms,
    }


def _all_rows(run_id: str, sid: str) -> tuple:
    snap = reg.get().snapshot(run_id, sid)
    return snap.rows if snap else ()


def speedup_block(live, sid, metric, threshold_text):
    """(table, message) of steps/time to reach the threshold for each live run."""
    if not live:
        return NU, ""
    msg = ""
    threshold = None
    if threshold_text not in (None, ""):
        try:
            threshold = float(threshold_text)
            if not math.isfinite(threshold):
                raise ValueError
        except ValueError:
            return NU, f"must be a finite number, got {threshold_text!r}; blank means auto"
    registry = reg.get()
    labels = {r["id"]: r["label"] for r in live["runs"]}
    auto = threshold is None
    if auto:
        gd = next((r["id"] for r in live["runs"] if r.get("method") == "gd"), None)
        finals = {rid: registry.curve_final(rid, sid, metric) for rid in labels}
        threshold = analysis.default_threshold(finals, base=gd)
    reaches = {
        rid: None if threshold is None else registry.curve_reach(rid, sid, metric, threshold)
        for rid in labels
    }
    rows = figures.speedup_rows(reaches, labels, threshold)
    return C.speedup_table(rows, metric, threshold, auto), msg


@callback(
    Output(ids.SPEEDUP, "children", allow_duplicate=True),
    Output(ids.THRESH_MSG, "children"),
    Input(ids.THRESH_METRIC, "value"),
    Input(ids.THRESH_VALUE, "value"),
    State(ids.LIVE, "data"),
    State(ids.SESSION, "data"),
    prevent_initial_call=True,
)
def update_speedup(metric, threshold, live, sid):
    return speedup_block(live, sid, metric, threshold)


@callback(
    Output(ids.RUN_MSG, "children", allow_duplicate=True),
    Input(ids.stop_btn(ALL), "n_clicks"),
    State(ids.SESSION, "data"),
    prevent_initial_call=True,
)
def stop_run(clicks, sid):
    """Stop one run (owner only); it keeps everything computed so far."""
    if not _trigger_value():
        return NU
    run_id = ctx.triggered_id["index"]
    ok = reg.get().cancel(run_id, by=sid)
    return (
        "Stop requested: the run ends after its current chunk."
        if ok
        else "That run has already finished."
    )


@callback(
    Output(ids.RUN_MSG, "children", allow_duplicate=True),
    Input(ids.STOP_ALL_BTN, "n_clicks"),
    State(ids.SESSION, "data"),
    prevent_initial_call=True,
)
def stop_all(n, sid):
    k = reg.get().cancel_all(by=sid)
    return f"Stop requested for {k} run(s)." if k else "No active runs."


@callback(
    Output(ids.share_msg(MATCH), "children"),
    Input(ids.share_btn(MATCH), "n_clicks"),
    State(ids.SESSION, "data"),
    State(ids.LOCATION, "href"),
    prevent_initial_call=True,
)
def share_run(n, sid, href):
    """Make a run readable by whoever gets the link (read-only; stopping stays with the owner)."""
    if not n:
        return NU
    run_id = ctx.triggered_id["index"]
    if not reg.get().share(run_id, by=sid):
        return "Only the run's owner can share it."
    base = (href or "/").split("?")[0]
    return ["Read-only link: ", html.Code(f"{base}?run={run_id}")]


@callback(
    Output(ids.DOWNLOAD, "data"),
    Input(ids.export_btn(ALL, ALL), "n_clicks"),
    State(ids.SESSION, "data"),
    prevent_initial_call=True,
)
def export_run(clicks, sid):
    """Download the final PDB, trajectory PDB, curves CSV or re-runnable config JSON."""
    if not _trigger_value():
        return NU
    run_id, fmt = ctx.triggered_id["index"], ctx.triggered_id["fmt"]
    data = reg.get().export_data(run_id, sid)
    if data is None or data["x_final"] is None:
        return NU
    if fmt in ("pdb", "traj") and data["system"] is None:
        spec = RunSpec.from_dict(data["spec"])
        data["system"] = jobs.build_system(spec.system, spec.seed)
        reg.get().remember_system(run_id, data["system"])
    name, text = jobs.export_file(data, fmt)
    return {"content": text, "filename": name, "type": "text/plain"}


# ---- 2: spectrum ---------------------------------------------------------------------------
@callback(
    Output(ids.SPEC_TASK, "data"),
    Output(ids.SPEC_POLL, "disabled"),
    Output(ids.SPEC_STATUS, "children"),
    Input(ids.SPEC_BTN, "n_clicks"),
    State(ids.field(ALL), "value"),
    State(ids.field(ALL), "id"),
    State(ids.SYSTEM_TABS, "value"),
    State(ids.PROTEIN_SOURCE, "value"),
    State(ids.UPLOAD_TOKEN, "data"),
    State(ids.SESSION, "data"),
    prevent_initial_call=True,
)
def start_spectrum(n, values, field_ids, tab, source, token, sid):
    """Compute the Hessian spectrum of the form's system on the analysis thread."""
    try:
        spec = _specs(_values(values, field_ids), ["gnn"], tab, source, token)[0]
        task_id = reg.get().submit_task(sid, "spectrum", jobs.spectrum_task(spec))
    except SpecError as err:
        return NU, NU, f"Not computed: {err.field} {forms.message_of(err)}"
    k = spec.reparam.n_modes
    return {"id": task_id, "k": k, "n": spec.system.n}, False, progress_bar("queued")


def progress_bar(text: str, elapsed: float = 0.0) -> list:
    return [
        html.Div(html.Div(className="wb-progress-bar"), className="wb-progress"),
        html.Span(f"{text} · {elapsed:.1f} s", className="wb-muted"),
    ]


@callback(
    Output(ids.SPEC_GRAPH, "figure"),
    Output(ids.SPEC_GRAPH, "style"),
    Output(ids.SPEC_STATUS, "children", allow_duplicate=True),
    Output(ids.SPEC_POLL, "disabled", allow_duplicate=True),
    Output(ids.SPEC_MODE, "data"),
    Output(ids.HEATMAPS, "children"),
    Input(ids.SPEC_POLL, "n_intervals"),
    State(ids.SPEC_TASK, "data"),
    State(ids.SESSION, "data"),
    prevent_initial_call=True,
)
def poll_spectrum(n, task, sid):
    if not task:
        return NU, NU, NU, True, NU, NU
    snap = reg.get().snapshot(task["id"], sid)
    if snap is None:
        return NU, NU, "Spectrum task not found (server restarted?).", True, NU, NU
    if not snap.terminal:
        return NU, NU, progress_bar(snap.progress or snap.status, snap.elapsed), False, NU, NU
    if snap.status != "done":
        return NU, NU, f"Spectrum {snap.status}: {snap.message}", True, NU, NU
    p = snap.payload
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
    mode = {
        "div": ids.SPEC_VIEW_DOM,
        "key": task["id"],
        "view": p["view"],
        "base": jobs.flat(p["x"], p["scale"]),
        "disp": None,
        "mode": None,
    }
    return fig, {"display": "block"}, status, True, mode, heat or None


@callback(
    Output(ids.SPEC_MODE, "data", allow_duplicate=True),
    Output(ids.SPEC_MODE_INFO, "children"),
    Output(ids.K_PICK, "data"),
    Output(ids.SPEC_GRAPH, "figure", allow_duplicate=True),
    Input(ids.SPEC_GRAPH, "clickData"),
    Input(ids.SPEC_GRAPH, "relayoutData"),
    State(ids.SPEC_CLICK, "value"),
    State(ids.SPEC_TASK, "data"),
    State(ids.SESSION, "data"),
    prevent_initial_call=True,
)
def spectrum_click(click, relayout, click_mode, task, sid):
    """A click animates a mode or sets k; dragging the dashed line sets k."""
    snap = reg.get().snapshot(task["id"], sid) if task else None
    if snap is None or snap.payload is None:
        return NU, NU, NU, NU
    p = snap.payload
    n_values = len(p["values"])
    if ctx.triggered_id == ids.SPEC_GRAPH and ctx.triggered[0]["prop_id"].endswith("relayoutData"):
        k = figures.k_from_shape_drag(relayout, n_values)
        if k is None:
            return NU, NU, NU, NU
        return (
            NU,
            f"k = {k} slow modes (set for CG and GNN).",
            {"k": k, "t": time.time()},
            _cutoff_patch(k),
        )
    if not click or not click.get("points"):
        return NU, NU, NU, NU
    point = click["points"][0]
    index = int(point.get("customdata", point.get("x", 1) - 1))
    if click_mode == "k":
        k = index + 1
        return (
            NU,
            f"k = {k} slow modes (set for CG and GNN).",
            {"k": k, "t": time.time()},
            _cutoff_patch(k),
        )
    disp = jobs.mode_displacement(p, index)
    lam = float(p["values"][index])
    kind = "rigid-body mode (λ≈0)" if bool(p["rigid"][index]) else f"λ = {lam:.4g}"
    mode = {
        "div": ids.SPEC_VIEW_DOM,
        "key": task["id"],
        "view": p["view"],
        "base": jobs.flat(p["x"], p["scale"]),
        "disp": jobs.flat(disp),
        "mode": index,
    }
    space = (
        "node-space mode: one ψ for x, y and z, drawn along the structure's long axis"
        if p["space"] == "node"
        else "Cartesian mode"
    )
    return mode, f"Animating mode {index + 1} ({kind}; {space}). No real timescale.", NU, NU


def _cutoff_patch(k: int) -> Patch:
    patch = Patch()
    patch["layout"]["shapes"][0]["x0"] = k + 0.5
    patch["layout"]["shapes"][0]["x1"] = k + 0.5
    patch["layout"]["title"]["text"] = (
        f"k = {k} slow modes left of the dashed line (drag it, or click with 'set k')"
    )
    return patch


# ---- 6: runs list, replay ------------------------------------------------------------------
@callback(
    Output(ids.RUNS_TABLE, "children"),
    Output(ids.RUNS_DIGEST, "data"),
    Input(ids.RUNS_TICK, "n_intervals"),
    Input(ids.LIVE, "data"),
    State(ids.SESSION, "data"),
    State(ids.RUNS_DIGEST, "data"),
)
def refresh_runs(n, live, sid, digest):
    """This session's runs and the CLI bundles; re-rendered only when something changed."""
    r = reg.get()
    now = time.time()
    if now - _last_bundle_scan[0] > BUNDLE_SCAN_S:
        _last_bundle_scan[0] = now
        r.index_bundles(jobs.find_bundles(r.config.bundle_dirs))
    snaps = r.list_runs(sid)
    key = hashlib.sha1(
        repr([(s.run_id, s.status, s.last.get("step")) for s in snaps]).encode()
    ).hexdigest()
    if key == digest:
        return NU, NU
    return C.runs_table(snaps), key


@callback(
    Output(ids.REPLAY, "data"),
    Output(ids.OPEN_MSG, "children"),
    Input(ids.open_btn(ALL), "n_clicks"),
    Input(ids.OPEN_BTN, "n_clicks"),
    Input(ids.LOCATION, "search"),
    State(ids.OPEN_ID, "value"),
    State(ids.SESSION, "data"),
)
def open_run(clicks, n, search, typed, sid):
    """Open a run for replay: from the list, by id, or from a ?run=<id> share link."""
    trig = ctx.triggered_id
    if trig == ids.LOCATION or trig is None:
        run_id = _run_from_search(search)
        if not run_id:
            return NU, NU
    elif trig == ids.OPEN_BTN:
        run_id = (typed or "").strip().split("run=")[-1]
    else:
        if not _trigger_value():
            return NU, NU
        run_id = trig["index"]
    if reg.get().snapshot(run_id, sid) is None:
        return NU, "No such run, or it was not shared with you."
    return {"id": run_id, "t": time.time()}, ""


def _run_from_search(search: str | None) -> str | None:
    if not search:
        return None
    from urllib.parse import parse_qs

    return (parse_qs(search.lstrip("?")).get("run") or [None])[0]


@callback(
    Output(ids.REPLAY_TITLE, "children"),
    Output(ids.REPLAY_SLIDER, "max"),
    Output(ids.REPLAY_SLIDER, "value"),
    Output(ids.REPLAY_CURVES, "figure"),
    Output(ids.REPLAY_EXPORTS, "children"),
    Output(ids.REPLAY_BOX, "style"),
    Output(ids.REPLAY_FRAME, "data"),
    Input(ids.REPLAY, "data"),
    State(ids.SESSION, "data"),
    prevent_initial_call=True,
)
def show_replay(opened, sid):
    """Replay panel of an opened run: its curves, a frame slider and its exports."""
    if not opened:
        return (NU,) * 7
    r = reg.get()
    snap = r.snapshot(opened["id"], sid)
    frames = r.frames(opened["id"], sid)
    if snap is None or not frames:
        return "This run has no stored frames yet.", NU, NU, NU, NU, {"display": "block"}, NU
    last = len(frames) - 1
    color = forms.COLORS.get(_method_of_dict(snap.spec), "#333")
    protein = (snap.spec or {}).get("system", {}).get("kind") == "protein"
    fig = figures.replay_figure(
        snap.rows,
        snap.label,
        color,
        snap.stage_switch_step,
        frames[last][0],
        with_rmsd=protein and any(figures.RMSD in row for row in snap.rows[:1]),
    )
    who = "" if snap.is_owner else " (shared with you, read-only)"
    title = f"{snap.label.upper()} · {snap.status} · {len(snap.rows)} logged steps{who}"
    frame = None
    if snap.view is not None:
        scale = snap.view.get("scale", 1.0)
        frame = {
            "div": ids.REPLAY_VIEW_DOM,
            "key": f"replay-{opened['id']}",
            "view": snap.view,
            "step": frames[last][0],
            "xyz": jobs.flat(frames[last][1], scale),
        }
    return title, last, last, fig, C.export_buttons(opened["id"]), {"display": "block"}, frame


def _method_of_dict(spec: dict | None) -> str:
    if not spec:
        return "gd"
    kind = spec.get("reparam", {}).get("kind")
    if kind == "linear":
        return "cg"
    if kind == "gnn":
        return "gnn"
    return "fire" if spec.get("optim", {}).get("name") == "fire" else "gd"


@callback(
    Output(ids.REPLAY_SLIDER, "value", allow_duplicate=True),
    Input(ids.REPLAY_CURVES, "clickData"),
    State(ids.REPLAY, "data"),
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
    Output(ids.REPLAY_FRAME, "data", allow_duplicate=True),
    Output(ids.REPLAY_CURVES, "figure", allow_duplicate=True),
    Input(ids.REPLAY_SLIDER, "value"),
    State(ids.REPLAY, "data"),
    State(ids.SESSION, "data"),
    prevent_initial_call=True,
)
def replay_frame(index, opened, sid):
    """Slider -> that frame's coordinates in the replay viewer and a marker on the curves."""
    if not opened or index is None:
        return NU, NU
    r = reg.get()
    frames = r.frames(opened["id"], sid) or []
    snap = r.snapshot(opened["id"], sid, since_rows=10**12)
    if not frames or snap is None or snap.view is None:
        return NU, NU
    step, x = frames[min(int(index), len(frames) - 1)]
    patch = Patch()
    marker = {
        "type": "line",
        "x0": step,
        "x1": step,
        "y0": 0,
        "y1": 1,
        "yref": "y domain",
        "line": {"color": "#d62728", "width": 2},
    }
    patch["layout"]["shapes"][0 if snap.stage_switch_step is None else 1] = (
        marker  # see replay_figure
    )
    return {
        "div": ids.REPLAY_VIEW_DOM,
        "key": f"replay-{opened['id']}",
        "step": step,
        "xyz": jobs.flat(x, snap.view.get("scale", 1.0)),
    }, patch


# ---- clientside: poll chain and 3Dmol viewers (assets/workbench.js) ------------------------
clientside_callback(
    ClientsideFunction("wb", "onSeen"),
    Output(ids.POLL_ACK, "data"),
    Input(ids.SEEN, "data"),
    prevent_initial_call=True,
)
clientside_callback(
    ClientsideFunction("wb", "watchdog"),
    Output(ids.POLL_ACK, "data", allow_duplicate=True),
    Input(ids.WATCHDOG, "n_intervals"),
    State(ids.SEEN, "data"),
    prevent_initial_call=True,
)
clientside_callback(
    ClientsideFunction("wb", "frame"),
    Output(ids.run_ack(MATCH), "data"),
    Input(ids.run_frame(MATCH), "data"),
)
clientside_callback(
    ClientsideFunction("wb", "frame"),
    Output(ids.REPLAY_ACK, "data"),
    Input(ids.REPLAY_FRAME, "data"),
)
clientside_callback(
    ClientsideFunction("wb", "fit"),
    Output(ids.fit_ack(MATCH), "data"),
    Input(ids.fit_btn(MATCH), "n_clicks"),
    prevent_initial_call=True,
)
clientside_callback(
    ClientsideFunction("wb", "animate"),
    Output(ids.SPEC_ACK, "data"),
    Input(ids.SPEC_MODE, "data"),
    Input(ids.SPEC_AMP, "value"),
)
