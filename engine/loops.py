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


def _pair_distances(x, pairs):
    d = x[pairs[:, 0]] - x[pairs[:, 1]]
    return safe_distance(jnp.sum(d * d, axis=-1))


def _sparse_term(term: PairTerm):
    pairs = jnp.asarray(term.pairs)
    weights = np.asarray(term.weights)

    def energy(x):
        # weights cast to x's dtype so a float32 run stays float32 under jax_enable_x64
        w = jnp.asarray(weights, dtype=x.dtype)
        return term.scale * jnp.sum(w * term.potential(_pair_distances(x, pairs)))

    return energy


def _excluded_mask(n: int, excluded: np.ndarray) -> np.ndarray:
    """[n, n] bool, True for pairs that take part in repulsion (i != j, not excluded)."""
    mask = ~np.eye(n, dtype=bool)
    mask[excluded[:, 0], excluded[:, 1]] = False
    mask[excluded[:, 1], excluded[:, 0]] = False
    return mask


def _all_pairs_repulsion(n, mask_np, potential, scale):
    """scale * sum_{i<j in mask} potential(r_ij), dense [n, n] (fine up to a few thousand)."""
    mask = jnp.asarray(np.triu(mask_np, 1))

    def energy(x):
        d = x[:, None, :] - x[None, :, :]
        d2 = jnp.sum(d * d, axis=-1)
        r = safe_distance(jnp.where(mask, d2, 1.0))  # where() keeps the diagonal out
        return scale * jnp.sum(jnp.where(mask, potential(r), 0.0))

    return energy


def _subset_repulsion(potential, scale):
    """scale * sum over the pair subset aux [m, 2] of potential(r)."""

    def energy(x, aux):
        return scale * jnp.sum(potential(_pair_distances(x, aux)))

    return energy


def _sample_pairs(mask_np: np.ndarray, m: int):
    """Host-side draw of m distinct unordered repulsion pairs; returns key -> [m, 2] int32."""
    n = mask_np.shape[0]
    iu, ju = np.triu_indices(n, 1)
    keep = mask_np[iu, ju]
    cand_i, cand_j = iu[keep].astype(np.int32), ju[keep].astype(np.int32)
    m = min(m, cand_i.size)

    def sample(key):
        seed = int(jax.random.randint(key, (), 0, 2**31 - 1))
        idx = np.random.default_rng(seed).choice(cand_i.size, size=m, replace=False)
        return jnp.asarray(np.stack([cand_i[idx], cand_j[idx]], axis=1))

    return sample, m


def _cutoff_repulsion(n, mask_np, potential, scale, cutoff):
    """Repulsion over pairs within a cutoff, shifted to 0 at the cutoff.

    aux is a padded neighbour list [capacity, 2] built on the host (scipy cKDTree) with a
    skin; padding rows are (0, 0) and masked out. Normalized like the all-pairs mean so
    that values are comparable.
    """
    from scipy.spatial import cKDTree

    skin = 0.5
    v_cut = float(potential(np.float64(cutoff)))

    def build(x, capacity=None):
        x = np.asarray(x, dtype=np.float64)
        pairs = cKDTree(x).query_pairs(cutoff + skin, output_type="ndarray").astype(np.int32)
        pairs = pairs[mask_np[pairs[:, 0], pairs[:, 1]]] if pairs.size else pairs.reshape(0, 2)
        cap = capacity or max(64, int(1.5 * len(pairs)))
        if len(pairs) > cap:
            cap = int(1.5 * len(pairs))
        out = np.zeros((cap, 2), np.int32)
        out[: len(pairs)] = pairs
        return jnp.asarray(out), len(pairs)

    def energy(x, aux):
        valid = aux[:, 0] != aux[:, 1]
        d = x[aux[:, 0]] - x[aux[:, 1]]
        # padding rows are (0, 0): keep sqrt'(0) out of the gradient
        r = safe_distance(
            jnp.where(valid, jnp.sum(d * d, axis=-1), jnp.asarray(cutoff, x.dtype) ** 2)
        )
        v = jnp.where(valid & (r < cutoff), potential(r) - v_cut, 0.0)
        return scale * jnp.sum(v)

    return build, energy


def make_loop_energy(system: System, cfg: EnergyConfig) -> EnergyModel:
    """Energy of a loop system built by ``build_loop_system``."""
    n = system.n_atoms
    kind = system.meta["system"]
    a = float(system.meta["loop_strength"])
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

    mask = _excluded_mask(n, np.concatenate([bonds, loops]))
    n_rep_pairs = int(np.triu(mask, 1).sum())
    full_rep_scale = cfg.repel_mag / n_rep_pairs
    all_pairs = _all_pairs_repulsion(n, mask, rep, full_rep_scale)
    iu = np.triu_indices(n, 1)
    rep_pairs = np.stack([iu[0][mask[iu]], iu[1][mask[iu]]], axis=1)
    rep_term = PairTerm(rep_pairs, np.ones(len(rep_pairs)), rep, full_rep_scale)
    sparse_fns = [_sparse_term(t) for t in terms]

    def bonded(x):
        return sum(f(x) for f in sparse_fns)

    def energy_fn(x):
        return bonded(x) + all_pairs(x)

    desc = f"{system.name}: {cfg.soft_core} soft core, {cfg.repulsion} repulsion"
    if cfg.repulsion == "all-pairs":
        return EnergyModel(
            energy_fn=energy_fn,
            train_energy_fn=lambda x, aux: energy_fn(x),
            aux_init=lambda key, x: jnp.zeros((0, 2), jnp.int32),
            aux_update=None,
            pair_terms=tuple(terms) + (rep_term,),
            description=desc,
        )
    if cfg.repulsion == "random-subset":
        m = cfg.n_repulsion_pairs or int(np.floor(n * np.log(n)))
        sample, m = _sample_pairs(mask, m)
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
            pair_terms=tuple(terms) + (rep_term,),
            description=desc + f" ({m} pairs, redrawn every {every} steps)",
        )
    build, cut_energy = _cutoff_repulsion(n, mask, rep, full_rep_scale, cfg.cutoff)
    skin_half = 0.25

    def aux_update_cut(key, x, step, last_step, aux):
        del key, step, last_step
        pairs, ref = aux
        if float(np.max(np.linalg.norm(np.asarray(x) - np.asarray(ref), axis=1))) > skin_half:
            return (build(x, capacity=pairs.shape[0])[0], jnp.asarray(x))
        return aux

    return EnergyModel(
        energy_fn=energy_fn,
        train_energy_fn=lambda x, aux: bonded(x) + cut_energy(x, aux[0]),
        aux_init=lambda key, x: (build(x)[0], jnp.asarray(x)),
        aux_update=aux_update_cut,
        pair_terms=tuple(terms) + (rep_term,),
        description=desc + f" (cutoff {cfg.cutoff})",
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
