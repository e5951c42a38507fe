"""Teaching views' math: where a run moves in the Hessian's eigenbasis, and loop verdicts.

Numpy on host arrays (JAX only for Jacobian and Hessian products; no files, no threads):

- ``full_modes(model, x)``: every eigenpair of the 3n x 3n Hessian at x, the rigid-body
  translations and rotations split off exactly. ``engine.modes.slow_modes`` asked for all 3n
  modes does the same job but its two-pass dense solver on all BLAS threads took 45 s at
  n = 400 on the loaded 2-core machine; one single-threaded divide-and-conquer ``eigh`` of the
  deflated Hessian takes 0.62 s at n = 400 (bench/bench_teaching.py). Rigid modes: the
  Hessian is projected onto the complement of the analytic rigid-body span R
  (``engine.modes.rigid_body_basis``) and R is shifted to an eigenvalue above the whole
  spectrum, so R is an exact, isolated eigenspace and the other eigenvectors are orthogonal
  to it (``deflate``: by rank-6 updates, not two 3n x 3n products). (Away from a minimum
  rotations are not zero modes of H; they are still rigid motions, and counted apart.)
- ``mode_bands`` / ``project``: each mode's band (rigid, the k slowest, the middle, the
  fastest by |eigenvalue|) and a displacement's squared norm per band. The bands of a full
  basis sum to ||dx||^2. ``projection_basis`` / ``project_frames``: what a run card's live
  charts compute (the workbench and bench/bench_teaching.py share them).
- ``loop_verdict``: "loop closed" / "partly closed" / "loop open" / "torn apart" from a
  logged row's structure metrics, with the thresholds in ``VERDICT_THRESHOLDS``.
- ``effective_spectrum``: eigenvalues of J^T H J (the Hessian seen by a linear map x = J z,
  or the Gauss-Newton operator of a nonlinear map with Jacobian J), and ``condition_number``.
- Conditioning through a reparametrization x = f(p) (CG, the GNN): the nonzero eigenvalues
  of J^T H J with rigid-body motions and the null space of J excluded, never forming a P x P
  matrix. Few parameters (CG's z, P <= 3n): J itself by P jvps, its thin SVD, a P x P
  eigenproblem (``map_jacobian``, ``jacobian_spectrum``). Many (the GNN, P ~ 11 n): the
  3n x 3n kernel J J^T by one vjp and one jvp per coordinate (``map_ntk``), its Cholesky
  factor L and the eigenvalues of L^T H L (``gauss_newton_spectrum``). Lanczos on
  J^T H J (``gauss_newton_extremes``) gives only the spectrum's edges, and at n = 1000 took
  as long as the whole kernel (22 s against 17-22 s under load), so the view uses the kernel.
  ``conditioning_report``: H, CG, the GNN at step 0 ("start") and at its stage switch
  ("switch", after replaying its stage 1).
- ``propagation_matrix`` / ``strongest_edges``: the graph the GNN propagates on.
- ``landscape_slice`` / ``path_in_plane``: the energy on a plane of two modes, and paths
  projected onto it.

Units: lengths and energies in the system's units; eigenvalues in energy / length^2.
"""

from __future__ import annotations

import functools
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


def deflate(h: np.ndarray, basis: np.ndarray, shift: float = 0.0) -> np.ndarray:
    """P h P + shift B B^T for a symmetric h [N, N] and orthonormal columns B = ``basis``
    [N, r], P = I - B B^T: by rank-r updates, O(N^2 r) (two N^3 products otherwise)."""
    h = np.asarray(h, dtype=np.float64)
    hb = h @ basis  # [N, r]
    c = basis.T @ hb  # [r, r]
    out = h - basis @ hb.T - hb @ basis.T + basis @ ((c + shift * np.eye(len(c))) @ basis.T)
    return 0.5 * (out + out.T)


def _shift_above(h: np.ndarray) -> float:
    """A number above every |eigenvalue| of h and of P h P (twice the largest row sum)."""
    return 2.0 * float(np.abs(h).sum(axis=1).max()) + 1.0


def eig_deflated(h: np.ndarray, basis: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(values [N], vectors [N, N], rigid [N]) of a symmetric h [N, N] with the orthonormal
    columns ``basis`` [N, r] split off: the basis first (value 0, rigid True), then the
    eigenpairs of h restricted to its complement by |value| ascending."""
    h = np.asarray(h, dtype=np.float64)
    r = basis.shape[1]
    a = deflate(h, basis, _shift_above(h))  # the basis: an isolated top eigenspace
    with single_threaded():  # one thread: far faster on the busy 2-core machine
        w, v = sla.eigh(a, driver="evd", overwrite_a=True, check_finite=False)
    free_w, free_v = w[: len(w) - r], v[:, : len(w) - r]
    order = np.argsort(np.abs(free_w), kind="stable")
    values = np.concatenate([np.zeros(r), free_w[order]])
    vectors = np.concatenate([basis, free_v[:, order]], axis=1)
    rigid = np.arange(len(values)) < r
    return values, vectors, rigid


def eigvals_deflated(h: np.ndarray, basis: np.ndarray) -> np.ndarray:
    """Eigenvalues [N - r] ascending of a symmetric h restricted to the complement of the
    orthonormal columns ``basis`` [N, r] (``eig_deflated`` without vectors: 3-4x faster)."""
    h = np.asarray(h, dtype=np.float64)
    r = basis.shape[1]
    a = deflate(h, basis, _shift_above(h))
    with single_threaded():
        w = sla.eigh(a, eigvals_only=True, driver="evd", overwrite_a=True, check_finite=False)
    return w[: len(w) - r]


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


class ProjectionBasis(NamedTuple):
    """What a run card's live projection charts need for one system (``projection_basis``).

    Fields: modes (every Hessian mode at x0), bands ([3n] band of each mode), grad (the
    energy's jitted gradient, [n, 3] -> [n, 3])."""

    modes: FullModes
    bands: np.ndarray
    grad: object


def projection_basis(system, spec) -> ProjectionBasis:
    """Every Hessian mode of ``system`` at x0 banded as the run's slow modes are counted (the
    k = n/4 node-space modes of the run's settings: 3k Hessian modes for block-Laplacian
    modes), and the energy's gradient compiled once (the charts' per-frame cost)."""
    import jax
    import jax.numpy as jnp

    from .run import default_n_modes
    from .systems import make_energy

    model = make_energy(system, spec.energy)
    modes = full_modes(model, system.x0)
    k = default_n_modes(spec, system.n_atoms)
    n_slow = 3 * k if spec.modes.method == "block-laplacian" else k
    n_slow = min(n_slow, int((~modes.rigid).sum()) // 2)
    grad = jax.jit(jax.grad(model.energy_fn))
    grad(jnp.asarray(system.x0))  # compiled now, not at the first frame
    return ProjectionBasis(modes, mode_bands(modes.rigid, n_slow), grad)


def project_frames(basis: ProjectionBasis, x0, xs) -> tuple[np.ndarray, np.ndarray]:
    """([T, 4], [T, 4]): the squared norm per band of x - x0 and of the gradient at x, for
    the T kept frames ``xs`` [T, n, 3] (one gradient per frame)."""
    import jax.numpy as jnp

    xs = np.asarray(xs, np.float64)
    moved = project(xs - np.asarray(x0, np.float64), basis.modes.vectors, basis.bands)
    grads = np.stack([np.asarray(basis.grad(jnp.asarray(x)), np.float64) for x in xs])
    return moved, project(grads, basis.modes.vectors, basis.bands)


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


# ---- conditioning through a reparametrization -----------------------------------------------
# A map x = f(p) turns the energy's Hessian H (positions) into the Gauss-Newton operator
# G = J^T H J in p (J = df/dp [3n, P]); exact for a linear map (CG), the NTK-style part of the
# Hessian in p for the GNN (the term grad E . d2f/dp2 is left out). G has at most 3n nonzero
# eigenvalues and they are those of S^1/2 U^T H U S^1/2, where J J^T = U S U^T (the
# map's neural tangent kernel, [3n, 3n]): so nothing of size P x P is ever formed.
# Zero modes: rigid-body motions are removed from the map's output (J -> (I - R R^T) J, R
# the analytic translations and rotations at x, as for H itself), and the null space of J
# (P - rank directions that do not move x) is dropped by rank (S > RANK_TOL x max S).
RANK_TOL = 1e-10
# Away from a minimum eigenvalues cross zero, so min |lambda| (and kappa) is set by a few
# near-zero modes; kappa_bulk = max |lambda| / (the BULK_QUANTILE quantile of |lambda|) says
# how spread the rest is.
BULK_QUANTILE = 0.10


class Conditioning(NamedTuple):
    """One operator's spectrum: ``values`` [r] its eigenvalues with rigid-body and null
    modes excluded (ascending); ``kappa`` = max |value| / min |value| over them;
    ``kappa_bulk`` = max |value| / the BULK_QUANTILE quantile of |value|; ``n_params``
    the map's parameter count (P; 3n for positions); ``rank`` = r; ``n_negative`` how many
    values are below zero (H away from a minimum); ``seconds`` its wall time."""

    label: str
    values: np.ndarray
    kappa: float
    kappa_bulk: float
    n_params: int
    rank: int
    n_negative: int
    seconds: float


def kappa_bulk_of(values) -> float:
    """max |lambda| / the BULK_QUANTILE quantile of |lambda| (inf if that is 0)."""
    a = np.abs(np.asarray(values, np.float64))
    if not a.size or not np.isfinite(a).all():
        return float("inf")
    q = float(np.quantile(a, BULK_QUANTILE))
    return float(a.max() / q) if q > 0 else float("inf")


def kappa_of(values) -> float:
    """max |lambda| / min |lambda| of already-deflated eigenvalues (inf if one is exactly 0)."""
    a = np.abs(np.asarray(values, np.float64))
    if not a.size or not np.isfinite(a).all() or a.min() == 0:
        return float("inf")
    return float(a.max() / a.min())


def _flat_map(apply, params):
    """(f: flat params -> flat positions, float64; flat params; P) of x = apply(params)."""
    import jax
    import jax.numpy as jnp
    from jax.flatten_util import ravel_pytree

    params64 = jax.tree.map(lambda a: jnp.asarray(a, jnp.float64), params)
    flat, unravel = ravel_pytree(params64)

    def f(p):
        return jnp.reshape(apply(unravel(p)), (-1,)).astype(jnp.float64)

    return f, flat, int(flat.shape[0])


def _map_key(params):
    import jax

    leaves, treedef = jax.tree.flatten(params)
    return (treedef, tuple((tuple(np.shape(a)), str(np.asarray(a).dtype)) for a in leaves))


def map_ntk(apply, params, chunk: int = 128) -> tuple[np.ndarray, int]:
    """(K = J J^T [3n, 3n] of the map x = apply(params) at ``params``, P = parameter count),
    J the Jacobian of the flattened positions with respect to every leaf of ``params``
    (float64). Each column K e_i = J (J^T e_i) is one vjp and one jvp, batched by ``chunk``."""
    import jax
    import jax.numpy as jnp

    f, flat, n_params = _flat_map(apply, params)
    fn = _jitted_ntk(apply, _map_key(params))
    n_dof = int(jax.eval_shape(f, flat).shape[0])
    eye = np.eye(n_dof)
    k = np.concatenate(
        [np.asarray(fn(flat, jnp.asarray(eye[i : i + chunk]))) for i in range(0, n_dof, chunk)]
    )
    return 0.5 * (k + k.T), n_params


@functools.lru_cache(maxsize=4)
def _jitted_ntk(apply, key):
    """The jitted kernel columns of ``apply`` (cached per map and parameter structure, so the
    GNN's rows at step 0 and at its switch compile once)."""
    import jax
    import jax.numpy as jnp
    from jax.flatten_util import ravel_pytree

    treedef, shapes = key
    template = jax.tree.unflatten(treedef, [jnp.zeros(s, jnp.float64) for s, _ in shapes])
    _, unravel = ravel_pytree(template)

    def f(p):
        return jnp.reshape(apply(unravel(p)), (-1,)).astype(jnp.float64)

    @jax.jit
    def columns(p, e):  # p an argument, not a closed-over constant (kept out of the HLO)
        _, vjp = jax.vjp(f, p)

        def one(ei):
            (g,) = vjp(ei)
            return jax.jvp(f, (p,), (g,))[1]

        return jax.vmap(one)(e)

    return columns


def map_jacobian(apply, params, chunk: int = 256) -> np.ndarray:
    """J = dx/dp [3n, P] of x = apply(params) (float64), by P jvps batched by ``chunk``: the
    cheap route when P <= 3n (CG's z)."""
    import jax
    import jax.numpy as jnp

    f, flat, n_params = _flat_map(apply, params)
    cols = jax.jit(jax.vmap(lambda p, v: jax.jvp(f, (p,), (v,))[1], in_axes=(None, 0)))
    eye = np.eye(n_params)
    return np.concatenate(
        [np.asarray(cols(flat, jnp.asarray(eye[i : i + chunk]))) for i in range(0, n_params, chunk)]
    ).T


def jacobian_spectrum(h, j, x=None) -> tuple[np.ndarray, int]:
    """(eigenvalues [r] ascending, r) of J^T H J excluding zero modes, from h [3n, 3n] and the
    Jacobian j [3n, P] itself (P <= 3n): rigid-body motions at x removed from J's columns,
    J = U S V^T, the null space of J (S^2 <= RANK_TOL max S^2) dropped, the rest the
    eigenvalues of S U^T H U S. The same numbers as ``gauss_newton_spectrum`` of K = J J^T,
    without the 3n x 3n kernel."""
    h, j = np.asarray(h, np.float64), np.asarray(j, np.float64)
    if x is not None:
        r = np.concatenate(rigid_body_basis(np.asarray(x, np.float64)), axis=1)
        j = j - r @ (r.T @ j)
    with single_threaded():
        u, s, _ = sla.svd(j, full_matrices=False, check_finite=False)
        keep = s**2 > RANK_TOL * max(float(s.max()) ** 2, 1e-300)
        b = u[:, keep] * s[keep][None, :]
        m = b.T @ h @ b
        values = sla.eigh(0.5 * (m + m.T), eigvals_only=True, driver="evd", check_finite=False)
    return values, int(keep.sum())


def gauss_newton_spectrum(h, k, x=None) -> tuple[np.ndarray, int]:
    """(eigenvalues [r] ascending, r) of J^T H J excluding zero modes (see above), from
    h [3n, 3n] and the kernel k = J J^T [3n, 3n]; with x [n, 3] the rigid-body motions at x
    are removed from the map's output first.

    Full-rank kernels (the GNN's): K = L L^T (Cholesky, on the complement of the rigid span;
    that span is given an eigenvalue above the rest and dropped), and the eigenvalues of the
    symmetric L^T H L, similar to H K: one Cholesky, two triangular products and one
    eigenvalue solve. A kernel of lower rank (its reciprocal condition number at or below
    RANK_TOL, as estimated from the Cholesky factor) goes through eigh(K) and the rank cut."""
    h, k = np.asarray(h, np.float64), np.asarray(k, np.float64)
    r = np.zeros((len(h), 0))
    if x is not None:
        r = np.concatenate(rigid_body_basis(np.asarray(x, np.float64)), axis=1)
    with single_threaded():
        got = _gn_by_cholesky(h, k, r)
        if got is not None:
            return got
        kd = deflate(k, r) if r.shape[1] else 0.5 * (k + k.T)
        s, u = sla.eigh(kd, driver="evd", check_finite=False)
        keep = s > RANK_TOL * max(float(s.max()), 1e-300)
        b = u[:, keep] * np.sqrt(s[keep])[None, :]
        m = b.T @ h @ b
        values = sla.eigh(0.5 * (m + m.T), eigvals_only=True, driver="evd", check_finite=False)
    return values, int(keep.sum())


def _gn_by_cholesky(h, k, r):
    """The full-rank case of ``gauss_newton_spectrum`` (None when K is not numerically of
    full rank on the complement of r)."""
    from scipy.linalg.blas import dtrmm
    from scipy.linalg.lapack import dpocon, dpotrf

    n_r = r.shape[1]
    kmax = float(np.abs(np.diag(k)).max()) or 1.0
    kd = deflate(k, r, kmax) if n_r else 0.5 * (k + k.T)  # the rigid span: eigenvalue kmax
    anorm = float(np.abs(kd).sum(axis=0).max())
    chol, info = dpotrf(np.asfortranarray(kd), lower=1, clean=1, overwrite_a=1)
    if info != 0:
        return None
    rcond, info = dpocon(chol, anorm, uplo="L")
    if info != 0 or rcond <= 10 * RANK_TOL:
        return None
    # H on the complement, the rigid span lifted above every eigenvalue of H K
    top = _shift_above(h) * anorm / kmax
    hs = deflate(h, r, top) if n_r else 0.5 * (h + h.T)
    t = dtrmm(1.0, chol, np.asfortranarray(hs), side=1, lower=1)  # H L
    m = dtrmm(1.0, chol, t, side=0, lower=1, trans_a=1, overwrite_b=1)  # L^T H L
    values = sla.eigh(0.5 * (m + m.T), eigvals_only=True, driver="evd", check_finite=False)
    return values[: len(values) - n_r], len(values) - n_r


def position_conditioning(
    model: EnergyModel, x, label: str = "H in positions", h=None
) -> Conditioning:
    """The Hessian's own spectrum at x, rigid-body span excluded (eigenvalues only)."""
    import time

    t = time.perf_counter()
    x = np.asarray(x, np.float64)
    h = np.asarray(hessian(model, x), np.float64) if h is None else h
    values = eigvals_deflated(h, np.concatenate(rigid_body_basis(x), axis=1))
    return Conditioning(
        label,
        values,
        kappa_of(values),
        kappa_bulk_of(values),
        len(h),
        len(values),
        int((values < 0).sum()),
        time.perf_counter() - t,
    )


def map_conditioning(model: EnergyModel, apply, params, label: str, h=None) -> Conditioning:
    """The Gauss-Newton spectrum of x = apply(params) at params (H at x = apply(params),
    or ``h`` when given): through the Jacobian itself when the map has at most 3n
    parameters (``jacobian_spectrum``), else through its kernel (``gauss_newton_spectrum``)."""
    import time

    t = time.perf_counter()
    x = np.asarray(apply(params), np.float64)
    if h is None:
        h = np.asarray(hessian(model, x), np.float64)
    n_params = _flat_map(apply, params)[2]
    if n_params <= x.size:
        values, rank = jacobian_spectrum(h, map_jacobian(apply, params), x)
    else:
        k, n_params = map_ntk(apply, params)
        values, rank = gauss_newton_spectrum(h, k, x)
    return Conditioning(
        label,
        values,
        kappa_of(values),
        kappa_bulk_of(values),
        n_params,
        rank,
        int((values < 0).sum()),
        time.perf_counter() - t,
    )


def gauss_newton_extremes(model: EnergyModel, apply, params, n_eig: int = 6, x=None):
    """(largest, smallest) ``n_eig`` algebraic eigenvalues of J^T H J by Lanczos (scipy
    eigsh on a LinearOperator: v -> J^T H J v as jvp, Hessian-vector product, vjp), for
    maps too large for the dense kernel. Rigid-body motions are removed from the output as
    in ``gauss_newton_spectrum``; the null space of J is not (its zeros sit inside the
    spectrum, so the smallest |value| is not found this way: only the edges)."""
    import jax
    import jax.numpy as jnp
    from jax.flatten_util import ravel_pytree
    from scipy.sparse.linalg import LinearOperator, eigsh

    params64 = jax.tree.map(lambda a: jnp.asarray(a, jnp.float64), params)
    flat, unravel = ravel_pytree(params64)
    x_at = np.asarray(apply(params64), np.float64) if x is None else np.asarray(x, np.float64)
    r = jnp.asarray(np.concatenate(rigid_body_basis(x_at), axis=1))
    n_atoms = x_at.shape[0]

    def f(p):
        return jnp.reshape(apply(unravel(p)), (-1,)).astype(jnp.float64)

    def off_rigid(v):
        return v - r @ (r.T @ v)

    grad = jax.grad(lambda y: model.energy_fn(jnp.reshape(y, (n_atoms, 3))))
    y0 = jnp.asarray(x_at.reshape(-1))

    @jax.jit
    def matvec(p, y, v):
        jv, vjp = jax.jvp(f, (p,), (v,))[1], jax.vjp(f, p)[1]
        hjv = jax.jvp(grad, (y,), (off_rigid(jv).astype(y.dtype),))[1].astype(jnp.float64)
        return vjp(off_rigid(hjv))[0]

    n = int(flat.shape[0])
    op = LinearOperator(
        (n, n), matvec=lambda v: np.asarray(matvec(flat, y0, jnp.asarray(v))), dtype=float
    )
    top = eigsh(op, k=n_eig, which="LA", return_eigenvectors=False)
    bottom = eigsh(op, k=n_eig, which="SA", return_eigenvectors=False)
    return np.sort(top), np.sort(bottom)


CONDITIONING_PARTS = ("start", "switch")


def initial_params(spec, system, modes):
    """The reparametrization's parameters at step 0 of a run of ``spec`` (as engine.run's
    init_run makes them: the spec's dtype, the first half of the seed's key), without
    compiling the run's stages."""
    import jax
    import jax.numpy as jnp

    from .reparam import make_reparam

    dtype = jnp.float64 if spec.energy.dtype == "float64" else jnp.float32
    key_init, _ = jax.random.split(jax.random.PRNGKey(spec.seed))
    reparam = make_reparam(spec.reparam, modes, system.n_atoms, dtype, bonds=system.bonds)
    return reparam.init(key_init, jnp.asarray(system.x0, dtype))


def conditioning_report(
    specs,
    system,
    report=None,
    should_stop=None,
    max_steps: int | None = None,
    parts=CONDITIONING_PARTS,
) -> list[Conditioning]:
    """Spectra of H in positions at x0 and of J^T H J for each reparametrized spec of
    ``specs`` (all on ``system``), each with H where the map puts x: a linear map (CG) at
    its start, the GNN at its start and at its stage switch, found by running the GNN's
    stage 1 again with the spec's seed (a deterministic replay; at most ``max_steps``,
    default the spec's budget). Rows in that order; a GNN that never switches gets no
    switch row. ``parts``: "start" (H, CG, the GNN at step 0: seconds) and/or "switch" (the
    GNN at its switch: the replay dominates), so a view can show the first while the second
    runs. ``report(text)`` tells the phase; ``should_stop()`` True raises
    engine.types.Stopped."""
    import jax.numpy as jnp

    from .reparam import make_reparam
    from .run import advance, apply_policy, compute_modes, default_n_modes, init_run
    from .schedule import RUNNING
    from .systems import make_energy
    from .types import Stopped

    report = report or (lambda text: None)
    should_stop = should_stop or (lambda: False)
    unknown = set(parts) - set(CONDITIONING_PARTS)
    if unknown or not parts:
        raise ValueError(f"parts must be among {CONDITIONING_PARTS}, got {parts}")

    def check(phase):
        if should_stop():
            raise Stopped(phase, "stopped by request")

    specs = list(specs)
    if not specs:
        raise ValueError("conditioning_report needs at least one spec")
    model = make_energy(system, specs[0].energy)
    start, switch = "start" in parts, "switch" in parts
    rows = []
    known: dict = {}  # CG and the GNN on the same modes settings share one computation

    def modes_of(spec):
        key = (repr(spec.modes), default_n_modes(spec, system.n_atoms), spec.seed)
        if key not in known:
            known[key] = compute_modes(spec, system, model, should_stop=should_stop)
        return known[key]

    if start:
        report(f"H at x0: its {3 * system.n_atoms - 6} non-rigid eigenvalues")
        rows.append(position_conditioning(model, system.x0, "H in positions, at x0"))
    for spec in specs:
        check("conditioning")
        kind = spec.reparam.kind
        if kind == "linear" and start:
            report("CG: slow modes and the Jacobian J = ∂x/∂z")
            modes = modes_of(spec)
            reparam = make_reparam(spec.reparam, modes, system.n_atoms, jnp.float64)
            params = reparam.init(None, jnp.asarray(system.x0))
            k = modes.vectors.shape[1]
            label = f"CG at its start, x = Ψz (k = {k})"
            rows.append(map_conditioning(model, reparam.apply, params, label))
        elif kind == "gnn":
            if start:
                report("GNN: slow modes and its initial parameters")
                modes = modes_of(spec)
                reparam = make_reparam(
                    spec.reparam, modes, system.n_atoms, jnp.float64, bonds=system.bonds
                )
                params = initial_params(spec, system, modes)
                report("GNN at its start: the kernel J J^T (one vjp and one jvp per coordinate)")
                rows.append(map_conditioning(model, reparam.apply, params, "GNN at step 0"))
            if not switch:
                continue
            report("GNN: building the run to replay its stage 1 (modes, compilation)")
            run_parts, state, _ = init_run(spec, system, should_stop=should_stop)
            reparam = make_reparam(
                spec.reparam, run_parts.modes, system.n_atoms, jnp.float64, bonds=system.bonds
            )
            limit = max_steps or spec.schedule.max_steps
            while state.schedule.status == RUNNING and state.step < limit:
                check("conditioning")
                state, obs = advance(run_parts, state)
                after = apply_policy(run_parts, state, obs)
                if after.schedule.stage != obs.stage:
                    report(f"GNN at its switch (step {state.step}): the kernel J J^T")
                    label = f"GNN at its switch (step {state.step})"
                    rows.append(map_conditioning(model, reparam.apply, state.params, label))
                    break
                state = after
                report(f"GNN: replaying stage 1 to its switch, step {state.step} of ≤ {limit}")
    return rows


# ---- the GNN's propagation graph ---------------------------------------------------------
def propagation_matrix(spec, system, modes=None) -> np.ndarray:
    """The GNN's propagation A [n, n] for ``spec`` (reparam.propagation): sum_c B_c B_c^T on
    the spec's slow modes (psi: Psi Psi^T; psi-lambda: Psi Lambda Psi^T; Cartesian modes:
    the trace of each 3x3 block), or A_bond + 0.2 I for "bonds". ``modes``: precomputed
    slow modes of the spec (computed here when None)."""
    from .reparam.gnn import BOND_SELF_WEIGHT, propagation_factors
    from .run import compute_modes
    from .systems import make_energy

    n = system.n_atoms
    if spec.reparam.propagation == "bonds":
        bonds = np.asarray([] if system.bonds is None else system.bonds, np.int64).reshape(-1, 2)
        a = BOND_SELF_WEIGHT * np.eye(n)
        a[bonds[:, 0], bonds[:, 1]] = 1.0
        a[bonds[:, 1], bonds[:, 0]] = 1.0
        return a
    if modes is None:
        modes = compute_modes(spec, system, make_energy(system, spec.energy))
    b = propagation_factors(modes, n, spec.reparam.propagation)
    return np.einsum("cik,cjk->ij", b, b)


def strongest_edges(a, m: int) -> tuple[np.ndarray, np.ndarray]:
    """(pairs [m', 2] with i < j, weights [m']) of the ``m`` off-diagonal entries of the
    symmetric a [n, n] largest in |weight|, strongest first (m' = min(m, n(n-1)/2))."""
    a = np.asarray(a, np.float64)
    if m < 0:
        raise ValueError(f"m must be >= 0, got {m}")
    i, j = np.triu_indices(a.shape[0], 1)
    w = a[i, j]
    m = min(m, len(w))
    top = np.argpartition(-np.abs(w), m - 1)[:m] if m else np.zeros(0, np.int64)
    top = top[np.argsort(-np.abs(w[top]), kind="stable")]
    return np.stack([i[top], j[top]], axis=1), w[top]


# ---- the energy landscape slice ------------------------------------------------------------
def landscape_slice(model: EnergyModel, center, u, v, extent_u: float, extent_v: float, grid=41):
    """(a [grid], b [grid], E [grid, grid]) with E[ib, ia] the energy at
    center + a u + b v (u, v [3n] or [n, 3], made orthonormal here: v loses its u part)
    over a in [-extent_u, extent_u], b in [-extent_v, extent_v]. Energies in rows of b."""
    import jax
    import jax.numpy as jnp

    if grid < 3:
        raise ValueError(f"grid must be >= 3, got {grid}")
    center = np.asarray(center, np.float64)
    u, v = _plane(u, v)
    a = np.linspace(-extent_u, extent_u, grid)
    b = np.linspace(-extent_v, extent_v, grid)
    shape = center.shape
    energy = jax.jit(jax.vmap(lambda y: model.energy_fn(jnp.reshape(y, shape))))
    aa, bb = np.meshgrid(a, b)
    pts = center.reshape(1, -1) + aa.reshape(-1, 1) * u[None] + bb.reshape(-1, 1) * v[None]
    batch = int(np.clip(4e7 / shape[0] ** 2, 1, 256))  # pair matrices of a batch: ~0.3 GB
    out = np.concatenate(
        [np.asarray(energy(jnp.asarray(pts[i : i + batch]))) for i in range(0, len(pts), batch)]
    )
    return a, b, out.reshape(grid, grid).astype(np.float64)


def _plane(u, v) -> tuple[np.ndarray, np.ndarray]:
    u = np.asarray(u, np.float64).reshape(-1)
    v = np.asarray(v, np.float64).reshape(-1)
    nu = np.linalg.norm(u)
    if nu == 0:
        raise ValueError("the first direction is zero")
    u = u / nu
    v = v - u * (u @ v)
    nv = np.linalg.norm(v)
    if nv < 1e-12:
        raise ValueError("the two directions are parallel")
    return u, v / nv


def path_in_plane(frames, center, u, v) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(a [T], b [T], in_plane [T]) of frames [T, n, 3]: their coordinates along u and v
    (orthonormalised as in ``landscape_slice``) from center, and the fraction of
    |x - center|^2 the plane holds (1 at the center itself)."""
    u, v = _plane(u, v)
    d = np.asarray(frames, np.float64).reshape(len(frames), -1) - np.asarray(
        center, np.float64
    ).reshape(1, -1)
    a, b = d @ u, d @ v
    total = (d**2).sum(axis=1)
    frac = np.divide(a**2 + b**2, total, out=np.ones_like(total), where=total > 0)
    return a, b, frac
