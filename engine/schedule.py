"""The stage policy: when stage 1 hands over to stage 2, and when a run ends (pure).

``stage_policy(schedule, two_stage=..., structure=...)`` returns an optax-style pair of pure
functions, ``init(e_start, x_start=None) -> ScheduleState`` and
``update(state, observation) -> state``. After each chunk the host feeds the chunk's
Observation to ``update``, which, in this order:

1. ends the run "diverged" if the energy is not finite or exploded (EXPLODE_FACTOR), if the
   positions are not all finite (an energy can hide NaN positions: a safe distance maps them
   to a finite value), or if the structure flew apart (``structure_destroyed``: the radius
   of gyration beyond RG_BLOWUP_FACTOR times the start's while more than
   STRETCHED_BONDS_LIMIT of the bonds are stretched; needs the ``Structure`` of the system);
2. feeds the stopping rule (engine/stopping.py), which decides "stop the stage";
3. in stage 1, per ``schedule.switch``: "early-stop" switches to stage 2 when the rule fires
   or after ``stage1_max_steps``; "fixed" switches after ``stage1_steps`` (the rule is not
   consulted); "never" stays in stage 1, so the rule firing ends the run "converged";
   in stage 2 the rule firing ends the run "converged";
4. ends the run "done" once ``max_steps`` steps are taken (both stages together).

A switch only changes the state (``stage``, ``switch_step``, a fresh stopping-rule state);
the host moves the optimization over to x with stage 2's optimizer. ``request_stop`` ends
the run "stopped" (the caller's should_stop). Statuses and messages are those of RunResult.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import NamedTuple

import numpy as np

from .config import ScheduleConfig
from .loop import Observation
from .stopping import StoppingRule, StopState, stopping_rule

# An energy this far above the start (in units of |E0| + 1) counts as exploded.
EXPLODE_FACTOR = 1e6
# Structural divergence: an energy can settle (pure LJ at E = 1e-5) on a structure that flew
# apart (mean bond 329 rest lengths). The structure counts as destroyed when BOTH hold:
# - its radius of gyration exceeds RG_BLOWUP_FACTOR times the start's (a start folds or
#   unfolds by a few times at most; a tiny start, init_scale 0.01, legitimately grows
#   ~100x, which is why the bond condition is needed too), and
# - more than STRETCHED_BONDS_LIMIT of the bonds are stretched: longer than
#   engine.systems.STRETCH_FACTOR times their rest length (the logged metric
#   1 - bonds_intact_frac, ``engine.systems.bond_integrity``).
RG_BLOWUP_FACTOR = 10.0
STRETCHED_BONDS_LIMIT = 0.5
RUNNING = "running"


class Structure(NamedTuple):
    """What the structural divergence rule needs of a system.

    Fields:
      bonds: [n_bonds, 2] atom indices.
      rest: rest length of each bond, [n_bonds] or a scalar (the unit of the positions).
    """

    bonds: np.ndarray
    rest: np.ndarray | float


def structure_of(system) -> Structure:
    """The bonds and rest lengths of ``system``, as its logged bond metrics use them
    (``engine.systems.structure_metrics``): the loops' BOND_REST_LENGTH, else the bond
    lengths of the reference structure (or of x0)."""
    bonds = np.asarray(system.bonds, dtype=np.int64).reshape(-1, 2)
    if system.kind == "loop":
        from .loops import BOND_REST_LENGTH

        return Structure(bonds, float(BOND_REST_LENGTH))
    ref = np.asarray(system.reference if system.reference is not None else system.x0, float)
    rest = np.linalg.norm(ref[bonds[:, 0]] - ref[bonds[:, 1]], axis=1) if len(bonds) else 1.0
    return Structure(bonds, rest)


def radius_of_gyration(x: np.ndarray) -> float:
    """sqrt(mean |x_i - mean x|^2) of positions x [n_atoms, 3] (the logged metric)."""
    x = np.asarray(x, dtype=np.float64)
    return float(np.sqrt(np.mean(np.sum((x - x.mean(axis=0)) ** 2, axis=1))))


def structure_destroyed(x: np.ndarray, rg_start: float, structure: Structure) -> str:
    """Why positions x [n_atoms, 3] count as a destroyed structure (module constants), or ""."""
    from .systems import bond_integrity

    rg = radius_of_gyration(x)
    if not rg > RG_BLOWUP_FACTOR * rg_start:
        return ""
    stretched = 1.0 - bond_integrity(x, structure.bonds, structure.rest)["bonds_intact_frac"]
    if not stretched > STRETCHED_BONDS_LIMIT:
        return ""
    return (
        f"structure destroyed: radius of gyration {rg:.4g} (start {rg_start:.4g}, limit "
        f"{RG_BLOWUP_FACTOR:g}x) and {100 * stretched:.0f}% of bonds stretched"
    )


def nonfinite_positions(x) -> str:
    """Why x counts as non-finite positions, or "" (None: not observed)."""
    if x is None:
        return ""
    bad = ~np.isfinite(np.asarray(x, dtype=np.float64))
    if not bad.any():
        return ""
    atoms = int(np.any(bad.reshape(len(bad), -1), axis=1).sum()) if bad.ndim else 1
    return f"positions are not finite ({atoms} of {len(bad) if bad.ndim else 1} atoms)"


class ScheduleState(NamedTuple):
    """Where a run stands in its schedule.

    Fields:
      stage: the stage the next chunk runs in: 1 reparametrized, 2 plain positions.
      stage_start: the step at which the current stage began.
      stop: the stopping rule's state for the current stage.
      e_start: the energy at step 0 (the reference for "exploded").
      switch_step: the step at which stage 2 began, or None.
      status: "running" until the run ends, then "done", "stopped" or "diverged".
      message: why the run ended ("" while running).
      rg_start: the radius of gyration at step 0 (the reference for a destroyed structure),
        or None when the start positions were not given.
    """

    stage: int
    stage_start: int
    stop: StopState
    e_start: float
    switch_step: int | None = None
    status: str = RUNNING
    message: str = ""
    rg_start: float | None = None


class StagePolicy(NamedTuple):
    """Fields: init, (e_start, x_start=None) -> ScheduleState; update, (ScheduleState,
    Observation) -> ScheduleState. Both pure."""

    init: Callable[..., ScheduleState]
    update: Callable[[ScheduleState, Observation], ScheduleState]


def stage_policy(
    schedule: ScheduleConfig, *, two_stage: bool, structure: Structure | None = None
) -> StagePolicy:
    """The policy for ``schedule``; ``two_stage`` False runs stage 2 only (plain GD).
    ``structure`` (``structure_of(system)``) turns on the structural divergence rule, which
    also needs the start positions given to ``init``."""
    rule = stopping_rule(schedule)

    def init(e_start: float, x_start: np.ndarray | None = None) -> ScheduleState:
        state = ScheduleState(1 if two_stage else 2, 0, rule.init(), e_start)
        if not math.isfinite(e_start):
            return _end(state, "diverged", f"initial energy is not finite ({e_start})")
        bad = nonfinite_positions(x_start)
        if bad:
            return _end(state, "diverged", f"initial {bad}")
        if x_start is not None:
            state = state._replace(rg_start=radius_of_gyration(x_start))
        return state

    def update(state: ScheduleState, obs: Observation) -> ScheduleState:
        where = f"at step {obs.step} (stage {obs.stage})"
        if _exploded(obs.energy, state.e_start):
            message = f"energy {obs.energy:.4g} {where} is not finite or exploded"
            return _end(state, "diverged", message)
        bad = nonfinite_positions(obs.x)
        if bad:
            return _end(state, "diverged", f"{bad} {where}")
        if structure is not None and state.rg_start is not None and obs.x is not None:
            destroyed = structure_destroyed(obs.x, state.rg_start, structure)
            if destroyed:
                return _end(state, "diverged", f"{destroyed} {where}")
        state = state._replace(stop=rule.update(state.stop, obs))
        if state.stage == 1:
            state = _stage1(schedule, rule, state, obs)
        elif state.stop.fired:
            state = _end(state, "done", _converged(schedule, obs.step))
        if state.status == RUNNING and obs.step >= schedule.max_steps:
            state = _end(state, "done", "step budget reached")
        return state

    return StagePolicy(init, update)


def request_stop(state: ScheduleState, step: int) -> ScheduleState:
    """End the run "stopped" at ``step`` (the caller asked for it between chunks)."""
    return _end(state, "stopped", f"stopped by request at step {step}")


def _stage1(
    schedule: ScheduleConfig, rule: StoppingRule, state: ScheduleState, obs: Observation
) -> ScheduleState:
    """Stage 1 after the stopping rule saw ``obs``: switch, end the run, or carry on."""
    in_stage = obs.step - state.stage_start
    if schedule.switch == "never":  # stage 1 is the whole run: the rule ends it
        if state.stop.fired:
            return _end(state, "done", _converged(schedule, obs.step))
        return state
    if schedule.switch == "early-stop":
        switch = state.stop.fired or in_stage >= schedule.stage1_max_steps
    else:  # "fixed"
        switch = in_stage >= schedule.stage1_steps
    if not switch:
        return state
    return state._replace(stage=2, stage_start=obs.step, switch_step=obs.step, stop=rule.init())


def _exploded(energy: float, e_start: float) -> bool:
    return not math.isfinite(energy) or energy - e_start > EXPLODE_FACTOR * (abs(e_start) + 1.0)


def _converged(schedule: ScheduleConfig, step: int) -> str:
    return f"converged: stopping rule '{schedule.stopping}' fired at step {step}"


def _end(state: ScheduleState, status: str, message: str) -> ScheduleState:
    return state._replace(status=status, message=message)
