"""Reparametrizations x = f(params): a registry keyed by ``ReparamConfig.kind``."""

from __future__ import annotations

import jax.numpy as jnp

from ..config import ReparamConfig
from ..types import SlowModes
from .base import Reparam
from .gnn import make_gnn, propagation_factors
from .identity import make_identity
from .linear import make_linear

__all__ = ["Reparam", "make_reparam", "make_identity", "make_linear", "make_gnn", "propagation_factors"]


def make_reparam(cfg: ReparamConfig, modes: SlowModes | None, n_atoms: int, dtype=jnp.float32) -> Reparam:
    """Build the reparametrization ``cfg.kind`` ("none", "linear", "gnn") on ``modes``."""
    if cfg.kind == "none":
        return make_identity(dtype)
    if modes is None:
        raise ValueError(f"reparam.kind={cfg.kind!r} needs slow modes")
    if cfg.kind == "linear":
        return make_linear(modes, n_atoms, dtype)
    return make_gnn(cfg, modes, n_atoms, dtype)
