"""The one recorder of logged rows and frames, shared by engine.run and the OpenMM baselines.

``make_recorder(system, frame_every, clock) -> Recorder``, an optax-style bundle of pure
functions over an immutable ``RecorderState``:

- ``init() -> RecorderState``;
- ``record(state, observation, *, frame=False) -> (state, Progress)`` logs one row: step,
  stage, wall_time_s (read off ``clock`` as the row is made), energy, grad_norm and the
  system's structure metrics (NaN when the positions are not finite, so every row has the
  same columns). A frame (positions) is kept at the first row, at the first row at or past
  each multiple of ``frame_every``, and when ``frame`` is asked for. The Progress carries
  the new row, its positions when a frame was kept, and, on the first stage-2 row after a
  stage-1 row, the step of that last stage-1 row (``stage_switch_step``, so it travels once);
- ``result(state) -> Recorded``: the metrics columns and the frames, the last row always
  among them (so ``frames_x[-1]`` is the final positions).

The caller passes each Progress on (``on_progress``); ``wall_clock`` makes the clock.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import NamedTuple

import numpy as np

from .loop import Observation
from .systems import structure_metrics
from .types import Progress, System

BASE_COLUMNS = ("step", "stage", "wall_time_s", "energy", "grad_norm")


class RecorderState(NamedTuple):
    """What has been recorded. Rows and frames are linked lists, ``(newest, older)`` down to
    ``()``, so recording is O(1) and a state is never modified in place.

    Fields:
      rows: the logged row dicts (columns BASE_COLUMNS, then the structure metrics).
      frames: the kept frames, each (step, x [n_atoms, 3] float64).
      last_x: [n_atoms, 3] float64 positions of the newest row, or None before the first.
    """

    rows: tuple = ()
    frames: tuple = ()
    last_x: np.ndarray | None = None

    @property
    def last_step(self) -> int | None:
        """The newest row's step, or None before the first row."""
        return int(self.rows[0]["step"]) if self.rows else None


class Recorded(NamedTuple):
    """Fields: metrics, column name -> [n_rows] array (row 0 first); frames_step, [n_frames]
    int64; frames_x, [n_frames, n_atoms, 3] float64."""

    metrics: dict
    frames_step: np.ndarray
    frames_x: np.ndarray


class Recorder(NamedTuple):
    """Fields: init, record and result, as in the module docstring."""

    init: Callable[[], RecorderState]
    record: Callable[..., tuple[RecorderState, Progress]]
    result: Callable[[RecorderState], Recorded]


def wall_clock(t0: float, before_s: float = 0.0) -> Callable[[], float]:
    """() -> seconds: ``before_s`` (time already spent, e.g. slow modes) plus the time since
    ``time.perf_counter()`` read ``t0``."""
    return lambda: before_s + time.perf_counter() - t0


def make_recorder(system: System, frame_every: int, clock: Callable[[], float]) -> Recorder:
    """A recorder for ``system`` keeping a frame every ``frame_every`` steps.

    Args:
      system: the System whose structure metrics each row carries.
      frame_every: steps between kept frames (a frame at the first row at or past each
        multiple).
      clock: () -> wall seconds since the run started (see ``wall_clock``).
    """

    def record(state: RecorderState, obs: Observation, *, frame: bool = False):
        prev = state.rows[0] if state.rows else None
        row = {
            "step": int(obs.step),
            "stage": int(obs.stage),
            "wall_time_s": clock(),
            "energy": float(obs.energy),
            "grad_norm": float(obs.grad_norm),
        }
        row.update(_structure(system, obs.x, prev))
        x = np.array(obs.x, dtype=np.float64)
        due = frame or prev is None or obs.step // frame_every > prev["step"] // frame_every
        switch = prev["step"] if prev and prev["stage"] == 1 and obs.stage == 2 else None
        frames = ((row["step"], x), state.frames) if due else state.frames
        state = RecorderState((row, state.rows), frames, x)
        return state, Progress([row], x if due else None, switch)

    return Recorder(RecorderState, record, _result)


def _structure(system: System, x: np.ndarray, prev: dict | None) -> dict:
    """The structure metrics of x, or the same columns as NaN when x is not finite."""
    if np.all(np.isfinite(x)):
        return structure_metrics(x, system)
    # diverged positions: keep the columns (read off a finite row), mark the metrics missing
    if prev:
        names = [k for k in prev if k not in BASE_COLUMNS]
    else:  # the first row: the column names of any finite stand-in (x0 may be the bad one)
        stand_in = np.nan_to_num(np.asarray(system.x0, np.float64), nan=0.0, posinf=0.0, neginf=0.0)
        names = list(structure_metrics(stand_in, system))
    return dict.fromkeys(names, math.nan)


def _result(state: RecorderState) -> Recorded:
    """The columns and frames of every row recorded (at least one), oldest first."""
    rows, frames = _unlink(state.rows), _unlink(state.frames)
    names = dict.fromkeys(k for row in rows for k in row)
    metrics = {k: np.asarray([row.get(k, math.nan) for row in rows]) for k in names}
    if not frames or frames[-1][0] != rows[-1]["step"]:
        frames.append((rows[-1]["step"], state.last_x))
    steps = np.asarray([step for step, _ in frames], dtype=np.int64)
    return Recorded(metrics, steps, np.stack([x for _, x in frames]))


def _unlink(linked: tuple) -> list:
    """The items of a linked list ``(newest, older)``, oldest first."""
    items = []
    while linked:
        item, linked = linked
        items.append(item)
    return items[::-1]
