"""Panels 4-5, Live runs side by side: one card per run (3D view, status, stop, share,
exports), the curves of the group, and the speed-up table.

Run starts the checked methods of the form as one group (``start_run``). One poll callback
(``poll_runs``) then updates every card; polls form a chain driven by assets/workbench.js (the
next tick is scheduled only after a reply is applied), so the browser's ``seen`` counters are
never stale and no point is sent twice. Coordinates after the first frame stream through
/_wb/frames (workbench/frames.py), not through Dash. The speed-up table reads only each run's
final value and first reach of the threshold from the registry (``curve_final``,
``curve_reach``), never a copy of the whole history.
"""

from __future__ import annotations

import functools
import math
from typing import NamedTuple

from dash import (
    ALL,
    MATCH,
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

from engine import SpecError, analysis
from engine.methods import METHODS

from .. import components as C
from .. import figures, forms, ids, jobs
from .. import registry as reg
from ..registry import Busy
from . import PageContext, method, system, triggered_value


class ID:
    LIVE = "wb-live"  # Store: {"runs": [{"id", "label", "method", "color", "div"}], "rmsd": bool}
    SEEN = "wb-seen"  # Store: {run_id: {"rows", "frame", "version", ...}, "_active", "_ms", "_n"}
    POLL = "wb-poll"  # Store: tick counter; each increment runs poll_runs once (workbench.js)
    POLL_ACK = "wb-poll-ack"  # dummy output of the clientside poll scheduler
    WATCHDOG = "wb-watchdog"  # Interval restarting the poll chain if a poll request was lost
    CARDS = "wb-live-cards"
    CURVES = "wb-curves"
    THRESH_METRIC = "wb-thresh-metric"
    THRESH_VALUE = "wb-thresh-value"
    THRESH_MSG = "wb-thresh-msg"
    SPEEDUP = "wb-speedup"
    VIEW_PREFIX = "wb-view-"  # + run id: DOM id of the div hosting a run's 3Dmol viewer

    @staticmethod
    def viewer_dom(run_id: str) -> str:
        return ID.VIEW_PREFIX + run_id

    @staticmethod
    def card(run_id: str) -> dict:
        return {"type": "run-card", "index": run_id}

    @staticmethod
    def frame(run_id: str) -> dict:
        """Store holding the first frame of a live run ({"step", "xyz", "view", ...})."""
        return {"type": "run-frame", "index": run_id}

    @staticmethod
    def ack(run_id: str) -> dict:
        """Dummy output of the clientside frame renderer (Dash needs one)."""
        return {"type": "run-ack", "index": run_id}

    @staticmethod
    def status(run_id: str) -> dict:
        return {"type": "run-status", "index": run_id}

    @staticmethod
    def stop_btn(run_id: str) -> dict:
        return {"type": "run-stop", "index": run_id}

    @staticmethod
    def fit_btn(run_id: str) -> dict:
        """Re-fit the camera of a run's 3D view (and the views linked to it)."""
        return {"type": "run-fit", "index": run_id}

    @staticmethod
    def fit_ack(run_id: str) -> dict:
        return {"type": "run-fit-ack", "index": run_id}

    @staticmethod
    def share_btn(run_id: str) -> dict:
        return {"type": "run-share", "index": run_id}

    @staticmethod
    def share_msg(run_id: str) -> dict:
        return {"type": "run-share-msg", "index": run_id}


# ---- layout --------------------------------------------------------------------------------
def layout(ctx: PageContext):
    del ctx  # nothing server-specific in this panel
    return C.section(
        "Live runs, side by side",
        [
            dcc.Store(id=ID.LIVE, data=None),
            dcc.Store(id=ID.SEEN, data={}),
            dcc.Store(id=ID.POLL, data=0),
            dcc.Store(id=ID.POLL_ACK),
            dcc.Interval(id=ID.WATCHDOG, interval=1000),
            html.Div(
                html.Div(
                    "Press Run: the checked methods start from the same structure and seed, "
                    "each in its own 3D view (cameras linked: rotate one, all follow).",
                    className="wb-muted",
                ),
                id=ID.CARDS,
                className="wb-cards",
            ),
            dcc.Graph(id=ID.CURVES, config={"displaylogo": False}, style={"display": "none"}),
            html.Div(
                [
                    html.Span("Speed-up to reach", className="wb-label-inline"),
                    dcc.RadioItems(
                        id=ID.THRESH_METRIC,
                        options=[
                            {"label": "energy", "value": "energy"},
                            {"label": "CA RMSD", "value": "rmsd_ca"},
                        ],
                        value="energy",
                        inline=True,
                    ),
                    dcc.Input(
                        id=ID.THRESH_VALUE,
                        type="text",
                        value="",
                        debounce=0.4,
                        placeholder="auto",
                        className="wb-input wb-input-small",
                    ),
                    html.Div(id=ID.THRESH_MSG, className="wb-msg"),
                ],
                className="wb-thresh",
            ),
            html.Div(id=ID.SPEEDUP),
        ],
        number="4–5",
    )


def run_card(run: dict, is_owner: bool = True) -> html.Div:
    """A live run: its 3D view, status line, stop/share/export buttons and its frame Store."""
    rid = run["id"]
    method = METHODS.get(run.get("method", ""))
    subtitle = method.description if method else ""
    return html.Div(
        [
            html.Div(
                [
                    html.Span(
                        run["label"].upper(),
                        className="wb-card-title",
                        style={"color": run["color"]},
                    ),
                    html.Span(subtitle, className="wb-card-sub"),
                ],
                className="wb-card-head",
            ),
            html.Div(id=ID.viewer_dom(rid), className="wb-viewer", **{"data-run": rid}),
            html.Div("queued", id=ID.status(rid), className="wb-status", role="status"),
            html.Div(
                [
                    html.Button(
                        "Stop",
                        id=ID.stop_btn(rid),
                        className="wb-btn wb-btn-stop",
                        disabled=not is_owner,
                    ),
                    html.Button(
                        "Fit view",
                        id=ID.fit_btn(rid),
                        className="wb-btn",
                        title="zoom to the whole structure (otherwise the camera stays put)",
                    ),
                    html.Button(
                        "Share link",
                        id=ID.share_btn(rid),
                        className="wb-btn",
                        disabled=not is_owner,
                    ),
                    *C.export_buttons(rid),
                ],
                className="wb-card-buttons",
            ),
            html.Div(id=ID.share_msg(rid), className="wb-share"),
            dcc.Store(id=ID.frame(rid)),
            dcc.Store(id=ID.ack(rid)),
            dcc.Store(id=ID.fit_ack(rid)),
        ],
        id=ID.card(rid),
        className="wb-card",
    )


def speedup_table(rows: list[dict], metric: str, threshold: float | None, auto: bool) -> html.Div:
    """Steps and time to reach the threshold per run, and the speed-ups (figures.speedup_rows)."""
    if threshold is None:
        return html.Div("Speed-up appears once the runs have logged values.", className="wb-muted")
    head = html.Tr(
        [
            html.Th("method"),
            html.Th(f"steps to {metric} ≤ {threshold:.5g}"),
            html.Th("time (s)"),
            html.Th("speed-up (time)"),
            html.Th("speed-up (steps)"),
        ]
    )
    body = []
    for r in rows:
        if not r["reached"]:
            body.append(html.Tr([html.Td(r["label"].upper()), html.Td("not reached", colSpan=4)]))
            continue
        ref = r is rows[0]
        body.append(
            html.Tr(
                [
                    html.Td(r["label"].upper()),
                    html.Td(f"{r['step']:,}"),
                    html.Td(f"{r['time']:.2f}"),
                    html.Td(_x(r["speedup_time"], ref)),
                    html.Td(_x(r["speedup_steps"], ref)),
                ]
            )
        )
    note = (
        "threshold: auto = GD's final value + 1 % (else the worst final value), as in "
        "`python -m engine compare`"
        if auto
        else "threshold: as entered"
    )
    return html.Div(
        [
            html.Table([html.Thead(head), html.Tbody(body)], className="wb-table"),
            html.Div(
                note + "; speed-up = first method's steps or time ÷ this method's; "
                "CG/GNN time includes computing the slow modes.",
                className="wb-muted",
            ),
        ]
    )


def _x(v, reference: bool) -> str:
    if v is None and reference:
        return "reference"
    return "—" if v is None else f"{v:.2f}×"


# ---- pure helpers ----------------------------------------------------------------------------
class Group(NamedTuple):
    """A side-by-side group just started: what start_run sends to the page."""

    runs: list[dict]  # [{"id", "label", "method", "color", "div"}]
    live: dict  # the LIVE store
    figure: object  # empty curves figure with one trace per run and metric
    seen: dict  # the SEEN store: starts the poll chain
    message: str


def new_group(run_ids, specs, protein: bool, workers: int, poll_ms: int) -> Group:
    """The page state of runs ``run_ids`` just submitted for ``specs`` (same order)."""
    runs = []
    for rid, spec in zip(run_ids, specs, strict=True):
        m = forms.method_of(spec)
        color, div = METHODS[m].color, ID.viewer_dom(rid)
        runs.append({"id": rid, "label": spec.label, "method": m, "color": color, "div": div})
    fig = figures.curves_figure(runs, with_rmsd=protein, energy_unit="kJ/mol" if protein else "")
    message = f"Started {', '.join(r['label'].upper() for r in runs)} (seed {specs[0].seed})."
    queued = max(0, len(runs) - workers)
    if queued:
        message += f" {queued} run(s) wait for a free worker ({workers} workers)."
    seen = {"_active": True, "_ms": poll_ms, "_n": 0}
    return Group(runs, {"runs": runs, "rmsd": protein}, fig, seen, message)


def frame_payload(snap, link: list[str], period: int):
    """First frame of a live run for the clientside viewer: its topology, the newest
    coordinates, the group to link cameras with, and where its frame stream starts."""
    if snap.view is None:
        return NU
    scale = snap.view.get("scale", 1.0)
    return {
        "div": ID.viewer_dom(snap.run_id),
        "key": snap.run_id,
        "step": snap.frame_step,
        "xyz": jobs.flat(snap.frame_x, scale) if snap.frame_x is not None else None,
        "view": snap.view,
        "link": link,
        "run": snap.run_id,
        "since": snap.frame_no,
        "period": period,
    }


def wall_time_at(rows, step: int) -> float | None:
    """Wall time logged at ``step`` (the stage switch) in a run's rows, if any."""
    return next((r.get("wall_time_s") for r in rows if r["step"] == step), None)


class CardUpdate(NamedTuple):
    frame: object  # frame_payload or NU
    status: object  # status line or NU
    stop: object  # True disables the Stop button, else NU
    seen: dict  # this card's new counters
    rows: tuple  # rows new since the last poll
    switch: tuple | None  # (stage switch step, wall time) the first time it is known


def card_update(snap, s: dict, link: list[str], period: int, wall_at) -> CardUpdate:
    """What one card gets from ``snap`` given its counters ``s``; ``wall_at(step)`` reads the
    wall time at the stage switch (called once per run)."""
    if snap is None:
        return CardUpdate(NU, "not found", True, {**s, "done": True}, (), None)
    s = dict(s)
    frame = NU if s.get("view") else frame_payload(snap, link, period)
    if frame is not NU:
        s["frame"], s["view"] = snap.frame_no, True
    switch = None
    if snap.stage_switch_step is not None and not s.get("switch"):
        switch, s["switch"] = (snap.stage_switch_step, wall_at(snap.stage_switch_step)), True
    if snap.rows:
        s["rows"] = snap.n_rows
    stop = True if snap.terminal and not s.get("ended") else NU
    status = figures.status_text(snap) if snap.version != s.get("version") else NU
    s["version"], s["ended"] = snap.version, snap.terminal
    s["done"] = snap.terminal and not snap.rows and bool(s.get("view") or snap.view is None)
    return CardUpdate(frame, status, stop, s, tuple(snap.rows or ()), switch)


def poll_update(live: dict, seen: dict, card_ids: list[str], snaps: dict, period: int, wall_at):
    """(frames, status lines, stop flags, curves patch or NU, new seen, whether rows arrived)
    of one poll; ``snaps`` = {run id: snapshot or None}, ``wall_at(run_id, step)``."""
    runs = [r for r in live["runs"] if r["id"] in card_ids]
    link = [r["div"] for r in runs]
    seen = dict(seen)
    updates = {}
    for rid in card_ids:
        at = functools.partial(wall_at, rid)
        u = card_update(snaps.get(rid), seen.get(rid) or {}, link, period, at)
        updates[rid], seen[rid] = u, u.seen
    new_rows = {rid: u.rows for rid, u in updates.items() if u.rows}
    switches = {rid: u.switch for rid, u in updates.items() if u.switch}
    patch = figures.curves_patch(runs, new_rows, switches, with_rmsd=bool(live.get("rmsd")))
    seen["_active"] = not all(seen[rid].get("done") for rid in card_ids)
    cols = [[getattr(updates[rid], f) for rid in card_ids] for f in ("frame", "status", "stop")]
    return (*cols, NU if patch is None else patch, seen, bool(new_rows))


def parse_threshold(text) -> tuple[float | None, str]:
    """(threshold or None for auto, error message or "") of the threshold box."""
    if text in (None, ""):
        return None, ""
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not math.isfinite(value):
        return None, f"must be a finite number, got {text!r}; blank means auto"
    return value, ""


def speedup_block(live, metric: str, threshold_text, final, reach):
    """(speed-up table or NU, message) of the live group; ``final(run_id, metric)`` and
    ``reach(run_id, metric, threshold)`` answer from the registry without copying histories."""
    if not live:
        return NU, ""
    threshold, error = parse_threshold(threshold_text)
    if error:
        return NU, error
    labels = {r["id"]: r["label"] for r in live["runs"]}
    auto = threshold is None
    if auto:
        gd = next((r["id"] for r in live["runs"] if r.get("method") == "gd"), None)
        finals = {rid: final(rid, metric) for rid in labels}
        threshold = analysis.default_threshold(finals, base=gd)
    reaches = {rid: None if threshold is None else reach(rid, metric, threshold) for rid in labels}
    rows = figures.speedup_rows(reaches, labels, threshold)
    return speedup_table(rows, metric, threshold, auto), ""


def share_link(href: str | None, run_id: str) -> list:
    """The read-only link to a shared run, on this page's address."""
    base = (href or "/").split("?")[0]
    return ["Read-only link: ", html.Code(f"{base}?run={run_id}")]


def _speedup(live, sid, metric, threshold_text):
    r = reg.get()
    return speedup_block(
        live,
        metric,
        threshold_text,
        lambda rid, m: r.curve_final(rid, sid, m),
        lambda rid, m, t: r.curve_reach(rid, sid, m, t),
    )


# ---- callbacks -------------------------------------------------------------------------------
@callback(
    Output(ID.CARDS, "children"),
    Output(ID.CURVES, "figure"),
    Output(ID.CURVES, "style"),
    Output(ID.LIVE, "data"),
    Output(ID.SEEN, "data"),
    Output(method.ID.RUN_MSG, "children"),
    Output(ID.SPEEDUP, "children"),
    Input(method.ID.RUN_BTN, "n_clicks"),
    State(ids.field(ALL), "value"),
    State(ids.field(ALL), "id"),
    State(method.ID.METHODS, "value"),
    State(system.ID.TABS, "value"),
    State(system.ID.PROTEIN_SOURCE, "value"),
    State(system.ID.UPLOAD_TOKEN, "data"),
    State(ids.SESSION, "data"),
    prevent_initial_call=True,
)
def start_run(n_clicks, values, field_ids, methods, tab, source, token, sid):
    """Validate the form and queue one run per checked method, all from the same seed."""
    r = reg.get()
    try:
        specs = system.run_specs(system.form_values(values, field_ids), methods, tab, source, token)
        run_ids = r.submit_group(specs, owner=sid)
    except SpecError as err:
        return (*(NU,) * 5, f"Not started: {err.field} {forms.message_of(err)}", NU)
    except (Busy, PermissionError) as err:
        return (*(NU,) * 5, f"Not started: {err}", NU)
    g = new_group(run_ids, specs, tab == "protein", r.config.workers, r.config.poll_ms)
    cards = [run_card(run) for run in g.runs]
    return cards, g.figure, {"display": "block"}, g.live, g.seen, g.message, None


@callback(
    Output(ID.frame(ALL), "data"),
    Output(ID.status(ALL), "children"),
    Output(ID.stop_btn(ALL), "disabled"),
    Output(ID.CURVES, "figure", allow_duplicate=True),
    Output(ID.SEEN, "data", allow_duplicate=True),
    Output(ID.SPEEDUP, "children", allow_duplicate=True),
    Input(ID.POLL, "data"),
    State(ID.LIVE, "data"),
    State(ID.SEEN, "data"),
    State(ids.SESSION, "data"),
    State(ID.THRESH_METRIC, "value"),
    State(ID.THRESH_VALUE, "value"),
    State(ID.frame(ALL), "id"),
    prevent_initial_call=True,
)
def poll_runs(tick, live, seen, sid, metric, threshold, frame_ids):
    """Send each live card what is new: its topology once, status, curve points (a Patch)."""
    card_ids = [f["index"] for f in frame_ids]
    if not live or not card_ids or not (seen or {}).get("_active"):
        return [NU] * len(card_ids), [NU] * len(card_ids), [NU] * len(card_ids), NU, NU, NU
    r = reg.get()
    snaps = r.snapshots(card_ids, sid, dict(seen))
    frames, status, stops, patch, seen, new_rows = poll_update(
        live, seen, card_ids, snaps, r.config.frame_ms, lambda rid, t: _wall_at(r, rid, sid, t)
    )
    ended = not seen["_active"]
    speedup = _speedup(live, sid, metric, threshold)[0] if new_rows or ended else NU
    seen["_n"] = tick
    return frames, status, stops, patch, seen, speedup


def _wall_at(r, run_id: str, sid: str, step: int) -> float | None:
    snap = r.snapshot(run_id, sid)  # the whole history, once per run (at the stage switch)
    return wall_time_at(snap.rows if snap else (), step)


@callback(
    Output(ID.SPEEDUP, "children", allow_duplicate=True),
    Output(ID.THRESH_MSG, "children"),
    Input(ID.THRESH_METRIC, "value"),
    Input(ID.THRESH_VALUE, "value"),
    State(ID.LIVE, "data"),
    State(ids.SESSION, "data"),
    prevent_initial_call=True,
)
def update_speedup(metric, threshold, live, sid):
    return _speedup(live, sid, metric, threshold)


@callback(
    Output(method.ID.RUN_MSG, "children", allow_duplicate=True),
    Input(ID.stop_btn(ALL), "n_clicks"),
    State(ids.SESSION, "data"),
    prevent_initial_call=True,
)
def stop_run(clicks, sid):
    """Stop one run (owner only); it keeps everything computed so far."""
    if not triggered_value():
        return NU
    if reg.get().cancel(ctx.triggered_id["index"], by=sid):
        return "Stop requested: the run ends after its current chunk."
    return "That run has already finished."


@callback(
    Output(ID.share_msg(MATCH), "children"),
    Input(ID.share_btn(MATCH), "n_clicks"),
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
    return share_link(href, run_id)


# ---- clientside: poll chain, 3Dmol viewers (assets/workbench.js) -----------------------------
clientside_callback(
    ClientsideFunction("wb", "onSeen"),
    Output(ID.POLL_ACK, "data"),
    Input(ID.SEEN, "data"),
    prevent_initial_call=True,
)
clientside_callback(
    ClientsideFunction("wb", "watchdog"),
    Output(ID.POLL_ACK, "data", allow_duplicate=True),
    Input(ID.WATCHDOG, "n_intervals"),
    State(ID.SEEN, "data"),
    prevent_initial_call=True,
)
clientside_callback(
    ClientsideFunction("wb", "frame"),
    Output(ID.ack(MATCH), "data"),
    Input(ID.frame(MATCH), "data"),
)
clientside_callback(
    ClientsideFunction("wb", "fit"),
    Output(ID.fit_ack(MATCH), "data"),
    Input(ID.fit_btn(MATCH), "n_clicks"),
    prevent_initial_call=True,
)
