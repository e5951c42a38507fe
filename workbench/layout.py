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
from .panels import PageContext, live, method, runs, spectrum, system

PANELS = {"system": system, "spectrum": spectrum, "method": method, "live": live, "runs": runs}


def build(ctx: PageContext) -> html.Div:
    """The whole page: form panels on the left; live runs, spectrum and runs on the right."""
    return html.Div(
        [
            dcc.Store(id=ids.SESSION, storage_type="session", data=secrets.token_urlsafe(16)),
            dcc.Location(id=ids.LOCATION, refresh=False),
            dcc.Download(id=ids.DOWNLOAD),
            header(),
            html.Div(
                [
                    html.Aside([system.layout(ctx), method.layout(ctx)], className="wb-side"),
                    html.Main(
                        [
                            live.layout(ctx),
                            html.Div(
                                [spectrum.layout(ctx), runs.layout(ctx)], className="wb-grid2"
                            ),
                        ],
                        className="wb-main",
                    ),
                ],
                className="wb-layout",
            ),
        ],
        className="wb-root",
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
