"""bench_lessons' CPU-by-thread sampler: a busy thread's CPU time shows up in its totals."""

import os
import sys
import threading
import time

import pytest
from workbench_fakes import wait_for

from bench.bench_lessons import ThreadCPU, cpu_since

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")


def test_cpu_since_keeps_what_grew_largest_first():
    before = {"wb-run": 1.0, "waitress": 2.0}
    now = {"wb-run": 5.5, "waitress": 2.0, "tf_XLAEigen": 3.0}
    assert list(cpu_since(before, now).items()) == [("wb-run", 4.5), ("tf_XLAEigen", 3.0)]


def test_a_busy_thread_is_counted():
    sampler = ThreadCPU(os.getpid(), name_threads=False)  # no py-spy attaching to ourselves
    wait_for(sampler.totals, 30, "the first sample")
    before = sum(sampler.totals().values())

    def burn():
        while time.thread_time() < 0.6:
            pass

    worker = threading.Thread(target=burn)
    worker.start()
    worker.join()
    try:
        wait_for(lambda: sum(sampler.totals().values()) - before >= 0.5, 30, "a later sample")
    finally:
        sampler.stop()
