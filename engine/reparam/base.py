"""The reparametrization contract: x = apply(params), params = init(key, x0).

Every reparametrization is a ``Reparam`` NamedTuple of two pure functions (optax style):
  init(key, x0 [n_atoms, 3]) -> params (a pytree of arrays)
  apply(params) -> x [n_atoms, 3]
The optimizer minimizes ``energy_fn(apply(params))`` over params; nothing else is shared.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

from ..types import Positions, PyTree


class Reparam(NamedTuple):
    """x = apply(params); params = init(key, x0). ``name`` labels runs and logs."""

    init: Callable[..., PyTree]
    apply: Callable[[PyTree], Positions]
    name: str
