"""One optimization run: build, (slow modes), reparametrize, two stages of jitted chunks.

``run(spec, on_progress, should_stop, on_phase) -> RunResult``. Progress, cancellation and
phase reports are plain callables, so the caller (CLI, workbench worker thread, test) owns
threading.
Stage 1 optimizes the reparametrization's params; when the stage policy says so
(engine/schedule.py: the stopping rule fired, or a fixed number of steps) x <- apply(params)
and stage 2 optimizes x directly with a fresh optimizer. "none" (GD) runs stage 2 only.
Logged every chunk (engine/recorder.py): step, stage, wall time (from the start of slow-mode
computation, compilation excluded and reported apart), the full deterministic energy,
|dE/dx|, and the system's structure metrics. Numerical failure is a status: a non-finite or
exploding energy ends the run "diverged" with everything recorded so far.

Phases. ``on_phase(phase, detail)`` is called as the run moves on: "modes" (slow modes, for
the reparametrized methods; detail names the step, e.g. "Hessian of sample 3 of 40", and is
re-reported as it advances), "compiling" (reparam init and every stage's chunk; near-instant
when JAX's persistent compilation cache already holds these shapes), then "running" once,
right before the step-0 row is reported. Building the system is the caller's phase.
``should_stop`` is checked between chunks, at every slow-mode check point (engine/modes.py)
and before and after compiling. A run stopped before "running" returns status "stopped" with
no logged rows (the step-0 row costs a compilation of its own), its frames holding x0 at
step 0 (so ``x_final`` is x0) and the phase in its message; one stopped later keeps every row
logged so far, the step-0 row included.

Live frames. ``on_frame(step, x)``, when given, receives positions between logged rows: a
chunk that takes longer than ``frame_s`` runs in pieces of about ``frame_s`` each (the step
time measured on the chunks so far, ``FramePacer``), and x after each piece but the last
goes to ``on_frame``; the last piece's positions are the chunk's row as always. Display
only: rows, the stopping rule, the aux refresh and the stored frames stay at chunk
boundaries, and the pieces reuse the chunk's compiled kernel, so the trajectory is bitwise
the one without ``on_frame``; its cost (a dispatch and a copy of x per piece) is inside the
reported wall times. A stop request is also honoured between pieces (the last row is then
at the step reached).

The parts, in the optax/jax-md style, for callers that want to own the loop:
``init_run(spec, system, modes) -> (RunParts, RunState, Observation)`` builds everything once
(each stage's optimizer and compiled chunk included) and observes step 0;
``advance(parts, state, pacer, should_stop) -> (state, Observation)`` runs one jitted chunk
(in pieces when a ``FramePacer`` is given);
``apply_policy(parts, state, observation) -> state`` lets the stage policy switch stages or end
the run. ``run`` is the host loop over them, with a Recorder.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import threading
import time
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from .config import RunSpec
from .loop import Observation, Stage, make_chunk_fn, observe
from .optim import make_optimizer
from .recorder import Recorded, make_recorder, wall_clock
from .reparam import Reparam, make_reparam
from .schedule import (
    RUNNING,
    ScheduleState,
    StagePolicy,
    nonfinite_positions,
    request_stop,
    stage_policy,
    structure_of,
)
from .systems import build_system, make_energy
from .types import EnergyModel, PhaseFn, Progress, SlowModes, Stopped, System


@dataclasses.dataclass
class RunResult:
    """Everything a run produced.

    Fields:
      spec: the RunSpec that was run.
      status: "done", "stopped" (by should_stop), "diverged" or "failed".
      message: human-readable reason for the status.
      metrics: column name -> [n_rows] array; columns step, stage, wall_time_s, energy,
        grad_norm and the structure metrics; row 0 is step 0 at the initial configuration.
        A run stopped before its "running" phase has no rows (every column [0]).
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


def compute_modes(
    spec: RunSpec,
    system: System,
    model,
    *,
    should_stop: Callable[[], bool] | None = None,
    on_block: Callable[[str], None] | None = None,
) -> SlowModes:
    """The run's slow modes (``engine.modes.slow_modes`` with the spec's k); should_stop and
    on_block as there (raises Stopped)."""
    from .modes import slow_modes

    n_dof = system.n_atoms * (3 if spec.modes.method == "hessian" else 1)
    k = default_n_modes(spec, system.n_atoms)
    if k > n_dof:
        from .config import SpecError

        raise SpecError("reparam.n_modes", f"must be in [1, {n_dof}] for this system, got {k}")
    return slow_modes(
        system,
        model,
        spec.modes,
        k,
        seed=spec.seed,
        x=system.x0,
        should_stop=should_stop,
        on_block=on_block,
    )


class RunParts(NamedTuple):
    """What stays fixed during a run, built once by ``init_run``.

    Fields:
      spec: the RunSpec.
      system: the built System.
      modes: the SlowModes used, or None.
      model: the EnergyModel.
      dtype: the optimization dtype (jnp.float32 or jnp.float64).
      stages: stage number -> Stage (chunk runner and optimizer); 1 only for two-stage runs.
      policy: the StagePolicy (stage switches, the end of the run).
      key_aux: PRNG key of the aux updates (folded with the step).
      clock: () -> wall seconds since the run started, compilation excluded.
      timings: seconds: modes_s, init_s, compile_s (total_s is read off the clock at the end).
    """

    spec: RunSpec
    system: System
    modes: SlowModes | None
    model: EnergyModel
    dtype: Any
    stages: dict
    policy: StagePolicy
    key_aux: jax.Array
    clock: Callable[[], float]
    timings: dict


class RunState(NamedTuple):
    """What changes from chunk to chunk.

    Fields:
      params: what the current stage optimizes: the reparametrization's params (stage 1)
        or x [n_atoms, 3] (stage 2).
      opt_state: the current stage's optimizer state.
      aux: the energy's aux pytree (random subset, neighbour list), fixed shapes.
      x: [n_atoms, 3] device positions at ``step``.
      step: steps taken so far, both stages.
      last_aux_step: the step of the last aux update.
      schedule: the stage policy's state (stage, stopping rule, status, message).
    """

    params: Any
    opt_state: Any
    aux: Any
    x: jax.Array
    step: int
    last_aux_step: int
    schedule: ScheduleState


def run(
    spec: RunSpec,
    *,
    on_progress: Callable[[Progress], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
    system: System | None = None,
    modes: SlowModes | None = None,
    on_phase: PhaseFn | None = None,
    on_frame: Callable[[int, np.ndarray], None] | None = None,
    frame_s: float = 0.05,
) -> RunResult:
    """Run ``spec`` to completion, stop request or divergence.

    Args:
      spec: the run specification.
      on_progress: called after every chunk with a Progress (host numpy values).
      should_stop: polled between chunks, between slow-mode blocks and around compilation;
        True ends the run with status "stopped" (see the module docstring for what a run
        stopped before its first chunk holds).
      system: a prebuilt System for spec.system and spec.seed (saves rebuilding it).
      modes: precomputed slow modes (e.g. shared by several methods); their ``seconds``
        are still added to this run's wall time, so comparisons stay fair.
      on_phase: ``on_phase(phase, detail)`` with phase "modes", "compiling" or "running"
        (module docstring).
      on_frame: ``on_frame(step, x [n_atoms, 3] float64)``: positions between logged rows,
        about every ``frame_s`` seconds when a chunk takes longer (module docstring).
    Returns:
      RunResult. Invalid specs raise SpecError before anything runs; errors inside the
      loop other than numerical failure propagate to the caller.
    """
    should_stop = should_stop or (lambda: False)
    emit = on_progress or (lambda progress: None)
    t_start = time.perf_counter()
    system = system or build_system(spec.system, spec.seed)
    bad = nonfinite_positions(system.x0)  # before a neighbour list or modes refuse them
    if bad:
        seconds = time.perf_counter() - t_start
        return _no_rows(spec, system, "diverged", f"initial {bad}", seconds)
    try:
        parts, state, first = init_run(
            spec, system, modes, should_stop=should_stop, on_phase=on_phase
        )
    except Stopped as stop:
        return _stopped_early(spec, system, stop, time.perf_counter() - t_start)
    if on_phase is not None:
        on_phase("running", "")
    recorder = make_recorder(parts.system, spec.frame_every, parts.clock)
    log, progress = recorder.record(recorder.init(), first)
    emit(progress)
    pacer = FramePacer(on_frame, frame_s) if on_frame is not None else None
    while state.schedule.status == RUNNING:
        if should_stop():
            state = state._replace(schedule=request_stop(state.schedule, state.step))
            break
        state, obs = advance(parts, state, pacer, should_stop)
        state = apply_policy(parts, state, obs)
        # a diverged row keeps its positions: they are the ones to look at
        log, progress = recorder.record(log, obs, frame=state.schedule.status == "diverged")
        emit(progress)
    return _result(parts, state, recorder.result(log))


def init_run(
    spec: RunSpec,
    system: System | None = None,
    modes: SlowModes | None = None,
    *,
    should_stop: Callable[[], bool] | None = None,
    on_phase: PhaseFn | None = None,
) -> tuple[RunParts, RunState, Observation]:
    """Build a run's parts, compile its chunks and observe step 0.

    Args:
      spec, system, modes: as for ``run``.
      should_stop: checked at every slow-mode check point and before and after compiling.
      on_phase: reports "modes" (with progress details) and "compiling", as for ``run``.
    Returns:
      (parts, state at step 0, the Observation of step 0). Wall times exclude everything
      compiled here (reported as timings["compile_s"]).
    Raises:
      Stopped: ``should_stop`` returned True (``Stopped.phase`` says where).
    """
    should_stop = should_stop or (lambda: False)
    phase = on_phase if on_phase is not None else (lambda name, detail="": None)
    system = system or build_system(spec.system, spec.seed)
    dtype = jnp.float64 if spec.energy.dtype == "float64" else jnp.float32
    t_start = time.perf_counter()
    key = _prepared_key(spec, system) if modes is None else None
    if key is not None and _PREPARED.pending(key):
        phase("compiling", "shared with a run of the same settings being prepared")
    prepared = _PREPARED.get_or_claim(key, should_stop)
    reused = prepared is not None  # the same spec on the same structure ran in this process
    if reused:
        modes_spent = 0.0
        _check(should_stop, "compiling")
    else:
        try:
            prepared, modes_spent = _prepare(spec, system, modes, dtype, should_stop, phase)
        except BaseException:
            _PREPARED.release(key)  # stopped or failed: a waiting run prepares it itself
            raise
        _PREPARED.put(key, prepared)  # and wakes the runs waiting for it
    model, modes, reparam, params, aux, key_aux, init_s, stages, observe_fn = prepared
    stage = min(stages)
    opt_state = stages[stage].tx.init(params)
    x = reparam.apply(params)
    first = _observe_start(observe_fn, x, stage)
    t_ready = time.perf_counter()  # the clock starts here: all compilation is behind us
    modes_s = modes.seconds if modes is not None else 0.0
    spent_here = t_ready - t_start - modes_spent
    compile_s = spent_here if reused else spent_here - init_s
    timings = {"modes_s": modes_s, "init_s": init_s, "compile_s": compile_s, "total_s": 0.0}
    policy = stage_policy(spec.schedule, two_stage=1 in stages, structure=structure_of(system))
    clock = wall_clock(t_ready, before_s=modes_s + init_s)
    parts = RunParts(spec, system, modes, model, dtype, stages, policy, key_aux, clock, timings)
    schedule = policy.init(first.energy, first.x)  # x: non-finite or destroyed structures
    return parts, RunState(params, opt_state, aux, x, 0, 0, schedule), first


def make_stage(spec: RunSpec, model: EnergyModel, reparam: Reparam, stage: int) -> Stage:
    """Stage ``stage``'s optimizer and its jitted chunk, built once per run.

    Stage 1 optimizes the reparametrization's params at the stage-1 rate (default: the
    learning rate, a tenth of it for the GNN); stage 2 optimizes x at the learning rate.
    """
    if stage == 1:
        tx = make_optimizer(spec.optim, _stage1_lr(spec))
        objective = lambda p, a: model.train_energy_fn(reparam.apply(p), a)  # noqa: E731
        apply_fn = reparam.apply
    else:
        tx = make_optimizer(spec.optim)
        objective = lambda p, a: model.train_energy_fn(p, a)  # noqa: E731
        apply_fn = lambda p: p  # noqa: E731
    chunk = make_chunk_fn(objective, apply_fn, model.energy_fn, tx, spec.chunk_size)
    return Stage(chunk, tx)


class FramePacer:
    """Cuts chunks into pieces of about ``period_s`` seconds for live frames (``run``).

    The first chunk runs whole and measures the time per step; after it, a piece is as many
    steps as fit in ``period_s`` at the measured rate (at least one, at most what is left
    of the chunk), and every piece updates the rate (the mean of the latest two, so it
    follows a machine getting busier or freer within a couple of pieces).

    Fields: on_frame, the ``on_frame(step, x)`` callable; period_s; step_s, the measured
    seconds per step (None before the first chunk).
    """

    def __init__(self, on_frame: Callable[[int, np.ndarray], None], period_s: float):
        if not period_s > 0:
            raise ValueError(f"period_s must be > 0, got {period_s}")
        self.on_frame, self.period_s = on_frame, float(period_s)
        self.step_s: float | None = None
        self._rate: float | None = None  # the latest piece's seconds per step

    def piece(self, remaining: int) -> int:
        """Steps of the next piece when ``remaining`` steps of the chunk are left."""
        if self.step_s is None or self.step_s <= 0:
            return remaining
        return max(1, min(remaining, int(self.period_s / self.step_s)))

    def measured(self, count: int, seconds: float) -> None:
        """A piece of ``count`` steps took ``seconds``."""
        rate = seconds / count
        self.step_s = rate if self._rate is None else 0.5 * (self._rate + rate)
        self._rate = rate


def advance(
    parts: RunParts,
    state: RunState,
    pacer: FramePacer | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> tuple[RunState, Observation]:
    """Run one jitted chunk of the current stage.

    The aux (random subset, neighbour list) is refreshed first from the positions the last
    chunk ended at, so it is only updated when another chunk follows. With a ``pacer`` the
    chunk runs in its pieces, x after each piece but the last goes to ``pacer.on_frame``,
    and ``should_stop`` is checked between pieces (True ends the chunk where it is).
    Returns:
      (state ``chunk_size`` steps later, or fewer when stopped between pieces; the
      Observation at its end).
    """
    state = _refresh_aux(parts, state)
    stage = state.schedule.stage
    chunk = parts.stages[stage].chunk
    size = parts.spec.chunk_size
    if pacer is None:
        out = chunk(state.params, state.opt_state, state.aux)
        step = state.step + size
        state = state._replace(params=out.params, opt_state=out.opt_state, x=out.x, step=step)
        return state, observe(out, step, stage)
    params, opt_state, done = state.params, state.opt_state, 0
    while True:
        count = pacer.piece(size - done)
        t = time.perf_counter()
        piece = chunk.steps(params, opt_state, state.aux, count)
        x = np.asarray(piece.x, np.float64)  # waits for the piece
        pacer.measured(count, time.perf_counter() - t)
        params, opt_state, done = piece.params, piece.opt_state, done + count
        if done == size or (should_stop is not None and should_stop()):
            break
        pacer.on_frame(state.step + done, x)
    energy, grad_norm = chunk.observe(piece.x)
    step = state.step + done
    state = state._replace(params=params, opt_state=opt_state, x=piece.x, step=step)
    return state, Observation(step, stage, float(energy), float(grad_norm), x)


def apply_policy(parts: RunParts, state: RunState, obs: Observation) -> RunState:
    """Feed ``obs`` to the stage policy; on a switch, stage 2 starts from x with a fresh
    optimizer state."""
    schedule = parts.policy.update(state.schedule, obs)
    state = state._replace(schedule=schedule)
    if schedule.stage != obs.stage:
        params = jnp.asarray(state.x, parts.dtype)
        state = state._replace(params=params, opt_state=parts.stages[2].tx.init(params))
    return state


def _refresh_aux(parts: RunParts, state: RunState) -> RunState:
    """The aux after ``state.step`` (the energy's aux_update; nothing at step 0)."""
    if parts.model.aux_update is None or state.step == 0:
        return state
    key = jax.random.fold_in(parts.key_aux, state.step)
    aux = parts.model.aux_update(key, state.x, state.step, state.last_aux_step, state.aux)
    return state._replace(aux=aux, last_aux_step=state.step)


def _slow_modes(spec: RunSpec, system: System, model: EnergyModel, modes, should_stop, phase):
    """(the run's slow modes or None, seconds spent computing them here: 0 if precomputed);
    reports phase "modes" with slow_modes' progress phrases; raises Stopped."""
    if not spec.reparam.needs_modes:
        return None, 0.0
    if modes is not None:  # precomputed: modes.seconds still counts in the wall time
        return modes, 0.0
    phase("modes", "")
    modes = compute_modes(
        spec, system, model, should_stop=should_stop, on_block=lambda d: phase("modes", d)
    )
    return modes, modes.seconds


def use_compilation_cache(directory: str) -> None:
    """Keep every kernel JAX compiles in its persistent compilation cache under ``directory``
    (JAX creates it), so a second run of the same shapes, in this process or a later one,
    loads the executable instead of compiling it.

    The size and compile-time thresholds are lifted (JAX by default skips kernels compiled in
    under a second, which is most of ours) and the cache is re-initialised, so this takes
    effect even after something was compiled. Call it once per process, before the runs.
    NOTE: a kernel that closes over arrays (pair lists, slow modes) embeds them, so its cache
    key is the system and the modes as well as the shapes.
    """
    from jax.experimental.compilation_cache import compilation_cache

    jax.config.update("jax_compilation_cache_dir", str(directory))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", -1)
    compilation_cache.reset_cache()


def _check(should_stop: Callable[[], bool], phase: str) -> None:
    if should_stop():
        raise Stopped(phase, f"stopped by request while {PHASE_WORDS.get(phase, phase)}")


# How a run stopped before its first chunk names the phase in its message.
PHASE_WORDS = {"modes": "computing slow modes", "compiling": "compiling"}


def _stopped_early(spec: RunSpec, system: System, stop: Stopped, seconds: float) -> RunResult:
    """The RunResult of a run stopped before "running": no rows, x0 as its only frame."""
    words = PHASE_WORDS.get(stop.phase, stop.phase or "preparing")
    message = f"stopped by request while {words}, before the first step"
    return _no_rows(spec, system, "stopped", message, seconds)


def _no_rows(spec: RunSpec, system: System, status: str, message: str, seconds: float):
    """The RunResult of a run that ended before its step-0 row: x0 as its only frame."""
    from .recorder import BASE_COLUMNS

    x0 = np.asarray(system.x0, np.float64)
    metrics = {name: np.zeros(0, np.int64 if name in ("step", "stage") else np.float64)
               for name in BASE_COLUMNS}  # fmt: skip
    return RunResult(
        spec=spec,
        status=status,
        message=message,
        metrics=metrics,
        frames_step=np.zeros(1, np.int64),
        frames_x=x0[None],
        x_final=x0,
        system=system,
        timings={"modes_s": 0.0, "init_s": 0.0, "compile_s": 0.0, "total_s": seconds},
    )


class Prepared(NamedTuple):
    """What ``init_run`` builds for a spec on a structure before step 0: reusable as it is by
    another run of the same spec (everything in it is immutable or stateless)."""

    model: EnergyModel
    modes: SlowModes | None
    reparam: Reparam
    params: Any
    aux: Any
    key_aux: jax.Array
    init_s: float
    stages: dict
    observe_fn: Callable


class _PreparedCache:
    """The last few ``Prepared`` runs of this process, so that a repeated Run (the server's
    warm-up, then the user's click on the same preset) skips the slow modes and JAX's tracing
    and compiling: the persistent compilation cache only skips XLA's compile, and re-tracing a
    GNN chunk took ~3 s of the opening demo's click-to-motion (bench/bench_ui.py)."""

    def __init__(self, size: int):
        self.size = size
        self._items: dict = {}
        self._pending: dict = {}  # key -> Event set when the thread preparing it is done
        self._lock = threading.Lock()

    def get_or_claim(self, key, should_stop: Callable[[], bool]) -> Prepared | None:
        """The prepared parts of ``key``, or None with the key claimed: the caller prepares
        it and must ``put`` or ``release`` it. While another thread prepares the same key
        (a click during the server's warm-up) this waits for it rather than compiling the
        same kernels a second time on the same cores. Raises Stopped when asked to stop."""
        if key is None:
            return None
        while True:
            with self._lock:
                value = self._items.pop(key, None)
                if value is not None:
                    self._items[key] = value  # most recent last
                    return value
                event = self._pending.get(key)
                if event is None:
                    self._pending[key] = threading.Event()
                    return None
            while not event.wait(0.05):
                _check(should_stop, "compiling")

    def put(self, key, value: Prepared) -> None:
        if key is None:
            return
        with self._lock:
            self._items[key] = value
            while len(self._items) > self.size:
                self._items.pop(next(iter(self._items)))
        self.release(key)

    def pending(self, key) -> bool:
        with self._lock:
            return key in self._pending and key not in self._items

    def release(self, key) -> None:
        """End a claim (after ``put``, or after preparing failed: a waiter then prepares)."""
        with self._lock:
            event = self._pending.pop(key, None)
        if event is not None:
            event.set()

    def clear(self) -> None:
        with self._lock:
            self._items.clear()


_PREPARED = _PreparedCache(size=4)


def clear_prepared() -> None:
    """Forget every prepared run of this process (tests; a server freeing memory)."""
    _PREPARED.clear()


PREPARED_MAX_ATOMS = 5000  # larger systems are not kept: their modes and arrays are large


def _prepared_key(spec: RunSpec, system: System):
    """What a run's prepared parts depend on: the spec without its schedule (which only drives
    the stopping policy) and the structure's content; None when not to be kept."""
    if system.n_atoms > PREPARED_MAX_ATOMS:
        return None
    fields = spec.to_dict()
    fields.pop("schedule")
    fields.pop("frame_every")
    fields.pop("method_label")
    digest = hashlib.sha256()
    for array in (system.x0, system.bonds):
        digest.update(np.ascontiguousarray(array).tobytes())
    digest.update(f"{system.kind}|{system.name}|{system.n_atoms}".encode())
    return json.dumps(fields, sort_keys=True, default=str), digest.hexdigest()


def _prepare(spec, system, modes, dtype, should_stop, phase) -> tuple[Prepared, float]:
    """Slow modes, reparam init, every stage's compiled chunk, the step-0 energy function;
    and the seconds spent here on slow modes."""
    model = make_energy(system, spec.energy)
    modes, modes_spent = _slow_modes(spec, system, model, modes, should_stop, phase)
    phase("compiling", "")
    _check(should_stop, "compiling")
    reparam, params, aux, key_aux, init_s = _init_variables(spec, system, model, modes, dtype)
    stages = {n: make_stage(spec, model, reparam, n) for n in _stage_numbers(spec)}
    opt_state = stages[min(stages)].tx.init(params)
    _check(should_stop, "compiling")
    _compile(stages, params, opt_state, aux, jnp.asarray(system.x0, dtype))
    _check(should_stop, "compiling")
    observe_fn = jax.jit(jax.value_and_grad(model.energy_fn))
    prepared = Prepared(model, modes, reparam, params, aux, key_aux, init_s, stages, observe_fn)
    return prepared, modes_spent


def _init_variables(spec, system, model, modes, dtype):
    """(reparam, its params, the energy's aux, the aux key, seconds of reparam init incl.
    fit), all seeded by spec.seed."""
    key_init, key_aux = jax.random.split(jax.random.PRNGKey(spec.seed))
    x0 = jnp.asarray(system.x0, dtype)
    t = time.perf_counter()
    reparam = make_reparam(spec.reparam, modes, system.n_atoms, dtype, bonds=system.bonds)
    params = jax.block_until_ready(reparam.init(key_init, x0))
    init_s = time.perf_counter() - t
    return reparam, params, model.aux_init(key_aux, x0), key_aux, init_s


def _observe_start(observe_fn: Callable, x: jax.Array, stage: int) -> Observation:
    """Step 0: the full energy and |dE/dx| at x (compiled on first use, outside the clock)."""
    e0, g0 = jax.block_until_ready(observe_fn(x))
    return Observation(0, stage, float(e0), float(jnp.linalg.norm(g0)), np.asarray(x, np.float64))


def _stage_numbers(spec: RunSpec) -> tuple[int, ...]:
    """(1, 2) for a reparametrized run, (2,) for plain GD."""
    return (2,) if spec.reparam.kind == "none" else (1, 2)


def _stage1_lr(spec: RunSpec) -> float:
    if spec.optim.stage1_lr:
        return spec.optim.stage1_lr
    lr = spec.optim.learning_rate
    return lr / 10 if spec.reparam.kind == "gnn" else lr


def _compile(stages: dict, params, opt_state, aux, x0) -> None:
    """Compile every stage's chunk now, so that wall times exclude all compilation."""
    first = min(stages)
    stages[first].chunk.compile(params, opt_state, aux)
    if first == 1:
        stages[2].chunk.compile(x0, stages[2].tx.init(x0), aux)


def _result(parts: RunParts, state: RunState, recorded: Recorded) -> RunResult:
    return RunResult(
        spec=parts.spec,
        status=state.schedule.status,
        message=state.schedule.message,
        metrics=recorded.metrics,
        frames_step=recorded.frames_step,
        frames_x=recorded.frames_x,
        x_final=recorded.frames_x[-1],
        system=parts.system,
        timings={**parts.timings, "total_s": parts.clock()},
        stage_switch_step=state.schedule.switch_step,
        modes=parts.modes,
    )
