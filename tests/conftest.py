"""Shared test setup: float64 JAX, dtype-aware tolerances, tiny systems."""

import os

os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ.setdefault(
    "XLA_FLAGS", "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1"
)

import atexit  # noqa: E402
import shutil  # noqa: E402
import tempfile  # noqa: E402

import jax  # noqa: E402

jax.config.update("jax_enable_x64", True)

# One persistent JAX compilation cache for the test session, in this process, in the CLI
# processes it starts (`python -m engine` reads SLOWMODE_JAX_CACHE) and in browser_util's
# servers (sweeps keep their own <out>/.jax-cache). _fresh_prepared_runs below makes each
# test prepare its runs anew, and a kernel an earlier test compiled (same system, same
# shapes) then loads instead of compiling: tests/test_run.py ran in 54 s instead of 98. A
# fresh folder, so no result depends on what earlier sessions left in ~/.cache. Under
# pytest-xdist the controller makes the folder and its workers inherit the path, so a kernel
# one worker compiled loads in the other (JAX writes each entry atomically).
JAX_CACHE = os.environ.get("SLOWMODE_TEST_JAX_CACHE")
if JAX_CACHE is None:  # the process that makes the folder removes it
    JAX_CACHE = tempfile.mkdtemp(prefix="slowmode-tests-jax-")
    os.environ["SLOWMODE_TEST_JAX_CACHE"] = JAX_CACHE
    atexit.register(shutil.rmtree, JAX_CACHE, ignore_errors=True)
os.environ["SLOWMODE_JAX_CACHE"] = JAX_CACHE

from engine.run import use_compilation_cache  # noqa: E402

use_compilation_cache(JAX_CACHE)

import numpy as np  # noqa: E402
import pytest  # noqa: E402

TOL = {np.float32: 1e-4, np.float64: 1e-8}
SHARED = os.path.join(os.path.dirname(__file__), "..", "..", "shared")
PDB_DIR = os.path.abspath(os.path.join(SHARED, "data", "pdb"))


@pytest.fixture
def key():
    return jax.random.PRNGKey(0)


def shared_pdb(name: str) -> str:
    """Path of a structure in ../shared/data/pdb, or skip the test with the reason."""
    path = os.path.join(PDB_DIR, name)
    if not os.path.exists(path):
        pytest.skip(f"{path} not present (../shared/data/pdb is only on project machines)")
    return path


@pytest.fixture(autouse=True)
def _fresh_prepared_runs():
    """Each test starts without runs prepared by earlier tests (engine.run reuses the
    compiled parts of a repeated spec within a process), so no test depends on the order."""
    from engine.run import clear_prepared

    clear_prepared()


@pytest.fixture(autouse=True)
def _release_fake_runs():
    """After each test, release the fake engine's held runs (tests/workbench_fakes.py)."""
    yield
    import sys

    fakes = sys.modules.get("workbench_fakes")
    if fakes is not None:
        fakes.release_all()
