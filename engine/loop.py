"""Jitted chunks of optimization steps (lax.scan); the caller owns the outer loop.

``make_chunk_fn`` returns a ``ChunkFn``: one call runs ``chunk_size`` optimizer steps on
``objective(params, aux)`` and returns the new params and optimizer state plus, at the end
of the chunk, the positions x = apply(params), the full deterministic energy E(x) and
|dE/dx|. Shapes are static, so after the first call nothing recompiles (``n_traces`` counts
traces for the test of exactly that). A ``Stage`` pairs a chunk runner with the optimizer
it was built with (so the host can initialize that optimizer's state), and an
``Observation`` is what the host sees after a chunk: one logged row's inputs.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax


class ChunkOut(NamedTuple):
    params: optax.Params
    opt_state: optax.OptState
    x: jax.Array  # [n_atoms, 3] at the end of the chunk
    energy: jax.Array  # full energy at x
    grad_norm: jax.Array  # |dE/dx| at x
    train_energies: jax.Array  # [chunk_size] objective before each step


class Observation(NamedTuple):
    """What the host sees after one chunk of steps (or one OpenMM report), host values.

    Fields:
      step: global step count (both stages) at the end of the chunk.
      stage: the stage the chunk ran in: 1 reparametrized, 2 plain positions.
      energy: the full deterministic energy at x.
      grad_norm: |dE/dx| at x.
      x: [n_atoms, 3] float64 positions.
    """

    step: int
    stage: int
    energy: float
    grad_norm: float
    x: np.ndarray


def observe(out: ChunkOut, step: int, stage: int) -> Observation:
    """The host-side Observation of a chunk's output (blocks until the chunk is done)."""
    return Observation(
        step, stage, float(out.energy), float(out.grad_norm), np.asarray(out.x, np.float64)
    )


class ChunkFn:
    """A jitted chunk of steps with a trace counter and ahead-of-time compilation."""

    def __init__(self, fn: Callable, chunk_size: int):
        self.chunk_size = chunk_size
        self.n_traces = 0
        self.compile_seconds = 0.0

        def counted(*args):
            self.n_traces += 1  # runs only while tracing
            return fn(*args)

        self._jitted = jax.jit(counted)
        self._compiled = None

    def compile(self, params, opt_state, aux) -> float:
        """Compile for these argument shapes now; returns the seconds it took."""
        t = time.perf_counter()
        self._compiled = self._jitted.lower(params, opt_state, aux).compile()
        self.compile_seconds += time.perf_counter() - t
        return time.perf_counter() - t

    def __call__(self, params, opt_state, aux) -> ChunkOut:
        if self._compiled is not None:
            try:
                return self._compiled(params, opt_state, aux)
            except (TypeError, ValueError):
                self._compiled = None  # aux changed shape (neighbour-list growth): re-trace
        return self._jitted(params, opt_state, aux)


def make_chunk_fn(
    objective_fn: Callable,
    apply_fn: Callable,
    energy_fn: Callable,
    tx: optax.GradientTransformation,
    chunk_size: int,
) -> ChunkFn:
    """Build the chunk runner.

    Args:
      objective_fn: (params, aux) -> scalar, what the optimizer minimizes.
      apply_fn: params -> x [n_atoms, 3].
      energy_fn: x -> scalar, the full energy reported at the end of each chunk.
      tx: optax transformation.
      chunk_size: steps per call.
    """
    value_and_grad = jax.value_and_grad(objective_fn)
    energy_and_force = jax.value_and_grad(energy_fn)

    def step(carry, aux):
        params, opt_state = carry
        value, grads = value_and_grad(params, aux)
        updates, opt_state = tx.update(grads, opt_state, params)
        return (optax.apply_updates(params, updates), opt_state), value

    def chunk(params, opt_state, aux):
        (params, opt_state), values = jax.lax.scan(
            lambda c, _: step(c, aux), (params, opt_state), None, length=chunk_size
        )
        x = apply_fn(params)
        energy, grad = energy_and_force(x)
        return ChunkOut(params, opt_state, x, energy, jnp.linalg.norm(grad), values)

    return ChunkFn(chunk, chunk_size)


class Stage(NamedTuple):
    """One stage of a run, built once: its jitted chunk runner and the optimizer inside it.

    Fields:
      chunk: the ChunkFn that runs ``chunk_size`` steps of ``tx`` on the stage's objective.
      tx: the optax transformation, for ``tx.init(params)`` when the stage starts.
    """

    chunk: ChunkFn
    tx: optax.GradientTransformation
