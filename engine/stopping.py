"""Early-stopping rules over logged energies (pure state machines, one per stage).

"reference" (method.md §6.2): at every check, if E < best - min_delta then best <- E and the
counter resets, else it grows; stop when it reaches ``patience``.
"relative": a moving average over ``window`` checks must drop by more than
rel_tol * |average| between checks; ``patience`` checks without that stop the stage. Robust to
the noise that a resampled objective or a large step size puts on single values.
"none": never stops (fixed step budget).

``stopping_rule(schedule)`` packages the configured rule as an optax-style pair of pure
functions, ``init() -> StopState`` and ``update(state, observation) -> state``; the new
state's ``fired`` says "stop the stage". What stopping a stage means (switch to stage 2 or
end the run) is the stage policy's call (engine/schedule.py).
"""

from __future__ import annotations

import collections
import math
from collections.abc import Callable
from typing import TYPE_CHECKING, NamedTuple

if TYPE_CHECKING:
    from .config import ScheduleConfig
    from .loop import Observation


class StopState(NamedTuple):
    """Fields: best energy so far; count of checks without progress; history, the last
    ``window`` energies (relative rule); last_average of that history; fired, whether the
    rule fired at the last observation."""

    best: float
    count: int
    history: tuple
    last_average: float
    fired: bool = False


def stop_init() -> StopState:
    return StopState(best=math.inf, count=0, history=(), last_average=math.inf)


def stop_update(
    state: StopState,
    energy: float,
    *,
    rule: str,
    patience: int,
    min_delta: float,
    rel_tol: float,
    window: int,
) -> tuple[StopState, bool]:
    """Feed one logged energy; returns (new state, whether to stop)."""
    if rule == "none":
        return state, False
    if rule == "reference":
        if energy < state.best - min_delta:
            state = state._replace(best=energy, count=0)
        else:
            state = state._replace(count=state.count + 1)
        return state, state.count >= patience
    history = tuple(collections.deque(state.history + (energy,), maxlen=window))
    average = sum(history) / len(history)
    if len(history) < window:
        return state._replace(
            history=history, last_average=average, best=min(state.best, energy)
        ), False
    improved = state.last_average - average > rel_tol * max(abs(average), 1e-300)
    count = 0 if improved else state.count + 1
    state = StopState(
        best=min(state.best, energy), count=count, history=history, last_average=average
    )
    return state, count >= patience


class StoppingRule(NamedTuple):
    """A stopping rule as two pure functions (optax style).

    Fields:
      init: () -> StopState, the state at the start of a stage.
      update: (StopState, Observation) -> StopState; ``fired`` on the result says whether
        to stop the stage at this observation.
    """

    init: Callable[[], StopState]
    update: Callable[[StopState, Observation], StopState]


def stopping_rule(schedule: ScheduleConfig) -> StoppingRule:
    """The configured rule (``schedule.stopping``) with its patience and tolerances.

    Stage 1 uses ``min_delta * stage1_delta_factor``, read off the observation's stage.
    """

    def update(state: StopState, obs: Observation) -> StopState:
        factor = schedule.stage1_delta_factor if obs.stage == 1 else 1.0
        state, fired = stop_update(
            state,
            obs.energy,
            rule=schedule.stopping,
            patience=schedule.patience,
            min_delta=schedule.min_delta * factor,
            rel_tol=schedule.rel_tol,
            window=schedule.window,
        )
        return state._replace(fired=fired)

    return StoppingRule(stop_init, update)
