"""Pure-JAX engine for neural reparametrization of energy minimization.

Public surface: configuration (RunSpec and its parts), system/energy builders, slow modes,
``run`` and its result types. Float64 is enabled so that float64 runs and validations are
possible; every array the engine creates is cast to the run's configured dtype.
"""

import os

# mdtraj's OpenMP threads spin-wait: on busy cores (JAX, OpenMM, a second run) one RMSD call
# took 61 ms instead of 0.26 ms. Set before any OpenMP library loads; BLAS keeps its threads.
os.environ.setdefault("OPENBLAS_NUM_THREADS", str(os.cpu_count() or 1))
os.environ.setdefault("OMP_NUM_THREADS", "1")

import jax  # noqa: E402

jax.config.update("jax_enable_x64", True)

from .config import (  # noqa: E402
    EnergyConfig,
    ModesConfig,
    OptimConfig,
    ReparamConfig,
    RunSpec,
    ScheduleConfig,
    SpecError,
    SystemConfig,
)
from .run import RunResult, run  # noqa: E402
from .systems import build_system, make_energy, structure_metrics  # noqa: E402
from .types import EnergyModel, Progress, SlowModes, System  # noqa: E402


def sweep(spec, client=None, *, out_dir=None, **kwargs) -> list[dict]:
    """Run a ``engine.sweeps.SweepSpec`` on Dask and return its table (one dict per run).

    ``client``: a ``distributed.Client`` to use (default: an embedded LocalCluster, or the
    scheduler named by SLOWMODE_SCHEDULER); ``out_dir`` (default ``runs/sweeps/<name>``) gets
    one bundle per run and is resumable. Other keywords go to ``engine.cluster.run_sweep``.
    """
    from .cluster import run_sweep

    out_dir = out_dir or os.path.join("runs", "sweeps", spec.name)
    return run_sweep(spec, out_dir, client=client, **kwargs).rows


def slow_modes(*args, **kwargs) -> SlowModes:
    """See engine.modes.slow_modes (imported lazily: it pulls in scipy's sparse solvers)."""
    from .modes import slow_modes as _slow_modes

    return _slow_modes(*args, **kwargs)


__all__ = [
    "EnergyConfig",
    "ModesConfig",
    "OptimConfig",
    "ReparamConfig",
    "RunSpec",
    "ScheduleConfig",
    "SpecError",
    "SystemConfig",
    "RunResult",
    "run",
    "build_system",
    "make_energy",
    "structure_metrics",
    "EnergyModel",
    "Progress",
    "SlowModes",
    "System",
    "slow_modes",
    "sweep",
]
