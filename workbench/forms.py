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
import math
import re
from collections.abc import Callable
from typing import Any

from engine import RunSpec, SpecError
from engine.config import N_MAX, N_MIN

# ---- methods ---------------------------------------------------------------------------------
# key -> (label, one-line explanation, base spec changes)
METHODS: dict[str, tuple[str, str, dict]] = {
    "gd": (
        "GD",
        "Gradient descent (Adam or SGD) directly on the positions: the baseline.",
        {"reparam.kind": "none"},
    ),
    "cg": (
        "CG",
        "Linear coarse-graining x = Ψz on the k slowest modes (stage 1), then GD on x (stage 2).",
        {"reparam.kind": "linear", "optim.name": "adam"},
    ),
    "gnn": (
        "GNN",
        "Slow-mode graph network x = GNN(Z) with propagation from the k slowest modes (stage 1), "
        "then GD on x (stage 2).",
        {"reparam.kind": "gnn", "optim.name": "adam"},
    ),
    "fire": (
        "FIRE",
        "FIRE (Bitzek et al. 2006) on the positions: inertial descent with adaptive time step.",
        {"reparam.kind": "none", "optim.name": "fire"},
    ),
    "openmm": (
        "OpenMM",
        "OpenMM's L-BFGS minimizer on the identical all-atom energy (proteins only): the baseline.",
        {"reparam.kind": "none"},
    ),
}
DEFAULT_METHODS = ("gd", "gnn")
# method key -> RunSpec.method_label (the OpenMM baseline is told apart by its label)
LABELS = {"openmm": "openmm-min"}
COLORS = {
    "gd": "#d62728",
    "cg": "#2ca02c",
    "gnn": "#1f77b4",
    "fire": "#9467bd",
    "openmm": "#8c564b",
}


@dataclasses.dataclass(frozen=True)
class Field:
    """One form input.

    name: form key (also the widget's id name). path: dotted RunSpec field it sets.
    kind: "int" | "float" | "choice" | "bool" | "text". lo/hi: accepted range of numbers
    (the engine's range), shown next to the input. optional: blank means ``None`` (the
    engine then picks, described by ``blank``). methods: the methods this field applies to
    (None: all). group: which panel section shows it. help: hover text.
    """

    name: str
    label: str
    kind: str
    default: Any
    group: str
    help: str
    path: str = ""
    lo: float | None = None
    hi: float | None = None
    options: tuple = ()
    optional: bool = False
    blank: str = ""
    methods: tuple[str, ...] | None = None

    @property
    def spec_path(self) -> str:
        return self.path or self.name

    def range_text(self) -> str:
        if self.kind in ("int", "float"):
            text = f"{_num_text(self.lo)}–{_num_text(self.hi)}"
            return text + (f"; blank: {self.blank}" if self.optional else "")
        return ""


def _num_text(v) -> str:
    return f"{v:g}" if isinstance(v, float) else str(v)


def _f(*args, **kw) -> Field:
    return Field(*args, **kw)


def _anchor_field(method: str) -> Field:
    """'start at x0' of a reparametrized method (the same option for CG and GNN)."""
    return _f(
        f"{method}.anchor",
        "start at x0",
        "choice",
        "none",
        method,
        "x0: displacement form x = x0 + f(params) − f(params₀), so the run starts exactly at x0 "
        "(needed for all-atom proteins, where a projection or a random output is a clash); "
        "off: the paper's x = f(params).",
        path="reparam.anchor",
        options=(("none", "off (paper)"), ("x0", "x0 + f")),
        methods=(method,),
    )


FIELDS: tuple[Field, ...] = (
    # -- system: synthetic loop
    _f(
        "system.kind",
        "Energy",
        "choice",
        "lj-loop",
        "loop",
        "Pure LJ: bonds and loop contacts are both soft LJ wells (Fig. 2, the hard case for GD). "
        "Bond+LJ: harmonic bonds plus LJ loop contacts (Fig. 3).",
        options=(("lj-loop", "pure LJ loop"), ("bond-lj-loop", "Bond + LJ loop")),
    ),
    _f(
        "system.n",
        "n (beads)",
        "int",
        400,
        "loop",
        "Number of beads in the chain. The live 3D view keeps up to n = 1000 at ≥ 10 frames/s.",
        lo=N_MIN,
        hi=N_MAX,
    ),
    _f(
        "system.loop_stride",
        "loop stride",
        "int",
        10,
        "loop",
        "Bead i is pulled towards bead i + stride (loop contacts); the paper uses 10.",
        lo=2,
        hi=100,
    ),
    _f(
        "system.loop_strength",
        "loop strength a",
        "float",
        0.1,
        "loop",
        "Weight of the loop contacts relative to bonds; the paper uses 0.1.",
        lo=0.0,
        hi=10.0,
    ),
    _f(
        "system.init_scale",
        "initial spread",
        "float",
        1.0,
        "loop",
        "Multiplies the reference initial spread std(x0) = n^(1/3)/4.",
        lo=0.01,
        hi=10.0,
    ),
    _f(
        "seed",
        "seed",
        "int",
        0,
        "loop",
        "Seeds x0, the repulsion draws and the GNN initialisation. Side-by-side runs share it, so "
        "they start from the same structure.",
        lo=0,
        hi=2**31 - 1,
    ),
    # -- system: protein
    _f(
        "system.model",
        "energy model",
        "choice",
        "amber-obc2",
        "protein",
        "All-atom AMBER14 with OBC2 implicit solvent, or a coarse model with one bead per residue.",
        options=(("amber-obc2", "all-atom AMBER14 + OBC2"), ("residue", "one bead per residue")),
    ),
    _f(
        "system.nmr_model",
        "NMR model",
        "int",
        1,
        "protein",
        "Which MODEL of a multi-model (NMR) file to use.",
        lo=1,
        hi=10000,
    ),
    # -- energy
    _f(
        "energy.soft_core",
        "soft core",
        "choice",
        "reference",
        "energy",
        "reference: the paper's softened LJ, which has a spurious minimum at r = 0 "
        "(collapsed pairs); "
        "monotone: same LJ with a repulsive core.",
        options=(("reference", "reference (paper)"), ("monotone", "monotone (fixed)")),
    ),
    _f(
        "energy.lj_eps",
        "LJ softening ε",
        "float",
        1e-2,
        "energy",
        "Softening of the LJ core: V = 1/(s^12 + ε) − 1/(s^6 + 6ε).",
        lo=1e-6,
        hi=1.0,
    ),
    _f(
        "energy.repulsion",
        "repulsion pairs",
        "choice",
        "all-pairs",
        "energy",
        "all pairs (deterministic), the reference's random n·ln n subset redrawn every epoch, or a "
        "distance cutoff.",
        options=(
            ("all-pairs", "all pairs"),
            ("random-subset", "random subset (paper)"),
            ("cutoff", "cutoff"),
        ),
    ),
    _f(
        "energy.resample_every",
        "redraw every (steps)",
        "int",
        3000,
        "energy",
        "Random-subset repulsion: steps between redraws of the pair subset (0: never).",
        lo=0,
        hi=10**7,
    ),
    _f(
        "energy.repel_mag",
        "repulsion magnitude",
        "float",
        2.5e-3,
        "energy",
        "Prefactor of the weak all-pairs repulsion 1/(r^p + ε).",
        lo=0.0,
        hi=1.0,
    ),
    _f(
        "energy.repel_pow",
        "repulsion power p",
        "float",
        1.0,
        "energy",
        "Exponent of the repulsion 1/(r^p + ε).",
        lo=0.5,
        hi=12.0,
    ),
    _f(
        "energy.dtype",
        "precision",
        "choice",
        "float32",
        "energy",
        "Floating-point precision of the optimisation.",
        options=(("float32", "float32"), ("float64", "float64")),
    ),
    # -- slow modes (CG and GNN)
    _f(
        "modes.method",
        "mode matrix",
        "choice",
        "block-laplacian",
        "modes",
        "block-laplacian: the reference's Laplacian of the 3×3-block-norm Hessian (node space); "
        "hessian: lowest modes of the full 3n×3n Hessian.",
        options=(
            ("block-laplacian", "Laplacian of block-norm Hessian"),
            ("hessian", "full Hessian"),
        ),
    ),
    _f(
        "modes.at",
        "evaluated at",
        "choice",
        "samples",
        "modes",
        "Where the Hessian is evaluated: averaged over random samples (reference), at x0, or at a "
        "minimum after a short relaxation.",
        options=(
            ("samples", "random samples (paper)"),
            ("x0", "x0"),
            ("minimum", "nearby minimum"),
        ),
    ),
    _f(
        "modes.n_samples",
        "# samples",
        "int",
        None,
        "modes",
        "Number of sampled configurations averaged (reference: 10 Bond+LJ, 40 pure LJ).",
        lo=1,
        hi=100,
        optional=True,
        blank="reference value",
    ),
    # -- methods
    _f(
        "gd.optimizer",
        "optimizer",
        "choice",
        "adam",
        "gd",
        "Optimiser on the positions. The paper uses Adam everywhere.",
        path="optim.name",
        options=(("adam", "Adam"), ("sgd", "SGD + momentum")),
        methods=("gd",),
    ),
    _f(
        "gd.learning_rate",
        "learning rate",
        "float",
        0.02,
        "gd",
        "Step size on the positions (paper: 0.01–0.05 for loops).",
        path="optim.learning_rate",
        lo=0.0,
        hi=10.0,
        methods=("gd",),
    ),
    _f(
        "cg.n_modes",
        "k (slow modes)",
        "int",
        None,
        "cg",
        "Number of slow modes in x = Ψz. Click the spectrum to choose it.",
        path="reparam.n_modes",
        lo=1,
        hi=3 * N_MAX,
        optional=True,
        blank="n/4",
        methods=("cg",),
    ),
    _anchor_field("cg"),
    _f(
        "cg.stage1_lr",
        "stage-1 lr",
        "float",
        None,
        "cg",
        "Step size on z during stage 1 (paper: lr × {1, 10}).",
        path="optim.stage1_lr",
        lo=0.0,
        hi=10.0,
        optional=True,
        blank="= stage-2 lr",
        methods=("cg",),
    ),
    _f(
        "cg.learning_rate",
        "stage-2 lr",
        "float",
        0.02,
        "cg",
        "Step size on the positions after the switch.",
        path="optim.learning_rate",
        lo=0.0,
        hi=10.0,
        methods=("cg",),
    ),
    _f(
        "gnn.n_modes",
        "k (slow modes)",
        "int",
        None,
        "gnn",
        "Rank of the GNN's propagation matrix Ψ_k Λ_k Ψ_kᵀ. Click the spectrum to choose it.",
        path="reparam.n_modes",
        lo=1,
        hi=3 * N_MAX,
        optional=True,
        blank="n/4",
        methods=("gnn",),
    ),
    _f(
        "gnn.hidden",
        "width h",
        "int",
        32,
        "gnn",
        "Latent and hidden width of the GNN (paper: 8 or 32 for loops).",
        path="reparam.hidden",
        lo=2,
        hi=1024,
        methods=("gnn",),
    ),
    _f(
        "gnn.n_layers",
        "graph layers",
        "int",
        1,
        "gnn",
        "Number of graph-convolution layers (paper: 1 for loops, 2 for proteins).",
        path="reparam.n_layers",
        lo=1,
        hi=3,
        methods=("gnn",),
    ),
    _f(
        "gnn.activation",
        "activation",
        "choice",
        "tanh",
        "gnn",
        "Nonlinearity between layers.",
        path="reparam.activation",
        options=(("tanh", "tanh"), ("relu", "ReLU"), ("leaky_relu", "LeakyReLU"), ("silu", "SiLU")),
        methods=("gnn",),
    ),
    _f(
        "gnn.propagation",
        "propagation",
        "choice",
        "psi",
        "gnn",
        "ΨΨᵀ (the paper's, scale-free), ΨΛΨᵀ (the reference code's; its scale follows λ), or the "
        "covalent graph A_bond + 0.2 I of the reference's protein notebooks (no slow modes).",
        path="reparam.propagation",
        options=(
            ("psi", "Ψ Ψᵀ (paper)"),
            ("psi-lambda", "Ψ Λ Ψᵀ (reference code)"),
            ("bonds", "A_bond + 0.2 I (bond graph)"),
        ),
        methods=("gnn",),
    ),
    _f(
        "gnn.residual",
        "residual",
        "choice",
        "none",
        "gnn",
        "Concatenate all layer outputs before the output layer (protein notebooks).",
        path="reparam.residual",
        options=(("none", "off"), ("concat", "concat")),
        methods=("gnn",),
    ),
    _f(
        "gnn.fit_to_x0",
        "fit to x0 first",
        "bool",
        False,
        "gnn",
        "Fit the GNN output to x0 before optimising, so it starts where GD starts "
        "(off in the paper's "
        "loop runs).",
        path="reparam.fit_to_x0",
        methods=("gnn",),
    ),
    _anchor_field("gnn"),
    _f(
        "gnn.stage1_lr",
        "stage-1 lr",
        "float",
        None,
        "gnn",
        "Step size on the GNN parameters during stage 1 (paper: lr/10 × {1, 10}).",
        path="optim.stage1_lr",
        lo=0.0,
        hi=10.0,
        optional=True,
        blank="stage-2 lr / 10",
        methods=("gnn",),
    ),
    _f(
        "gnn.learning_rate",
        "stage-2 lr",
        "float",
        0.02,
        "gnn",
        "Step size on the positions after the switch.",
        path="optim.learning_rate",
        lo=0.0,
        hi=10.0,
        methods=("gnn",),
    ),
    _f(
        "fire.learning_rate",
        "initial time step",
        "float",
        0.02,
        "fire",
        "FIRE's initial time step (grows up to 10× while the descent keeps going downhill).",
        path="optim.learning_rate",
        lo=0.0,
        hi=10.0,
        methods=("fire",),
    ),
    # -- shared optimiser settings
    _f(
        "optim.clip",
        "gradient clip",
        "choice",
        "elementwise",
        "optim",
        "elementwise: clamp each gradient entry (reference); global-norm; "
        "max-displacement per bead; none.",
        options=(
            ("elementwise", "elementwise (paper)"),
            ("global-norm", "global norm"),
            ("max-displacement", "max displacement"),
            ("none", "none"),
        ),
    ),
    _f(
        "optim.clip_value",
        "clip value",
        "float",
        0.1,
        "optim",
        "Clip threshold (paper: 0.1 loops).",
        lo=0.0,
        hi=1e6,
    ),
    _f(
        "optim.momentum",
        "SGD momentum",
        "float",
        0.9,
        "optim",
        "Heavy-ball momentum (SGD only).",
        lo=0.0,
        hi=0.999,
    ),
    # -- schedule
    _f(
        "schedule.max_steps",
        "max steps",
        "int",
        20000,
        "schedule",
        "Step budget for both stages together.",
        lo=1,
        hi=10**7,
    ),
    _f(
        "schedule.stage1_max_steps",
        "stage-1 max steps",
        "int",
        10000,
        "schedule",
        "Step budget of stage 1 (reparametrized) before the switch to positions.",
        lo=1,
        hi=10**7,
    ),
    _f(
        "schedule.switch",
        "stage switch",
        "choice",
        "early-stop",
        "schedule",
        "When CG/GNN hand over to plain GD: when stage 1 stops improving, after a fixed number of "
        "steps, or never.",
        options=(
            ("early-stop", "on early stop (paper)"),
            ("fixed", "after fixed steps"),
            ("never", "never"),
        ),
    ),
    _f(
        "schedule.stage1_steps",
        "fixed switch step",
        "int",
        2000,
        "schedule",
        "Stage-1 length when the switch is 'after fixed steps'.",
        lo=1,
        hi=10**7,
    ),
    _f(
        "schedule.stopping",
        "stopping rule",
        "choice",
        "reference",
        "schedule",
        "reference: stop after `patience` checks without E < best − min_delta; relative: moving "
        "average must improve by rel_tol·|E|; none: use the whole budget.",
        options=(("reference", "reference (paper)"), ("relative", "relative"), ("none", "none")),
    ),
    _f(
        "schedule.patience",
        "patience (checks)",
        "int",
        None,
        "schedule",
        "Checks without improvement before stopping; a check happens after every chunk. Blank: "
        "as many checks as make 400 steps, the paper's 20 checks of 20 steps.",
        lo=1,
        hi=10000,
        optional=True,
        blank="400 steps",
    ),
    _f(
        "schedule.min_delta",
        "min_delta",
        "float",
        1e-6,
        "schedule",
        "Improvement that resets the patience counter (stage 1 uses 10× this).",
        lo=0.0,
        hi=1e6,
    ),
    _f(
        "schedule.rel_tol",
        "rel_tol",
        "float",
        1e-5,
        "schedule",
        "Relative rule: required improvement of the moving average, as a fraction of |E|.",
        lo=0.0,
        hi=1.0,
    ),
    _f(
        "schedule.window",
        "window (checks)",
        "int",
        5,
        "schedule",
        "Relative rule: moving-average window.",
        lo=1,
        hi=1000,
    ),
    _f(
        "chunk_size",
        "check / frame every (steps)",
        "int",
        None,
        "schedule",
        "Steps per jitted chunk: the stopping rule is checked and a 3D frame is sent after every "
        "chunk (paper: checks every 20 steps). Blank: 20 up to n = 500, 10 above and for "
        "proteins, so that slower steps still give about 10 frames per second.",
        lo=1,
        hi=10000,
        optional=True,
        blank="auto",
    ),
)
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
    """The form a page opens with: the paper's Fig. 2 settings when the preset exists (so the
    first Run shows GD and GNN as the paper ran them), with k, the chunk and the patience
    left blank, so that changing n never leaves an impossible k or a slow view behind."""
    if not preset_specs:
        return default_values()
    values, _ = values_from_specs(preset_specs)
    # blank = automatic: k = n/4; chunk and patience as in the paper up to n = 500, smaller
    # chunks above (see auto_chunk) so larger systems still stream ~10 frames/s
    for name in ("cg.n_modes", "gnn.n_modes", "chunk_size", "schedule.patience"):
        values[name] = ""
    return values


def to_widget(field: Field, value: Any) -> Any:
    """A typed value as its widget value: text for numbers ('' for None), [True]/[] for bools."""
    if field.kind == "bool":
        return [True] if value else []
    if field.kind in ("int", "float"):
        return "" if value is None else _num_text(value)
    return value


def parse_value(field: Field, raw: Any) -> Any:
    """One widget value -> typed value. Raises SpecError(field.name, ...) naming the range."""
    if field.kind == "bool":
        return bool(raw) and raw != [] and raw != [False]
    if field.kind == "choice":
        values = [v for v, _ in field.options]
        if raw not in values:
            raise SpecError(
                field.name, f"must be one of {', '.join(map(str, values))}; got {raw!r}"
            )
        return raw
    if field.kind == "text":
        return (raw or "").strip()
    text = "" if raw is None else str(raw).strip()
    if text == "":
        if field.optional:
            return None
        raise SpecError(
            field.name, f"is required: a number in [{_num_text(field.lo)}, {_num_text(field.hi)}]"
        )
    what = "an integer" if field.kind == "int" else "a number"
    bad = SpecError(
        field.name,
        f"must be {what} in [{_num_text(field.lo)}, {_num_text(field.hi)}], got {text!r}",
    )
    try:
        value = float(text)
    except ValueError:
        raise bad from None
    if not math.isfinite(value) or value < field.lo or value > field.hi:
        raise bad
    if field.kind == "int":
        if not value.is_integer():
            raise bad
        return int(value)
    return value


def relevant_fields(tab: str, methods: list[str]) -> list[Field]:
    """Fields that matter for this system tab and these methods (the others are not checked)."""
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
    structure: str | None = None  # a path offered in the structure dropdown
    upload_path: str | None = None  # server-side path of a validated upload
    pdb_id: str = ""
    sequence: str = ""
    start: str = "native"  # one of PROTEIN_STARTS or an offered structure path


def protein_system(choice: ProteinChoice, allowed_structures: Callable[[str], bool]) -> dict:
    """SystemConfig fields {pdb, sequence, start} of a protein choice.

    ``allowed_structures(path)`` guards the dropdown value: the form never passes a path that
    the server did not offer (the value arrives from the browser).
    Raises SpecError with the protein widget's form key.
    """
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


def message_of(err: SpecError) -> str:
    """The message without its field name (the UI shows it next to the field)."""
    text = str(err)
    return text[len(err.field) + 1 :] if text.startswith(err.field + " ") else text


def build_specs(
    typed: dict, tab: str, methods: list[str], protein: dict | None = None
) -> list[RunSpec]:
    """One RunSpec per method from parsed values; raises SpecError with a form key."""
    if not methods:
        raise SpecError("methods", "choose at least one method")
    unknown = [m for m in methods if m not in METHODS]
    if unknown:
        raise SpecError("methods", f"must be among {', '.join(METHODS)}; got {unknown}")
    if "openmm" in methods and tab != "protein":
        raise SpecError("methods", "OpenMM is the baseline for proteins: choose the Protein tab")
    if "openmm" in methods and typed.get("system.model") == "residue":
        raise SpecError("methods", "the OpenMM baseline needs the all-atom model")
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
        changes = dict(METHODS[m][2])
        changes["method_label"] = LABELS.get(m, m)
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


PAPER_PATIENCE_STEPS = 400  # reference: 20 checks, one every 20 steps (method.md §6.2)


def auto_chunk(tab: str, n: int | None) -> int:
    """Steps per chunk when left blank: small enough for ~10 live frames/s on slower steps."""
    if tab == "protein" or (n or 0) > 500:
        return 10
    return 20


def auto_patience(chunk: int) -> int:
    """Checks that span the paper's 400 steps without improvement."""
    return max(1, math.ceil(PAPER_PATIENCE_STEPS / chunk))


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
    typed, errors = parse_fields(values, tab, methods)
    if errors:
        name = next(iter(errors))
        raise SpecError(name, errors[name])
    return build_specs(typed, tab, methods, protein)


def method_of(spec: RunSpec) -> str:
    """Which form method produced ``spec`` (inverse of METHODS' base changes)."""
    if (spec.method_label or "").startswith("openmm"):
        return "openmm"
    if spec.reparam.kind == "linear":
        return "cg"
    if spec.reparam.kind == "gnn":
        return "gnn"
    return "fire" if spec.optim.name == "fire" else "gd"


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
