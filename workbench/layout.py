"""The page: ``build()`` returns the component tree (a function, so every page load gets a fresh
session token that browser storage overrides on reload). No callbacks here.

Panels: 1 system, 2 spectrum and slow modes, 3 method, 4/5 live runs side by side, 6 runs
list and replay.
"""

from __future__ import annotations

import secrets

from dash import dcc, html

from . import components as C
from . import forms, ids
from .forms import DEFAULT_METHODS, METHODS, PROTEIN_SOURCES, PROTEIN_STARTS, start_values

PAPER = "https://openreview.net/forum?id=FwxOHl0BEl"


def build(
    structures: list[tuple[str, str]] | None = None,
    presets: dict | None = None,
    max_upload_bytes: int = 2_000_000,
    start_preset: str | None = None,
):
    """The whole page. ``structures`` = [(label, path)] offered for proteins; ``presets`` =
    {name: (description, specs)}; ``start_preset`` fills the form it opens with."""
    presets = presets or {}
    values = start_values(presets[start_preset][1] if start_preset in presets else None)
    structures = structures or []
    return html.Div(
        [
            dcc.Store(id=ids.SESSION, storage_type="session", data=secrets.token_urlsafe(16)),
            dcc.Store(id=ids.LIVE, data=None),
            dcc.Store(id=ids.SEEN, data={}),
            dcc.Store(id=ids.UPLOAD_TOKEN, data=None),
            dcc.Store(id=ids.SPEC_TASK, data=None),
            dcc.Store(id=ids.SPEC_MODE, data=None),
            dcc.Store(id=ids.SPEC_ACK),
            dcc.Store(id=ids.REPLAY, data=None),
            dcc.Store(id=ids.REPLAY_FRAME, data=None),
            dcc.Store(id=ids.REPLAY_ACK),
            dcc.Store(id=ids.RUNS_DIGEST, data=None),
            dcc.Store(id=ids.K_PICK, data=None),
            dcc.Store(id=ids.POLL, data=0),
            dcc.Store(id=ids.POLL_ACK),
            dcc.Interval(id=ids.WATCHDOG, interval=1000),
            dcc.Interval(id=ids.SPEC_POLL, interval=250, disabled=True),
            dcc.Interval(id=ids.RUNS_TICK, interval=2000),
            dcc.Location(id=ids.LOCATION, refresh=False),
            dcc.Download(id=ids.DOWNLOAD),
            html.Header(
                [
                    html.H1("Slow-mode reparametrization workbench"),
                    html.P(
                        [
                            "Energy minimisation with slow Hessian modes and graph networks, "
                            "after Dehmamy et al., ",
                            html.Em(
                                "Neural Network Reparametrization for Accelerated "
                                "Optimization in Molecular "
                                "Simulations"
                            ),
                            " (NeurIPS 2024). Hover any parameter for an explanation.",
                        ]
                    ),
                ],
                className="wb-header",
            ),
            html.Div(
                [
                    html.Aside(
                        [
                            _system_panel(values, structures, max_upload_bytes),
                            _method_panel(values, presets, start_preset),
                        ],
                        className="wb-side",
                    ),
                    html.Main(
                        [
                            _live_panel(),
                            html.Div([_spectrum_panel(), _runs_panel()], className="wb-grid2"),
                        ],
                        className="wb-main",
                    ),
                ],
                className="wb-layout",
            ),
        ],
        className="wb-root",
    )


def _system_panel(values, structures, max_upload_bytes):
    loop = html.Div(
        [
            *C.fields(forms.group_names("loop"), values),
            C.details("Energy", C.fields(forms.group_names("energy"), values)),
        ],
        className="wb-tab-body",
    )
    struct_options = [{"label": lab, "value": path} for lab, path in structures]
    start_options = [{"label": lab, "value": v} for v, lab in PROTEIN_STARTS] + [
        {"label": f"from file: {lab}", "value": path}
        for lab, path in structures
        if path != "villin"
    ]
    cap_mb = max_upload_bytes / 1e6
    protein = html.Div(
        [
            C.extra_row(
                "protein.source",
                "source",
                dcc.RadioItems(
                    id=ids.PROTEIN_SOURCE,
                    options=[{"label": lab, "value": v} for v, lab in PROTEIN_SOURCES],
                    value="file",
                    className="wb-radio-col",
                ),
                "Where the structure comes from.",
            ),
            C.extra_row(
                "protein.structure",
                "structure",
                dcc.Dropdown(
                    id=ids.field("protein.structure"),
                    options=struct_options,
                    value=structures[0][1] if structures else None,
                    clearable=False,
                ),
                "Structures available on this machine (no download).",
            ),
            C.extra_row(
                "protein.upload",
                "upload",
                [
                    dcc.Upload(
                        id=ids.UPLOAD,
                        children=html.Div(["Drop or ", html.A("choose a PDB file")]),
                        className="wb-upload",
                        max_size=-1,
                        multiple=False,
                    ),
                    html.Div(f"PDB format, at most {cap_mb:g} MB.", className="wb-range"),
                    html.Div(id=ids.UPLOAD_MSG, className="wb-msg"),
                ],
                f"Upload a PDB file (at most {cap_mb:g} MB); it stays on this server.",
            ),
            C.extra_row(
                "protein.pdb_id",
                "PDB id",
                dcc.Input(
                    id=ids.field("protein.pdb_id"),
                    type="text",
                    value="",
                    debounce=0.4,
                    placeholder="e.g. 2JOF",
                    className="wb-input",
                ),
                "A 4-character PDB id; downloaded once and cached (needs network).",
            ),
            C.extra_row(
                "protein.sequence",
                "sequence",
                dcc.Input(
                    id=ids.field("protein.sequence"),
                    type="text",
                    value="",
                    debounce=0.4,
                    placeholder="e.g. NLYIQWLKDGGPSSGRPPPS",
                    className="wb-input",
                ),
                "One-letter amino-acid sequence, built on ideal geometry.",
            ),
            C.extra_row(
                "protein.start",
                "initial condition",
                dcc.Dropdown(
                    id=ids.field("protein.start"),
                    options=start_options,
                    value="native",
                    clearable=False,
                ),
                "Start from the native structure, an extended chain, a helix, a random coil, or "
                "another structure of the same residues (e.g. an unfolded frame).",
            ),
            *C.fields(forms.group_names("protein"), values),
        ],
        className="wb-tab-body",
    )
    return C.section(
        "System",
        [
            dcc.Tabs(
                id=ids.SYSTEM_TABS,
                value="loop",
                children=[
                    dcc.Tab(label="Synthetic loop", value="loop", children=loop),
                    dcc.Tab(label="Protein", value="protein", children=protein),
                ],
            ),
            html.Div(id=ids.SYSTEM_SUMMARY, className="wb-muted"),
        ],
        number="1",
    )


def _method_panel(values, presets, start_preset=None):
    preset_opts = [{"label": name, "value": name} for name in presets]
    per_method = [
        html.Div(
            C.details(
                f"{METHODS[m][0]} parameters",
                C.fields(forms.group_names(m), values),
                open_=m in ("gnn",),
            ),
            id=ids.method_params(m),
            style=None if m in DEFAULT_METHODS else {"display": "none"},
        )
        for m in METHODS
        if forms.group_names(m)
    ]
    return C.section(
        "Method",
        [
            C.extra_row(
                "preset",
                "preset",
                dcc.Dropdown(
                    id=ids.PRESET,
                    options=preset_opts,
                    value=None,
                    placeholder="paper figure presets…",
                ),
                "Fill the form with the settings that reproduce a figure of the paper.",
            ),
            html.Div(
                f"Opened with the settings of {start_preset}: {presets[start_preset][0]}"
                if start_preset in presets
                else "",
                id=ids.PRESET_DESC,
                className="wb-muted",
            ),
            C.extra_row(
                "methods",
                "run side by side",
                dcc.Checklist(
                    id=ids.METHODS,
                    options=C.method_options("loop"),
                    value=list(DEFAULT_METHODS),
                    inline=True,
                    className="wb-methods",
                ),
                "Every checked method runs at once from the same structure and seed.",
            ),
            *per_method,
            C.details("Slow modes (CG, GNN)", C.fields(forms.group_names("modes"), values)),
            C.details("Optimiser", C.fields(forms.group_names("optim"), values)),
            C.details("Schedule and stopping", C.fields(forms.group_names("schedule"), values)),
            html.Div(
                [
                    html.Button("Run", id=ids.RUN_BTN, className="wb-btn wb-btn-primary"),
                    html.Button("Stop all", id=ids.STOP_ALL_BTN, className="wb-btn wb-btn-stop"),
                ],
                className="wb-run-row",
            ),
            html.Div(id=ids.RUN_MSG, className="wb-msg wb-run-msg", role="alert"),
        ],
        number="3",
    )


def _live_panel():
    return C.section(
        "Live runs, side by side",
        [
            html.Div(
                html.Div(
                    "Press Run: the checked methods start from the same structure and seed, "
                    "each in its "
                    "own 3D view (cameras linked: rotate one, all follow).",
                    className="wb-muted",
                ),
                id=ids.LIVE_CARDS,
                className="wb-cards",
            ),
            dcc.Graph(id=ids.CURVES, config={"displaylogo": False}, style={"display": "none"}),
            html.Div(
                [
                    html.Span("Speed-up to reach", className="wb-label-inline"),
                    dcc.RadioItems(
                        id=ids.THRESH_METRIC,
                        options=[
                            {"label": "energy", "value": "energy"},
                            {"label": "CA RMSD", "value": "rmsd_ca"},
                        ],
                        value="energy",
                        inline=True,
                    ),
                    dcc.Input(
                        id=ids.THRESH_VALUE,
                        type="text",
                        value="",
                        debounce=0.4,
                        placeholder="auto",
                        className="wb-input wb-input-small",
                    ),
                    html.Div(id=ids.THRESH_MSG, className="wb-msg"),
                ],
                className="wb-thresh",
            ),
            html.Div(id=ids.SPEEDUP),
        ],
        number="4–5",
    )


def _spectrum_panel():
    return C.section(
        "Spectrum and slow modes",
        [
            html.Div(
                [
                    html.Button("Compute spectrum", id=ids.SPEC_BTN, className="wb-btn"),
                    html.Div(id=ids.SPEC_STATUS, className="wb-spec-status", role="status"),
                ],
                className="wb-run-row",
            ),
            dcc.Graph(
                id=ids.SPEC_GRAPH,
                config={"displaylogo": False, "edits": {"shapePosition": True}},
                style={"display": "none"},
            ),
            html.Div(
                [
                    html.Span("click on the spectrum:", className="wb-label-inline"),
                    dcc.RadioItems(
                        id=ids.SPEC_CLICK,
                        options=[
                            {"label": "animate that mode", "value": "animate"},
                            {"label": "set k (CG and GNN)", "value": "k"},
                        ],
                        value="animate",
                        inline=True,
                    ),
                ],
                className="wb-thresh",
            ),
            html.Div("Or drag the dashed green line to choose k.", className="wb-muted"),
            html.Div(
                [
                    html.Span("amplitude", className="wb-label-inline"),
                    dcc.Slider(
                        id=ids.SPEC_AMP,
                        min=0,
                        max=3,
                        step=0.1,
                        value=1.0,
                        marks={0: "0", 1: "1", 2: "2", 3: "3"},
                        className="wb-slider",
                    ),
                ],
                className="wb-thresh",
            ),
            html.Div(id=ids.SPEC_MODE_INFO, className="wb-muted"),
            html.Div(id=ids.SPEC_VIEW_DOM, className="wb-viewer wb-viewer-small"),
            html.Div(
                "The mode animation oscillates the structure along the chosen eigenvector; "
                "its speed is "
                "arbitrary: it has no real timescale.",
                className="wb-note",
            ),
            html.Div(id=ids.HEATMAPS, className="wb-heatmaps"),
        ],
        number="2",
    )


def _runs_panel():
    return C.section(
        "Runs",
        [
            html.Div(id=ids.RUNS_TABLE),
            html.Div(
                [
                    dcc.Input(
                        id=ids.OPEN_ID,
                        type="text",
                        placeholder="run id from a shared link",
                        className="wb-input",
                    ),
                    html.Button("Open", id=ids.OPEN_BTN, className="wb-btn"),
                ],
                className="wb-run-row",
            ),
            html.Div(id=ids.OPEN_MSG, className="wb-msg"),
            html.Div(
                [
                    html.H3(id=ids.REPLAY_TITLE),
                    html.Div(id=ids.REPLAY_VIEW_DOM, className="wb-viewer wb-viewer-small"),
                    dcc.Slider(
                        id=ids.REPLAY_SLIDER,
                        min=0,
                        max=1,
                        step=1,
                        value=0,
                        marks=None,
                        tooltip={"placement": "bottom"},
                        className="wb-slider",
                    ),
                    dcc.Graph(id=ids.REPLAY_CURVES, config={"displaylogo": False}),
                    html.Div(id=ids.REPLAY_EXPORTS, className="wb-card-buttons"),
                ],
                id=ids.REPLAY_BOX,
                style={"display": "none"},
            ),
        ],
        number="6",
    )
