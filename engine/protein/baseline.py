"""OpenMM baselines on the identical energy: L-BFGS minimization and Langevin dynamics.

Contract: ``run_openmm(spec, system, *, method, on_progress, should_stop, n_steps) -> dict``
with the same columns as the JAX optimization loop (step, stage, wall_time_s, energy,
grad_norm, plus ``protein_metrics``) and the frames, so the workbench and the CLI can compare
OpenMM with GD/CG/GNN; ``run_openmm_result`` wraps it into a ``RunResult``.

- "openmm-min": ``LocalEnergyMinimizer`` (L-BFGS) with a ``MinimizationReporter`` that logs
  every ``spec.chunk_size`` iterations; a step is one L-BFGS iteration; tolerance
  ``MIN_TOLERANCE`` (RMS force, kJ/mol/nm), at most ``n_steps`` iterations.
- "openmm-md": ``LangevinMiddleIntegrator`` at 298 K, friction 1/ps, 2 fs, seeded by
  ``spec.seed``; bonds to hydrogen are constrained (HBonds, as usual at 2 fs), on a copy of
  the System, so the energy function is unchanged. A step is one MD step.

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

from ..types import Progress, System
from .measures import protein_metrics

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


class _Recorder:
    """Collects rows and frames; calls on_progress every ``chunk`` steps (host-side only)."""

    def __init__(self, system: System, chunk: int, frame_every: int, on_progress, t0: float):
        self.system, self.chunk, self.frame_every = system, chunk, frame_every
        self.on_progress, self.t0 = on_progress, t0
        self.columns: dict[str, list] = {}
        self.frames_step: list[int] = []
        self.frames_x: list[np.ndarray] = []
        self.last_frame = -1

    def log(self, step: int, energy: float, grad_norm: float, x: np.ndarray, *, force_frame=False):
        row = {
            "step": step,
            "stage": STAGE,
            "wall_time_s": time.perf_counter() - self.t0,
            "energy": energy,
            "grad_norm": grad_norm,
        }
        row.update(protein_metrics(x, self.system))
        for k, v in row.items():
            self.columns.setdefault(k, []).append(v)
        frame_due = force_frame or step - max(self.last_frame, 0) >= self.frame_every or step == 0
        if frame_due and step != self.last_frame:
            self.frames_step.append(step)
            self.frames_x.append(np.array(x, dtype=np.float64))
            self.last_frame = step
        if self.on_progress:
            self.on_progress(Progress([row], x if frame_due else None))

    def result(self, status: str, message: str, x_final: np.ndarray, timings: dict) -> dict:
        if not self.frames_step or self.frames_step[-1] != self.columns["step"][-1]:
            self.frames_step.append(self.columns["step"][-1])
            self.frames_x.append(np.array(x_final, dtype=np.float64))
        return {
            "status": status,
            "message": message,
            "metrics": {k: np.asarray(v) for k, v in self.columns.items()},
            "frames_step": np.asarray(self.frames_step, dtype=np.int64),
            "frames_x": np.stack(self.frames_x),
            "x_final": np.array(x_final, dtype=np.float64),
            "timings": timings,
        }


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
    import openmm

    if method not in METHODS:
        raise ValueError(f"method must be one of {', '.join(METHODS)}; got {method!r}")
    payload = system.payload if isinstance(system.payload, dict) else {}
    if system.kind != "protein" or "openmm_system" not in payload:
        raise ValueError(
            "OpenMM baselines need an all-atom protein system (system.model='amber-obc2')"
        )
    should_stop = should_stop or (lambda: False)
    n_steps = int(n_steps or spec.schedule.max_steps)
    chunk = max(1, int(spec.chunk_size))
    t_setup = time.perf_counter()
    omm_system = payload["openmm_system"]
    if method == "openmm-md":
        omm_system = _with_hbond_constraints(omm_system)
        integrator = openmm.LangevinMiddleIntegrator(MD_TEMPERATURE, MD_FRICTION, MD_TIMESTEP)
        integrator.setRandomNumberSeed(spec.seed + 1)  # OpenMM treats 0 as "pick a random seed"
    else:
        integrator = openmm.VerletIntegrator(MD_TIMESTEP)
    context = openmm.Context(omm_system, integrator, best_platform())
    context.setPositions(np.asarray(system.x0, dtype=np.float64))
    if method == "openmm-md":
        context.applyConstraints(1e-6)
        context.setVelocitiesToTemperature(MD_TEMPERATURE, spec.seed + 1)
    state = context.getState(getEnergy=True, getForces=True, getPositions=True)
    compile_s = time.perf_counter() - t_setup

    t0 = time.perf_counter()
    rec = _Recorder(system, chunk, spec.frame_every, on_progress, t0)
    x = state.getPositions(asNumpy=True)._value
    energy = state.getPotentialEnergy()._value
    rec.log(0, energy, float(np.linalg.norm(state.getForces(asNumpy=True)._value)), x)
    if not math.isfinite(energy):
        return rec.result(
            "diverged", f"initial energy is not finite ({energy})", x, {"compile_s": compile_s}
        )
    if method == "openmm-min":
        status, message, x = _minimize(context, rec, n_steps, chunk, should_stop)
    else:
        status, message, x = _dynamics(context, integrator, rec, n_steps, chunk, should_stop)
    timings = {"compile_s": compile_s, "total_s": time.perf_counter() - t0}
    return rec.result(status, message, x, timings)


def _minimize(context, rec: _Recorder, n_steps: int, chunk: int, should_stop):
    import openmm

    outcome = {"stopped": False, "iterations": 0}

    class Reporter(openmm.MinimizationReporter):
        def report(self, iteration, x, grad, args):
            step = iteration + 1
            outcome["iterations"] = step
            if step % chunk == 0:
                xyz = np.asarray(x, dtype=np.float64).reshape(-1, 3)
                rec.log(step, float(args["system energy"]), float(np.linalg.norm(grad)), xyz)
                if not math.isfinite(args["system energy"]):
                    return True
                if should_stop():
                    outcome["stopped"] = True
                    return True
            return False

    reporter = Reporter()
    openmm.LocalEnergyMinimizer.minimize(context, MIN_TOLERANCE, n_steps, reporter)
    state = context.getState(getEnergy=True, getForces=True, getPositions=True)
    x = state.getPositions(asNumpy=True)._value
    energy = state.getPotentialEnergy()._value
    forces = state.getForces(asNumpy=True)._value
    steps = outcome["iterations"]
    if not rec.columns["step"] or rec.columns["step"][-1] != steps:
        rec.log(steps, energy, float(np.linalg.norm(forces)), x, force_frame=True)
    if not math.isfinite(energy):
        return "diverged", f"energy {energy} is not finite after {steps} iterations", x
    if outcome["stopped"]:
        return "stopped", f"stopped by request at iteration {steps}", x
    rms = float(np.sqrt(np.mean(forces**2)))
    if steps >= n_steps:
        return "done", f"iteration budget reached ({n_steps}); RMS force {rms:.3g} kJ/mol/nm", x
    return "done", f"L-BFGS converged after {steps} iterations (RMS force {rms:.3g} kJ/mol/nm)", x


def _dynamics(context, integrator, rec: _Recorder, n_steps: int, chunk: int, should_stop):
    step = 0
    x = None
    while step < n_steps:
        if should_stop():
            return "stopped", f"stopped by request at step {step}", x
        k = min(chunk, n_steps - step)
        integrator.step(k)
        step += k
        state = context.getState(getEnergy=True, getForces=True, getPositions=True)
        x = state.getPositions(asNumpy=True)._value
        energy = state.getPotentialEnergy()._value
        rec.log(step, energy, float(np.linalg.norm(state.getForces(asNumpy=True)._value)), x)
        if not math.isfinite(energy):
            return "diverged", f"energy {energy} is not finite at step {step}", x
    return (
        "done",
        f"{n_steps} Langevin steps at {MD_TEMPERATURE:g} K ({n_steps * MD_TIMESTEP:g} ps)",
        x,
    )


def run_openmm_result(
    spec, method: str, *, on_progress=None, should_stop=None, system: System | None = None
):
    """``run_openmm`` as an engine ``RunResult`` (for the CLI and the workbench).

    Args:
      spec: RunSpec of a protein system; method: "openmm-min" or "openmm-md".
      system: a prebuilt System for spec.system and spec.seed (else built here).

    Returns:
      engine.run.RunResult with timings {modes_s: 0, init_s: 0, compile_s, total_s}.
    """
    from ..run import RunResult
    from ..systems import build_system

    if spec.method_label is None:
        spec = dataclasses.replace(spec, method_label=method)
    system = system or build_system(spec.system, spec.seed)
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
