"""RunRegistry: the process-wide table of runs, their owners and a small worker pool.

The one deliberate global of the workbench (house style §2.3): Dash callbacks run in many
threads and sessions, engine runs execute on pool threads, and both meet here.

- One ``threading.Lock`` guards the records; it is held only to copy or update fields,
  never while calling the engine or touching disk.
- Run ids are ``secrets.token_hex(8)``: unguessable, so they double as share links.
- Ownership is enforced here, not in callbacks: another session's run reads as "not found"
  unless its owner shared it; sharing grants reading only, stopping stays with the owner.
- ``ThreadPoolExecutor(config.workers)`` runs engine jobs; further submissions queue, and
  ``max_active_per_session`` keeps one tab from filling the queue.
- Short analysis tasks (the spectrum) use a separate one-thread pool so they are not stuck
  behind long runs.
- Finished runs are written by ``RunStore`` and re-indexed by the next registry on the same
  run_dir (arrays load lazily, on first read).

The registry never runs the engine: a ``runner(spec, on_progress, should_stop, on_system)``
does the work (``workbench.jobs.run_engine`` in the app, a fake in tests). It reads curves
with ``engine.analysis`` (numpy only), the one definition of time-to-threshold.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
import secrets
import threading
import time
import traceback
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np

from engine import analysis

from .config import ServerConfig
from .runstore import RunStore

TERMINAL = ("done", "stopped", "diverged", "failed", "cancelled", "interrupted")
ACTIVE = ("queued", "running")
CLI_OWNER = "cli"

Runner = Callable[..., Any]  # (spec, on_progress, should_stop, on_system) -> RunResult-like


class Busy(Exception):
    """This session already holds its quota of active runs."""


@dataclasses.dataclass
class _Record:
    """Mutable state of one run or task; touched only under the registry lock."""

    run_id: str
    owner: str
    kind: str  # "run" | "task"
    label: str
    group: str | None
    spec: Any = None  # RunSpec (runs); None for tasks
    spec_dict: dict | None = None
    shared: bool = False
    status: str = "queued"
    message: str = ""
    version: int = 0
    seq: int = 0
    created: float = 0.0
    started: float | None = None
    finished: float | None = None
    rows: list = dataclasses.field(default_factory=list)
    frame_no: int = 0
    frame_step: int = 0
    frame_x: np.ndarray | None = None
    frames: list = dataclasses.field(default_factory=list)  # [(step, x float32)] thinned
    stage_switch_step: int | None = None
    last: dict = dataclasses.field(default_factory=dict)  # latest step/stage/energy/wall_time
    timings: dict = dataclasses.field(default_factory=dict)
    view: dict | None = None
    system: Any = None
    result: Any = None
    payload: Any = None  # task result
    progress: str = ""  # task progress text
    error: str | None = None
    source: str = "session"  # "session" | "stored" | "cli"
    path: str | None = None  # CLI bundle folder
    loaded: bool = True  # arrays of stored runs load lazily
    stop: threading.Event = dataclasses.field(default_factory=threading.Event)


@dataclasses.dataclass(frozen=True)
class RunSnapshot:
    """An immutable copy of a record for one reader (registry -> figures/callbacks).

    rows: the logged rows after the reader's ``since_rows`` (dicts: step, stage,
    wall_time_s, energy, grad_norm, metrics). frame_x: [n, 3] newest frame, or None when the
    reader already has frame ``frame_no``. is_owner: the reader may stop and share it.
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


class RunRegistry:
    """Submit, stop, share, read and list runs; see the module docstring for the rules."""

    def __init__(
        self,
        config: ServerConfig,
        runner: Runner,
        store: RunStore | None = None,
        bundle_reader: Callable[[str], dict] | None = None,
    ):
        self.config = config
        self._runner = runner
        self._store = store or RunStore(config.run_dir)
        self._bundle_reader = bundle_reader
        self._lock = threading.Lock()
        self._io_lock = threading.Lock()  # orders meta.json writes of one registry
        self._records: dict[str, _Record] = {}
        self._seq = itertools.count()
        self._pool = ThreadPoolExecutor(max_workers=config.workers, thread_name_prefix="wb-run")
        self._tasks = ThreadPoolExecutor(max_workers=1, thread_name_prefix="wb-task")
        self._index_store()

    @property
    def store(self) -> RunStore:
        return self._store

    # ---- start-up ------------------------------------------------------------------------------
    def _index_store(self) -> None:
        for meta, spec in self._store.index():
            rec = _Record(
                run_id=meta["run_id"],
                owner=meta.get("owner", ""),
                kind="run",
                label=meta.get("label", "run"),
                group=meta.get("group"),
                spec_dict=spec,
                shared=bool(meta.get("shared")),
                status=meta.get("status", "done"),
                message=meta.get("message", ""),
                created=meta.get("created", 0.0),
                started=meta.get("started"),
                finished=meta.get("finished"),
                stage_switch_step=meta.get("stage_switch_step"),
                timings=meta.get("timings", {}),
                last=meta.get("last", {}),
                source="stored",
                loaded=False,
                seq=next(self._seq),
            )
            self._records[rec.run_id] = rec

    def index_bundles(self, paths: list[tuple[str, dict]]) -> None:
        """Add CLI bundles [(folder, config.json dict)], readable by every session."""
        with self._lock:
            known = {r.path for r in self._records.values() if r.source == "cli"}
            for path, config in paths:
                if path in known:
                    continue
                run_id = secrets.token_hex(8)
                spec = config.get("spec") or {}
                self._records[run_id] = _Record(
                    run_id=run_id,
                    owner=CLI_OWNER,
                    kind="run",
                    label=str(
                        spec.get("method_label") or config.get("summary", {}).get("method") or "cli"
                    ),
                    group=None,
                    spec_dict=spec,
                    shared=True,
                    status=config.get("status", "done"),
                    message=config.get("message", ""),
                    created=_mtime(path),
                    timings=config.get("timings", {}),
                    source="cli",
                    path=path,
                    loaded=False,
                    seq=next(self._seq),
                )

    # ---- submitting --------------------------------------------------------------------------
    def submit_group(self, specs: list, owner: str, labels: list[str] | None = None) -> list[str]:
        """Queue several runs as one side-by-side group; all or none (quota checked first)."""
        if not owner:
            raise PermissionError("a session id is required")
        group = secrets.token_hex(4)
        now = time.time()
        with self._lock:
            active = sum(
                1
                for r in self._records.values()
                if r.owner == owner and r.kind == "run" and r.status in ACTIVE
            )
            limit = self.config.max_active_per_session
            if active + len(specs) > limit:
                raise Busy(
                    f"this session has {active} active run(s); the limit is {limit} "
                    f"per session: stop one or wait for it to finish"
                )
            ids = []
            for i, spec in enumerate(specs):
                run_id = secrets.token_hex(8)
                label = (labels[i] if labels else None) or getattr(spec, "label", "run")
                to_dict = getattr(spec, "to_dict", None)
                self._records[run_id] = _Record(
                    run_id=run_id,
                    owner=owner,
                    kind="run",
                    label=label,
                    group=group,
                    spec=spec,
                    spec_dict=to_dict() if to_dict else None,
                    created=now,
                    seq=next(self._seq),
                )
                ids.append(run_id)
        for run_id in ids:
            with self._io_lock:
                with self._lock:
                    rec = self._records[run_id]
                    meta, spec_dict = self._meta(rec), rec.spec_dict
                self._store.save_meta(run_id, meta, spec_dict)
            self._pool.submit(self._execute, run_id)
        return ids

    def submit(self, spec, owner: str, label: str | None = None) -> str:
        return self.submit_group([spec], owner, [label] if label else None)[0]

    def submit_task(
        self, owner: str, label: str, fn: Callable[[Callable[[str], None], Callable[[], bool]], Any]
    ) -> str:
        """Run ``fn(report, should_stop) -> payload`` on the analysis thread (not persisted)."""
        if not owner:
            raise PermissionError("a session id is required")
        task_id = secrets.token_hex(8)
        with self._lock:
            self._records[task_id] = _Record(
                run_id=task_id,
                owner=owner,
                kind="task",
                label=label,
                group=None,
                created=time.time(),
                seq=next(self._seq),
            )
        self._tasks.submit(self._execute_task, task_id, fn)
        return task_id

    # ---- workers ---------------------------------------------------------------------------------
    def _execute(self, run_id: str) -> None:
        with self._lock:
            rec = self._records[run_id]
            if rec.stop.is_set():
                rec.status, rec.message, rec.finished = (
                    "cancelled",
                    "stopped before it started",
                    time.time(),
                )
                rec.version += 1
            else:
                rec.status, rec.started = "running", time.time()
                rec.version += 1
        self._write_meta(run_id)
        if rec.status == "cancelled":
            return
        try:
            result = self._runner(
                rec.spec,
                on_progress=lambda p: self._push(run_id, p),
                should_stop=rec.stop.is_set,
                on_system=lambda system, view: self._set_system(run_id, system, view),
            )
            self._finish(run_id, result)
        except BaseException:  # noqa: B036 - a worker never dies silently (house style §2.10)
            with self._lock:
                rec.status, rec.error = "failed", traceback.format_exc()
                rec.message = rec.error.strip().splitlines()[-1]
                rec.finished = time.time()
                rec.version += 1
        self._persist(run_id)

    def _execute_task(self, task_id: str, fn) -> None:
        rec = self._records[task_id]
        with self._lock:
            rec.status, rec.started = "running", time.time()
            rec.version += 1

        def report(text: str) -> None:
            with self._lock:
                rec.progress = text
                rec.version += 1

        try:
            payload = fn(report, rec.stop.is_set)
            with self._lock:
                rec.payload, rec.status = payload, ("stopped" if rec.stop.is_set() else "done")
        except BaseException:  # noqa: B036
            with self._lock:
                rec.status, rec.error = "failed", traceback.format_exc()
                rec.message = rec.error.strip().splitlines()[-1]
        with self._lock:
            rec.finished = time.time()
            rec.version += 1

    def _set_system(self, run_id: str, system, view: dict | None) -> None:
        with self._lock:
            rec = self._records[run_id]
            rec.system, rec.view = system, view
            rec.version += 1

    def _push(self, run_id: str, p) -> None:
        """on_progress: append the new rows and keep the newest frame (host arrays only)."""
        x = None if p.x is None else np.asarray(p.x, np.float32)
        with self._lock:
            rec = self._records[run_id]
            if p.stage_switch_step is not None:  # sent once by the engine
                rec.stage_switch_step = int(p.stage_switch_step)
            rec.rows.extend(p.rows)
            rec.last = {
                "step": int(p.step),
                "stage": int(p.stage),
                "energy": float(p.energy),
                "wall_time": float(p.wall_time),
            }
            if x is not None:
                rec.frame_no += 1
                rec.frame_step, rec.frame_x = int(p.step), x
                rec.frames.append((int(p.step), x))
                if len(rec.frames) > self.config.max_frames:
                    rec.frames = rec.frames[:-1:2] + [rec.frames[-1]]
            rec.version += 1

    def _finish(self, run_id: str, result) -> None:
        metrics = {k: np.asarray(v) for k, v in result.metrics.items()}
        frames = list(
            zip(
                [int(s) for s in result.frames_step],
                np.asarray(result.frames_x, np.float32),
                strict=True,
            )
        )
        while len(frames) > self.config.max_frames:
            frames = frames[:-1:2] + [frames[-1]]
        rows = _rows_from_columns(metrics)
        with self._lock:
            rec = self._records[run_id]
            rec.status, rec.message = result.status, result.message
            rec.rows = rows
            rec.frames = frames
            rec.stage_switch_step = result.stage_switch_step
            rec.timings = dict(result.timings)
            rec.result = result
            rec.finished = time.time()
            if len(frames):
                rec.frame_no += 1
                rec.frame_step, rec.frame_x = frames[-1][0], np.asarray(result.x_final, np.float32)
            if rows:
                last = rows[-1]
                rec.last = {
                    "step": int(last["step"]),
                    "stage": int(last.get("stage", 2)),
                    "energy": float(last["energy"]),
                    "wall_time": float(last.get("wall_time_s", 0.0)),
                }
            rec.version += 1

    def _write_meta(self, run_id: str) -> None:
        """Write the current meta.json (serialized with _persist: the last write is the newest)."""
        with self._io_lock:
            with self._lock:
                rec = self._records[run_id]
                meta = self._meta(rec)
            self._store.save_meta(run_id, meta)

    def _persist(self, run_id: str) -> None:
        with self._io_lock:
            self._persist_locked(run_id)

    def _persist_locked(self, run_id: str) -> None:
        with self._lock:
            rec = self._records[run_id]
            meta, spec, view = self._meta(rec), rec.spec_dict, rec.view
            result = rec.result
            frames = list(rec.frames)
        if result is None:
            self._store.save_meta(run_id, meta, spec)
            return
        self._store.save_result(
            run_id,
            meta,
            spec,
            {k: np.asarray(v) for k, v in result.metrics.items()},
            [s for s, _ in frames],
            np.stack([x for _, x in frames]) if frames else np.zeros((0, 0, 3)),
            result.x_final,
            view,
        )

    def _meta(self, rec: _Record) -> dict:
        return {
            "run_id": rec.run_id,
            "owner": rec.owner,
            "shared": rec.shared,
            "status": rec.status,
            "message": rec.message,
            "label": rec.label,
            "group": rec.group,
            "created": rec.created,
            "started": rec.started,
            "finished": rec.finished,
            "version": rec.version,
            "seed": (rec.spec_dict or {}).get("seed"),
            "stage_switch_step": rec.stage_switch_step,
            "timings": rec.timings,
            "last": rec.last,
        }

    # ---- access control ----------------------------------------------------------------------
    def _readable(self, rec: _Record | None, reader: str) -> bool:
        return rec is not None and bool(reader) and (rec.owner == reader or rec.shared)

    def cancel(self, run_id: str, by: str) -> bool:
        """Ask a run or task to stop (owner only). A queued run never starts; a running one
        stops at its next chunk and keeps everything so far."""
        with self._lock:
            rec = self._records.get(run_id)
            if rec is None or rec.owner != by or not by or rec.status in TERMINAL:
                return False
            rec.stop.set()
            if rec.status == "queued" and rec.kind == "run":
                rec.message = "stop requested before start"
            rec.version += 1
            return True

    def cancel_all(self, by: str) -> int:
        with self._lock:
            ids = [r.run_id for r in self._records.values() if r.owner == by and r.status in ACTIVE]
        return sum(self.cancel(i, by) for i in ids)

    def share(self, run_id: str, by: str) -> bool:
        """Make a run readable by anyone holding its id (owner only)."""
        with self._lock:
            rec = self._records.get(run_id)
            if rec is None or rec.owner != by or not by or rec.kind != "run":
                return False
            rec.shared = True
            rec.version += 1
            save = rec.source != "cli"
        if save:
            self._write_meta(run_id)
        return True

    # ---- reading -------------------------------------------------------------------------------
    def snapshot(
        self, run_id: str, reader: str, since_rows: int = 0, since_frame: int = 0
    ) -> RunSnapshot | None:
        """An immutable copy for ``reader``; None if it does not exist or is not readable."""
        with self._lock:
            rec = self._records.get(run_id)
            if not self._readable(rec, reader):
                return None
            needs_load = not rec.loaded
        if needs_load:
            self._load(rec)
        with self._lock:
            return self._snap(rec, reader, since_rows, since_frame)

    def curve_final(self, run_id: str, reader: str, metric: str) -> float | None:
        """The last finite value of ``metric`` logged by the run, or None (also when not
        readable by ``reader``)."""
        with self._lock:
            rec = self._records.get(run_id)
            if not self._readable(rec, reader):
                return None
            for row in reversed(rec.rows):
                v = row.get(metric)
                if v is not None and math.isfinite(v):
                    return float(v)
        return None

    def curve_reach(
        self, run_id: str, reader: str, metric: str, threshold: float
    ) -> analysis.Reach | None:
        """The first logged row with ``metric`` <= threshold (engine.analysis semantics), or
        None (also when not readable by ``reader``)."""
        with self._lock:
            rec = self._records.get(run_id)
            if not self._readable(rec, reader):
                return None
            cols = [
                (r.get(metric, math.nan), r["step"], r.get("wall_time_s", 0.0)) for r in rec.rows
            ]
        if not cols:
            return None
        values, steps, times = zip(*cols, strict=True)
        return analysis.first_reach(values, threshold, steps, times)

    def snapshots(
        self, run_ids: list[str], reader: str, seen: dict | None = None
    ) -> dict[str, RunSnapshot]:
        """Snapshots of several runs; ``seen`` = {run_id: {"rows": n, "frame": n}} (browser)."""
        seen = seen or {}
        out = {}
        for run_id in run_ids:
            s = seen.get(run_id) or {}
            snap = self.snapshot(run_id, reader, int(s.get("rows", 0)), int(s.get("frame", 0)))
            if snap is not None:
                out[run_id] = snap
        return out

    def _snap(self, rec: _Record, reader: str, since_rows: int, since_frame: int) -> RunSnapshot:
        queue_position = None
        if rec.status == "queued":
            queue_position = 1 + sum(
                1
                for r in self._records.values()
                if r.kind == rec.kind and r.status == "queued" and r.seq < rec.seq
            )
        since_rows = max(0, min(since_rows, len(rec.rows)))
        new_frame = rec.frame_no > since_frame
        return RunSnapshot(
            run_id=rec.run_id,
            kind=rec.kind,
            label=rec.label,
            group=rec.group,
            status=rec.status,
            message=rec.message,
            version=rec.version,
            is_owner=rec.owner == reader,
            shared=rec.shared,
            source=rec.source,
            spec=rec.spec_dict,
            created=rec.created,
            started=rec.started,
            finished=rec.finished,
            n_rows=len(rec.rows),
            rows=tuple(rec.rows[since_rows:]),
            frame_no=rec.frame_no,
            frame_step=rec.frame_step,
            frame_x=rec.frame_x if new_frame else None,
            stage_switch_step=rec.stage_switch_step,
            last=dict(rec.last),
            timings=dict(rec.timings),
            view=rec.view,
            queue_position=queue_position,
            progress=rec.progress,
            payload=rec.payload,
            error=rec.error,
        )

    def _load(self, rec: _Record) -> None:
        """Load a stored run's or CLI bundle's arrays (outside the lock), then publish them."""
        try:
            if rec.source == "cli":
                data = self._bundle_reader(rec.path) if self._bundle_reader else None
            else:
                data = self._store.load_arrays(rec.run_id)
        except (OSError, ValueError, KeyError) as err:
            data, rec.message = None, f"could not load its arrays: {err}"
        with self._lock:
            if rec.loaded:
                return
            if data is not None:
                metrics = {k: np.asarray(v) for k, v in data["metrics"].items()}
                rec.rows = _rows_from_columns(metrics)
                fx = np.asarray(data["frames_x"], np.float32)
                rec.frames = list(zip([int(s) for s in data["frames_step"]], fx, strict=True))
                if len(fx):
                    rec.frame_no, rec.frame_step = 1, int(data["frames_step"][-1])
                    rec.frame_x = np.asarray(data["x_final"], np.float32)
                rec.view = data.get("view") or rec.view
                rec.payload = {"metrics": metrics, "x_final": np.asarray(data["x_final"])}
            rec.loaded = True

    def frames(self, run_id: str, reader: str) -> list[tuple[int, np.ndarray]] | None:
        """The kept frames [(step, x [n, 3])] of a readable run (replay)."""
        if self.snapshot(run_id, reader) is None:
            return None
        with self._lock:
            return list(self._records[run_id].frames)

    def export_data(self, run_id: str, reader: str) -> dict | None:
        """Everything an export needs: spec, metrics columns, frames, x_final, system (or None)."""
        snap = self.snapshot(run_id, reader)
        if snap is None:
            return None
        with self._lock:
            rec = self._records[run_id]
            frames = list(rec.frames)
            if rec.result is not None:
                metrics = {k: np.asarray(v) for k, v in rec.result.metrics.items()}
                x_final = np.asarray(rec.result.x_final)
            elif isinstance(rec.payload, dict) and "metrics" in rec.payload:
                metrics, x_final = rec.payload["metrics"], rec.payload["x_final"]
            else:
                metrics = _columns_from_rows(rec.rows)
                x_final = rec.frame_x
            return {
                "spec": rec.spec_dict,
                "metrics": metrics,
                "frames": frames,
                "x_final": x_final,
                "system": rec.system,
                "label": rec.label,
                "status": rec.status,
                "result": rec.result,
            }

    def remember_system(self, run_id: str, system) -> None:
        """Cache a rebuilt System on a stored run (exports of runs from a previous server)."""
        with self._lock:
            rec = self._records.get(run_id)
            if rec is not None and rec.system is None:
                rec.system = system

    def list_runs(self, reader: str) -> list[RunSnapshot]:
        """This session's runs and every CLI bundle, newest first (no rows, no frames)."""
        with self._lock:
            recs = [
                r
                for r in self._records.values()
                if r.kind == "run" and (r.owner == reader and reader or r.source == "cli")
            ]
            snaps = [self._snap(r, reader, len(r.rows), r.frame_no) for r in recs]
        return sorted(snaps, key=lambda s: -s.created)

    def shutdown(self) -> None:
        with self._lock:
            for rec in self._records.values():
                rec.stop.set()
        self._pool.shutdown(wait=False, cancel_futures=True)
        self._tasks.shutdown(wait=False, cancel_futures=True)


def _rows_from_columns(metrics: dict) -> list[dict]:
    names = list(metrics)
    if not names:
        return []
    n = len(metrics[names[0]])
    return [{k: _py(metrics[k][i]) for k in names} for i in range(n)]


def _columns_from_rows(rows: list[dict]) -> dict:
    names = list(rows[0]) if rows else []
    return {k: np.asarray([r.get(k, np.nan) for r in rows]) for k in names}


def _py(v):
    v = v.item() if hasattr(v, "item") else v
    return v


def _mtime(path: str) -> float:
    import os

    try:
        return os.path.getmtime(path)
    except OSError:
        return 0.0


# ---- the process-wide instance -------------------------------------------------------------------
_REGISTRY: RunRegistry | None = None


def install(registry: RunRegistry | None) -> None:
    """Make ``registry`` the one the callbacks use (the app at start-up, tests with a fake)."""
    global _REGISTRY
    _REGISTRY = registry


def get() -> RunRegistry:
    if _REGISTRY is None:
        raise RuntimeError("no RunRegistry installed: call workbench.registry.install() first")
    return _REGISTRY
