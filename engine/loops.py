"""The paper's synthetic loop systems (method.md §3.3): builders and energies.

Graph: an open chain of n beads (bonds i, i+1) with loop contacts i, i+stride of strength a.
- "bond-lj-loop": E = mean_bonds (r-1)^2 + mean_loops a V_LJ(r) + repel_mag mean_N V_rep(r)
- "lj-loop":      E = mean_{bonds+loops} w V_LJ(r) + repel_mag mean_N V_rep(r)
                  (w = 1 for bonds, a for loops)
Means over ordered pairs equal means over unordered ones (symmetric weights), so the values
match the reference's per-pair averages. Repulsion pairs N are all pairs that are neither
bonds nor loop contacts (the reference took a union by mistake, method.md §3.2).
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from . import pairs as pairs_mod
from . import potentials
from .config import EnergyConfig, SystemConfig
from .types import LOOP_UNITS, EnergyModel, PairTerm, System

BOND_REST_LENGTH = 1.0  # r0 of the bond potentials (harmonic and LJ), reduced units


def loop_pairs(n: int, stride: int) -> tuple[np.ndarray, np.ndarray]:
    """Bond pairs [n-1, 2] and loop pairs [n-stride, 2] (i < j)."""
    i = np.arange(n)
    bonds = np.stack([i[:-1], i[1:]], axis=1)
    loops = np.stack([i[:-stride], i[stride:]], axis=1)
    return bonds, loops


def initial_positions(n: int, seed: int, init_scale: float = 1.0) -> np.ndarray:
    """Reference start: x0 = (n^(1/3)/2) N(0,1) / 2, i.e. std n^(1/3)/4, times init_scale."""
    key = jax.random.fold_in(jax.random.PRNGKey(seed), 0)
    z = np.asarray(
        jax.random.normal(
            key, (n, 3), dtype=jnp.float64 if jax.config.jax_enable_x64 else jnp.float32
        )
    )
    return (init_scale * n ** (1.0 / 3.0) / 4.0 * z).astype(np.float64)


def build_loop_system(cfg: SystemConfig, seed: int) -> System:
    bonds, loops = loop_pairs(cfg.n, cfg.loop_stride)
    label = {"bond-lj-loop": "Bond+LJ loop", "lj-loop": "pure LJ loop"}[cfg.kind]
    return System(
        name=f"{label} n={cfg.n}",
        kind="loop",
        x0=initial_positions(cfg.n, seed, cfg.init_scale),
        bonds=bonds,
        length_unit=LOOP_UNITS[0],
        energy_unit=LOOP_UNITS[1],
        elements=("C",) * cfg.n,
        meta={
            "system": cfg.kind,
            "loop_pairs": loops.tolist(),
            "loop_stride": cfg.loop_stride,
            "loop_strength": cfg.loop_strength,
        },
    )


def safe_distance(d2):
    """sqrt of squared distances with gradient 0 (not NaN) where two beads coincide exactly;
    a GNN whose activations saturate can map several beads onto one point."""
    positive = d2 > 0
    return jnp.where(positive, jnp.sqrt(jnp.where(positive, d2, 1.0)), 0.0)


# Above this many atoms the all-pairs repulsion is not listed as a PairTerm (its pair list
# alone would be n^2 / 2 host integers); the analytic Hessian then needs another route.
PAIR_TERMS_MAX_ATOMS = 4000


def _pair_distances(x, pairs):
    d = x[pairs[:, 0]] - x[pairs[:, 1]]
    return safe_distance(jnp.sum(d * d, axis=-1))


def _offset_distances(x, offset: int):
    """|x_{i+offset} - x_i| for i in [0, n - offset): [n - offset]; slices, no index arrays."""
    d = x[offset:] - x[:-offset]
    return safe_distance(jnp.sum(d * d, axis=-1))


def _chain_energy(kind, strides, a, lj, n):
    """Bonds (i, i+1) and loop contacts (i, i+s) for each stride s as slices of x: O(n), no
    constants. The paper's loops have one stride; a braced loop (tests) has several."""
    n_b, n_l = n - 1, sum(n - s for s in strides)

    def energy(x):
        rb = _offset_distances(x, 1)
        contacts = sum(jnp.sum(lj(_offset_distances(x, s))) for s in strides)
        if kind == "bond-lj-loop":
            loops = a * contacts / n_l if n_l else 0.0
            return jnp.sum(potentials.harmonic_bond(rb)) / n_b + loops
        return (jnp.sum(lj(rb)) + a * contacts) / (n_b + n_l)

    return energy


def loop_strides(n: int, loops: np.ndarray) -> tuple[int, ...]:
    """The strides s whose full diagonals (i, i+s), i < n - s, make up ``loops`` [m, 2]."""
    strides = tuple(sorted({int(j - i) for i, j in loops}))
    expected = sorted((i, i + s) for s in strides for i in range(n - s))
    if sorted(map(tuple, loops.tolist())) != expected:
        raise ValueError("loop contacts must be whole diagonals (i, i + stride) of the chain")
    return strides


def _subset_repulsion(potential, scale):
    """scale * sum over the pair subset aux [m, 2] of potential(r)."""

    def energy(x, aux):
        return scale * jnp.sum(potential(_pair_distances(x, aux)))

    return energy


def _allowed_pair_at(k, n: int, stride: int):
    """The k-th allowed unordered pair (i < j, j - i not in {1, stride}) in row-major order,
    for int64 arrays k: ([m] i, [m] j). The order is that of np.triu_indices with the excluded
    pairs removed, so draws match the former dense enumeration exactly."""
    i_all = np.arange(n - 1)
    per_row = (n - 1 - i_all) - 1 - (i_all + stride < n)  # j in (i+1, n) minus {i+1, i+stride}
    first = np.concatenate([[0], np.cumsum(per_row)])
    i = np.searchsorted(first, k, side="right") - 1
    j = i + 2 + (k - first[i])
    j = j + (j >= i + stride)  # skip the loop contact (stride >= 2)
    return i, j


def _sample_pairs(n: int, stride: int, m: int):
    """Host-side draw of m distinct unordered repulsion pairs; returns key -> [m, 2] int32.

    Memory O(n + m): pairs are drawn as ranks among the allowed pairs and decoded."""
    n_pairs = pairs_mod.n_allowed_pairs(n, (1, stride))
    m = min(m, n_pairs)

    def sample(key):
        seed = int(jax.random.randint(key, (), 0, 2**31 - 1))
        idx = np.random.default_rng(seed).choice(n_pairs, size=m, replace=False)
        i, j = _allowed_pair_at(idx.astype(np.int64), n, stride)
        return jnp.asarray(np.stack([i, j], axis=1).astype(np.int32))

    return sample, m


def _repulsion_term(n, excluded, potential, scale) -> PairTerm | None:
    """All allowed pairs as a PairTerm (for the analytic Hessian), or None when n is large."""
    if n > PAIR_TERMS_MAX_ATOMS:
        return None
    iu, ju = np.triu_indices(n, 1)
    keep = ~np.isin(ju - iu, excluded)
    pairs = np.stack([iu[keep], ju[keep]], axis=1).astype(np.int32)
    return PairTerm(pairs, np.ones(len(pairs)), potential, scale)


def truncated(r, *, potential, cutoff):
    """potential(r) - potential(cutoff) below the cutoff, 0 beyond (the cutoff model's pair
    potential, for Hessians)."""
    return jnp.where(r < cutoff, potential(r) - potential(cutoff), 0.0)


def make_loop_energy(system: System, cfg: EnergyConfig) -> EnergyModel:
    """Energy of a loop system built by ``build_loop_system``.

    Repulsion (cfg.repulsion):
      all-pairs: blocked all pairs (engine/pairs.py), exact; reported = trained.
      random-subset: trains on a redrawn subset; reports the exact all-pairs energy.
      cutoff: the energy *is* the cutoff model (repulsion shifted to 0 at cfg.cutoff): it is
        reported from a cell list and trained on a neighbour list (aux), equal for every x.
    ``EnergyModel.reported`` says which energy the reports carry.
    """
    n = system.n_atoms
    kind = system.meta["system"]
    a = float(system.meta["loop_strength"])
    stride = int(system.meta["loop_stride"])
    bonds = np.asarray(system.bonds, np.int32)
    loops = np.asarray(system.meta["loop_pairs"], np.int32).reshape(-1, 2)
    lj_fn = potentials.softened_lj if cfg.soft_core == "reference" else potentials.monotone_lj
    lj = functools.partial(lj_fn, eps=cfg.lj_eps)
    rep = functools.partial(potentials.soft_repulsion, power=cfg.repel_pow, eps=cfg.lj_eps)

    if kind == "bond-lj-loop":
        terms = [
            PairTerm(bonds, np.ones(len(bonds)), potentials.harmonic_bond, 1.0 / len(bonds)),
            PairTerm(loops, np.full(len(loops), a), lj, 1.0 / len(loops)),
        ]
    else:
        pairs = np.concatenate([bonds, loops])
        weights = np.concatenate([np.ones(len(bonds)), np.full(len(loops), a)])
        terms = [PairTerm(pairs, weights, lj, 1.0 / len(pairs))]

    strides = loop_strides(n, loops) if len(loops) else (stride,)
    excluded = (1, *strides)
    n_rep_pairs = pairs_mod.n_allowed_pairs(n, excluded)
    full_rep_scale = cfg.repel_mag / n_rep_pairs
    bonded = _chain_energy(kind, strides, a, lj, n)
    all_pairs = pairs_mod.make_blocked_energy(n, rep, full_rep_scale, excluded)

    def energy_fn(x):
        return bonded(x) + all_pairs(x)

    desc = f"{system.name}: {cfg.soft_core} soft core, {cfg.repulsion} repulsion"
    if cfg.repulsion in ("all-pairs", "random-subset"):
        rep_term = _repulsion_term(n, excluded, rep, full_rep_scale)
        pair_terms = tuple(terms) + (rep_term,) if rep_term is not None else None
    if cfg.repulsion == "all-pairs":
        return EnergyModel(
            energy_fn=energy_fn,
            train_energy_fn=lambda x, aux: energy_fn(x),
            aux_init=lambda key, x: jnp.zeros((0, 2), jnp.int32),
            aux_update=None,
            pair_terms=pair_terms,
            description=desc,
            reported="full",
        )
    if cfg.repulsion == "random-subset":
        if len(strides) != 1:
            raise ValueError("random-subset repulsion needs a loop with one stride")
        m = cfg.n_repulsion_pairs or int(np.floor(n * np.log(n)))
        sample, m = _sample_pairs(n, stride, m)
        subset = _subset_repulsion(rep, cfg.repel_mag / m)
        every = cfg.resample_every

        def aux_update(key, x, step, last_step, aux):
            del x
            if every and step // every != last_step // every:
                return sample(key)
            return aux

        return EnergyModel(
            energy_fn=energy_fn,
            train_energy_fn=lambda x, aux: bonded(x) + subset(x, aux),
            aux_init=lambda key, x: sample(key),
            aux_update=aux_update,
            pair_terms=pair_terms,
            description=desc + f" ({m} pairs, redrawn every {every} steps)",
            reported="full",
        )
    return _cutoff_model(system, cfg, terms, bonded, rep, full_rep_scale, excluded, desc)


def _cutoff_model(system, cfg, terms, bonded, rep, scale, excluded, desc) -> EnergyModel:
    """The cutoff energy model: reported from a cell list, trained on a neighbour list."""
    n, rc = system.n_atoms, float(cfg.cutoff)
    grid = pairs_mod.cell_grid(system.x0, rc, margin=2.0)
    cell = pairs_mod.make_cell_energy(n, rep, scale, excluded, rc, grid)
    listed = pairs_mod.make_neighbor_energy(n, rep, scale, excluded, rc, cell)
    nl = pairs_mod.neighbor_list(n, rc, excluded)
    # The pairs within the cutoff are found per configuration (engine.hessian): sparse
    # Hessians at any n, no n^2 / 2 candidate list.
    rep_term = PairTerm(
        pairs_mod.CutoffPairs(tuple(excluded), rc),
        np.ones(()),
        functools.partial(truncated, potential=rep, cutoff=rc),
        scale,
    )

    def aux_update(key, x, step, last_step, aux):
        del key, step, last_step
        return nl.update(x, aux)

    return EnergyModel(
        energy_fn=lambda x: bonded(x) + cell(x),
        train_energy_fn=lambda x, aux: bonded(x) + listed(x, aux),
        aux_init=lambda key, x: nl.allocate(x),
        aux_update=aux_update,
        pair_terms=(*terms, rep_term),
        description=desc + f" (cutoff {rc:g}; the reported energy is the cutoff energy)",
        reported="cutoff",
    )


def loop_structure_metrics(x: np.ndarray, system: System) -> dict:
    """Structure metrics of method.md §9.2 for a loop conformation x [n, 3], plus the bond
    integrity (``engine.systems.bond_integrity``, rest length ``BOND_REST_LENGTH``)."""
    from .systems import bond_integrity

    x = np.asarray(x, dtype=np.float64)
    bonds = np.asarray(system.bonds)
    loops = np.asarray(system.meta["loop_pairs"]).reshape(-1, 2)
    rb = np.linalg.norm(x[bonds[:, 0]] - x[bonds[:, 1]], axis=1)
    rl = np.linalg.norm(x[loops[:, 0]] - x[loops[:, 1]], axis=1) if len(loops) else np.zeros(0)
    from scipy.spatial import cKDTree

    collapsed = len(cKDTree(x).query_pairs(0.5))
    centered = x - x.mean(axis=0)
    return {
        "bond_ok_frac": float(np.mean((rb >= 0.9) & (rb <= 1.3))),
        "loop_contact_frac": float(np.mean(rl < 1.5)) if len(rl) else 0.0,
        "collapsed_pairs": int(collapsed),
        "radius_of_gyration": float(np.sqrt(np.mean(np.sum(centered**2, axis=1)))),
        **bond_integrity(x, bonds, BOND_REST_LENGTH),
    }
