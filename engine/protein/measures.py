"""Structure measures of protein positions: RMSD to the reference, radius of gyration, Q.

Contract: ``protein_metrics(x, system) -> dict[str, float]``, called at every logged step, so
index sets, the reference trajectory and the native-contact list are computed once per System
and kept in ``system.payload["_measures"]``. Lengths in nm.

- rmsd_ca, rmsd_backbone (N, CA, C), rmsd_heavy, rmsd_all: after optimal superposition
  (translation + rotation, mdtraj's QCP [1]) onto ``system.reference``; absent when the system
  has no reference (a peptide built from sequence).
- radius_of_gyration: unweighted, all atoms (mdtraj's ``compute_rg`` convention).
- fraction_native_contacts: Q of Best, Hummer & Eaton [2]: heavy-atom pairs of residues more
  than 3 apart that are closer than 0.45 nm in the reference (CA pairs within 0.8 nm for
  one-bead-per-residue systems), Q = mean 1 / (1 + exp(beta (r - lambda r0))), beta = 50 /nm,
  lambda = 1.8 (1.5 for CA beads).

[1] Theobald, Acta Cryst. A61, 478 (2005).  [2] Best, Hummer & Eaton, PNAS 110, 17874 (2013).
"""

from __future__ import annotations

import numpy as np

from ..types import System

Q_BETA = 50.0  # 1/nm
Q_LAMBDA_ATOM, Q_LAMBDA_CA = 1.8, 1.5
Q_CUTOFF_ATOM, Q_CUTOFF_CA = 0.45, 0.8  # nm
_BACKBONE = {"N", "CA", "C"}


def _setup(system: System) -> dict:
    """Index sets and reference data of a protein system, cached in its payload."""
    cache = system.payload.get("_measures") if isinstance(system.payload, dict) else None
    if cache is not None:
        return cache
    import mdtraj

    top = system.topology
    atoms = list(top.atoms)
    ca_only = all(a.name == "CA" for a in atoms)
    sets = {
        "ca": np.array([a.index for a in atoms if a.name == "CA"]),
        "backbone": np.array([a.index for a in atoms if a.name in _BACKBONE]),
        "heavy": np.array([a.index for a in atoms if a.element.symbol not in ("H", "D")]),
        "all": np.arange(len(atoms)),
    }
    cache = {"sets": sets, "topology": top, "reference": None}
    if system.reference is not None:
        ref = np.asarray(system.reference, dtype=np.float64)
        cache["reference"] = mdtraj.Trajectory(ref[None].astype(np.float32), top)
        cutoff, cache["q_lambda"] = (
            (Q_CUTOFF_CA, Q_LAMBDA_CA) if ca_only else (Q_CUTOFF_ATOM, Q_LAMBDA_ATOM)
        )
        heavy = sets["heavy"]
        res = np.array([atoms[i].residue.index for i in heavy])
        d = np.linalg.norm(ref[heavy][:, None] - ref[heavy][None], axis=-1)
        ii, jj = np.nonzero(np.triu((np.abs(res[:, None] - res[None]) > 3) & (d < cutoff), k=1))
        cache["contacts"] = (heavy[ii], heavy[jj])
        cache["contact_r0"] = d[ii, jj]
    if isinstance(system.payload, dict):
        system.payload["_measures"] = cache
    return cache


def rmsd(x: np.ndarray, reference: np.ndarray, topology, atom_indices=None) -> float:
    """RMSD (nm) between x and reference [n_atoms, 3] (nm) after optimal superposition (mdtraj)."""
    import mdtraj

    a = mdtraj.Trajectory(np.asarray(x, dtype=np.float32)[None], topology)
    b = mdtraj.Trajectory(np.asarray(reference, dtype=np.float32)[None], topology)
    return float(mdtraj.rmsd(a, b, 0, atom_indices=atom_indices, parallel=False)[0])


def protein_metrics(x, system: System) -> dict[str, float]:
    """RMSDs to the reference, radius of gyration and fraction of native contacts.

    Args:
      x: [n_atoms, 3] positions in nm (numpy or jax).
      system: the protein System (its reference and topology are used).

    Returns:
      dict of floats (nm for lengths; Q in [0, 1]); the RMSD and Q keys only when the system
      has a reference.
    """
    import mdtraj

    cache = _setup(system)
    x = np.asarray(x, dtype=np.float64)
    out = {"radius_of_gyration": float(np.sqrt(np.mean(np.sum((x - x.mean(0)) ** 2, axis=1))))}
    ref = cache["reference"]
    if ref is None:
        return out
    traj = mdtraj.Trajectory(x[None].astype(np.float32), cache["topology"])
    for name, idx in cache["sets"].items():
        if len(idx):
            # parallel=False: one frame gains nothing from OpenMP, and its spinning threads
            # slow every call ~500x when the cores are busy (JAX, OpenMM, other jobs)
            value = mdtraj.rmsd(traj, ref, 0, atom_indices=idx, parallel=False)[0]
            out[f"rmsd_{name}"] = float(value)
    i, j = cache["contacts"]
    if len(i):
        r = np.linalg.norm(x[i] - x[j], axis=1)
        z = np.clip(Q_BETA * (r - cache["q_lambda"] * cache["contact_r0"]), -50.0, 50.0)
        out["fraction_native_contacts"] = float(np.mean(1.0 / (1.0 + np.exp(z))))
    return out
