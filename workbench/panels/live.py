"""Panels 4-5, Live runs side by side: one card per run (3D view, status, stop, share,
exports), the curves of the group, and the speed-up table.

Run starts the checked methods of the form as one group (``start_run``). One poll callback
(``poll_runs``) then updates every card; polls form a chain driven by assets/workbench.js (the
next tick is scheduled only after a reply is applied, one chain per group). Each card shows
its status line (re-rendered on every poll while the run is active, so the elapsed time ticks)
and a structure line (bonds intact, loop contacts, Rg; CA RMSD for proteins). Coordinates
after the first frame stream through /_wb/frames (workbench/frames.py), not through Dash.

The curves are re-assigned whole (thinned) from the runs' logged columns when rows arrive
(``figures.curves_patch``): the energy gap to the group's best moves as runs improve, and an
assignment applied twice or late cannot duplicate a point. The speed-up table reads each run's
final value and first reach of the threshold from the registry (``curve_final``,
``curve_reach``) and its best value from the same columns; GD is its reference whenever GD
runs, else the run picked in the reference dropdown.
"""

from __future__ import annotations

import math
import time
from typing import NamedTuple

import numpy as np
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
from engine.loops import BOND_REST_LENGTH
from engine.methods import METHODS
from engine.systems import STRETCH_FACTOR

from .. import components as C
from .. import figures, forms, ids, jobs, teach_views
from .. import registry as reg
from ..registry import Busy
from . import PageContext, method, system, triggered_value


class ID:
    LIVE = "wb-live"  # Store: {"runs": [{"id", "label", "method", "color", "div"}], "rmsd": bool,
    # "group", "fold": True for a protein folding from a non-native start (RMSD curve first)}
    SEEN = "wb-seen"  # Store: {run_id: {"rows", "frame", ...}, "_active", "_ms", "_n", "_group"}
    POLL = "wb-poll"  # Store: tick counter; each increment runs poll_runs once (workbench.js)
    POLL_ACK = "wb-poll-ack"  # dummy output of the clientside poll scheduler
    WATCHDOG = "wb-watchdog"  # Interval restarting the poll chain if a poll request was lost
    CARDS = "wb-live-cards"
    CURVES = "wb-curves"
    THRESH_METRIC = "wb-thresh-metric"
    THRESH_VALUE = "wb-thresh-value"
    THRESH_MSG = "wb-thresh-msg"
    SPEEDUP = "wb-speedup"
    REFERENCE = "wb-speedup-ref"  # dropdown: the reference run when no GD runs
    VIEW_PREFIX = "wb-view-"  # + run id: DOM id of the div hosting a run's 3Dmol viewer
    BADGE_CLASS = "wb-viewer-badge"  # class of a view's "n stretched bonds" badge (workbench.js)
    RECONNECT_CLASS = "wb-reconnect"  # class of a view's "reconnecting…" tag (workbench.js)

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
    def structure(run_id: str) -> dict:
        """The card's structure line (bonds intact, loop contacts, Rg; CA RMSD)."""
        return {"type": "run-structure", "index": run_id}

    @staticmethod
    def stop_btn(run_id: str) -> dict:
        return {"type": "run-stop", "index": run_id}

    @staticmethod
    def fit_btn(run_id: str) -> dict:
        """Frame a run's own structure in its 3D view again and follow it (this view only)."""
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

    @staticmethod
    def projection(run_id: str) -> dict:
        """The card's slow-mode projection chart (workbench/teach_views.py)."""
        return {"type": "run-projection", "index": run_id}

    @staticmethod
    def verdict(run_id: str) -> dict:
        """The card's loop verdict badge (workbench/teach_views.py)."""
        return {"type": "run-verdict", "index": run_id}


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
            dcc.Interval(id=ID.WATCHDOG, interval=WATCHDOG_MS),
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
                    html.Span("reference", className="wb-label-inline", title=REF_HELP),
                    dcc.Dropdown(
                        id=ID.REFERENCE,
                        options=[],
                        value=None,
                        clearable=False,
                        searchable=False,
                        disabled=True,
                        placeholder="GD",
                        className="wb-dropdown wb-ref-dropdown",
                    ),
                    html.Div(id=ID.THRESH_MSG, className="wb-msg"),
                ],
                className="wb-thresh",
            ),
            html.Div(id=ID.SPEEDUP),
        ],
        number="4–5",
    )


# The watchdog restarts a poll chain after 60 s without a reply (assets/workbench.js); checking
# every 10 s is enough, and each tick is a store update that every component on the page hears.
WATCHDOG_MS = 10_000

REF_HELP = "Speed-ups divide by this run's steps and time: GD whenever GD runs, else your pick."


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
            html.Div("", id=ID.structure(rid), className="wb-structure"),
            html.Div(id=ID.verdict(rid), className="wb-verdict-row"),  # teaching views
            dcc.Graph(
                id=ID.projection(rid),
                figure=teach_views.projection_figure([], [], note="waiting for the first frames"),
                config={"displaylogo": False, "displayModeBar": False},
                className="wb-projection",
            ),
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
                        title="frame this view's structure and follow it again (the view follows "
                        "it until you rotate or zoom; rotation stays linked)",
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


def speedup_table(
    rows: list[dict], metric: str, threshold: float | None, note: str = ""
) -> html.Div:
    """Final and best value, steps and time to the threshold and the speed-ups per run, the best
    entry of each column marked (figures.speedup_rows), and the threshold line below."""
    if threshold is None:
        return html.Div("Speed-up appears once the runs have logged values.", className="wb-muted")
    heads = [
        ("method", None),
        (f"final {metric}", "final"),
        (f"best {metric}", "best"),
        (f"steps to ≤ {threshold:.5g}", "step"),
        ("time to it (s)", "time"),
        ("speed-up (time)", "speedup_time"),
        ("speed-up (steps)", "speedup_steps"),
    ]
    body = [html.Tr([_method_cell(r)] + [_cell(r, col) for _, col in heads[1:]]) for r in rows]
    return html.Div(
        [
            html.Table(
                [html.Thead(html.Tr([html.Th(h) for h, _ in heads])), html.Tbody(body)],
                className="wb-table wb-speedup-table",
            ),
            html.Div(note, className="wb-thresh-note"),
            html.Div(
                "★ best in its column. Speed-up = the reference's steps or time ÷ this run's; "
                "time to it is the run's logged time at that row (registry curve_reach) and "
                "includes computing the slow modes (CG, GNN).",
                className="wb-muted",
            ),
        ]
    )


def _method_cell(r: dict):
    label = r["label"].upper()
    if r["reference"]:
        return html.Td([label, html.Span(" reference", className="wb-ref-tag")], className="wb-ref")
    return html.Td(label)


def _cell(r: dict, col: str):
    v = r.get(col)
    if col.startswith("speedup"):
        text = "reference" if r["reference"] and r["reached"] else _x(v)
    elif v is None:
        text = "not reached" if col in ("step", "time") else "—"
    elif col == "step":
        text = f"{v:,}"
    elif col == "time":
        text = f"{v:.2f}"
    else:
        text = f"{v:.5g}"
    if col in r.get("best_in", ()):
        return html.Td([text, " ★"], className="wb-best", title="best in this column")
    return html.Td(text)


def _x(v) -> str:
    return "—" if v is None else f"{v:.2f}×"


# ---- pure helpers ----------------------------------------------------------------------------
class Group(NamedTuple):
    """A side-by-side group just started: what start_run sends to the page."""

    runs: list[dict]  # [{"id", "label", "method", "color", "div"}]
    live: dict  # the LIVE store
    figure: object  # empty curves figure with one trace per run and metric
    seen: dict  # the SEEN store: starts the poll chain
    message: str


def new_group(
    run_ids, specs, protein: bool, workers: int, poll_ms: int, waiting: dict | None = None
) -> Group:
    """The page state of runs ``run_ids`` just submitted for ``specs`` (same order);
    ``waiting``: {run id: queue position of a run waiting for a worker, else None}
    (``RunRegistry.waiting``)."""
    runs = []
    for rid, spec in zip(run_ids, specs, strict=True):
        m = forms.method_of(spec)
        color, div = METHODS[m].color, ID.viewer_dom(rid)
        runs.append({"id": rid, "label": spec.label, "method": m, "color": color, "div": div})
    fold = protein and folding(specs[0])
    fig = figures.curves_figure(runs, with_rmsd=protein, energy_unit="kJ/mol" if protein else "",
                                energy_label=figures.reported_energy(specs),
                                rmsd_first=fold)  # fmt: skip
    message = f"Started {', '.join(r['label'].upper() for r in runs)} (seed {specs[0].seed})."
    if waiting is not None:
        message = queue_message(runs, waiting, specs[0].seed, workers)
    elif len(runs) > workers:
        message += f" {len(runs) - workers} run(s) wait for a free worker ({workers} workers)."
    # The group's id ties poll replies to it: a reply to a poll of the previous group that
    # lands after Run must not end the new group's poll chain (see poll_runs).
    seen = {"_active": True, "_ms": poll_ms, "_n": 0, "_group": run_ids[0]}
    live = {"runs": runs, "rmsd": protein, "group": run_ids[0], **({"fold": True} if fold else {})}
    return Group(runs, live, fig, seen, message)


def queue_message(runs: list[dict], waiting: dict, seed: int, workers: int) -> str:
    """ "Started GD, GNN (seed 0)." when every run has a worker, else which runs wait and
    their queue positions."""
    started = [r["label"].upper() for r in runs if waiting.get(r["id"]) is None]
    queued = [f"{r['label'].upper()} at position {waiting[r['id']]}"
              for r in runs if waiting.get(r["id"]) is not None]  # fmt: skip
    why = f"in the queue for {workers} busy worker(s)"
    if not queued:
        return f"Started {', '.join(started)} (seed {seed})."
    if not started:
        return f"Queued {', '.join(queued)} (seed {seed}), {why}."
    return f"Started {', '.join(started)} (seed {seed}); queued {', '.join(queued)}, {why}."


def folding(spec) -> bool:
    """A protein run from a start other than its (PDB) native structure: its CA-RMSD to the
    native is the main curve and the native is overlaid in its 3D view."""
    return spec.system.kind == "protein" and bool(spec.system.pdb) and spec.system.start != "native"


def native_overlay(spec_dict: dict | None) -> str | None:
    """PDB text of a folding run's native structure, superposed on its start (CA atoms, in
    the displayed frame), for the translucent overlay; None for other runs."""
    from engine import RunSpec
    from engine import io as engine_io

    try:
        spec = RunSpec.from_dict(spec_dict or {})
    except (SpecError, TypeError):
        return None
    if not folding(spec):
        return None
    system = jobs.build_system(spec.system, spec.seed)  # cached: the run built the same one
    if system.reference is None:
        return None
    import mdtraj

    ca = [a.index for a in system.topology.atoms if a.name == "CA"]
    native = mdtraj.Trajectory(np.asarray(system.reference, np.float32)[None], system.topology)
    start = mdtraj.Trajectory(np.asarray(system.x0, np.float32)[None], system.topology)
    native.superpose(start, 0, atom_indices=ca or None)
    return engine_io.pdb_text(system, np.asarray(native.xyz[0], np.float64))


def frame_payload(snap, link: list[str], period: int):
    """First frame of a live run for the clientside viewer: its topology, the newest
    coordinates, the group to link cameras with, and where its frame stream starts."""
    if snap.view is None:
        return NU
    scale = snap.view.get("scale", 1.0)
    loop = snap.view.get("kind") == "loop"
    view = snap.view
    if view.get("kind") == "protein" and "native" not in view:
        native = native_overlay(snap.spec)
        view = {**view, "native": native} if native else view
    return {
        "div": ID.viewer_dom(snap.run_id),
        "key": snap.run_id,
        "step": snap.frame_step,
        "xyz": jobs.view_xyz(snap.frame_x, snap.view) if snap.frame_x is not None else None,
        "view": view,
        "link": link,
        "run": snap.run_id,
        "since": snap.frame_no,
        "period": period,
        # a loop bond longer than this (display units) is drawn apart and counted
        "stretch": STRETCH_FACTOR * BOND_REST_LENGTH * scale if loop else None,
    }


class CardUpdate(NamedTuple):
    frame: object  # frame_payload or NU
    status: object  # status line or NU
    structure: object  # structure line or NU
    stop: object  # True disables the Stop button, else NU
    seen: dict  # this card's new counters
    rows: tuple  # rows new since the last poll


def card_update(snap, s: dict, link: list[str], period: int, kind: str = "loop") -> CardUpdate:
    """What one card gets from ``snap`` given its counters ``s``. The status line is
    re-rendered on every poll while the run is active (its elapsed time ticks) and once more
    when it ends; the structure line when rows arrive (``kind``: "loop" or "protein")."""
    if snap is None:
        return CardUpdate(NU, "not found", NU, True, {**s, "done": True}, ())
    s = dict(s)
    frame = NU if s.get("view") else frame_payload(snap, link, period)
    if frame is not NU:
        s["frame"], s["view"] = snap.frame_no, True
    if snap.rows:
        s["rows"] = snap.n_rows
    stop = True if snap.terminal and not s.get("ended") else NU
    fresh = not snap.terminal or snap.version != s.get("version")
    status = figures.status_text(snap) if fresh else NU
    structure = figures.structure_text(snap.rows[-1], kind) if snap.rows else NU
    s["version"], s["ended"] = snap.version, snap.terminal
    s["done"] = snap.terminal and not snap.rows and bool(s.get("view") or snap.view is None)
    return CardUpdate(frame, status, structure, stop, s, tuple(snap.rows or ()))


class PollUpdate(NamedTuple):
    frames: list
    status: list
    structure: list
    stops: list
    seen: dict
    new_rows: bool  # rows arrived: redraw the curves and the speed-up table
    switches: dict  # {run_id: stage-switch step}


def poll_update(live: dict, seen: dict, card_ids: list[str], snaps: dict, period: int):
    """The card outputs and new counters of one poll; ``snaps`` = {run id: snapshot or None}."""
    runs = [r for r in live["runs"] if r["id"] in card_ids]
    link = [r["div"] for r in runs]
    kind = "protein" if live.get("rmsd") else "loop"
    seen = dict(seen)
    updates = {}
    for rid in card_ids:
        u = card_update(snaps.get(rid), seen.get(rid) or {}, link, period, kind)
        updates[rid], seen[rid] = u, u.seen
    # The chain ends only when every run of the group has a card here and is done: a poll
    # that saw the page before the group's cards (or another group's cards) keeps it going.
    group = [r["id"] for r in live["runs"]]
    shown = all(rid in card_ids for rid in group)
    seen["_active"] = not (shown and all(seen[rid].get("done") for rid in card_ids))
    fields = ("frame", "status", "structure", "stop")
    cols = [[getattr(updates[rid], f) for rid in card_ids] for f in fields]
    switches = {
        rid: snap.stage_switch_step
        for rid, snap in snaps.items()
        if snap is not None and snap.stage_switch_step is not None
    }
    new_rows = any(u.rows for u in updates.values())
    return PollUpdate(*cols, seen, new_rows, switches)


def reference_run(live: dict, chosen: str | None) -> str | None:
    """The speed-up reference: GD's run whenever GD runs, else ``chosen``, else the first."""
    runs = live["runs"] if live else []
    gd = next((r["id"] for r in runs if r.get("method") == "gd"), None)
    if gd is not None:
        return gd
    ids = [r["id"] for r in runs]
    return chosen if chosen in ids else (ids[0] if ids else None)


def reference_options(live: dict) -> tuple[list[dict], str | None, bool]:
    """(options, value, disabled) of the reference dropdown: fixed to GD when GD runs."""
    opts = [{"label": r["label"].upper(), "value": r["id"]} for r in live["runs"]]
    has_gd = any(r.get("method") == "gd" for r in live["runs"])
    return opts, reference_run(live, None), has_gd


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


def speedup_block(
    live, metric: str, threshold_text, final, reach, best=None, statuses=None, chosen=None
):
    """(speed-up table or NU, message) of the live group; ``final(run_id, metric)``,
    ``reach(run_id, metric, threshold)`` and ``best(run_id, metric)`` answer from the registry
    without copying histories into the page; ``statuses`` = {run_id: status} explains runs that
    did not reach the threshold; ``chosen``: the reference picked when no GD runs."""
    if not live:
        return NU, ""
    threshold, error = parse_threshold(threshold_text)
    if error:
        return NU, error
    labels = {r["id"]: r["label"] for r in live["runs"]}
    ref = reference_run(live, chosen)
    finals = {rid: final(rid, metric) for rid in labels}
    auto = threshold is None
    if auto:
        threshold = analysis.default_threshold(finals, base=ref)
    if threshold is None:
        return speedup_table([], metric, None), ""
    reaches = {rid: reach(rid, metric, threshold) for rid in labels}
    bests = {rid: best(rid, metric) for rid in labels} if best else {}
    rows = figures.speedup_rows(reaches, labels, threshold, finals, bests, reference=ref)
    note = figures.threshold_note(metric, threshold, rows, auto, statuses)
    return speedup_table(rows, metric, threshold, note), ""


def share_link(href: str | None, run_id: str) -> list:
    """The read-only link to a shared run, on this page's address."""
    base = (href or "/").split("?")[0]
    return ["Read-only link: ", html.Code(f"{base}?run={run_id}")]


def _columns(r, run_id: str, sid: str) -> dict:
    """A run's logged columns {name: [n] array} (a copy of the registry's numpy columns)."""
    data = r.export_data(run_id, sid)
    return data["metrics"] if data else {}


def best_value(columns: dict, metric: str) -> float | None:
    """The lowest finite value of ``metric`` in a run's columns, or None."""
    v = np.asarray(columns.get(metric, ()), np.float64)
    v = v[np.isfinite(v)]
    return float(v.min()) if v.size else None


def _speedup(live, sid, metric, threshold_text, chosen, columns=None, statuses=None):
    r = reg.get()
    if columns is None and live:
        columns = {run["id"]: _columns(r, run["id"], sid) for run in live["runs"]}
    if statuses is None and live:
        ids_ = [run["id"] for run in live["runs"]]
        nothing = {"rows": 1 << 62, "frame": 1 << 62}  # statuses only: no rows, no frame
        snaps = r.snapshots(ids_, sid, {rid: nothing for rid in ids_})
        statuses = {rid: snap.status for rid, snap in snaps.items()}
    return speedup_block(
        live,
        metric,
        threshold_text,
        lambda rid, m: r.curve_final(rid, sid, m),
        lambda rid, m, t: r.curve_reach(rid, sid, m, t),
        lambda rid, m: best_value((columns or {}).get(rid) or {}, m),
        statuses,
        chosen,
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
    waiting = r.waiting(run_ids)
    g = new_group(run_ids, specs, tab == "protein", r.config.workers, r.config.poll_ms, waiting)
    cards = [run_card(run) for run in g.runs]
    return cards, g.figure, {"display": "block"}, g.live, g.seen, g.message, None


@callback(
    Output(ID.REFERENCE, "options"),
    Output(ID.REFERENCE, "value"),
    Output(ID.REFERENCE, "disabled"),
    Input(ID.LIVE, "data"),
    prevent_initial_call=True,
)
def reference_picker(live):
    """The reference dropdown of a new group: fixed to GD when GD runs, else a free pick."""
    return reference_options(live) if live else (NU, NU, NU)


@callback(
    Output(ID.frame(ALL), "data"),
    Output(ID.status(ALL), "children"),
    Output(ID.structure(ALL), "children"),
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
    State(ID.REFERENCE, "value"),
    prevent_initial_call=True,
)
def poll_runs(tick, live, seen, sid, metric, threshold, frame_ids, chosen=None):
    """Send each live card what is new: its topology once, status and structure lines, the
    curves (whole traces, when rows arrived) and the speed-up table."""
    card_ids = [f["index"] for f in frame_ids]
    r = reg.get()
    if live and (seen or {}).get("_group") != live.get("group"):
        # The store holds a late reply for the previous group (Run was pressed while it was
        # polled): start this group's counters afresh instead of trusting its "_active".
        seen = {"_active": True, "_ms": r.config.poll_ms, "_group": live.get("group")}
    if not live or not card_ids or not seen.get("_active"):
        return *([NU] * len(card_ids) for _ in range(4)), NU, NU, NU
    snaps = r.snapshots(card_ids, sid, dict(seen))
    u = poll_update(live, seen, card_ids, snaps, r.config.frame_ms)
    seen = u.seen
    ended = not seen["_active"]
    patch = speedup = NU
    # Charts are redrawn at most every chart_ms while runs are live: each redraw holds the
    # page's main thread that also draws the 3D frames (docs/benchmarks-ui.md).
    pending = u.new_rows or seen.get("_dirty", False)
    now = time.time()
    due = ended or now - seen.get("_chart_t", 0.0) >= r.config.chart_ms / 1000
    seen["_dirty"], seen["_charts"] = pending and not due, pending and due
    if pending and due:
        seen["_chart_t"] = now
        runs = [run for run in live["runs"] if run["id"] in card_ids]
        columns = {rid: _columns(r, rid, sid) for rid in card_ids}
        fig = figures.curves_patch(runs, columns, u.switches, with_rmsd=bool(live.get("rmsd")),
                                   rmsd_first=bool(live.get("fold")))  # fmt: skip
        patch = NU if fig is None else fig
        statuses = {rid: snap.status for rid, snap in snaps.items() if snap is not None}
        speedup = _speedup(live, sid, metric, threshold, chosen, columns, statuses)[0]
    seen["_n"] = tick
    return u.frames, u.status, u.structure, u.stops, patch, seen, speedup


@callback(
    Output(ID.projection(ALL), "figure"),
    Output(ID.verdict(ALL), "children"),
    Input(ID.SEEN, "data"),
    State(ID.LIVE, "data"),
    State(ids.SESSION, "data"),
    State(ID.projection(ALL), "id"),
    prevent_initial_call=True,
)
def teaching_views(seen, live, sid, proj_ids):
    """Each card's slow-mode projection chart and loop verdict, after every poll (the modes
    are computed off the request thread; see workbench/teach_views.py)."""
    card_ids = [p["index"] for p in proj_ids]
    if not (seen or {}).get("_charts"):  # the curves' cadence (poll_runs, chart_ms)
        return [NU] * len(card_ids), [NU] * len(card_ids)
    figs, badges = teach_views.card_views(reg.get(), live, sid, card_ids)
    return [NU if f is None else f for f in figs], [NU if b is None else b for b in badges]


@callback(
    Output(ID.SPEEDUP, "children", allow_duplicate=True),
    Output(ID.THRESH_MSG, "children"),
    Input(ID.THRESH_METRIC, "value"),
    Input(ID.THRESH_VALUE, "value"),
    State(ID.LIVE, "data"),
    State(ids.SESSION, "data"),
    Input(ID.REFERENCE, "value"),
    prevent_initial_call=True,
)
def update_speedup(metric, threshold, live, sid, chosen=None):
    return _speedup(live, sid, metric, threshold, chosen)


# How long the Stop click's reply waits for the run to end, so the card reads "stopped" at
# once instead of at the next poll (a running run ends within one chunk, tens of ms).
STOP_REPLY_WAIT_S = 0.6


@callback(
    Output(method.ID.RUN_MSG, "children", allow_duplicate=True),
    Output(ID.status(ALL), "children", allow_duplicate=True),
    Input(ID.stop_btn(ALL), "n_clicks"),
    State(ID.status(ALL), "id"),
    State(ids.SESSION, "data"),
    prevent_initial_call=True,
)
def stop_run(clicks, status_ids, sid):
    """Stop one run (owner only); it keeps everything computed so far. The reply carries the
    card's status line once the run has ended (or is still stopping after STOP_REPLY_WAIT_S)."""
    statuses = [NU] * len(status_ids)
    if not triggered_value():
        return NU, statuses
    r, run_id = reg.get(), ctx.triggered_id["index"]
    if not r.cancel(run_id, by=sid):
        snap = r.snapshot(run_id, sid)
        if snap is None or not snap.is_owner:
            return "Only the session that started a run can stop it.", statuses
        return "That run has already finished.", statuses
    end = time.monotonic() + STOP_REPLY_WAIT_S
    snap = r.snapshot(run_id, sid)
    while snap is not None and not snap.terminal and time.monotonic() < end:
        time.sleep(0.02)
        snap = r.snapshot(run_id, sid)
    where = [i for i, sid_ in enumerate(status_ids) if sid_["index"] == run_id]
    if snap is not None and where:
        statuses[where[0]] = figures.status_text(snap)
    if snap is not None and snap.terminal:
        return "Stopped; everything computed so far is kept.", statuses
    return "Stop requested: the run ends after its current chunk.", statuses


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
