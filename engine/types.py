"""Shared type aliases, units, and the small containers that cross module boundaries.

Units. Synthetic loop systems are dimensionless (bond length r0 = 1, LJ well depth 1/4).
Proteins use OpenMM/mdtraj conventions: lengths in nm, energies in kJ/mol. A ``System``
states its own units in ``length_unit`` / ``energy_unit``; every array of positions is
``[n_atoms, 3]`` in that length unit.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import numpy as np

Array = jax.Array
PyTree = Any
Positions = Array  # [n_atoms, 3]
EnergyFn = Callable[[Positions], Array]  # x [n_atoms, 3] -> scalar
AuxEnergyFn = Callable[[Positions, Array], Array]  # (x, aux) -> scalar

LOOP_UNITS = ("1", "1")  # (length, energy): reduced units of the paper's loop systems
PROTEIN_UNITS = ("nm", "kJ/mol")


class PairTerm(NamedTuple):
    """One pair-potential term of an energy, kept for analytic Hessians and slow modes.

    The term contributes ``scale * sum_p weights[p] * potential(r_{i_p j_p})``.

    Fields:
      pairs: [n_pairs, 2] int, each unordered pair once (i < j); or an
        ``engine.pairs.CutoffPairs``: the allowed pairs within a cutoff, found per
        configuration (``engine.pairs.concrete_pairs``).
      weights: [n_pairs] float (a scalar, uniform, with ``CutoffPairs``).
      potential: scalar function of a distance r -> energy (jax-traceable).
      scale: float, global prefactor (e.g. 2 / n_ordered_pairs for a per-pair mean).
    """

    pairs: np.ndarray
    weights: np.ndarray
    potential: Callable[[Array], Array]
    scale: float


class EnergyModel(NamedTuple):
    """What an optimizer and the reporting code need from an energy.

    Fields:
      energy_fn: x [n_atoms, 3] -> scalar. Full and deterministic: this is the energy
        that every report and comparison uses.
      train_energy_fn: (x, aux) -> scalar. What the optimizer minimizes; equals
        ``energy_fn(x)`` unless the model uses a resampled stochastic term (the reference's
        random repulsion subset) or a neighbour list. ``aux`` is a pytree of fixed shapes.
      aux_init: (key, x) -> aux.
      aux_update: (key, x, step, last_step, aux) -> aux, called on the host between jitted
        chunks (redraw a random subset, rebuild a neighbour list); None if aux never changes.
        Returning arrays of unchanged shapes means nothing recompiles.
      pair_terms: the energy as pair terms, when it is a pure pair-potential energy
        (loops); ``None`` for energies with angles, torsions or solvent terms (proteins).
      description: one line for logs and the UI.
      reported: which energy ``energy_fn`` is, for labels: "full" (every pair, the default)
        or "cutoff" (the user chose the cutoff model: pair terms beyond the cutoff are zero,
        and that is the energy reported and compared).
    """

    energy_fn: EnergyFn
    train_energy_fn: AuxEnergyFn
    aux_init: Callable[[Array, Positions], PyTree]
    aux_update: Callable[..., PyTree] | None
    pair_terms: tuple[PairTerm, ...] | None
    description: str
    reported: str = "full"


@dataclasses.dataclass(frozen=True, eq=False)
class System:
    """A built molecular system: topology-level data plus its starting positions.

    Derived data (not configuration); built from a ``SystemConfig`` by ``build_system``.

    Fields:
      name: human-readable label.
      kind: "loop" or "protein".
      x0: [n_atoms, 3] float64 starting positions (length_unit).
      bonds: [n_bonds, 2] int, drawn in 3D views and used by structure metrics.
      reference: [n_atoms, 3] target structure for RMSD (native), or None.
      length_unit, energy_unit: strings, see module docstring.
      elements: [n_atoms] element symbols (loops: "C").
      topology: an ``mdtraj.Topology`` for proteins (for PDB output), else None.
      meta: free-form JSON-able facts (sequence, notes shown to the user, parameters).
      payload: anything the energy builder for this kind needs (e.g. force-field
        parameter arrays); not serialized.
    """

    name: str
    kind: str
    x0: np.ndarray
    bonds: np.ndarray
    reference: np.ndarray | None = None
    length_unit: str = "1"
    energy_unit: str = "1"
    elements: tuple[str, ...] = ()
    topology: Any = None
    meta: dict = dataclasses.field(default_factory=dict)
    payload: Any = None

    @property
    def n_atoms(self) -> int:
        return int(self.x0.shape[0])


class SlowModes(NamedTuple):
    """Lowest modes of a Hessian-derived operator.

    Fields:
      vectors: [n_dof, n_modes] orthonormal columns, n_dof = n_atoms (node-space
        constructions, shared by x, y, z) or 3 * n_atoms (full Hessian, row 3i + c).
      values: [n_modes]. "hessian": eigenvalues mu, sorted by |mu| ascending.
        "block-laplacian": in the Laplacian's eigenvalue order (slowest first, the constant
        mode first), the values being the reference's Rayleigh quotients psi^T K psi of the
        force-constant matrix K, clamped at 0; these are not monotone in the mode index.
      rigid: [n_modes] bool, True for rigid-body zero modes (translations/rotations).
      space: "node" or "cartesian".
      method: which construction/solver produced them.
      seconds: wall time to compute them.
    """

    vectors: np.ndarray
    values: np.ndarray
    rigid: np.ndarray
    space: str
    method: str
    seconds: float


class Progress(NamedTuple):
    """One progress report from a running optimization (host numpy values).

    Each logged row travels once: a report carries only the rows logged since the previous
    report, and the scalar properties below read the newest of them.

    Fields:
      rows: non-empty list of row dicts logged since the last report, oldest first. A row has
        step (global, both stages), stage (1 reparametrized, 2 plain positions), wall_time_s
        (since the run started, slow-mode time included), energy (full deterministic energy),
        grad_norm (|dE/dx|) and the system's structure metrics.
      x: [n_atoms, 3] positions at the newest row's step, or None when no frame is due.
      stage_switch_step: the step of the last stage-1 row, on the one report that follows the
        switch to stage 2; None on every other report.
    """

    rows: list
    x: np.ndarray | None = None
    stage_switch_step: int | None = None

    @property
    def step(self) -> int:
        return int(self.rows[-1]["step"])

    @property
    def stage(self) -> int:
        return int(self.rows[-1]["stage"])

    @property
    def energy(self) -> float:
        return float(self.rows[-1]["energy"])

    @property
    def wall_time(self) -> float:
        return float(self.rows[-1]["wall_time_s"])


PhaseFn = Callable[..., None]  # on_phase(phase: str, detail: str = "") -> None
StopFn = Callable[[], bool]  # should_stop() -> True once the caller wants the work to end


class Stopped(Exception):
    """Raised by long computations (``engine.modes.slow_modes``, ``engine.run.init_run``)
    when their ``should_stop`` callable returned True at a check point (between samples,
    solver blocks or preparation steps). ``engine.run`` turns it into a RunResult with status
    "stopped"; other callers catch it or let it propagate.

    Fields: ``phase`` ("modes", "compiling", ...), where the work stopped.
    """

    def __init__(self, phase: str = "", message: str = ""):
        super().__init__(message or f"stopped by request while {phase or 'working'}")
        self.phase = phase
