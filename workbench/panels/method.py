"""Panel 3, Method: presets (the opening demo, the paper's figures), the methods to run side
by side and their parameters, Run.

It also validates the whole run form as the user types (messages next to every field), fills
the form from a preset or from the k picked on the spectrum, switches the form to protein
settings on the Protein tab (and back), warns next to Run about settings measured to blow up,
and stops all of the session's runs. The Run button is read by the live panel, which starts
the runs.
"""

from __future__ import annotations

from dash import ALL, Input, Output, State, callback, ctx, dcc, html
from dash import no_update as NU

from engine import SpecError
from engine.methods import METHODS
from engine.presets import PRESETS, risk_warnings

from .. import components as C
from .. import forms, guards, ids
from .. import registry as reg
from . import PageContext, spectrum, system


class ID:
    METHODS = "wb-methods"
    PRESET = "wb-preset"
    PRESET_DESC = "wb-preset-desc"
    RUN_BTN = "wb-run"
    STOP_ALL_BTN = "wb-stop-all"
    RUN_MSG = "wb-run-msg"
    TAB_NOTE = "wb-tab-note"  # what switching the system tab changed in the form
    TAB_SAVED = "wb-tab-saved"  # Store: each tab's optimiser/schedule/method settings
    FILLED = "wb-form-filled"  # Store: {"tab", "values"} the last whole-form fill set
    RISKS = "wb-run-risks"  # settings known to blow up, shown next to Run

    @staticmethod
    def params(method: str) -> dict:
        """The collapsible parameter block of one method (shown while the method is checked)."""
        return {"type": "method-params", "index": method}


K_FIELDS = ("cg.n_modes", "gnn.n_modes")  # the fields a k picked on the spectrum sets


# ---- layout --------------------------------------------------------------------------------
def layout(ctx: PageContext):
    values = ctx.start_values()
    per_method = [
        html.Div(
            C.details(
                f"{METHODS[m].label} parameters",
                C.fields(forms.group_names(m), values),
                open_=m in ("gnn",),
            ),
            id=ID.params(m),
            style=None if m in forms.DEFAULT_METHODS else {"display": "none"},
        )
        for m in forms.FORM_METHODS
        if forms.group_names(m)
    ]
    start = ctx.presets.get(ctx.start_preset)
    return C.section(
        "Method",
        [
            C.extra_row(
                "preset",
                "preset",
                dcc.Dropdown(
                    id=ID.PRESET,
                    options=[{"label": name, "value": name} for name in ctx.presets],
                    value=None,
                    placeholder="opening demo and paper figure presets…",
                ),
                "Fill the form with the opening demo's settings or those of a figure of the "
                "paper; each caption says what our runs show (docs/benchmarks.md).",
            ),
            html.Div(
                f"Opened with the settings of {ctx.start_preset}: {start[0]}" if start else "",
                id=ID.PRESET_DESC,
                className="wb-muted",
            ),
            dcc.Store(id=ID.TAB_SAVED, data=None),
            dcc.Store(id=ID.FILLED, data=None),
            html.Div(id=ID.TAB_NOTE, className="wb-note", role="status"),
            C.extra_row(
                "methods",
                "run side by side",
                dcc.Checklist(
                    id=ID.METHODS,
                    options=method_options("loop"),
                    value=list(forms.DEFAULT_METHODS),
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
                    html.Button("Run", id=ID.RUN_BTN, className="wb-btn wb-btn-primary"),
                    html.Button("Stop all", id=ID.STOP_ALL_BTN, className="wb-btn wb-btn-stop"),
                ],
                className="wb-run-row",
            ),
            html.Div(id=ID.RISKS, className="wb-msg wb-run-risks", role="status"),
            html.Div(id=ID.RUN_MSG, className="wb-msg wb-run-msg", role="alert"),
        ],
        number="3",
    )


# ---- pure helpers ----------------------------------------------------------------------------
def method_options(tab: str) -> list[dict]:
    """Method checkboxes, disabled where a method does not apply (OpenMM: proteins only)."""
    kind = "protein" if tab == "protein" else "lj-loop"
    return [
        {
            "label": html.Span(METHODS[key].label, title=METHODS[key].description),
            "value": key,
            "disabled": kind not in METHODS[key].systems,
        }
        for key in forms.FORM_METHODS
    ]


def form_errors(values: dict, tab: str, methods: list, protein_fn) -> dict[str, str]:
    """{form key: message} of every invalid input; ``protein_fn()`` reads the protein widgets
    (SystemConfig fields, or SpecError naming the widget) and is called on the protein tab only.
    """
    protein, errors = None, {}
    if tab == "protein":
        try:
            protein = protein_fn()
        except SpecError as err:
            errors[err.field] = forms.message_of(err)
    errors.update(forms.validate_form(values, tab, methods, protein))
    if not methods:
        errors["methods"] = "choose at least one method"
    return errors


def run_risks(values: dict, tab: str, methods: list, protein_fn) -> list[str]:
    """Warnings about settings known to blow up (engine.presets.risk_warnings), one per
    problem across the checked methods; none while the form does not parse."""
    try:
        protein = protein_fn() if tab == "protein" else None
        specs = forms.parse_run_form(values, tab, forms.chosen_methods(methods), protein)
    except SpecError:
        return []
    out: list[str] = []
    for spec in specs:
        out += [w for w in risk_warnings(spec) if w not in out]
    return out


def fill_record(values: list, names: list[str], tab: str) -> dict:
    """What a whole-form fill (a preset, a lesson step) set: {"tab", "values" {name: value}}
    of the fields it did not leave alone (ID.FILLED)."""
    return {"tab": tab, "values": {n: v for n, v in zip(names, values, strict=True) if v is not NU}}


def form_just_filled(filled, tab: str, names: list[str], current: list) -> bool:
    """True when the form holds exactly what the last whole-form fill ``filled`` (a
    fill_record) set on ``tab``: the tab change came with that fill (a preset or a lesson step
    on the other tab), so the tab switch must neither save these values as the old tab's
    nor overwrite them with the new tab's saved ones."""
    if not isinstance(filled, dict) or filled.get("tab") != tab:
        return False
    values = filled.get("values")
    if not isinstance(values, dict) or not values:
        return False
    now = dict(zip(names, current, strict=True))
    return all(n in now and now[n] == v for n, v in values.items())


def k_values(k: int, names: list[str]) -> list:
    """New values of the fields ``names`` when k is picked on the spectrum (NU: unchanged)."""
    return [str(k) if name in K_FIELDS else NU for name in names]


def preset_values(specs: list) -> tuple[dict, list, str, object]:
    """({field name: value}, methods, tab, protein source) that fill the whole form with
    ``specs`` (a preset's, a lesson step's)."""
    values, methods = forms.values_from_specs(specs)
    source = NU
    tab = "protein" if specs[0].system.kind == "protein" else "loop"
    if tab == "protein":
        source, widgets = forms.protein_widgets(specs[0])
        values.update(widgets)
    return values, methods, tab, source


def preset_form(desc: str, specs: list, names: list[str]) -> tuple:
    """(values of the fields ``names``, methods, description, tab, protein source) of a preset."""
    values, methods, tab, source = preset_values(specs)
    return [values.get(name, NU) for name in names], methods, desc, tab, source


# ---- callbacks -------------------------------------------------------------------------------
@callback(
    Output(ids.field_msg(ALL), "children"),
    Input(ids.field(ALL), "value"),
    Input(ID.METHODS, "value"),
    Input(system.ID.TABS, "value"),
    Input(system.ID.PROTEIN_SOURCE, "value"),
    Input(system.ID.UPLOAD_TOKEN, "data"),
    State(ids.field(ALL), "id"),
    State(ids.field_msg(ALL), "id"),
)
def validate_form(values, methods, tab, source, token, field_ids, msg_ids):
    """Messages next to every invalid field, as the user types (nothing is started)."""
    v = system.form_values(values, field_ids)
    errors = form_errors(
        v, tab, forms.chosen_methods(methods), lambda: system.read_protein(v, source, token)
    )
    return [errors.get(m["name"], "") for m in msg_ids]


@callback(
    Output(ID.RISKS, "children"),
    Input(ids.field(ALL), "value"),
    Input(ID.METHODS, "value"),
    Input(system.ID.TABS, "value"),
    Input(system.ID.PROTEIN_SOURCE, "value"),
    Input(system.ID.UPLOAD_TOKEN, "data"),
    State(ids.field(ALL), "id"),
)
def show_risks(values, methods, tab, source, token, field_ids):
    """Warnings next to Run about settings measured to blow up (nothing is blocked)."""
    v = system.form_values(values, field_ids)
    risks = run_risks(v, tab, methods, lambda: system.read_protein(v, source, token))
    return [html.Div(f"⚠ {w}") for w in risks]


@callback(
    Output(ids.field(ALL), "value", allow_duplicate=True),
    Output(ID.TAB_SAVED, "data"),
    Output(ID.TAB_NOTE, "children"),
    Input(system.ID.TABS, "value"),
    State(ID.FILLED, "data"),
    State(ID.TAB_SAVED, "data"),
    State(ids.field(ALL), "id"),
    State(ids.field(ALL), "value"),
    prevent_initial_call=True,
)
def switch_tab(tab, filled, saved, field_ids, current):
    """Protein tab: load the protein settings (saving the loop's); back: restore them. A tab
    change that came with a whole-form fill (a preset, a lesson step) keeps the fill."""
    names = [f["name"] for f in field_ids]
    if form_just_filled(filled, tab, names, current):
        return [NU] * len(names), NU, forms.protein_note() if tab == "protein" else ""
    values, saved, note = forms.tab_switch(tab, names, current, saved)
    return [NU if v is None else v for v in values], saved, note


@callback(Output(ID.METHODS, "options"), Input(system.ID.TABS, "value"))
def update_method_options(tab):
    return method_options(tab)


@callback(
    Output(ID.params(ALL), "style"),
    Input(ID.METHODS, "value"),
    State(ID.params(ALL), "id"),
)
def show_method_params(methods, block_ids):
    chosen = forms.chosen_methods(methods)
    return [None if b["index"] in chosen else {"display": "none"} for b in block_ids]


@callback(
    Output(ids.field(ALL), "value"),
    Output(ID.METHODS, "value"),
    Output(ID.PRESET_DESC, "children"),
    Output(system.ID.TABS, "value"),
    Output(system.ID.PROTEIN_SOURCE, "value", allow_duplicate=True),
    Output(ID.FILLED, "data", allow_duplicate=True),
    Input(ID.PRESET, "value"),
    Input(spectrum.ID.K_PICK, "data"),
    State(ids.field(ALL), "id"),
    State(ids.field(ALL), "value"),
    prevent_initial_call=True,
)
def fill_form(preset, k_pick, field_ids, current):
    """Fill the form from a paper preset, or set both k fields from a click on the spectrum."""
    names = [f["name"] for f in field_ids]
    if ctx.triggered_id == spectrum.ID.K_PICK:
        k = k_pick.get("k") if isinstance(k_pick, dict) else None
        ok = isinstance(k, int) and not isinstance(k, bool)  # the spectrum's click sends one
        return (k_values(k, names) if ok else [NU] * len(names)), NU, NU, NU, NU, NU
    if not preset:
        return [NU] * len(names), NU, "", NU, NU, NU
    if not isinstance(preset, str) or preset not in PRESETS:  # only a forged request sends it
        return [NU] * len(names), NU, f"Unknown preset {guards.clip(preset)!r}.", NU, NU, NU
    values, methods, desc, tab, source = preset_form(*PRESETS[preset], names)
    return values, methods, desc, tab, source, fill_record(values, names, tab)


@callback(
    Output(ID.RUN_MSG, "children", allow_duplicate=True),
    Input(ID.STOP_ALL_BTN, "n_clicks"),
    State(ids.SESSION, "data"),
    prevent_initial_call=True,
)
def stop_all(n, sid):
    """Stop every active run of this session."""
    k = reg.get().cancel_all(by=sid)
    return f"Stop requested for {k} run(s)." if k else "No active runs."
