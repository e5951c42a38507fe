"""Form parsing: raw widget values -> validated RunSpecs, and back (presets fill the form).

Pure functions, no Dash. Every input is a text box or a choice; numbers are parsed here so
that non-numeric text, NaN, infinities and huge values all get the same kind of message,
naming the field and its accepted range. Validation then goes through the engine's own
config classes (``SpecError(field, message)``), so the rules live in one place and the UI
shows exactly what the engine would refuse.

A form key is either a spec path shared by all methods ("system.n", "schedule.max_steps") or
a method-scoped key ("gnn.hidden" -> reparam.hidden of the GNN run only), because the paper's
best settings differ per method (learning rates, k).
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import re
from collections.abc import Callable
from typing import Any

from engine import RunSpec, SpecError, presets, schema
from engine.config import LOOP_SYSTEMS
from engine.methods import DEFAULT_METHODS as DEFAULT_METHOD_KEYS
from engine.methods import METHODS as METHOD_REGISTRY
from engine.methods import check_system
from engine.methods import method_of as _method_of
from engine.presets import auto_patience
from engine.schema import Param, number_text

# ---- methods (engine/methods.py is their one declaration) -----------------------------------
FORM_METHODS = tuple(k for k, m in METHOD_REGISTRY.items() if m.in_form)
DEFAULT_METHODS = DEFAULT_METHOD_KEYS


# ---- fields (generated from the engine's schema, engine/config.py) ---------------------------
@dataclasses.dataclass(frozen=True)
class Field:
    """One form input, generated from a schema declaration.

    name: form key (also the widget's id name): the spec path for fields shared by all
    methods ("system.n"), "<method>.<name>" for a method's own ("gnn.hidden"). path: the
    dotted RunSpec field it sets. param: the schema's Param, with this form's wording (a
    method's label, the options it offers, what a blank box means). group: the form section
    ("loop", "energy", ..., or the method key). methods: the methods it applies to (None: all).
    """

    name: str
    path: str
    param: Param
    default: Any
    group: str
    methods: tuple[str, ...] | None = None

    label = property(lambda self: self.param.label)
    kind = property(lambda self: self.param.kind)
    help = property(lambda self: self.param.help)
    lo = property(lambda self: self.param.lo)
    hi = property(lambda self: self.param.hi)
    options = property(lambda self: self.param.options)
    optional = property(lambda self: self.param.optional)
    blank = property(lambda self: self.param.blank)
    spec_path = property(lambda self: self.path)

    def range_text(self) -> str:
        return self.param.range_text()


# Form conveniences, not engine rules: a blank box means "computed from the system" (see
# auto_chunk / auto_patience), and the loop tab offers only the loop systems.
AUTO_BLANK = {
    "chunk_size": "auto",
    "schedule.patience": "400 steps",
}
AUTO_HELP = {
    "chunk_size": " Blank: 20 up to n = 500, 10 above and for proteins (the settings the demo "
    "and the benchmarks were measured with). The live 3D view does not wait for a check: a "
    "chunk slower than a frame period also shows the positions within it.",
    "schedule.patience": " Blank: as many checks as make 400 steps, the paper's 20 checks of 20 "
    "steps.",
}
FORM_OPTIONS = {"system.kind": LOOP_SYSTEMS}


def _shared_field(e: schema.Entry) -> Field:
    p = e.param
    if e.path in FORM_OPTIONS:
        p = dataclasses.replace(
            p, options=tuple(o for o in p.options if o[0] in FORM_OPTIONS[e.path])
        )
    if e.path in AUTO_BLANK:
        p = dataclasses.replace(
            p, optional=True, blank=AUTO_BLANK[e.path], help=p.help + AUTO_HELP[e.path]
        )
        return Field(e.path, e.path, p, None, p.section)
    return Field(e.path, e.path, p, e.default, p.section)


def _method_field(method: str, mf) -> Field:
    e = schema.entry(RunSpec, mf.path)
    changes = {k: v for k, v in (("label", mf.label), ("help", mf.help), ("blank", mf.blank)) if v}
    if mf.options is not None:
        changes["options"] = tuple(o for o in e.param.options if o[0] in mf.options)
    default = METHOD_REGISTRY[method].changes.get(mf.path, e.default)
    return Field(f"{method}.{mf.name}", mf.path, dataclasses.replace(e.param, **changes), default,
                 method, (method,))  # fmt: skip


def _fields() -> tuple[Field, ...]:
    entries = schema.params(RunSpec)
    shared = [_shared_field(e) for e in entries if e.param.section]
    scoped = [_method_field(k, mf) for k in FORM_METHODS for mf in METHOD_REGISTRY[k].fields]
    order = ("loop", "protein", "energy", "modes")
    first = [f for g in order for f in shared if f.group == g]
    return (*first, *scoped, *[f for f in shared if f.group not in order])


FIELDS: tuple[Field, ...] = _fields()
FIELD_BY_NAME = {f.name: f for f in FIELDS}
SYSTEM_GROUPS = {"loop": ("loop", "energy"), "protein": ("protein",)}
PROTEIN_SOURCES = (
    ("file", "structure on this machine"),
    ("upload", "upload a PDB file"),
    ("pdbid", "PDB id"),
    ("sequence", "sequence"),
)
AMINO = "ACDEFGHIKLMNPQRSTVWY"
PROTEIN_STARTS = (
    ("native", "native structure"),
    ("extended", "extended chain"),
    ("helix", "ideal α-helix"),
    ("random", "random compact coil"),
)


def default_values() -> dict[str, Any]:
    """Widget values of a fresh form (text boxes hold strings, checkboxes lists)."""
    return {f.name: to_widget(f, f.default) for f in FIELDS}


def start_values(preset_specs: list[RunSpec] | None) -> dict[str, Any]:
    """The form a page opens with: the start preset's settings when it exists (the opening
    demo, engine.presets.OPENING_PRESET, so the first Run shows the measured comparison), with
    k, the chunk and the patience left blank (automatic, as the demo was measured), so that
    changing n never leaves an impossible k or a slow view behind."""
    if not preset_specs:
        return default_values()
    values, _ = values_from_specs(preset_specs)
    # blank = automatic: k = n/4; chunk and patience as in the paper up to n = 500, smaller
    # chunks above (see auto_chunk) so larger systems still stream ~10 frames/s
    for name in ("cg.n_modes", "gnn.n_modes", "chunk_size", "schedule.patience"):
        values[name] = ""
    return values


# ---- the protein tab's settings (engine.presets.protein_spec is their one declaration) ------
PROTEIN_FORM_METHODS = ("gd", "cg", "gnn")  # protein_spec's engine methods that have fields
TAB_GROUPS = ("optim", "schedule", "modes", *PROTEIN_FORM_METHODS)  # what a tab switch sets
AUTO_FIELDS = ("cg.n_modes", "gnn.n_modes", "chunk_size", "schedule.patience")


def protein_values() -> dict[str, Any]:
    """Widget values of the optimiser, schedule, slow-mode and per-method fields for proteins:
    the Trp-cage benchmark's settings (``engine.presets.protein_spec``), chunk and patience
    left automatic (10 steps per chunk, 400 steps of patience, as in the benchmark)."""
    from engine.presets import protein_spec

    values, _ = values_from_specs([protein_spec(m) for m in PROTEIN_FORM_METHODS])
    names = {f.name for f in FIELDS if f.group in TAB_GROUPS}
    out = {k: v for k, v in values.items() if k in names}
    out.update({k: "" for k in ("chunk_size", "schedule.patience")})
    return out


def protein_note() -> str:
    """What switching to the Protein tab changed in the form, read off ``protein_spec``."""
    from engine.presets import protein_spec

    gd, cg, gnn = (protein_spec(m) for m in PROTEIN_FORM_METHODS)
    o, s = gd.optim, gd.schedule
    return (
        f"Protein settings loaded (the Trp-cage benchmark's, docs/benchmarks-protein.md): "
        f"Adam lr {number_text(o.learning_rate)} with {o.clip} clip "
        f"{number_text(o.clip_value)}; CG and GNN start at x0 (stage-1 lr "
        f"{number_text(cg.optim.stage1_lr)} and {number_text(gnn.optim.stage1_lr)}) on the "
        f"{cg.reparam.n_modes} slowest modes of the {cg.modes.method} at {cg.modes.at}; at most "
        f"{s.max_steps} steps, min_delta {number_text(s.min_delta)}. The loop's settings "
        "blow up on all-atom proteins (warnings appear next to Run). Switching back to "
        "Synthetic loop restores the loop settings."
    )


def tab_switch(tab: str, names: list[str], current: list, saved: dict | None) -> tuple:
    """(new values of the fields ``names`` (None: unchanged), new saved dict, note) when the
    user switches the system tab to ``tab``.

    The optimiser/schedule/mode/method fields of the tab being left are saved; the new tab's
    saved ones come back, and the Protein tab gets ``protein_values()`` the first time.
    """
    tab = system_tab(tab)
    other = "loop" if tab == "protein" else "protein"
    keep = {f.name for f in FIELDS if f.group in TAB_GROUPS}
    saved = dict(saved) if isinstance(saved, dict) else {}  # a store the browser sends back
    saved[other] = {n: v for n, v in zip(names, current, strict=True) if n in keep}
    target = saved.get(tab) if isinstance(saved.get(tab), dict) else None
    target = target or (protein_values() if tab == "protein" else {})
    values = [target.get(n) if n in keep else None for n in names]
    note = protein_note() if tab == "protein" else ("Loop settings restored." if target else "")
    return values, saved, note


def to_widget(field: Field, value: Any) -> Any:
    """A typed value as its widget value: text for numbers ('' for None), [True]/[] for bools."""
    if field.kind == "bool":
        return [True] if value else []
    if field.kind in ("int", "float"):
        return "" if value is None else number_text(value)
    return value


def parse_value(field: Field, raw: Any) -> Any:
    """One widget value -> typed value (the schema's parser). Raises SpecError(field.name, ...)
    naming the accepted range."""
    if field.kind == "bool":  # a checklist: [True] or []
        return bool(raw) and raw != [] and raw != [False]
    if not isinstance(raw, (str, int, float, type(None))):  # hand-crafted, not a widget's
        what = "one of its options" if field.kind == "choice" else "text"
        raise SpecError(field.name, f"must be {what}, got a {type(raw).__name__}")
    return field.param.parse(field.name, raw)


def chosen_methods(raw: Any) -> list[str]:
    """The method checklist's value as a list of strings. The page sends a list of method
    keys; a hand-crafted value (a number, ``true``, an object) becomes its text, so it is
    refused as an unknown method by name (``build_specs``) instead of crashing a callback."""
    if raw is None:
        return []
    items = raw if isinstance(raw, list) else [raw]
    return [m if isinstance(m, str) else repr(m)[:40] for m in items]


def system_tab(raw: Any) -> str:
    """The system tab's value: "loop" or "protein"; anything else (hand-crafted) reads as the
    loop tab, whose fields are then validated as usual."""
    return raw if isinstance(raw, str) and raw in SYSTEM_GROUPS else "loop"


def relevant_fields(tab: str, methods: list[str]) -> list[Field]:
    """Fields that matter for this system tab and these methods (the others are not checked)."""
    tab, methods = system_tab(tab), chosen_methods(methods)
    groups = set(SYSTEM_GROUPS.get(tab, ())) | {"optim", "schedule"}
    if any(m in ("cg", "gnn") for m in methods):
        groups.add("modes")
    out = []
    for f in FIELDS:
        if f.name == "seed":
            out.append(f)
        elif f.methods is not None:
            if any(m in f.methods for m in methods):
                out.append(f)
        elif f.group in groups:
            out.append(f)
    return out


@dataclasses.dataclass(frozen=True)
class ProteinChoice:
    """The protein tab's source: kind in PROTEIN_SOURCES, plus the matching widget values."""

    source: str = "file"
    structure: str | None = None  # a name offered in the structure dropdown
    upload_path: str | None = None  # the name of a validated upload ("<id>/<file name>")
    pdb_id: str = ""
    sequence: str = ""
    start: str = "native"  # one of PROTEIN_STARTS or an offered structure name


def protein_system(choice: ProteinChoice, allowed_structures: Callable[[str], bool]) -> dict:
    """SystemConfig fields {pdb, sequence, start} of a protein choice.

    ``allowed_structures(name)`` guards the dropdown value: the form never passes a name that
    the server did not offer (the value arrives from the browser).
    Raises SpecError with the protein widget's form key.
    """
    for key, value in (
        ("protein.structure", choice.structure),
        ("protein.pdb_id", choice.pdb_id),
        ("protein.sequence", choice.sequence),
        ("protein.start", choice.start),
    ):  # the widgets send text; any other JSON is hand-crafted
        if value is not None and not isinstance(value, str):
            raise SpecError(key, f"must be text, got a {type(value).__name__}")
    start = choice.start or "native"
    if start not in dict(PROTEIN_STARTS) and not allowed_structures(start):
        raise SpecError(
            "protein.start",
            "must be native, extended, helix, random or a structure listed on this machine",
        )
    return {**_protein_source(choice, allowed_structures), "start": start}


def _protein_source(choice: ProteinChoice, allowed_structures: Callable[[str], bool]) -> dict:
    if choice.source == "file":
        if not choice.structure or not allowed_structures(choice.structure):
            raise SpecError(
                "protein.structure", "must be one of the structures listed on this machine"
            )
        return {"pdb": choice.structure, "sequence": None}
    if choice.source == "upload":
        if not choice.upload_path:
            raise SpecError("protein.upload", "needs an uploaded PDB file first")
        return {"pdb": choice.upload_path, "sequence": None}
    if choice.source == "pdbid":
        pid = (choice.pdb_id or "").strip()
        if pid.lower() == "villin" or re.fullmatch(r"[0-9][A-Za-z0-9]{3}", pid):
            return {"pdb": pid, "sequence": None}
        raise SpecError(
            "protein.pdb_id",
            f"must be a 4-character PDB id such as 2JOF (or 'villin'); got {pid!r}",
        )
    if choice.source == "sequence":
        seq = re.sub(r"\s+", "", choice.sequence or "").upper()
        if not 2 <= len(seq) <= 100 or any(c not in AMINO for c in seq):
            raise SpecError(
                "protein.sequence",
                f"must be 2–100 one-letter amino-acid codes ({AMINO}); got {seq[:30]!r}",
            )
        return {"pdb": None, "sequence": seq}
    raise SpecError(
        "protein.source",
        f"must be one of {', '.join(s for s, _ in PROTEIN_SOURCES)}; got {choice.source!r}",
    )


def parse_fields(
    values: dict[str, Any], tab: str, methods: list[str]
) -> tuple[dict, dict[str, str]]:
    """Parse every relevant field; returns (typed values, {form key: message})."""
    typed, errors = {}, {}
    for f in relevant_fields(tab, methods):
        try:
            typed[f.name] = parse_value(f, values.get(f.name, to_widget(f, f.default)))
        except SpecError as err:
            errors[f.name] = message_of(err)
    return typed, errors


MESSAGE_CHARS = 300  # a message quoting a huge value is cut, never echoed in full


def message_of(err: SpecError) -> str:
    """The message without its field name (the UI shows it next to the field), at most
    MESSAGE_CHARS characters."""
    text = str(err)
    text = text[len(err.field) + 1 :] if text.startswith(err.field + " ") else text
    if len(text) > MESSAGE_CHARS + 40:  # + 40: a message cut once is not cut again
        text = f"{text[:MESSAGE_CHARS]}… ({len(text):,} characters in all)"
    return text


def build_specs(
    typed: dict, tab: str, methods: list[str], protein: dict | None = None
) -> list[RunSpec]:
    """One RunSpec per method from parsed values; raises SpecError with a form key."""
    if not methods:
        raise SpecError("methods", "choose at least one method")
    unknown = [m for m in methods if m not in FORM_METHODS]
    if unknown:
        raise SpecError("methods", f"must be among {', '.join(FORM_METHODS)}; got {unknown}")
    for m in methods:
        check_system(m, "protein" if tab == "protein" else typed.get("system.kind", "lj-loop"))
        if METHOD_REGISTRY[m].runner != "engine" and typed.get("system.model") == "residue":
            raise SpecError(
                "methods", f"the {METHOD_REGISTRY[m].label} baseline needs the all-atom model"
            )
    n = typed.get("system.n")
    if tab == "loop" and isinstance(n, int):
        n_dof = n * (3 if typed.get("modes.method") == "hessian" else 1)
        for m in ("cg", "gnn"):
            k = typed.get(f"{m}.n_modes")
            if m in methods and k is not None and k > n_dof:
                raise SpecError(
                    f"{m}.n_modes", f"must be in [1, {n_dof}] for n = {n} ({n_dof} modes), got {k}"
                )
    specs = []
    for m in methods:
        d = RunSpec().to_dict()
        changes = {**METHOD_REGISTRY[m].changes, "method_label": m}
        chunk = typed.get("chunk_size") or auto_chunk(tab, typed.get("system.n"))
        changes["chunk_size"] = changes["frame_every"] = chunk
        changes["schedule.patience"] = typed.get("schedule.patience") or auto_patience(chunk)
        if tab == "protein":
            changes["system.kind"] = "protein"
            changes.update({f"system.{k}": v for k, v in (protein or {}).items()})
        owners: dict[str, str] = {}
        for f in relevant_fields(tab, methods):
            if f.name not in typed or (f.methods is not None and m not in f.methods):
                continue
            if f.name in ("chunk_size", "schedule.patience") and typed[f.name] is None:
                continue  # auto, set above
            changes[f.spec_path] = typed[f.name]
            owners[f.spec_path] = f.name
        for path, value in changes.items():
            _set(d, path, value)
        try:
            specs.append(RunSpec.from_dict(d))
        except SpecError as err:
            field = owners.get(err.field, _protein_key(err.field))
            raise SpecError(field, message_of(err)) from None
    return specs


def auto_chunk(tab: str, n: int | None) -> int:
    """Steps per chunk when "check every" is left blank (engine.presets.auto_chunk)."""
    return presets.auto_chunk(tab == "protein", n)


def _protein_key(path: str) -> str:
    return {"system.pdb": "protein.structure", "system.sequence": "protein.sequence"}.get(
        path, path
    )


def _set(d: dict, path: str, value) -> None:
    head, _, rest = path.partition(".")
    if rest:
        _set(d[head], rest, value)
    else:
        d[head] = value


def validate_form(
    values: dict, tab: str, methods: list[str], protein: dict | None = None
) -> dict[str, str]:
    """Every message to show next to a field ({form key: message}); empty when runnable."""
    tab, methods = system_tab(tab), chosen_methods(methods)
    typed, errors = parse_fields(values, tab, methods)
    if errors or not methods or (tab == "protein" and protein is None):
        return errors
    try:
        build_specs(typed, tab, methods, protein)
    except SpecError as err:
        errors[err.field] = message_of(err)
    return errors


def parse_run_form(
    values: dict, tab: str, methods: list[str], protein: dict | None = None
) -> list[RunSpec]:
    """Widget values -> one RunSpec per method, or SpecError(form key, message) at the first
    problem."""
    tab, methods = system_tab(tab), chosen_methods(methods)
    typed, errors = parse_fields(values, tab, methods)
    if errors:
        name = next(iter(errors))
        raise SpecError(name, errors[name])
    return build_specs(typed, tab, methods, protein)


def method_of(spec: RunSpec) -> str:
    """Which method produced ``spec`` (engine.methods.method_of)."""
    return _method_of(spec)


def values_from_specs(specs: list[RunSpec]) -> tuple[dict, list[str]]:
    """Fill the form from specs (a preset): shared fields from the first, scoped ones per method."""
    by_method = {method_of(s): s for s in specs}
    first = specs[0]
    values = {}
    for f in FIELDS:
        source = first if f.methods is None else by_method.get(f.methods[0])
        value = _get(source.to_dict(), f.spec_path) if source is not None else f.default
        if f.kind == "choice" and value not in [v for v, _ in f.options]:
            value = f.default
        values[f.name] = to_widget(f, value)
    return values, list(by_method)


def protein_widgets(spec: RunSpec) -> tuple[str, dict]:
    """(protein source, protein widget values) that reproduce ``spec.system`` (presets)."""
    system = spec.system
    values = {"protein.start": system.start}
    if system.sequence:
        return "sequence", {**values, "protein.sequence": system.sequence}
    if system.pdb and re.fullmatch(r"[0-9][A-Za-z0-9]{3}", system.pdb):
        return "pdbid", {**values, "protein.pdb_id": system.pdb}
    return "file", {**values, "protein.structure": system.pdb}


def _get(d: dict, path: str):
    for part in path.split("."):
        d = d[part]
    return d


# ---- uploads ------------------------------------------------------------------------------------
def check_upload(contents: str | None, filename: str | None, cap_bytes: int) -> bytes:
    """Decode a dcc.Upload payload and check it is a PDB structure under the cap.

    Returns the file's bytes. Raises SpecError("protein.upload", ...) for a missing, oversized,
    undecodable or non-PDB file (fewer than 3 ATOM/HETATM records with coordinates).
    """
    if not contents:
        raise SpecError("protein.upload", "no file received")
    if not isinstance(contents, str):  # dcc.Upload sends a data URL; anything else is forged
        raise SpecError(
            "protein.upload", f"must be a file's data URL, got a {type(contents).__name__}"
        )
    if not isinstance(filename, str):
        filename = None
    _, _, b64 = contents.partition(",")
    if len(b64) * 3 // 4 > cap_bytes + 3:
        raise SpecError(
            "protein.upload", f"{filename or 'file'} is larger than the {cap_bytes / 1e6:g} MB cap"
        )
    try:
        data = base64.b64decode(b64, validate=True)
    except (binascii.Error, ValueError):
        raise SpecError("protein.upload", f"{filename or 'file'} could not be decoded") from None
    if len(data) > cap_bytes:
        raise SpecError(
            "protein.upload", f"{filename or 'file'} is larger than the {cap_bytes / 1e6:g} MB cap"
        )
    text = data.decode("latin-1")
    from engine.protein.build import is_mmcif

    if is_mmcif(text):
        raise SpecError(
            "protein.upload", f"{filename or 'file'}: mmCIF is not supported, upload PDB"
        )
    n_atoms = 0
    for line in text.splitlines():
        if line.startswith(("ATOM  ", "HETATM")):
            try:
                float(line[30:38]), float(line[38:46]), float(line[46:54])
            except ValueError:
                continue
            n_atoms += 1
    if n_atoms < 3:
        raise SpecError(
            "protein.upload",
            f"{filename or 'file'} is not a PDB structure (no ATOM records with coordinates)",
        )
    return data


def group_names(group: str) -> list[str]:
    """Form keys shown in one panel section (``Field.group``), in declaration order."""
    return [f.name for f in FIELDS if f.group == group]
