"""Reparametrizations x = f(params): a registry keyed by ``ReparamConfig.kind``."""

from __future__ import annotations

import jax.numpy as jnp

from ..config import ReparamConfig
from ..types import SlowModes
from .base import Reparam
from .gnn import make_gnn, propagation_factors
from .identity import make_identity
from .linear import make_linear

__all__ = [
    "Reparam",
    "make_reparam",
    "make_identity",
    "make_linear",
    "make_gnn",
    "propagation_factors",
]


def make_reparam(
    cfg: ReparamConfig,
    modes: SlowModes | None,
    n_atoms: int,
    dtype=jnp.float32,
    bonds=None,
) -> Reparam:
    """Build the reparametrization ``cfg.kind`` ("none", "linear", "gnn") on ``modes``
    (or on ``bonds`` [m, 2] for the GNN with propagation "bonds")."""
    if cfg.kind == "none":
        return make_identity(dtype)
    if modes is None and cfg.needs_modes:
        raise ValueError(f"reparam.kind={cfg.kind!r} needs slow modes")
    if cfg.kind == "linear":
        reparam = make_linear(modes, n_atoms, dtype)
    else:
        reparam = make_gnn(cfg, modes, n_atoms, dtype, bonds=bonds)
    return anchored(reparam, dtype) if cfg.anchor == "x0" else reparam


def anchored(reparam: Reparam, dtype=jnp.float32) -> Reparam:
    """Displacement form x = x0 + f(p) - f(p0): starts exactly at x0 whatever f is.

    params = {"inner": p, "x0": x0, "f0": f(p0)}: x0 and f0 ride along in params so that
    apply stays a pure function of its argument; stop_gradient gives them zero gradient, so
    Adam, SGD and FIRE never move them.
    """
    import jax

    def init(key, x0):
        inner = reparam.init(key, x0)
        return {"inner": inner, "x0": jnp.asarray(x0, dtype), "f0": reparam.apply(inner)}

    def apply(params):
        offset = jax.lax.stop_gradient(params["x0"] - params["f0"])
        return offset + reparam.apply(params["inner"])

    return Reparam(init=init, apply=apply, name=f"x0+{reparam.name}")
