"""Analytic pair-block Hessians, block norms and Hessian-vector products vs autodiff."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from engine import hessian as hs
from engine import potentials
from engine.config import EnergyConfig, SystemConfig
from engine.pairs import pairs_within
from engine.systems import build_system, make_energy
from engine.types import PairTerm

N_ATOMS = 50


@functools.cache
def _loop(kind: str, soft_core: str):
    system = build_system(SystemConfig(kind=kind, n=N_ATOMS, loop_stride=5), seed=3)
    model = make_energy(system, EnergyConfig(dtype="float64", soft_core=soft_core))
    # Compact enough that loop contacts, soft cores and the repulsion all have curvature.
    return system, model, 0.4 * system.x0


def _autodiff_reference(energy_fn, x):
    n = x.shape[0]
    return np.asarray(jax.jit(jax.hessian(energy_fn))(jnp.asarray(x))).reshape(3 * n, 3 * n)


@functools.cache
def _loop_reference(kind: str, soft_core: str):
    _, model, x = _loop(kind, soft_core)
    return _autodiff_reference(model.energy_fn, x)


LOOPS = [
    pytest.param(kind, core, id=f"{kind}-{core}")
    for kind in ("bond-lj-loop", "lj-loop")
    for core in ("reference", "monotone")
]


@pytest.mark.parametrize("kind,soft_core", LOOPS)
def test_pair_hessian_matches_jax_hessian(kind, soft_core):
    _, model, x = _loop(kind, soft_core)
    h = hs.pair_hessian(x, model.pair_terms)
    ref = _loop_reference(kind, soft_core)
    assert h.shape == (3 * N_ATOMS, 3 * N_ATOMS) and h.dtype == np.float64
    np.testing.assert_allclose(h, ref, rtol=0, atol=1e-11 * np.abs(ref).max())


def test_pair_block_norms_are_the_block_norms_of_the_hessian():
    # pair_hessian is checked against autodiff above; K must be its 3x3 block norms,
    # diagonal blocks included.
    _, model, x = _loop("lj-loop", "monotone")
    k = hs.pair_block_norms(x, model.pair_terms)
    ref = hs.block_norms(hs.pair_hessian(x, model.pair_terms))
    assert k.shape == (N_ATOMS, N_ATOMS) and np.all(k >= 0)
    np.testing.assert_allclose(k, ref, rtol=0, atol=1e-12 * ref.max())
    np.testing.assert_array_equal(k, k.T)


def test_hessians_symmetric_and_autodiff_matches_jax():
    _, model, x = _loop("bond-lj-loop", "reference")
    h_pair = hs.pair_hessian(x, model.pair_terms)
    h_ad = hs.autodiff_hessian(model.energy_fn, x)
    np.testing.assert_array_equal(h_pair, h_pair.T)
    np.testing.assert_array_equal(h_ad, h_ad.T)
    ref = _loop_reference("bond-lj-loop", "reference")
    np.testing.assert_allclose(h_ad, ref, rtol=0, atol=1e-12 * np.abs(ref).max())


def test_hessian_vector_products_match_dense():
    _, model, x = _loop("bond-lj-loop", "reference")
    hvp_fn = hs.make_hvp_fn(model.energy_fn, x)
    h = hs.pair_hessian(x, model.pair_terms)
    v = np.random.default_rng(0).standard_normal((3 * N_ATOMS, 4))
    scale = np.abs(h @ v).max()
    np.testing.assert_allclose(hvp_fn(v), h @ v, rtol=0, atol=1e-12 * scale)
    np.testing.assert_allclose(hvp_fn(v[:, 0]), h @ v[:, 0], rtol=0, atol=1e-12 * scale)
    with pytest.raises(ValueError, match="v must have shape"):
        hvp_fn(v[:-1])


def test_hessian_matches_finite_differences_of_gradient():
    _, model, x = _loop("lj-loop", "monotone")
    h = hs.hessian(model, x)
    grad = jax.jit(jax.grad(model.energy_fn))
    v = np.random.default_rng(1).standard_normal(x.shape)
    eps = 1e-5
    fd = np.asarray(grad(jnp.asarray(x + eps * v))) - np.asarray(grad(jnp.asarray(x - eps * v)))
    fd = fd.ravel() / (2 * eps)
    np.testing.assert_allclose(h @ v.ravel(), fd, rtol=0, atol=1e-6 * np.abs(fd).max())


def test_dispatch_uses_autodiff_without_pair_terms():
    _, model, x = _loop("bond-lj-loop", "reference")
    h_pair = hs.hessian(model, x)
    h_ad = hs.hessian(model._replace(pair_terms=None), x)
    np.testing.assert_allclose(h_ad, h_pair, rtol=0, atol=1e-11 * np.abs(h_pair).max())


def test_lj_dimer_at_its_minimum():
    # Standard LJ at r = 2^(1/6): phi' = 0, so H has one non-zero eigenvalue 2 phi''(r) along
    # the bond, phi'' = 72 * 2^(-1/3) epsilon / sigma^2.
    r_min = 2.0 ** (1.0 / 6.0)
    term = PairTerm(np.array([[0, 1]]), np.ones(1), potentials.lennard_jones, 1.0)
    x = np.array([[0.0, 0.0, 0.0], [r_min, 0.0, 0.0]])
    h = hs.pair_hessian(x, (term,))
    w = np.linalg.eigvalsh(h)
    np.testing.assert_allclose(w[:5], 0.0, atol=1e-12)
    np.testing.assert_allclose(w[5], 2 * 72 * 2.0 ** (-1.0 / 3.0), rtol=1e-12)
    k = hs.pair_block_norms(x, (term,))
    np.testing.assert_allclose(k, np.full((2, 2), 72 * 2.0 ** (-1.0 / 3.0)), rtol=1e-12)


def test_repeated_pairs_sum_before_the_block_norm():
    # The same pair in two terms: H is the sum of the terms' Hessians and K the norm of the
    # summed block, not a sum of norms.
    x = np.array([[0.0, 0.0, 0.0], [1.3, 0.2, 0.0], [0.1, 1.1, 0.4]])
    terms = (
        PairTerm(np.array([[0, 1], [1, 2]]), np.array([1.0, 0.5]), potentials.harmonic_bond, 2.0),
        PairTerm(np.array([[1, 0]]), np.array([0.3]), potentials.softened_lj, 1.0),
    )
    h = hs.pair_hessian(x, terms)
    np.testing.assert_allclose(
        h, hs.pair_hessian(x, terms[:1]) + hs.pair_hessian(x, terms[1:]), rtol=0, atol=1e-14
    )
    k = hs.pair_block_norms(x, terms)
    np.testing.assert_allclose(k, hs.block_norms(h), rtol=0, atol=1e-14)
    separate = hs.pair_block_norms(x, terms[:1]) + hs.pair_block_norms(x, terms[1:])
    assert k[0, 1] < separate[0, 1]


def test_invalid_inputs_raise():
    _, model, x = _loop("lj-loop", "reference")
    with pytest.raises(ValueError, match=r"x must have shape \(n_atoms, 3\)"):
        hs.pair_hessian(x[:, :2], model.pair_terms)
    with pytest.raises(ValueError, match="x must be finite"):
        hs.pair_hessian(np.full_like(x, np.nan), model.pair_terms)
    bad = PairTerm(np.array([[0, N_ATOMS]]), np.ones(1), potentials.harmonic_bond, 1.0)
    with pytest.raises(ValueError, match=r"pair_terms\[0\].pairs must hold distinct"):
        hs.pair_hessian(x, (bad,))
    with pytest.raises(ValueError, match=r"h must have shape \(3n, 3n\)"):
        hs.block_norms(np.zeros((4, 4)))


# ---- sparse assembly (cutoff model, bonded terms) -------------------------------------------


@functools.cache
def _cutoff_loop(kind: str):
    system = build_system(SystemConfig(kind=kind, n=N_ATOMS, loop_stride=5), seed=3)
    model = make_energy(system, EnergyConfig(dtype="float64", repulsion="cutoff", cutoff=2.0))
    return system, model, 0.6 * system.x0


@pytest.mark.parametrize("kind", ["bond-lj-loop", "lj-loop"])
def test_sparse_hessian_equals_dense_and_autodiff_of_the_cutoff_energy(kind):
    _, model, x = _cutoff_loop(kind)
    plan = hs.make_pair_plan(model.pair_terms, N_ATOMS)
    assert hs.plan_is_sparse(plan) and len(plan.cutoff) == 1
    h_sparse = hs.sparse_pair_hessian(x, plan)
    h_dense = hs.pair_hessian(x, plan)
    ref = _autodiff_reference(model.energy_fn, x)
    assert h_sparse.shape == (3 * N_ATOMS, 3 * N_ATOMS)
    # Only interacting pairs are stored: bonds, contacts and the pairs within the cutoff.
    n_rep = len(pairs_within(x, 2.0, (1, 5)))
    assert h_sparse.nnz <= 9 * (N_ATOMS + 2 * (n_rep + 2 * N_ATOMS))
    assert n_rep < N_ATOMS * (N_ATOMS - 1) / 2 - 2 * N_ATOMS  # the cutoff bites here
    np.testing.assert_allclose(h_sparse.toarray(), h_dense, rtol=0, atol=1e-13 * np.abs(ref).max())
    np.testing.assert_allclose(h_dense, ref, rtol=0, atol=1e-11 * np.abs(ref).max())
    k_sparse = hs.sparse_block_norms(x, plan).toarray()
    np.testing.assert_allclose(k_sparse, hs.pair_block_norms(x, plan), rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(k_sparse, hs.block_norms(ref), rtol=1e-9, atol=1e-12)


def test_sparse_hessian_refuses_all_pairs_terms_and_sums_repeated_pairs():
    _, model, x = _loop("lj-loop", "reference")
    with pytest.raises(ValueError, match="all-pairs term"):
        hs.sparse_pair_hessian(x, model.pair_terms)
    pairs = np.array([[0, 1], [1, 2], [0, 1]])
    term = PairTerm(pairs, np.array([1.0, 2.0, 0.5]), potentials.harmonic_bond, 3.0)
    y = np.random.default_rng(0).standard_normal((20, 3))  # 3 of 190 pairs: listed, not dense
    np.testing.assert_allclose(
        hs.sparse_pair_hessian(y, [term]).toarray(), hs.pair_hessian(y, [term]), atol=1e-13
    )
    np.testing.assert_allclose(
        hs.sparse_block_norms(y, [term]).toarray(), hs.pair_block_norms(y, [term]), atol=1e-13
    )


def test_compiling_the_autodiff_hessian_ahead_leaves_its_result_unchanged():
    import jax.numpy as jnp

    from engine.hessian import autodiff_hessian, compile_autodiff_hessian

    def energy(x):
        d = x[1:] - x[:-1]
        return jnp.sum((jnp.sum(d * d, axis=1) - 1.0) ** 2)

    x = np.random.default_rng(0).normal(size=(5, 3))
    seconds = compile_autodiff_hessian(energy, x)
    assert 0.0 < seconds < 60.0
    import jax

    dense = np.asarray(jax.hessian(energy)(jnp.asarray(x))).reshape(15, 15)
    np.testing.assert_allclose(autodiff_hessian(energy, x), dense, rtol=1e-6, atol=1e-9)
