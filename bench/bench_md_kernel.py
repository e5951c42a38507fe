"""OpenMM's cost per MD step and per L-BFGS iteration with each OBC2 kernel, against a GD step
of the JAX engine, in one run on one machine (Figure 6's claim "OpenMM after 5k steps is much
faster"; the openmm-min rows of the protein benchmark).

System: Trp-cage from ../shared/data/pdb/2JOF_unfolded.pdb, AMBER14 + OBC2 (Figure 6's).
  md-custom    Langevin MD, 298 K, 2 fs, HBonds, with implicit/obc2.xml's CustomGBForce (the
               kernel of every MD run before session 13)
  md-builtin   the same with OpenMM's built-in GBSAOBCForce (engine.protein.baseline.md_system,
               what MD runs now)
  min-custom   LocalEnergyMinimizer (L-BFGS) from the start with the CustomGBForce (openmm-min
               before session 14), timed per iteration
  min-builtin  the same with the built-in kernel (openmm-min now)
  gd           engine.run of presets.protein_spec("gd") (Adam, float32), its wall time without
               compilation, as Figure 6's runs report it
Each is timed for ``--steps`` steps (L-BFGS: iterations, counted by a reporter) per round,
round-robin over ``--rounds`` rounds, so load changes hit all alike; medians. Also the energy
of both kernels at the start (CPU platform) and where each L-BFGS ended.
Writes bench/results/md_kernel.json and the table in docs/benchmarks.md.
  .venv/bin/python -m bench.bench_md_kernel [--steps 1000] [--rounds 5]
"""

from __future__ import annotations

import argparse
import functools
import statistics
import time
from pathlib import Path

import numpy as np

from .bench_fig6 import system_config
from .common import replace_marked, save_json

DOC_MARK = "md-kernel"


def measure(steps: int, rounds: int) -> dict:
    import openmm

    from engine import build_system
    from engine.presets import protein_spec
    from engine.protein.baseline import (
        MD_FRICTION,
        MD_TEMPERATURE,
        MD_TIMESTEP,
        _with_hbond_constraints,
        best_platform,
        md_system,
        with_builtin_obc2,
    )
    from engine.run import run

    spec = protein_spec("gd", max_steps=steps).replace(
        system=system_config(), frame_every=steps, **{"schedule.stopping": "none"}
    )
    system = build_system(spec.system, 0)
    omm = system.payload["openmm_system"]
    contexts, energies = {}, {}
    for name, sys_ in (("md-custom", _with_hbond_constraints(omm)), ("md-builtin", md_system(omm))):
        integrator = openmm.LangevinMiddleIntegrator(MD_TEMPERATURE, MD_FRICTION, MD_TIMESTEP)
        integrator.setRandomNumberSeed(1)
        context = openmm.Context(sys_, integrator, best_platform())
        context.setPositions(np.asarray(system.x0, np.float64))
        energies[name] = context.getState(getEnergy=True).getPotentialEnergy()._value
        context.applyConstraints(1e-6)
        context.setVelocitiesToTemperature(MD_TEMPERATURE, 1)
        integrator.step(100)  # warm-up
        contexts[name] = (context, integrator)

    def md_round(name):
        integrator = contexts[name][1]
        t = time.perf_counter()
        integrator.step(steps)
        contexts[name][0].getState(getEnergy=True)  # waits for the steps
        return time.perf_counter() - t

    minimizers = {
        name: openmm.Context(sys_, openmm.VerletIntegrator(MD_TIMESTEP), best_platform())
        for name, sys_ in (("min-custom", omm), ("min-builtin", with_builtin_obc2(omm)))
    }
    min_ends = {}

    def min_round(name):
        """Seconds per iteration of L-BFGS from x0 over ``steps`` iterations (or until it
        converges), scaled to ``steps``."""
        context, iterations = minimizers[name], [0]

        class Count(openmm.MinimizationReporter):
            def report(self, iteration, x, grad, args):
                iterations[0] = iteration + 1
                return False

        context.setPositions(np.asarray(system.x0, np.float64))
        t = time.perf_counter()
        openmm.LocalEnergyMinimizer.minimize(context, 1e-3, steps, Count())
        seconds = time.perf_counter() - t
        min_ends[name] = (
            iterations[0],
            context.getState(getEnergy=True).getPotentialEnergy()._value,
        )
        return seconds * steps / iterations[0]

    def gd_round():
        summary = run(spec, system=system).summary()
        assert summary["status"] == "done" and summary["steps"] >= steps, summary
        return summary["wall_time_s"] * steps / summary["steps"]  # whole chunks: >= steps

    gd_round()  # compiles
    for name in minimizers:
        min_round(name)  # warm-up
    timers = {
        **{name: functools.partial(md_round, name) for name in contexts},
        **{name: functools.partial(min_round, name) for name in minimizers},
        "gd": gd_round,
    }
    seconds = {name: [] for name in timers}
    for _ in range(rounds):
        for name, timer in timers.items():
            seconds[name].append(timer())
    ms = {name: 1000 * statistics.median(s) / steps for name, s in seconds.items()}
    return {
        "steps_per_round": steps,
        "rounds": rounds,
        "platform": best_platform().getName(),
        "ms_per_step": ms,
        "ms_per_step_rounds": {k: [1000 * v / steps for v in s] for k, s in seconds.items()},
        "custom_over_builtin": ms["md-custom"] / ms["md-builtin"],
        "min_custom_over_builtin": ms["min-custom"] / ms["min-builtin"],
        "min_end": {k: {"iterations": n, "energy_kj_mol": e} for k, (n, e) in min_ends.items()},
        "seconds_for_5000_steps": {k: 5 * v for k, v in ms.items()},
        "energy_at_start_kj_mol": energies,
        "energy_difference_kj_mol": energies["md-builtin"] - energies["md-custom"],
    }


def doc_table(data: dict) -> str:
    ms, s5 = data["ms_per_step"], data["seconds_for_5000_steps"]
    rows = [
        "| kernel | ms per step or iteration (median of rounds) | 5,000 of them (s) |",
        "|---|---|---|",
    ]
    names = {
        "md-custom": "MD, obc2.xml CustomGBForce (before session 13)",
        "md-builtin": "MD, built-in GBSAOBCForce (now)",
        "min-custom": "L-BFGS iteration, CustomGBForce (openmm-min before session 14)",
        "min-builtin": "L-BFGS iteration, built-in GBSAOBCForce (openmm-min now)",
        "gd": "GD (JAX engine, float32, Adam; compilation excluded)",
    }
    for k, label in names.items():
        rows.append(f"| {label} | {ms[k]:.2f} | {s5[k]:.1f} |")
    ends = "; ".join(
        f"{k} {v['iterations']:,} iterations to {v['energy_kj_mol']:.1f} kJ/mol"
        for k, v in data["min_end"].items()
    )
    return "\n".join(rows) + (
        f"\n\nCustomGBForce / built-in: **{data['custom_over_builtin']:.1f}×** per MD step;"
        f" per L-BFGS iteration **{data['min_custom_over_builtin']:.1f}×** (from the start, "
        f"at most {data['steps_per_round']:,} iterations: {ends}). "
        "The two kernels' energies at the start differ by "
        f"{abs(data['energy_difference_kj_mol']):.1e} kJ/mol "
        f"(of {data['energy_at_start_kj_mol']['md-custom']:.1f}; "
        f"{data['platform']} platform; {data['rounds']} rounds of "
        f"{data['steps_per_round']:,} steps, round-robin).\n"
    )


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=1000)
    p.add_argument("--rounds", type=int, default=5)
    args = p.parse_args(argv)
    data = measure(args.steps, args.rounds)
    print(data["ms_per_step"], data["custom_over_builtin"], data["energy_difference_kj_mol"])
    save_json("md_kernel", {"what": __doc__.splitlines()[0], **data})
    doc = Path(__file__).resolve().parent.parent / "docs" / "benchmarks.md"
    replace_marked(doc, DOC_MARK, doc_table(data))


if __name__ == "__main__":
    main()
