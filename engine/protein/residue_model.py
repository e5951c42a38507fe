"""Residue-level protein model: one bead per residue at its CA (method.md §9.3; not the paper's).

Contract: ``residue_parameters(sequence, chain_ids) -> dict`` of numpy arrays (built once, at
system build time), ``make_residue_fns(params) -> (energy_fn, terms_fn)`` with
``energy_fn(x [n_res, 3] nm) -> scalar kJ/mol``, and ``residue_matrices(params, x)`` for
heatmaps. The exact definition, units and parameter sources are in docs/residue-model.md; the
constants below are the single place they are set.

E = sum_bonds k_b/2 (r - b0)^2                                  (CA-CA virtual bonds)
  + sum_angles k_a/2 (theta - theta0)^2                         (CA-CA-CA virtual angles)
  + sum_{pairs} 4 eps_vdw [(s_ij/r)^12 - (s_ij/r)^6]            (VdW matrix)
  - sum_{pairs} H_ij exp(-(r - r_hb)^2 / (2 w_hb^2))            (hydrogen-bond matrix)
  - sum_{pairs} P_ij exp(-(r - r_hp)^2 / (2 w_hp^2))            (hydrophobic matrix)
where "pairs" are residues at least ``MIN_SEPARATION`` apart along one chain, or on different
chains, each pair once.
"""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np

# Geometry and strengths (nm, kJ/mol, rad); sources in docs/residue-model.md.
BOND_LENGTH = 0.38  # CA-CA distance of a trans peptide
BOND_K = 2.0e4  # kJ/mol/nm^2: thermal fluctuation sqrt(kT/k) ~ 0.011 nm at 298 K
ANGLE_THETA0 = np.deg2rad(105.0)  # between helix (~91°) and strand (~120°) CA-CA-CA angles
ANGLE_K = 20.0  # kJ/mol/rad^2: soft, both secondary structures stay accessible
MIN_SEPARATION = 3  # |i - j| >= 3 along a chain for the three pair matrices
VDW_EPSILON = 1.0  # kJ/mol, uniform well depth
VDW_SIGMA_SCALE = 0.8  # s_ij = 0.8 (R_i + R_j), R the radius of the residue's volume
HBOND_EPSILON = 4.0  # kJ/mol per donor/acceptor-capable pair
HBOND_R, HBOND_WIDTH = 0.55, 0.08  # nm: CA-CA distance of backbone-H-bonded residues
HYDROPHOBIC_EPSILON = 5.0  # kJ/mol for the most hydrophobic pair (Ile-Ile)
HYDROPHOBIC_R, HYDROPHOBIC_WIDTH = 0.65, 0.15  # nm: CA-CA distance of side-chain contacts

# Residue volumes in Å^3 (Zamyatnin 1972) and Kyte-Doolittle hydropathy (1982).
VOLUME = {
    "G": 60.1, "A": 88.6, "S": 89.0, "C": 108.5, "D": 111.1, "P": 112.7, "N": 114.1,
    "T": 116.1, "E": 138.4, "V": 140.0, "Q": 143.8, "H": 153.2, "M": 162.9, "I": 166.7,
    "L": 166.7, "K": 168.6, "R": 173.4, "F": 189.9, "Y": 193.6, "W": 227.8,
}  # fmt: skip
KYTE_DOOLITTLE = {
    "I": 4.5, "V": 4.2, "L": 3.8, "F": 2.8, "C": 2.5, "M": 1.9, "A": 1.8, "G": -0.4,
    "T": -0.7, "S": -0.8, "W": -0.9, "Y": -1.3, "P": -1.6, "H": -3.2, "E": -3.5, "Q": -3.5,
    "D": -3.5, "N": -3.5, "K": -3.9, "R": -4.5,
}  # fmt: skip


def residue_parameters(sequence: str, chain_ids: np.ndarray) -> dict:
    """Parameters of the residue model for a sequence.

    Args:
      sequence: one-letter codes, one per bead (all chains concatenated).
      chain_ids: [n_res] int chain index of each bead.

    Returns:
      dict with bonds [n_b, 2], angles [n_a, 3] (int), pair_mask [n, n] bool (upper triangle,
      pairs that feel the three matrices), sigma [n, n] nm, hbond [n, n] kJ/mol (H_ij),
      hydrophobic [n, n] kJ/mol (P_ij), radius [n] nm, hydropathy [n], sequence.
    """
    n = len(sequence)
    chain_ids = np.asarray(chain_ids)
    if chain_ids.shape != (n,):
        raise ValueError(f"chain_ids must have shape ({n},); got {chain_ids.shape}")
    i = np.arange(n)
    same = chain_ids[:, None] == chain_ids[None, :]
    bonds = np.stack([i[:-1], i[1:]], axis=1)[chain_ids[:-1] == chain_ids[1:]]
    angles = np.stack([i[:-2], i[1:-1], i[2:]], axis=1)[
        (chain_ids[:-2] == chain_ids[1:-1]) & (chain_ids[1:-1] == chain_ids[2:])
    ]
    sep = np.abs(i[:, None] - i[None, :])
    pair_mask = np.triu((~same) | (sep >= MIN_SEPARATION), k=1)
    radius = np.array([(3.0 * VOLUME[c] / (4.0 * np.pi)) ** (1.0 / 3.0) / 10.0 for c in sequence])
    hydropathy = np.array([KYTE_DOOLITTLE[c] for c in sequence])
    h01 = (hydropathy + 4.5) / 9.0  # Kyte-Doolittle rescaled to [0, 1]
    donor = np.array([c != "P" for c in sequence], dtype=np.float64)  # proline has no amide H
    sym = pair_mask | pair_mask.T
    return {
        "sequence": sequence,
        "bonds": bonds,
        "angles": angles,
        "pair_mask": pair_mask,
        "sigma": VDW_SIGMA_SCALE * (radius[:, None] + radius[None, :]),
        "hbond": np.where(sym, HBOND_EPSILON * 0.5 * (donor[:, None] + donor[None, :]), 0.0),
        "hydrophobic": np.where(sym, HYDROPHOBIC_EPSILON * h01[:, None] * h01[None, :], 0.0),
        "radius": radius,
        "hydropathy": hydropathy,
    }


def _pair_energies(x, params):
    """Per-pair VdW, H-bond and hydrophobic energies [n, n] (kJ/mol), zero off the pair mask."""
    mask = jnp.asarray(params["pair_mask"])
    d = x[:, None, :] - x[None, :, :]
    r = jnp.sqrt(jnp.where(mask, jnp.sum(d * d, axis=-1), 1.0))  # safe where masked
    dt = x.dtype
    s6 = (jnp.asarray(params["sigma"], dt) / r) ** 6
    vdw = 4.0 * VDW_EPSILON * s6 * (s6 - 1.0)
    hb = -jnp.asarray(params["hbond"], dt) * jnp.exp(-((r - HBOND_R) ** 2) / (2 * HBOND_WIDTH**2))
    hp = -jnp.asarray(params["hydrophobic"], dt) * jnp.exp(
        -((r - HYDROPHOBIC_R) ** 2) / (2 * HYDROPHOBIC_WIDTH**2)
    )
    zero = jnp.zeros((), dt)
    return tuple(jnp.where(mask, e, zero) for e in (vdw, hb, hp))


def make_residue_fns(params: dict):
    """(energy_fn, terms_fn) of the residue model; x [n_res, 3] nm -> kJ/mol, in x.dtype."""
    bonds = np.asarray(params["bonds"], dtype=np.int64).reshape(-1, 2)
    angles = np.asarray(params["angles"], dtype=np.int64).reshape(-1, 3)

    def terms_fn(x):
        b = x[bonds[:, 1]] - x[bonds[:, 0]]
        r = jnp.sqrt(jnp.sum(b * b, axis=-1))
        u = x[angles[:, 0]] - x[angles[:, 1]]
        v = x[angles[:, 2]] - x[angles[:, 1]]
        cos = jnp.sum(u * v, -1) / jnp.sqrt(jnp.sum(u * u, -1) * jnp.sum(v * v, -1))
        lim = 1.0 - 10.0 * jnp.finfo(x.dtype).eps
        theta = jnp.arccos(jnp.clip(cos, -lim, lim))
        vdw, hb, hp = _pair_energies(x, params)
        return {
            "bond": 0.5 * BOND_K * jnp.sum((r - BOND_LENGTH) ** 2),
            "angle": 0.5 * ANGLE_K * jnp.sum((theta - ANGLE_THETA0) ** 2),
            "vdw": jnp.sum(vdw),
            "hbond": jnp.sum(hb),
            "hydrophobic": jnp.sum(hp),
        }

    def energy_fn(x):
        return sum(terms_fn(x).values())

    return energy_fn, terms_fn


def residue_matrices(params: dict, x: np.ndarray) -> dict[str, np.ndarray]:
    """Interaction matrices [n_res, n_res] for heatmaps, symmetric.

    Args:
      params: from ``residue_parameters``.
      x: [n_res, 3] nm positions at which to evaluate the pair energies.

    Returns:
      "vdw", "hbond", "hydrophobic": pair energies at x (kJ/mol; negative = attractive);
      "vdw_sigma" (nm), "hbond_strength" and "hydrophobic_strength" (kJ/mol, well depths):
      the parameter matrices; zero for pairs closer than MIN_SEPARATION along a chain.
    """
    vdw, hb, hp = (np.asarray(e) for e in _pair_energies(jnp.asarray(x, jnp.float64), params))
    sym = params["pair_mask"] | params["pair_mask"].T
    return {
        "vdw": vdw + vdw.T,
        "hbond": hb + hb.T,
        "hydrophobic": hp + hp.T,
        "vdw_sigma": np.where(sym, params["sigma"], 0.0),
        "hbond_strength": params["hbond"],
        "hydrophobic_strength": params["hydrophobic"],
    }
