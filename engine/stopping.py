"""Early-stopping rules over logged energies (pure state machines, one per stage).

"reference" (method.md §6.2): at every check, if E < best - min_delta then best <- E and the
counter resets, else it grows; stop when it reaches ``patience``.
"relative": a moving average over ``window`` checks must drop by more than
rel_tol * |average| between checks; ``patience`` checks without that stop the stage. Robust to
the noise that a resampled objective or a large step size puts on single values.
"none": never stops (fixed step budget).
"""

from __future__ import annotations

import collections
import math
from typing import NamedTuple


class StopState(NamedTuple):
    best: float
    count: int
    history: tuple  # last `window` energies (relative rule)
    last_average: float


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
