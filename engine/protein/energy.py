"""Energy models of protein systems: ``make_protein_energy(system, cfg) -> EnergyModel``.

The model is the one the system was built for (``system.payload["model"]``, from
``SystemConfig.model``):

- "amber-obc2": all-atom AMBER ff14SB + OBC2 implicit solvent (engine/protein/amber.py),
  validated against OpenMM's energies and forces (tests/test_protein_energy.py).
- "residue": one bead per residue (engine/protein/residue_model.py, docs/residue-model.md).

Both are deterministic and full (no neighbour list, no resampling): ``train_energy_fn`` is
``energy_fn`` with an unused aux, ``aux_init`` returns an empty array and ``aux_update`` is
None. Positions are [n_atoms, 3] in nm, energies in kJ/mol; functions compute in ``x.dtype``.
``energy_terms(system, x)`` gives the per-term breakdown as floats.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from ..config import EnergyConfig
from ..types import EnergyModel, System


def _payload(system: System) -> dict:
    if (
        system.kind != "protein"
        or not isinstance(system.payload, dict)
        or "model" not in system.payload
    ):
        raise ValueError(f"system {system.name!r} is not a protein built by engine.protein.build")
    return system.payload


def energy_fns(system: System):
    """(energy_fn, terms_fn) of a protein system, cached in its payload (built once per System).

    Returns:
      energy_fn: x [n_atoms, 3] nm -> scalar kJ/mol.
      terms_fn: x -> dict[str, scalar] of the energy's terms (kJ/mol), summing to energy_fn(x).
    """
    payload = _payload(system)
    if "_energy_fns" not in payload:
        if payload["model"] == "residue":
            from .residue_model import make_residue_fns

            fns = make_residue_fns(payload["params"])
        else:
            from .amber import amber_parameters, make_amber_fns

            params = amber_parameters(payload["openmm_system"])
            payload["amber_parameters"] = params
            fns = make_amber_fns(params)
        payload["_energy_fns"] = fns
        payload["_terms_jit"] = jax.jit(fns[1])
    return payload["_energy_fns"]


def make_protein_energy(system: System, cfg: EnergyConfig) -> EnergyModel:
    """The EnergyModel of a protein system (model fixed at build time).

    Args:
      system: a protein System from ``build_protein_system``.
      cfg: only ``cfg.dtype`` is read: ``aux_init`` returns an empty array of that dtype.

    Returns:
      EnergyModel with ``pair_terms=None`` (angles, torsions and solvation are not pair terms).
    """
    energy_fn, _ = energy_fns(system)
    dtype = jnp.float64 if cfg.dtype == "float64" else jnp.float32
    model = system.payload["model"]

    def train_energy_fn(x, aux):
        del aux  # deterministic energy: nothing to resample
        return energy_fn(x)

    def aux_init(key, x):
        del key, x
        return jnp.zeros((0,), dtype=dtype)

    if model == "residue":
        description = (
            f"residue-level model, {system.n_atoms} CA beads (kJ/mol, nm; not the paper's)"
        )
    else:
        description = (f"AMBER ff14SB + OBC2 implicit solvent, {system.n_atoms} atoms, no cutoff "
                       "(kJ/mol, nm)")  # fmt: skip
    return EnergyModel(
        energy_fn=energy_fn,
        train_energy_fn=train_energy_fn,
        aux_init=aux_init,
        aux_update=None,
        pair_terms=None,
        description=description,
    )


def energy_terms(system: System, x) -> dict[str, float]:
    """Per-term energies (kJ/mol) at x [n_atoms, 3] (nm), as Python floats, plus "total"."""
    energy_fns(system)
    terms_fn = system.payload["_terms_jit"]
    terms = {k: float(v) for k, v in terms_fn(jnp.asarray(np.asarray(x, dtype=np.float64))).items()}
    terms["total"] = float(sum(terms.values()))
    return terms


def residue_matrices(system: System, x=None) -> dict[str, np.ndarray]:
    """Residue-pair interaction matrices [n_res, n_res] for heatmaps (residue model only).

    See ``engine.protein.residue_model.residue_matrices``.
    """
    from .residue_model import residue_matrices as _matrices

    payload = _payload(system)
    if payload["model"] != "residue":
        raise ValueError(
            "residue matrices exist for the residue-level model only (system.model='residue')"
        )
    if x is None:
        x = system.reference if system.reference is not None else system.x0
    return _matrices(payload["params"], np.asarray(x, dtype=np.float64))
