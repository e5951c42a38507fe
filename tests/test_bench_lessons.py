"""bench_lessons' CPU-by-thread sampler: a busy thread's CPU time shows up in its totals."""

import os
import sys
import threading
import time

import pytest

from bench.bench_lessons import ThreadCPU, cpu_since

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")


def test_cpu_since_keeps_what_grew_largest_first():
    before = {"wb-run": 1.0, "waitress": 2.0}
    now = {"wb-run": 5.5, "waitress": 2.0, "tf_XLAEigen": 3.0}
    assert list(cpu_since(before, now).items()) == [("wb-run", 4.5), ("tf_XLAEigen", 3.0)]


def test_a_busy_thread_is_counted():
    sampler = ThreadCPU(os.getpid(), name_threads=False)  # no py-spy attaching to ourselves
    deadline = time.time() + 30
    while not sampler.totals() and time.time() < deadline:
        time.sleep(0.05)  # the first sample
    before = sum(sampler.totals().values())

    def burn():
        while time.thread_time() < 0.6:
            pass

    worker = threading.Thread(target=burn)
    worker.start()
    worker.join()
    while sum(sampler.totals().values()) - before < 0.5 and time.time() < deadline:
        time.sleep(0.05)  # until a sample after the burn
    assert sum(sampler.totals().values()) - before >= 0.5
