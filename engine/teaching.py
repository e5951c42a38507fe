"""Teaching views' math: where a run moves in the Hessian's eigenbasis, and loop verdicts.

Pure numpy on host arrays (no JAX tracing, no files, no threads). Three pieces:

- ``full_modes(model, x)``: every eigenpair of the 3n x 3n Hessian at x, the rigid-body
  translations and rotations split off exactly. ``engine.modes.slow_modes`` asked for all 3n
  modes does the same job but its two-pass dense solver on all BLAS threads took 45 s at
  n = 400 on the loaded 2-core machine; one single-threaded divide-and-conquer ``eigh`` of the
  deflated Hessian takes 0.62 s at n = 400 (bench/bench_teaching.py). Rigid modes: the
  Hessian is projected onto the complement of the analytic rigid-body span R
  (``engine.modes.rigid_body_basis``) and R is shifted to an eigenvalue above the whole
  spectrum, so R is an exact, isolated eigenspace and the other eigenvectors are orthogonal
  to it. (Away from a minimum rotations are not zero modes of H; they are still rigid
  motions, and counted apart.)
- ``mode_bands`` / ``project``: each mode's band (rigid, the k slowest, the middle, the
  fastest by |eigenvalue|) and a displacement's squared norm per band. The bands of a full
  basis sum to ||dx||^2.
- ``loop_verdict``: "loop closed" / "partly closed" / "loop open" / "torn apart" from a
  logged row's structure metrics, with the thresholds in ``VERDICT_THRESHOLDS``.
- ``effective_spectrum``: eigenvalues of J^T H J (the Hessian seen by a linear map x = J z,
  or the Gauss-Newton operator of a nonlinear map with Jacobian J), and ``condition_number``.

Units: lengths and energies in the system's units; eigenvalues in energy / length^2.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import scipy.linalg as sla

from .blas import single_threaded
from .hessian import hessian
from .modes import rigid_body_basis
from .types import EnergyModel

RIGID, SLOW, MIDDLE, FAST = 0, 1, 2, 3
BAND_NAMES = ("rigid body", "slowest", "middle", "fastest")


class FullModes(NamedTuple):
    """Every eigenmode of the Hessian at one configuration.

    Fields:
      vectors: [3n, 3n] orthonormal columns, row 3i + c: first the rigid-body span
        (``n_rigid`` columns: translations, then rotations), then the Hessian's other
        eigenvectors by |eigenvalue| ascending.
      values: [3n] eigenvalues (0 for the rigid columns), same order.
      rigid: [3n] bool, True for the rigid-body columns.
      seconds: wall time of the Hessian and the eigensolver.
    """

    vectors: np.ndarray
    values: np.ndarray
    rigid: np.ndarray
    seconds: float


def full_modes(model: EnergyModel, x) -> FullModes:
    """Every eigenmode of ``model``'s Hessian at x [n_atoms, 3] (see the module docstring).

    Dense: 9 n^2 doubles for the Hessian and as many for the vectors (72 MB at n = 1000).
    """
    import time

    start = time.perf_counter()
    x = np.asarray(x, dtype=np.float64)
    h = np.asarray(hessian(model, x), dtype=np.float64)
    values, vectors, rigid = eig_deflated(h, np.concatenate(rigid_body_basis(x), axis=1))
    return FullModes(vectors, values, rigid, time.perf_counter() - start)


def eig_deflated(h: np.ndarray, basis: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(values [N], vectors [N, N], rigid [N]) of a symmetric h [N, N] with the orthonormal
    columns ``basis`` [N, r] split off: the basis first (value 0, rigid True), then the
    eigenpairs of h restricted to its complement by |value| ascending."""
    h = np.asarray(h, dtype=np.float64)
    r = basis.shape[1]
    p = np.eye(h.shape[0]) - basis @ basis.T
    shift = 2.0 * float(np.abs(h).sum(axis=1).max()) + 1.0  # above every eigenvalue of P h P
    a = p @ h @ p + shift * (basis @ basis.T)
    with single_threaded():  # one thread: far faster on the busy 2-core machine
        w, v = sla.eigh(a, driver="evd", overwrite_a=True, check_finite=False)
    free_w, free_v = w[: len(w) - r], v[:, : len(w) - r]
    order = np.argsort(np.abs(free_w), kind="stable")
    values = np.concatenate([np.zeros(r), free_w[order]])
    vectors = np.concatenate([basis, free_v[:, order]], axis=1)
    rigid = np.arange(len(values)) < r
    return values, vectors, rigid


def mode_bands(rigid, n_slow: int, n_fast: int | None = None) -> np.ndarray:
    """Band of each mode [N] int: RIGID for rigid ones, then among the others (ordered by
    |eigenvalue| ascending) the first ``n_slow`` SLOW, the last ``n_fast`` (default n_slow)
    FAST, the rest MIDDLE. Slow wins where the two overlap (tiny systems)."""
    rigid = np.asarray(rigid, dtype=bool)
    if n_slow < 0 or (n_fast is not None and n_fast < 0):
        raise ValueError(f"n_slow and n_fast must be >= 0, got {n_slow}, {n_fast}")
    n_fast = n_slow if n_fast is None else n_fast
    free = np.flatnonzero(~rigid)
    bands = np.full(rigid.shape, RIGID, dtype=np.int64)
    bands[free] = MIDDLE
    if n_fast:
        bands[free[len(free) - n_fast :]] = FAST
    bands[free[:n_slow]] = SLOW
    return bands


def project(dx, vectors: np.ndarray, bands: np.ndarray, n_bands: int = 4) -> np.ndarray:
    """Squared norm of a displacement per band, [n_bands] (sums to ||dx||^2 for a full
    orthonormal basis).

    Args:
      dx: [n_atoms, 3] or [3n] displacement, or [T, n_atoms, 3] / [T, 3n] for T frames
        (then the result is [T, n_bands]; a [T, 3] array with T = n_atoms is one frame).
      vectors: [3n, M] orthonormal columns (row 3i + c). bands: [M] band of each column.
    """
    dx = np.asarray(dx, dtype=np.float64)
    n_dof = vectors.shape[0]
    flat = dx.reshape(-1, n_dof)
    batched = dx.ndim == 3 or (dx.ndim == 2 and dx.shape[-1] == n_dof)
    onehot = np.asarray(bands)[:, None] == np.arange(n_bands)[None, :]  # [M, n_bands]
    with single_threaded():  # small products: threads only contend with the running engine
        out = ((flat @ vectors) ** 2) @ onehot.astype(np.float64)
    return out if batched else out[0]


# ---- loop verdict ------------------------------------------------------------------------------
# A loop contact: a loop pair closer than 1.5 (engine.loops.loop_structure_metrics); a bond
# intact: no longer than engine.systems.STRETCH_FACTOR x its rest length.
VERDICT_THRESHOLDS = {
    "closed_contacts": 0.95,  # loop closed: at least 95 % of loop contacts formed ...
    "intact_bonds": 0.99,  # ... and at least 99 % of chain bonds intact
    "open_contacts": 0.25,  # loop open: fewer than 25 % of loop contacts
    "torn_bonds": 0.95,  # torn apart: fewer than 95 % of chain bonds intact (checked first)
}


class Verdict(NamedTuple):
    kind: str  # "closed", "partly", "open", "torn" or "unknown"
    label: str  # "loop closed", ...
    text: str  # the badge: label and the numbers behind it


def loop_verdict(contacts: float | None, intact: float | None) -> Verdict:
    """The verdict of a loop run from its latest loop contact fraction and intact-bond
    fraction (``VERDICT_THRESHOLDS``): torn apart first, then closed, open, else partly."""
    t = VERDICT_THRESHOLDS

    def ok(v):
        return v is not None and np.isfinite(v)

    if not ok(contacts) or not ok(intact):
        return Verdict("unknown", "no verdict yet", "no verdict yet: no structure logged")
    numbers = f"contacts {100 * contacts:.0f} %, bonds intact {100 * intact:.0f} %"
    if intact < t["torn_bonds"]:
        kind, label = "torn", "torn apart"
    elif contacts >= t["closed_contacts"] and intact >= t["intact_bonds"]:
        kind, label = "closed", "loop closed"
    elif contacts < t["open_contacts"]:
        kind, label = "open", "loop open"
    else:
        kind, label = "partly", "partly closed"
    return Verdict(kind, label, f"{label}: {numbers}")


# ---- conditioning ----------------------------------------------------------------------------
def effective_spectrum(h, j) -> np.ndarray:
    """Eigenvalues of J^T H J [p] ascending, for h [N, N] symmetric and j [N, p]: the Hessian
    in the coordinates z of a linear map x = J z (exact), or the Gauss-Newton operator of a
    nonlinear map with Jacobian J at a point."""
    h, j = np.asarray(h, np.float64), np.asarray(j, np.float64)
    a = j.T @ h @ j
    with single_threaded():
        return sla.eigh(0.5 * (a + a.T), eigvals_only=True, driver="evd")


def condition_number(values, rel_floor: float = 1e-9) -> float:
    """max |lambda| / min |lambda| over the eigenvalues above ``rel_floor`` x the largest
    (zero modes excluded); inf when none qualifies."""
    a = np.abs(np.asarray(values, np.float64))
    if not a.size or not np.isfinite(a).all() or a.max() == 0:
        return float("inf")
    kept = a[a > rel_floor * a.max()]
    return float(kept.max() / kept.min())
