"""Cost of one energy + force evaluation: our JAX AMBER/OBC2 energy vs OpenMM, same System.

For each protein (2JOF and 2WXC from ../shared/data/pdb when present, villin HP35 always), in
one process and one run: the median time of a jitted ``value_and_grad`` in float64 and float32
and of OpenMM's CPU platform (setPositions + getState(energy, forces)), and their ratio; plus
the validation errors of the float64 energy against OpenMM's Reference platform at the native
structure and 20 perturbed ones (the same check as tests/test_protein_energy.py).

Run: ``python -m bench.bench_protein_eval`` -> bench/results/protein_eval.json and a markdown
table on stdout (copied into docs/benchmarks-protein.md).
"""

from __future__ import annotations

import os
import time

import jax
import jax.numpy as jnp
import numpy as np
import openmm

from bench.common import save_json, timeit
from engine.config import SystemConfig
from engine.protein.build import build_protein_system
from engine.protein.energy import energy_fns

jax.config.update("jax_enable_x64", True)

SHARED_PDB = os.path.abspath(
    os.path.join(os.path.dirname(__file__), "..", "..", "shared", "data", "pdb")
)
PROTEINS = {"2JOF": "2JOF_native.pdb", "2WXC": "2WXC_native.pdb", "villin": None}
N_PERTURBED = 20


def _source(name: str, filename: str | None) -> str | None:
    if filename is None:
        return name
    path = os.path.join(SHARED_PDB, filename)
    return path if os.path.exists(path) else None


def _validation(system, energy_fn) -> dict:
    """Max relative energy and force-RMS errors of the float64 JAX energy vs OpenMM Reference."""
    value_and_grad = jax.jit(jax.value_and_grad(energy_fn))
    ctx = openmm.Context(
        system.payload["openmm_system"],
        openmm.VerletIntegrator(0.001),
        openmm.Platform.getPlatformByName("Reference"),
    )
    rng = np.random.default_rng(0)
    xs = [system.x0] + [
        system.x0 + s * rng.standard_normal(system.x0.shape)
        for s in np.linspace(0.005, 0.05, N_PERTURBED)
    ]
    e_err, f_err = [], []
    for x in xs:
        ctx.setPositions(x)
        st = ctx.getState(getEnergy=True, getForces=True)
        e0, f0 = st.getPotentialEnergy()._value, np.asarray(st.getForces(asNumpy=True)._value)
        e, g = value_and_grad(jnp.asarray(x))
        e_err.append(abs(float(e) - e0) / abs(e0))
        f_err.append(float(np.sqrt(np.mean((-np.asarray(g) - f0) ** 2)) / np.sqrt(np.mean(f0**2))))
    return {
        "max_rel_energy_error": max(e_err),
        "max_rel_force_rms_error": max(f_err),
        "n_configurations": len(xs),
    }


def bench_one(name: str, source: str) -> dict:
    system = build_protein_system(SystemConfig(kind="protein", pdb=source), 0)
    energy_fn, _ = energy_fns(system)
    row = {"protein": name, "n_atoms": system.n_atoms, "n_residues": system.meta["n_residues"]}
    for dtype in (jnp.float64, jnp.float32):
        x = jnp.asarray(system.x0, dtype=dtype)
        f = jax.jit(jax.value_and_grad(energy_fn))
        t = time.perf_counter()
        jax.block_until_ready(f(x))
        row[f"jax_{dtype.__name__}_compile_s"] = time.perf_counter() - t
        row[f"jax_{dtype.__name__}_s"] = timeit(
            lambda f=f, x=x: jax.block_until_ready(f(x)), repeat=15
        )
    ctx = openmm.Context(
        system.payload["openmm_system"],
        openmm.VerletIntegrator(0.001),
        openmm.Platform.getPlatformByName("CPU"),
    )
    x_np = np.asarray(system.x0)

    def openmm_eval():
        ctx.setPositions(x_np)
        ctx.getState(getEnergy=True, getForces=True)

    row["openmm_cpu_threads"] = ctx.getPlatform().getPropertyValue(ctx, "Threads")
    row["openmm_cpu_s"] = timeit(openmm_eval, repeat=15)
    row["ratio_jax_f64_over_openmm_cpu"] = row["jax_float64_s"] / row["openmm_cpu_s"]
    row["ratio_jax_f32_over_openmm_cpu"] = row["jax_float32_s"] / row["openmm_cpu_s"]
    row.update(_validation(system, energy_fn))
    return row


def main() -> None:
    rows, skipped = [], []
    for name, filename in PROTEINS.items():
        source = _source(name, filename)
        if source is None:
            skipped.append(f"{name}: {filename} not in {SHARED_PDB}")
            continue
        rows.append(bench_one(name, source))
    path = save_json(
        "protein_eval", {"rows": rows, "skipped": skipped, "load_average": os.getloadavg()}
    )
    print(f"wrote {path}")
    print(
        "| protein | atoms | JAX f64 (ms) | JAX f32 (ms) | OpenMM CPU (ms) | JAX f64 / OpenMM "
        "| JAX f32 / OpenMM "
        "| max rel. energy error | max rel. force RMS error |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['protein']} | {r['n_atoms']} | {r['jax_float64_s'] * 1e3:.2f} "
            f"| {r['jax_float32_s'] * 1e3:.2f} "
            f"| {r['openmm_cpu_s'] * 1e3:.2f} | {r['ratio_jax_f64_over_openmm_cpu']:.2f} "
            f"| {r['ratio_jax_f32_over_openmm_cpu']:.2f} | {r['max_rel_energy_error']:.1e} "
            f"| {r['max_rel_force_rms_error']:.1e} |"
        )
    for s in skipped:
        print(f"skipped {s}")


if __name__ == "__main__":
    main()
