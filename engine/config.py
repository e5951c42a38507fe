"""Run specification: frozen, hashable, JSON-serializable dataclasses.

A ``RunSpec`` fully describes a run (system, energy, slow modes, reparametrization,
optimizer, schedule, seed). Every field is validated in ``__post_init__``; errors are
``SpecError`` (a ``ValueError``) naming the field and the accepted range, e.g.
``"system.n must be an integer in [50, 4000], got 12"``.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

LOOP_SYSTEMS = ("bond-lj-loop", "lj-loop")
SYSTEM_KINDS = LOOP_SYSTEMS + ("protein",)
N_MIN, N_MAX = 50, 4000


class SpecError(ValueError):
    """An invalid user choice. ``field`` is the dotted field name."""

    def __init__(self, field: str, message: str):
        super().__init__(f"{field} {message}")
        self.field = field


def _num(field: str, value: Any, lo: float, hi: float, *, integer=False, lo_open=False):
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        kind = "an integer" if integer else "a number"
        raise SpecError(field, f"must be {kind} in [{lo}, {hi}], got {value!r}")
    if integer and (not float(value).is_integer()):
        raise SpecError(field, f"must be an integer in [{lo}, {hi}], got {value!r}")
    if not math.isfinite(value) or value > hi or value < lo or (lo_open and value <= lo):
        bracket = "(" if lo_open else "["
        raise SpecError(field, f"must be in {bracket}{lo}, {hi}], got {value!r}")


def _choice(field: str, value: Any, options: tuple):
    if value not in options:
        raise SpecError(field, f"must be one of {', '.join(map(str, options))}; got {value!r}")


@dataclasses.dataclass(frozen=True)
class SystemConfig:
    """Which system to build.

    kind: "bond-lj-loop" | "lj-loop" (the paper's synthetic loops) | "protein".
    n: number of beads (loops only), 50..4000.
    loop_stride, loop_strength: loop contacts i -> i + stride with this weight.
    init_scale: multiplies the reference initial std n^(1/3)/4.
    protein fields (pdb, sequence, start, model, ...) are read by the protein builder.
    """

    kind: str = "lj-loop"
    n: int = 400
    loop_stride: int = 10
    loop_strength: float = 0.1
    init_scale: float = 1.0
    # protein systems
    pdb: str | None = None
    sequence: str | None = None
    start: str = "native"
    model: str = "amber-obc2"
    nmr_model: int = 1

    def __post_init__(self):
        _choice("system.kind", self.kind, SYSTEM_KINDS)
        if self.kind in LOOP_SYSTEMS:
            _num("system.n", self.n, N_MIN, N_MAX, integer=True)
            _num("system.loop_stride", self.loop_stride, 2, 100, integer=True)
            if self.loop_stride >= self.n:
                raise SpecError(
                    "system.loop_stride", f"must be < n={self.n}, got {self.loop_stride}"
                )
            _num("system.loop_strength", self.loop_strength, 0.0, 10.0)
            _num("system.init_scale", self.init_scale, 0.01, 10.0, lo_open=True)
        else:
            if not (self.pdb or self.sequence):
                raise SpecError("system.pdb", "or system.sequence is required for a protein")
            _num("system.nmr_model", self.nmr_model, 1, 10000, integer=True)


@dataclasses.dataclass(frozen=True)
class EnergyConfig:
    """Energy options for loop systems (proteins ignore all but dtype).

    soft_core: "reference" (1/(s^12+eps) - 1/(s^6+6eps); spurious minimum at r = 0) or
        "monotone" (same LJ for r >= r_min, a capped branch with negative slope below).
    repulsion: "all-pairs" (deterministic, default), "random-subset" (the reference's
        n ln n pairs redrawn every ``resample_every`` steps) or "cutoff" (neighbour list).
    cutoff: distance cutoff for "cutoff" repulsion and LJ contacts, in length units.
    dtype: "float32" or "float64" for the optimization.
    """

    lj_eps: float = 1e-2
    soft_core: str = "reference"
    repulsion: str = "all-pairs"
    repel_mag: float = 2.5e-3
    repel_pow: float = 1.0
    n_repulsion_pairs: int | None = None
    resample_every: int = 3000
    cutoff: float = 3.0
    dtype: str = "float32"

    def __post_init__(self):
        _num("energy.lj_eps", self.lj_eps, 1e-6, 1.0, lo_open=True)
        _choice("energy.soft_core", self.soft_core, ("reference", "monotone"))
        _choice("energy.repulsion", self.repulsion, ("all-pairs", "random-subset", "cutoff"))
        _num("energy.repel_mag", self.repel_mag, 0.0, 1.0)
        _num("energy.repel_pow", self.repel_pow, 0.5, 12.0)
        if self.n_repulsion_pairs is not None:
            _num("energy.n_repulsion_pairs", self.n_repulsion_pairs, 1, 10**8, integer=True)
        _num("energy.resample_every", self.resample_every, 0, 10**7, integer=True)
        _num("energy.cutoff", self.cutoff, 1.0, 50.0)
        _choice("energy.dtype", self.dtype, ("float32", "float64"))


@dataclasses.dataclass(frozen=True)
class ModesConfig:
    """Slow-mode construction.

    method: "block-laplacian" (reference: Laplacian of the 3x3-block-norm Hessian averaged
        over sampled configurations; node space) or "hessian" (lowest modes of the full
        3n x 3n Hessian at ``at``; cartesian space).
    at: where to evaluate: "samples" (reference sampling), "x0", or "minimum" (after a
        short relaxation).
    n_samples, sample_scale_min/max: reference sampling, x_s = init_sigma * N(0,1) * c_s,
        c_s = linspace(min, max, n_samples); None picks the reference values per system.
    solver: "auto", "dense" or "iterative".
    """

    method: str = "block-laplacian"
    at: str = "samples"
    n_samples: int | None = None
    sample_scale_min: float | None = None
    sample_scale_max: float | None = None
    keep_rigid: bool = True
    solver: str = "auto"

    def __post_init__(self):
        _choice("modes.method", self.method, ("block-laplacian", "hessian"))
        _choice("modes.at", self.at, ("samples", "x0", "minimum"))
        if self.n_samples is not None:
            _num("modes.n_samples", self.n_samples, 1, 100, integer=True)
        for name in ("sample_scale_min", "sample_scale_max"):
            v = getattr(self, name)
            if v is not None:
                _num(f"modes.{name}", v, 1e-4, 100.0, lo_open=True)
        _choice("modes.solver", self.solver, ("auto", "dense", "iterative"))


PROPAGATIONS = ("psi", "psi-lambda", "bonds")


@dataclasses.dataclass(frozen=True)
class ReparamConfig:
    """Reparametrization X = f(params).

    kind: "none" (plain positions, GD), "linear" (CG, x = Psi z), "gnn".
    n_modes: k, the number of slow modes (None: ceil(n/4)).
    hidden: GNN width h; n_layers: graph layers 1..3; activation; residual "none"|"concat".
    propagation: "psi" (A = Psi Psi^T, the paper's; default) or "psi-lambda" (Psi Lambda Psi^T,
        the reference code's; its scale follows the per-pair-mean energy and so changes with n),
        or "bonds" (A = A_bond + 0.2 I, the reference's protein graph: no slow modes needed).
    fit_to_x0: fit the GNN output to x0 before optimizing (at most fit_steps Adam steps).
    anchor: "none" (the reference: x = f(params)) or "x0" (displacement form x = x0 + f(params)
        with f = 0 at the start, so the run starts exactly at x0; needed for all-atom proteins,
        where a projection or a random output of a few hundredths of a nm is a clash).
    """

    kind: str = "none"
    n_modes: int | None = None
    hidden: int = 32
    n_layers: int = 1
    activation: str = "tanh"
    residual: str = "none"
    propagation: str = "psi"
    self_init: str = "normal"
    fit_to_x0: bool = False
    fit_steps: int = 1000
    anchor: str = "none"

    def __post_init__(self):
        _choice("reparam.kind", self.kind, ("none", "linear", "gnn"))
        _choice("reparam.anchor", self.anchor, ("none", "x0"))
        if self.n_modes is not None:
            _num("reparam.n_modes", self.n_modes, 1, 3 * N_MAX, integer=True)
        _num("reparam.hidden", self.hidden, 2, 1024, integer=True)
        _num("reparam.n_layers", self.n_layers, 1, 3, integer=True)
        _choice("reparam.activation", self.activation, ("tanh", "relu", "leaky_relu", "silu"))
        _choice("reparam.residual", self.residual, ("none", "concat"))
        _choice("reparam.propagation", self.propagation, PROPAGATIONS)
        _choice("reparam.self_init", self.self_init, ("normal", "xavier"))
        _num("reparam.fit_steps", self.fit_steps, 1, 100000, integer=True)

    @property
    def needs_modes(self) -> bool:
        """Whether building this reparametrization needs slow modes."""
        return self.kind == "linear" or (self.kind == "gnn" and self.propagation != "bonds")


@dataclasses.dataclass(frozen=True)
class OptimConfig:
    """Optimizer for both stages.

    name: "adam", "sgd" (with momentum) or "fire".
    learning_rate: stage-2 (plain positions) step size; stage1_lr: stage-1 step size
        (None: learning_rate for linear CG, learning_rate / 10 for the GNN, as in the paper).
    clip: "elementwise" (reference clamp), "global-norm", "max-displacement" or "none".
    """

    name: str = "adam"
    learning_rate: float = 0.02
    stage1_lr: float | None = None
    momentum: float = 0.9
    clip: str = "elementwise"
    clip_value: float = 0.1

    def __post_init__(self):
        _choice("optim.name", self.name, ("adam", "sgd", "fire"))
        _num("optim.learning_rate", self.learning_rate, 0.0, 10.0, lo_open=True)
        if self.stage1_lr is not None:
            _num("optim.stage1_lr", self.stage1_lr, 0.0, 10.0, lo_open=True)
        _num("optim.momentum", self.momentum, 0.0, 0.999)
        _choice("optim.clip", self.clip, ("elementwise", "global-norm", "max-displacement", "none"))
        _num("optim.clip_value", self.clip_value, 0.0, 1e6, lo_open=True)


@dataclasses.dataclass(frozen=True)
class ScheduleConfig:
    """Two-stage schedule and stopping.

    max_steps: total budget (both stages). stage1_max_steps: budget for stage 1.
    stopping: "reference" (every check_every steps, stop after ``patience`` checks without
        E < best - min_delta), "relative" (moving average over ``window`` checks must
        improve by rel_tol * |E|), or "none" (fixed budget).
    switch: "early-stop" (stage 1 ends when its stopping rule fires), "fixed" (after
        stage1_steps) or "never" (stay reparametrized).
    stage1_delta_factor: stage-1 min_delta = factor * min_delta (reference: 10).
    """

    max_steps: int = 20000
    stage1_max_steps: int = 10000
    stopping: str = "reference"
    check_every: int = 20
    patience: int = 20
    min_delta: float = 1e-6
    stage1_delta_factor: float = 10.0
    rel_tol: float = 1e-5
    window: int = 5
    switch: str = "early-stop"
    stage1_steps: int = 2000

    def __post_init__(self):
        _num("schedule.max_steps", self.max_steps, 1, 10**7, integer=True)
        _num("schedule.stage1_max_steps", self.stage1_max_steps, 1, 10**7, integer=True)
        _choice("schedule.stopping", self.stopping, ("reference", "relative", "none"))
        _num("schedule.check_every", self.check_every, 1, 10000, integer=True)
        _num("schedule.patience", self.patience, 1, 10000, integer=True)
        _num("schedule.min_delta", self.min_delta, 0.0, 1e6)
        _num("schedule.stage1_delta_factor", self.stage1_delta_factor, 0.0, 1e6)
        _num("schedule.rel_tol", self.rel_tol, 0.0, 1.0)
        _num("schedule.window", self.window, 1, 1000, integer=True)
        _choice("schedule.switch", self.switch, ("early-stop", "fixed", "never"))
        _num("schedule.stage1_steps", self.stage1_steps, 1, 10**7, integer=True)


@dataclasses.dataclass(frozen=True)
class RunSpec:
    """Everything that determines a run. Same spec, same machine -> same result."""

    system: SystemConfig = SystemConfig()
    energy: EnergyConfig = EnergyConfig()
    modes: ModesConfig = ModesConfig()
    reparam: ReparamConfig = ReparamConfig()
    optim: OptimConfig = OptimConfig()
    schedule: ScheduleConfig = ScheduleConfig()
    seed: int = 0
    chunk_size: int = 20
    frame_every: int = 100
    method_label: str | None = None

    def __post_init__(self):
        _num("seed", self.seed, 0, 2**31 - 1, integer=True)
        _num("chunk_size", self.chunk_size, 1, 10000, integer=True)
        _num("frame_every", self.frame_every, 1, 10**7, integer=True)
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
