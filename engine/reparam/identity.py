"""Plain positions: params are x itself (gradient descent on the fine-grained system)."""

from __future__ import annotations

import jax.numpy as jnp

from .base import Reparam


def make_identity(dtype=jnp.float32) -> Reparam:
    def init(key, x0):
        del key
        return jnp.asarray(x0, dtype=dtype)

    def apply(params):
        return params

    return Reparam(init=init, apply=apply, name="none")
