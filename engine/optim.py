"""Optimizers as optax GradientTransformations, composed with clipping via ``optax.chain``.

- "adam": optax.adam (betas 0.9/0.999, eps 1e-8, as the reference).
- "sgd": optax.sgd with (heavy-ball) momentum.
- "fire": the FIRE minimizer [1] written as a GradientTransformation, so it works on any
  params pytree (positions or reparametrization parameters); the learning rate is the
  initial time step.
Clipping: "elementwise" clamps each gradient entry to [-c, c] (the reference); "global-norm"
rescales the whole gradient to norm <= c; "max-displacement" caps each row of every update
(each particle's displacement, for positions) at length c.

[1] Bitzek, Koskinen, Gähler, Moseler, Gumbsch, "Structural relaxation made simple",
    PRL 97, 170201 (2006).
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import optax

from .config import OptimConfig


class FireState(NamedTuple):
    velocity: optax.Params
    dt: jax.Array
    alpha: jax.Array
    n_positive: jax.Array


def fire(
    dt_start: float,
    *,
    dt_max_factor: float = 10.0,
    n_min: int = 5,
    f_inc: float = 1.1,
    f_dec: float = 0.5,
    alpha_start: float = 0.1,
    f_alpha: float = 0.99,
) -> optax.GradientTransformation:
    """FIRE with unit masses and semi-implicit Euler steps; standard constants of [1]."""

    def init(params):
        dtype = jax.tree.leaves(params)[0].dtype
        return FireState(
            velocity=jax.tree.map(jnp.zeros_like, params),
            dt=jnp.asarray(dt_start, dtype),
            alpha=jnp.asarray(alpha_start, dtype),
            n_positive=jnp.asarray(0, jnp.int32),
        )

    def update(grads, state, params=None):
        del params
        force = jax.tree.map(jnp.negative, grads)

        def dot(a, b):
            pairs = zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True)
            return sum(jnp.vdot(x, y) for x, y in pairs)

        power = dot(force, state.velocity)
        v_norm = jnp.sqrt(dot(state.velocity, state.velocity))
        f_norm = jnp.sqrt(dot(force, force))
        mix = state.alpha * v_norm / jnp.maximum(f_norm, 1e-30)
        uphill = power <= 0
        velocity = jax.tree.map(
            lambda v, f: jnp.where(uphill, jnp.zeros_like(v), (1 - state.alpha) * v + mix * f),
            state.velocity,
            force,
        )
        n_positive = jnp.where(uphill, 0, state.n_positive + 1)
        grow = (~uphill) & (n_positive > n_min)
        dt = jnp.where(
            uphill,
            state.dt * f_dec,
            jnp.where(grow, jnp.minimum(state.dt * f_inc, dt_start * dt_max_factor), state.dt),
        )
        alpha = jnp.where(uphill, alpha_start, jnp.where(grow, state.alpha * f_alpha, state.alpha))
        alpha = alpha.astype(state.alpha.dtype)
        dt = dt.astype(state.dt.dtype)
        velocity = jax.tree.map(lambda v, f: v + dt * f, velocity, force)
        updates = jax.tree.map(lambda v: dt * v, velocity)
        return updates, FireState(velocity, dt, alpha, n_positive)

    return optax.GradientTransformation(init, update)


def clip_rows(max_norm: float) -> optax.GradientTransformation:
    """Cap the Euclidean norm of every row (last axis) of every update leaf at ``max_norm``."""

    def update(updates, state, params=None):
        del params

        def clip(u):
            rows = u.reshape(-1, u.shape[-1]) if u.ndim > 1 else u.reshape(-1, 1)
            norm = jnp.linalg.norm(rows, axis=1, keepdims=True)
            rows = rows * jnp.minimum(1.0, max_norm / jnp.maximum(norm, 1e-30))
            return rows.reshape(u.shape)

        return jax.tree.map(clip, updates), state

    return optax.GradientTransformation(lambda params: optax.EmptyState(), update)


def make_optimizer(
    cfg: OptimConfig, learning_rate: float | None = None
) -> optax.GradientTransformation:
    """The configured optimizer with its clipping, at ``learning_rate`` (default cfg's)."""
    lr = cfg.learning_rate if learning_rate is None else learning_rate
    base = {
        "adam": lambda: optax.adam(lr),
        "sgd": lambda: optax.sgd(lr, momentum=cfg.momentum or None, nesterov=cfg.nesterov),
        "fire": lambda: fire(lr),
    }[cfg.name]()
    if cfg.clip == "elementwise":
        return optax.chain(optax.clip(cfg.clip_value), base)
    if cfg.clip == "global-norm":
        return optax.chain(optax.clip_by_global_norm(cfg.clip_value), base)
    if cfg.clip == "max-displacement":
        return optax.chain(base, clip_rows(cfg.clip_value))
    return base
