"""Pair energies whose cost grows with the pairs that matter: blocked all pairs, cell lists,
neighbour lists (in the style of jax-md's ``partition``).

Contract. Every factory returns pure functions of positions x [n_atoms, 3] (length units):

- ``make_blocked_energy(...) -> energy(x)``: ``scale * sum_{i<j, allowed} phi(r_ij)`` over all
  pairs, evaluated strip by strip (``block`` rows against all n columns) in a ``fori_loop``:
  memory O(n * block), no [n, n] array, and a compiled program whose size does not depend
  on n.
- ``make_cell_energy(...) -> energy(x)``: the same sum restricted to r_ij < cutoff (phi
  shifted to 0 there), found with a hashed cell list built inside the program; exact for
  every x (when a cell holds more atoms than the static capacity it falls back to the blocked
  sum, slower but still exact).
- ``neighbor_list(...) -> NeighborListFns(allocate, update)`` and
  ``make_neighbor_energy(...) -> energy(x, nbrs)``: a dense neighbour list [n, capacity]
  within cutoff + skin, rebuilt only when needed (``needs_rebuild``); the energy over it falls
  back to the cell energy when any atom moved more than skin / 2 since the build, so it
  equals ``make_cell_energy``'s for every x.

Which pairs take part is computed from atom indices inside the kernel, never from an array:
i != j and |i - j| not in ``excluded_offsets`` (the loop systems exclude bonds |i - j| = 1 and
loop contacts |i - j| = stride). Weights are uniform (``scale``).

Gradients are hand-written (``jax.custom_jvp``). Every kernel sums, per row block, the forces
on its own atoms over all partners (both orders of every pair are visited, the energy is
halved), so no scatter is needed; the all-pairs strips do that sum as one matrix product.
Second derivatives (Hessian-vector products, ``jax.hessian``) still come from autodiff
through the force expression.

[1] S. S. Schoenholz, E. D. Cubuk, "JAX MD", NeurIPS 2020: ``partition.neighbor_list``
    (allocate / update, overflow flag, capacity re-allocation on the host).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

# Default element budget of row blocks (rows * columns), rounded to a multiple of 8 rows.
BLOCK_ELEMENTS = 2**15
# Elements of one strip ([rows, n] pairs) of the blocked all-pairs sum, and its most rows:
# temporaries near the CPU's L2 (measured at n = 1000 and 4000: 128 and 32 rows best).
STRIP_ELEMENTS = 2**17
STRIP_MAX_ROWS = 128
# Matrix products that must stay float32 (no TF32 on GPUs): the forces of the blocked sum.
_EXACT = jax.lax.Precision.HIGHEST
# Candidates per block of the cell and neighbour-list energies (rows * partners).
CANDIDATE_ELEMENTS = 2**17
# Neighbour-list skin (length units): the list holds pairs within cutoff + SKIN; a 20-step
# Adam chunk at lr 0.01 moves a bead ~0.35, inside SKIN / 2.
SKIN = 1.0
# Spare room when capacities are chosen on the host (cells, neighbours).
CAPACITY_MARGIN = 1.3
# Spatial hash of integer cell coordinates into 2^k buckets: a weighted sum (primes of
# Teschner et al. 2003) mixed by Fibonacci hashing (Knuth), top k bits. (Teschner's XOR of
# the products, low k bits, put 3 cells in one bucket for the loops' compact x0: 3x the
# capacity.)
_HASH_PRIMES = (73856093, 19349663, 83492791)
_HASH_MIX = 2654435761
_OFFSETS = np.array([(a, b, c) for a in (-1, 0, 1) for b in (-1, 0, 1) for c in (-1, 0, 1)])


def row_block(n_atoms: int, n_cols: int | None = None, budget: int = BLOCK_ELEMENTS) -> int:
    """Rows per block so that rows * n_cols ~ budget: a multiple of 8 in [8, n_atoms]."""
    n_cols = n_atoms if n_cols is None else n_cols
    rows = max(8, (budget // max(n_cols, 1)) // 8 * 8)
    return int(min(rows, max(8, -(-n_atoms // 8) * 8)))


def allowed_pairs(i, j, n_atoms: int, excluded_offsets: tuple[int, ...]):
    """Bool mask of pairs that take part, from indices alone (broadcasting i and j).

    False for i == j, for |i - j| in ``excluded_offsets``, and for padding indices >= n_atoms.
    """
    d = jnp.abs(i - j)
    mask = (d != 0) & (i < n_atoms) & (j < n_atoms)
    for offset in excluded_offsets:
        mask = mask & (d != offset)
    return mask


def n_allowed_pairs(n_atoms: int, excluded_offsets: tuple[int, ...]) -> int:
    """Number of unordered pairs i < j that take part (for per-pair means)."""
    total = n_atoms * (n_atoms - 1) // 2
    return total - sum(max(n_atoms - k, 0) for k in set(excluded_offsets) if k > 0)


def _radial(potential, r2, mask, cutoff, shift):
    """(energies, phi'(r)/r) elementwise; coincident atoms (r = 0) give phi(0) and no force.

    One rsqrt gives both r and 1/r (r^2 clamped at 1e-30, so r = 0 stays finite). phi is
    evaluated at every r >= 0, inactive pairs included (the diagonal i = j has r = 0): it
    must be finite with finite derivatives on [0, inf) (soft cores, as every caller's is).
    """
    inside = mask if cutoff is None else mask & (r2 < cutoff * cutoff)
    rinv = jax.lax.rsqrt(jnp.maximum(r2, 1e-30))
    v, dv = jax.jvp(potential, (r2 * rinv,), (jnp.ones_like(r2),))
    if cutoff is not None and shift:
        v = v - potential(jnp.asarray(cutoff, r2.dtype))
    return jnp.where(inside, v, 0.0), jnp.where(inside & (r2 > 0), dv * rinv, 0.0)


def _rows(xi, ii, xj, jj, n_atoms, offsets, potential, cutoff, shift, with_grad):
    """Energy of rows i against partners j (both orders counted), and forces on the rows.

    xi [B, 3], ii [B]; xj [B, C, 3] or [C, 3] (shared), jj [B, C] or [C].
    Returns (sum of phi over the block's pairs, dE/dx_i [B, 3] or None).
    """
    if xj.ndim == 2:
        xj, jj = xj[None], jj[None]
    d = [xi[:, None, c] - xj[..., c] for c in range(3)]
    r2 = d[0] * d[0] + d[1] * d[1] + d[2] * d[2]
    mask = allowed_pairs(ii[:, None], jj, n_atoms, offsets)
    e, coef = _radial(potential, r2, mask, cutoff, shift)
    if not with_grad:
        return jnp.sum(e), None
    return jnp.sum(e), jnp.stack([jnp.sum(coef * dc, axis=1) for dc in d], axis=1)


def _with_forces(energy_and_grad: Callable, energy_only: Callable) -> Callable:
    """A custom_jvp energy: ``energy_only`` when not differentiated, hand-written forces
    (``energy_and_grad``) when it is. Extra arguments (neighbour lists) get no tangents."""

    @jax.custom_jvp
    def energy(x, *args):
        return energy_only(x, *args)

    @energy.defjvp
    def _jvp(primals, tangents):
        x, *args = primals
        e, g = energy_and_grad(x, *args)
        return e, jnp.sum(g * tangents[0])

    energy.energy_and_grad = energy_and_grad  # for fallbacks that need both in one pass
    energy.energy_only = energy_only
    return energy


def strip_rows(n_atoms: int) -> int:
    """Rows per strip of the blocked all-pairs sum: rows * n_atoms ~ STRIP_ELEMENTS, a
    multiple of 8 in [8, STRIP_MAX_ROWS] (measured on the 2-core CPU: 128 rows at n = 1000,
    32 at n = 4000)."""
    return min(row_block(n_atoms, n_atoms, STRIP_ELEMENTS), STRIP_MAX_ROWS)


def make_blocked_energy(
    n_atoms: int,
    potential: Callable,
    scale: float,
    excluded_offsets: tuple[int, ...] = (),
    *,
    cutoff: float | None = None,
    shift: bool = True,
    block: int | None = None,
) -> Callable:
    """All-pairs ``scale * sum_{i<j allowed} phi(r_ij)`` over strips of rows.

    A ``fori_loop`` visits strips of ``block`` rows against all n columns (both orders of
    every pair, energy halved), so no force is scattered to columns. The forces on a strip's
    rows come from one matrix product: with c_ij = phi'(r_ij) / r_ij,
    ``sum_j c_ij (x_i - x_j) = x_i sum_j c_ij - sum_j c_ij x_j = [C @ (x, 1)]``, positions
    taken relative to the strip's mean (smaller terms, less cancellation); the same product
    sums the strip's energies. On the CPU that product replaces per-component reductions,
    which XLA emits as several passes each (measured round-robin against square tiles of
    pairs, each pair once: 0.45x the time at n = 1000, 0.70x at n = 4000).
    In float32 the cancellation costs gradient accuracy: ~1e-5 (n = 1000) to 1e-4 (n = 4000)
    of max |g| at the loops' x0 (docs/benchmarks.md, "Scale"); energies are as exact as a
    direct sum.
    The strips count every pair i != j; the excluded pairs (O(n): one shifted difference per
    offset) are evaluated apart and subtracted, so the n^2 loop tests no offsets.
    Memory O(n * block); the program does not depend on n except through shapes and loop
    bounds.

    Args:
      n_atoms: n.
      potential: elementwise phi(r) (jax-traceable), e.g. ``potentials.soft_repulsion``.
      scale: prefactor (e.g. repel_mag / n_pairs for a per-pair mean).
      excluded_offsets: |i - j| values that do not take part (see ``allowed_pairs``).
      cutoff: if set, only pairs with r < cutoff count, phi shifted by -phi(cutoff) when
        ``shift``.
      block: rows per strip (default ``strip_rows(n_atoms)``).
    Returns:
      energy(x [n_atoms, 3]) -> scalar in x's dtype.
    """
    n = int(n_atoms)
    block = int(block or strip_rows(n))
    n_blocks = -(-n // block)
    offsets = tuple(sorted({int(o) for o in excluded_offsets if 0 < int(o) < n}))

    def excluded(x, with_grad):
        """(sum of phi over the excluded pairs, both orders; their forces on x): the strips
        count every pair i != j and this is taken off after, so the n^2 loop tests no
        offsets (measured 0.8-0.9x the time of the masked strips at n = 1000)."""
        e, g = jnp.zeros((), x.dtype), jnp.zeros_like(x)
        for k in offsets:
            d = x[:-k] - x[k:]
            r2 = jnp.sum(d * d, axis=1)
            v, coef = _radial(potential, r2, jnp.ones(r2.shape, bool), cutoff, shift)
            e = e + 2.0 * jnp.sum(v)
            if with_grad:
                f = coef[:, None] * d  # on the first atom of each pair; minus on the second
                g = g.at[:-k].add(f).at[k:].add(-f)
        return e, g

    def run(x, with_grad):
        xp = jnp.pad(x, ((0, n_blocks * block - n), (0, 0)))

        def strip(b, carry):
            g, e = carry
            # int32 indices: twice the SIMD lanes of the int64 that x64 mode defaults to
            cols = jnp.arange(n, dtype=jnp.int32)[None, :]
            rows = b.astype(jnp.int32) * block + jnp.arange(block, dtype=jnp.int32)[:, None]
            ones = jnp.ones((n, 1), x.dtype)
            xi = jax.lax.dynamic_slice_in_dim(xp, b * block, block)
            # (a mean: XLA materializes it; a row of xi gets re-sliced in every fusion)
            origin = jnp.mean(xi, axis=0)
            y, yi = x - origin, xi - origin
            d = [yi[:, c, None] - y[None, :, c] for c in range(3)]
            r2 = d[0] * d[0] + d[1] * d[1] + d[2] * d[2]
            mask = (rows != cols) & (rows < n)  # excluded offsets: taken off after
            v, coef = _radial(potential, r2, mask, cutoff, shift)
            if not with_grad:
                return g, e + jnp.sum(v)
            # one product for forces and energy: [C; V] @ [y, 1] (V @ 1 = the rows' energies;
            # measured 0.86-0.94x the time of a separate sum of V)
            m = jnp.matmul(jnp.concatenate([coef, v]), jnp.concatenate([y, ones], axis=1),
                           precision=_EXACT)  # fmt: skip
            f = yi * m[:block, 3:] - m[:block, :3]
            g = jax.lax.dynamic_update_slice_in_dim(g, f, b * block, 0)
            return g, e + jnp.sum(m[block:, 3])

        g0 = jnp.zeros_like(xp) if with_grad else jnp.zeros((), x.dtype)
        g, e = jax.lax.fori_loop(0, n_blocks, strip, (g0, jnp.zeros((), x.dtype)))
        e_out, g_out = excluded(x, with_grad)
        e = 0.5 * scale * (e - e_out)
        return (e, scale * (g[:n] - g_out)) if with_grad else e

    return _with_forces(lambda x: run(x, True), lambda x: run(x, False))


def _parts(energy) -> tuple[Callable, Callable]:
    """(energy_and_grad, energy_only) of a ``_with_forces`` energy."""
    return energy.energy_and_grad, energy.energy_only


# ------------------------------------------------------------- pair sets for Hessians


class CutoffPairs(NamedTuple):
    """The pairs of a cutoff term, found per configuration: every allowed pair (i != j,
    |i - j| not in ``excluded_offsets``) closer than ``cutoff``. Stands in a ``PairTerm``'s
    ``pairs`` where listing all n^2 / 2 candidates would defeat the cutoff (the cutoff
    model's repulsion, whose potential is 0 with zero derivatives beyond ``cutoff``)."""

    excluded_offsets: tuple[int, ...]
    cutoff: float


def pairs_within(x, cutoff: float, excluded_offsets: tuple[int, ...] = ()) -> np.ndarray:
    """Allowed pairs closer than ``cutoff`` at positions x [n, 3] (host, k-d tree).

    Returns:
      [m, 2] int64, i < j, sorted by i then j (r <= cutoff: pairs at exactly the cutoff are
      included; their truncated potential and its derivatives are 0 there).
    """
    from scipy.spatial import cKDTree

    x = np.asarray(x, np.float64)
    pairs = cKDTree(x).query_pairs(float(cutoff), output_type="ndarray").astype(np.int64)
    pairs.sort(axis=1)
    gap = pairs[:, 1] - pairs[:, 0]
    keep = ~np.isin(gap, np.asarray(excluded_offsets, np.int64)) & (gap != 0)
    pairs = pairs[keep]
    return pairs[np.lexsort((pairs[:, 1], pairs[:, 0]))]


def concrete_pairs(pairs, x) -> np.ndarray:
    """A PairTerm's pairs as an [m, 2] int array at positions x: the array itself, or the
    pairs of a ``CutoffPairs`` found at x."""
    if isinstance(pairs, CutoffPairs):
        return pairs_within(x, pairs.cutoff, pairs.excluded_offsets)
    return np.asarray(pairs, np.int64).reshape(-1, 2)


# ---------------------------------------------------------------------------- cell lists


class CellGrid(NamedTuple):
    """Static sizes of a hashed cell list (all Python ints/floats: part of the program).

    Fields:
      cell_size: edge of a cubic cell (length units), >= the interaction range.
      n_buckets: hash buckets, a power of two.
      capacity: atoms per bucket the kernel visits; more means overflow.
    """

    cell_size: float
    n_buckets: int
    capacity: int


def _hash(cells, n_buckets):
    """Bucket of integer cell coordinates [..., 3] -> [...] int32 in [0, n_buckets)."""
    c = cells.astype(jnp.uint32)
    h = sum(c[..., k] * jnp.uint32(p) for k, p in enumerate(_HASH_PRIMES))
    bits = int(n_buckets).bit_length() - 1
    return ((h * jnp.uint32(_HASH_MIX)) >> jnp.uint32(32 - bits)).astype(jnp.int32)


def _host_bucket_counts(x: np.ndarray, cell_size: float, n_buckets: int) -> np.ndarray:
    cells = np.floor(np.asarray(x, np.float64) / cell_size).astype(np.int64).astype(np.uint32)
    h = sum(cells[:, k] * np.uint32(p) for k, p in enumerate(_HASH_PRIMES)).astype(np.uint32)
    bits = int(n_buckets).bit_length() - 1
    h = (h * np.uint32(_HASH_MIX)) >> np.uint32(32 - bits)
    return np.bincount(h.astype(np.int64), minlength=n_buckets)


def cell_grid(x, cell_size: float, margin: float = CAPACITY_MARGIN) -> CellGrid:
    """Choose a CellGrid for positions x [n, 3] (host): ~2n buckets, capacity = margin times
    the fullest bucket."""
    n = int(np.shape(x)[0])
    n_buckets = 1 << max(4, math.ceil(math.log2(2 * n)))
    fullest = int(_host_bucket_counts(x, cell_size, n_buckets).max())
    return CellGrid(float(cell_size), n_buckets, int(math.ceil(margin * fullest)) + 2)


def _cell_index(x, grid: CellGrid):
    """(sorted atom order [n], bucket start [n_buckets + 1], count [n_buckets + 1], cells [n, 3],
    fullest bucket). Bucket n_buckets is an empty sentinel."""
    n = x.shape[0]
    cells = jnp.floor(x / grid.cell_size).astype(jnp.int32)
    bucket = _hash(cells, grid.n_buckets)
    order = jnp.argsort(bucket).astype(jnp.int32)
    edges = jnp.searchsorted(bucket[order], jnp.arange(grid.n_buckets + 1)).astype(jnp.int32)
    count = jnp.diff(edges, append=jnp.int32(n))
    count = count.at[grid.n_buckets].set(0)
    return order, edges, count, cells, jnp.max(count)


def _candidates(ii, cells_i, order, start, count, grid: CellGrid, n):
    """Atoms in the 27 cells around each row [B], deduplicated by bucket: [B, 27 * capacity],
    n for empty slots."""
    nbr_cells = cells_i[:, None, :] + jnp.asarray(_OFFSETS, jnp.int32)[None]
    b = jnp.sort(_hash(nbr_cells, grid.n_buckets), axis=1)  # [B, 27]
    dup = jnp.concatenate([jnp.zeros_like(b[:, :1], bool), b[:, 1:] == b[:, :-1]], axis=1)
    b = jnp.where(dup, grid.n_buckets, b)  # a repeated bucket is visited once
    k = jnp.arange(grid.capacity, dtype=jnp.int32)
    slot = start[b][..., None] + k  # [B, 27, K]
    valid = k < count[b][..., None]
    j = jnp.where(valid, order[jnp.minimum(slot, n - 1)], n)
    del ii
    return j.reshape(j.shape[0], -1)


def _block_rows(n, n_cols):
    block = row_block(n, n_cols, CANDIDATE_ELEMENTS)
    return block, -(-n // block)


def make_cell_energy(
    n_atoms: int,
    potential: Callable,
    scale: float,
    excluded_offsets: tuple[int, ...],
    cutoff: float,
    grid: CellGrid,
    *,
    shift: bool = True,
) -> Callable:
    """Cutoff energy ``scale * sum_{i<j allowed, r<cutoff} (phi(r) - phi(cutoff))`` from a
    hashed cell list built inside the program (cells of edge ``grid.cell_size`` >= cutoff).

    Exact for every x: if a bucket holds more than ``grid.capacity`` atoms the energy is taken
    from the blocked all-pairs sum instead (``lax.cond``; O(n^2) then).

    Returns:
      energy(x [n_atoms, 3]) -> scalar.
    """
    if grid.cell_size < cutoff:
        raise ValueError(f"grid.cell_size must be >= cutoff={cutoff}; got {grid.cell_size}")
    n = int(n_atoms)
    offsets = tuple(int(o) for o in excluded_offsets)
    block, n_blocks = _block_rows(n, 27 * grid.capacity)
    rows = functools.partial(
        _rows, n_atoms=n, offsets=offsets, potential=potential, cutoff=cutoff, shift=shift
    )
    fallback = make_blocked_energy(n, potential, scale, offsets, cutoff=cutoff, shift=shift)

    def cells(x, with_grad):
        order, start, count, cell_of, _ = _cell_index(x, grid)
        xp = jnp.pad(x, ((0, n_blocks * block - n + 1), (0, 0)))  # row n: padding partner
        cp = jnp.pad(cell_of, ((0, n_blocks * block - n), (0, 0)))

        def one(b):
            s = b * block
            ii = s + jnp.arange(block)
            jj = _candidates(ii, jax.lax.dynamic_slice_in_dim(cp, s, block), order, start,
                             count, grid, n)  # fmt: skip
            return rows(jax.lax.dynamic_slice_in_dim(xp, s, block), ii, xp[jj], jj,
                        with_grad=with_grad)  # fmt: skip

        e, g = jax.lax.map(one, jnp.arange(n_blocks))
        e = 0.5 * scale * jnp.sum(e)
        return (e, scale * g.reshape(-1, 3)[:n]) if with_grad else e

    fallback_both, fallback_only = _parts(fallback)

    def energy_and_grad(x):
        overflow = _cell_index(x, grid)[4] > grid.capacity
        return jax.lax.cond(overflow, fallback_both, lambda y: cells(y, True), x)

    def energy_only(x):
        overflow = _cell_index(x, grid)[4] > grid.capacity
        return jax.lax.cond(overflow, fallback_only, lambda y: cells(y, False), x)

    return _with_forces(energy_and_grad, energy_only)


# ------------------------------------------------------------------------ neighbour lists


class NeighborList(NamedTuple):
    """A dense neighbour list (pytree of fixed shapes; jax-md's ``NeighborList``, Dense).

    Fields:
      idx: [n_atoms, capacity] int32: the partners of atom i within cutoff + skin at build
        time (both orders of every pair), n_atoms in empty slots.
      x_build: [n_atoms, 3] positions at the build.
      x_check: [n_atoms, 3] positions at the last ``update`` check (the host's estimate of
        how far atoms move between checks).
      overflow: [] bool, True when a cell or a row did not fit: the list is incomplete and
        must be re-allocated (``NeighborListFns.allocate``).
      max_neighbors: [] int32, the fullest row at the build (the capacity it needs).
    """

    idx: jax.Array
    x_build: jax.Array
    x_check: jax.Array
    overflow: jax.Array
    max_neighbors: jax.Array


class NeighborListFns(NamedTuple):
    """allocate(x) -> NeighborList (host: chooses capacities, compiles the build);
    update(x, nbrs) -> NeighborList (host: rebuilds with the same capacities when
    ``needs_rebuild``, re-allocates on overflow; returns ``nbrs`` itself when nothing changed).
    """

    allocate: Callable
    update: Callable


def needs_rebuild(x, nbrs: NeighborList, skin: float = SKIN) -> bool:
    """Host rule: rebuild when the largest displacement since the build plus the largest
    displacement since the last check (a forecast of the next chunk) exceeds skin / 2."""
    x = np.asarray(x)
    moved = np.sqrt(np.max(np.sum((x - np.asarray(nbrs.x_build)) ** 2, axis=1)))
    step = np.sqrt(np.max(np.sum((x - np.asarray(nbrs.x_check)) ** 2, axis=1)))
    return bool(nbrs.overflow) or moved + step > 0.5 * skin


def neighbor_capacity(x: np.ndarray, reach: float, margin: float = CAPACITY_MARGIN) -> int:
    """Neighbour-list row length for positions x [n, 3]: margin times the most atoms within
    ``reach`` of any atom (itself included), rounded up to a multiple of 16."""
    from scipy.spatial import cKDTree

    most = int(np.max(cKDTree(x).query_ball_point(x, reach, return_length=True)))
    return int(-(-math.ceil(margin * most) // 16) * 16)


@functools.lru_cache(maxsize=16)
def _build_fn(n, offsets, reach, grid: CellGrid, capacity):
    block, n_blocks = _block_rows(n, 27 * grid.capacity)

    @jax.jit
    def build(x):
        order, start, count, cell_of, fullest = _cell_index(x, grid)
        xp = jnp.pad(x, ((0, n_blocks * block - n + 1), (0, 0)))
        cp = jnp.pad(cell_of, ((0, n_blocks * block - n), (0, 0)))

        def one(b):
            s = b * block
            ii = s + jnp.arange(block)
            jj = _candidates(ii, jax.lax.dynamic_slice_in_dim(cp, s, block), order, start,
                             count, grid, n)  # fmt: skip
            d = jax.lax.dynamic_slice_in_dim(xp, s, block)[:, None, :] - xp[jj]
            keep = allowed_pairs(ii[:, None], jj, n, offsets)
            keep = keep & (jnp.sum(d * d, axis=-1) < reach * reach)
            pos = jnp.cumsum(keep, axis=1) - 1
            rows = jnp.broadcast_to(jnp.arange(block)[:, None], jj.shape)
            out = jnp.full((block, capacity), n, jnp.int32)
            out = out.at[rows, jnp.where(keep, pos, capacity)].set(jj, mode="drop")
            return out, jnp.max(jnp.sum(keep, axis=1))

        idx, counts = jax.lax.map(one, jnp.arange(n_blocks))
        most = jnp.max(counts).astype(jnp.int32)
        overflow = (fullest > grid.capacity) | (most > capacity)
        return NeighborList(idx.reshape(-1, capacity)[:n], x, x, overflow, most)

    return build


def neighbor_list(
    n_atoms: int, cutoff: float, excluded_offsets: tuple[int, ...] = (), skin: float = SKIN
) -> NeighborListFns:
    """Neighbour-list functions for pairs within ``cutoff + skin`` (see module docstring).

    Args:
      n_atoms: n.
      cutoff: interaction range (length units).
      excluded_offsets: |i - j| values never listed.
      skin: extra range, so the list stays valid until an atom moves skin / 2.
    """
    n = int(n_atoms)
    offsets = tuple(int(o) for o in excluded_offsets)
    reach = float(cutoff + skin)

    grids: dict = {}  # capacity -> the CellGrid its build was compiled with (a cache)

    def build(x, grid, capacity):
        nbrs = _build_fn(n, offsets, reach, grid, capacity)(x)
        grids[capacity] = grid
        return nbrs

    def allocate(x, capacity: int | None = None) -> NeighborList:
        x_host = np.asarray(x, np.float64)
        grid = cell_grid(x_host, reach)
        # Sized from the fullest neighbourhood counted on the host (k-d tree, O(n log n)),
        # not from the fullest cell: the list's cost is n * capacity.
        capacity = capacity or neighbor_capacity(x_host, reach)
        nbrs = build(x, grid, capacity)
        if bool(nbrs.overflow):  # the build counted what it needs: once more, big enough
            capacity = int(math.ceil(CAPACITY_MARGIN * int(nbrs.max_neighbors))) + 8
            nbrs = build(x, grid, capacity)
        return nbrs

    def update(x, nbrs: NeighborList) -> NeighborList:
        x = jnp.asarray(x, nbrs.x_build.dtype)
        if not needs_rebuild(x, nbrs, skin):
            return nbrs._replace(x_check=x)
        capacity = nbrs.idx.shape[1]
        grid = grids.get(capacity) or cell_grid(np.asarray(x, np.float64), reach)
        new = build(x, grid, capacity)
        return allocate(x) if bool(new.overflow) else new

    return NeighborListFns(allocate, update)


def make_neighbor_energy(
    n_atoms: int,
    potential: Callable,
    scale: float,
    excluded_offsets: tuple[int, ...],
    cutoff: float,
    fallback: Callable,
    *,
    skin: float = SKIN,
    shift: bool = True,
) -> Callable:
    """Cutoff energy over a NeighborList: energy(x, nbrs) -> scalar.

    Where the list may be stale (an atom moved more than skin / 2 since the build, or the
    build overflowed) the value comes from ``fallback(x)`` instead (the cell energy), so the
    result is the exact cutoff energy for every x.
    """
    n = int(n_atoms)
    offsets = tuple(int(o) for o in excluded_offsets)
    rows = functools.partial(
        _rows, n_atoms=n, offsets=offsets, potential=potential, cutoff=cutoff, shift=shift
    )

    def listed(x, idx, with_grad):
        capacity = idx.shape[1]
        block, n_blocks = _block_rows(n, capacity)
        xp = jnp.pad(x, ((0, n_blocks * block - n + 1), (0, 0)))
        ip = jnp.pad(idx, ((0, n_blocks * block - n), (0, 0)), constant_values=n)

        def one(b):
            s = b * block
            jj = jax.lax.dynamic_slice_in_dim(ip, s, block)
            xi = jax.lax.dynamic_slice_in_dim(xp, s, block)
            return rows(xi, s + jnp.arange(block), xp[jj], jj, with_grad=with_grad)

        e, g = jax.lax.map(one, jnp.arange(n_blocks))
        e = 0.5 * scale * jnp.sum(e)
        return (e, scale * g.reshape(-1, 3)[:n]) if with_grad else e

    def stale(x, nbrs):
        moved = jnp.max(jnp.sum((x - nbrs.x_build.astype(x.dtype)) ** 2, axis=1))
        return nbrs.overflow | (moved > (0.5 * skin) ** 2)

    fallback_both, fallback_only = _parts(fallback)

    def energy_and_grad(x, nbrs):
        return jax.lax.cond(stale(x, nbrs), fallback_both, lambda y: listed(y, nbrs.idx, True), x)

    def energy_only(x, nbrs):
        return jax.lax.cond(stale(x, nbrs), fallback_only, lambda y: listed(y, nbrs.idx, False), x)

    return _with_forces(energy_and_grad, energy_only)
