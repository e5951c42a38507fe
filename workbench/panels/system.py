"""Panel 1, System: synthetic loop or protein (file, upload, PDB id, sequence), its summary.

Also the readers of the run form that every panel starting work shares: ``form_values``
(pattern-id values -> {form key: value}), ``read_protein`` (protein widgets -> SystemConfig
fields) and ``run_specs`` (the whole form -> one RunSpec per method).
"""

from __future__ import annotations

from dash import ALL, Input, Output, State, callback, dcc, html
from dash import no_update as NU

from engine import SpecError

from .. import components as C
from .. import forms, ids, jobs, uploads
from .. import registry as reg
from . import PageContext


class ID:
    TABS = "wb-system-tabs"
    SUMMARY = "wb-system-summary"
    PROTEIN_SOURCE = "wb-protein-source"
    UPLOAD = "wb-upload"
    UPLOAD_MSG = "wb-upload-msg"
    UPLOAD_TOKEN = "wb-upload-token"  # Store: server-side token of the last valid upload
    SEQUENCE_NOTE = "wb-sequence-note"


# engine/protein/build.py: a sequence alone is built as an ideal alpha helix, its "native"
SEQUENCE_NOTE = (
    "A sequence has no experimental structure: it is built as an ideal α-helix (φ = −57°, "
    "ψ = −47°), which is also its 'native structure' start and its RMSD reference."
)


# ---- layout --------------------------------------------------------------------------------
def layout(ctx: PageContext):
    values = ctx.start_values()
    loop = html.Div(
        [
            *C.fields(forms.group_names("loop"), values),
            C.details("Energy", C.fields(forms.group_names("energy"), values)),
        ],
        className="wb-tab-body",
    )
    protein = html.Div(
        [*_protein_rows(ctx), *C.fields(forms.group_names("protein"), values)],
        className="wb-tab-body",
    )
    return C.section(
        "System",
        [
            dcc.Store(id=ID.UPLOAD_TOKEN, data=None),
            dcc.Tabs(
                id=ID.TABS,
                value="loop",
                children=[
                    dcc.Tab(label="Synthetic loop", value="loop", children=loop),
                    dcc.Tab(label="Protein", value="protein", children=protein),
                ],
            ),
            html.Div(id=ID.SUMMARY, className="wb-muted"),
        ],
        number="1",
    )


def _protein_rows(ctx: PageContext) -> list:
    structures = uploads.structure_options(ctx.structures)  # names, never server paths
    struct_options = [{"label": lab, "value": name} for lab, name in structures]
    start_options = [{"label": lab, "value": v} for v, lab in forms.PROTEIN_STARTS] + [
        {"label": f"from file: {lab}", "value": name}
        for lab, name in structures
        if name != "villin"
    ]
    limits = ctx.upload_limits
    cap_mb = limits.max_bytes / 1e6
    return [
        C.extra_row(
            "protein.source",
            "source",
            dcc.RadioItems(
                id=ID.PROTEIN_SOURCE,
                options=[{"label": lab, "value": v} for v, lab in forms.PROTEIN_SOURCES],
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
                    id=ID.UPLOAD,
                    children=html.Div(["Drop or ", html.A("choose a PDB file")]),
                    className="wb-upload",
                    max_size=-1,
                    multiple=False,
                ),
                html.Div(f"PDB format, at most {cap_mb:g} MB.", className="wb-range"),
                html.Div(uploads.accepted_line(limits), className="wb-range"),
                html.Div(id=ID.UPLOAD_MSG, className="wb-msg"),
            ],
            f"Upload a PDB file (at most {cap_mb:g} MB); it is checked with the force field "
            "at once and stays on this server, for this session only.",
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
            "A 4-character PDB id: read from the structures on this machine (<ID>.pdb or "
            "<ID>_native.pdb) or the download cache when there; otherwise downloaded once "
            "(needs network). Never read from anywhere else on the server.",
        ),
        C.extra_row(
            "protein.sequence",
            "sequence",
            [
                dcc.Input(
                    id=ids.field("protein.sequence"),
                    type="text",
                    value="",
                    debounce=0.4,
                    placeholder="e.g. NLYIQWLKDGGPSSGRPPPS",
                    className="wb-input",
                ),
                html.Div(SEQUENCE_NOTE, id=ID.SEQUENCE_NOTE, className="wb-range"),
            ],
            "One-letter amino-acid sequence, built as an ideal α-helix.",
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
    ]


# ---- helpers ---------------------------------------------------------------------------------
def form_values(values, field_ids) -> dict:
    """{form key: widget value} from the values and ids of ``ids.field(ALL)``."""
    return {fid["name"]: v for fid, v in zip(field_ids or [], values or [], strict=True)}


def system_summary(v: dict, tab: str, source: str | None) -> str:
    """One line describing the system the form describes (pure)."""
    if tab == "protein":
        what = {
            "file": v.get("protein.structure"),
            "pdbid": v.get("protein.pdb_id"),
            "sequence": v.get("protein.sequence"),
            "upload": "uploaded file",
        }.get(source or "file")
        start, model = v.get("protein.start"), v.get("system.model")
        line = f"Protein: {what or '—'}, start {start}, model {model}."
        if source == "sequence":
            line += " Built from the sequence as an ideal α-helix (no experimental structure)."
        return line
    kind = dict(forms.FIELD_BY_NAME["system.kind"].options).get(v.get("system.kind"), "?")
    shown = {}
    for name in ("system.n", "system.loop_stride", "system.loop_strength"):
        field = forms.FIELD_BY_NAME[name]
        try:  # a value the run would refuse is never echoed as if it described the system
            shown[name] = forms.parse_value(
                field, v.get(name, forms.to_widget(field, field.default))
            )
        except forms.SpecError as err:
            return f"{kind}: {field.label} {forms.message_of(err)} (see the field)."
    return (
        f"{kind}, n = {shown['system.n']} beads, loop contacts "
        f"i→i+{shown['system.loop_stride']} (strength {shown['system.loop_strength']}), "
        "reduced units (bond length 1)."
    )


def read_protein(values: dict, source: str | None, token: str | None) -> dict:
    """SystemConfig protein fields from the protein widgets (SpecError names the widget)."""
    r = reg.get()
    if (source or "file") == "upload":  # an upload past its retention goes before it is used
        r.store.purge_uploads(uploads.limits_of(r.config).retention_s)
    offered = {name for _, name in uploads.structure_options(structure_list())}
    choice = forms.ProteinChoice(
        source=source or "file",
        structure=values.get("protein.structure"),
        upload_path=r.store.upload_name(token),
        pdb_id=values.get("protein.pdb_id") or "",
        sequence=values.get("protein.sequence") or "",
        start=values.get("protein.start") or "native",
    )
    return forms.protein_system(choice, lambda p: p in offered)


def structure_list() -> list[tuple[str, str]]:
    """[(label, path)] of the structures this server offers (``jobs.list_structures``)."""
    return jobs.list_structures(reg.get().config.structure_dirs)


def run_specs(values: dict, methods, tab: str, source: str | None, token: str | None) -> list:
    """One RunSpec per method from the whole form; raises SpecError naming the field."""
    protein = read_protein(values, source, token) if tab == "protein" else None
    return forms.parse_run_form(values, tab, forms.chosen_methods(methods), protein)


# ---- callbacks -------------------------------------------------------------------------------
@callback(
    Output(ID.SUMMARY, "children"),
    Input(ids.field(ALL), "value"),
    Input(ID.TABS, "value"),
    Input(ID.PROTEIN_SOURCE, "value"),
    State(ids.field(ALL), "id"),
)
def summarize_system(values, tab, source, field_ids):
    """The summary line under the tabs, as the user types."""
    return system_summary(form_values(values, field_ids), tab, source)


@callback(
    Output(ID.UPLOAD_TOKEN, "data"),
    Output(ID.UPLOAD_MSG, "children"),
    Output(ID.PROTEIN_SOURCE, "value"),
    Input(ID.UPLOAD, "contents"),
    State(ID.UPLOAD, "filename"),
    State(ids.SESSION, "data"),
    prevent_initial_call=True,
)
def upload_structure(contents, filename, sid):
    """Check an uploaded file with the run's builder (workbench/uploads.py) and keep it
    server-side under a token, within the session's upload limits."""
    r = reg.get()
    limits = uploads.limits_of(r.config)
    try:
        token, message = uploads.accept(contents, filename, sid, r.store, limits)
    except SpecError as err:
        return None, forms.message_of(err), NU
    return token, message, "upload"
