"""Where work executes: a pool for engine runs and a small one for analysis tasks.

- ``workers`` threads run engine jobs (house style §2.4); further submissions queue in
  submission order. Jitted functions may be called from several threads and share the
  compile cache.
- Short analysis tasks (the spectrum) get their own ``task_workers`` threads, so they never
  wait behind long runs, and one session's slow spectrum does not hold another's small one
  (with a single thread, a small spectrum waited 19.5 s behind a large one instead of 2.7 s).
- ``guarded`` calls a job and turns any exception into its traceback: a worker never dies
  silently (house style §2.10).
- Engine work runs at a lower CPU priority (``nice``, the server's ``engine_nice``), so the
  page (HTTP threads, and a browser on the same machine) keeps its share of the cores while
  runs compute: ``lower_priority`` raises the nice value of the worker thread and of every
  native thread that Python did not start, which in this server are the threads engine work
  runs on (JAX/XLA's compute pool, where the jitted steps execute, not the calling thread;
  LLVM's compile workers; BLAS). HTTP request threads are Python threads and keep nice 0.
  Linux only (per-thread nice values); elsewhere nothing changes.
"""

from __future__ import annotations

import os
import sys
import threading
import traceback
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

NICE_MAX = 19  # Linux's lowest priority


class Pool:
    """Two executors: ``workers`` threads for runs, ``task_workers`` for tasks; both run their
    jobs at nice ``nice`` (0: unchanged)."""

    def __init__(self, workers: int, task_workers: int = 1, nice: int = 0):
        if not 0 <= nice <= NICE_MAX:
            raise ValueError(f"nice must be in [0, {NICE_MAX}], got {nice}")
        self.nice = nice
        self._runs = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="wb-run")
        self._tasks = ThreadPoolExecutor(max_workers=task_workers, thread_name_prefix="wb-task")

    def run(self, fn: Callable[..., Any], *args) -> Future:
        """Queue an engine run."""
        return self._runs.submit(self._niced, fn, *args)

    def task(self, fn: Callable[..., Any], *args) -> Future:
        """Queue an analysis task on the task thread."""
        return self._tasks.submit(self._niced, fn, *args)

    def _niced(self, fn: Callable[..., Any], *args) -> Any:
        # before every job: compute threads created since the last one (JAX initializes its
        # backend on first use, maybe from another thread) are lowered too
        if self.nice:
            lower_priority(self.nice)
        return fn(*args)

    def shutdown(self) -> None:
        """Drop queued work and return at once (running jobs stop at their own pace)."""
        self._runs.shutdown(wait=False, cancel_futures=True)
        self._tasks.shutdown(wait=False, cancel_futures=True)


def guarded(fn: Callable[..., Any], *args, **kwargs) -> tuple[Any, str | None]:
    """(fn(...), None), or (None, traceback text) when it raised anything."""
    try:
        return fn(*args, **kwargs), None
    except BaseException:  # noqa: B036 - a worker never dies silently (house style §2.10)
        return None, traceback.format_exc()


def lower_priority(nice: int) -> dict[int, int]:
    """Raise to at least ``nice`` the nice value of the calling thread and of every native
    thread of this process that Python did not start (see the module docstring); threads
    already at ``nice`` or above are left alone (lowering it again needs privileges).

    Returns {native thread id: nice value now} of the threads changed (empty off Linux).
    """
    if not sys.platform.startswith("linux") or nice <= 0:
        return {}
    started = {
        t.native_id
        for t in threading.enumerate()
        if not isinstance(t, threading._DummyThread)  # foreign threads that entered Python
    }
    me = threading.get_native_id()
    try:
        tids = [int(t) for t in os.listdir("/proc/self/task")]
    except OSError:
        return {}
    changed = {}
    for tid in tids:
        if tid in started and tid != me:
            continue
        try:
            if os.getpriority(os.PRIO_PROCESS, tid) < nice:
                os.setpriority(os.PRIO_PROCESS, tid, nice)
                changed[tid] = nice
        except OSError:  # the thread ended meanwhile
            continue
    return changed


def thread_nice(tid: int) -> int:
    """The nice value of native thread ``tid`` of this process (Linux)."""
    return os.getpriority(os.PRIO_PROCESS, tid)
