"""The methods a run can use, declared once: name, label, colour, what they change in a spec,
which parameters a user sets per method, which systems they apply to and what executes them.

The CLI (``--method``), the workbench form and its run cards, the presets, the registry and the
figures all read ``METHODS``; ``method_of(spec)`` is the one inverse (which method a stored spec
ran), and ``execute(spec, ...)`` the one dispatch to the JAX engine or an OpenMM baseline.
Parameter bounds and defaults are never restated here: they come from the schema
(engine/config.py); a method only re-labels a field where its meaning differs (CG's
``learning_rate`` is its stage-2 step size, FIRE's is its initial time step).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

from .config import LOOP_SYSTEMS, RunSpec, SpecError
from .protein.baseline import MD_FRICTION, MD_TEMPERATURE, MD_TIMESTEP


@dataclasses.dataclass(frozen=True)
class MethodField:
    """A spec field the user sets per method (the paper's best values differ per method).

    path: dotted RunSpec path. name: the form key's suffix (form key = "<method>.<name>").
    label, help, blank: replace the schema's wording for this method (None: keep it).
    options: the subset of a choice's values this method offers (None: all).
    """

    path: str
    name: str
    label: str | None = None
    help: str | None = None
    blank: str | None = None
    options: tuple | None = None


@dataclasses.dataclass(frozen=True)
class Method:
    """One optimization method.

    key: its name everywhere (CLI, form, bundles' method_label). label: short display name.
    color: its colour in every plot and card. description: one line for people.
    changes: the spec fields that make a run this method (dotted path -> value).
    fields: the per-method parameters (MethodField). systems: system kinds it applies to.
    runner: "engine" (engine.run) or an OpenMM baseline ("openmm-min", "openmm-md").
    in_form: offered as a checkbox in the workbench.
    """

    key: str
    label: str
    color: str
    description: str
    changes: dict
    fields: tuple[MethodField, ...] = ()
    systems: tuple[str, ...] = LOOP_SYSTEMS + ("protein",)
    runner: str = "engine"
    in_form: bool = True

    @property
    def reparam_kind(self) -> str:
        return self.changes.get("reparam.kind", "none")

    def spec(self, base: RunSpec | None = None) -> RunSpec:
        """``base`` (default: the schema's defaults) turned into a run of this method."""
        return (base or RunSpec()).replace(**self.changes, method_label=self.key)


_LR = MethodField("optim.learning_rate", "learning_rate")
_STAGE2_LR = dataclasses.replace(
    _LR, label="stage-2 lr", help="Step size on the positions after the switch."
)
_K = MethodField("reparam.n_modes", "n_modes")
_ANCHOR = MethodField("reparam.anchor", "anchor")
_OPENMM_ONLY = ("protein",)
# engine/protein/baseline.py declares the MD protocol (plain constants: no OpenMM import here)
_MD_K, _MD_FRICTION, _MD_FS = MD_TEMPERATURE, MD_FRICTION, 1000 * MD_TIMESTEP

METHODS: dict[str, Method] = {
    m.key: m
    for m in (
        Method(
            "gd", "GD", "#d62728",
            "Gradient descent (Adam or SGD) directly on the positions: the baseline.",
            {"reparam.kind": "none"},
            (
                MethodField("optim.name", "optimizer", help="Optimiser on the positions. The "
                            "paper uses Adam everywhere.", options=("adam", "sgd")),
                _LR,
            ),
        ),
        Method(
            "cg", "CG", "#2ca02c",
            "Linear coarse-graining x = Ψz on the k slowest modes (stage 1), then GD on x "
            "(stage 2).",
            {"reparam.kind": "linear", "optim.name": "adam"},
            (
                dataclasses.replace(_K, help="Number of slow modes in x = Ψz. Click the "
                                    "spectrum to choose it."),
                _ANCHOR,
                MethodField("optim.stage1_lr", "stage1_lr", help="Step size on z during stage "
                            "1 (paper: lr × {1, 10}).", blank="= stage-2 lr"),
                _STAGE2_LR,
            ),
        ),
        Method(
            "gnn", "GNN", "#1f77b4",
            "Slow-mode graph network x = GNN(Z) with propagation from the k slowest modes "
            "(stage 1), then GD on x (stage 2).",
            {"reparam.kind": "gnn", "optim.name": "adam"},
            (
                dataclasses.replace(_K, help="Rank of the GNN's propagation matrix Ψ_k Λ_k "
                                    "Ψ_kᵀ. Click the spectrum to choose it."),
                MethodField("reparam.hidden", "hidden"),
                MethodField("reparam.n_layers", "n_layers"),
                MethodField("reparam.activation", "activation"),
                MethodField("reparam.propagation", "propagation"),
                MethodField("reparam.residual", "residual"),
                MethodField("reparam.fit_to_x0", "fit_to_x0"),
                _ANCHOR,
                MethodField("optim.stage1_lr", "stage1_lr", help="Step size on the GNN "
                            "parameters during stage 1 (paper: lr/10 × {1, 10}).",
                            blank="stage-2 lr / 10"),
                _STAGE2_LR,
            ),
        ),
        Method(
            "fire", "FIRE", "#9467bd",
            "FIRE (Bitzek et al. 2006) on the positions: inertial descent with adaptive time "
            "step.",
            {"reparam.kind": "none", "optim.name": "fire"},
            (
                dataclasses.replace(_LR, label="initial time step", help="FIRE's initial time "
                                    "step (grows up to 10× while the descent keeps going "
                                    "downhill)."),
            ),
        ),
        Method(
            "openmm-min", "OpenMM", "#8c564b",
            "OpenMM's L-BFGS minimizer on the identical all-atom energy (proteins only): the "
            "baseline.",
            {"reparam.kind": "none"}, systems=_OPENMM_ONLY, runner="openmm-min",
        ),
        Method(
            "openmm-md", f"OpenMM MD {_MD_K:g} K", "#7f7f7f",
            f"OpenMM Langevin dynamics at {_MD_K:g} K, friction {_MD_FRICTION:g}/ps, "
            f"{_MD_FS:g} fs per step, bonds to hydrogen constrained (proteins only): the "
            "physical baseline of the paper's folding figure. Its steps are MD steps "
            f"({_MD_FS:g} fs of simulated time each), not optimizer iterations.",
            {"reparam.kind": "none"}, systems=_OPENMM_ONLY, runner="openmm-md",
        ),
    )
}  # fmt: skip
DEFAULT_METHODS = ("gd", "gnn")


def get(key: str) -> Method:
    """The method called ``key``; SpecError("method", ...) naming the choices otherwise."""
    if key not in METHODS:
        raise SpecError("method", f"must be one of {', '.join(METHODS)}; got {key!r}")
    return METHODS[key]


def method_of(spec: RunSpec) -> str:
    """Which method ran ``spec``: its label when that names a method (stored runs, presets
    with suffixes such as "gd+" or "gnn*" fall through), else read off the spec's fields."""
    label = spec.method_label or ""
    for key in sorted(METHODS, key=len, reverse=True):  # "openmm-min" before a shorter prefix
        if label == key or (label.startswith(key) and not label[len(key)].isalnum()):
            return key
    if spec.reparam.kind == "linear":
        return "cg"
    if spec.reparam.kind == "gnn":
        return "gnn"
    return "fire" if spec.optim.name == "fire" else "gd"


def method_of_dict(spec: dict | None) -> str:
    """``method_of`` for a stored spec dict (a bundle's config); "gd" when it is unreadable."""
    try:
        return method_of(RunSpec.from_dict(spec or {}))
    except (SpecError, TypeError):
        return "gd"


def check_system(key: str, system_kind: str) -> None:
    """SpecError("methods", ...) when method ``key`` does not apply to this system kind."""
    method = get(key)
    if system_kind not in method.systems:
        raise SpecError(
            "methods",
            f"{method.label} applies to {', '.join(method.systems)} systems only; "
            f"this is a {system_kind} system",
        )


def execute(
    spec: RunSpec,
    *,
    on_progress: Callable | None = None,
    should_stop: Callable[[], bool] | None = None,
    system=None,
    modes=None,
    on_phase: Callable[..., None] | None = None,
    on_frame: Callable | None = None,
    frame_s: float = 0.05,
):
    """Run ``spec`` with its method's runner (the JAX engine or an OpenMM baseline).

    ``on_phase(phase, detail)`` goes to ``engine.run`` ("modes", "compiling", "running");
    the OpenMM baselines report "running" only. ``on_frame`` and ``frame_s`` (live frames
    between logged rows) go to ``engine.run``; the OpenMM baselines have none.
    """
    runner = get(method_of(spec)).runner
    if runner == "engine":
        from .run import run

        return run(
            spec,
            on_progress=on_progress,
            should_stop=should_stop,
            system=system,
            modes=modes,
            on_phase=on_phase,
            on_frame=on_frame,
            frame_s=frame_s,
        )
    from .protein.baseline import run_openmm_result

    return run_openmm_result(
        spec,
        runner,
        on_progress=on_progress,
        should_stop=should_stop,
        system=system,
        on_phase=on_phase,
    )
