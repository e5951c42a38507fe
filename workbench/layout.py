"""The page: the panels composed (``build(ctx)``), and the id table the JavaScript reads.

``build`` is called on every page load (``app.layout`` is a function), so every page offers a
fresh session token, which browser storage overrides on reload (house style §2.2). Importing
this module imports every panel, which registers the panels' callbacks with Dash.

To add a panel: write ``workbench/panels/<name>.py`` (``ID``, ``layout(ctx)``, callbacks; see
workbench/panels/__init__.py), add it to ``PANELS`` and place its ``layout(ctx)`` below.
"""

from __future__ import annotations

import json
import secrets

from dash import dcc, html

from . import ids
from .panels import PageContext, lessons, live, method, runs, spectrum, sweep, system, teach

PANELS = {
    "system": system,
    "spectrum": spectrum,
    "method": method,
    "live": live,
    "runs": runs,
    "sweep": sweep,
    "teach": teach,  # teaching views: conditioning, propagation graph, landscape
    "lessons": lessons,  # a drawer fixed to the lower right corner (assets/workbench.css)
}


ORDER = (
    "system",
    "spectrum",
    "method",
    "live",
    "runs",
    "teach",
    "sweep",
    "lessons",
)  # the workflow: the page order


def build(ctx: PageContext) -> html.Div:
    """The whole page, in workflow order: system → spectrum and slow modes → method and Run
    (one row of three columns on a wide screen, so Run shows without scrolling at 1366×768),
    then the live runs with their comparison, then the runs list and replay (full width), then
    the sweeps (many runs at once, the paper's Figure 3).

    Each panel sits in an ``area`` wrapper (``data-panel`` names it) that the grid in
    assets/workbench.css places; the DOM order is the reading order at every width.
    """
    return html.Div(
        [
            dcc.Store(id=ids.SESSION, storage_type="session", data=secrets.token_urlsafe(16)),
            dcc.Location(id=ids.LOCATION, refresh=False),
            dcc.Download(id=ids.DOWNLOAD),
            header(),
            html.Main(
                [
                    html.Div(
                        [area(name, ctx) for name in ORDER[:3]],
                        className="wb-setup",
                    ),
                    *[area(name, ctx) for name in ORDER[3:]],
                ],
                className="wb-flow",
            ),
        ],
        className="wb-root",
    )


def area(name: str, ctx: PageContext) -> html.Div:
    """Panel ``name``'s layout in its grid area ("wb-area-<name>", data-panel=name)."""
    return html.Div(
        PANELS[name].layout(ctx), className=f"wb-area wb-area-{name}", **{"data-panel": name}
    )


def header() -> html.Header:
    return html.Header(
        [
            html.H1("Slow-mode reparametrization workbench"),
            html.P(
                [
                    "Energy minimisation with slow Hessian modes and graph networks, "
                    "after Dehmamy et al., ",
                    html.Em(
                        "Neural Network Reparametrization for Accelerated Optimization in "
                        "Molecular Simulations"
                    ),
                    " (NeurIPS 2024). Hover any parameter for an explanation.",
                ]
            ),
        ],
        className="wb-header",
    )


def js_ids() -> dict[str, dict[str, str]]:
    """Every string id by panel, as ``window.WB_IDS`` ({"page": ..., "live": {"POLL": ...}})."""
    return {"page": ids.table(ids), **{name: ids.table(p.ID) for name, p in PANELS.items()}}


def index_string(base: str, table: dict) -> str:
    """Dash's page template with ``window.WB_IDS = table`` set before any script runs."""
    data = json.dumps(table, sort_keys=True).replace("</", "<\\/")
    script = f"<script>window.WB_IDS = {data};</script>"
    if "{%scripts%}" not in base:
        raise ValueError("the index string has no {%scripts%} placeholder")
    return base.replace("{%scripts%}", script + "\n            {%scripts%}", 1)
