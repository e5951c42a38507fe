"""RunRegistry: the process-wide table of runs and tasks (house style §2.3), a facade over
small modules, one per concern:

- ``access``: who may read, stop, share and list (plain functions); the statuses.
- ``pool``: where work executes (``workers`` threads for runs, one for analysis tasks).
- ``live``: each run's logged rows as growing columns plus frames, so a poll costs what is new.
- ``records``: ``RunRecord`` / ``TaskRecord`` and the frozen ``RunSnapshot`` handed out.
- ``runstore``: run folders on disk, as run bundles written and read by engine/io.py.

Rules kept here:
- One ``threading.Lock`` guards the records; it is held only to copy or update fields,
  never while calling the engine or touching disk. A second lock orders the disk writes of
  one run's meta.json, so the last write is the newest.
- Run ids are ``secrets.token_hex(8)``: unguessable, so they double as share links.
- Ownership is enforced here (``access``), not in callbacks: another session's run reads as
  "not found" unless its owner shared it.
- Finished runs are saved by ``RunStore`` and re-indexed by the next registry on the same
  run_dir; stored runs and CLI bundles load their arrays on first read, with one reader.
- Memory stays bounded: at most ``max_loaded_runs`` finished runs keep their rows, frames
  and result in memory (the most recently read); the others keep only their summary and
  are reread from disk when read again (``_release``). Active runs are never released.
- Limits (``access.limit_error``): active runs and analysis tasks per session and per
  server, analysis tasks per server; a session's new task of a label (a new spectrum)
  replaces its previous one. A failed run's or task's traceback goes to the server log.

The registry never runs the engine: a
``runner(spec, on_progress, should_stop, on_system, on_phase)`` does the work
(``workbench.jobs.run_engine`` in the app, a fake in tests; ``on_phase`` is passed only to
runners that take it). ``on_phase(phase, detail)`` moves the run through the phases of
``records`` ("building", "modes", "compiling", "running"); a runner raising
``engine.types.Stopped`` ends the run "stopped". Every logged row gets a ``click_time_s``
column: seconds from the submission of its group (the user's Run click, shared by the runs
of one ``submit_group``) to its arrival here. Stop semantics per phase: ``records``.
"""

from __future__ import annotations

import inspect
import itertools
import logging
import os
import secrets
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

import numpy as np

from engine import analysis
from engine import io as engine_io
from engine.types import Stopped

from . import access
from .access import ACTIVE, CLI_OWNER, TERMINAL
from .config import ServerConfig
from .live import LiveBuffer, kept_frames
from .pool import Pool, guarded
from .records import Record, RunRecord, RunSnapshot, TaskRecord, snapshot
from .runstore import INTERRUPTED, RunFiles, RunStore, read_run

__all__ = [
    "ACTIVE",
    "CLI_OWNER",
    "TERMINAL",
    "Busy",
    "RunRegistry",
    "RunSnapshot",
    "get",
    "install",
]

Runner = Callable[..., Any]  # (spec, on_progress, should_stop, on_system, on_phase) -> result
LOG = logging.getLogger("workbench")


class Busy(Exception):
    """A limit on active runs or tasks is reached (the message names it and its value)."""


class RunRegistry:
    """Submit, stop, share, read and list runs; see the module docstring for the rules.

    Args:
      config: the server's choices (workers, quota, run_dir, max_frames).
      runner: executes one spec (see the module docstring).
      store: where runs persist; default ``RunStore(config.run_dir)``.
      bundle_reader: reads a finished run's folder (stored runs and CLI bundles alike);
        default ``runstore.read_run`` (``engine.io.read_bundle``).
    """

    def __init__(
        self,
        config: ServerConfig,
        runner: Runner,
        store: RunStore | None = None,
        bundle_reader: Callable[[str], dict] | None = None,
    ):
        self.config = config
        # (the session's, the server's) active work held elsewhere, counted against the same
        # limits: the sweep manager's active sweeps (workbench/server.py connects them)
        self.outside_active: Callable[[str], tuple[int, int]] = lambda owner: (0, 0)
        self._runner = runner
        self._store = store or RunStore(config.run_dir)
        self._read = bundle_reader or read_run
        self._lock = threading.Lock()
        self._io_lock = threading.Lock()  # orders meta.json writes of one registry
        self._records: dict[str, Record] = {}
        self._seq = itertools.count()
        self._pool = Pool(config.workers, config.task_workers, nice=config.engine_nice)
        self._executing: set[str] = set()  # runs inside _execute (shutdown waits for them)
        self._in_memory: OrderedDict[str, None] = OrderedDict()  # finished runs with arrays
        self._runner_phases = _takes(runner, "on_phase")
        self._runner_frames = _takes(runner, "on_frame")  # live frames between logged rows
        self._index_store()

    @property
    def store(self) -> RunStore:
        return self._store

    # ---- start-up ------------------------------------------------------------------------------
    def _index_store(self) -> None:
        for meta, spec in self._store.index():
            path = str(self._store.path(meta["run_id"]).resolve())
            rec = RunRecord.from_meta(meta, spec, path, self.config.max_frames)
            rec.seq = next(self._seq)
            self._records[rec.run_id] = rec

    def index_bundles(self, paths: list[tuple[str, dict]]) -> None:
        """Add CLI bundles [(folder, config.json dict)], readable by every session; folders
        already known (or this server's own runs) are skipped."""
        with self._lock:
            known = {r.path for r in self._records.values() if isinstance(r, RunRecord)}
        new = [(path, config) for path, config in dict(paths).items() if path not in known]
        times = [engine_io.folder_mtime(path) for path, _ in new]  # disk: outside the lock
        with self._lock:
            known = {r.path for r in self._records.values() if isinstance(r, RunRecord)}
            for (path, config), created in zip(new, times, strict=True):
                if path in known:  # another thread indexed it meanwhile
                    continue
                rec = RunRecord.from_bundle(
                    secrets.token_hex(8), CLI_OWNER, path, config, created, self.config.max_frames
                )
                rec.seq = next(self._seq)
                self._records[rec.run_id] = rec

    def active_count(self, owner: str) -> int:
        """Queued and running runs and tasks of ``owner`` (a sweep counts against the same
        limit)."""
        return self.active_counts(owner)[0]

    def active_counts(self, owner: str) -> tuple[int, int]:
        """(active runs and tasks of ``owner``, of the server), without ``outside_active``:
        what the sweep manager adds to its own counts."""
        with self._lock:
            mine, total, _ = self._active(owner)
        return mine, total

    def _with_outside(self, owner: str) -> tuple[int, int, int]:
        """``_active``'s counts plus the active work held elsewhere (``outside_active``); call
        under the lock (the sweep manager never calls the registry under its own)."""
        mine, total, tasks = self._active(owner)
        out_mine, out_total = self.outside_active(owner)
        return mine + out_mine, total + out_total, tasks

    def _active(self, owner: str) -> tuple[int, int, int]:
        """(active runs and tasks of ``owner``, of the server, active tasks of the server);
        call under the lock. A stopped queued run is already "cancelled", a stopped task is
        leaving, and a stop the engine has not honoured within the grace period is settled
        here, so none of them holds a slot."""
        now = time.time()
        mine = total = tasks = 0
        for r in self._records.values():
            if isinstance(r, RunRecord):
                if r.status not in ACTIVE or r.settle(now):
                    continue
            elif r.status not in ACTIVE or r.stop.is_set():
                continue
            total += 1
            mine += r.owner == owner
            tasks += r.kind == "task"
        return mine, total, tasks

    def adopt_bundle(self, path: str, owner: str) -> str:
        """A bundle that belongs to ``owner`` (one run of its sweep): readable by that session
        only, like its own runs, and listed with them; adopting a folder again keeps its id."""
        access.check_submitter(owner)
        path = str(path)
        with self._lock:
            for r in self._records.values():
                if isinstance(r, RunRecord) and r.path == path and r.owner == owner:
                    return r.run_id
        config = engine_io.read_json(os.path.join(path, "config.json"))  # disk: outside the lock
        created = engine_io.folder_mtime(path)
        rec = RunRecord.from_bundle(
            secrets.token_hex(8), owner, path, config, created, self.config.max_frames
        )
        rec.shared, rec.source = False, "sweep"
        with self._lock:
            rec.seq = next(self._seq)
            self._records[rec.run_id] = rec
        return rec.run_id

    # ---- submitting --------------------------------------------------------------------------
    def submit_group(self, specs: list, owner: str, labels: list[str] | None = None) -> list[str]:
        """Queue several runs as one side-by-side group; all or none (quota checked first)."""
        access.check_submitter(owner)
        group, now = secrets.token_hex(4), time.time()
        with self._lock:
            mine, total, _ = self._with_outside(owner)
            refused = access.limit_error(len(specs), mine, total, self.config)
            if refused:
                raise Busy(refused)
            ids = []
            for i, spec in enumerate(specs):
                to_dict = getattr(spec, "to_dict", None)
                rec = RunRecord(
                    run_id=secrets.token_hex(8),
                    owner=owner,
                    label=(labels[i] if labels else None) or getattr(spec, "label", "run"),
                    live=LiveBuffer(self.config.max_frames),
                    group=group,
                    spec=spec,
                    spec_dict=to_dict() if to_dict else None,
                    created=now,
                    seq=next(self._seq),
                )
                self._records[rec.run_id] = rec
                ids.append(rec.run_id)
        for run_id in ids:
            self._write_meta(run_id, with_spec=True)
            self._pool.run(self._execute, run_id)
        return ids

    def submit(self, spec, owner: str, label: str | None = None) -> str:
        return self.submit_group([spec], owner, [label] if label else None)[0]

    def submit_task(
        self,
        owner: str,
        label: str,
        fn: Callable[[Callable[[str], None], Callable[[], bool]], Any],
        *,
        join_active: bool = False,
    ) -> str:
        """Run ``fn(report, should_stop) -> payload`` on the analysis threads (not persisted).
        The owner's active tasks of the same ``label`` are stopped first (a new spectrum
        replaces the previous one); with ``join_active`` an active one is returned instead
        and ``fn`` not run (two overlapping polls that each start the next part of a view
        get one task, rather than the second stopping the task the first one's page holds).
        Busy when a limit is reached."""
        access.check_submitter(owner)
        rec = TaskRecord(run_id=secrets.token_hex(8), owner=owner, label=label)
        rec.created = time.time()
        with self._lock:
            mine_active = [
                old for old in self._records.values()
                if old.kind == "task" and old.owner == owner and old.label == label
                and old.status in ACTIVE
            ]  # fmt: skip
            if join_active and mine_active:
                return max(mine_active, key=lambda r: r.seq).run_id
            for old in mine_active:
                _stop_task(old, rec.created)
            mine, total, tasks = self._with_outside(owner)
            refused = access.limit_error(1, mine, total, self.config, tasks=tasks)
            if refused:
                raise Busy(refused)
            rec.seq = next(self._seq)
            self._records[rec.run_id] = rec
            self._forget_tasks(owner)
        self._pool.task(self._execute_task, rec, fn)
        return rec.run_id

    def _forget_tasks(self, owner: str) -> None:
        """Drop finished tasks nothing will read (call under the lock): the owner's older ones
        (its page shows the newest) and, server-wide, all but the newest 2 x max_tasks_total,
        since a spectrum's payload holds its modes (up to tens of MB)."""
        done = sorted(
            (r for r in self._records.values() if r.kind == "task" and r.status in TERMINAL),
            key=lambda r: r.seq,
        )
        mine = [r for r in done if r.owner == owner]
        drop = {r.run_id for r in mine[:-1]}
        drop |= {r.run_id for r in done[: max(0, len(done) - 2 * self.config.max_tasks_total)]}
        for run_id in drop:
            del self._records[run_id]

    # ---- workers ---------------------------------------------------------------------------------
    def _execute(self, run_id: str) -> None:
        self._executing.add(run_id)
        try:
            self._execute_run(run_id)
        finally:
            self._executing.discard(run_id)

    def _execute_run(self, run_id: str) -> None:
        with self._lock:
            rec = self._records[run_id]
            go = rec.start()
        self._write_meta(run_id, with_spec=not go)  # a cancelled run's config says so
        if not go:
            return
        result, error = guarded(self._run_spec, rec)
        if isinstance(result, _StoppedRun):
            with self._lock:
                rec.stopped_by(result.phase)
            self._write_meta(run_id)
            return
        if error is None:
            result, error = guarded(self._finish, rec, result)
        if error is not None:
            LOG.error("run %s (%s, session %.8s) failed:\n%s", run_id, rec.label, rec.owner, error)
            with self._lock:
                rec.fail(error)
        self._persist(rec)

    def _run_spec(self, rec: RunRecord):
        """The runner's result, or _StoppedRun(phase) when it raised engine.types.Stopped."""
        hooks = {}
        if self._runner_phases:
            hooks["on_phase"] = lambda phase, detail="": self._set_phase(rec, phase, detail)
        if self._runner_frames:
            hooks["on_frame"] = lambda step, x: self._show(rec, step, x)
            hooks["frame_s"] = self.config.frame_ms / 1000
        try:
            return self._runner(
                rec.spec,
                on_progress=lambda p: self._push(rec, p),
                should_stop=rec.stop.is_set,
                on_system=lambda system, view: self._set_system(rec, system, view),
                **hooks,
            )
        except Stopped as stop:
            return _StoppedRun(stop.phase)

    def _execute_task(self, rec: TaskRecord, fn) -> None:
        with self._lock:
            if rec.status != "queued":  # stopped while queued: already "cancelled"
                return
            rec.status, rec.started = "running", time.time()
            rec.version += 1

        def report(text: str) -> None:
            with self._lock:
                rec.progress = text
                rec.version += 1

        payload, error = guarded(fn, report, rec.stop.is_set)
        with self._lock:
            if error is None:
                rec.payload, rec.status = payload, ("stopped" if rec.stop.is_set() else "done")
            else:
                rec.status, rec.error = "failed", error
                rec.message = error.strip().splitlines()[-1]
            rec.finished = time.time()
            rec.version += 1
        if error is not None:
            LOG.error("task %s (%s, session %.8s) failed:\n%s", rec.run_id, rec.label, rec.owner,
                      error)  # fmt: skip

    def _set_phase(self, rec: RunRecord, phase: str, detail: str) -> None:
        with self._lock:
            rec.set_phase(phase, detail)

    def _set_system(self, rec: RunRecord, system, view: dict | None) -> None:
        with self._lock:
            rec.system, rec.view = system, view
            rec.version += 1

    def _push(self, rec: RunRecord, p) -> None:
        """on_progress: append the new rows and keep the newest frame (host arrays only)."""
        if p.x is not None:
            p = p._replace(x=np.asarray(p.x, np.float32))
        arrived = time.time()
        with self._lock:
            rec.live.push(p, click_time_s=arrived - rec.created)
            rec.version += 1

    def _show(self, rec: RunRecord, step: int, x) -> None:
        """on_frame: positions between logged rows, the newest frame of the stream only."""
        x = np.asarray(x, np.float32)
        with self._lock:
            rec.live.show(int(step), x)

    def _finish(self, rec: RunRecord, result) -> None:
        frames = kept_frames(result.frames_step, result.frames_x, self.config.max_frames)
        with self._lock:
            rec.finish(result, frames)

    # ---- persistence -------------------------------------------------------------------------
    def _write_meta(self, run_id: str, with_spec: bool = False) -> None:
        """Write the current meta.json (and the pending config.json when ``with_spec``)."""
        with self._io_lock:
            with self._lock:
                rec = self._records[run_id]
                meta, spec = rec.meta(), rec.spec_dict if with_spec else None
            self._store.save_meta(run_id, meta, spec)

    def _persist(self, rec: RunRecord) -> None:
        """Save an ended run: the whole bundle if the engine returned a result, else meta.json
        and config.json (failed runs). A failed save becomes part of the run's message."""
        with self._io_lock:
            with self._lock:
                files = self._files(rec)
                meta, spec = rec.meta(), rec.spec_dict
            if files is None:
                _, error = guarded(self._store.save_meta, rec.run_id, meta, spec)
            else:
                summary = getattr(rec.result, "summary", None)  # the result no longer changes
                files = files._replace(summary=summary() if callable(summary) else {})
                _, error = guarded(self._store.save_run, rec.run_id, files)
        if error is not None:
            with self._lock:
                rec.message += f" (not saved: {error.strip().splitlines()[-1]})"
                rec.version += 1
        elif files is not None:  # on disk now: it may leave memory when others are read
            path = str(self._store.path(rec.run_id).resolve())
            with self._lock:
                rec.path = path
                self._keep_in_memory(rec)

    def _files(self, rec: RunRecord) -> RunFiles | None:
        """What ``RunStore.save_run`` writes, copied under the lock (the columns once, O(n));
        ``summary`` is filled in after the lock is released."""
        if rec.result is None:
            return None
        frames = list(rec.live.frames)
        return RunFiles(
            meta=rec.meta(),
            spec=rec.spec_dict,
            status=rec.status,
            message=rec.message,
            summary={},
            timings=dict(rec.timings),
            metrics=rec.live.columns.columns(),
            frames_step=[s for s, _ in frames],
            frames_x=[x for _, x in frames],
            x_final=rec.x_final,
            view=rec.view,
            system=rec.system if rec.system is not None else getattr(rec.result, "system", None),
        )

    # ---- access control ----------------------------------------------------------------------
    def _readable(self, run_id: str, reader: str) -> Record | None:
        """The record if ``reader`` may read it (call under the lock)."""
        rec = self._records.get(run_id)
        if rec is None or not access.can_read(rec.owner, rec.shared, reader):
            return None
        return rec

    def cancel(self, run_id: str, by: str) -> bool:
        """Ask a run or task to stop (owner only); True when asked (see ``stop``)."""
        return self.stop(run_id, by) is None

    def stop(self, run_id: str, by: str) -> str | None:
        """Ask a run or task to stop (owner only); None when asked, else why not (not yours,
        already finished). A queued run or task is cancelled at once and never starts; a
        running run stops at its next chunk or slow-mode block and keeps everything so far,
        and one building its system or compiling is reported stopped at once (``records``
        module docstring)."""
        with self._lock:
            rec = self._records.get(run_id)
            found = rec is not None and access.can_read(rec.owner, rec.shared, by)
            refused = access.stop_refusal(found, rec.owner if found else "", by,
                                          rec.status if found else "")  # fmt: skip
            if refused:
                return refused
            if isinstance(rec, RunRecord):
                rec.request_stop(time.time())
                ended = rec.status in TERMINAL
            else:
                _stop_task(rec, time.time())
                ended = False
        if ended:
            self._write_meta(run_id)
        return None

    def waiting(self, run_ids: list[str]) -> dict[str, int | None]:
        """{run id: its queue position when it waits for a worker (every worker busy or taken
        by runs ahead of it), else None}: what a Run click tells about the runs it queued."""
        with self._lock:
            free = max(0, self.config.workers - len(self._executing))
            out = {}
            for run_id in run_ids:
                rec = self._records.get(run_id)
                pos = self._queue_position(rec) if rec is not None else None
                out[run_id] = pos if pos is not None and pos > free else None
            return out

    def cancel_all(self, by: str) -> int:
        with self._lock:
            ids = [r.run_id for r in self._records.values() if r.owner == by and r.status in ACTIVE]
        return sum(self.cancel(i, by) for i in ids)

    def share(self, run_id: str, by: str) -> bool:
        """Make a run readable by anyone holding its id (owner only)."""
        with self._lock:
            rec = self._records.get(run_id)
            if rec is None or not access.can_share(rec.owner, by, rec.kind):
                return False
            rec.shared = True
            rec.version += 1
            save = rec.source not in ("cli", "sweep")  # bundles have no meta of the server's
        if save:
            self._write_meta(run_id)
        return True

    # ---- reading -------------------------------------------------------------------------------
    def snapshot(
        self, run_id: str, reader: str, since_rows: int = 0, since_frame: int = 0
    ) -> RunSnapshot | None:
        """An immutable copy for ``reader`` holding only the rows after ``since_rows`` and the
        newest frame if newer than ``since_frame``; None if unknown or not readable."""

        def read(rec):
            if isinstance(rec, RunRecord):
                rec.settle(time.time())
            return snapshot(rec, reader, since_rows, since_frame, self._queue_position(rec))

        return self._reading(run_id, reader, read)

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

    def curve_final(self, run_id: str, reader: str, metric: str) -> float | None:
        """The last finite value of ``metric`` logged by the run (``engine.analysis.final_value``),
        O(1); None when it has none or ``reader`` may not read it."""
        return self._reading(run_id, reader, lambda rec: rec.live.columns.final(metric), True)

    def curve_reach(
        self, run_id: str, reader: str, metric: str, threshold: float
    ) -> analysis.Reach | None:
        """The first logged row with ``metric`` <= threshold (``engine.analysis.first_reach``),
        O(log n); None when never reached or not readable by ``reader``."""
        return self._reading(
            run_id, reader, lambda rec: rec.live.columns.reach(metric, threshold), True
        )

    def frames(self, run_id: str, reader: str) -> list[tuple[int, np.ndarray]] | None:
        """The kept frames [(step, x [n, 3])] of a readable run (replay)."""
        return self._reading(
            run_id, reader, lambda r: [] if r.status == "damaged" else list(r.live.frames), True
        )

    def export_data(self, run_id: str, reader: str) -> dict | None:
        """Everything an export needs: spec, metrics columns, frames, x_final, system; None
        when not readable or damaged (nothing to export)."""

        def read(rec):
            if rec.status == "damaged":
                return None
            live = rec.live
            return {
                "spec": rec.spec_dict,
                "metrics": live.columns.columns(),
                "frames": list(live.frames),
                "x_final": rec.x_final if rec.x_final is not None else live.frame_x,
                "system": rec.system,
                "label": rec.label,
                "status": rec.status,
                "result": rec.result,
            }

        return self._reading(run_id, reader, read, True)

    def remember_system(self, run_id: str, system) -> None:
        """Cache a rebuilt System on a stored run (exports of runs from a previous server)."""
        with self._lock:
            rec = self._records.get(run_id)
            if isinstance(rec, RunRecord) and rec.system is None:
                rec.system = system

    def list_runs(self, reader: str) -> list[RunSnapshot]:
        """This session's runs and every CLI bundle, newest first (no rows, no frames)."""
        with self._lock:
            snaps = [
                snapshot(r, reader, len(r.live.columns), r.live.frame_no, self._queue_position(r))
                for r in self._records.values()
                if isinstance(r, RunRecord) and access.is_listed(r.owner, r.source, reader)
            ]
        return sorted(snaps, key=lambda s: -s.created)

    def shutdown(self, wait: float | None = None) -> bool:
        """Stop every run and task and drop the queue.

        wait None: ask and return at once (tests). A number (the server exiting): queued runs
        end "cancelled", running ones are asked to stop and given ``wait`` seconds to end as
        usual ("stopped", everything so far saved); any still executing then is marked
        "interrupted". Every run's meta.json says how it ended before this returns.
        Returns True when no run is still executing (False: a worker is inside an engine
        call that cannot be interrupted, so the caller should not wait for it).
        """
        now, queued = time.time(), []
        with self._lock:
            for rec in self._records.values():
                if wait is not None and isinstance(rec, RunRecord) and rec.status == "queued":
                    rec.cancel_queued(now)
                    queued.append(rec.run_id)
                elif isinstance(rec, RunRecord) and rec.status == "running":
                    rec.request_stop(now)
                else:
                    rec.stop.set()
        self._pool.shutdown()
        if wait is None:
            return not self._executing
        for run_id in queued:
            self._write_meta(run_id)
        deadline = time.monotonic() + wait
        while self._executing and time.monotonic() < deadline:
            time.sleep(0.02)
        with self._lock:
            left = list(self._executing)
            for run_id in left:
                rec = self._records[run_id]
                if rec.status in ACTIVE:  # one already reported stopped stays so
                    rec.status, rec.phase, rec.message = "interrupted", "interrupted", INTERRUPTED
                    rec.finished = rec.finished or time.time()
                    rec.version += 1
        for run_id in left:
            self._write_meta(run_id)
        return not left

    # ---- internals -----------------------------------------------------------------------------
    def _queue_position(self, rec: Record) -> int | None:
        """1 + the queued records of its kind submitted before it (call under the lock)."""
        if rec.status != "queued":
            return None
        return 1 + sum(
            1
            for r in self._records.values()
            if r.kind == rec.kind and r.status == "queued" and r.seq < rec.seq
        )

    def _reading(self, run_id: str, reader: str, read: Callable, runs_only: bool = False):
        """``read(record)`` under the lock, the record's arrays loaded first (None when not
        readable by ``reader``, or not a run with ``runs_only``). Should the record be
        released between loading and reading (other runs read meanwhile), it is loaded again.
        """
        for _ in range(5):
            rec = self._loaded(run_id, reader)
            if rec is None or (runs_only and not isinstance(rec, RunRecord)):
                return None
            with self._lock:
                if isinstance(rec, RunRecord) and not rec.loaded:
                    continue
                if rec.run_id in self._in_memory:
                    self._in_memory.move_to_end(rec.run_id)
                return read(rec)
        raise RuntimeError(f"run {run_id}: released while being read five times in a row")

    def _loaded(self, run_id: str, reader: str) -> Record | None:
        """The record readable by ``reader``, its arrays loaded (from disk, outside the lock)."""
        with self._lock:
            rec = self._readable(run_id, reader)
            if rec is None or not isinstance(rec, RunRecord) or rec.loaded:
                return rec
        live, x_final, view, problem = self._read_arrays(rec)
        with self._lock:
            if not rec.loaded:
                if live is not None:
                    # frames the browser already counted keep their numbers (frames.py)
                    live.frame_no = max(live.frame_no, rec.live.frame_no)
                    rec.live, rec.x_final, rec.view = live, x_final, view or rec.view
                    self._keep_in_memory(rec)
                elif problem:  # its listing and every reader say so; nothing else changes
                    rec.status, rec.phase, rec.message = "damaged", "damaged", problem
                    rec.version += 1
                rec.loaded = True
        return rec

    def _keep_in_memory(self, rec: RunRecord) -> None:
        """Count ``rec`` (finished, its arrays loaded and on disk) among the runs kept in
        memory, releasing the least recently read beyond ``max_loaded_runs`` (call under the
        lock)."""
        self._in_memory[rec.run_id] = None
        self._in_memory.move_to_end(rec.run_id)
        while len(self._in_memory) > self.config.max_loaded_runs:
            old, _ = self._in_memory.popitem(last=False)
            self._release(self._records.get(old))

    def _release(self, rec: Record | None) -> None:
        """Drop a finished run's rows, frames, result and system from memory, keeping what its
        listing shows; the next read loads them from its folder (call under the lock)."""
        if not isinstance(rec, RunRecord) or rec.status not in TERMINAL or rec.path is None:
            return
        stub = LiveBuffer(self.config.max_frames)
        stub.stage_switch_step, stub.last = rec.live.stage_switch_step, rec.live.last
        stub.frame_no, stub.frame_step = rec.live.frame_no, rec.live.frame_step
        rec.live, rec.result, rec.system, rec.x_final, rec.view = stub, None, None, None, None
        rec.loaded = False

    def in_memory(self) -> list[str]:
        """Ids of the finished runs whose arrays are in memory, least recently read first."""
        with self._lock:
            return list(self._in_memory)

    def _read_arrays(self, rec: RunRecord):
        """(LiveBuffer, x_final, view, problem) of a stored run, a released run or a CLI
        bundle; no lock held."""
        if rec.source in ("stored", "session") and not self._store.finished(rec.run_id):
            return None, None, None, ""  # it never finished: nothing but its meta
        try:
            data = self._read(rec.path)
            live = LiveBuffer(self.config.max_frames)
            live.load(data["metrics"], data["frames_step"], data["frames_x"], data["x_final"])
        except Exception as err:  # a damaged bundle reads as "damaged", never a failed poll
            return None, None, None, f"its files are damaged: {err}"
        if live.stage_switch_step is None:
            live.stage_switch_step = rec.live.stage_switch_step
        return live, np.asarray(data["x_final"]), data.get("view"), ""


def _stop_task(rec: TaskRecord, now: float) -> None:
    """Stop a task: a queued one is "cancelled" at once (it never starts, holds no slot), a
    running one is asked to stop (call under the lock)."""
    if rec.status not in ACTIVE:
        return
    rec.stop.set()
    if rec.status == "queued":
        rec.status, rec.message, rec.finished = "cancelled", "stopped before it started", now
    rec.version += 1


class _StoppedRun(str):
    """What ``guarded`` hands back when the runner raised engine.types.Stopped: its phase."""

    @property
    def phase(self) -> str:
        return str(self)


def _takes(fn: Callable, name: str) -> bool:
    """``fn`` accepts the keyword ``name`` (explicitly or through **kwargs)."""
    try:
        params = inspect.signature(fn).parameters
    except (TypeError, ValueError):
        return False
    return name in params or any(p.kind is p.VAR_KEYWORD for p in params.values())


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
