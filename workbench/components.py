"""Small component builders shared by the layout and the callbacks (no callbacks here)."""

from __future__ import annotations

import datetime
import os

from dash import dcc, html

from . import ids
from .forms import FIELD_BY_NAME, METHODS, Field

EXPORT_LABELS = {
    "pdb": "final PDB",
    "traj": "trajectory PDB",
    "csv": "curves CSV",
    "json": "config JSON",
}


def field_row(field: Field, value, *, hidden: bool = False) -> html.Div:
    """Label (hover: explanation), input, accepted range, and the message slot next to it."""
    fid = ids.field(field.name)
    if field.kind == "choice":
        if len(field.options) <= 3 and field.name == "system.kind":
            control = dcc.RadioItems(
                id=fid,
                options=[{"label": lab, "value": v} for v, lab in field.options],
                value=value,
                inline=True,
                className="wb-radio",
            )
        else:
            control = dcc.Dropdown(
                id=fid,
                options=[{"label": lab, "value": v} for v, lab in field.options],
                value=value,
                clearable=False,
                searchable=False,
                className="wb-dropdown",
            )
    elif field.kind == "bool":
        control = dcc.Checklist(
            id=fid, options=[{"label": " on", "value": True}], value=value, inline=True
        )
    else:
        control = dcc.Input(
            id=fid,
            type="text",
            value=value,
            debounce=0.4,
            inputMode="decimal",
            autoComplete="off",
            className="wb-input",
            placeholder=field.blank if field.optional else "",
        )
    rng = field.range_text()
    return html.Div(
        [
            html.Div(
                [
                    html.Label(
                        field.label, title=field.help, className="wb-label", htmlFor=_dom_id(fid)
                    ),
                    html.Span(rng, className="wb-range") if rng else None,
                ],
                className="wb-label-box",
            ),
            html.Div(control, className="wb-control"),
            html.Div(id=ids.field_msg(field.name), className="wb-msg", role="alert"),
        ],
        className="wb-field",
        style={"display": "none"} if hidden else None,
        title=field.help,
    )


def _dom_id(pid: dict) -> str:
    # Dash renders dict ids as their JSON with sorted keys and no spaces
    import json

    return json.dumps(pid, sort_keys=True, separators=(",", ":"))


def fields(names: list[str], values: dict) -> list:
    return [field_row(FIELD_BY_NAME[n], values[n]) for n in names]


def extra_row(name: str, label: str, control, help_text: str) -> html.Div:
    """A form row whose control is not a FIELDS entry (protein source widgets)."""
    return html.Div(
        [
            html.Label(label, title=help_text, className="wb-label"),
            html.Div(control, className="wb-control"),
            html.Div(id=ids.field_msg(name), className="wb-msg", role="alert"),
        ],
        className="wb-field",
        title=help_text,
    )


def section(title: str, children, number: str | None = None, **kw) -> html.Section:
    head = html.H2([html.Span(number, className="wb-num") if number else None, title])
    return html.Section([head, *children], className="wb-panel", **kw)


def details(summary: str, children, open_: bool = False, **kw) -> html.Details:
    return html.Details(
        [html.Summary(summary), html.Div(children, className="wb-details-body")],
        open=open_,
        className="wb-details",
        **kw,
    )


def method_options(tab: str) -> list[dict]:
    """Method checkboxes; the OpenMM baseline exists for proteins only."""
    return [
        {
            "label": html.Span(lab, title=expl),
            "value": key,
            "disabled": key == "openmm" and tab != "protein",
        }
        for key, (lab, expl, _) in METHODS.items()
    ]


def run_card(run: dict, is_owner: bool = True) -> html.Div:
    """A live run: its 3D view, status line, stop/share/export buttons and its frame Store."""
    rid = run["id"]
    return html.Div(
        [
            html.Div(
                [
                    html.Span(
                        run["label"].upper(),
                        className="wb-card-title",
                        style={"color": run["color"]},
                    ),
                    html.Span(
                        METHODS.get(run.get("method", ""), ("", "", {}))[1], className="wb-card-sub"
                    ),
                ],
                className="wb-card-head",
            ),
            html.Div(id=ids.viewer_dom(rid), className="wb-viewer", **{"data-run": rid}),
            html.Div("queued", id=ids.run_status(rid), className="wb-status", role="status"),
            html.Div(
                [
                    html.Button(
                        "Stop",
                        id=ids.stop_btn(rid),
                        className="wb-btn wb-btn-stop",
                        disabled=not is_owner,
                    ),
                    html.Button(
                        "Fit view",
                        id=ids.fit_btn(rid),
                        className="wb-btn",
                        title="zoom to the whole structure (otherwise the camera stays put)",
                    ),
                    html.Button(
                        "Share link",
                        id=ids.share_btn(rid),
                        className="wb-btn",
                        disabled=not is_owner,
                    ),
                    *export_buttons(rid),
                ],
                className="wb-card-buttons",
            ),
            html.Div(id=ids.share_msg(rid), className="wb-share"),
            dcc.Store(id=ids.run_frame(rid)),
            dcc.Store(id=ids.run_ack(rid)),
            dcc.Store(id=ids.fit_ack(rid)),
        ],
        id=ids.run_card(rid),
        className="wb-card",
    )


def export_buttons(run_id: str) -> list:
    return [
        html.Button(
            EXPORT_LABELS[f],
            id=ids.export_btn(run_id, f),
            className="wb-btn wb-btn-small",
            title=f"download the {EXPORT_LABELS[f]}",
        )
        for f in ids.EXPORT_FORMATS
    ]


def speedup_table(rows: list[dict], metric: str, threshold: float | None, auto: bool) -> html.Div:
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
        body.append(
            html.Tr(
                [
                    html.Td(r["label"].upper()),
                    html.Td(f"{r['step']:,}"),
                    html.Td(f"{r['time']:.2f}"),
                    html.Td(
                        "reference"
                        if r["speedup_time"] is None and r is rows[0]
                        else _x(r["speedup_time"])
                    ),
                    html.Td(
                        "reference"
                        if r["speedup_steps"] is None and r is rows[0]
                        else _x(r["speedup_steps"])
                    ),
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


def _x(v) -> str:
    return "—" if v is None else f"{v:.2f}×"


def runs_table(snaps: list) -> html.Div:
    if not snaps:
        return html.Div(
            "No runs yet in this session. Press Run, or pass --bundle-dir to list CLI bundles.",
            className="wb-muted",
        )
    head = html.Tr(
        [html.Th(h) for h in ("started", "method", "system", "status", "step", "energy", "")]
    )
    body = []
    for s in snaps:
        spec = s.spec or {}
        system = spec.get("system", {})
        if system.get("kind") == "protein":
            source = os.path.basename(system.get("pdb") or "") or system.get("sequence") or ""
            name = f"protein {source}"[:40]
        else:
            name = f"{system.get('kind', '?')} n={system.get('n')}"
        when = datetime.datetime.fromtimestamp(s.created).strftime("%H:%M:%S") if s.created else ""
        origin = {"cli": " (CLI)", "stored": " (saved)"}.get(s.source, "")
        energy = s.last.get("energy")
        body.append(
            html.Tr(
                [
                    html.Td(when + origin),
                    html.Td(s.label.upper()),
                    html.Td(name),
                    html.Td(s.status, className=f"wb-st-{s.status}"),
                    html.Td(f"{s.last.get('step', '')}"),
                    html.Td("" if energy is None else f"{energy:.5g}"),
                    html.Td(
                        html.Button(
                            "Open", id=ids.open_btn(s.run_id), className="wb-btn wb-btn-small"
                        )
                    ),
                ]
            )
        )
    return html.Table([html.Thead(head), html.Tbody(body)], className="wb-table wb-runs")
