"""Slow-mode graph network: x = GNN_theta(Z) on a rank-k propagation matrix (method.md §5.2).

Layer l maps H [n, d_l] -> act(A H W_l + H S_l + b_l) [n, d_{l+1}], then a dense readout
[n, d_L] -> [n, 3] (with concat residual, the readout sees [H_0, H_1, ..., H_L]).
Widths: d_0 = h, d_l = max(h // 2, 2) for l >= 1 (the reference's [h, h/2, 3] for one layer).

The propagation A is never materialised: A H = sum_c B_c (B_c^T H) with B [C, n, k]:
- node-space modes Psi [n, k]: C = 1, B = Psi (paper, "psi") or Psi diag(sqrt(lambda))
  (reference, "psi-lambda"), so A = Psi Psi^T or Psi Lambda Psi^T; cost O(n k d).
- cartesian modes Phi [3n, k]: C = 3, B_c = Phi[c::3] (times sqrt|mu|), so A is the trace of
  each 3x3 block of Phi W Phi^T (method.md §4.2 item 6).
- "bonds": A = A_bond + 0.2 I, the covalent graph of the reference's protein notebooks
  (method.md §5.3); no slow modes, A H is a scatter-add over the bond list, cost O(n_bonds d).

Params: {"z": latent [n, h] ~ N(0, 1/h), "layers": [{"w", "s", "b"}], "out": {"w", "b"}}.
W Xavier-normal; S N(0, 1) (reference) or Xavier; readout PyTorch-style uniform, then
rescaled (weights and bias) so the initial output has x0's centroid and global std.
Optionally fit to x0 first (Adam, MSE, early stopping), so the run starts at x0.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax

from ..config import ReparamConfig
from ..types import SlowModes
from .base import Reparam

ACTIVATIONS = {
    "tanh": jnp.tanh,
    "relu": jax.nn.relu,
    "leaky_relu": jax.nn.leaky_relu,
    "silu": jax.nn.silu,
}


def propagation_factors(modes: SlowModes, n_atoms: int, propagation: str) -> np.ndarray:
    """B [C, n, k] with A = sum_c B_c B_c^T (see module docstring)."""
    vecs = np.asarray(modes.vectors, dtype=np.float64)
    weights = np.sqrt(np.maximum(np.abs(np.asarray(modes.values, np.float64)), 0.0))
    if propagation == "psi":
        weights = np.ones_like(weights)
    if modes.space == "node":
        b = vecs[None, :, :]
    else:
        b = np.stack([vecs[c::3] for c in range(3)])
    if b.shape[1] != n_atoms:
        raise ValueError(f"modes describe {b.shape[1]} atoms, expected n_atoms={n_atoms}")
    return b * weights[None, None, :]


BOND_SELF_WEIGHT = 0.2  # the reference's A_bond + 0.2 I (method.md §5.3)


def bond_propagation(bonds: np.ndarray | None, n_atoms: int):
    """H [n, d] -> (A_bond + 0.2 I) H with A_bond the symmetric 0/1 adjacency of ``bonds``."""
    bonds = np.asarray([] if bonds is None else bonds, dtype=np.int64).reshape(-1, 2)
    if len(bonds) == 0:
        raise ValueError("reparam.propagation='bonds' needs a system with bonds; this one has none")
    if bonds.min() < 0 or bonds.max() >= n_atoms:
        raise ValueError(f"bond indices must be in [0, {n_atoms - 1}]")
    unique = np.unique(np.sort(bonds, axis=1), axis=0)
    unique = unique[unique[:, 0] != unique[:, 1]]
    src = jnp.asarray(np.concatenate([unique[:, 0], unique[:, 1]]))
    dst = jnp.asarray(np.concatenate([unique[:, 1], unique[:, 0]]))

    def propagate(h):
        return BOND_SELF_WEIGHT * h + jax.ops.segment_sum(h[src], dst, num_segments=n_atoms)

    return propagate


def _widths(cfg: ReparamConfig) -> list[int]:
    return [cfg.hidden] + [max(cfg.hidden // 2, 2)] * cfg.n_layers


def make_gnn(
    cfg: ReparamConfig,
    modes: SlowModes | None,
    n_atoms: int,
    dtype=jnp.float32,
    bonds: np.ndarray | None = None,
) -> Reparam:
    """The GNN on slow modes (``modes``) or, for propagation "bonds", on ``bonds`` [m, 2]."""
    act = ACTIVATIONS[cfg.activation]
    widths = _widths(cfg)
    readout_in = sum(widths) if cfg.residual == "concat" else widths[-1]
    if cfg.propagation == "bonds":
        propagate = bond_propagation(bonds, n_atoms)
        graph = "bonds"
    else:
        if modes is None:
            raise ValueError(f"reparam.propagation={cfg.propagation!r} needs slow modes")
        b = jnp.asarray(propagation_factors(modes, n_atoms, cfg.propagation), dtype=dtype)
        graph = f"k={int(np.shape(modes.vectors)[1])}"

        def propagate(h):
            return jnp.einsum("cnk,ckd->nd", b, jnp.einsum("cnk,nd->ckd", b, h))

    def features(params):
        h = params["z"]
        hs = [h]
        for layer in params["layers"]:
            h = act(propagate(h) @ layer["w"] + h @ layer["s"] + layer["b"])
            hs.append(h)
        return jnp.concatenate(hs, axis=1) if cfg.residual == "concat" else h

    def apply(params):
        return features(params) @ params["out"]["w"] + params["out"]["b"]

    def random_params(key):
        keys = jax.random.split(key, 2 * cfg.n_layers + 3)
        z = jax.random.normal(keys[0], (n_atoms, cfg.hidden), dtype) / float(np.sqrt(cfg.hidden))
        layers = []
        for l in range(cfg.n_layers):
            d_in, d_out = widths[l], widths[l + 1]
            xavier = float(np.sqrt(2.0 / (d_in + d_out)))  # Python float: numpy scalars promote f32
            w = xavier * jax.random.normal(keys[2 * l + 1], (d_in, d_out), dtype)
            s_scale = xavier if cfg.self_init == "xavier" else 1.0
            s = s_scale * jax.random.normal(keys[2 * l + 2], (d_in, d_out), dtype)
            layers.append({"w": w, "s": s, "b": jnp.zeros((d_out,), dtype)})
        bound = float(1.0 / np.sqrt(readout_in))
        out = {
            "w": jax.random.uniform(keys[-2], (readout_in, 3), dtype, -bound, bound),
            "b": jax.random.uniform(keys[-1], (3,), dtype, -bound, bound),
        }
        return {"z": z, "layers": layers, "out": out}

    def match_spread(params, x0):
        # Rescale the readout so the output has x0's centroid and global std (the reference
        # scaled weights only, leaving the bias and hence the std inexact).
        x = apply(params)
        mean = jnp.mean(x, axis=0)
        scale = jnp.std(x0) / jnp.maximum(jnp.std(x - mean), 1e-12)
        out = {
            "w": params["out"]["w"] * scale,
            "b": (params["out"]["b"] - mean) * scale + jnp.mean(x0, axis=0),
        }
        return {**params, "out": out}

    def fit(params, x0):
        """Adam (lr 1e-3) on MSE(apply(params), x0), patience 20 steps, tol 1e-6 (reference)."""
        tx = optax.adam(1e-3)
        loss_fn = lambda p: jnp.mean((apply(p) - x0) ** 2)  # noqa: E731

        def step(carry, _):
            p, state, best, count, done = carry
            loss, g = jax.value_and_grad(loss_fn)(p)
            updates, new_state = tx.update(g, state, p)
            new_p = optax.apply_updates(p, updates)
            improved = loss < best - 1e-6
            count = jnp.where(improved, 0, count + 1)
            best = jnp.minimum(best, loss)
            keep = done | (count >= 20)
            p = jax.tree.map(lambda old, new: jnp.where(keep, old, new), p, new_p)
            state = jax.tree.map(lambda old, new: jnp.where(keep, old, new), state, new_state)
            return (p, state, best, count, keep), loss

        init = (
            params,
            tx.init(params),
            jnp.asarray(jnp.inf, dtype),
            jnp.asarray(0),
            jnp.asarray(False),
        )
        (params, *_), _ = jax.lax.scan(step, init, None, length=cfg.fit_steps)
        return params

    def init(key, x0):
        x0 = jnp.asarray(x0, dtype=dtype)
        params = match_spread(random_params(key), x0)
        if cfg.fit_to_x0:
            params = jax.jit(fit)(params, x0)
        return params

    return Reparam(init=init, apply=apply, name=f"gnn({graph}, h={cfg.hidden}, L={cfg.n_layers})")
