"""The registry's records and the snapshots it hands out.

- ``RunRecord``: one engine run (a session's, a stored one from a previous server, or a CLI
  bundle): owner, sharing, status, phase, timestamps and its ``LiveBuffer``. Its methods are
  the status transitions (queued -> running -> done/stopped/diverged/failed, or cancelled);
  a stored run or bundle whose files cannot be read is "damaged" (the message says why).
  While "running" a run is in one of the phases "building", "modes", "compiling",
  "running" (what the engine reports) or "stopping" (a stop was asked and the engine has not
  returned yet); ``phase_detail`` carries the engine's progress phrase ("Hessian of sample 3
  of 40").

Stopping. A queued run is cancelled at once. A run building its system or compiling (one
uninterruptible call) is reported "stopped" at once; its worker is released when that call
returns, and the engine's result (its rows, if any) is still kept. In the other phases the
engine honours the stop at its next check point (a chunk, a slow-mode block); should it not
within ``STOP_GRACE_S`` (one long LAPACK call), ``settle`` reports it stopped all the same.
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

PHASES = ("queued", "building", "modes", "compiling", "running", "stopping")
IMMEDIATE_STOP_PHASES = ("building", "compiling")  # one uninterruptible call: stop at once
STOP_GRACE_S = 0.5  # a stop not honoured by the engine within this is reported all the same
PHASE_WORDS = {
    "queued": "queued",
    "building": "building the system",
    "modes": "computing slow modes",
    "compiling": "compiling",
    "running": "running",
    "stopping": "stopping",
}


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
    created: float = 0.0  # submission (time.time()); a group's runs share it
    started: float | None = None
    finished: float | None = None
    phase: str = "queued"  # one of PHASES while active (see the module docstring)
    phase_detail: str = ""
    stop_asked: float | None = None  # when a stop was asked of the running engine
    stop_phase: str = ""  # the phase it was in then (for the message)
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
        """Queued -> running (phase "building"), or cancelled if a stop came first; True when
        it should run."""
        if self.status in TERMINAL:  # cancelled while queued: nothing changes
            return False
        if self.stop.is_set():
            self.cancel_queued(time.time())
            return False
        self.status, self.started = "running", time.time()
        self.phase, self.phase_detail = "building", ""
        self.version += 1
        return True

    def cancel_queued(self, now: float) -> None:
        """A queued run that will never start: "cancelled" at once."""
        self.stop.set()
        self.status, self.message = "cancelled", "stopped before it started"
        self.phase, self.phase_detail, self.finished = "cancelled", "", now
        self.version += 1

    def request_stop(self, now: float) -> None:
        """Ask the run to stop (see the module docstring for what each phase does)."""
        if self.status == "queued":
            self.cancel_queued(now)
            return
        self.stop.set()
        if self.status != "running" or self.stop_asked is not None:
            return
        self.stop_asked, self.stop_phase = now, self.phase
        if self.phase in IMMEDIATE_STOP_PHASES:
            self.stop_now(now)
        else:
            self.phase, self.phase_detail = "stopping", ""
            self.version += 1

    def stop_now(self, now: float) -> None:
        """Report the run "stopped" before the engine has returned; ``finish`` later keeps
        this status and adds whatever the engine returns."""
        phase = self.stop_phase or self.phase
        words = PHASE_WORDS.get(phase, phase)
        self.status, self.phase, self.phase_detail = "stopped", "stopped", ""
        self.message = f"stopped by request while {words}"
        self.finished = now
        self.version += 1

    def set_phase(self, phase: str, detail: str = "") -> None:
        """The engine's report: enter ``phase`` (or advance within it). Ignored once the run
        is terminal; while stopping, only an uninterruptible phase matters: it ends the run
        at once."""
        if self.status != "running":
            return
        if self.stop_asked is not None:
            if phase in IMMEDIATE_STOP_PHASES:
                self.stop_phase = phase
                self.stop_now(time.time())
            return
        if (phase, detail) != (self.phase, self.phase_detail):
            self.phase, self.phase_detail = phase, detail
            self.version += 1

    def settle(self, now: float, grace: float = STOP_GRACE_S) -> bool:
        """Report a stop the engine has not honoured within ``grace`` seconds; True if so."""
        if self.status == "running" and self.stop_asked is not None:
            if now - self.stop_asked >= grace:
                self.stop_now(now)
                return True
        return False

    def finish(self, result, frames: list) -> None:
        """Take status, timings and final positions from the engine's result and its frames
        (``live.kept_frames``); the rows are already in the live buffer (each Progress
        delivered its rows once). A run already reported stopped keeps that status, message
        and end time."""
        if self.status != "stopped" or self.stop_asked is None:
            self.status, self.message = result.status, result.message
            self.finished = None
        self.phase, self.phase_detail = self.status, ""
        self.timings = dict(result.timings)
        self.result = result
        self.x_final = np.asarray(result.x_final)
        self.live.end(frames, result.x_final)
        if self.live.stage_switch_step is None:  # e.g. it diverged right after switching
            self.live.stage_switch_step = getattr(result, "stage_switch_step", None)
        self.finished = self.finished or time.time()
        self.version += 1

    def stopped_by(self, phase: str) -> None:
        """The runner raised ``engine.types.Stopped`` (``phase``: where, e.g. "building"):
        the run ends "stopped" with no result (unless already reported stopped)."""
        if self.status == "running":
            self.stop_phase = phase or self.stop_phase
            self.stop_now(time.time())

    def fail(self, error: str) -> None:
        """Record a worker exception (its traceback) as status "failed"."""
        self.status, self.error = "failed", error
        self.phase, self.phase_detail = "failed", ""
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
            loaded=meta.get("status") == "damaged",  # nothing more is read of a damaged run
        )

    @classmethod
    def from_bundle(
        cls, run_id: str, owner: str, path: str, config: dict, created: float, max_frames: int
    ) -> RunRecord:
        """A CLI bundle (shared with every session; arrays not loaded yet)."""
        spec = config.get("spec") if isinstance(config.get("spec"), dict) else {}
        summary = config.get("summary") if isinstance(config.get("summary"), dict) else {}
        timings = config.get("timings") if isinstance(config.get("timings"), dict) else {}
        status, message = config.get("status", "done"), config.get("message", "")
        if not isinstance(status, str) or not isinstance(message, str):
            status, message = "damaged", "config.json: status or message is not a string"
        live = LiveBuffer(max_frames)
        live.stage_switch_step = summary.get("stage_switch_step")
        return cls(
            run_id=run_id,
            owner=owner,
            label=str(spec.get("method_label") or summary.get("method") or "cli"),
            live=live,
            spec_dict=spec,
            shared=True,
            status=status,
            message=message,
            created=created,
            timings=timings,
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
    phase: "queued", "building", "modes", "compiling", "running" or "stopping" while the run
    is active (a task: its status), else its terminal status; phase_detail: the engine's
    progress phrase within the phase (a task: its progress text).
    elapsed: seconds since submission, ticking in every phase (see the property).
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
    phase: str = ""
    phase_detail: str = ""

    @property
    def terminal(self) -> bool:
        return self.status in TERMINAL

    @property
    def elapsed(self) -> float:
        """Seconds since submission (the Run click), ticking in every phase until the end;
        0 for a finished run without an end time (CLI bundles)."""
        end = self.finished
        if end is None:
            if self.terminal:
                return 0.0
            end = time.time()
        origin = self.created or self.started or end
        return max(0.0, end - origin)


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
        return RunSnapshot(
            **common,
            **_no_run_fields(),
            progress=rec.progress,
            payload=rec.payload,
            phase=rec.status,
            phase_detail=rec.progress,
        )
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
        phase=rec.status if rec.status in TERMINAL else rec.phase,
        phase_detail="" if rec.status in TERMINAL else rec.phase_detail,
    )
