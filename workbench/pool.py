"""Where work executes: a pool for engine runs and a small one for analysis tasks.

- ``workers`` threads run engine jobs (house style §2.4); further submissions queue in
  submission order. Jitted functions may be called from several threads and share the
  compile cache.
- Short analysis tasks (the spectrum) get their own ``task_workers`` threads, so they never
  wait behind long runs, and one session's slow spectrum does not hold another's small one
  (with a single thread, a small spectrum waited 19.5 s behind a large one instead of 2.7 s).
- ``guarded`` calls a job and turns any exception into its traceback: a worker never dies
  silently (house style §2.10).
"""

from __future__ import annotations

import traceback
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any


class Pool:
    """Two executors: ``workers`` threads for runs, ``task_workers`` for tasks."""

    def __init__(self, workers: int, task_workers: int = 1):
        self._runs = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="wb-run")
        self._tasks = ThreadPoolExecutor(max_workers=task_workers, thread_name_prefix="wb-task")

    def run(self, fn: Callable[..., Any], *args) -> Future:
        """Queue an engine run."""
        return self._runs.submit(fn, *args)

    def task(self, fn: Callable[..., Any], *args) -> Future:
        """Queue an analysis task on the task thread."""
        return self._tasks.submit(fn, *args)

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
