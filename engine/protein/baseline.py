"""OpenMM baselines on the identical energy: L-BFGS minimization and Langevin dynamics.

Contract: ``run_openmm(spec, system, *, method, on_progress, should_stop, n_steps) -> dict``
with the same columns as the JAX optimization loop (step, stage, wall_time_s, energy,
grad_norm, plus ``protein_metrics``) and the frames, so the workbench and the CLI can compare
OpenMM with GD/CG/GNN; ``run_openmm_result`` wraps it into a ``RunResult``. Rows, frames and
Progress come from the recorder the JAX runs use (engine/recorder.py).

- "openmm-min": ``LocalEnergyMinimizer`` (L-BFGS) with a ``MinimizationReporter`` that logs
  every ``spec.chunk_size`` iterations; a step is one L-BFGS iteration; tolerance
  ``MIN_TOLERANCE`` (RMS force, kJ/mol/nm), at most ``n_steps`` iterations.
- "openmm-md": ``LangevinMiddleIntegrator`` at 298 K, friction 1/ps, 2 fs, seeded by
  ``spec.seed``; bonds to hydrogen are constrained (HBonds, as usual at 2 fs;
  ``md_system``). A step is one MD step.

Both run the OBC2 term in OpenMM's built-in GBSAOBCForce (``with_builtin_obc2``), on a copy of
the System: the same energy to 2e-7, from a compiled kernel instead of obc2.xml's
interpreted CustomGBForce (4.8x faster per MD step, 5.6x per L-BFGS iteration on 2 CPU cores;
bench/bench_md_kernel.py).

The System is the one ``build_protein_system`` made (amber14-all + implicit/obc2, NoCutoff),
so OpenMM minimizes exactly the energy engine/protein/amber.py computes. Platform: CUDA, then
OpenCL, then CPU, whichever exists first. Wall times exclude building the Context (as the JAX
runs exclude compilation), reported as ``timings["compile_s"]``. Energies in kJ/mol,
gradient norms in kJ/mol/nm, positions in nm.
"""

from __future__ import annotations

import copy
import dataclasses
import math
import time
from collections.abc import Callable

import numpy as np

from ..loop import Observation
from ..recorder import make_recorder, wall_clock
from ..types import Progress, System

METHODS = ("openmm-min", "openmm-md")
MIN_TOLERANCE = 1.0  # kJ/mol/nm, RMS force (OpenMM 8's criterion)
MD_TEMPERATURE = 298.0  # K
MD_FRICTION = 1.0  # 1/ps
MD_TIMESTEP = 0.002  # ps
STAGE = 2  # plain positions, as stage 2 of the JAX runs


def best_platform():
    """The fastest OpenMM platform present: CUDA, OpenCL, else CPU."""
    import openmm

    names = {
        openmm.Platform.getPlatform(i).getName() for i in range(openmm.Platform.getNumPlatforms())
    }
    for name in ("CUDA", "OpenCL", "CPU"):
        if name in names:
            return openmm.Platform.getPlatformByName(name)
    return openmm.Platform.getPlatformByName("Reference")


def with_builtin_obc2(system):
    """A copy of an OpenMM System whose OBC2 CustomGBForce (implicit/obc2.xml, read and checked
    by ``amber._read_obc2``) is OpenMM's built-in GBSAOBCForce with the same per-atom charges,
    radii and scale factors: the same OBC II energy (alpha, beta, gamma = 1, 0.8, 4.85; ACE
    surface term 4 pi x 2.25936 kJ/mol/nm^2, probe 0.14 nm; offset 0.009 nm) from a compiled
    kernel instead of an interpreted expression. Energies and forces agree to 2e-7, the
    difference in Coulomb's constant (tests/test_protein_baseline.py); an MD step is 4.8x and
    an L-BFGS iteration 5.6x faster on 2 CPU cores (bench/bench_md_kernel.py). A System
    without a CustomGBForce is copied unchanged."""
    import openmm

    from .amber import _read_obc2

    out = copy.deepcopy(system)
    found = [
        k for k in range(out.getNumForces()) if isinstance(out.getForce(k), openmm.CustomGBForce)
    ]
    if not found:
        return out
    (k,) = found
    p = _read_obc2(out.getForce(k))
    if p["kappa"] != 0.0:
        raise ValueError("GBSAOBCForce has no salt screening; keep the CustomGBForce (kappa != 0)")
    gb = openmm.GBSAOBCForce()
    gb.setNonbondedMethod(openmm.GBSAOBCForce.NoCutoff)
    gb.setSoluteDielectric(p["solute_dielectric"])
    gb.setSolventDielectric(p["solvent_dielectric"])
    gb.setSurfaceAreaEnergy(2.25936)  # kJ/mol/nm^2: the 28.3919551 of obc2.xml over 4 pi
    for charge, offset_radius, scaled in zip(
        p["charge"], p["offset_radius"], p["scaled_radius"], strict=True
    ):
        gb.addParticle(charge, offset_radius + p["offset"], scaled / offset_radius)
    gb.setForceGroup(out.getForce(k).getForceGroup())
    out.removeForce(k)
    out.addForce(gb)
    return out


def minimizer_system(system):
    """The OpenMM System L-BFGS minimizes: the built-in OBC2 kernel (``with_builtin_obc2``),
    on a copy; nothing constrained."""
    return with_builtin_obc2(system)


def gb_force_name(system) -> str:
    """The class name of an OpenMM System's generalized-Born force ("GBSAOBCForce" or
    "CustomGBForce"): which OBC2 kernel a run used, for benchmark records."""
    return next(type(f).__name__ for f in system.getForces() if "GB" in type(f).__name__)


def md_system(system):
    """The OpenMM System Langevin MD integrates: bonds to hydrogen constrained (2 fs steps) and
    the built-in OBC2 kernel (``with_builtin_obc2``), on a copy."""
    return _with_hbond_constraints(with_builtin_obc2(system))


def _with_hbond_constraints(system):
    """A copy of an OpenMM System with every bond to a hydrogen constrained at its r0."""
    import openmm

    out = copy.deepcopy(system)
    hydrogen = [out.getParticleMass(i)._value < 1.5 for i in range(out.getNumParticles())]
    for force in (out.getForce(k) for k in range(out.getNumForces())):
        if isinstance(force, openmm.HarmonicBondForce):
            for b in range(force.getNumBonds()):
                i, j, r0, _ = force.getBondParameters(b)
                if hydrogen[i] or hydrogen[j]:
                    out.addConstraint(i, j, r0)
    return out


class _Log:
    """The one recorder (engine/recorder.py) with its state in a cell: OpenMM reports through
    a callback, so the state cannot be threaded through return values there."""

    def __init__(self, recorder, on_progress: Callable[[Progress], None] | None):
        self.recorder, self.on_progress = recorder, on_progress
        self.state = recorder.init()

    def __call__(self, obs: Observation, *, frame: bool = False) -> None:
        self.state, progress = self.recorder.record(self.state, obs, frame=frame)
        if self.on_progress:
            self.on_progress(progress)


def run_openmm(
    spec,
    system: System,
    *,
    method: str = "openmm-min",
    on_progress: Callable[[Progress], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
    n_steps: int | None = None,
) -> dict:
    """Minimize or simulate a protein System with OpenMM, logging like the JAX runs.

    Args:
      spec: the RunSpec (reads seed, chunk_size, frame_every, schedule.max_steps).
      system: an all-atom protein System from ``build_protein_system`` (its x0 is the start).
      method: "openmm-min" or "openmm-md".
      on_progress: called with a Progress every ``spec.chunk_size`` steps.
      should_stop: polled at the same points; True ends the run with status "stopped".
      n_steps: L-BFGS iterations / MD steps; default ``spec.schedule.max_steps``.

    Returns:
      dict with status ("done", "stopped", "diverged"), message, metrics (column -> [n_rows]),
      frames_step [F], frames_x [F, n_atoms, 3] nm, x_final [n_atoms, 3] nm, timings
      (compile_s: Context setup, total_s).

    Raises:
      ValueError: unknown method, or a system without an OpenMM System (residue model).
    """
    _check(method, system)
    should_stop = should_stop or (lambda: False)
    n_steps = int(n_steps or spec.schedule.max_steps)
    chunk = max(1, int(spec.chunk_size))
    t_setup = time.perf_counter()
    context, integrator = _make_context(spec, system, method)
    first = _observe(context, 0)
    compile_s = time.perf_counter() - t_setup
    clock = wall_clock(time.perf_counter())  # wall times exclude building the Context
    log = _Log(make_recorder(system, spec.frame_every, clock), on_progress)
    log(first)
    if not math.isfinite(first.energy):
        status, message = "diverged", f"initial energy is not finite ({first.energy})"
        x = first.x
    elif method == "openmm-min":
        status, message, x = _minimize(context, log, n_steps, chunk, should_stop)
    else:
        status, message, x = _dynamics(context, integrator, log, n_steps, chunk, should_stop)
    timings = {"compile_s": compile_s, "total_s": clock()}
    recorded = log.recorder.result(log.state)._asdict()  # metrics, frames_step, frames_x
    x_final = np.array(x, dtype=np.float64)
    return {
        "status": status,
        "message": message,
        **recorded,
        "x_final": x_final,
        "timings": timings,
    }


def _check(method: str, system: System) -> None:
    """Raise ValueError unless ``method`` is known and ``system`` has an OpenMM System."""
    if method not in METHODS:
        raise ValueError(f"method must be one of {', '.join(METHODS)}; got {method!r}")
    payload = system.payload if isinstance(system.payload, dict) else {}
    if system.kind != "protein" or "openmm_system" not in payload:
        raise ValueError(
            "OpenMM baselines need an all-atom protein system (system.model='amber-obc2')"
        )


def _make_context(spec, system: System, method: str):
    """(OpenMM Context at system.x0, its integrator) on the best platform, with the built-in
    OBC2 kernel; for MD, with hydrogen bonds constrained and velocities drawn at
    MD_TEMPERATURE, seeded by spec.seed."""
    import openmm

    omm_system = system.payload["openmm_system"]
    if method == "openmm-md":
        omm_system = md_system(omm_system)
        integrator = openmm.LangevinMiddleIntegrator(MD_TEMPERATURE, MD_FRICTION, MD_TIMESTEP)
        integrator.setRandomNumberSeed(spec.seed + 1)  # OpenMM treats 0 as "pick a random seed"
    else:
        omm_system = minimizer_system(omm_system)
        integrator = openmm.VerletIntegrator(MD_TIMESTEP)
    context = openmm.Context(omm_system, integrator, best_platform())
    context.setPositions(np.asarray(system.x0, dtype=np.float64))
    if method == "openmm-md":
        context.applyConstraints(1e-6)
        context.setVelocitiesToTemperature(MD_TEMPERATURE, spec.seed + 1)
    return context, integrator


def _observe(context, step: int) -> Observation:
    """The Context's current energy, |dE/dx| (the force norm) and positions as step ``step``."""
    state = context.getState(getEnergy=True, getForces=True, getPositions=True)
    forces = state.getForces(asNumpy=True)._value
    x = np.array(state.getPositions(asNumpy=True)._value, dtype=np.float64)
    return Observation(
        step, STAGE, float(state.getPotentialEnergy()._value), float(np.linalg.norm(forces)), x
    )


def _minimize(context, log: _Log, n_steps: int, chunk: int, should_stop):
    """L-BFGS, logged every ``chunk`` iterations; returns (status, message, final x)."""
    import openmm

    outcome = {"stopped": False, "iterations": 0}

    class Reporter(openmm.MinimizationReporter):
        def report(self, iteration, x, grad, args):
            outcome["iterations"] = step = iteration + 1
            if step % chunk:
                return False
            energy = float(args["system energy"])
            xyz = np.array(x, dtype=np.float64).reshape(-1, 3)  # OpenMM reuses its buffer
            log(Observation(step, STAGE, energy, float(np.linalg.norm(grad)), xyz))
            outcome["stopped"] = math.isfinite(energy) and should_stop()
            return not math.isfinite(energy) or outcome["stopped"]  # True ends the minimizer

    openmm.LocalEnergyMinimizer.minimize(context, MIN_TOLERANCE, n_steps, Reporter())
    final = _observe(context, outcome["iterations"])
    if log.state.last_step != final.step:
        log(final, frame=True)
    return (*_minimize_outcome(final, outcome["stopped"], n_steps), final.x)


def _minimize_outcome(final: Observation, stopped: bool, n_steps: int) -> tuple[str, str]:
    """(status, message) of a minimization that ended at ``final``."""
    steps = final.step
    if not math.isfinite(final.energy):
        return "diverged", f"energy {final.energy} is not finite after {steps} iterations"
    if stopped:
        return "stopped", f"stopped by request at iteration {steps}"
    rms = final.grad_norm / math.sqrt(final.x.size)  # RMS over the 3 n_atoms force components
    if steps >= n_steps:
        return "done", f"iteration budget reached ({n_steps}); RMS force {rms:.3g} kJ/mol/nm"
    return "done", f"L-BFGS converged after {steps} iterations (RMS force {rms:.3g} kJ/mol/nm)"


def _dynamics(context, integrator, log: _Log, n_steps: int, chunk: int, should_stop):
    """Langevin MD, logged every ``chunk`` steps; returns (status, message, final x)."""
    step, x = 0, log.state.last_x
    while step < n_steps:
        if should_stop():
            return "stopped", f"stopped by request at step {step}", x
        k = min(chunk, n_steps - step)
        integrator.step(k)
        step += k
        obs = _observe(context, step)
        log(obs)
        x = obs.x
        if not math.isfinite(obs.energy):
            return "diverged", f"energy {obs.energy} is not finite at step {step}", x
    return (
        "done",
        f"{n_steps} Langevin steps at {MD_TEMPERATURE:g} K ({n_steps * MD_TIMESTEP:g} ps)",
        x,
    )


def run_openmm_result(
    spec,
    method: str,
    *,
    on_progress=None,
    should_stop=None,
    system: System | None = None,
    on_phase=None,
):
    """``run_openmm`` as an engine ``RunResult`` (for the CLI and the workbench).

    Args:
      spec: RunSpec of a protein system; method: "openmm-min" or "openmm-md".
      system: a prebuilt System for spec.system and spec.seed (else built here).
      on_phase: ``on_phase(phase, detail)``; told "running" once the system is built
        (OpenMM has no slow modes and no JAX compilation to report).

    Returns:
      engine.run.RunResult with timings {modes_s: 0, init_s: 0, compile_s, total_s}.
    """
    from ..run import RunResult
    from ..systems import build_system

    if spec.method_label is None:
        spec = dataclasses.replace(spec, method_label=method)
    system = system or build_system(spec.system, spec.seed)
    if on_phase is not None:
        on_phase("running", "")
    out = run_openmm(spec, system, method=method, on_progress=on_progress, should_stop=should_stop)
    timings = {"modes_s": 0.0, "init_s": 0.0, "compile_s": out["timings"]["compile_s"],
               "total_s": out["timings"].get("total_s", 0.0)}  # fmt: skip
    return RunResult(
        spec=spec,
        status=out["status"],
        message=out["message"],
        metrics=out["metrics"],
        frames_step=out["frames_step"],
        frames_x=out["frames_x"],
        x_final=out["x_final"],
        system=system,
        timings=timings,
    )
