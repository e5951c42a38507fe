"""The registry's records and the snapshots it hands out.

- ``RunRecord``: one engine run (a session's, a stored one from a previous server, or a CLI
  bundle): owner, sharing, status, timestamps and its ``LiveBuffer``. Its methods are the
  status transitions (queued -> running -> done/stopped/diverged/failed, or cancelled).
- ``TaskRecord``: one analysis task (the spectrum): status, progress text, payload.
- ``RunSnapshot``: an immutable copy of either for one reader (registry -> callbacks/figures).

Records are mutable and touched only under the registry lock; snapshots are frozen.
"""

from __future__ import annotations

import dataclasses
import threading
import time
from typing import Any

import numpy as np

from .access import TERMINAL
from .live import LiveBuffer


@dataclasses.dataclass
class RunRecord:
    """Mutable state of one run (see the module docstring)."""

    run_id: str
    owner: str
    label: str
    live: LiveBuffer
    group: str | None = None
    spec: Any = None  # the RunSpec of a session's run; None for stored runs and bundles
    spec_dict: dict | None = None
    shared: bool = False
    status: str = "queued"
    message: str = ""
    version: int = 0
    seq: int = 0  # submission order (queue positions)
    created: float = 0.0
    started: float | None = None
    finished: float | None = None
    timings: dict = dataclasses.field(default_factory=dict)
    view: dict | None = None
    system: Any = None
    result: Any = None  # the engine's RunResult, kept for exports of this server's runs
    x_final: np.ndarray | None = None  # [n, 3] final positions (length unit)
    error: str | None = None
    source: str = "session"  # "session" | "stored" | "cli"
    path: str | None = None  # folder of a stored run or CLI bundle
    loaded: bool = True  # stored runs and bundles read their arrays on first access
    stop: threading.Event = dataclasses.field(default_factory=threading.Event)

    kind = "run"

    # ---- transitions (under the registry lock) ---------------------------------------------
    def start(self) -> bool:
        """Queued -> running, or cancelled if a stop came first; True when it should run."""
        if self.stop.is_set():
            self.status, self.message = "cancelled", "stopped before it started"
            self.finished = time.time()
        else:
            self.status, self.started = "running", time.time()
        self.version += 1
        return self.status == "running"

    def finish(self, result, frames: list) -> None:
        """Take status, timings and final positions from the engine's result and its frames
        (``live.kept_frames``); the rows are already in the live buffer (each Progress
        delivered its rows once)."""
        self.status, self.message = result.status, result.message
        self.timings = dict(result.timings)
        self.result = result
        self.x_final = np.asarray(result.x_final)
        self.live.end(frames, result.x_final)
        if self.live.stage_switch_step is None:  # e.g. it diverged right after switching
            self.live.stage_switch_step = getattr(result, "stage_switch_step", None)
        self.finished = time.time()
        self.version += 1

    def fail(self, error: str) -> None:
        """Record a worker exception (its traceback) as status "failed"."""
        self.status, self.error = "failed", error
        self.message = error.strip().splitlines()[-1]
        self.finished = time.time()
        self.version += 1

    def meta(self) -> dict:
        """The meta.json of this run (engine/io.py documents the fields)."""
        return {
            "run_id": self.run_id,
            "owner": self.owner,
            "shared": self.shared,
            "status": self.status,
            "message": self.message,
            "label": self.label,
            "group": self.group,
            "created": self.created,
            "started": self.started,
            "finished": self.finished,
            "version": self.version,
            "seed": (self.spec_dict or {}).get("seed"),
            "stage_switch_step": self.live.stage_switch_step,
            "timings": self.timings,
            "last": self.live.last,
        }

    @classmethod
    def from_meta(cls, meta: dict, spec: dict | None, path: str, max_frames: int) -> RunRecord:
        """A stored run of a previous server (arrays not loaded yet)."""
        live = LiveBuffer(max_frames)
        live.stage_switch_step = meta.get("stage_switch_step")
        live.last = meta.get("last") or {}
        return cls(
            run_id=meta["run_id"],
            owner=meta.get("owner", ""),
            label=meta.get("label", "run"),
            live=live,
            group=meta.get("group"),
            spec_dict=spec,
            shared=bool(meta.get("shared")),
            status=meta.get("status", "done"),
            message=meta.get("message", ""),
            created=meta.get("created", 0.0),
            started=meta.get("started"),
            finished=meta.get("finished"),
            timings=meta.get("timings", {}),
            source="stored",
            path=path,
            loaded=False,
        )

    @classmethod
    def from_bundle(
        cls, run_id: str, owner: str, path: str, config: dict, created: float, max_frames: int
    ) -> RunRecord:
        """A CLI bundle (shared with every session; arrays not loaded yet)."""
        spec = config.get("spec") or {}
        summary = config.get("summary") or {}
        live = LiveBuffer(max_frames)
        live.stage_switch_step = summary.get("stage_switch_step")
        return cls(
            run_id=run_id,
            owner=owner,
            label=str(spec.get("method_label") or summary.get("method") or "cli"),
            live=live,
            spec_dict=spec,
            shared=True,
            status=config.get("status", "done"),
            message=config.get("message", ""),
            created=created,
            timings=config.get("timings", {}),
            source="cli",
            path=path,
            loaded=False,
        )


@dataclasses.dataclass
class TaskRecord:
    """Mutable state of one analysis task (not persisted)."""

    run_id: str  # the task id (same namespace as run ids)
    owner: str
    label: str
    status: str = "queued"
    message: str = ""
    version: int = 0
    seq: int = 0
    created: float = 0.0
    started: float | None = None
    finished: float | None = None
    progress: str = ""  # the task's latest report
    payload: Any = None  # what the task returned
    error: str | None = None
    stop: threading.Event = dataclasses.field(default_factory=threading.Event)

    kind = "task"
    shared = False
    source = "session"


Record = RunRecord | TaskRecord


@dataclasses.dataclass(frozen=True)
class RunSnapshot:
    """An immutable copy of a record for one reader (registry -> figures/callbacks).

    rows: the logged rows after the reader's ``since_rows`` (dicts: step, stage,
    wall_time_s, energy, grad_norm, metrics). frame_x: [n, 3] newest frame, or None when the
    reader already has frame ``frame_no``. is_owner: the reader may stop and share it.
    payload: a task's result (None for runs).
    """

    run_id: str
    kind: str
    label: str
    group: str | None
    status: str
    message: str
    version: int
    is_owner: bool
    shared: bool
    source: str
    spec: dict | None
    created: float
    started: float | None
    finished: float | None
    n_rows: int
    rows: tuple
    frame_no: int
    frame_step: int
    frame_x: np.ndarray | None
    stage_switch_step: int | None
    last: dict
    timings: dict
    view: dict | None
    queue_position: int | None
    progress: str
    payload: Any
    error: str | None

    @property
    def terminal(self) -> bool:
        return self.status in TERMINAL

    @property
    def elapsed(self) -> float:
        if self.started is None:
            return 0.0
        return (self.finished or time.time()) - self.started


def _no_run_fields() -> dict:
    """What a task's snapshot holds in the run-only fields (fresh dicts each time)."""
    return dict(
        group=None,
        spec=None,
        n_rows=0,
        rows=(),
        frame_no=0,
        frame_step=0,
        frame_x=None,
        stage_switch_step=None,
        last={},
        timings={},
        view=None,
    )


def snapshot(
    rec: Record, reader: str, since_rows: int, since_frame: int, queue_position: int | None
) -> RunSnapshot:
    """Copy ``rec`` for ``reader``: only rows after ``since_rows``, the newest frame only when
    it is newer than ``since_frame`` (call under the registry lock)."""
    common = dict(
        run_id=rec.run_id,
        kind=rec.kind,
        label=rec.label,
        status=rec.status,
        message=rec.message,
        version=rec.version,
        is_owner=rec.owner == reader,
        shared=rec.shared,
        source=rec.source,
        created=rec.created,
        started=rec.started,
        finished=rec.finished,
        queue_position=queue_position,
        error=rec.error,
    )
    if isinstance(rec, TaskRecord):
        return RunSnapshot(**common, **_no_run_fields(), progress=rec.progress, payload=rec.payload)
    live = rec.live
    return RunSnapshot(
        **common,
        group=rec.group,
        spec=rec.spec_dict,
        n_rows=len(live.columns),
        rows=live.columns.rows(since_rows),
        frame_no=live.frame_no,
        frame_step=live.frame_step,
        frame_x=live.frame_x if live.frame_no > since_frame else None,
        stage_switch_step=live.stage_switch_step,
        last=dict(live.last),
        timings=dict(rec.timings),
        view=rec.view,
        progress="",
        payload=None,
    )
