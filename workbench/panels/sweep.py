"""Panel 7, Sweep: vary up to three declared fields over the current form's methods and
seeds, run the sweep on Dask (workbench/sweeps.py), watch the paper's Figure 3 fill in.

The base of the sweep is the whole form (each method keeps its own settings, as a Run would);
an axis is one declared field (engine/config.py) and its values in the CLI's syntax
("0.001:0.1:log:5", "8,16,32"). The run count and the estimated time are shown before Start.
Results: the Figure 3 scatter (final energy against wall time, mean ± sd over seeds), a
parallel-coordinates view and a sortable table; clicking a point or a row opens that run in
the Runs panel's replay. The sweep belongs to this session and survives a restart.
"""

from __future__ import annotations

import time

from dash import ALL, Input, Output, State, callback, ctx, dash_table, dcc, html
from dash import no_update as NU

from engine import RunSpec, SpecError, schema
from engine.sweeps import SweepSpec, parse_seeds, parse_vary

from .. import components as C
from .. import forms, ids, polls, sweep_views, sweeps
from .. import registry as reg
from . import PageContext, method, runs, system

MAX_AXES = 3


class ID:
    FIELD = "wb-sweep-field"  # + index: the field of axis i
    VALUES = "wb-sweep-values"  # + index: its values
    SEEDS = "wb-sweep-seeds"
    PLAN = "wb-sweep-plan"  # run count and estimate, or the message naming the bad input
    START = "wb-sweep-start"
    CANCEL = "wb-sweep-cancel"
    MSG = "wb-sweep-msg"
    CURRENT = "wb-sweep-current"  # Store: {"id": sweep id, "version": n}
    POLL = "wb-sweep-poll"  # tick and reply stores of its poll (workbench/polls.py)
    STATUS = "wb-sweep-status"
    SCATTER = "wb-sweep-scatter"
    PARALLEL = "wb-sweep-parallel"
    TABLE = "wb-sweep-table"
    EXPORT_CSV = "wb-sweep-export-csv"
    EXPORT_JSON = "wb-sweep-export-json"
    DOWNLOAD = "wb-sweep-download"


def field_options() -> list[dict]:
    """Every declared numeric or choice field a sweep may vary, labelled with its range."""
    out = []
    for e in schema.params(RunSpec):
        if e.param.kind in ("int", "float", "choice") and e.param.flag != "":
            rng = e.param.interval() or ", ".join(map(str, e.param.values))
            out.append({"label": f"{e.param.label} ({e.path}; {rng})", "value": e.path})
    return out


POLL = polls.chain(ID.POLL, 1000)  # a followed sweep's progress, until it ends


# ---- layout ----------------------------------------------------------------------------------
def layout(ctx: PageContext):
    del ctx
    axes = [
        html.Div(
            [
                dcc.Dropdown(
                    id=f"{ID.FIELD}-{i}",
                    options=field_options(),
                    placeholder=f"axis {i + 1}",
                    value="optim.learning_rate" if i == 0 else None,
                    className="wb-sweep-field",
                ),
                dcc.Input(
                    id=f"{ID.VALUES}-{i}",
                    type="text",
                    debounce=0.4,
                    className="wb-input",
                    value="0.005:0.05:log:3" if i == 0 else "",
                    placeholder="v1,v2,... or lo:hi:lin|log|random:count",
                ),
            ],
            className="wb-sweep-axis",
        )  # fmt: skip
        for i in range(MAX_AXES)
    ]
    controls = [
        *axes,
        C.extra_row(
            "sweep.seeds",
            "seeds",
            dcc.Input(id=ID.SEEDS, type="text", value="0-2", debounce=0.4, className="wb-input"),
            "Each seed is its own starting structure x0: 0-4 or 0,3,7.",
        ),  # fmt: skip
        html.Div(id=ID.PLAN, className="wb-muted wb-sweep-plan", role="status"),
        html.Div(
            [
                html.Button("Start sweep", id=ID.START, className="wb-btn wb-btn-primary"),
                html.Button("Cancel sweep", id=ID.CANCEL, className="wb-btn"),
                html.Button("results CSV", id=ID.EXPORT_CSV, className="wb-btn"),
                html.Button("sweep JSON", id=ID.EXPORT_JSON, className="wb-btn"),
            ],
            className="wb-run-row",
        ),
        html.Div(id=ID.MSG, className="wb-msg", role="alert"),
        html.Div(id=ID.STATUS, className="wb-sweep-status", role="status"),
    ]
    results = [
        dcc.Graph(id=ID.SCATTER, config={"displaylogo": False}),
        dcc.Graph(id=ID.PARALLEL, config={"displaylogo": False}),
        dash_table.DataTable(
            id=ID.TABLE,
            sort_action="native",
            page_size=12,
            style_table={"overflowX": "auto"},
            style_cell={"fontSize": 12, "padding": "2px 6px"},
        ),  # fmt: skip
        dcc.Store(id=ID.CURRENT, storage_type="session"),
        *POLL.stores(),
        dcc.Download(id=ID.DOWNLOAD),
    ]
    hint = (
        "The methods and every other setting come from the form above (System, Method); "
        "the sweep varies up to three fields over them. Click a point or a row to replay it."
    )
    return C.section(
        "Sweep",
        [html.P(hint, className="wb-muted"), html.Div(controls), html.Div(results)],
        number="7",
    )


# ---- pure helpers ----------------------------------------------------------------------------
def sweep_from_form(values: dict, tab: str, source, token, methods, axes, seeds) -> SweepSpec:
    """The sweep the panel describes; SpecError names the form field, axis or seeds."""
    specs = system.run_specs(values, methods, tab, source, token)
    by_method = {forms.method_of(s): s for s in specs}
    parsed = tuple(parse_vary(f"{f}={v}") for f, v in axes if f and (v or "").strip())
    return SweepSpec.from_method_specs(
        by_method,
        axes=parsed,
        seeds=parse_seeds(seeds or ""),
        name=f"sweep-{time.strftime('%H%M%S')}",
    )


def plan_text(spec: SweepSpec, seconds: float) -> str:
    points = spec.n_runs // (len(spec.methods) * len(spec.seeds))
    return (
        f"{spec.n_runs} runs = {points} settings × {len(spec.methods)} methods × "
        f"{len(spec.seeds)} seeds · estimated {seconds / 60:.1f} min at the full step budgets "
        f"(early stopping ends runs sooner)"
    )


def status_text(snap) -> str:
    if snap is None:
        return ""
    c = snap.counts
    done = len(snap.rows)
    text = f"{snap.name} · {snap.status} · {done} of {snap.n_runs} runs"
    if c.get("failed"):
        text += f" · {c['failed']} failed"
    if c.get("diverged"):
        text += f" · {c['diverged']} diverged"
    text += f" · {snap.elapsed:.0f} s"
    if not snap.terminal and done:
        eta = snap.elapsed / done * (snap.n_runs - done)
        text += f" · about {eta:.0f} s left"
    return text + (f" — {snap.message}" if snap.message else "")


def _axes(fields, values) -> list[tuple]:
    return list(zip(fields, values, strict=True))


FORM_STATE = [
    State(ids.field(ALL), "value"),
    State(ids.field(ALL), "id"),
    State(system.ID.TABS, "value"),
    State(system.ID.PROTEIN_SOURCE, "value"),
    State(system.ID.UPLOAD_TOKEN, "data"),
    State(method.ID.METHODS, "value"),
]
AXIS_INPUTS = [Input(f"{ID.FIELD}-{i}", "value") for i in range(MAX_AXES)] + [
    Input(f"{ID.VALUES}-{i}", "value") for i in range(MAX_AXES)
]


def _split(axis_values: tuple) -> list[tuple]:
    return _axes(axis_values[:MAX_AXES], axis_values[MAX_AXES:])


# ---- callbacks -------------------------------------------------------------------------------
@callback(Output(ID.PLAN, "children"), *AXIS_INPUTS, Input(ID.SEEDS, "value"), *FORM_STATE)
def show_plan(*args):
    """Run count and estimate as the user edits, or the message naming what is wrong."""
    axis_values, (seeds, values, field_ids, tab, source, token, methods) = args[:6], args[6:]
    try:
        form = system.form_values(values, field_ids)
        spec = sweep_from_form(form, tab, source, token, methods, _split(axis_values), seeds)
    except SpecError as err:
        return f"Not ready: {err}"
    return plan_text(spec, sweeps.get().estimate(spec))


@callback(
    Output(ID.CURRENT, "data"),
    Output(ID.MSG, "children"),
    Input(ID.START, "n_clicks"),
    *[State(f"{ID.FIELD}-{i}", "value") for i in range(MAX_AXES)],
    *[State(f"{ID.VALUES}-{i}", "value") for i in range(MAX_AXES)],
    State(ID.SEEDS, "value"),
    *FORM_STATE,
    State(ids.SESSION, "data"),
    prevent_initial_call=True,
)
def start_sweep(n, *args):
    """Start the described sweep on the cluster; the panel then follows it."""
    axis_values, (seeds, values, field_ids, tab, source, token, methods, sid) = args[:6], args[6:]
    try:
        form = system.form_values(values, field_ids)
        spec = sweep_from_form(form, tab, source, token, methods, _split(axis_values), seeds)
        sweep_id = sweeps.get().submit(spec, sid)
    except (SpecError, ValueError, PermissionError) as err:
        return NU, f"Not started: {err}"
    return {"id": sweep_id}, ""


@callback(
    Output(ID.MSG, "children", allow_duplicate=True),
    Input(ID.CANCEL, "n_clicks"),
    State(ID.CURRENT, "data"),
    State(ids.SESSION, "data"),
    prevent_initial_call=True,
)
def cancel_sweep(n, current, sid):
    ok = bool(current) and sweeps.get().cancel(current["id"], sid)
    return "Cancelling: running runs stop at their next chunk." if ok else "No active sweep."


@callback(
    Output(ID.STATUS, "children"),
    Output(ID.SCATTER, "figure"),
    Output(ID.PARALLEL, "figure"),
    Output(ID.TABLE, "columns"),
    Output(ID.TABLE, "data"),
    Output(POLL.reply, "data"),
    Input(POLL.tick, "data"),
    Input(ID.CURRENT, "data"),
    State(ids.SESSION, "data"),
)
def poll_sweep(n, current, sid):
    """Status, scatter, parallel coordinates and table of the followed sweep."""
    snap = sweeps.get().snapshot((current or {}).get("id"), sid)
    if snap is None:
        return (
            "",
            sweep_views.waiting_figure(
                "No sweep yet: Start sweep plots each run's final energy against its wall time here"
            ),
            sweep_views.waiting_figure(
                "and here every swept setting against the final energy (parallel coordinates)."
            ),
            NU,
            NU,
            POLL.answer(n, False),
        )
    fields = [a.field for a in snap.spec.axes]
    columns, data = sweep_views.table(snap.rows, fields)
    return (
        status_text(snap),
        sweep_views.scatter_figure(snap.rows, fields, snap.n_runs),
        sweep_views.parallel_figure(snap.rows, fields),
        columns,
        data,
        POLL.answer(n, not snap.terminal),
    )


@callback(
    Output(runs.ID.REPLAY, "data", allow_duplicate=True),
    Output(ID.MSG, "children", allow_duplicate=True),
    Input(ID.SCATTER, "clickData"),
    Input(ID.TABLE, "active_cell"),
    State(ID.CURRENT, "data"),
    State(ids.SESSION, "data"),
    prevent_initial_call=True,
)
def open_from_sweep(click, cell, current, sid):
    """A click on a point (its best run) or a table row opens that run in the replay."""
    key = (cell or {}).get("row_id") if cell else None
    if click and click.get("points"):
        key = click["points"][0].get("customdata") or key
    folder = sweeps.get().run_folder((current or {}).get("id", ""), key or "", sid)
    if folder is None:
        return NU, "That run has no stored bundle (failed, or still running)."
    run_id = reg.get().adopt_bundle(folder, owner=sid)
    return {"id": run_id, "t": time.time()}, f"Opened {key} in the Runs panel's replay."


@callback(
    Output(ID.DOWNLOAD, "data"),
    Input(ID.EXPORT_CSV, "n_clicks"),
    Input(ID.EXPORT_JSON, "n_clicks"),
    State(ID.CURRENT, "data"),
    State(ids.SESSION, "data"),
    prevent_initial_call=True,
)
def export_sweep(n_csv, n_json, current, sid):
    """The followed sweep's results (CSV) or its specification (JSON, re-runnable)."""
    snap = sweeps.get().snapshot((current or {}).get("id"), sid)
    if snap is None:
        return NU
    if ctx.triggered_id == ID.EXPORT_JSON:
        import json

        return {
            "content": json.dumps(snap.spec.to_dict(), indent=1),
            "filename": f"{snap.name}.json",
        }
    columns, data = sweep_views.table(snap.rows, [a.field for a in snap.spec.axes])
    names = [c["id"] for c in columns]
    lines = [",".join(c["name"] for c in columns)]
    lines += [",".join("" if d.get(k) is None else str(d.get(k)) for k in names) for d in data]
    return {"content": "\n".join(lines) + "\n", "filename": f"{snap.name}_results.csv"}
