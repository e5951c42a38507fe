"""Test helpers shared by several test modules."""

import numpy as np

from engine import SlowModes


def fake_modes(space: str, k: int, n_atoms: int = 60, seed: int = 0) -> SlowModes:
    """Orthonormal columns with a constant first vector (like the Laplacian's zero mode)."""
    n_dof = n_atoms if space == "node" else 3 * n_atoms
    rng = np.random.default_rng(seed)
    a = rng.normal(size=(n_dof, k))
    a[:, 0] = 1.0
    q, _ = np.linalg.qr(a)
    values = np.concatenate([[0.0], np.linspace(0.5, 3.0, k - 1)])
    return SlowModes(q, values, np.arange(k) == 0, space, "test", 0.0)
