"""Dispatch from configuration to built systems, energies and structure metrics.

Each system kind registers a builder, an energy factory and a metrics function; the
optimizer code only ever sees ``System`` and ``EnergyModel`` (engine/types.py), so new kinds
plug in here without touching it.

Every kind's metrics carry the bond integrity (``bond_integrity``): ``bonds_intact_frac``, the
fraction of bonds no longer than ``STRETCH_FACTOR`` times their rest length, and
``bonds_stretched``, how many are longer. A kind's own metrics function may compute them
(loops do); otherwise ``structure_metrics`` adds them, with the rest lengths read off the
reference structure (else x0).
"""

from __future__ import annotations

import importlib

import numpy as np

from .config import LOOP_SYSTEMS, EnergyConfig, SystemConfig
from .types import EnergyModel, System

# system kind (System.kind) -> "module:function" for energies and metrics; loaded lazily so
# that loop-only users never import OpenMM.
_ENERGY = {
    "loop": "engine.loops:make_loop_energy",
    "protein": "engine.protein.energy:make_protein_energy",
}
_METRICS = {
    "loop": "engine.loops:loop_structure_metrics",
    "protein": "engine.protein.measures:protein_metrics",
}


def _load(path: str):
    module, name = path.split(":")
    return getattr(importlib.import_module(module), name)


def build_system(cfg: SystemConfig, seed: int = 0) -> System:
    """Build the system described by ``cfg``; random starts are seeded by ``seed``."""
    if cfg.kind in LOOP_SYSTEMS:
        from .loops import build_loop_system

        return build_loop_system(cfg, seed)
    return _load("engine.protein.build:build_protein_system")(cfg, seed)


def make_energy(system: System, cfg: EnergyConfig) -> EnergyModel:
    """The energy model of a built system."""
    return _load(_ENERGY[system.kind])(system, cfg)


STRETCH_FACTOR = 2.0  # a bond longer than this many times its rest length is "stretched"


def bond_integrity(x, bonds, rest) -> dict:
    """Intact and stretched bonds of positions x [n_atoms, 3].

    Args:
      bonds: [n_bonds, 2] atom indices. rest: rest length of each bond, [n_bonds] or a scalar
        (same unit as x).

    Returns:
      {"bonds_intact_frac": fraction of bonds with length <= STRETCH_FACTOR * rest (1.0 when
      there are no bonds), "bonds_stretched": the number of the others}.
    """
    x = np.asarray(x, dtype=np.float64)
    bonds = np.asarray(bonds, dtype=np.int64).reshape(-1, 2)
    if not len(bonds):
        return {"bonds_intact_frac": 1.0, "bonds_stretched": 0}
    r = np.linalg.norm(x[bonds[:, 0]] - x[bonds[:, 1]], axis=1)
    stretched = int(np.sum(~(r <= STRETCH_FACTOR * np.asarray(rest, dtype=np.float64))))
    return {"bonds_intact_frac": 1.0 - stretched / len(bonds), "bonds_stretched": stretched}


def structure_metrics(x: np.ndarray, system: System) -> dict:
    """Per-kind structure metrics of positions x [n_atoms, 3] (RMSD etc. for proteins), with
    the bond integrity (``bond_integrity``) for every kind."""
    out = _load(_METRICS[system.kind])(x, system)
    if "bonds_intact_frac" not in out:
        ref = system.reference if system.reference is not None else system.x0
        bonds = np.asarray(system.bonds, dtype=np.int64).reshape(-1, 2)
        rest = np.linalg.norm(ref[bonds[:, 0]] - ref[bonds[:, 1]], axis=1) if len(bonds) else 1.0
        out.update(bond_integrity(x, bonds, rest))
    return out
