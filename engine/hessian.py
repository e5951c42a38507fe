"""Hessians of energies: analytic 3x3 pair blocks, block-norm force constants, autodiff.

Contract:
- ``pair_coefficients(x, pair_terms) -> (d1, d2)``: radial derivatives of a pure
  pair-potential energy (``EnergyModel.pair_terms``) summed per atom pair on the [n, n]
  grid, the ingredients of every analytic object below. ``make_pair_plan`` prepares the
  terms once for repeated evaluations (samples).
- ``pair_hessian(x, pair_terms) -> [3n, 3n]`` dense Hessian assembled from 3x3 pair blocks;
  ``pair_block_norms(x, pair_terms) -> [n, n]`` the Frobenius norms of those blocks (the
  reference's force-constant matrix K, method.md §4.1) without building the 3n x 3n matrix.
- ``sparse_pair_hessian(x, pair_terms) -> scipy.sparse.csr_array [3n, 3n]`` and
  ``sparse_block_norms(x, pair_terms) -> csr_array [n, n]``: the same objects assembled from
  the listed pairs only, for plans without all-pairs terms (``plan_is_sparse``): bonds,
  contacts and ``CutoffPairs`` terms (the cutoff model), O(pairs) memory at any n.
- ``autodiff_hessian(energy_fn, x) -> [3n, 3n]`` for energies without pair terms (proteins),
  by batched Hessian-vector products; ``make_hvp_fn(energy_fn, x)`` for matrix-free solvers.
- ``hessian(model, x)`` picks the analytic route when ``model.pair_terms`` is set.

Conventions: positions x are [n_atoms, 3] in the system's length unit; Hessians are in
energy / length^2, flattened with row 3i + c (atom i, Cartesian component c). Everything is
float64 numpy on the host; JAX is used for the derivatives of the potentials (never written
by hand) and for autodiff of whole energies. The package enables x64 (engine/__init__.py).

Pair blocks [1]. For one term of the energy, ``scale * w * phi(r_ij)`` with r_ij = |x_i - x_j|,
the off-diagonal block is

    H_ij = -scale w [phi''(r) u u^T + phi'(r) / r (I - u u^T)],   u = (x_i - x_j) / r,

and each diagonal block is minus the sum of the off-diagonal blocks in its block row
(translation invariance). The block has eigenvalue -scale w phi'' along u and
-scale w phi'/r twice across it, so its Frobenius norm is scale |w| sqrt(phi''^2 + 2 phi'^2/r^2).

[1] e.g. Atilgan et al., "Anisotropy of fluctuation dynamics of proteins with an elastic
    network model", Biophys. J. 80 (2001), eq. 2 with a general pair potential.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable, Sequence
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import scipy.sparse as sp

from .pairs import CutoffPairs, pairs_within
from .types import EnergyFn, EnergyModel, PairTerm

# Distances below this (length units) are treated as this value in the 1/r factors: two
# coincident particles have no defined bond direction, and the soft cores keep phi finite.
MIN_DISTANCE = 1e-9
# Rows of the dense [n, 3, n, 3] assembly done per numpy pass: bounds temporaries to
# ~ROW_CHUNK * n * 9 doubles (37 MB at n = 4000) while keeping passes vectorised.
ROW_CHUNK = 128
# Autodiff Hessians: Hessian-vector products evaluated together, chosen so that a batch of
# HVPs through an all-pairs [n, n] energy stays near this many doubles of temporaries.
_HVP_BATCH_BUDGET = 2**24
# Terms with more pairs than this fraction of n (n - 1) / 2 are evaluated on the dense grid.
DENSE_TERM_FRACTION = 0.25
# Pair lists found per configuration (CutoffPairs) are padded to a power of two, at least
# this long, so their jitted coefficients compile once per size class, not per sample.
MIN_PADDED_PAIRS = 1024


class PairPlan(NamedTuple):
    """Configuration-independent form of a pair energy, prepared once per energy model.

    Terms touching more than ``DENSE_TERM_FRACTION`` of all atom pairs (the all-pairs
    repulsion) are kept as dense symmetric weight matrices and evaluated on the [n, n]
    distance grid; the others (bonds, loop contacts) as pair lists; ``CutoffPairs`` terms
    as their cutoff, their pairs found at each configuration.

    Fields:
      n_atoms: number of atoms.
      sparse: tuple of (potential key, i [m] int, j [m] int, scale * weights [m]), as JAX
        arrays.
      dense: tuple of (potential key, [n, n] symmetric scale * weights with zero diagonal),
        as a JAX array.
      cutoff: tuple of (potential key, CutoffPairs, scale * weight) (uniform weight).
    """

    n_atoms: int
    sparse: tuple
    dense: tuple
    cutoff: tuple = ()


def _potential_key(potential: Callable):
    """Cache key under which equal potentials share a compiled function.

    ``functools.partial(f, eps=0.01)`` objects built by two energy models are distinct but
    equal in effect; keying on (f, args, keywords) lets them share one compilation.
    """
    if isinstance(potential, functools.partial):
        try:
            key = (potential.func, potential.args, tuple(sorted(potential.keywords.items())))
            hash(key)
            return key
        except TypeError:
            pass
    return potential


def _potential_from_key(key) -> Callable:
    if isinstance(key, tuple):
        func, args, keywords = key
        return functools.partial(func, *args, **dict(keywords))
    return key


def _radial_derivatives(key):
    """Elementwise phi'(r) and phi''(r) of a scalar potential, by jax.grad (never by hand)."""
    potential = _potential_from_key(key)
    dphi = jax.grad(lambda r: potential(r))
    d2phi = jax.grad(dphi)
    return jax.vmap(dphi), jax.vmap(d2phi)


@functools.lru_cache(maxsize=64)
def _sparse_term_fn(key) -> Callable:
    """Jitted (x, i, j, sw) -> (sw phi'(r)/r, sw phi''(r)) per listed pair.

    Cached per potential (see ``_potential_key``): repeated Hessians of one energy model
    (samples, solver comparisons, new runs) compile once per pair-array shape.
    """
    dphi, d2phi = _radial_derivatives(key)

    @jax.jit
    def coefficients(x, i, j, sw):
        d = x[i] - x[j]
        r = jnp.maximum(jnp.sqrt(jnp.sum(d * d, axis=-1)), MIN_DISTANCE)
        live = sw != 0  # padding pairs (sw = 0) give exactly 0, whatever phi does at their r
        return jnp.where(live, sw * dphi(r) / r, 0.0), jnp.where(live, sw * d2phi(r), 0.0)

    return coefficients


@functools.lru_cache(maxsize=64)
def _dense_term_fn(key) -> Callable:
    """Jitted (x, w [n, n]) -> (w phi'(r)/r, w phi''(r)) on the full distance grid.

    Grid points with w == 0 (the diagonal, excluded pairs) give exactly 0.
    """
    dphi, d2phi = _radial_derivatives(key)

    @jax.jit
    def coefficients(x, w):
        d = x[:, None, :] - x[None, :, :]
        active = w != 0
        r = jnp.sqrt(jnp.where(active, jnp.sum(d * d, axis=-1), 1.0))
        r = jnp.maximum(r, MIN_DISTANCE)
        g1 = dphi(r.reshape(-1)).reshape(r.shape)
        g2 = d2phi(r.reshape(-1)).reshape(r.shape)
        return jnp.where(active, w * g1 / r, 0.0), jnp.where(active, w * g2, 0.0)

    return coefficients


def make_pair_plan(pair_terms: Sequence[PairTerm], n_atoms: int) -> PairPlan:
    """Prepare pair terms for repeated Hessian evaluations (see ``PairPlan``).

    Args:
      pair_terms: the energy as pair terms (``EnergyModel.pair_terms``).
      n_atoms: number of atoms, >= 1.

    Returns:
      PairPlan; terms with scale 0 or no pairs are dropped.

    Raises:
      ValueError: a term's pairs are out of range or pair an atom with itself.
    """
    n = int(n_atoms)
    if n < 1:
        raise ValueError(f"n_atoms must be >= 1; got {n_atoms}")
    sparse, dense, cutoff = [], [], []
    for t, term in enumerate(pair_terms):
        if isinstance(term.pairs, CutoffPairs):
            if float(term.scale) != 0.0:
                sw = float(term.scale) * float(np.asarray(term.weights, dtype=np.float64))
                cutoff.append((_potential_key(term.potential), term.pairs, sw))
            continue
        pairs = np.asarray(term.pairs, dtype=np.int64).reshape(-1, 2)
        if pairs.size == 0 or float(term.scale) == 0.0:
            continue
        if pairs.min() < 0 or pairs.max() >= n or np.any(pairs[:, 0] == pairs[:, 1]):
            raise ValueError(
                f"pair_terms[{t}].pairs must hold distinct atom indices in [0, {n - 1}]"
            )
        sw = float(term.scale) * np.broadcast_to(
            np.asarray(term.weights, dtype=np.float64), (len(pairs),)
        )
        key = _potential_key(term.potential)
        if len(pairs) > DENSE_TERM_FRACTION * n * (n - 1) / 2:
            w = np.zeros((n, n))
            np.add.at(w, (pairs[:, 0], pairs[:, 1]), sw)  # add.at: pairs may repeat
            w += w.T
            dense.append((key, jnp.asarray(w)))  # on the device once, reused per configuration
        else:
            i, j = jnp.asarray(pairs[:, 0]), jnp.asarray(pairs[:, 1])
            sparse.append((key, i, j, jnp.asarray(sw)))
    return PairPlan(n, tuple(sparse), tuple(dense), tuple(cutoff))


def plan_bandwidth(plan: PairPlan) -> int:
    """The longest |i - j| among the plan's listed pairs (bonds, contacts), at least 1."""
    return max([1] + [int(jnp.max(jnp.abs(i - j))) for _, i, j, _ in plan.sparse if i.size])


def plan_is_sparse(plan: PairPlan) -> bool:
    """True when no term is evaluated on the dense [n, n] grid (no all-pairs term)."""
    return not plan.dense


def _plan(pair_terms, n_atoms: int) -> PairPlan:
    if isinstance(pair_terms, PairPlan):
        if pair_terms.n_atoms != n_atoms:
            raise ValueError(
                f"x must have shape ({pair_terms.n_atoms}, 3) for this plan; got ({n_atoms}, 3)"
            )
        return pair_terms
    return make_pair_plan(pair_terms, n_atoms)


def _as_positions(x, n_atoms: int | None = None) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 2 or x.shape[1] != 3 or (n_atoms is not None and x.shape[0] != n_atoms):
        want = f"({n_atoms}, 3)" if n_atoms is not None else "(n_atoms, 3)"
        raise ValueError(f"x must have shape {want}; got {x.shape}")
    if not np.all(np.isfinite(x)):
        raise ValueError("x must be finite; got NaN or inf positions")
    return x


def pair_coefficients(x, pair_terms) -> tuple[np.ndarray, np.ndarray]:
    """Radial derivatives of a pair energy summed per atom pair, on the [n, n] grid.

    Args:
      x: [n_atoms, 3] positions (length units).
      pair_terms: the energy as pair terms, or a ``PairPlan`` of them.

    Returns:
      (d1, d2): [n_atoms, n_atoms] symmetric, zero diagonal; d1_ij = sum over terms of
      scale w phi'(r_ij) / r_ij and d2_ij = sum of scale w phi''(r_ij) (energy / length^2).
      The coupling block of pair (i, j) is C_ij = (d2 - d1) u u^T + d1 I = -H_ij.

    Raises:
      ValueError: x is not [n_atoms, 3] and finite, or bad pairs (see ``make_pair_plan``).
    """
    x = _as_positions(x)
    n = x.shape[0]
    plan = _plan(pair_terms, n)
    xj = jnp.asarray(x)
    d1 = d2 = None
    for key, w in plan.dense:
        g1, g2 = _dense_term_fn(key)(xj, w)
        if d1 is None:
            d1, d2 = np.array(g1), np.array(g2)  # writable copies
        else:
            d1 += np.asarray(g1)
            d2 += np.asarray(g2)
    if d1 is None:
        d1, d2 = np.zeros((n, n)), np.zeros((n, n))
    # Listed pairs, already summed per pair: add both (i, j) and (j, i), a few thousand
    # entries instead of passes over [n, n].
    i, j, g1, g2 = _listed_pairs(x, xj, plan)
    for d, g in ((d1, g1), (d2, g2)):
        d[i, j] += g
        d[j, i] += g
    return d1, d2


def _padded(i: np.ndarray, j: np.ndarray, sw: float):
    """JAX (i, j, sw) padded to a power-of-two length with weightless pairs (0, 1)."""
    m = len(i)
    size = max(MIN_PADDED_PAIRS, 1 << max(m - 1, 0).bit_length())
    ip, jp = np.zeros(size, np.int64), np.ones(size, np.int64)
    ip[:m], jp[:m] = i, j
    w = np.zeros(size)
    w[:m] = sw
    return jnp.asarray(ip), jnp.asarray(jp), jnp.asarray(w), m


def _listed_pairs(x: np.ndarray, xj, plan: PairPlan):
    """Radial-derivative sums over the plan's listed and cutoff terms, per unique pair.

    Returns (i [m], j [m], d1 [m], d2 [m]) with i < j, each pair once (repeated pairs and
    pairs shared by several terms summed), sorted by i then j.
    """
    n = plan.n_atoms
    keys, c1, c2 = [], [], []
    for key, i, j, sw in plan.sparse:
        g1, g2 = _sparse_term_fn(key)(xj, i, j, sw)
        i, j = np.asarray(i, np.int64), np.asarray(j, np.int64)
        keys.append(np.minimum(i, j) * n + np.maximum(i, j))
        c1.append(np.asarray(g1))
        c2.append(np.asarray(g2))
    for key, spec, sw in plan.cutoff:
        pairs = pairs_within(x, spec.cutoff, spec.excluded_offsets)
        ip, jp, w, m = _padded(pairs[:, 0], pairs[:, 1], sw)
        g1, g2 = _sparse_term_fn(key)(xj, ip, jp, w)
        keys.append(pairs[:, 0] * n + pairs[:, 1])
        c1.append(np.asarray(g1)[:m])
        c2.append(np.asarray(g2)[:m])
    if not keys:
        empty = np.zeros(0, np.int64)
        return empty, empty, np.zeros(0), np.zeros(0)
    # Sum repeated pairs first (fancy "+=" would keep only one of them).
    flat, inverse = np.unique(np.concatenate(keys), return_inverse=True)
    d1 = np.bincount(inverse, np.concatenate(c1), minlength=len(flat))
    d2 = np.bincount(inverse, np.concatenate(c2), minlength=len(flat))
    return flat // n, flat % n, d1, d2


def _sparse_plan(pair_terms, n_atoms: int) -> PairPlan:
    plan = _plan(pair_terms, n_atoms)
    if not plan_is_sparse(plan):
        raise ValueError(
            "pair_terms include an all-pairs term (more than "
            f"{DENSE_TERM_FRACTION:g} of all pairs): use the dense pair_hessian / "
            "pair_block_norms"
        )
    return plan


def _coupling_blocks(x: np.ndarray, i, j, d1, d2) -> np.ndarray:
    """C_ij = (d2 - d1) u u^T + d1 I per listed pair: [m, 3, 3] (H_ij = -C_ij)."""
    d = x[i] - x[j]
    a = (d2 - d1) / np.maximum(np.einsum("mc,mc->m", d, d), MIN_DISTANCE**2)
    c = a[:, None, None] * d[:, :, None] * d[:, None, :]
    c[:, [0, 1, 2], [0, 1, 2]] += d1[:, None]
    return c


def _diagonal_blocks(n: int, i, j, c: np.ndarray) -> np.ndarray:
    """H_ii = sum over i's pairs of C_ij: [n, 3, 3] (translation invariance)."""
    flat = c.reshape(-1, 9)
    diag = np.stack(
        [np.bincount(i, flat[:, e], minlength=n) + np.bincount(j, flat[:, e], minlength=n)
         for e in range(9)], axis=1,
    )  # fmt: skip
    return diag.reshape(n, 3, 3)


def _block_csr(n: int, rows, cols, blocks: np.ndarray, block: int) -> sp.csr_array:
    """CSR of an [n * block]^2 matrix from unique (row, col) blocks [m, block, block]."""
    order = np.lexsort((cols, rows))
    indptr = np.concatenate([[0], np.cumsum(np.bincount(rows, minlength=n))])
    data = blocks[order] if block > 1 else blocks[order].reshape(-1, 1, 1)
    shape = (n * block, n * block)
    return sp.bsr_array((data, cols[order], indptr), shape=shape).tocsr()


def sparse_pair_hessian(x, pair_terms) -> sp.csr_array:
    """The Hessian of ``pair_hessian`` assembled from the listed pairs only (sparse).

    Args:
      x: [n_atoms, 3] positions (length units).
      pair_terms: pair terms, or a ``PairPlan`` of them, without all-pairs terms (bonds,
        contacts, ``CutoffPairs``).

    Returns:
      [3 n_atoms, 3 n_atoms] float64 CSR, symmetric, row 3i + c: 9 (n + 2 m) stored entries
      for m interacting pairs.

    Raises:
      ValueError: bad x or pairs, or an all-pairs term in the plan.
    """
    x = _as_positions(x)
    n = x.shape[0]
    plan = _sparse_plan(pair_terms, n)
    i, j, d1, d2 = _listed_pairs(x, jnp.asarray(x), plan)
    c = _coupling_blocks(x, i, j, d1, d2)
    idx = np.arange(n)
    rows, cols = np.concatenate([i, j, idx]), np.concatenate([j, i, idx])
    blocks = np.concatenate([-c, -c, _diagonal_blocks(n, i, j, c)])  # C is symmetric
    return _block_csr(n, rows, cols, blocks, 3)


def sparse_block_norms(x, pair_terms) -> sp.csr_array:
    """``pair_block_norms`` from the listed pairs only (sparse [n, n], diagonal included).

    Raises:
      ValueError: as ``sparse_pair_hessian``.
    """
    x = _as_positions(x)
    n = x.shape[0]
    plan = _sparse_plan(pair_terms, n)
    i, j, d1, d2 = _listed_pairs(x, jnp.asarray(x), plan)
    off = np.sqrt(d2 * d2 + 2.0 * d1 * d1)
    diag = _diagonal_blocks(n, i, j, _coupling_blocks(x, i, j, d1, d2))
    idx = np.arange(n)
    values = np.concatenate([off, off, np.sqrt(np.einsum("icd,icd->i", diag, diag))])
    rows, cols = np.concatenate([i, j, idx]), np.concatenate([j, i, idx])
    return _block_csr(n, rows, cols, values, 1)


def _row_chunks(x: np.ndarray, d1: np.ndarray, d2: np.ndarray):
    """Yield (rows, comps, a) over row blocks: comps[c] = x_ic - x_jc [m, n], a = (d2-d1)/r^2.

    The coupling block of pair (i, j) is C_ij = a_ij d d^T + d1_ij I with d = x_i - x_j, so
    that H_ij = -C_ij and H_ii = sum_j C_ij.
    """
    n = x.shape[0]
    for start in range(0, n, ROW_CHUNK):
        rows = slice(start, min(start + ROW_CHUNK, n))
        comps = [x[rows, c, None] - x[None, :, c] for c in range(3)]
        r2 = comps[0] * comps[0] + comps[1] * comps[1] + comps[2] * comps[2]
        a = (d2[rows] - d1[rows]) / np.maximum(r2, MIN_DISTANCE**2)
        yield rows, comps, a


def pair_hessian(x, pair_terms) -> np.ndarray:
    """Dense Hessian of a pair energy from analytic 3x3 pair blocks.

    Args:
      x: [n_atoms, 3] positions (length units).
      pair_terms: the energy as pair terms, or a ``PairPlan`` of them.

    Returns:
      [3 n_atoms, 3 n_atoms] float64, symmetric, row 3i + c (energy / length^2).

    NOTE: 9 n^2 doubles (1.15 GB at n = 4000).
    """
    x = _as_positions(x)
    n = x.shape[0]
    d1, d2 = pair_coefficients(x, pair_terms)
    h = np.empty((n, 3, n, 3))
    for rows, comps, a in _row_chunks(x, d1, d2):
        m = rows.stop - rows.start
        blocks = {}
        for c in range(3):
            ac = a * comps[c]
            for e in range(c, 3):
                block = ac * comps[e]
                if c == e:
                    block += d1[rows]
                np.negative(block, out=block)
                blocks[c, e] = blocks[e, c] = block
        for c in range(3):
            # [m, n, 3] in h's memory order: one contiguous write per block row.
            h[rows, c] = np.stack([blocks[c, 0], blocks[c, 1], blocks[c, 2]], axis=-1)
        # Self couplings are zero (zero diagonal of d1, d2), so H_ii = -sum_j H_ij.
        diag = -np.stack([[blocks[c, e].sum(axis=1) for e in range(3)] for c in range(3)], -1)
        local = np.arange(m)
        h[rows.start + local, :, rows.start + local, :] = diag.transpose(1, 0, 2)
    return h.reshape(3 * n, 3 * n)


def pair_block_norms(x, pair_terms) -> np.ndarray:
    """Frobenius norms of the 3x3 blocks of a pair energy's Hessian, without building it.

    The reference's force-constant matrix K (method.md §4.1, step 2), diagonal included.

    Args:
      x: [n_atoms, 3] positions (length units).
      pair_terms: the energy as pair terms, or a ``PairPlan`` of them.

    Returns:
      K: [n_atoms, n_atoms] float64, symmetric, elementwise >= 0 (energy / length^2).
    """
    x = _as_positions(x)
    d1, d2 = pair_coefficients(x, pair_terms)
    k = np.sqrt(d2 * d2 + 2.0 * d1 * d1)
    # Diagonal blocks H_ii = sum_j C_ij; only their norms are needed.
    for rows, comps, a in _row_chunks(x, d1, d2):
        diag = np.empty((rows.stop - rows.start, 3, 3))
        for c in range(3):
            ac = a * comps[c]
            for e in range(c, 3):
                diag[:, c, e] = diag[:, e, c] = np.einsum("ij,ij->i", ac, comps[e])
            diag[:, c, c] += d1[rows].sum(axis=1)
        local = np.arange(rows.stop - rows.start)
        k[rows.start + local, rows.start + local] = np.sqrt(np.einsum("icd,icd->i", diag, diag))
    return k


def block_norms(h: np.ndarray) -> np.ndarray:
    """Frobenius norms of the 3x3 blocks of a dense Hessian.

    Args:
      h: [3n, 3n] Hessian, row 3i + c.

    Returns:
      [n, n] float64 block norms.
    """
    h = np.asarray(h, dtype=np.float64)
    if h.ndim != 2 or h.shape[0] != h.shape[1] or h.shape[0] % 3:
        raise ValueError(f"h must have shape (3n, 3n); got {h.shape}")
    n = h.shape[0] // 3
    h4 = h.reshape(n, 3, n, 3)
    return np.sqrt(np.einsum("icjd,icjd->ij", h4, h4))


def _hvp_batch_size(n_atoms: int) -> int:
    return int(np.clip(_HVP_BATCH_BUDGET // max(n_atoms * n_atoms * 8, 1), 1, 3 * n_atoms))


def make_hvp_fn(
    energy_fn: EnergyFn, x, *, block_size: int = 8
) -> Callable[[np.ndarray], np.ndarray]:
    """Matrix-free Hessian products at x: forward-over-reverse (jvp of grad), jitted.

    Columns are processed ``block_size`` at a time (the last block zero-padded), so the
    function compiles once whatever the number of columns an iterative solver passes.

    Args:
      energy_fn: x [n_atoms, 3] -> scalar energy.
      x: [n_atoms, 3] positions where the Hessian is taken.
      block_size: columns per vmapped evaluation, >= 1.

    Returns:
      hvp_fn: V [3n] or [3n, m] -> H V of the same shape, float64 numpy.
    """
    if block_size < 1:
        raise ValueError(f"block_size must be >= 1; got {block_size}")
    x = jnp.asarray(_as_positions(x))
    n = x.shape[0]
    grad_fn = jax.grad(energy_fn)

    def hvp(x0, v):
        return jax.jvp(grad_fn, (x0,), (v.reshape(n, 3),))[1].reshape(-1)

    block = jax.jit(jax.vmap(hvp, in_axes=(None, 1), out_axes=1))

    def hvp_fn(v):
        v = np.asarray(v, dtype=np.float64)
        if v.shape[0] != 3 * n or v.ndim not in (1, 2):
            raise ValueError(f"v must have shape ({3 * n},) or ({3 * n}, m); got {v.shape}")
        cols = v.reshape(3 * n, -1)
        m = cols.shape[1]
        padded = np.zeros((3 * n, -(-m // block_size) * block_size))
        padded[:, :m] = cols
        out = np.concatenate(
            [
                np.asarray(block(x, jnp.asarray(padded[:, c : c + block_size])))
                for c in range(0, padded.shape[1], block_size)
            ],
            axis=1,
        )
        return out[:, :m].reshape(v.shape)

    return hvp_fn


@functools.lru_cache(maxsize=8)
def _hessian_columns_fn(energy_fn: EnergyFn, n_atoms: int, batch_size: int) -> Callable:
    """Jitted x -> [3n, 3n] stack of H e_i, cached so samples of one energy compile once."""
    n_dof = 3 * n_atoms
    grad_fn = jax.grad(energy_fn)

    @jax.jit
    def columns(x0):
        def column(idx):
            e = jax.nn.one_hot(idx, n_dof, dtype=x0.dtype).reshape(n_atoms, 3)
            return jax.jvp(grad_fn, (x0,), (e,))[1].reshape(-1)

        return jax.lax.map(column, jnp.arange(n_dof), batch_size=min(batch_size, n_dof))

    return columns


def autodiff_hessian(energy_fn: EnergyFn, x, *, batch_size: int | None = None) -> np.ndarray:
    """Dense Hessian by batched Hessian-vector products (one per Cartesian coordinate).

    Args:
      energy_fn: x [n_atoms, 3] -> scalar energy.
      x: [n_atoms, 3] positions.
      batch_size: HVPs evaluated together (None: sized for an all-pairs energy's
        [n, n] temporaries; all 3n at once for small systems).

    Returns:
      [3n, 3n] float64, symmetrised ((H + H^T) / 2), row 3i + c.

    NOTE: costs 3n gradient-like evaluations; minutes above ~1000 atoms for all-pairs
    energies (platform-notes §2b). Prefer ``pair_hessian`` when the energy has pair terms.
    """
    x = jnp.asarray(_as_positions(x))
    n = x.shape[0]
    if batch_size is not None and batch_size < 1:
        raise ValueError(f"batch_size must be >= 1; got {batch_size}")
    bs = batch_size or _hvp_batch_size(n)
    h = np.asarray(_hessian_columns_fn(energy_fn, n, bs)(x), dtype=np.float64)
    return 0.5 * (h + h.T)


def compile_autodiff_hessian(energy_fn: EnergyFn, x, *, batch_size: int | None = None) -> float:
    """Compile ``autodiff_hessian``'s program for x's shape ahead of time; returns seconds.

    Benchmarks that time slow modes call it first, so that the first timed computation is as
    warm as later ones (with JAX's persistent compilation cache on, the jitted call then finds
    this executable)."""
    x = jnp.asarray(_as_positions(x))
    n = x.shape[0]
    fn = _hessian_columns_fn(energy_fn, n, batch_size or _hvp_batch_size(n))
    t = time.perf_counter()
    fn.lower(x).compile()
    return time.perf_counter() - t


def hessian(model: EnergyModel, x) -> np.ndarray:
    """Dense Hessian of ``model.energy_fn`` at x: analytic pair blocks when available.

    Args:
      model: the energy; ``model.pair_terms`` selects the analytic route.
      x: [n_atoms, 3] positions.

    Returns:
      [3n, 3n] float64 symmetric Hessian, row 3i + c.
    """
    if model.pair_terms is not None:
        return pair_hessian(x, model.pair_terms)
    return autodiff_hessian(model.energy_fn, x)
