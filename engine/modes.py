"""Slow modes of an energy: the reference's block-norm Laplacian and the full Hessian.

Contract: ``slow_modes(system, model, cfg, n_modes, *, seed, x) -> SlowModes`` is pure
computation (no files, no threads), deterministic given ``seed``, and returns float64 host
arrays. Two constructions (method.md §4):

- "block-laplacian" (§4.1, the reference): K_ij = Frobenius norm of the 3x3 Hessian block
  (i, j), averaged over configurations; L = diag(K 1) - K; the lowest eigenvectors of L in
  node space [n_atoms, k]. The constant vector (L 1 = 0) is kept and flagged rigid. Modes
  are ordered by their Laplacian eigenvalue (the construction's notion of slowness); the
  returned ``values`` are the reference's Rayleigh quotients psi^T K psi clamped at 0
  (§9.1 item 7), which are *not* monotone in that order (they roughly decrease).
- "hessian" (§4.2): the k eigenpairs of the full 3n x 3n Hessian with the smallest
  |eigenvalue|, Cartesian space [3 n_atoms, k], row 3i + c, sorted by |value|. Rigid-body
  zero modes are the analytic translations (exact zero modes everywhere) and, at a
  stationary point, rotations about the centroid; they are returned as the analytic
  vectors, flagged, with their Rayleigh quotients as values, and the other modes are
  computed in their orthogonal complement. Stationarity is tested on |H r| directly and,
  after a short relaxation, by projecting the computed slow modes onto the analytic
  rotations (ROTATION_CAPTURE, ROTATION_GAP). ``cfg.keep_rigid`` decides whether rigid
  modes count among the ``n_modes``.

Where (``cfg.at``): "samples" averages over the reference's random configurations (loops:
x_s = init_sigma N(0,1) c_s; proteins: x + std(x)/10 N(0,1) c_s); "x0" uses one
configuration; "minimum" relaxes it first with L-BFGS, bounded in steps and seconds.

Solvers (``cfg.solver``), on a dense Hessian (analytic pair blocks when
``model.pair_terms`` is set, batched autodiff otherwise) or a sparse one (below):

- "dense": LAPACK ``eigh``; for an indefinite Hessian the eigenvalues are found first and
  then the eigenvectors of the contiguous index window around 0 (two passes).
- "iterative": shift-invert block Krylov around 0 on a dense Cholesky (tried for positive
  semi-definite operators: the block-Laplacian, Hessians at "minimum") or LU factorization;
  the final residual against the operator itself is reported in the method string.
  Unpreconditioned Lanczos on H is hopeless here: the slow modes cluster next to the
  rigid-body zeros (platform-notes §2c), and away from a minimum the wanted eigenvalues are
  interior. For autodiff energies above ``AUTODIFF_DENSE_MAX_ATOMS`` atoms, matrix-free
  LOBPCG on Hessian-vector products instead (smallest *algebraic* eigenvalues: right near
  a minimum only).
- "auto": "iterative" when the operator has more than ``AUTO_DENSE_MAX_DOF`` rows and at
  most ``AUTO_ITERATIVE_MAX_FRACTION`` of its modes are wanted, else "dense".

Sparse route (the size switch is ``AUTO_DENSE_MAX_DOF`` above, declared once): when the
solver is "iterative" (asked for, or chosen by "auto") and the energy's pair terms have no
all-pairs term (``hessian.plan_is_sparse``: bonds, contacts and the cutoff model's
repulsion), the Hessian or the block-norm matrix is assembled as scipy.sparse from the pairs
that interact (``hessian.sparse_pair_hessian`` / ``sparse_block_norms``; O(pairs) memory).
The solver is LOBPCG preconditioned by a banded Cholesky of the band |i - j| <= the longest
listed pair (bonds and loop contacts of a chain in index order; the weak pairs within the
cutoff go to the diagonal), with the rigid-body modes as constraints. It is accepted when it
converged and its smallest eigenvalue is >= 0 (then smallest algebraic = smallest |mu|):
always for the block-Laplacian, for Hessians near a minimum. Otherwise (an indefinite
Hessian: interior eigenvalues) shift-invert runs on a sparse LU (SuperLU, symmetric mode,
minimum-degree ordering of A + A^T): exact, but random configurations (the reference samples,
a random start) connect the chain's beads across space and the LU fills in (measured in
docs/benchmarks-modes.md). The rigid-body modes are not added to the matrix (that would make
it dense): the solves are projected instead, P (H - sigma I)^{-1} P with P = I - B B^T, which
inverts the projected operator exactly when B spans an invariant subspace of H (translations
always; rotations to within ROTATION_TOL), and the final Rayleigh-Ritz uses P H P itself. When the
assembled matrix holds more than ``SPARSE_MAX_DENSITY`` of its entries (a compact
configuration, every pair within the cutoff), it is densified and the dense route taken.

Cancellation and progress: ``slow_modes(..., should_stop=, on_block=)`` reports what it is
doing as a short phrase ("sample 3 of 40", "eigensolver: shift-invert block 2 (at most 60)")
and checks ``should_stop`` at the same points: before each sampled Hessian, each L-BFGS step
of the relaxation, each Krylov block, each LOBPCG Hessian-vector product and before the
eigensolver. When it returns True, ``engine.types.Stopped("modes")`` is raised; nothing is
returned. One LAPACK call (a sample's Hessian, a factorization, a dense ``eigh``) is not
interrupted: the stop takes effect at the next check point.

NOTE: with all-pairs terms the Hessian is dense: 9 n^2 doubles, 1.15 GB at n = 4000, plus a
factorization of the same size for "iterative".
"""

from __future__ import annotations

import functools
import time
import warnings
from collections.abc import Callable
from typing import NamedTuple

import jax
import numpy as np
import scipy.linalg as sla
import scipy.optimize
import scipy.sparse as sp
import scipy.sparse.linalg as ssla

from . import blas
from . import hessian as hess
from .config import ModesConfig
from .types import EnergyModel, SlowModes, Stopped, System

# Reference sampling per loop kind (method.md §4.1): (n_samples, scale_min, scale_max).
LOOP_SAMPLING = {"bond-lj-loop": (10, 3.0, 8.0), "lj-loop": (40, 0.01, 0.2)}
# Protein sampling (reference notebook): x + std(x)/10 N(0,1) c_s, c_s = linspace(0.2, 1, 10).
PROTEIN_SAMPLING = (10, 0.2, 1.0)
PROTEIN_SAMPLE_STD_FRACTION = 0.1

# "minimum": L-BFGS until max|g| <= RELAX_GTOL_REL * max|g(start)| or a bound is hit.
# NOTE: the seconds bound makes the result depend on machine speed when it binds (large n).
RELAX_MAX_STEPS = 1000
RELAX_MAX_SECONDS = 30.0
RELAX_GTOL_REL = 1e-9
RELAX_REPORT_EVERY = 25  # L-BFGS steps between progress reports (stops are checked every step)

# Rotations count as zero modes when |H r| <= ROTATION_TOL * ||H||_inf for each unit
# rotation vector r (H r = Omega grad E exactly, so this tests stationarity). Short of that,
# they still do when the computed slow modes contain them (principal-angle cosines >=
# ROTATION_CAPTURE) and their Rayleigh quotients are below ROTATION_GAP times every other
# wanted |mu|: stationary to within the resolution of the slow spectrum.
ROTATION_TOL = 1e-7
ROTATION_CAPTURE = 0.99
ROTATION_GAP = 0.05
ROTATION_SCREEN = 1e-3  # |H r| above this * ||H||_inf: clearly not stationary, no search
# Shift-invert stops when every relative residual of the inverted operator is <= SOLVER_TOL;
# eigenvalue errors are then ~SOLVER_TOL^2 relative (or at dense eigh's own rounding floor).
SOLVER_TOL = 1e-6
SOLVER_MAX_BLOCKS = 60
SOLVER_BASIS_BLOCKS = 8  # Krylov basis kept between restarts, in blocks
LOBPCG_MAX_ITER = 500
LOBPCG_ROUNDS = 3  # sparse route: LOBPCG restarts from its vectors when a residual is too large
# ... and accepts residuals |H psi - mu psi| <= max(SOLVER_TOL |mu|, this * ||H||): 1e4 eps, the
# floor of a sparse product's rounding (dense eigh's own backward error is ~eps ||H||).
LOBPCG_RESIDUAL_FLOOR = 1e-12

# "auto": the Krylov basis grows to ~16 k columns and its Rayleigh-Ritz costs O((16 k)^3),
# so the iterative solver only pays off for few modes of a large operator.
AUTO_DENSE_MAX_DOF = 900
AUTO_ITERATIVE_MAX_FRACTION = 0.025
AUTODIFF_DENSE_MAX_ATOMS = 2000
# Sparse route: densify (dense route) when more than this fraction of the entries is stored.
SPARSE_MAX_DENSITY = 0.05
# Sparse route: the LOBPCG preconditioner's band, in atoms (the longest listed pair |i - j|,
# at most this; for the loops, the loop stride).
BAND_MAX_ATOMS = 64


class Checkpoint(NamedTuple):
    """Where a slow-mode computation reports progress and may be stopped.

    ``checkpoint(detail)`` passes ``detail`` to ``on_block`` (when it changed) and raises
    ``Stopped("modes")`` when ``should_stop()`` is True. ``NO_CHECKPOINT`` does neither.
    """

    should_stop: Callable[[], bool] | None = None
    on_block: Callable[[str], None] | None = None

    def __call__(self, detail: str | None = None) -> None:
        if detail is not None and self.on_block is not None:
            self.on_block(detail)
        if self.should_stop is not None and self.should_stop():
            raise Stopped("modes", "stopped by request while computing slow modes")


NO_CHECKPOINT = Checkpoint()


# ---- configurations ------------------------------------------------------------------------


def sample_configurations(system: System, cfg: ModesConfig, x: np.ndarray, rng) -> np.ndarray:
    """The reference's random configurations for averaging Hessians (method.md §4.1).

    Args:
      system: loops read ``system.meta["system"]``; proteins sample around ``x``.
      cfg: ``n_samples`` / ``sample_scale_min`` / ``sample_scale_max`` override the defaults.
      x: [n_atoms, 3] centre configuration for proteins (ignored for loops).
      rng: numpy Generator.

    Returns:
      [n_samples, n_atoms, 3] float64 positions (length units).

    Raises:
      ValueError: a loop kind without reference sampling and without full overrides, or
        sample_scale_min > sample_scale_max.
    """
    n = system.n_atoms
    if system.kind == "protein":
        default = PROTEIN_SAMPLING
    else:
        default = LOOP_SAMPLING.get(system.meta.get("system"))
        if default is None and None in (cfg.n_samples, cfg.sample_scale_min, cfg.sample_scale_max):
            raise ValueError(
                f"system.meta['system'] must be one of {', '.join(LOOP_SAMPLING)} for reference "
                f"sampling, got {system.meta.get('system')!r}; or set modes.n_samples, "
                "modes.sample_scale_min and modes.sample_scale_max"
            )
        default = default or (None, None, None)
    n_samples = cfg.n_samples if cfg.n_samples is not None else default[0]
    lo = cfg.sample_scale_min if cfg.sample_scale_min is not None else default[1]
    hi = cfg.sample_scale_max if cfg.sample_scale_max is not None else default[2]
    if lo > hi:
        raise ValueError(
            f"modes.sample_scale_min must be <= modes.sample_scale_max, got {lo} > {hi}"
        )
    scales = np.linspace(lo, hi, n_samples)[:, None, None]
    noise = rng.standard_normal((n_samples, n, 3))
    if system.kind == "protein":
        return x[None] + PROTEIN_SAMPLE_STD_FRACTION * np.std(x) * noise * scales
    init_sigma = n ** (1.0 / 3.0) / 2.0
    return init_sigma * noise * scales


@functools.lru_cache(maxsize=4)
def _value_and_grad_fn(energy_fn):
    """Jitted value_and_grad, cached so repeated relaxations of one energy compile once."""
    return jax.jit(jax.value_and_grad(energy_fn))


def relax(
    model: EnergyModel,
    x: np.ndarray,
    *,
    max_steps: int | None = None,
    max_seconds: float | None = None,
    checkpoint: Checkpoint = NO_CHECKPOINT,
) -> tuple[np.ndarray, int]:
    """A short L-BFGS relaxation of ``model.energy_fn`` (float64).

    Stops when max|g| <= RELAX_GTOL_REL * max|g(x)|, after ``max_steps`` iterations, after
    ``max_seconds``, or when the line search fails (gradient at rounding level).

    Args:
      model: the energy.
      x: [n_atoms, 3] start (length units).
      max_steps: L-BFGS iteration bound, >= 0 (None: RELAX_MAX_STEPS).
      max_seconds: wall-clock bound, > 0 (None: RELAX_MAX_SECONDS).
      checkpoint: called before every L-BFGS step (progress every RELAX_REPORT_EVERY).

    Returns:
      (x_relaxed [n_atoms, 3], number of L-BFGS iterations); x itself if the relaxation
      produced non-finite positions.

    Raises:
      Stopped: the checkpoint's should_stop returned True.
    """
    max_steps = RELAX_MAX_STEPS if max_steps is None else max_steps
    max_seconds = RELAX_MAX_SECONDS if max_seconds is None else max_seconds
    if max_steps < 0:
        raise ValueError(f"max_steps must be >= 0, got {max_steps}")
    if not max_seconds > 0:
        raise ValueError(f"max_seconds must be > 0, got {max_seconds}")
    shape = x.shape
    value_and_grad = _value_and_grad_fn(model.energy_fn)

    def fun(flat):
        e, g = value_and_grad(flat.reshape(shape))
        return float(e), np.asarray(g, dtype=np.float64).ravel()

    _, g0 = fun(x.ravel())
    g0_max = float(np.max(np.abs(g0)))
    if max_steps == 0 or g0_max == 0.0:
        return x, 0
    deadline = time.perf_counter() + max_seconds
    steps = [0]

    checkpoint("relaxing to the nearest minimum")

    def callback(intermediate_result):
        del intermediate_result
        steps[0] += 1
        every = steps[0] % RELAX_REPORT_EVERY == 0
        checkpoint(f"relaxing to the nearest minimum (L-BFGS step {steps[0]})" if every else None)
        if time.perf_counter() > deadline:
            raise StopIteration

    res = scipy.optimize.minimize(
        fun,
        x.ravel(),
        jac=True,
        method="L-BFGS-B",
        callback=callback,
        options={"maxiter": max_steps, "gtol": RELAX_GTOL_REL * g0_max, "ftol": 0.0, "maxcor": 20},
    )
    x_min = np.asarray(res.x, dtype=np.float64).reshape(shape)
    if not np.all(np.isfinite(x_min)):
        return x, 0
    return x_min, int(steps[0])


# ---- rigid-body modes ---------------------------------------------------------------------


def rigid_body_basis(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Orthonormal translations and rotations (about the centroid) of a configuration.

    Args:
      x: [n_atoms, 3] positions.

    Returns:
      (translations [3n, 3], rotations [3n, r]) with r = 3, or 2 for a collinear
      configuration (0 for one atom); rotations are orthogonal to translations.
    """
    x = np.asarray(x, dtype=np.float64)
    n = x.shape[0]
    translations = np.zeros((n, 3, 3))
    for a in range(3):
        translations[:, a, a] = 1.0 / np.sqrt(n)
    y = x - x.mean(axis=0)
    rotations = np.stack([np.cross(np.eye(3)[a], y) for a in range(3)], axis=-1)  # [n, 3, 3]
    rotations = rotations.reshape(3 * n, 3)
    u, s, _ = np.linalg.svd(rotations, full_matrices=False)
    keep = s > 1e-10 * max(float(s.max(initial=0.0)), 1e-300)
    return translations.reshape(3 * n, 3), u[:, keep]


def _inf_norm(a: np.ndarray, chunk: int = 512) -> float:
    """max_i sum_j |a_ij| (>= ||a||_2 for symmetric a) in row chunks (no N^2 temporary); 1 if 0."""
    if sp.issparse(a):
        return float(np.asarray(abs(a).sum(axis=1)).max(initial=0.0)) or 1.0
    norm = max(
        (float(np.abs(a[i : i + chunk]).sum(axis=1).max()) for i in range(0, a.shape[0], chunk)),
        default=0.0,
    )
    return norm or 1.0


def _fix_signs(vectors: np.ndarray) -> np.ndarray:
    """Make the largest-magnitude entry of each column positive (deterministic output)."""
    idx = np.argmax(np.abs(vectors), axis=0)
    signs = np.sign(vectors[idx, np.arange(vectors.shape[1])])
    signs[signs == 0] = 1.0
    return vectors * signs


def _project_out(a: np.ndarray, basis: np.ndarray, alpha: float, chunk: int = 512) -> np.ndarray:
    """P a P + alpha B B^T in place, P = I - B B^T (B orthonormal [N, r]).

    The complement keeps a's spectrum restricted to it; the basis moves to eigenvalue alpha,
    out of the way of the lowest-|mu| search. One pass over a in row chunks (no N x N
    temporaries: a is 1.15 GB at n = 4000).
    """
    if basis.shape[1] == 0:
        return a
    ab = a @ basis  # [N, r]
    core = basis.T @ ab + alpha * np.eye(basis.shape[1])  # [r, r]
    # P a P = a - B (a B)^T - (a B) B^T + B (B^T a B) B^T for symmetric a.
    right = np.hstack([ab, basis, basis @ core])  # [N, 3r]
    for start in range(0, a.shape[0], chunk):
        rows = slice(start, min(start + chunk, a.shape[0]))
        left = np.hstack([-basis[rows], -ab[rows], basis[rows]])  # [c, 3r]
        a[rows] += left @ right.T
    return a


# ---- eigensolvers -------------------------------------------------------------------------


def _abs_window(sorted_values: np.ndarray, k: int) -> tuple[int, int]:
    """[lo, hi) index window of the k values nearest 0 in an ascending array (contiguous)."""
    lo = hi = int(np.searchsorted(sorted_values, 0.0))
    while hi - lo < k:
        if hi == len(sorted_values) or (lo > 0 and -sorted_values[lo - 1] <= sorted_values[hi]):
            lo -= 1
        else:
            hi += 1
    return lo, hi


def dense_lowest(a: np.ndarray, k: int, *, psd_hint: bool) -> tuple[np.ndarray, np.ndarray, str]:
    """The k eigenpairs of a dense symmetric matrix with the smallest |eigenvalue|.

    One ``eigh`` subset pass when the matrix is positive semi-definite (smallest algebraic =
    smallest |.|), which is tested with a Cholesky factorization when ``psd_hint`` is set;
    otherwise all eigenvalues first, then the eigenvectors of the contiguous index window
    around 0.

    Args:
      a: [N, N] symmetric.
      k: number of pairs, 1..N.
      psd_hint: the matrix is expected to be positive semi-definite.

    Returns:
      (values [k] ascending, vectors [N, k], description).
    """
    psd = False
    if psd_hint:
        scale = _inf_norm(a)
        try:
            m = a.copy(order="F")
            m[np.diag_indices_from(m)] += 1e-13 * scale
            sla.cholesky(m, lower=True, overwrite_a=True, check_finite=False)
            psd = True
        except np.linalg.LinAlgError:
            psd = False
        del m
    if psd:
        lo, hi = 0, k
    else:
        w = sla.eigh(a, eigvals_only=True, check_finite=False)
        lo, hi = _abs_window(w, k)
    values, vectors = sla.eigh(a, subset_by_index=[lo, hi - 1], check_finite=False, driver="evr")
    return values, vectors, "dense-eigh" + ("" if psd else " (two-pass)")


def _shifted_copy(a: np.ndarray, shift: float) -> np.ndarray:
    """a + shift I as a Fortran-ordered copy, for LAPACK to factor in place.

    a is symmetric, so the transpose of a plain (C-order) copy is that matrix in Fortran
    order: a straight memory copy instead of a transposing one (3-10x slower at N = 3000-12000).
    """
    m = np.array(a, order="C").T  # always a copy
    m[np.diag_indices_from(m)] += shift
    return m


def _factorize(a: np.ndarray, shift: float, try_cholesky: bool):
    """solve_fn(B) = (a + shift I)^{-1} B with a Cholesky or LU factorization of symmetric a.

    Returns (solve_fn, kind), kind "cholesky" or "lu" (also when Cholesky was tried and the
    matrix turned out indefinite). Each factorization works in place on one copy.
    """
    if try_cholesky:
        try:
            shifted = _shifted_copy(a, shift)
            factor = sla.cho_factor(shifted, lower=True, overwrite_a=True, check_finite=False)
            return (lambda b: sla.cho_solve(factor, b, check_finite=False)), "cholesky"
        except np.linalg.LinAlgError:
            pass  # not positive definite after all: LU below
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", sla.LinAlgWarning)  # exactly singular: huge but finite
        factor = sla.lu_factor(_shifted_copy(a, shift), overwrite_a=True, check_finite=False)
    return (lambda b: sla.lu_solve(factor, b, check_finite=False)), "lu"


def _orthonormalize(w: np.ndarray) -> np.ndarray:
    """Orthonormal basis of the columns of tall w [N, b], rank-revealing.

    Cholesky QR twice (two small Gram matrices and triangular solves: about 4x faster than
    Householder QR for N >> b), or column-pivoted QR with the negligible columns dropped when
    w is numerically rank-deficient (the Gram matrix is then not positive definite).
    """
    try:
        for _ in range(2):
            c = np.linalg.cholesky(w.T @ w)
            w = sla.solve_triangular(c, w.T, lower=True, check_finite=False).T
        if np.linalg.cond(c) < 1e4:  # second pass near identity: w is orthonormal to rounding
            return np.asfortranarray(w)
    except np.linalg.LinAlgError:
        pass
    q, r, _ = sla.qr(w, mode="economic", pivoting=True, check_finite=False)  # pivoted: the
    diag = np.abs(np.diag(r))  # leading columns span w, whatever the order of dependence
    return np.asfortranarray(q[:, diag > 1e-12 * max(float(diag.max(initial=0.0)), 1e-300)])


def shift_invert_lowest(
    a: np.ndarray,
    k: int,
    *,
    psd_hint: bool,
    rng,
    scale: float,
    tol: float = SOLVER_TOL,
    max_blocks: int = SOLVER_MAX_BLOCKS,
    checkpoint: Checkpoint = NO_CHECKPOINT,
) -> tuple[np.ndarray, np.ndarray, str]:
    """The k eigenpairs of a symmetric matrix nearest 0, by shift-invert block Krylov.

    The Krylov space of B = (a - sigma I)^{-1} (sigma = -1e-13 scale, so exactly singular
    matrices still factor) grows a block at a time; Rayleigh-Ritz with B picks the Ritz
    pairs of largest |theta| (mu = sigma + 1/theta nearest sigma). It stops when every
    relative B-residual |B y - theta y| / |theta| <= tol (the eigenvalue error is about its
    square), or when those residuals stall at their rounding floor (set by the condition of
    the factorization). A last Rayleigh-Ritz with a itself gives the values.

    Args:
      a: [N, N] symmetric.
      k: number of pairs, 1..N.
      psd_hint: try a Cholesky factorization first (LU if it fails).
      rng: numpy Generator for the starting block.
      scale: ||a||_inf (or another bound on ||a||_2), for the shift and the report.
      tol: relative B-residual tolerance.
      max_blocks: Krylov blocks before giving up on convergence (the best pairs are returned).
      checkpoint: called before the factorization and before each block solve.

    Returns:
      (values [k] ascending, vectors [N, k], description) where description names the
      factorization, the number of block solves and the largest final residual
      |a psi - mu psi| / scale, plus "not converged" when it failed.
    """
    sigma = -1e-13 * scale
    checkpoint("eigensolver: factorizing")
    solve, kind = _factorize(a, -sigma, psd_hint)
    # Small LAPACK calls stall with two BLAS threads (engine.blas); only solves use both.
    with blas.single_threaded() as all_threads:

        def threaded_solve(b):
            with all_threads():
                return solve(b)

        return _block_krylov(a, k, threaded_solve, kind, rng, scale, tol, max_blocks, checkpoint)


def _block_krylov(a, k, solve, kind, rng, scale, tol, max_blocks, checkpoint=NO_CHECKPOINT):
    """The loop of shift_invert_lowest, given solve(B) = (a - sigma I)^{-1} B."""
    n_dof = a.shape[0]
    block = min(n_dof, k + max(10, k))
    # Basis Q, its image B Q and the projection T = Q^T B Q grow in preallocated buffers
    # (column-major, so blocks of columns are contiguous for LAPACK); beyond max_cols
    # columns the search restarts from the best Ritz vectors.
    max_cols = min(n_dof, SOLVER_BASIS_BLOCKS * block)
    q_buf = np.empty((n_dof, max_cols), order="F")
    bq_buf = np.empty((n_dof, max_cols), order="F")
    t_buf = np.zeros((max_cols, max_cols))
    q_buf[:, :block] = _orthonormalize(rng.standard_normal((n_dof, block)))
    m, new = block, slice(0, block)  # columns in use, columns without an image yet
    n_solves = 0
    converged = False
    history: list[float] = []
    for i in range(max_blocks):
        checkpoint(f"eigensolver: shift-invert block {i + 1} (at most {max_blocks})")
        bq_buf[:, new] = solve(q_buf[:, new])
        n_solves += 1
        qm, bq = q_buf[:, :m], bq_buf[:, :m]
        # Only the new columns of T: B is symmetric, so the rest is known (T's new rows
        # are the transpose of its new columns).
        t_new = qm.T @ bq_buf[:, new]
        t_buf[:m, new] = t_new
        t_buf[new, : new.start] = t_new[: new.start].T
        t_buf[new, new] = 0.5 * (t_new[new.start :] + t_new[new.start :].T)
        theta, s = np.linalg.eigh(t_buf[:m, :m])
        order = np.argsort(-np.abs(theta))
        sel = order[:k]
        y = qm @ s[:, sel]
        rho = np.linalg.norm(bq @ s[:, sel] - y * theta[sel], axis=0) / np.abs(theta[sel])
        history.append(float(rho.max()))
        stalled = len(history) > 3 and history[-1] <= 1e-3 and history[-1] > 0.5 * history[-3]
        if history[-1] <= tol or stalled or m >= n_dof:
            converged = True
            break
        w = bq_buf[:, new]
        for _ in range(2):  # classical Gram-Schmidt, twice, for orthogonality
            w = w - qm @ (qm.T @ w)
        w = _orthonormalize(w)
        if w.shape[1] == 0:
            converged = True  # the Krylov space is invariant: the Ritz pairs are exact
            break
        if m + w.shape[1] > max_cols:
            # Restart: keep the best `block` Ritz vectors (with their images), then continue.
            keep = order[:block]
            restart_q, restart_bq = qm @ s[:, keep], bq @ s[:, keep]
            q_buf[:, :block], bq_buf[:, :block] = restart_q, restart_bq
            t_buf[:block, :block] = np.diag(theta[keep])  # Ritz vectors diagonalize T
            w = w - q_buf[:, :block] @ (q_buf[:, :block].T @ w)
            w = _orthonormalize(w)[:, : max_cols - block]
            m = block
        q_buf[:, m : m + w.shape[1]] = w
        new = slice(m, m + w.shape[1])
        m += w.shape[1]
    # Final Rayleigh-Ritz with a itself on the selected vectors: values are exact quotients.
    y = _orthonormalize(y)
    ay = a @ y
    values, s = np.linalg.eigh(0.5 * (y.T @ ay + ay.T @ y))
    vectors = y @ s
    resid = float(np.linalg.norm(ay @ s - vectors * values, axis=0).max()) / scale
    desc = f"shift-invert-{kind} ({n_solves} block solves of {block}, residual {resid:.0e})"
    if not converged:
        desc += " not converged"
    return values, vectors, desc


class _Projected:
    """P a P + alpha B B^T applied to blocks without forming it (a sparse, B orthonormal
    [N, r], P = I - B B^T): the sparse counterpart of ``_project_out``."""

    def __init__(self, a, basis: np.ndarray, alpha: float):
        self.a, self.basis, self.alpha = a, basis, alpha
        self.shape = a.shape

    def project(self, v: np.ndarray) -> np.ndarray:
        return v - self.basis @ (self.basis.T @ v) if self.basis.shape[1] else v

    def __matmul__(self, v: np.ndarray) -> np.ndarray:
        out = self.project(self.a @ self.project(v))
        if self.basis.shape[1]:
            out = out + self.alpha * (self.basis @ (self.basis.T @ v))
        return out


def sparse_shift_invert_lowest(
    a,
    k: int,
    *,
    basis: np.ndarray,
    rng,
    scale: float,
    tol: float = SOLVER_TOL,
    max_blocks: int = SOLVER_MAX_BLOCKS,
    checkpoint: Checkpoint = NO_CHECKPOINT,
) -> tuple[np.ndarray, np.ndarray, str]:
    """The k eigenpairs nearest 0 of P a P on the complement of ``basis``, a sparse.

    Shift-invert block Krylov as ``shift_invert_lowest``, on a sparse LU of a - sigma I
    (sigma = -1e-13 scale) with projected solves P (a - sigma I)^{-1} P (module docstring);
    the basis directions map to 0 and are never selected.

    Args:
      a: [N, N] symmetric scipy.sparse matrix.
      k: number of pairs, 1..N - r.
      basis: [N, r] orthonormal directions excluded (rigid-body modes), r >= 0.
      rng: numpy Generator for the starting block.
      scale: ||a||_inf, for the shift and the report.
      tol, max_blocks, checkpoint: as ``shift_invert_lowest``.

    Returns:
      (values [k] ascending, vectors [N, k] orthogonal to ``basis``, description naming
      "sparse-lu", the block solves, the final residual against P a P and convergence).
    """
    sigma = -1e-13 * scale
    op = _Projected(a, basis, 2.0 * scale)
    checkpoint(f"eigensolver: sparse factorization ({a.nnz} stored entries)")
    shifted = sp.csc_matrix(a - sigma * sp.identity(a.shape[0], format="csr"))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", sp.SparseEfficiencyWarning)
        lu = ssla.splu(shifted, permc_spec="MMD_AT_PLUS_A", diag_pivot_thresh=0.1,
                       options={"SymmetricMode": True})  # fmt: skip
    del shifted

    def solve(b):
        return op.project(lu.solve(np.asfortranarray(op.project(b))))

    with blas.single_threaded():
        return _block_krylov(op, k, solve, "sparse-lu", rng, scale, tol, max_blocks, checkpoint)


class NotPositive(Exception):
    """The preconditioned LOBPCG found negative eigenvalues or did not converge: its answer
    is not the smallest |mu| (the caller falls back to shift-invert)."""


def band_preconditioner(a, bandwidth: int, shift: float) -> ssla.LinearOperator:
    """Solves with the band |i - j| <= bandwidth of sparse symmetric a, plus the absolute row
    sums of the rest on the diagonal and ``shift`` (banded Cholesky, O(N bandwidth^2)).

    For chain molecules in index order the band holds the bonds and contacts, which dominate
    the curvature; the rest (pairs within a cutoff) is weak. Raises LinAlgError when that
    matrix is not positive definite.
    """
    coo = a.tocoo()
    n_dof = a.shape[0]
    gap = coo.col - coo.row
    band = (gap >= 0) & (gap <= bandwidth)
    outside = np.abs(gap) > bandwidth
    ab = np.zeros((bandwidth + 1, n_dof))  # LAPACK upper band storage: ab[b + i - j, j]
    np.add.at(ab, (bandwidth - gap[band], coo.col[band]), coo.data[band])
    ab[bandwidth] += np.bincount(coo.row[outside], np.abs(coo.data[outside]), minlength=n_dof)
    ab[bandwidth] += shift
    factor = sla.cholesky_banded(ab, check_finite=False)

    def solve(v):
        return sla.cho_solve_banded((factor, False), v, check_finite=False)

    return ssla.LinearOperator(a.shape, matvec=solve, matmat=solve, dtype=np.float64)


def lobpcg_sparse_lowest(
    a,
    k: int,
    *,
    basis: np.ndarray,
    bandwidth: int,
    rng,
    scale: float,
    tol: float = SOLVER_TOL,
    checkpoint: Checkpoint = NO_CHECKPOINT,
) -> tuple[np.ndarray, np.ndarray, str]:
    """The k smallest eigenpairs of P a P (a sparse, positive semi-definite on the complement
    of ``basis``) by LOBPCG with ``band_preconditioner``.

    Accepted only when every residual |a psi - mu psi| <= max(tol |mu|,
    LOBPCG_RESIDUAL_FLOOR scale) and the smallest value is >= -1e-12 scale: then the smallest
    algebraic eigenvalues are the smallest |mu|. Otherwise raises NotPositive (also when the
    band is indefinite).

    Returns:
      (values [k] ascending, vectors [N, k], description with the iterations and the largest
      residual / scale).
    """
    op = _Projected(a, basis, 2.0 * scale)
    checkpoint("eigensolver: banded preconditioner")
    try:
        precond = band_preconditioner(a, bandwidth, 1e-10 * scale)
    except np.linalg.LinAlgError as err:
        raise NotPositive("band not positive definite") from err
    block = min(a.shape[0] - basis.shape[1], k + max(10, k))
    if a.shape[0] < 5 * block:  # scipy's LOBPCG goes dense there, without constraints
        raise NotPositive("too few rows for LOBPCG")
    x = op.project(rng.standard_normal((a.shape[0], block)))
    calls = [0]

    def apply(v):
        calls[0] += 1
        checkpoint(f"eigensolver: LOBPCG, {calls[0]} operator blocks")
        return a @ v

    a_op = ssla.LinearOperator(a.shape, matvec=apply, matmat=apply, dtype=np.float64)
    y = basis if basis.shape[1] else None
    floor = 1e-12 * scale
    target = 1e3 * LOBPCG_RESIDUAL_FLOOR * scale  # absolute; tightened once mu is known
    for _ in range(LOBPCG_ROUNDS):
        # Small LAPACK calls stall with two BLAS threads (engine.blas); LOBPCG makes many.
        with warnings.catch_warnings(), blas.single_threaded():
            warnings.simplefilter("ignore")  # convergence is judged below, on a itself
            values, x = ssla.lobpcg(a_op, x, M=precond, Y=y, largest=False,
                                    tol=target, maxiter=LOBPCG_MAX_ITER)  # fmt: skip
        y_k = _orthonormalize(op.project(x[:, np.argsort(values)[:k]]))
        ay = op @ y_k
        values, s = np.linalg.eigh(0.5 * (y_k.T @ ay + ay.T @ y_k))
        vectors = y_k @ s
        res = np.linalg.norm(ay @ s - vectors * values, axis=0)
        if values.min() < -floor:
            raise NotPositive(f"negative eigenvalue {values.min():.1e}")
        if np.all(res <= np.maximum(tol * np.abs(values), LOBPCG_RESIDUAL_FLOOR * scale)):
            desc = (f"lobpcg-band{bandwidth} ({calls[0]} operator blocks of {block}, "
                    f"residual {float(res.max()) / scale:.0e})")  # fmt: skip
            return values, vectors, desc
        target = 0.5 * max(tol * float(np.abs(values).min()), LOBPCG_RESIDUAL_FLOOR * scale)
    raise NotPositive("LOBPCG did not converge")


def lobpcg_lowest(
    hvp_fn,
    n_dof: int,
    k: int,
    *,
    constraints: np.ndarray,
    rng,
    tol: float = 1e-6,
    checkpoint: Checkpoint = NO_CHECKPOINT,
) -> tuple[np.ndarray, np.ndarray, str]:
    """Matrix-free LOBPCG for the k smallest algebraic eigenpairs of H (HVPs only).

    Args:
      hvp_fn: V [N, m] -> H V.
      n_dof: N.
      k: number of pairs.
      constraints: [N, r] orthonormal vectors to exclude (rigid-body modes).
      rng: numpy Generator for the starting block.
      tol: LOBPCG residual tolerance.
      checkpoint: called before every block of Hessian-vector products.

    Returns:
      (values [k] ascending, vectors [N, k], description).

    NOTE: smallest algebraic equals smallest |mu| only for a positive semi-definite H
    (near a minimum); without a preconditioner convergence can take hundreds of iterations.
    """
    calls = [0]

    def checked_hvp(v):
        calls[0] += 1
        checkpoint(f"eigensolver: LOBPCG, {calls[0]} Hessian-vector blocks")
        return hvp_fn(v)

    op = ssla.LinearOperator(
        (n_dof, n_dof), matvec=checked_hvp, matmat=checked_hvp, dtype=np.float64
    )
    x0 = rng.standard_normal((n_dof, k))
    y = constraints if constraints.shape[1] else None
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        values, vectors = ssla.lobpcg(op, x0, Y=y, largest=False, tol=tol, maxiter=LOBPCG_MAX_ITER)
    desc = "lobpcg-hvp (smallest algebraic)"
    if any("not reaching the requested tolerance" in str(w.message) for w in caught):
        desc += " not converged"
    order = np.argsort(values)
    return values[order], vectors[:, order], desc


def _solve(a: np.ndarray, k: int, solver: str, *, psd_hint: bool, rng, scale: float, checkpoint):
    """Dispatch to the dense or shift-invert solver; returns (values, vectors, description)."""
    if solver == "dense":
        checkpoint(f"eigensolver: dense, {k} of {a.shape[0]} modes")
        return dense_lowest(a, k, psd_hint=psd_hint)
    return shift_invert_lowest(a, k, psd_hint=psd_hint, rng=rng, scale=scale, checkpoint=checkpoint)


def _pick_solver(requested: str, n_dof: int, k: int) -> str:
    if requested != "auto":
        return requested
    if n_dof > AUTO_DENSE_MAX_DOF and k <= AUTO_ITERATIVE_MAX_FRACTION * n_dof:
        return "iterative"
    return "dense"


# ---- constructions ------------------------------------------------------------------------


def _configurations(system, model, cfg, x, rng, checkpoint) -> tuple[np.ndarray, str]:
    """[S, n, 3] configurations to evaluate at, and a label for the method string."""
    if cfg.at == "samples":
        xs = sample_configurations(system, cfg, x, rng)
        return xs, f"samples({len(xs)})"
    if cfg.at == "minimum":
        x_min, steps = relax(model, x, checkpoint=checkpoint)
        return x_min[None], f"minimum({steps} L-BFGS steps)"
    return x[None], "x0"


def _sample_detail(i: int, n_samples: int) -> str:
    if n_samples == 1:
        return "Hessian"
    return f"Hessian of sample {i + 1} of {n_samples}"


def _sparse_lowest(a, k, basis, bandwidth, rng, scale, checkpoint):
    """Sparse route's solver: banded-preconditioned LOBPCG, which is right when the operator
    is positive semi-definite on the complement of ``basis`` (it checks); else shift-invert
    on a sparse LU (interior eigenvalues; fill-in can be large)."""
    try:
        return lobpcg_sparse_lowest(a, k, basis=basis, bandwidth=bandwidth, rng=rng,
                                    scale=scale, checkpoint=checkpoint)  # fmt: skip
    except NotPositive as why:
        values, vectors, desc = sparse_shift_invert_lowest(
            a, k, basis=basis, rng=rng, scale=scale, checkpoint=checkpoint
        )
        return values, vectors, f"{desc} (LOBPCG refused: {why})"


def _sparse_route(plan, requested: str, n_dof: int, k: int) -> bool:
    """Whether to assemble a sparse matrix (module docstring, "Sparse route")."""
    wanted = _pick_solver(requested, n_dof, max(k, 1)) == "iterative"
    return plan is not None and hess.plan_is_sparse(plan) and wanted


def _accumulate(xs, build, checkpoint):
    """Mean over configurations of build(x) (dense or sparse), summed in place."""
    total = None
    for i, xi in enumerate(xs):
        checkpoint(_sample_detail(i, len(xs)))
        term = build(xi)
        if total is None:
            total = term
        else:
            total += term  # in place for dense: one buffer besides the new sample
        del term
    return total / len(xs) if sp.issparse(total) else np.divide(total, len(xs), out=total)


def _too_dense(a) -> bool:
    return sp.issparse(a) and a.nnz > SPARSE_MAX_DENSITY * a.shape[0] * a.shape[1]


def _block_laplacian(system, model, cfg, n_modes, x, rng, checkpoint):
    xs, where = _configurations(system, model, cfg, x, rng, checkpoint)
    n = system.n_atoms
    plan = hess.make_pair_plan(model.pair_terms, n) if model.pair_terms is not None else None
    k_free = min(n_modes - 1 if cfg.keep_rigid else n_modes, n - 1)
    construction = "pair-blocks" if plan is not None else "autodiff"
    if _sparse_route(plan, cfg.solver, n, k_free):
        k_mat = _accumulate(xs, lambda xi: hess.sparse_block_norms(xi, plan), checkpoint)
        construction = "sparse-pair-blocks"
        if _too_dense(k_mat):
            k_mat, construction = k_mat.toarray(), "pair-blocks (densified)"
    elif plan is not None:
        k_mat = _accumulate(xs, lambda xi: hess.pair_block_norms(xi, plan), checkpoint)
    else:
        k_mat = _accumulate(
            xs, lambda xi: hess.block_norms(hess.autodiff_hessian(model.energy_fn, xi)),
            checkpoint,
        )  # fmt: skip
    if sp.issparse(k_mat):
        k_mat = sp.csr_array(k_mat)
        lap = sp.csr_array(sp.diags_array(np.asarray(k_mat.sum(axis=1)).ravel()) - k_mat)
    else:
        lap = np.diag(k_mat.sum(axis=1)) - k_mat
    const = np.full((n, 1), 1.0 / np.sqrt(n))
    scale = _inf_norm(lap)
    solver = _pick_solver(cfg.solver, n, k_free)
    vectors = np.zeros((n, 0))
    desc = "none"
    if k_free > 0 and sp.issparse(lap):
        bandwidth = min(hess.plan_bandwidth(plan), BAND_MAX_ATOMS)
        _, vectors, desc = _sparse_lowest(lap, k_free, const, bandwidth, rng, scale, checkpoint)
    elif k_free > 0:
        a = _project_out(lap.copy(), const, 2.0 * scale)
        _, vectors, desc = _solve(
            a, k_free, solver, psd_hint=True, rng=rng, scale=scale, checkpoint=checkpoint
        )
        del a
    rigid = np.zeros(vectors.shape[1], dtype=bool)
    if cfg.keep_rigid:
        vectors = np.hstack([const, vectors])
        rigid = np.concatenate([[True], rigid])
    vectors = _fix_signs(vectors)
    # Slowness order is the Laplacian's; values are the reference's K Rayleigh quotients.
    lap_values = np.einsum("ik,ik->k", vectors, lap @ vectors)
    order = np.argsort(np.abs(lap_values), kind="stable")
    vectors, rigid = vectors[:, order], rigid[order]
    values = np.maximum(np.einsum("ik,ik->k", vectors, k_mat @ vectors), 0.0)
    return vectors, values, rigid, f"block-laplacian@{where}/{construction}/{desc}"


def _full_hessian(system, model, cfg, n_modes, x, rng, checkpoint):
    xs, where = _configurations(system, model, cfg, x, rng, checkpoint)
    n = system.n_atoms
    n_dof = 3 * n
    translations, rotations = rigid_body_basis(xs[0])
    large_autodiff = model.pair_terms is None and n > AUTODIFF_DENSE_MAX_ATOMS
    if large_autodiff and cfg.solver != "dense" and len(xs) == 1:
        return _matrix_free_hessian(
            model, cfg, n_modes, xs[0], translations, rotations, rng, where, checkpoint
        )
    plan = hess.make_pair_plan(model.pair_terms, n) if model.pair_terms is not None else None
    construction = "pair-blocks" if plan is not None else "autodiff"
    if _sparse_route(plan, cfg.solver, n_dof, n_modes):
        h = _accumulate(xs, lambda xi: hess.sparse_pair_hessian(xi, plan), checkpoint)
        construction = "sparse-pair-blocks"
        if _too_dense(h):
            h, construction = h.toarray(), "pair-blocks (densified)"
        else:
            h = sp.csr_array(h)
    elif plan is not None:
        h = _accumulate(xs, lambda xi: hess.pair_hessian(xi, plan), checkpoint)
    else:
        h = _accumulate(xs, lambda xi: hess.autodiff_hessian(model.energy_fn, xi), checkpoint)
    scale = _inf_norm(h)
    rigid_basis = translations
    maybe_rotations = cfg.at != "samples" and rotations.shape[1] > 0
    if maybe_rotations:
        rotation_residual = np.linalg.norm(h @ rotations, axis=0).max() / scale
        if rotation_residual <= ROTATION_TOL:
            rigid_basis, maybe_rotations = np.hstack([translations, rotations]), False
        maybe_rotations = maybe_rotations and rotation_residual <= ROTATION_SCREEN
    n_rigid = rigid_basis.shape[1]
    rigid_values = np.einsum("ik,ik->k", rigid_basis, h @ rigid_basis)
    k_free = min(n_modes - n_rigid if cfg.keep_rigid else n_modes, n_dof - n_rigid)
    # Room for rotations hiding among the computed modes (see _split_rotations).
    k_solve = min(k_free + rotations.shape[1], n_dof - n_rigid) if maybe_rotations else k_free
    solver = _pick_solver(cfg.solver, n_dof, max(k_solve, 1))
    values, vectors, desc = np.zeros(0), np.zeros((n_dof, 0)), "none"
    if sp.issparse(h):
        if k_solve > 0:
            bandwidth = 3 * min(hess.plan_bandwidth(plan), BAND_MAX_ATOMS) + 2
            values, vectors, desc = _sparse_lowest(
                h, k_solve, rigid_basis, bandwidth, rng, scale, checkpoint
            )
        h = _Projected(h, rigid_basis, 2.0 * scale)  # what _split_rotations applies
    elif k_solve > 0:
        h = _project_out(h, rigid_basis, 2.0 * scale)
        psd_hint = cfg.at == "minimum"
        values, vectors, desc = _solve(
            h, k_solve, solver, psd_hint=psd_hint, rng=rng, scale=scale, checkpoint=checkpoint
        )
    if maybe_rotations:
        rigid_basis, rigid_values, vectors, values = _split_rotations(
            h.__matmul__, rigid_basis, rigid_values, rotations, vectors, values, k_free
        )
    return _merge_rigid(
        cfg, n_modes, rigid_basis, rigid_values, vectors, values,
        f"hessian@{where}/{construction}/{desc}",
    )  # fmt: skip


def _split_rotations(apply_h, rigid_basis, rigid_values, rotations, vectors, values, k_free):
    """Flag rotations found among the computed slow modes of a near-stationary point.

    The modes were computed with only the translations projected out. When the rotation
    subspace lies inside their span (cosines >= ROTATION_CAPTURE) and the rotations'
    Rayleigh quotients are below ROTATION_GAP times every other |mu| there, the rotations
    join the rigid basis (analytic vectors) and the rest of the span is re-diagonalised;
    otherwise the k_free modes of smallest |mu| are kept as they are.

    Returns:
      (rigid_basis, rigid_values, vectors [N, <= k_free], values).
    """
    r = rotations.shape[1]
    keep = np.argsort(np.abs(values), kind="stable")[:k_free]
    unchanged = (rigid_basis, rigid_values, vectors[:, keep], values[keep])
    if vectors.shape[1] <= r:
        return unchanged
    if np.linalg.svd(vectors.T @ rotations, compute_uv=False).min() < ROTATION_CAPTURE:
        return unchanged
    rest = vectors - rotations @ (rotations.T @ vectors)
    basis = np.linalg.svd(rest, full_matrices=False)[0][:, : vectors.shape[1] - r]
    hb = apply_h(basis)
    mu, c = np.linalg.eigh(0.5 * (basis.T @ hb + hb.T @ basis))
    rotation_values = np.einsum("ik,ik->k", rotations, apply_h(rotations))
    if np.abs(rotation_values).max() > ROTATION_GAP * np.abs(mu).min():
        return unchanged
    keep = np.argsort(np.abs(mu), kind="stable")[:k_free]
    return (
        np.hstack([rigid_basis, rotations]),
        np.concatenate([rigid_values, rotation_values]),
        (basis @ c)[:, keep],
        mu[keep],
    )


def _merge_rigid(cfg, n_modes, rigid_basis, rigid_values, vectors, values, method):
    """Prepend the rigid-body modes when kept, sort by |value|, keep n_modes, fix signs."""
    rigid = np.zeros(len(values), dtype=bool)
    if cfg.keep_rigid:
        vectors = np.hstack([rigid_basis, vectors])
        values = np.concatenate([rigid_values, values])
        rigid = np.concatenate([np.ones(rigid_basis.shape[1], dtype=bool), rigid])
    order = np.argsort(np.abs(values), kind="stable")[:n_modes]
    return _fix_signs(vectors[:, order]), values[order], rigid[order], method


def _matrix_free_hessian(model, cfg, n_modes, x, translations, rotations, rng, where, checkpoint):
    """Large autodiff energies: LOBPCG on Hessian-vector products (no dense Hessian)."""
    n_dof = x.size
    hvp_fn = hess.make_hvp_fn(model.energy_fn, x)
    rigid_basis = translations
    maybe_rotations = cfg.at != "samples" and rotations.shape[1] > 0
    if maybe_rotations:
        # ||H||_2 by a few block power iterations (>= ||H||_inf / sqrt(N) is all we need).
        v = rng.standard_normal((n_dof, 4))
        for _ in range(10):
            v, _ = np.linalg.qr(hvp_fn(v))
        scale = float(np.linalg.norm(hvp_fn(v), axis=0).max()) or 1.0
        rotation_residual = np.linalg.norm(hvp_fn(rotations), axis=0).max() / scale
        if rotation_residual <= ROTATION_TOL:
            rigid_basis, maybe_rotations = np.hstack([translations, rotations]), False
        maybe_rotations = maybe_rotations and rotation_residual <= ROTATION_SCREEN
    n_rigid = rigid_basis.shape[1]
    rigid_values = np.einsum("ik,ik->k", rigid_basis, hvp_fn(rigid_basis))
    k_free = min(n_modes - n_rigid if cfg.keep_rigid else n_modes, n_dof - n_rigid)
    k_solve = min(k_free + rotations.shape[1], n_dof - n_rigid) if maybe_rotations else k_free
    values, vectors, desc = np.zeros(0), np.zeros((n_dof, 0)), "none"
    if k_solve > 0:
        values, vectors, desc = lobpcg_lowest(
            hvp_fn, n_dof, k_solve, constraints=rigid_basis, rng=rng, checkpoint=checkpoint
        )
    if maybe_rotations:
        rigid_basis, rigid_values, vectors, values = _split_rotations(
            hvp_fn, rigid_basis, rigid_values, rotations, vectors, values, k_free
        )
    return _merge_rigid(
        cfg, n_modes, rigid_basis, rigid_values, vectors, values,
        f"hessian@{where}/autodiff-hvp/{desc}",
    )  # fmt: skip


def slow_modes(
    system: System,
    model: EnergyModel,
    cfg: ModesConfig,
    n_modes: int,
    *,
    seed: int = 0,
    x: np.ndarray | None = None,
    should_stop: Callable[[], bool] | None = None,
    on_block: Callable[[str], None] | None = None,
) -> SlowModes:
    """The lowest modes of a Hessian-derived operator of ``model`` (see module docstring).

    Args:
      system: the system (kind, meta["system"] for reference sampling, x0).
      model: its energy; ``model.pair_terms`` enables the analytic Hessian.
      cfg: construction, location, sampling and solver.
      n_modes: number of modes, 1..n_dof (n_dof = n_atoms for "block-laplacian", 3 n_atoms
        for "hessian"). With ``cfg.keep_rigid`` False at most n_dof minus the number of
        rigid-body modes exist, and no more are returned.
      seed: seeds the sampled configurations and the iterative solvers' starting blocks.
      x: [n_atoms, 3] configuration for at="x0", start for "minimum", sampling centre for
        proteins at "samples" (default ``system.x0``); ignored for loops at "samples".
      should_stop: polled at every check point (see the module docstring); None: never.
      on_block: called with a short phrase naming each step as it starts ("sample 3 of
        40", "eigensolver: shift-invert block 2 (at most 60)"); None: no reports.

    Returns:
      SlowModes with float64 vectors [n_dof, k], values [k], rigid [k], space "node" or
      "cartesian", a method string naming construction, location and solver, and the wall
      time in seconds.

    Raises:
      ValueError: n_modes out of range, x of the wrong shape, or no sampling defaults.
      Stopped: ``should_stop`` returned True (``Stopped.phase == "modes"``).
    """
    start = time.perf_counter()
    n = system.n_atoms
    n_dof = n if cfg.method == "block-laplacian" else 3 * n
    if isinstance(n_modes, bool) or not isinstance(n_modes, (int, np.integer)):
        raise ValueError(f"n_modes must be an integer in [1, {n_dof}], got {n_modes!r}")
    if not 1 <= n_modes <= n_dof:
        raise ValueError(f"n_modes must be in [1, {n_dof}] for this system, got {n_modes}")
    x = hess._as_positions(system.x0 if x is None else x, n)
    rng = np.random.default_rng(seed)
    checkpoint = Checkpoint(should_stop, on_block)
    checkpoint()
    args = (system, model, cfg, int(n_modes), x, rng, checkpoint)
    if cfg.method == "block-laplacian":
        vectors, values, rigid, method = _block_laplacian(*args)
        space = "node"
    else:
        vectors, values, rigid, method = _full_hessian(*args)
        space = "cartesian"
    return SlowModes(
        vectors=np.ascontiguousarray(vectors, dtype=np.float64),
        values=np.asarray(values, dtype=np.float64),
        rigid=np.asarray(rigid, dtype=bool),
        space=space,
        method=method,
        seconds=time.perf_counter() - start,
    )
