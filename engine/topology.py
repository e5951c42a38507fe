"""mdtraj topologies and trajectories for built systems (pure: no file I/O).

Loops become one chain of single-bead residues ("BEA", atom "C") with their bonds. mdtraj
stores nm and PDB writes Angstrom, so loop coordinates (reduced units, r0 = 1) are divided
by 10 to appear unchanged in the file: one PDB Angstrom = one reduced length unit.
"""

from __future__ import annotations

import mdtraj as md
import numpy as np

from .types import System


def system_topology(system: System) -> md.Topology:
    """The system's mdtraj Topology (proteins carry one; loops get a bead chain)."""
    if system.topology is not None:
        return system.topology
    top = md.Topology()
    chain = top.add_chain()
    carbon = md.element.carbon
    atoms = []
    for i in range(system.n_atoms):
        residue = top.add_residue("BEA", chain, resSeq=i + 1)
        atoms.append(top.add_atom("C", carbon, residue))
    for i, j in np.asarray(system.bonds):
        top.add_bond(atoms[int(i)], atoms[int(j)])
    return top


def to_nm(system: System, x: np.ndarray) -> np.ndarray:
    """Positions in nm for mdtraj: proteins are already nm; loops map 1 unit -> 1 Angstrom."""
    x = np.asarray(x, dtype=np.float64)
    return x if system.length_unit == "nm" else x / 10.0


def trajectory(system: System, frames: np.ndarray) -> md.Trajectory:
    """frames [n_frames, n_atoms, 3] (system length unit) -> md.Trajectory."""
    frames = np.asarray(frames)
    if frames.ndim == 2:
        frames = frames[None]
    return md.Trajectory(to_nm(system, frames), system_topology(system))
