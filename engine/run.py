"""One optimization run: build, (slow modes), reparametrize, two stages of jitted chunks.

``run(spec, on_progress, should_stop) -> RunResult``. Progress and cancellation are two
plain callables, so the caller (CLI, workbench worker thread, test) owns threading.
Stage 1 optimizes the reparametrization's params; when its stopping rule fires (or after a
fixed number of steps) x <- apply(params) and stage 2 optimizes x directly with a fresh
optimizer. "none" (GD) runs stage 2 only. Logged every chunk: step, stage, wall time (from
the start of slow-mode computation, compilation excluded and reported apart), the full
deterministic energy, |dE/dx|, and the system's structure metrics.
Numerical failure is a status: a non-finite or exploding energy ends the run "diverged"
with everything recorded so far.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np

from .config import RunSpec
from .loop import make_chunk_fn
from .optim import make_optimizer
from .reparam import make_reparam
from .stopping import stop_init, stop_update
from .systems import build_system, make_energy, structure_metrics
from .types import Progress, SlowModes, System

# An energy this far above the start (in units of |E0| + 1) counts as exploded.
EXPLODE_FACTOR = 1e6


@dataclasses.dataclass
class RunResult:
    """Everything a run produced.

    Fields:
      spec: the RunSpec that was run.
      status: "done", "stopped" (by should_stop), "diverged" or "failed".
      message: human-readable reason for the status.
      metrics: column name -> [n_rows] array; columns step, stage, wall_time_s, energy,
        grad_norm and the structure metrics; row 0 is step 0 at the initial configuration.
      frames_step: [n_frames] int steps of the stored frames.
      frames_x: [n_frames, n_atoms, 3] positions.
      x_final: [n_atoms, 3] final positions.
      system: the built System.
      timings: seconds: modes_s, init_s (reparam init incl. fit), compile_s, total_s.
      stage_switch_step: step at which stage 2 began (None if it never did or for GD).
      modes: the SlowModes used, or None.
    """

    spec: RunSpec
    status: str
    message: str
    metrics: dict
    frames_step: np.ndarray
    frames_x: np.ndarray
    x_final: np.ndarray
    system: System
    timings: dict
    stage_switch_step: int | None = None
    modes: SlowModes | None = None

    def summary(self) -> dict:
        e = self.metrics["energy"]
        finite = e[np.isfinite(e)]
        return {
            "method": self.spec.label,
            "status": self.status,
            "steps": int(self.metrics["step"][-1]) if len(e) else 0,
            "final_energy": float(e[-1]) if len(e) else math.nan,
            "best_energy": float(finite.min()) if len(finite) else math.nan,
            "wall_time_s": float(self.metrics["wall_time_s"][-1]) if len(e) else 0.0,
            "stage_switch_step": self.stage_switch_step,
            **{k: float(v) for k, v in self.timings.items()},
        }


def default_n_modes(spec: RunSpec, n_atoms: int) -> int:
    """k when unset: the reference's n/4 node modes, or 3n/4 Cartesian modes for the full
    Hessian (3 per node mode, so both give the linear map the same 3k parameters,
    method.md §4.2)."""
    if spec.reparam.n_modes:
        return spec.reparam.n_modes
    per_node = max(2, math.ceil(n_atoms / 4))
    return 3 * per_node if spec.modes.method == "hessian" else per_node


def first_modes(modes: SlowModes, k: int) -> SlowModes:
    """The k slowest of precomputed modes (exact: eigenvectors of the same operator)."""
    return modes._replace(
        vectors=modes.vectors[:, :k], values=modes.values[:k], rigid=modes.rigid[:k]
    )


def compute_modes(spec: RunSpec, system: System, model) -> SlowModes:
    from .modes import slow_modes

    n_dof = system.n_atoms * (3 if spec.modes.method == "hessian" else 1)
    k = default_n_modes(spec, system.n_atoms)
    if k > n_dof:
        from .config import SpecError

        raise SpecError("reparam.n_modes", f"must be in [1, {n_dof}] for this system, got {k}")
    return slow_modes(system, model, spec.modes, k, seed=spec.seed, x=system.x0)


def run(
    spec: RunSpec,
    *,
    on_progress: Callable[[Progress], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
    system: System | None = None,
    modes: SlowModes | None = None,
) -> RunResult:
    """Run ``spec`` to completion, stop request or divergence.

    Args:
      spec: the run specification.
      on_progress: called after every chunk with a Progress (host numpy values).
      should_stop: polled between chunks; True ends the run with status "stopped".
      system: a prebuilt System for spec.system and spec.seed (saves rebuilding it).
      modes: precomputed slow modes (e.g. shared by several methods); their ``seconds``
        are still added to this run's wall time, so comparisons stay fair.
    Returns:
      RunResult. Invalid specs raise SpecError before anything runs; errors inside the
      loop other than numerical failure propagate to the caller.
    """
    should_stop = should_stop or (lambda: False)
    system = system or build_system(spec.system, spec.seed)
    dtype = jnp.float64 if spec.energy.dtype == "float64" else jnp.float32
    model = make_energy(system, spec.energy)
    timings = {"modes_s": 0.0, "init_s": 0.0, "compile_s": 0.0, "total_s": 0.0}
    t_start = time.perf_counter()

    if not spec.reparam.needs_modes:
        modes = None
    elif modes is None:
        modes = compute_modes(spec, system, model)
        timings["modes_s"] = modes.seconds
    else:  # precomputed (shared by several methods): still charged to this run's wall time
        timings["modes_s"] = modes.seconds
        t_start -= modes.seconds

    key_init, key_aux = jax.random.split(jax.random.PRNGKey(spec.seed))
    x0 = jnp.asarray(system.x0, dtype)
    t = time.perf_counter()
    reparam = make_reparam(spec.reparam, modes, system.n_atoms, dtype, bonds=system.bonds)
    params = jax.block_until_ready(reparam.init(key_init, x0))
    timings["init_s"] = time.perf_counter() - t
    aux = model.aux_init(key_aux, x0)

    sched = spec.schedule
    two_stage = spec.reparam.kind != "none"
    stage1_lr = spec.optim.stage1_lr or (
        spec.optim.learning_rate / 10 if spec.reparam.kind == "gnn" else spec.optim.learning_rate
    )
    identity = lambda p: p  # noqa: E731
    chunks = {
        2: make_chunk_fn(
            lambda p, a: model.train_energy_fn(p, a),
            identity,
            model.energy_fn,
            make_optimizer(spec.optim),
            spec.chunk_size,
        )
    }
    if two_stage:
        chunks[1] = make_chunk_fn(
            lambda p, a: model.train_energy_fn(reparam.apply(p), a),
            reparam.apply,
            model.energy_fn,
            make_optimizer(spec.optim, stage1_lr),
            spec.chunk_size,
        )
    stage = 1 if two_stage else 2
    tx = chunks[stage]
    opt_state = (
        make_optimizer(spec.optim, stage1_lr) if two_stage else make_optimizer(spec.optim)
    ).init(params)
    timings["compile_s"] += tx.compile(params, opt_state, aux)
    if two_stage:  # compile stage 2 up front too, so wall times exclude all compilation
        timings["compile_s"] += chunks[2].compile(x0, make_optimizer(spec.optim).init(x0), aux)

    energy_and_grad = jax.jit(jax.value_and_grad(model.energy_fn))
    x = reparam.apply(params)
    e0, g0 = jax.block_until_ready(energy_and_grad(x))  # compiled here, outside the clock
    columns: dict[str, list] = {}
    frames_step, frames_x = [], []
    compile_offset = time.perf_counter() - t_start - timings["modes_s"] - timings["init_s"]
    timings["compile_s"] = compile_offset

    def wall() -> float:
        return time.perf_counter() - t_start - compile_offset

    def log(step_: int, stage_: int, x_np: np.ndarray, energy: float, gnorm: float) -> dict:
        row = {
            "step": step_,
            "stage": stage_,
            "wall_time_s": wall(),
            "energy": energy,
            "grad_norm": gnorm,
        }
        if np.all(np.isfinite(x_np)):
            row.update(structure_metrics(x_np, system))
        else:  # diverged positions: keep the columns, mark the metrics missing
            row.update({k_: math.nan for k_ in columns if k_ not in row})
        for k_, v in row.items():
            columns.setdefault(k_, []).append(v)
        return row

    x_np = np.asarray(x, np.float64)
    first = log(0, stage, x_np, float(e0), float(jnp.linalg.norm(g0)))
    frames_step.append(0)
    frames_x.append(x_np)
    e_start = float(e0)
    if on_progress:
        on_progress(Progress([first], x_np))

    status, message = "done", "step budget reached"
    stop_state = stop_init()
    step = 0
    stage_start = 0
    switch_step = None
    switch_unreported = False  # the switch step travels once, on the next report
    last_aux_step = 0
    if not math.isfinite(e_start):
        status, message = "diverged", f"initial energy is not finite ({e_start})"
    while status == "done" and step < sched.max_steps:
        if should_stop():
            status, message = "stopped", f"stopped by request at step {step}"
            break
        out = tx(params, opt_state, aux)
        params, opt_state = out.params, out.opt_state
        step += spec.chunk_size
        energy, gnorm = float(out.energy), float(out.grad_norm)
        x_np = np.asarray(out.x, np.float64)
        row = log(step, stage, x_np, energy, gnorm)
        frame_due = step % spec.frame_every < spec.chunk_size
        if frame_due:
            frames_step.append(step)
            frames_x.append(x_np)
        if not math.isfinite(energy) or energy - e_start > EXPLODE_FACTOR * (abs(e_start) + 1.0):
            status = "diverged"
            message = (
                f"energy {energy:.4g} at step {step} (stage {stage}) is not finite or exploded"
            )
            if on_progress:
                on_progress(Progress([row], x_np))
            break
        if on_progress:
            on_progress(
                Progress(
                    [row], x_np if frame_due else None, switch_step if switch_unreported else None
                )
            )
        switch_unreported = False

        min_delta = sched.min_delta * (sched.stage1_delta_factor if stage == 1 else 1.0)
        stop_state, stop_now = stop_update(
            stop_state,
            energy,
            rule=sched.stopping,
            patience=sched.patience,
            min_delta=min_delta,
            rel_tol=sched.rel_tol,
            window=sched.window,
        )
        if stage == 1:
            steps_in_stage = step - stage_start
            switch = (
                sched.switch == "early-stop"
                and (stop_now or steps_in_stage >= sched.stage1_max_steps)
            ) or (sched.switch == "fixed" and steps_in_stage >= sched.stage1_steps)
            if switch:
                stage, stage_start, switch_step = 2, step, step
                switch_unreported = True
                tx = chunks[2]
                params = jnp.asarray(out.x, dtype)
                opt_state = make_optimizer(spec.optim).init(params)
                stop_state = stop_init()
        elif stop_now:
            message = f"converged: stopping rule '{sched.stopping}' fired at step {step}"
            break
        if model.aux_update is not None:
            aux = model.aux_update(
                jax.random.fold_in(key_aux, step), out.x, step, last_aux_step, aux
            )
            last_aux_step = step

    if frames_step[-1] != columns["step"][-1]:
        frames_step.append(columns["step"][-1])
        frames_x.append(x_np)
    timings["total_s"] = wall()
    metrics = {k_: np.asarray(v) for k_, v in columns.items()}
    return RunResult(
        spec=spec,
        status=status,
        message=message,
        metrics=metrics,
        frames_step=np.asarray(frames_step),
        frames_x=np.stack(frames_x),
        x_final=frames_x[-1],
        system=system,
        timings=timings,
        stage_switch_step=switch_step,
        modes=modes,
    )
