"""All-atom AMBER ff14SB + OBC2 implicit solvent in JAX, parameters read from an OpenMM System.

Contract: ``amber_parameters(openmm_system) -> AmberParameters`` (numpy, nm / kJ/mol / rad /
elementary charges), then ``make_amber_fns(params) -> (energy_fn, terms_fn)``:
``energy_fn(x [n_atoms, 3] nm) -> scalar kJ/mol`` and ``terms_fn(x) -> dict[str, scalar]``.
Both are pure and jit-able and compute in ``x.dtype`` (float32 or float64).

The energy is exactly what OpenMM computes for the same System (NoCutoff), term by term:

- HarmonicBondForce: sum 1/2 k (r - r0)^2.
- HarmonicAngleForce: sum 1/2 k (theta - theta0)^2, theta = arccos of the clamped cosine.
- PeriodicTorsionForce (proper and improper): sum k (1 + cos(n phi - phase)), phi the signed
  IUPAC dihedral atan2(|b2| b1.(b2 x b3), (b1 x b2).(b2 x b3)).
- NonbondedForce: each pair once, Lorentz-Berthelot LJ 4 eps ((s/r)^12 - (s/r)^6) plus
  Coulomb K q_i q_j / r with K = 138.935457644382 kJ mol^-1 nm e^-2 (OpenMM's ONE_4PI_EPS0,
  about 138.935458); every exception pair (1-2, 1-3 excluded; 1-4 scaled by the force field:
  LJ x 1/2, Coulomb x 1/1.2) is removed from that sum and added with the exception's own
  chargeProd, sigma and epsilon.
- CustomGBForce of ``implicit/obc2.xml`` (OpenMM's GBSAOBC2Force, Amber igb=5 [1]): Born
  radii from the OBC2 descreening integral, the GB polar energy (self terms plus every pair
  once, no exclusions, constant 138.935485 as in OpenMM's expression) and the ACE
  surface-area term [2]. The expressions are checked against the ones implemented here, so a
  different GB model fails loudly instead of silently giving other energies.

Forces are found by type (isinstance), never by index. All pair sums run over row blocks of the
[n, n] distance matrix (``jax.checkpoint`` inside ``lax.map`` for large systems), so memory
stays bounded near the 5000-heavy-atom cap (sizes: ``_row_blocks``).

[1] Onufriev, Bashford & Case, Proteins 55, 383 (2004).
[2] Schaefer, Bartels & Karplus, J. Mol. Biol. 284, 835 (1998).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

COULOMB = 138.935457644382  # kJ mol^-1 nm e^-2, OpenMM's ONE_4PI_EPS0 (NonbondedForce)
GB_COULOMB = 138.935485  # the constant written in OpenMM's GB energy expressions
# Pair sums: one [n, n] block up to n = 512; above, blocks of ~2^14 pair elements (>= 16
# rows) under lax.map + checkpoint. Measured on 2 cores: 2JOF (284 atoms) 4 ms single block vs
# 10 ms blocked; 2WXC (711 atoms) 52 ms blocked vs 115 ms single (cache misses on [n, n, 3]).
_SINGLE_BLOCK_PAIRS = 2**18
_BLOCK_ELEMENTS = 2**14

# OpenMM's GBSAOBC2Force expressions (openmm/app/internal/customgbforces.py), parameters removed
_OBC2_I = ("select(step(r+sr2-or1), 0.5*(1/L-1/U+0.25*(r-sr2^2/r)*(1/(U^2)-1/(L^2))"
           "+0.5*log(L/U)/r), 0);U=r+sr2;L=max(or1, D);D=abs(r-sr2)")  # fmt: skip
_OBC2_B = "1/(1/or-tanh(psi-0.8*psi^2+4.85*psi^3)/radius);psi=I*or; radius=or+offset; offset=0.009"
_OBC2_TERMS = {
    "self": {
        "-0.5*138.935485*(1/soluteDielectric-1/solventDielectric)*charge^2/B",
        "-0.5*138.935485*(1/soluteDielectric-exp(-kappa*B)/solventDielectric)*charge^2/B",
    },
    "sa": {"28.3919551*(radius+0.14)^2*(radius/B)^6; radius=or+offset"},
    "pair": {
        "-138.935485*(1/soluteDielectric-1/solventDielectric)*charge1*charge2/f;"
        "f=sqrt(r^2+B1*B2*exp(-r^2/(4*B1*B2)))",
        "-138.935485*(1/soluteDielectric-exp(-kappa*f)/solventDielectric)*charge1*charge2/f;"
        "f=sqrt(r^2+B1*B2*exp(-r^2/(4*B1*B2)))",
    },
}
_GB_PARAMS = re.compile(
    r";\s*(solventDielectric|soluteDielectric|kappa|offset|cutoff)=([-+0-9.eE]+)"
)


class AmberParameters(NamedTuple):
    """Force-field parameters of one System, as numpy arrays (OpenMM units).

    Fields:
      n_atoms: number of particles.
      bond_idx [n_bonds, 2] int; bond_r0 [n_bonds] nm; bond_k [n_bonds] kJ/mol/nm^2.
      angle_idx [n_angles, 3] int (center in the middle); angle_theta0 rad; angle_k kJ/mol/rad^2.
      torsion_idx [n_torsions, 4] int; torsion_n [n_torsions] periodicity; torsion_phase rad;
        torsion_k kJ/mol.
      charge [n] e; sigma [n] nm; epsilon [n] kJ/mol (per-particle LJ/Coulomb).
      excluded [n, n] bool: pairs that are NonbondedForce exceptions (left out of the plain sum).
      exc_idx [n_exc, 2] int; exc_qq e^2; exc_sigma nm; exc_eps kJ/mol: exceptions with a
        nonzero interaction (the scaled 1-4 pairs).
      gb: None or dict with charge [n] e, offset_radius [n] nm, scaled_radius [n] nm, and
        floats solute_dielectric, solvent_dielectric, kappa (1/nm), offset (nm).
    """

    n_atoms: int
    bond_idx: np.ndarray
    bond_r0: np.ndarray
    bond_k: np.ndarray
    angle_idx: np.ndarray
    angle_theta0: np.ndarray
    angle_k: np.ndarray
    torsion_idx: np.ndarray
    torsion_n: np.ndarray
    torsion_phase: np.ndarray
    torsion_k: np.ndarray
    charge: np.ndarray
    sigma: np.ndarray
    epsilon: np.ndarray
    excluded: np.ndarray
    exc_idx: np.ndarray
    exc_qq: np.ndarray
    exc_sigma: np.ndarray
    exc_eps: np.ndarray
    gb: dict | None


def _strip_gb_params(expression: str) -> tuple[str, dict]:
    values = {m.group(1): float(m.group(2)) for m in _GB_PARAMS.finditer(expression)}
    return _GB_PARAMS.sub("", expression).strip(), values


def _read_obc2(force) -> dict:
    """Per-particle and global parameters of an OBC2 CustomGBForce; ValueError if it is not OBC2."""
    import openmm

    if force.getNonbondedMethod() != openmm.CustomGBForce.NoCutoff:
        raise ValueError("the CustomGBForce must use NoCutoff (all pairs)")
    names = [
        force.getPerParticleParameterName(i) for i in range(force.getNumPerParticleParameters())
    ]
    values = [
        tuple(force.getComputedValueParameters(i)[:2]) for i in range(force.getNumComputedValues())
    ]
    if (
        names != ["charge", "or", "sr"]
        or values != [("I", _OBC2_I), ("B", _OBC2_B)]
        or force.getNumExclusions()
        or force.getNumTabulatedFunctions()
    ):
        raise ValueError(
            "the System's CustomGBForce is not OpenMM's GBSAOBC2Force (implicit/obc2.xml); "
            "only OBC2 is implemented in JAX"
        )
    found, glob = set(), {}
    for t in range(force.getNumEnergyTerms()):
        expr, _ = force.getEnergyTermParameters(t)
        body, params = _strip_gb_params(expr)
        kind = next((k for k, forms in _OBC2_TERMS.items() if body in forms), None)
        if kind is None or kind in found:
            raise ValueError(f"unexpected GB energy term {expr!r}: not OBC2 as implemented")
        found.add(kind)
        glob.update(params)
    if found != {"self", "sa", "pair"}:
        raise ValueError(f"OBC2 force lacks energy terms {sorted({'self', 'sa', 'pair'} - found)}")
    p = np.array(
        [force.getParticleParameters(i) for i in range(force.getNumParticles())], dtype=np.float64
    )
    return {
        "charge": p[:, 0],
        "offset_radius": p[:, 1],
        "scaled_radius": p[:, 2],
        "solute_dielectric": glob.get("soluteDielectric", 1.0),
        "solvent_dielectric": glob.get("solventDielectric", 78.5),
        "kappa": glob.get("kappa", 0.0),
        "offset": glob.get("offset", 0.009),
    }


def amber_parameters(system) -> AmberParameters:
    """Read every force of an OpenMM System by type.

    Args:
      system: openmm.System with HarmonicBondForce, HarmonicAngleForce, PeriodicTorsionForce,
        one NonbondedForce (NoCutoff) and optionally the OBC2 CustomGBForce; CMMotionRemover is
        ignored (no energy).

    Returns:
      AmberParameters.

    Raises:
      ValueError: a force of another type, a cutoff/periodic method, or parameter offsets.
    """
    import openmm

    n = system.getNumParticles()
    bonds, angles, torsions, nonbonded, gb = [], [], [], [], None
    for force in system.getForces():
        if isinstance(force, openmm.HarmonicBondForce):
            bonds += [force.getBondParameters(i) for i in range(force.getNumBonds())]
        elif isinstance(force, openmm.HarmonicAngleForce):
            angles += [force.getAngleParameters(i) for i in range(force.getNumAngles())]
        elif isinstance(force, openmm.PeriodicTorsionForce):
            torsions += [force.getTorsionParameters(i) for i in range(force.getNumTorsions())]
        elif isinstance(force, openmm.NonbondedForce):
            nonbonded.append(force)
        elif isinstance(force, openmm.CustomGBForce):
            if gb is not None:
                raise ValueError("the System has more than one CustomGBForce")
            gb = _read_obc2(force)
        elif isinstance(force, openmm.CMMotionRemover):
            continue
        else:
            raise ValueError(
                f"force {type(force).__name__} ({force.getName()}) is not implemented in JAX"
            )
    if len(nonbonded) != 1:
        raise ValueError(f"expected one NonbondedForce, found {len(nonbonded)}")
    nb = nonbonded[0]
    if nb.getNonbondedMethod() != openmm.NonbondedForce.NoCutoff:
        raise ValueError("the NonbondedForce must use NoCutoff (all pairs), as for small proteins")
    if nb.getNumParticleParameterOffsets() or nb.getNumExceptionParameterOffsets():
        raise ValueError("NonbondedForce parameter offsets are not supported")

    def plain(v):  # strip OpenMM units (already in nm, kJ/mol, rad, e)
        return v._value if hasattr(v, "_value") else v

    bond_arr = np.array([[plain(v) for v in b] for b in bonds], dtype=np.float64).reshape(-1, 4)
    angle_arr = np.array([[plain(v) for v in a] for a in angles], dtype=np.float64).reshape(-1, 5)
    tors_arr = np.array([[plain(v) for v in t] for t in torsions], dtype=np.float64).reshape(-1, 7)
    part = np.array(
        [[plain(v) for v in nb.getParticleParameters(i)] for i in range(n)], dtype=np.float64
    )
    n_exc = nb.getNumExceptions()
    exc = np.array([[plain(v) for v in nb.getExceptionParameters(i)] for i in range(n_exc)],
                   dtype=np.float64).reshape(-1, 5)  # fmt: skip
    excluded = np.zeros((n, n), dtype=bool)
    ei, ej = exc[:, 0].astype(np.int64), exc[:, 1].astype(np.int64)
    excluded[ei, ej] = excluded[ej, ei] = True
    live = (exc[:, 2] != 0.0) | (exc[:, 4] != 0.0)
    return AmberParameters(
        n_atoms=n,
        bond_idx=bond_arr[:, :2].astype(np.int64),
        bond_r0=bond_arr[:, 2],
        bond_k=bond_arr[:, 3],
        angle_idx=angle_arr[:, :3].astype(np.int64),
        angle_theta0=angle_arr[:, 3],
        angle_k=angle_arr[:, 4],
        torsion_idx=tors_arr[:, :4].astype(np.int64),
        torsion_n=tors_arr[:, 4],
        torsion_phase=tors_arr[:, 5],
        torsion_k=tors_arr[:, 6],
        charge=part[:, 0],
        sigma=part[:, 1],
        epsilon=part[:, 2],
        excluded=excluded,
        exc_idx=exc[live, :2].astype(np.int64),
        exc_qq=exc[live, 2],
        exc_sigma=exc[live, 3],
        exc_eps=exc[live, 4],
        gb=gb,
    )


# ---- bonded terms ------------------------------------------------------------------------


def _norm(v):
    return jnp.sqrt(jnp.sum(v * v, axis=-1))


def bond_energy(x, idx, r0, k):
    """sum 1/2 k (r - r0)^2 over bonds; x [n, 3] nm, idx [m, 2], r0 [m] nm, k [m] kJ/mol/nm^2."""
    r = _norm(x[idx[:, 0]] - x[idx[:, 1]])
    return 0.5 * jnp.sum(k * (r - r0) ** 2)


def angle_energy(x, idx, theta0, k):
    """sum 1/2 k (theta - theta0)^2; idx [m, 3] with the vertex in the middle; rad, kJ/mol/rad^2.

    NOTE: the cosine is clamped to [-1 + eps, 1 - eps] (eps ~ 10 x machine epsilon) so the
    arccos gradient stays finite for straight angles; it changes theta by < 1e-7 rad in float64.
    """
    u = x[idx[:, 0]] - x[idx[:, 1]]
    v = x[idx[:, 2]] - x[idx[:, 1]]
    cos = jnp.sum(u * v, axis=-1) / (_norm(u) * _norm(v))
    lim = 1.0 - 10.0 * jnp.finfo(x.dtype).eps
    theta = jnp.arccos(jnp.clip(cos, -lim, lim))
    return 0.5 * jnp.sum(k * (theta - theta0) ** 2)


def dihedral(x, idx):
    """Signed dihedral angles [m] in (-pi, pi] of atoms idx [m, 4], IUPAC convention."""
    b1 = x[idx[:, 1]] - x[idx[:, 0]]
    b2 = x[idx[:, 2]] - x[idx[:, 1]]
    b3 = x[idx[:, 3]] - x[idx[:, 2]]
    n1 = jnp.cross(b1, b2)
    n2 = jnp.cross(b2, b3)
    y = _norm(b2) * jnp.sum(b1 * n2, axis=-1)
    return jnp.arctan2(y, jnp.sum(n1 * n2, axis=-1))


def torsion_energy(x, idx, periodicity, phase, k):
    """sum k (1 + cos(n phi - phase)) over proper and improper torsions (kJ/mol)."""
    phi = dihedral(x, idx)
    return jnp.sum(k * (1.0 + jnp.cos(periodicity * phi - phase)))


def lj_coulomb_pairs(r, qq, sigma, eps):
    """LJ + Coulomb energy of explicit pairs: r, qq (e^2), sigma (nm), eps (kJ/mol), all [m]."""
    s6 = (sigma / r) ** 6
    # s6 (s6 - 1) rather than s6^2 - s6: +inf, not inf - inf = NaN, for overlapping atoms
    return 4.0 * eps * s6 * (s6 - 1.0), COULOMB * qq / r


# ---- all-pairs terms in row blocks -------------------------------------------------------


def _row_blocks(n: int, block: int | None = None) -> np.ndarray:
    """[n_blocks, rows] atom indices, padded with n (an invalid index) in the last block."""
    if block is None:
        block = n if n * n <= _SINGLE_BLOCK_PAIRS else max(16, _BLOCK_ELEMENTS // max(n, 1))
    rows = max(1, min(n, block))
    n_blocks = -(-n // rows)
    idx = np.full(n_blocks * rows, n, dtype=np.int64)
    idx[:n] = np.arange(n)
    return idx.reshape(n_blocks, rows)


def _map_blocks(fn, blocks, *args):
    """Sum of fn(rows, *args) over row blocks; a single block skips lax.map and checkpointing."""
    if blocks.shape[0] == 1:
        return fn(jnp.asarray(blocks[0]), *args)
    out = jax.lax.map(lambda rows: jax.checkpoint(fn)(rows, *args), jnp.asarray(blocks))
    return jax.tree_util.tree_map(lambda a: jnp.sum(a, axis=0), out)


def _block_geometry(x, rows):
    """Distances [rows, n] from the block's atoms to every atom, safe where undefined.

    Returns (r, other): ``other`` is True for pairs of a real row atom with a different atom;
    r is 1 elsewhere, so that 1/r and its gradient stay finite under the mask (double where).
    """
    n = x.shape[0]
    valid = rows < n
    ri = jnp.minimum(rows, n - 1)
    d = x[ri][:, None, :] - x[None, :, :]
    r2 = jnp.sum(d * d, axis=-1)
    other = valid[:, None] & (ri[:, None] != jnp.arange(n)[None, :])
    r = jnp.sqrt(jnp.where(other, r2, 1.0))
    return r, other, ri


def make_amber_fns(params: AmberParameters) -> tuple[Callable, Callable]:
    """Energy and per-term functions of an AMBER(+OBC2) System.

    Args:
      params: from ``amber_parameters``.

    Returns:
      (energy_fn, terms_fn): ``energy_fn(x [n, 3] nm) -> scalar kJ/mol``; ``terms_fn(x) ->
      dict`` with bond, angle, torsion, lj, coulomb and (with GB) gb_polar, gb_surface.
      Both compute in ``x.dtype``.
    """
    n = params.n_atoms
    blocks = _row_blocks(n)
    excluded = jnp.asarray(params.excluded)
    gb = params.gb

    def cast(a, dtype):
        return jnp.asarray(a, dtype=dtype)

    def nonbonded_block(rows, x, q, sig, eps):
        r, other, ri = _block_geometry(x, rows)
        upper = other & (jnp.arange(n)[None, :] > ri[:, None]) & ~excluded[ri]
        s = 0.5 * (sig[ri][:, None] + sig[None, :])
        e = jnp.sqrt(eps[ri][:, None] * eps[None, :])
        s6 = (s / r) ** 6
        lj = jnp.where(upper, 4.0 * e * s6 * (s6 - 1.0), 0.0)
        coul = jnp.where(upper, q[ri][:, None] * q[None, :] / r, 0.0)
        return jnp.sum(lj), COULOMB * jnp.sum(coul)

    def born_block(rows, x, orad, srad):
        # OBC2 descreening integral I_i = sum_{j != i} f(r_ij, or_i, sr_j) (OpenMM's "I")
        r, other, ri = _block_geometry(x, rows)
        or1 = orad[ri][:, None]
        sr2 = srad[None, :]
        upper_ = r + sr2
        lower = jnp.maximum(or1, jnp.abs(r - sr2))
        inv_sq = 1.0 / upper_**2 - 1.0 / lower**2
        val = 0.5 * (1.0 / lower - 1.0 / upper_ + 0.25 * (r - sr2**2 / r) * inv_sq
                     + 0.5 * jnp.log(lower / upper_) / r)  # fmt: skip
        val = jnp.where(other & (r + sr2 - or1 >= 0.0), val, 0.0)
        return jnp.zeros(n, x.dtype).at[ri].add(jnp.sum(val, axis=1) * (rows < n))

    def gb_pair_block(rows, x, q, born, kappa):
        r, other, ri = _block_geometry(x, rows)
        upper = other & (jnp.arange(n)[None, :] > ri[:, None])
        bb = born[ri][:, None] * born[None, :]
        f = jnp.sqrt(r * r + bb * jnp.exp(-r * r / (4.0 * bb)))
        screen = 1.0 / gb["solute_dielectric"] - jnp.exp(-kappa * f) / gb["solvent_dielectric"]
        term = jnp.where(upper, screen * q[ri][:, None] * q[None, :] / f, 0.0)
        return -GB_COULOMB * jnp.sum(term)

    def terms_fn(x):
        dt = x.dtype
        t = {
            "bond": bond_energy(
                x, params.bond_idx, cast(params.bond_r0, dt), cast(params.bond_k, dt)
            ),
            "angle": angle_energy(
                x, params.angle_idx, cast(params.angle_theta0, dt), cast(params.angle_k, dt)
            ),
            "torsion": torsion_energy(
                x,
                params.torsion_idx,
                cast(params.torsion_n, dt),
                cast(params.torsion_phase, dt),
                cast(params.torsion_k, dt),
            ),  # fmt: skip
        }
        lj, coul = _map_blocks(nonbonded_block, blocks, x, cast(params.charge, dt),
                               cast(params.sigma, dt), cast(params.epsilon, dt))  # fmt: skip
        ei = params.exc_idx
        r = _norm(x[ei[:, 0]] - x[ei[:, 1]])
        e_lj, e_coul = lj_coulomb_pairs(r, cast(params.exc_qq, dt), cast(params.exc_sigma, dt),
                                        cast(params.exc_eps, dt))  # fmt: skip
        t["lj"] = lj + jnp.sum(e_lj)
        t["coulomb"] = coul + jnp.sum(e_coul)
        if gb is not None:
            orad, srad = cast(gb["offset_radius"], dt), cast(gb["scaled_radius"], dt)
            q = cast(gb["charge"], dt)
            integral = _map_blocks(born_block, blocks, x, orad, srad)
            radius = orad + gb["offset"]
            psi = integral * orad
            born = 1.0 / (1.0 / orad - jnp.tanh(psi - 0.8 * psi**2 + 4.85 * psi**3) / radius)
            kappa = gb["kappa"]
            self_screen = (
                1.0 / gb["solute_dielectric"] - jnp.exp(-kappa * born) / gb["solvent_dielectric"]
            )
            polar_self = -0.5 * GB_COULOMB * jnp.sum(self_screen * q * q / born)
            polar_pair = _map_blocks(gb_pair_block, blocks, x, q, born, kappa)
            t["gb_polar"] = polar_self + polar_pair
            t["gb_surface"] = 28.3919551 * jnp.sum((radius + 0.14) ** 2 * (radius / born) ** 6)
        return t

    def energy_fn(x):
        return sum(terms_fn(x).values())

    return energy_fn, terms_fn
