"""Running sweeps on Dask distributed: an embedded LocalCluster, or an existing scheduler.

``run_sweep(sweep, out_dir, *, scheduler=None, client=None, ...)``:

  - one Dask task per run (``_run_task``), submitted at once; results stream back as runs
    finish (``on_row``); each run writes its bundle to ``out_dir/runs/<key>/`` and the sweep
    keeps ``sweep.json`` (its spec) and ``results.jsonl`` / ``results.csv`` (one row a run);
  - slow modes are computed once per (system, seed, mode settings, energy) by a
    ``_modes_task`` whose result Dask hands to every run that needs it;
  - resumable: a run whose bundle says "done" or "diverged" is read back, not run again;
  - cancellable as a whole: ``should_stop()`` (polled by the driver) sets a Dask ``Event``
    that every running task polls between chunks, and pending tasks are cancelled;
  - a failed run is a row with status "failed" and its message, never fatal to the sweep.

The embedded cluster uses process workers, one per core by default, each single-threaded
(OMP, BLAS and XLA limited to one thread) so that workers do not oversubscribe the cores; all
workers share one JAX persistent compilation cache (``<out_dir>/.jax-cache`` unless given).
An existing cluster is reached with ``scheduler="tcp://HOST:PORT"`` (or SLOWMODE_SCHEDULER);
its workers need this package installed.
"""

from __future__ import annotations

import dataclasses
import math
import os
import time
import traceback
from collections.abc import Callable
from pathlib import Path

from . import io
from .sweeps import FINISHED, SweepRun, SweepSpec, expand

SCHEDULER_ENV = "SLOWMODE_SCHEDULER"
WORKER_ENV = {
    "OMP_NUM_THREADS": "1",
    "OPENBLAS_NUM_THREADS": "1",
    "MKL_NUM_THREADS": "1",
    "XLA_FLAGS": "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1",
}
STOP_POLL_S = 0.5  # a task asks the scheduler whether the sweep was cancelled at most this often
SUMMARY_KEYS = ("final_energy", "best_energy", "wall_time_s", "steps", "modes_s", "compile_s")


@dataclasses.dataclass
class SweepOutcome:
    """rows: one dict per run (key, method, seed, the varied fields, status, message, summary
    numbers, final structure metrics); status: "done" or "cancelled"; ran: runs executed now
    (the others were read back from a previous call)."""

    rows: list
    status: str
    ran: int


def local_cluster(n_workers: int | None = None):
    """An embedded LocalCluster: ``n_workers`` single-threaded process workers (default: one
    per core), no dashboard, listening on loopback only.

    ``dashboard_address=None`` does not turn the dashboard off (dask/distributed#8136): it
    still binds port 8787. The scheduler's HTTP server (health checks) takes a free loopback
    port instead and its Bokeh dashboard is off, so two servers on one machine do not
    contend for a fixed port."""
    from distributed import LocalCluster

    return LocalCluster(
        n_workers=n_workers or os.cpu_count() or 1,
        threads_per_worker=1,
        processes=True,
        host="127.0.0.1",
        dashboard_address="127.0.0.1:0",
        scheduler_kwargs={"dashboard": False},
        env=dict(WORKER_ENV),
        silence_logs=40,
    )


def connect(scheduler: str | None = None, n_workers: int | None = None):
    """(client, cluster we own or None): an existing scheduler when given (or named by
    SLOWMODE_SCHEDULER), else a new embedded LocalCluster."""
    from distributed import Client

    address = scheduler or os.environ.get(SCHEDULER_ENV)
    if address:
        return Client(address, timeout="20s"), None
    cluster = local_cluster(n_workers)
    return Client(cluster), cluster


def run_sweep(
    sweep: SweepSpec,
    out_dir,
    *,
    scheduler: str | None = None,
    client=None,
    n_workers: int | None = None,
    cache_dir: str | None = None,
    on_row: Callable[[dict, dict], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> SweepOutcome:
    """Run every run of ``sweep`` not already finished under ``out_dir``.

    Args:
      sweep: the sweep. out_dir: where sweep.json, results and one bundle per run go.
      scheduler / client / n_workers: where to run (see ``connect``); a given client is used
        as it is and left open.
      cache_dir: the JAX persistent compilation cache shared by the workers.
      on_row: called in the driver with (row, counts) as each run finishes; counts holds
        total, done, failed, diverged, pending and resumed.
      should_stop: polled by the driver; True cancels the sweep as a whole.
    """
    out = Path(out_dir)
    io.write_json(out / "sweep.json", sweep.to_dict())
    runs = expand(sweep)
    cache = str(cache_dir or out / ".jax-cache")
    rows, todo = {}, []
    for run in runs:
        old = _finished_row(run, out)
        if old is not None:
            rows[run.key] = old
        else:
            todo.append(run)
    counts = {"total": len(runs), "resumed": len(rows), "pending": len(todo)}
    for row in rows.values():
        _count(counts, row)
        if on_row:
            on_row(row, dict(counts))
    status = "done"
    if todo:
        own = client is None
        client, cluster = connect(scheduler, n_workers) if own else (client, None)
        try:
            status = _execute(client, todo, out, cache, rows, counts, on_row, should_stop)
        finally:
            if own:
                client.close()
                if cluster is not None:
                    cluster.close()
    ordered = [rows[r.key] for r in runs if r.key in rows]
    _write_results(out, ordered)
    return SweepOutcome(ordered, status, len(todo) if status == "done" else counts.get("ran", 0))


def _execute(client, todo, out, cache, rows, counts, on_row, should_stop) -> str:
    from distributed import Event, wait

    stop_name = f"slowmode-sweep-stop-{os.getpid()}-{time.time_ns()}"
    stop = Event(stop_name, client=client)
    modes = _submit_modes(client, todo, cache)
    futures = {}
    for run in todo:
        key = _modes_key(run.spec) if run.spec.reparam.needs_modes else None
        fut = client.submit(
            _run_task, run, str(out / "runs" / run.key), modes.get(key), stop_name, cache,
            key=f"run-{run.key}-{time.time_ns()}", pure=False,
        )  # fmt: skip
        futures[fut] = run
    pending, status = set(futures), "done"
    while pending:
        if should_stop and should_stop() and status == "done":
            status = "cancelled"  # running tasks stop at their next chunk, queued ones at once
            stop.set()
        try:
            done, pending = wait(pending, timeout=STOP_POLL_S, return_when="FIRST_COMPLETED")
        except TimeoutError:  # nothing finished within the poll interval
            continue
        for fut in done:
            run = futures[fut]
            row = _result_row(fut, run)
            if row is None:  # cancelled before it started
                continue
            rows[run.key] = row
            counts["pending"] -= 1
            counts["ran"] = counts.get("ran", 0) + 1
            _count(counts, row)
            _append_jsonl(out / "results.jsonl", row)
            if on_row:
                on_row(row, dict(counts))
    return status


def _result_row(fut, run: SweepRun) -> dict | None:
    if fut.status == "cancelled":
        return None
    try:
        return fut.result()
    except Exception as err:  # noqa: BLE001 - a lost worker or an unpicklable result
        return _row(run, "failed", f"{type(err).__name__}: {err}", {}, {})


def _count(counts: dict, row: dict) -> None:
    key = row["status"] if row["status"] in ("failed", "diverged", "stopped") else "done"
    counts[key] = counts.get(key, 0) + 1


def _modes_key(spec) -> tuple:
    return (spec.system, spec.seed, spec.modes, spec.energy)


def _submit_modes(client, todo: list[SweepRun], cache: str) -> dict:
    """One slow-mode task per (system, seed, modes, energy), for the largest k asked for."""
    groups: dict[tuple, list] = {}
    for run in todo:
        if run.spec.reparam.needs_modes:
            groups.setdefault(_modes_key(run.spec), []).append(run.spec)
    return {
        key: client.submit(_modes_task, specs, cache, pure=False) for key, specs in groups.items()
    }


# ---- worker side -----------------------------------------------------------------------------
_CONFIGURED: set = set()


def _configure_worker(cache_dir: str) -> None:
    """Once per worker process: the shared persistent compilation cache."""
    if cache_dir in _CONFIGURED:
        return
    from .run import use_compilation_cache

    use_compilation_cache(cache_dir)
    _CONFIGURED.add(cache_dir)


def _modes_task(specs: list, cache_dir: str):
    """The slow modes shared by ``specs`` (one system, seed, mode settings and energy), as
    many as the most demanding of them needs."""
    from .run import compute_modes, default_n_modes
    from .systems import build_system, make_energy

    _configure_worker(cache_dir)
    spec = specs[0]
    system = build_system(spec.system, spec.seed)
    k = max(default_n_modes(s, system.n_atoms) for s in specs)
    spec = spec.replace(**{"reparam.n_modes": k})
    return compute_modes(spec, system, make_energy(system, spec.energy))


def _stop_poller(stop_name: str) -> Callable[[], bool]:
    from distributed import Event

    event, state = Event(stop_name), {"t": -math.inf, "set": False}

    def should_stop() -> bool:
        now = time.monotonic()
        if not state["set"] and now - state["t"] >= STOP_POLL_S:
            state["t"], state["set"] = now, event.is_set()
        return state["set"]

    return should_stop


def _run_task(run: SweepRun, folder: str, modes, stop_name: str, cache_dir: str) -> dict:
    """Run one spec on a worker, write its bundle, return its row. Never raises."""
    from . import methods
    from .systems import build_system

    try:
        should_stop = _stop_poller(stop_name)
        if should_stop():
            return _row(run, "stopped", "sweep cancelled before this run started", {}, {})
        _configure_worker(cache_dir)
        system = build_system(run.spec.system, run.spec.seed)
        if modes is not None:
            modes = slice_modes(modes, run.spec, system.n_atoms)
        result = methods.execute(run.spec, should_stop=should_stop, system=system, modes=modes)
        io.write_bundle(result, folder)
        last = {k: float(v[-1]) for k, v in result.metrics.items() if len(v)}
        return _row(run, result.status, result.message, result.summary(), last)
    except Exception:  # noqa: BLE001 - a failed run is a row, never fatal to the sweep
        message = traceback.format_exc().strip().splitlines()[-1]
        io.write_json(Path(folder) / "config.json", {
            "spec": run.spec.to_dict(), "status": "failed", "message": message,
        })  # fmt: skip
        return _row(run, "failed", message, {}, {})


def slice_modes(modes, spec, n_atoms: int):
    """The k slowest of precomputed modes for ``spec``, or None when it needs more than were
    computed (the run then computes its own)."""
    from .run import default_n_modes, first_modes

    k = default_n_modes(spec, n_atoms)
    if k > modes.vectors.shape[1]:
        return None
    return first_modes(modes, k)


# ---- rows and files --------------------------------------------------------------------------
def _row(run: SweepRun, status: str, message: str, summary: dict, last: dict) -> dict:
    row = {"key": run.key, "method": run.method, "seed": run.seed, **run.point}
    row.update(status=status, message=message)
    for k in SUMMARY_KEYS:
        v = summary.get(k)
        row[k] = float(v) if isinstance(v, (int, float)) and v is not None else math.nan
    skip = {"step", "stage", "wall_time_s", "energy", "grad_norm"}
    row.update({f"final_{k}": v for k, v in last.items() if k not in skip})
    return row


def _finished_row(run: SweepRun, out: Path) -> dict | None:
    """The row of a run already finished under ``out`` (resume), else None."""
    folder = out / "runs" / run.key
    if not io.is_bundle(folder):
        return None
    bundle = io.read_bundle(folder)
    config = bundle["config"]
    if config.get("status") not in FINISHED:
        return None
    last = {k: float(v[-1]) for k, v in bundle["metrics"].items() if len(v)}
    return _row(run, config["status"], config.get("message", ""), config.get("summary", {}), last)


def _append_jsonl(path: Path, row: dict) -> None:
    import json

    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as fh:  # one line per finished run: a crash loses nothing finished
        fh.write(json.dumps(row, default=float) + "\n")


def _write_results(out: Path, rows: list[dict]) -> None:
    import csv
    import io as _io

    names = list(dict.fromkeys(k for r in rows for k in r))
    buf = _io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=names, lineterminator="\n", restval="")
    writer.writeheader()
    writer.writerows(rows)
    io.write_text(out / "results.csv", buf.getvalue())
