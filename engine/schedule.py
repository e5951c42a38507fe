"""The stage policy: when stage 1 hands over to stage 2, and when a run ends (pure).

``stage_policy(schedule, two_stage=...)`` returns an optax-style pair of pure functions,
``init(e_start) -> ScheduleState`` and ``update(state, observation) -> state``. After each
chunk the host feeds the chunk's Observation to ``update``, which, in this order:

1. ends the run "diverged" if the energy is not finite or exploded (EXPLODE_FACTOR);
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

from .config import ScheduleConfig
from .loop import Observation
from .stopping import StoppingRule, StopState, stopping_rule

# An energy this far above the start (in units of |E0| + 1) counts as exploded.
EXPLODE_FACTOR = 1e6
RUNNING = "running"


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
    """

    stage: int
    stage_start: int
    stop: StopState
    e_start: float
    switch_step: int | None = None
    status: str = RUNNING
    message: str = ""


class StagePolicy(NamedTuple):
    """Fields: init, (e_start) -> ScheduleState; update, (ScheduleState, Observation) ->
    ScheduleState. Both pure."""

    init: Callable[[float], ScheduleState]
    update: Callable[[ScheduleState, Observation], ScheduleState]


def stage_policy(schedule: ScheduleConfig, *, two_stage: bool) -> StagePolicy:
    """The policy for ``schedule``; ``two_stage`` False runs stage 2 only (plain GD)."""
    rule = stopping_rule(schedule)

    def init(e_start: float) -> ScheduleState:
        state = ScheduleState(1 if two_stage else 2, 0, rule.init(), e_start)
        if not math.isfinite(e_start):
            return _end(state, "diverged", f"initial energy is not finite ({e_start})")
        return state

    def update(state: ScheduleState, obs: Observation) -> ScheduleState:
        if _exploded(obs.energy, state.e_start):
            message = (
                f"energy {obs.energy:.4g} at step {obs.step} (stage {obs.stage}) is not finite "
                "or exploded"
            )
            return _end(state, "diverged", message)
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
