"""Live buffers: what the polls read of one run, kept so each poll costs what is new.

``Columns`` holds a run's logged rows as growing numpy columns (capacity doubles, so appending
k rows costs O(k) amortized) and, per column, the running best (``engine.analysis.running_best``
semantics: the minimum so far, non-finite values ignored) and the last finite value, both
updated as rows arrive. So ``rows(since)`` copies only the rows after ``since``, ``final`` is
O(1) and ``reach`` is O(log n) (``engine.analysis.first_reach_index``). Nothing here copies a
run's whole history except ``columns()``, which exports and the store use once.

``LiveBuffer`` adds a ``click_time_s`` column to every row it is given one for (seconds from
the run group's submission, the user's Run click, to the row's arrival on the server), the
replay frames (thinned to ``max_frames``, never the last), the newest
frame with its counter, the stage-switch step and the latest row's summary.

Neither class locks: the registry holds its lock around every call.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np

from engine import analysis


def _is_int(v) -> bool:
    return isinstance(v, (int, np.integer)) and not isinstance(v, bool)


class Columns:
    """Logged rows of one run as growing columns (see the module docstring)."""

    def __init__(self):
        self._n = 0
        self._cap = 0
        self._data: dict[str, np.ndarray] = {}  # name -> [cap] int64 or float64
        self._best: dict[str, np.ndarray] = {}  # name -> [cap] float64 running minimum
        self._final: dict[str, float] = {}  # name -> last finite value

    def __len__(self) -> int:
        return self._n

    @property
    def names(self) -> list[str]:
        return list(self._data)

    @classmethod
    def from_columns(cls, metrics: Mapping[str, Sequence]) -> Columns:
        """Columns holding ``metrics`` ({name: [n] array}), e.g. a bundle read from disk."""
        cols = cls()
        names = list(metrics)
        n = len(metrics[names[0]]) if names else 0
        cols._reserve(n)
        for name in names:
            values = np.asarray(metrics[name])
            cols._add(name, int if values.dtype.kind in "iu" else float)
            cols._write(name, 0, values)
        cols._n = n
        return cols

    def extend(self, rows: Sequence[Mapping]) -> None:
        """Append logged rows (dicts of numbers); a missing value is NaN, a new key a new
        column (NaN for the earlier rows)."""
        if not rows:
            return
        for row in rows:
            for name, v in row.items():
                if name not in self._data:
                    self._add(name, int if _is_int(v) else float)
        lo = self._n
        self._reserve(lo + len(rows))
        for name in self._data:
            values = [row.get(name, math.nan) for row in rows]
            if self._data[name].dtype.kind == "i" and not all(_is_int(v) for v in values):
                self._data[name] = self._data[name].astype(np.float64)
            self._write(name, lo, np.asarray(values, self._data[name].dtype))
        self._n = lo + len(rows)

    def rows(self, start: int = 0) -> tuple[dict, ...]:
        """Rows ``start:`` as fresh dicts of Python numbers (only those rows are copied)."""
        start = max(0, min(int(start), self._n))
        names = list(self._data)
        cells = [self._data[k][start : self._n].tolist() for k in names]
        return tuple(dict(zip(names, vals, strict=True)) for vals in zip(*cells, strict=True))

    def columns(self) -> dict[str, np.ndarray]:
        """A copy of every column, [n] each (exports and the store; O(n))."""
        return {k: v[: self._n].copy() for k, v in self._data.items()}

    def final(self, name: str) -> float | None:
        """The last finite value of ``name`` (``engine.analysis.final_value``), O(1)."""
        return self._final.get(name)

    def reach(self, name: str, threshold: float) -> analysis.Reach | None:
        """The first row with a finite ``name`` <= threshold (``engine.analysis.first_reach``),
        O(log n); step and wall time come from the "step" and "wall_time_s" columns."""
        if name not in self._best or "step" not in self._data:
            return None
        i = analysis.first_reach_index(self._best[name][: self._n], threshold)
        if i is None:
            return None
        times = self._data.get("wall_time_s")
        return analysis.Reach(
            int(self._data["step"][i]), float(times[i]) if times is not None else 0.0
        )

    # ---- internals ---------------------------------------------------------------------------
    def _reserve(self, n: int) -> None:
        if n <= self._cap:
            return
        cap = max(n, 2 * self._cap, 64)
        for store in (self._data, self._best):
            for name, arr in store.items():
                grown = np.empty(cap, arr.dtype)
                grown[: self._n] = arr[: self._n]
                store[name] = grown
        self._cap = cap

    def _add(self, name: str, kind: type) -> None:
        dtype = np.int64 if kind is int else np.float64
        self._data[name] = np.full(self._cap, 0 if kind is int else math.nan, dtype)
        self._best[name] = np.full(self._cap, math.inf)
        if kind is int and self._n:  # earlier rows lack it: NaN needs a float column
            self._data[name] = self._data[name].astype(np.float64)
            self._data[name][: self._n] = math.nan

    def _write(self, name: str, lo: int, values: np.ndarray) -> None:
        """Store values at rows lo..; extend the running best and the last finite value."""
        hi = lo + len(values)
        self._data[name][lo:hi] = values
        best = analysis.running_best(values)
        if lo:
            best = np.minimum(best, self._best[name][lo - 1])
        self._best[name][lo:hi] = best
        last = analysis.final_value(values)
        if last is not None:
            self._final[name] = last


class LiveBuffer:
    """Rows, frames and the latest state of one run, as the engine reported them."""

    def __init__(self, max_frames: int):
        self.max_frames = max_frames
        self.columns = Columns()
        self.frames: list[tuple[int, np.ndarray]] = []  # [(step, x [n, 3] float32)], thinned
        self.frame_no = 0  # counts every newest frame published (the browser's "since")
        self.frame_step = 0
        self.frame_x: np.ndarray | None = None
        self.stage_switch_step: int | None = None
        self.last: dict = {}  # the newest row's step, stage, energy, wall_time

    def push(self, progress, click_time_s: float | None = None) -> None:
        """Take one ``engine.Progress``: its new rows, its frame (if any), the switch step.

        click_time_s: seconds from the group's submission to now, stored in each new row's
        ``click_time_s`` column (None: no such column).
        """
        if progress.stage_switch_step is not None:  # sent once by the engine
            self.stage_switch_step = int(progress.stage_switch_step)
        rows = progress.rows
        if click_time_s is not None:
            rows = [{**row, "click_time_s": float(click_time_s)} for row in rows]
        self.columns.extend(rows)
        self.last = _last(progress.rows[-1]) if progress.rows else self.last
        if progress.x is not None:
            self._publish(int(progress.step), np.asarray(progress.x, np.float32))
            self.frames.append((self.frame_step, self.frame_x))
            if len(self.frames) > self.max_frames:
                self.frames = self.frames[:-1:2] + [self.frames[-1]]

    def show(self, step: int, x: np.ndarray) -> None:
        """Publish positions between logged rows (``engine.run``'s on_frame) as the newest
        frame for the live stream; not kept for replay."""
        self._publish(step, x)

    def end(self, frames: list, x_final) -> None:
        """Replace the frames by a finished run's (``kept_frames``) and publish its final
        positions x_final [n, 3] as the newest frame."""
        self.frames = frames
        if frames:
            self._publish(frames[-1][0], np.asarray(x_final, np.float32))

    def load(self, metrics: Mapping, frames_step, frames_x, x_final) -> None:
        """Fill the buffer of a stored run or CLI bundle from its columns and frames."""
        self.columns = Columns.from_columns(metrics)
        self.frame_no = 0
        self.end(kept_frames(frames_step, frames_x, self.max_frames), x_final)
        rows = self.columns.rows(len(self.columns) - 1)
        self.last = _last(rows[-1]) if rows else self.last

    def _publish(self, step: int, x: np.ndarray) -> None:
        self.frame_no += 1
        self.frame_step, self.frame_x = step, x


def kept_frames(frames_step, frames_x, max_frames: int) -> list[tuple[int, np.ndarray]]:
    """[(step, x [n, 3] float32)] of a run's frames, thinned to ``max_frames`` (call it outside
    the registry lock: it converts every frame)."""
    x = np.asarray(frames_x, np.float32)
    return thin(list(zip([int(s) for s in frames_step], x, strict=True)), max_frames)


def thin(frames: list, max_frames: int) -> list:
    """Halve a frame list until it fits ``max_frames``, always keeping the last frame."""
    while len(frames) > max_frames:
        frames = frames[:-1:2] + [frames[-1]]
    return frames


def _last(row: Mapping) -> dict:
    return {
        "step": int(row["step"]),
        "stage": int(row.get("stage", 2)),
        "energy": float(row["energy"]),
        "wall_time": float(row.get("wall_time_s", 0.0)),
    }
