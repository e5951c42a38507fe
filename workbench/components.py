"""Widgets shared by several panels: form rows, sections, export buttons (no callbacks here).

A widget used by one panel only lives in that panel's module (workbench/panels/).
"""

from __future__ import annotations

import json

from dash import dcc, html

from . import ids
from .forms import FIELD_BY_NAME, Field

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
