"""The engine's CPU priority (workbench/pool.py, the server's engine_nice): run and task
jobs, and the native threads engine work runs on, are niced; the caller's threads (the
server's HTTP threads) are not."""

import os
import sys
import threading

import pytest

from workbench.config import ServerConfig
from workbench.pool import Pool, thread_nice

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="per-thread nice")


def _comm(tid: int) -> str:
    try:
        with open(f"/proc/self/task/{tid}/comm") as fh:
            return fh.read().strip()
    except OSError:
        return ""


def test_jobs_run_niced_with_the_jax_compute_threads_and_the_caller_keeps_its_priority():
    import jax
    import jax.numpy as jnp

    jax.block_until_ready(jax.jit(lambda a: a @ a)(jnp.ones((64, 64))))  # XLA's threads exist
    me = threading.get_native_id()
    base = thread_nice(me)
    if base >= 18:
        pytest.skip("the test process already runs at the lowest priority")
    nice = base + 1  # small: these threads serve the rest of the test session
    pool = Pool(1, 1, nice=nice)
    try:
        run_nice = pool.run(lambda: thread_nice(threading.get_native_id())).result(30)
        task_nice = pool.task(lambda: thread_nice(threading.get_native_id())).result(30)
    finally:
        pool.shutdown()
    assert run_nice >= nice and task_nice >= nice
    assert thread_nice(me) == base  # the caller, like an HTTP thread, is left alone
    xla = [int(t) for t in os.listdir("/proc/self/task") if _comm(int(t)).startswith("tf_XLA")]
    assert xla, "JAX's CPU compute threads were not found (renamed in this jaxlib?)"
    assert all(thread_nice(t) >= nice for t in xla)


def test_engine_nice_is_a_server_setting_with_a_range():
    assert ServerConfig().engine_nice == 0
    assert ServerConfig(engine_nice=10).engine_nice == 10
    with pytest.raises(ValueError, match=r"engine_nice must be in \[0, 19\]"):
        ServerConfig(engine_nice=20)
    with pytest.raises(ValueError, match="nice must be in"):
        Pool(1, nice=-1)
    assert Pool(1).nice == 0
