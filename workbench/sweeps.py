"""Sweeps in the workbench: each session's sweeps, run on Dask without blocking the server.

``SweepManager`` keeps one record per sweep (owner, spec, status, rows as they arrive) and
runs each sweep's driver (``engine.cluster.run_sweep``) on a background thread, against one
Dask client shared by every sweep: an embedded LocalCluster started on first use, or the
existing scheduler named by ``--scheduler`` / SLOWMODE_SCHEDULER. Dash callbacks only read
snapshots, so the server never waits on the cluster.

Rules, as for runs: a sweep belongs to the session that started it (others read it as "not
found"); an active sweep counts as one of the session's ``max_active_per_session`` and of
the server's ``max_active_total``, both ways (runs count against sweeps too); at most
``max_running`` sweeps run at once, more wait ("queued"). Each sweep lives in
``<run_dir>/sweeps/<sweep_id>/`` (sweep.json, meta.json, results.jsonl, one bundle per run
under runs/) and is listed again after a restart; one that was active then reads
"interrupted", and starting it again resumes it (finished runs are not run again).
"""

from __future__ import annotations

import dataclasses
import math
import os
import secrets
import threading
import time
import traceback
from collections.abc import Callable
from pathlib import Path

from engine import io as engine_io
from engine.cluster import SCHEDULER_ENV, run_sweep
from engine.sweeps import SweepSpec, estimate_seconds

from . import access

ACTIVE = ("queued", "running")
META = "meta.json"


@dataclasses.dataclass
class SweepRecord:
    """One sweep. rows grow as runs finish; version counts changes (polls skip no-ops)."""

    sweep_id: str
    owner: str
    spec: SweepSpec
    folder: Path
    status: str = "queued"
    message: str = ""
    rows: list = dataclasses.field(default_factory=list)
    counts: dict = dataclasses.field(default_factory=dict)
    created: float = dataclasses.field(default_factory=time.time)
    started: float | None = None
    finished: float | None = None
    version: int = 0
    stop: threading.Event = dataclasses.field(default_factory=threading.Event)

    def meta(self) -> dict:
        keys = ("sweep_id", "owner", "status", "message", "created", "started", "finished")
        return {k: getattr(self, k) for k in keys}


@dataclasses.dataclass(frozen=True)
class SweepSnapshot:
    """An immutable copy for the panel: rows are a new list (rows themselves are not mutated
    after they arrive)."""

    sweep_id: str
    name: str
    status: str
    message: str
    n_runs: int
    rows: list
    counts: dict
    elapsed: float
    spec: SweepSpec
    version: int

    @property
    def terminal(self) -> bool:
        return self.status not in ACTIVE


class SweepManager:
    """Sweeps of all sessions (see the module docstring)."""

    def __init__(
        self,
        root,
        *,
        scheduler: str | None = None,
        n_workers: int | None = None,
        max_running: int = 1,
        max_active: Callable[[str], tuple[int, int]] | None = None,
        limit: int = 4,
        max_total: int | None = None,
        client=None,
    ):
        self.root = Path(root)
        self.scheduler = scheduler
        self.n_workers = n_workers
        self.limit, self.max_total = limit, max_total
        # (the session's, the server's) active runs and tasks (RunRegistry.active_counts)
        self._other_active = max_active or (lambda owner: (0, 0))
        self._lock = threading.Lock()
        self._slots = threading.Semaphore(max_running)
        self._records: dict[str, SweepRecord] = {}
        self._client = client  # a given client (tests, an app's own) is used as it is
        self._owns_client = client is None
        self._cluster = None
        self._index()

    # ---- submitting and stopping -------------------------------------------------------------
    def estimate(self, spec: SweepSpec) -> float:
        """Seconds the sweep should take on this server's cluster (engine.sweeps model)."""
        return estimate_seconds(spec, self.n_workers or 1)

    def submit(self, spec: SweepSpec, owner: str, sweep_id: str | None = None) -> str:
        """Start ``spec`` (or resume the owner's sweep ``sweep_id``); access.Busy-style
        ValueError when the session already holds its limit of active runs and sweeps."""
        access.check_submitter(owner)
        mine, total = self.active_counts(owner)
        other_mine, other_total = self._other_active(owner)
        refused = access.quota_error(mine + other_mine, 1, self.limit)
        refused = refused or access.total_error(total + other_total, 1, self.max_total)
        if refused:
            raise ValueError(refused)
        with self._lock:
            old = self._records.get(sweep_id or "")
            if old is not None and (old.owner != owner or old.status in ACTIVE):
                raise ValueError("that sweep is not yours to resume, or is still active")
            sid = old.sweep_id if old else secrets.token_hex(8)
            rec = SweepRecord(sid, owner, old.spec if old else spec, self.root / sid)
            self._records[sid] = rec
        self._save_meta(rec)
        threading.Thread(target=self._drive, args=(rec,), daemon=True, name=f"sweep-{sid}").start()
        return sid

    def active_counts(self, owner: str) -> tuple[int, int]:
        """(queued and running sweeps of ``owner``, of the server)."""
        with self._lock:
            active = [r.owner for r in self._records.values() if r.status in ACTIVE]
        return sum(o == owner for o in active), len(active)

    def cancel(self, sweep_id: str, by: str) -> bool:
        with self._lock:
            rec = self._records.get(sweep_id)
            if rec is None or rec.owner != by or rec.status not in ACTIVE:
                return False
            rec.stop.set()
            rec.message = "cancelling: running runs stop at their next chunk"
            rec.version += 1
        return True

    # ---- reading -----------------------------------------------------------------------------
    def snapshot(self, sweep_id: str | None, reader: str) -> SweepSnapshot | None:
        with self._lock:
            rec = self._records.get(sweep_id or "")
            if rec is None or rec.owner != reader:
                return None
            end = rec.finished or time.time()
            start = rec.started or rec.created
            return SweepSnapshot(
                rec.sweep_id, rec.spec.name, rec.status, rec.message, rec.spec.n_runs,
                list(rec.rows), dict(rec.counts), max(0.0, end - start), rec.spec, rec.version,
            )  # fmt: skip

    def list(self, reader: str) -> list[SweepSnapshot]:
        with self._lock:
            ids = [r.sweep_id for r in self._records.values() if r.owner == reader]
        return [s for s in (self.snapshot(i, reader) for i in ids) if s is not None]

    def run_folder(self, sweep_id: str, key: str, reader: str) -> str | None:
        """The bundle folder of one run of the reader's sweep (for replay), or None."""
        with self._lock:
            rec = self._records.get(sweep_id)
            if rec is None or rec.owner != reader:
                return None
        folder = rec.folder / "runs" / key
        return str(folder) if engine_io.is_bundle(folder) else None

    # ---- the driver thread -------------------------------------------------------------------
    def _drive(self, rec: SweepRecord) -> None:
        with self._slots:
            self._set(rec, status="running", started=time.time())
            try:
                outcome = run_sweep(
                    rec.spec, rec.folder, client=self._get_client(),
                    on_row=lambda row, counts: self._add(rec, row, counts),
                    should_stop=rec.stop.is_set,
                )  # fmt: skip
                done = "cancelled" if outcome.status == "cancelled" else "done"
                self._set(rec, status=done, rows=outcome.rows, message=_summary(outcome.rows),
                          finished=time.time())  # fmt: skip
            except Exception:  # noqa: BLE001 - a sweep never dies silently
                message = traceback.format_exc().strip().splitlines()[-1]
                self._set(rec, status="failed", message=message, finished=time.time())

    def _add(self, rec: SweepRecord, row: dict, counts: dict) -> None:
        with self._lock:
            rec.rows.append(row)
            rec.counts = counts
            rec.version += 1

    def _set(self, rec: SweepRecord, **changes) -> None:
        # meta.json is written before the change is visible: a reader that sees a sweep end
        # (and a server restarted then) finds it ended on disk too, never "interrupted"
        with self._lock:
            for k, v in changes.items():
                setattr(rec, k, v)
            rec.version += 1
            self._save_meta(rec)

    def _get_client(self):
        with self._lock:
            if self._client is None:
                from engine.cluster import connect

                address = self.scheduler or os.environ.get(SCHEDULER_ENV)
                self._client, self._cluster = connect(address, self.n_workers)
            return self._client

    # ---- persistence -------------------------------------------------------------------------
    def _save_meta(self, rec: SweepRecord) -> None:
        rec.folder.mkdir(parents=True, exist_ok=True)
        engine_io.write_json(rec.folder / "sweep.json", rec.spec.to_dict())
        engine_io.write_json(rec.folder / META, rec.meta())

    def _index(self) -> None:
        """Sweeps left by an earlier server: listed with their results; active ones are
        marked interrupted (starting them again resumes them)."""
        if not self.root.is_dir():
            return
        for folder in sorted(self.root.iterdir()):
            try:
                meta = engine_io.read_json(folder / META)
                spec = SweepSpec.from_dict(engine_io.read_json(folder / "sweep.json"))
            except (OSError, ValueError):
                continue  # not a sweep folder, or a damaged one: skipped, never fatal
            rows = _read_rows(folder / "results.jsonl")
            status = "interrupted" if meta.get("status") in ACTIVE else meta.get("status", "done")
            rec = SweepRecord(meta["sweep_id"], meta["owner"], spec, folder, status=status)
            rec.rows, rec.message = rows, meta.get("message", "")
            rec.created, rec.started = meta.get("created", 0.0), meta.get("started")
            rec.finished = meta.get("finished") or rec.started
            self._records[rec.sweep_id] = rec

    def shutdown(self) -> None:
        with self._lock:
            for rec in self._records.values():
                rec.stop.set()
            client, cluster, self._client, self._cluster = self._client, self._cluster, None, None
        if client is not None and self._owns_client:
            client.close()
        if cluster is not None:
            cluster.close()


def _read_rows(path: Path) -> list[dict]:
    """The rows of results.jsonl, the last row of each run winning (a resumed run appends)."""
    import json

    if not path.exists():
        return []
    rows: dict[str, dict] = {}
    for line in path.read_text().splitlines():
        try:
            row = json.loads(line)
        except ValueError:
            continue  # a line cut by a crash
        rows[row.get("key", str(len(rows)))] = row
    return list(rows.values())


def _summary(rows: list[dict]) -> str:
    failed = sum(r["status"] == "failed" for r in rows)
    diverged = sum(r["status"] == "diverged" for r in rows)
    finite = [r for r in rows if isinstance(r.get("final_energy"), float)]
    finite = [r for r in finite if math.isfinite(r["final_energy"])]
    best = min(finite, key=lambda r: r["final_energy"], default=None)
    text = f"{len(rows)} runs, {failed} failed, {diverged} diverged"
    if best is not None:
        where = f"{best['method']}, seed {best['seed']}"
        text += f"; lowest final energy {best['final_energy']:.6g} ({where})"
    return text


_MANAGER: list[SweepManager] = []  # the process-wide manager, as registry.install/get


def install(manager: SweepManager | None) -> None:
    """Make ``manager`` the one the Sweep panel uses (None: forget it)."""
    _MANAGER[:] = [manager] if manager is not None else []


def get() -> SweepManager:
    if not _MANAGER:
        raise RuntimeError("no SweepManager installed (workbench.server.create_app installs one)")
    return _MANAGER[0]
