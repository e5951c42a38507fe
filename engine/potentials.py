"""Pointwise pair potentials of a distance r (jax-traceable, elementwise).

Reference constants (method.md §3.1): r0 = 1, EPS = 1e-2. No 4*epsilon prefactor: the
unsoftened well depth is 1/4 at r = 2^(1/6).
"""

from __future__ import annotations

import jax.numpy as jnp

# Below this distance the monotone soft core continues the reference LJ linearly, removing
# the spurious minimum at r = 0 (reference barrier top sits at r ~ 0.467).
MONOTONE_CORE_RADIUS = 0.8


def softened_lj(r, *, r0=1.0, eps=1e-2):
    """Reference softened LJ: 1/(s^12 + eps) - 1/(s^6 + 6 eps), s = r / r0.

    NOTE: has a local maximum near r = 0.467 and a spurious minimum V(0) = 5/(6 eps).
    """
    s6 = (r / r0) ** 6
    return 1.0 / (s6 * s6 + eps) - 1.0 / (s6 + 6.0 * eps)


def monotone_lj(r, *, r0=1.0, eps=1e-2, core=MONOTONE_CORE_RADIUS):
    """Softened LJ for r >= core * r0, its tangent line below.

    Decreasing on [0, core], finite at 0.
    """
    rc = core * r0
    s6c = (rc / r0) ** 6
    v_c = 1.0 / (s6c * s6c + eps) - 1.0 / (s6c + 6.0 * eps)
    # d/dr of the softened form at rc, written out so the branch below is a constant slope.
    dv_c = (-12.0 * s6c * s6c / (s6c * s6c + eps) ** 2 + 6.0 * s6c / (s6c + 6.0 * eps) ** 2) / rc
    inner = v_c + dv_c * (r - rc)
    outer = softened_lj(jnp.maximum(r, rc), r0=r0, eps=eps)
    return jnp.where(r < rc, inner, outer)


def harmonic_bond(r, *, r0=1.0):
    """Reference bond (r/r0 - 1)^2 (no 1/2, no force constant)."""
    return (r / r0 - 1.0) ** 2


def soft_repulsion(r, *, power=1.0, eps=1e-2):
    """Reference repulsion 1/(r^p + eps).

    An integral power (the default 1.0) is applied as repeated multiplication, not exp/log:
    the repulsion runs over every pair, so this is the hot loop of the all-pairs energy.
    """
    if float(power).is_integer():
        return 1.0 / (r ** int(power) + eps)
    return 1.0 / (r**power + eps)


def lennard_jones(r, *, sigma=1.0, epsilon=1.0):
    """Standard 4 eps ((sigma/r)^12 - (sigma/r)^6); minimum -epsilon at 2^(1/6) sigma."""
    s6 = (sigma / r) ** 6
    return 4.0 * epsilon * (s6 * s6 - s6)
