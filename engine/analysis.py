"""Reading curves: when a run first reached a level, its final value, and the default level.

One definition for the CLI's ``compare`` summary, the workbench's speed-up table and the
benchmarks. A non-finite value never counts: a diverged run does not "reach" a level at its
NaN rows, and its final value is its last finite one.

Two ways to ask "when did the curve first reach ``threshold``":
  - ``first_reach(values, threshold, steps, times)`` scans a whole curve, O(n);
  - on a growing curve, keep ``running_best(values)`` (non-increasing, appended to as rows
    arrive) and ask ``first_reach_index(best, threshold)``, O(log n) per question, so a poll
    that re-asks for a new threshold costs nothing proportional to the history.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import NamedTuple

import numpy as np


class Reach(NamedTuple):
    """The first logged row at or below a threshold: its step and wall time (s)."""

    step: int
    time_s: float


def running_best(values) -> np.ndarray:
    """[n] running minimum of ``values`` with non-finite entries ignored (+inf until the first
    finite one): non-increasing, so ``first_reach_index`` can bisect it."""
    v = np.asarray(values, dtype=np.float64)
    return np.minimum.accumulate(np.where(np.isfinite(v), v, np.inf)) if v.size else v


def first_reach_index(best: np.ndarray, threshold: float) -> int | None:
    """Index of the first entry of a running minimum (``running_best``) <= threshold, or None."""
    if not len(best) or not math.isfinite(threshold):
        return None
    i = int(np.searchsorted(-best, -threshold, side="left"))  # -best is non-decreasing
    return i if i < len(best) else None


def first_reach(values, threshold: float, steps, times) -> Reach | None:
    """The first row whose finite value is <= threshold, or None.

    Args:
      values, steps, times: [n] columns of one curve (metric, step, wall time in s).
      threshold: the level to reach (same unit as ``values``).
    """
    i = first_reach_index(running_best(values), threshold)
    return None if i is None else Reach(int(steps[i]), float(times[i]))


def final_value(values) -> float | None:
    """The last finite value of a curve, or None when it has none."""
    v = np.asarray(values, dtype=np.float64)
    finite = np.flatnonzero(np.isfinite(v))
    return float(v[finite[-1]]) if finite.size else None


def default_threshold(finals: Mapping[str, float | None], base: str | None = None) -> float | None:
    """The default level to reach: the base run's (GD's) final value plus 1 % of its magnitude;
    without a finite base, the worst finite final value. None when no run has a finite value.

    Args:
      finals: {run key: final value or None}.
      base: the key of the reference run (``"gd"`` in the CLI, GD's run id in the workbench).
    """
    finite = {k: v for k, v in finals.items() if v is not None and math.isfinite(v)}
    if not finite:
        return None
    level = finite[base] if base in finite else max(finite.values())
    return level + 0.01 * abs(level)
