"""Proteins: structures in, AMBER/OBC2 and residue-level energies, RMSD, OpenMM baseline.

Modules: build (sources, cleaning, starts -> System), peptide (chains from sequence),
amber (all-atom energy in JAX from an OpenMM System), residue_model (one bead per residue),
energy (EnergyModel factory), measures (RMSD and structure metrics), baseline (OpenMM
minimization / Langevin MD on the identical System). Units: nm, kJ/mol.
Imported lazily by engine/systems.py, so loop-only users never import OpenMM.
"""
