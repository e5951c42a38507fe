"""Jitted chunks of optimization steps (a compiled loop); the caller owns the outer loop.

``make_chunk_fn`` returns a ``ChunkFn``: one call runs ``chunk_size`` optimizer steps on
``objective(params, aux)`` and returns the new params and optimizer state plus, at the end
of the chunk, the positions x = apply(params), the full deterministic energy E(x) and
|dE/dx|. Shapes are static, so after the first call nothing recompiles (``n_traces`` counts
traces for the test of exactly that).

A chunk may also be run in pieces (``ChunkFn.steps``: any number of steps up to
``chunk_size``, then x, without the energy), so that a caller can show positions between
logged rows when a chunk takes longer than a display frame. The step count is an argument of
one compiled kernel (a while loop), not a shape: pieces of any size reuse it, and a chunk
run in pieces ends bitwise where the whole chunk would (tests/test_run.py).

A ``Stage`` pairs a chunk runner with the optimizer it was built with (so the host can
initialize that optimizer's state), and an ``Observation`` is what the host sees after a
chunk: one logged row's inputs.
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


class Steps(NamedTuple):
    """A piece of a chunk: params and optimizer state after ``count`` steps, x = apply(params)
    and the objective before each step (entries past ``count`` are zero)."""

    params: optax.Params
    opt_state: optax.OptState
    x: jax.Array
    train_energies: jax.Array  # [chunk_size]


class ChunkFn:
    """A jitted chunk of steps with a trace counter and ahead-of-time compilation.

    Two kernels: ``steps_fn(params, opt_state, aux, count) -> Steps`` (``count`` a traced
    int32, at most ``chunk_size``) and ``observe_fn(x) -> (E, |dE/dx|)``.
    """

    def __init__(self, steps_fn: Callable, observe_fn: Callable, chunk_size: int):
        self.chunk_size = chunk_size
        self.n_traces = 0
        self.compile_seconds = 0.0

        def counted(*args):
            self.n_traces += 1  # runs only while tracing
            return steps_fn(*args)

        self._jitted = jax.jit(counted)
        self._observe = jax.jit(observe_fn)
        self._compiled = None
        self._observe_compiled = None

    def compile(self, params, opt_state, aux) -> float:
        """Compile for these argument shapes now; returns the seconds it took."""
        t = time.perf_counter()
        count = jnp.int32(self.chunk_size)
        self._compiled = self._jitted.lower(params, opt_state, aux, count).compile()
        x = self._compiled.out_info.x  # a ShapeDtypeStruct
        self._observe_compiled = self._observe.lower(x).compile()
        self.compile_seconds += time.perf_counter() - t
        return time.perf_counter() - t

    def steps(self, params, opt_state, aux, count: int) -> Steps:
        """Run ``count`` (1..chunk_size) steps; dispatched asynchronously like any jit call."""
        if not 1 <= count <= self.chunk_size:
            raise ValueError(f"count must be in [1, {self.chunk_size}], got {count}")
        count = jnp.int32(count)
        if self._compiled is not None:
            try:
                return self._compiled(params, opt_state, aux, count)
            except (TypeError, ValueError):
                self._compiled = None  # aux changed shape (neighbour-list growth): re-trace
        return self._jitted(params, opt_state, aux, count)

    def observe(self, x: jax.Array) -> tuple[jax.Array, jax.Array]:
        """(full energy, |dE/dx|) at x."""
        if self._observe_compiled is not None:
            return self._observe_compiled(x)
        return self._observe(x)

    def __call__(self, params, opt_state, aux) -> ChunkOut:
        """The whole chunk: ``chunk_size`` steps, then the energy at the end."""
        out = self.steps(params, opt_state, aux, self.chunk_size)
        energy, grad_norm = self.observe(out.x)
        return ChunkOut(out.params, out.opt_state, out.x, energy, grad_norm, out.train_energies)


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

    def steps(params, opt_state, aux, count):
        def step(i, carry):
            params, opt_state, values = carry
            value, grads = value_and_grad(params, aux)
            updates, opt_state = tx.update(grads, opt_state, params)
            return optax.apply_updates(params, updates), opt_state, values.at[i].set(value)

        dtype = jax.eval_shape(objective_fn, params, aux).dtype
        values = jnp.zeros(chunk_size, dtype)
        params, opt_state, values = jax.lax.fori_loop(0, count, step, (params, opt_state, values))
        return Steps(params, opt_state, apply_fn(params), values)

    def observe(x):
        energy, grad = energy_and_force(x)
        return energy, jnp.linalg.norm(grad)

    return ChunkFn(steps, observe, chunk_size)


class Stage(NamedTuple):
    """One stage of a run, built once: its jitted chunk runner and the optimizer inside it.

    Fields:
      chunk: the ChunkFn that runs ``chunk_size`` steps of ``tx`` on the stage's objective.
      tx: the optax transformation, for ``tx.init(params)`` when the stage starts.
    """

    chunk: ChunkFn
    tx: optax.GradientTransformation
