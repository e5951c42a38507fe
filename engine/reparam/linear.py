"""Linear coarse-graining: x = Psi z on the k slowest modes (method.md §5.1, §4.2).

Node-space modes Psi [n, k] (shared by x, y, z): params z [k, 3], x = Psi z, and the
reference's initialisation z0 = c Psi^T x0 with c = std(x0) / std(Psi Psi^T x0), a
low-pass-filtered copy of x0 re-inflated to its spread.
Cartesian modes Phi [3n, k]: params z [k], vec(x) = Phi z, z0 = Phi^T vec(x0) (the
orthogonal projection; rigid-body modes included so the structure can translate).
"""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np

from ..types import SlowModes
from .base import Reparam


def make_linear(modes: SlowModes, n_atoms: int, dtype=jnp.float32, rescale: bool = True) -> Reparam:
    psi = jnp.asarray(modes.vectors, dtype=dtype)
    if modes.space == "node":
        if psi.shape[0] != n_atoms:
            raise ValueError(f"modes have {psi.shape[0]} rows, expected n_atoms={n_atoms}")

        def apply(z):
            return psi @ z

        def init(key, x0):
            del key
            x0 = jnp.asarray(x0, dtype=dtype)
            z0 = psi.T @ x0
            if rescale:
                # reference: match the global std of the filtered copy to x0's
                z0 = z0 * (jnp.std(x0) / jnp.maximum(jnp.std(psi @ z0), 1e-12))
            return z0

    else:
        if psi.shape[0] != 3 * n_atoms:
            raise ValueError(f"modes have {psi.shape[0]} rows, expected 3*n_atoms={3 * n_atoms}")

        def apply(z):
            return (psi @ z).reshape(n_atoms, 3)

        def init(key, x0):
            del key
            return psi.T @ jnp.asarray(x0, dtype=dtype).reshape(-1)

    return Reparam(init=init, apply=apply, name=f"linear(k={int(np.shape(modes.vectors)[1])})")
