"""Dispatch from configuration to built systems, energies and structure metrics.

Each system kind registers a builder, an energy factory and a metrics function; the
optimizer code only ever sees ``System`` and ``EnergyModel`` (engine/types.py), so new kinds
plug in here without touching it.
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


def structure_metrics(x: np.ndarray, system: System) -> dict:
    """Per-kind structure metrics of positions x [n_atoms, 3] (RMSD etc. for proteins)."""
    return _load(_METRICS[system.kind])(x, system)
