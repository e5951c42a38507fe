"""Run specification: frozen, hashable, JSON-serializable dataclasses, declared once.

A ``RunSpec`` fully describes a run (system, energy, slow modes, reparametrization,
optimizer, schedule, seed). Each user-facing field is declared with ``param(default, kind,
label, help, bounds...)`` (engine/schema.py): validation, the workbench form, the CLI flags and
the sweep axes are all generated from that declaration. Errors are ``SpecError`` (a
``ValueError``) naming the field and the accepted range, e.g.
``"system.n must be an integer in [50, 100000], got 12"``.
"""

from __future__ import annotations

import dataclasses

from .schema import SpecError, param, validate

LOOP_SYSTEMS = ("bond-lj-loop", "lj-loop")
SYSTEM_KINDS = LOOP_SYSTEMS + ("protein",)
# Bead counts: N_MAX is the schema's bound (the cutoff model, cost linear in n); the all-pairs
# energies (all-pairs and random-subset repulsion, whose reports evaluate every pair) stop at
# N_MAX_ALL_PAIRS, checked in RunSpec.__post_init__.
N_MIN, N_MAX = 50, 100_000
N_MAX_ALL_PAIRS = 10_000
PROPAGATIONS = ("psi", "psi-lambda", "bonds")
LOOP_FIELDS = ("n", "loop_stride", "loop_strength", "init_scale")
PROTEIN_FIELDS = ("pdb", "sequence", "start", "model", "nmr_model")


@dataclasses.dataclass(frozen=True)
class SystemConfig:
    """Which system to build: a synthetic loop (n beads) or a protein (read by the builder)."""

    kind: str = param(
        "lj-loop", "choice", "system",
        "Pure LJ: bonds and loop contacts are both soft LJ wells (Fig. 2, the hard case for GD). "
        "Bond+LJ: harmonic bonds plus LJ loop contacts (Fig. 3). Protein: a PDB structure.",
        options=(("lj-loop", "pure LJ loop"), ("bond-lj-loop", "Bond + LJ loop"),
                 ("protein", "protein")),
        section="loop", flag="system",
    )  # fmt: skip
    n: int = param(
        400, "int", "n (beads)",
        "Number of beads in the chain (all-pairs repulsion: up to 10000; cutoff: up to 100000). "
        "The live 3D view keeps up to n = 1000 at ≥ 10 frames/s.",
        lo=N_MIN, hi=N_MAX, section="loop",
    )  # fmt: skip
    loop_stride: int = param(
        10, "int", "loop stride",
        "Bead i is pulled towards bead i + stride (loop contacts); the paper uses 10.",
        lo=2, hi=100, section="loop",
    )  # fmt: skip
    loop_strength: float = param(
        0.1, "float", "loop strength a",
        "Weight of the loop contacts relative to bonds; the paper uses 0.1.",
        lo=0.0, hi=10.0, section="loop",
    )  # fmt: skip
    init_scale: float = param(
        1.0, "float", "initial spread",
        "Multiplies the reference initial spread std(x0) = n^(1/3)/4.",
        lo=0.01, hi=10.0, lo_open=True, section="loop",
    )  # fmt: skip
    pdb: str | None = param(
        None, "text", "structure",
        "Protein: a PDB file path, a 4-character PDB id, or 'villin'.", optional=True,
    )  # fmt: skip
    sequence: str | None = param(
        None, "text", "sequence", "Protein: a one-letter amino-acid sequence.", optional=True
    )  # fmt: skip
    start: str = param(
        "native", "text", "start",
        "Protein start: native, extended, helix, random or another PDB structure's path.",
    )  # fmt: skip
    model: str = param(
        "amber-obc2", "choice", "energy model",
        "All-atom AMBER14 with OBC2 implicit solvent, or a coarse model with one bead per residue.",
        options=(("amber-obc2", "all-atom AMBER14 + OBC2"), ("residue", "one bead per residue")),
        section="protein",
    )  # fmt: skip
    nmr_model: int = param(
        1, "int", "NMR model", "Which MODEL of a multi-model (NMR) file to use.",
        lo=1, hi=10000, section="protein",
    )  # fmt: skip

    def __post_init__(self):
        loop = self.kind in LOOP_SYSTEMS
        validate(self, "system", skip=PROTEIN_FIELDS if loop else LOOP_FIELDS)
        if loop and self.loop_stride >= self.n:
            raise SpecError("system.loop_stride", f"must be < n={self.n}, got {self.loop_stride}")
        if not loop and not (self.pdb or self.sequence):
            raise SpecError("system.pdb", "or system.sequence is required for a protein")


@dataclasses.dataclass(frozen=True)
class EnergyConfig:
    """Energy options for loop systems (proteins ignore all but dtype)."""

    soft_core: str = param(
        "reference", "choice", "soft core",
        "reference: the paper's softened LJ, which has a spurious minimum at r = 0 (collapsed "
        "pairs); monotone: same LJ for r ≥ r_min, a capped repulsive branch below.",
        options=(("reference", "reference (paper)"), ("monotone", "monotone (fixed)")),
        section="energy",
    )  # fmt: skip
    lj_eps: float = param(
        1e-2, "float", "LJ softening ε",
        "Softening of the LJ core: V = 1/(s^12 + ε) − 1/(s^6 + 6ε).",
        lo=1e-6, hi=1.0, lo_open=True, section="energy",
    )  # fmt: skip
    repulsion: str = param(
        "all-pairs", "choice", "repulsion pairs",
        "all pairs (deterministic), the reference's random n·ln n subset redrawn every "
        "'redraw every' steps, or a distance cutoff (neighbour list).",
        options=(("all-pairs", "all pairs"), ("random-subset", "random subset (paper)"),
                 ("cutoff", "cutoff")),
        section="energy",
    )  # fmt: skip
    resample_every: int = param(
        3000, "int", "redraw every (steps)",
        "Random-subset repulsion: steps between redraws of the pair subset (0: never).",
        lo=0, hi=10**7, section="energy",
    )  # fmt: skip
    repel_mag: float = param(
        2.5e-3, "float", "repulsion magnitude",
        "Prefactor of the weak all-pairs repulsion 1/(r^p + ε).",
        lo=0.0, hi=1.0, section="energy",
    )  # fmt: skip
    repel_pow: float = param(
        1.0, "float", "repulsion power p", "Exponent of the repulsion 1/(r^p + ε).",
        lo=0.5, hi=12.0, section="energy",
    )  # fmt: skip
    n_repulsion_pairs: int | None = param(
        None, "int", "repulsion pairs drawn",
        "Random-subset repulsion: pairs drawn per redraw.",
        lo=1, hi=10**8, optional=True, blank="n·ln n (reference)",
    )  # fmt: skip
    cutoff: float = param(
        3.0, "float", "cutoff", "Distance cutoff of 'cutoff' repulsion and LJ contacts.",
        lo=1.0, hi=50.0, unit="length units",
    )  # fmt: skip
    dtype: str = param(
        "float32", "choice", "precision", "Floating-point precision of the optimisation.",
        options=(("float32", "float32"), ("float64", "float64")), section="energy",
    )  # fmt: skip

    def __post_init__(self):
        validate(self, "energy")


@dataclasses.dataclass(frozen=True)
class ModesConfig:
    """Slow-mode construction (CG and the slow-mode GNN)."""

    method: str = param(
        "block-laplacian", "choice", "mode matrix",
        "block-laplacian: the reference's Laplacian of the 3×3-block-norm Hessian averaged over "
        "sampled configurations (node space); hessian: lowest modes of the full 3n×3n Hessian.",
        options=(("block-laplacian", "Laplacian of block-norm Hessian"),
                 ("hessian", "full Hessian")),
        section="modes", flag="modes",
    )  # fmt: skip
    at: str = param(
        "samples", "choice", "evaluated at",
        "Where the Hessian is evaluated: averaged over random samples (reference), at x0, or at "
        "a minimum after a short relaxation.",
        options=(("samples", "random samples (paper)"), ("x0", "x0"),
                 ("minimum", "nearby minimum")),
        section="modes", flag="modes-at",
    )  # fmt: skip
    n_samples: int | None = param(
        None, "int", "# samples",
        "Number of sampled configurations averaged (reference: 10 Bond+LJ, 40 pure LJ).",
        lo=1, hi=100, optional=True, blank="reference value", section="modes",
    )  # fmt: skip
    sample_scale_min: float | None = param(
        None, "float", "smallest sample scale",
        "Reference sampling x_s = init_sigma · N(0,1) · c_s, c_s = linspace(min, max).",
        lo=1e-4, hi=100.0, lo_open=True, optional=True, blank="reference value",
    )  # fmt: skip
    sample_scale_max: float | None = param(
        None, "float", "largest sample scale",
        "Reference sampling x_s = init_sigma · N(0,1) · c_s, c_s = linspace(min, max).",
        lo=1e-4, hi=100.0, lo_open=True, optional=True, blank="reference value",
    )  # fmt: skip
    keep_rigid: bool = param(
        True, "bool", "keep rigid-body modes",
        "Keep the rigid-body (zero) modes among the k slowest.",
    )  # fmt: skip
    solver: str = param(
        "auto", "choice", "eigensolver", "Dense LAPACK, iterative (sparse) or chosen by size.",
        options=(("auto", "auto"), ("dense", "dense"), ("iterative", "iterative")),
    )  # fmt: skip

    def __post_init__(self):
        validate(self, "modes")


@dataclasses.dataclass(frozen=True)
class ReparamConfig:
    """Reparametrization X = f(params): plain positions (GD), linear CG x = Ψz, or the GNN."""

    kind: str = param(
        "none", "choice", "reparametrization",
        "none: plain positions (GD); linear: CG x = Ψz; gnn: the slow-mode graph network.",
        options=(("none", "none"), ("linear", "linear (CG)"), ("gnn", "GNN")), flag="",
    )  # fmt: skip
    n_modes: int | None = param(
        None, "int", "k (slow modes)",
        "Number of slow modes k: the columns of Ψ (CG) or the rank of the GNN's propagation.",
        lo=1, hi=3 * N_MAX, optional=True, blank="n/4", flag="k",
    )  # fmt: skip
    hidden: int = param(
        32, "int", "width h", "Latent and hidden width of the GNN (paper: 8 or 32 for loops).",
        lo=2, hi=1024,
    )  # fmt: skip
    n_layers: int = param(
        1, "int", "graph layers",
        "Number of graph-convolution layers (paper: 1 for loops, 2 for proteins).",
        lo=1, hi=3, flag="layers",
    )  # fmt: skip
    activation: str = param(
        "tanh", "choice", "activation", "Nonlinearity between layers.",
        options=(("tanh", "tanh"), ("relu", "ReLU"), ("leaky_relu", "LeakyReLU"),
                 ("silu", "SiLU")),
    )  # fmt: skip
    residual: str = param(
        "none", "choice", "residual",
        "Concatenate all layer outputs before the output layer (protein notebooks).",
        options=(("none", "off"), ("concat", "concat")),
    )  # fmt: skip
    propagation: str = param(
        "psi", "choice", "propagation",
        "ΨΨᵀ (the paper's, scale-free), ΨΛΨᵀ (the reference code's; its scale follows λ and so "
        "changes with n), or the covalent graph A_bond + 0.2 I of the reference's protein "
        "notebooks (no slow modes).",
        options=(("psi", "Ψ Ψᵀ (paper)"), ("psi-lambda", "Ψ Λ Ψᵀ (reference code)"),
                 ("bonds", "A_bond + 0.2 I (bond graph)")),
    )  # fmt: skip
    self_init: str = param(
        "normal", "choice", "self-weight init", "Initialisation of the GNN's self weights.",
        options=(("normal", "normal"), ("xavier", "Xavier")),
    )  # fmt: skip
    fit_to_x0: bool = param(
        False, "bool", "fit to x0 first",
        "Fit the GNN output to x0 before optimising (at most 'fit steps' Adam steps), so it "
        "starts where GD starts (off in the paper's loop runs).",
        flag="fit-x0",
    )  # fmt: skip
    fit_steps: int = param(
        1000, "int", "fit steps", "Adam steps of the fit to x0.", lo=1, hi=100000
    )  # fmt: skip
    anchor: str = param(
        "none", "choice", "start at x0",
        "x0: displacement form x = x0 + f(params) − f(params₀), so the run starts exactly at x0 "
        "(needed for all-atom proteins, where a projection or a random output is a clash); "
        "off: the paper's x = f(params).",
        options=(("none", "off (paper)"), ("x0", "x0 + f")),
    )  # fmt: skip

    def __post_init__(self):
        validate(self, "reparam")

    @property
    def needs_modes(self) -> bool:
        """Whether building this reparametrization needs slow modes."""
        return self.kind == "linear" or (self.kind == "gnn" and self.propagation != "bonds")


@dataclasses.dataclass(frozen=True)
class OptimConfig:
    """Optimizer for both stages (stage 1 on the reparametrization, stage 2 on positions)."""

    name: str = param(
        "adam", "choice", "optimizer",
        "Adam, SGD with (heavy-ball or Nesterov) momentum, or FIRE (Bitzek et al. 2006).",
        options=(("adam", "Adam"), ("sgd", "SGD + momentum"), ("fire", "FIRE")),
        flag="optimizer",
    )  # fmt: skip
    learning_rate: float = param(
        0.02, "float", "learning rate",
        "Step size on the positions (stage 2; paper: 0.01–0.05 for loops).",
        lo=0.0, hi=10.0, lo_open=True, flag="lr",
    )  # fmt: skip
    stage1_lr: float | None = param(
        None, "float", "stage-1 lr",
        "Step size on the reparametrization's parameters during stage 1.",
        lo=0.0, hi=10.0, lo_open=True, optional=True,
        blank="learning rate (CG), learning rate / 10 (GNN)",
    )  # fmt: skip
    clip: str = param(
        "elementwise", "choice", "gradient clip",
        "elementwise: clamp each gradient entry (reference); global-norm; max-displacement per "
        "bead; none.",
        options=(("elementwise", "elementwise (paper)"), ("global-norm", "global norm"),
                 ("max-displacement", "max displacement"), ("none", "none")),
        section="optim",
    )  # fmt: skip
    clip_value: float = param(
        0.1, "float", "clip value", "Clip threshold (paper: 0.1 loops).",
        lo=0.0, hi=1e6, lo_open=True, section="optim",
    )  # fmt: skip
    momentum: float = param(
        0.9, "float", "SGD momentum", "Heavy-ball momentum (SGD only).",
        lo=0.0, hi=0.999, section="optim",
    )  # fmt: skip
    nesterov: bool = param(
        False, "bool", "Nesterov momentum",
        "SGD only: Nesterov's look-ahead form of the momentum.",
        section="optim",
    )  # fmt: skip

    def __post_init__(self):
        validate(self, "optim")


@dataclasses.dataclass(frozen=True)
class ScheduleConfig:
    """Two-stage schedule and stopping (the stopping rule is checked after every chunk)."""

    max_steps: int = param(
        20000, "int", "max steps", "Step budget for both stages together.",
        lo=1, hi=10**7, section="schedule", flag="steps",
    )  # fmt: skip
    stage1_max_steps: int = param(
        10000, "int", "stage-1 max steps",
        "Step budget of stage 1 (reparametrized) before the switch to positions.",
        lo=1, hi=10**7, section="schedule",
    )  # fmt: skip
    switch: str = param(
        "early-stop", "choice", "stage switch",
        "When CG/GNN hand over to plain GD: when stage 1 stops improving, after a fixed number "
        "of steps, or never (the stopping rule then ends the run).",
        options=(("early-stop", "on early stop (paper)"), ("fixed", "after fixed steps"),
                 ("never", "never")),
        section="schedule",
    )  # fmt: skip
    stage1_steps: int = param(
        2000, "int", "fixed switch step", "Stage-1 length when the switch is 'after fixed steps'.",
        lo=1, hi=10**7, section="schedule",
    )  # fmt: skip
    stopping: str = param(
        "reference", "choice", "stopping rule",
        "reference: stop after `patience` checks without E < best − min_delta; relative: moving "
        "average must improve by rel_tol·|E|; none: use the whole budget.",
        options=(("reference", "reference (paper)"), ("relative", "relative"), ("none", "none")),
        section="schedule",
    )  # fmt: skip
    patience: int = param(
        20, "int", "patience (checks)",
        "Checks without improvement before stopping; a check happens after every chunk.",
        lo=1, hi=10000, section="schedule",
    )  # fmt: skip
    min_delta: float = param(
        1e-6, "float", "min_delta",
        "Improvement that resets the patience counter (stage 1 uses 'stage-1 factor' × this).",
        lo=0.0, hi=1e6, section="schedule",
    )  # fmt: skip
    stage1_delta_factor: float = param(
        10.0, "float", "stage-1 min_delta factor",
        "Stage-1 min_delta = factor × min_delta (reference: 10).", lo=0.0, hi=1e6,
    )  # fmt: skip
    rel_tol: float = param(
        1e-5, "float", "rel_tol",
        "Relative rule: required improvement of the moving average, as a fraction of |E|.",
        lo=0.0, hi=1.0, section="schedule",
    )  # fmt: skip
    window: int = param(
        5, "int", "window (checks)", "Relative rule: moving-average window.",
        lo=1, hi=1000, section="schedule",
    )  # fmt: skip

    def __post_init__(self):
        validate(self, "schedule")


@dataclasses.dataclass(frozen=True)
class RunSpec:
    """Everything that determines a run. Same spec, same machine -> same result."""

    system: SystemConfig = SystemConfig()
    energy: EnergyConfig = EnergyConfig()
    modes: ModesConfig = ModesConfig()
    reparam: ReparamConfig = ReparamConfig()
    optim: OptimConfig = OptimConfig()
    schedule: ScheduleConfig = ScheduleConfig()
    seed: int = param(
        0, "int", "seed",
        "Seeds x0, the repulsion draws and the GNN initialisation. Side-by-side runs share it, so "
        "they start from the same structure.",
        lo=0, hi=2**31 - 1, section="loop",
    )  # fmt: skip
    chunk_size: int = param(
        20, "int", "check / frame every (steps)",
        "Steps per jitted chunk: the stopping rule is checked and a row is logged after every "
        "chunk (paper: checks every 20 steps).",
        lo=1, hi=10000, section="schedule", flag="chunk",
    )  # fmt: skip
    frame_every: int = param(
        100, "int", "frame every (steps)", "Steps between stored 3D frames.", lo=1, hi=10**7
    )  # fmt: skip
    method_label: str | None = param(
        None, "text", "method label", "Name of the run in tables and plots.", optional=True,
        flag="",
    )  # fmt: skip

    def __post_init__(self):
        validate(self, "")
        n, repulsion = self.system.n, self.energy.repulsion
        if self.system.kind in LOOP_SYSTEMS and repulsion != "cutoff" and n > N_MAX_ALL_PAIRS:
            raise SpecError(
                "system.n",
                f"must be <= {N_MAX_ALL_PAIRS} with {repulsion} repulsion (use cutoff for "
                f"larger systems), got {n}",
            )
        if (
            self.reparam.kind == "gnn"
            and self.reparam.propagation == "bonds"
            and self.system.kind == "lj-loop"
        ):
            raise SpecError(
                "reparam.propagation",
                "'bonds' needs a system with bonds (bond-lj-loop or protein); "
                "the pure LJ loop has none",
            )

    @property
    def label(self) -> str:
        return self.method_label or {"none": "gd", "linear": "cg", "gnn": "gnn"}[self.reparam.kind]

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> RunSpec:
        """Inverse of ``to_dict``; unknown keys raise SpecError naming them."""
        sub = {
            "system": SystemConfig,
            "energy": EnergyConfig,
            "modes": ModesConfig,
            "reparam": ReparamConfig,
            "optim": OptimConfig,
            "schedule": ScheduleConfig,
        }
        kwargs = {}
        for key, value in d.items():
            if key in sub:
                kwargs[key] = _build(sub[key], key, value)
            elif key in {f.name for f in dataclasses.fields(cls)}:
                kwargs[key] = value
            else:
                raise SpecError(key, "is not a known run-spec field")
        return cls(**kwargs)

    def replace(self, **changes) -> RunSpec:
        """A copy with top-level or dotted fields changed: replace(**{"optim.name": "fire"})."""
        spec = self
        for key, value in changes.items():
            if "." in key:
                part, field = key.split(".", 1)
                spec = dataclasses.replace(
                    spec, **{part: dataclasses.replace(getattr(spec, part), **{field: value})}
                )
            else:
                spec = dataclasses.replace(spec, **{key: value})
        return spec


def _build(cls, prefix: str, value: dict):
    if not isinstance(value, dict):
        raise SpecError(prefix, f"must be an object, got {value!r}")
    names = {f.name for f in dataclasses.fields(cls)}
    for key in value:
        if key not in names:
            raise SpecError(f"{prefix}.{key}", "is not a known field")
    return cls(**value)
