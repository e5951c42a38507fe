"""Slow modes: constructions, rigid-body handling, solver agreement, determinism."""

import functools

import numpy as np
import pytest
from scipy.linalg import subspace_angles

from engine import hessian as hs
from engine import modes as md
from engine.config import EnergyConfig, ModesConfig, SystemConfig
from engine.loops import initial_positions, loop_pairs, make_loop_energy
from engine.systems import build_system, make_energy
from engine.types import SlowModes, System

N_ATOMS = 60
K = 12


@functools.cache
def _loop(kind: str):
    system = build_system(SystemConfig(kind=kind, n=N_ATOMS, loop_stride=5), seed=2)
    return system, make_energy(system, EnergyConfig(dtype="float64"))


@functools.cache
def _braced_loop():
    """A 20-bead loop with contacts at strides 2, 3 and 4: rigid, so its minimum has exactly
    six zero modes (the paper's single-stride loops have many floppy near-zero modes)."""
    n = 20
    bonds, _ = loop_pairs(n, 2)
    loops = np.concatenate([loop_pairs(n, s)[1] for s in (2, 3, 4)])
    system = System(
        name="braced loop", kind="loop", x0=initial_positions(n, 0, 0.5), bonds=bonds,
        meta={"system": "bond-lj-loop", "loop_pairs": loops.tolist(), "loop_stride": 2,
              "loop_strength": 0.1},
    )  # fmt: skip
    return system, make_loop_energy(system, EnergyConfig(dtype="float64", soft_core="monotone"))


@functools.cache
def _braced_minimum():
    system, model = _braced_loop()
    return md.relax(model, system.x0)[0]


def _modes(kind, n_modes=K, **cfg) -> SlowModes:
    system, model = _loop(kind)
    return md.slow_modes(system, model, ModesConfig(**cfg), n_modes, seed=0)


def _check_contract(m: SlowModes, n_dof: int, k: int, space: str):
    assert m.vectors.shape == (n_dof, k) and m.vectors.dtype == np.float64
    assert m.values.shape == (k,) and m.rigid.shape == (k,) and m.rigid.dtype == bool
    assert m.space == space and m.seconds >= 0 and isinstance(m.method, str)
    np.testing.assert_allclose(m.vectors.T @ m.vectors, np.eye(k), atol=1e-10)


# ---- block-Laplacian (reference) ---------------------------------------------------------


@pytest.mark.parametrize("kind", ["bond-lj-loop", "lj-loop"])
def test_block_laplacian_keeps_the_constant_mode(kind):
    system, model = _loop(kind)
    m = md.slow_modes(system, model, ModesConfig(method="block-laplacian", at="x0"), K)
    _check_contract(m, N_ATOMS, K, "node")
    assert m.method.startswith("block-laplacian@x0/pair-blocks/")
    # Column 0 is the constant vector (Laplacian eigenvalue 0), the only rigid mode.
    np.testing.assert_allclose(np.abs(m.vectors[:, 0]), 1 / np.sqrt(N_ATOMS), rtol=1e-12)
    assert m.rigid.tolist() == [True] + [False] * (K - 1)
    k_mat = hs.pair_block_norms(system.x0, model.pair_terms)
    lap = np.diag(k_mat.sum(axis=1)) - k_mat
    lap_values = np.einsum("ik,ik->k", m.vectors, lap @ m.vectors)
    assert abs(lap_values[0]) <= 1e-12 * np.abs(lap).max()
    assert np.all(np.diff(lap_values) >= -1e-12 * np.abs(lap).max())  # Laplacian order
    # Values are the reference's Rayleigh quotients of K, clamped at 0 (method.md §4.1, 9.1).
    np.testing.assert_allclose(
        m.values, np.maximum(np.einsum("ik,ik->k", m.vectors, k_mat @ m.vectors), 0.0),
        rtol=1e-10,
    )  # fmt: skip
    np.testing.assert_allclose(m.values[0], k_mat.sum() / N_ATOMS, rtol=1e-10)


def test_block_laplacian_samples_average_reference_configurations():
    system, model = _loop("bond-lj-loop")
    cfg = ModesConfig(method="block-laplacian", at="samples")
    m = md.slow_modes(system, model, cfg, K, seed=5)
    assert "samples(10)" in m.method  # Bond+LJ reference: 10 samples
    xs = md.sample_configurations(system, cfg, system.x0, np.random.default_rng(5))
    k_mat = np.mean([hs.pair_block_norms(x, model.pair_terms) for x in xs], axis=0)
    lap = np.diag(k_mat.sum(axis=1)) - k_mat
    w, v = np.linalg.eigh(lap)
    assert np.max(subspace_angles(m.vectors, v[:, :K])) < 1e-8
    assert m.rigid[0] and m.rigid.sum() == 1


def test_keep_rigid_false_drops_the_constant_mode():
    m = _modes("lj-loop", method="block-laplacian", at="x0", keep_rigid=False)
    _check_contract(m, N_ATOMS, K, "node")
    assert not m.rigid.any()
    np.testing.assert_allclose(m.vectors.sum(axis=0), 0.0, atol=1e-10)


# ---- full Hessian -------------------------------------------------------------------------


@pytest.mark.parametrize("at", ["x0", "samples"])
def test_hessian_modes_sorted_with_translations_flagged(at):
    system, model = _loop("lj-loop")
    m = md.slow_modes(system, model, ModesConfig(method="hessian", at=at), K)
    _check_contract(m, 3 * N_ATOMS, K, "cartesian")
    assert np.all(np.diff(np.abs(m.values)) >= 0)
    # Away from a stationary point only the three translations are zero modes.
    assert m.rigid.sum() == 3
    translations, _ = md.rigid_body_basis(system.x0)
    assert np.max(subspace_angles(m.vectors[:, m.rigid], translations)) < 1e-10
    h = hs.pair_hessian(system.x0, model.pair_terms) if at == "x0" else None
    if h is not None:  # the non-rigid columns are eigenvectors of H with these values
        v = m.vectors[:, ~m.rigid]
        res = np.linalg.norm(h @ v - v * m.values[~m.rigid], axis=0)
        assert res.max() <= 1e-9 * np.abs(h).sum(axis=1).max()


def test_minimum_has_six_rigid_zero_modes():
    system, model = _braced_loop()
    x_min = _braced_minimum()
    m = md.slow_modes(system, model, ModesConfig(method="hessian", at="x0"), 10, x=x_min)
    scale = np.abs(m.values).max()
    assert m.rigid[:6].all() and not m.rigid[6:].any()
    assert np.all(np.abs(m.values[:6]) <= 1e-6 * scale)
    assert np.all(np.abs(m.values[6:]) >= 1e-3 * scale)
    # The raw Hessian there has the rigid-body subspace as its near-null space.
    w, v = np.linalg.eigh(hs.pair_hessian(x_min, model.pair_terms))
    near_zero = np.abs(w) <= 1e-6 * scale
    assert near_zero.sum() == 6
    assert np.max(subspace_angles(v[:, near_zero], m.vectors[:, :6])) < 1e-4


def test_rotations_found_among_slow_modes_near_a_minimum():
    # Part-way to the minimum |H r| is far above ROTATION_TOL, yet the rotations are the
    # three slowest non-translation modes by two orders: they are flagged rigid. Earlier on
    # the relaxation path they are not separated, and only translations are.
    system, model = _braced_loop()
    for steps, n_rigid in ((270, 6), (120, 3)):
        x, _ = md.relax(model, system.x0, max_steps=steps)
        h = hs.pair_hessian(x, model.pair_terms)
        _, rotations = md.rigid_body_basis(x)
        residual = np.linalg.norm(h @ rotations, axis=0).max()
        assert residual > 10 * md.ROTATION_TOL * np.abs(h).sum(axis=1).max()
        m = md.slow_modes(system, model, ModesConfig(method="hessian", at="x0"), 10, x=x)
        assert m.rigid.sum() == n_rigid and m.rigid[:n_rigid].all()
        free = m.vectors[:, ~m.rigid]
        res = np.linalg.norm(h @ free - free * m.values[~m.rigid], axis=0)
        assert res.max() <= 1e-2 * np.abs(m.values[~m.rigid]).min()


def test_at_minimum_relaxes_first(monkeypatch):
    system, model = _braced_loop()
    monkeypatch.setattr(md, "RELAX_MAX_STEPS", 40)
    m = md.slow_modes(system, model, ModesConfig(method="hessian", at="minimum"), 10)
    assert "minimum(40 L-BFGS steps)" in m.method
    x_relaxed, steps = md.relax(model, system.x0)
    assert steps == 40
    assert model.energy_fn(x_relaxed) < model.energy_fn(system.x0)


def test_keep_rigid_false_excludes_rigid_body_motion():
    m = _modes("bond-lj-loop", method="hessian", at="x0", keep_rigid=False)
    _check_contract(m, 3 * N_ATOMS, K, "cartesian")
    assert not m.rigid.any()
    translations, _ = md.rigid_body_basis(_loop("bond-lj-loop")[0].x0)
    np.testing.assert_allclose(translations.T @ m.vectors, 0.0, atol=1e-10)


# ---- solvers ------------------------------------------------------------------------------


def _gap_k(values_abs_sorted, k_min, k_max):
    """A mode count in [k_min, k_max] with the largest relative gap after it."""
    ratios = values_abs_sorted[k_min : k_max + 1] / values_abs_sorted[k_min - 1 : k_max]
    return k_min + int(np.argmax(ratios))


@pytest.mark.parametrize(
    "kind,method,at",
    [
        ("bond-lj-loop", "hessian", "x0"),
        ("lj-loop", "hessian", "samples"),
        ("lj-loop", "block-laplacian", "samples"),
    ],
)
def test_dense_and_iterative_solvers_agree(kind, method, at):
    system, model = _loop(kind)
    n_dof = N_ATOMS if method == "block-laplacian" else 3 * N_ATOMS
    base = ModesConfig(method=method, at=at, solver="dense")
    full = md.slow_modes(system, model, base, n_dof // 2)
    k = _gap_k(np.abs(full.values), 8, 20)  # compare subspaces where they are well defined
    dense = md.slow_modes(system, model, base, k)
    it = md.slow_modes(system, model, ModesConfig(method=method, at=at, solver="iterative"), k)
    assert "dense-eigh" in dense.method and "shift-invert" in it.method
    assert "not converged" not in it.method
    free = ~dense.rigid
    np.testing.assert_array_equal(dense.rigid, it.rigid)
    np.testing.assert_allclose(it.values[free], dense.values[free], rtol=1e-6)
    assert np.max(subspace_angles(dense.vectors, it.vectors)) < 1e-5


def test_shift_invert_finds_interior_eigenvalues_of_indefinite_matrices():
    rng = np.random.default_rng(0)
    q, _ = np.linalg.qr(rng.standard_normal((300, 300)))
    w = np.concatenate([np.linspace(-1.0, -0.01, 150), np.linspace(0.005, 2.0, 150)])
    a = (q * w) @ q.T
    values, vectors, desc = md.shift_invert_lowest(
        a, 10, psd_hint=True, rng=rng, scale=float(np.abs(a).sum(axis=1).max())
    )
    want = np.sort(w[np.argsort(np.abs(w))[:10]])
    np.testing.assert_allclose(values, want, rtol=1e-10)
    assert "lu" in desc  # Cholesky was tried and refused
    dense_values, _, _ = md.dense_lowest(a, 10, psd_hint=False)
    np.testing.assert_allclose(dense_values, want, rtol=1e-10)


def test_shift_invert_restarts_when_the_basis_is_full(monkeypatch):
    rng = np.random.default_rng(1)
    q, _ = np.linalg.qr(rng.standard_normal((400, 400)))
    w = np.concatenate([np.geomspace(1e-3, 1.0, 200), -np.geomspace(2e-3, 1.0, 200)])
    a = (q * w) @ q.T
    want = np.sort(w[np.argsort(np.abs(w))[:5]])
    monkeypatch.setattr(md, "SOLVER_BASIS_BLOCKS", 2)
    values, _, desc = md.shift_invert_lowest(a, 5, psd_hint=False, rng=rng, scale=2.0)
    assert "not converged" not in desc
    assert int(desc.split("(")[1].split()[0]) > 2  # more block solves than the basis holds
    np.testing.assert_allclose(values, want, rtol=1e-9)


def test_matrix_free_lobpcg_path(monkeypatch):
    system, model = _braced_loop()
    model = model._replace(pair_terms=None)
    cfg = ModesConfig(method="hessian", at="x0")
    dense = md.slow_modes(system, model, cfg, 10, x=_braced_minimum())
    monkeypatch.setattr(md, "AUTODIFF_DENSE_MAX_ATOMS", 5)
    free = md.slow_modes(system, model, cfg, 10, x=_braced_minimum())
    assert "/autodiff/" in dense.method
    assert "autodiff-hvp/lobpcg" in free.method and "not converged" not in free.method
    np.testing.assert_array_equal(free.rigid, dense.rigid)
    assert free.rigid.sum() == 6
    np.testing.assert_allclose(free.values[6:], dense.values[6:], rtol=1e-6)


def test_auto_solver_choice():
    assert md._pick_solver("auto", md.AUTO_DENSE_MAX_DOF, 5) == "dense"
    assert md._pick_solver("auto", 3000, 20) == "iterative"
    assert md._pick_solver("auto", 12000, 250) == "iterative"
    assert md._pick_solver("auto", 3000, 750) == "dense"
    assert md._pick_solver("iterative", 100, 99) == "iterative"
    assert md._pick_solver("dense", 12000, 20) == "dense"


# ---- sparse route (cutoff model) ------------------------------------------------------------


@functools.cache
def _cutoff_loop(kind: str, n: int):
    system = build_system(SystemConfig(kind=kind, n=n), seed=0)
    return system, make_energy(system, EnergyConfig(dtype="float64", repulsion="cutoff"))


def _assert_same_modes(ref: SlowModes, other: SlowModes, rtol: float, angle: float):
    np.testing.assert_array_equal(ref.rigid, other.rigid)
    free = ~ref.rigid
    np.testing.assert_allclose(other.values[free], ref.values[free], rtol=rtol)
    assert np.max(subspace_angles(ref.vectors, other.vectors)) < angle


@pytest.mark.parametrize("n", [400, 1000])
def test_sparse_hessian_modes_equal_dense_ones(n):
    """Cutoff-model Hessian averaged over the reference samples: banded-preconditioned LOBPCG
    on the sparse matrix vs dense eigh."""
    system, model = _cutoff_loop("bond-lj-loop", n)
    dense_cfg = ModesConfig(method="hessian", at="samples", solver="dense")
    full = md.slow_modes(system, model, dense_cfg, 31)
    k = _gap_k(np.abs(full.values), 15, 30)  # where the k-subspace is well defined
    dense = md.slow_modes(system, model, dense_cfg, k)
    auto = md.slow_modes(system, model, ModesConfig(method="hessian", at="samples"), k)
    assert "/pair-blocks/dense-eigh" in dense.method
    assert "/sparse-pair-blocks/lobpcg-band32" in auto.method, auto.method
    _check_contract(auto, 3 * n, k, "cartesian")
    assert auto.rigid.sum() == 3  # translations, analytic
    _assert_same_modes(dense, auto, rtol=1e-6, angle=1e-4)


def test_indefinite_sparse_hessian_falls_back_to_sparse_lu(monkeypatch):
    """At the random start the Hessian is indefinite: LOBPCG finds negative eigenvalues and
    shift-invert on a sparse LU gives the smallest |mu| (x0 is compact: densified unless the
    density bound is lifted)."""
    system, model = _cutoff_loop("bond-lj-loop", 400)
    dense_cfg = ModesConfig(method="hessian", at="x0", solver="dense")
    full = md.slow_modes(system, model, dense_cfg, 31)
    k = _gap_k(np.abs(full.values), 15, 30)
    dense = md.slow_modes(system, model, dense_cfg, k)
    assert (full.values < 0).any()
    densified = md.slow_modes(system, model, ModesConfig(method="hessian", at="x0"), k)
    assert "/pair-blocks (densified)/shift-invert-lu" in densified.method
    monkeypatch.setattr(md, "SPARSE_MAX_DENSITY", 1.0)
    sparse = md.slow_modes(system, model, ModesConfig(method="hessian", at="x0"), k)
    assert "/sparse-pair-blocks/shift-invert-sparse-lu" in sparse.method, sparse.method
    assert "LOBPCG refused" in sparse.method and "not converged" not in sparse.method
    _assert_same_modes(dense, sparse, rtol=1e-6, angle=1e-5)
    _assert_same_modes(dense, densified, rtol=1e-6, angle=1e-5)
    h = hs.sparse_pair_hessian(system.x0, model.pair_terms)
    v = sparse.vectors[:, ~sparse.rigid]
    res = np.linalg.norm(h @ v - v * sparse.values[~sparse.rigid], axis=0)
    assert res.max() <= 1e-9 * md._inf_norm(h)


def test_sparse_block_laplacian_equals_dense():
    system, model = _cutoff_loop("bond-lj-loop", 1000)
    base = ModesConfig(method="block-laplacian", at="samples", solver="dense")
    full = md.slow_modes(system, model, base, 31)
    k = _gap_k(np.abs(full.values), 15, 30)
    dense = md.slow_modes(system, model, base, k)
    sparse = md.slow_modes(system, model, ModesConfig(method="block-laplacian", at="samples"), k)
    assert "samples(10)/sparse-pair-blocks/lobpcg-band10" in sparse.method, sparse.method
    _check_contract(sparse, 1000, k, "node")
    assert sparse.rigid[0] and sparse.rigid.sum() == 1
    _assert_same_modes(dense, sparse, rtol=1e-8, angle=1e-6)


def test_sparse_route_keeps_rotations_at_a_minimum(monkeypatch):
    # 20 beads: every pair interacts, so lift the bounds that would send it the dense way.
    monkeypatch.setattr(hs, "DENSE_TERM_FRACTION", 1.0)
    monkeypatch.setattr(md, "SPARSE_MAX_DENSITY", 1.0)
    system, _ = _braced_loop()
    model = make_loop_energy(
        system, EnergyConfig(dtype="float64", soft_core="monotone", repulsion="cutoff")
    )
    x_min = md.relax(model, system.x0)[0]
    ref = md.slow_modes(system, model, ModesConfig(method="hessian", at="x0", solver="dense"),
                        10, x=x_min)  # fmt: skip
    it = md.slow_modes(system, model, ModesConfig(method="hessian", at="x0", solver="iterative"),
                       10, x=x_min)  # fmt: skip
    assert "/sparse-pair-blocks/" in it.method and it.rigid.sum() == 6
    _assert_same_modes(ref, it, rtol=1e-6, angle=1e-5)


def test_compact_configurations_are_densified():
    """Pure-LJ reference samples are compact (scales 0.01-0.2): every pair is inside the
    cutoff, so the sparse matrix is densified and solved as before."""
    system, model = _cutoff_loop("lj-loop", 400)
    cfg = ModesConfig(method="block-laplacian", at="samples", solver="iterative", n_samples=4)
    m = md.slow_modes(system, model, cfg, 12)
    assert "/pair-blocks (densified)/shift-invert-cholesky" in m.method
    ref = md.slow_modes(system, model, ModesConfig(**{**cfg.__dict__, "solver": "dense"}), 12)
    np.testing.assert_allclose(m.values, ref.values, rtol=1e-6)  # as dense vs iterative above


# ---- determinism, energies without pair terms, sampling, validation -----------------------


@pytest.mark.parametrize("method", ["block-laplacian", "hessian"])
def test_deterministic_given_seed(method):
    system, model = _loop("lj-loop")
    cfg = ModesConfig(method=method, at="samples", solver="iterative", n_samples=3)
    a = md.slow_modes(system, model, cfg, K, seed=7)
    b = md.slow_modes(system, model, cfg, K, seed=7)
    np.testing.assert_array_equal(a.vectors, b.vectors)
    np.testing.assert_array_equal(a.values, b.values)
    c = md.slow_modes(system, model, cfg, K, seed=8)
    assert not np.allclose(a.values, c.values)


@pytest.mark.parametrize("method", ["block-laplacian", "hessian"])
def test_energy_without_pair_terms_uses_autodiff(method):
    system, model = _loop("bond-lj-loop")
    cfg = ModesConfig(method=method, at="x0")
    ref = md.slow_modes(system, model, cfg, K)
    ad = md.slow_modes(system, model._replace(pair_terms=None), cfg, K)
    assert "/autodiff/" in ad.method and "/pair-blocks/" in ref.method
    np.testing.assert_array_equal(ad.rigid, ref.rigid)
    free = ~ref.rigid
    np.testing.assert_allclose(ad.values[free], ref.values[free], rtol=1e-6)
    assert np.max(subspace_angles(ad.vectors, ref.vectors)) < 1e-6


def test_sampling_scales_and_overrides():
    system, _ = _loop("lj-loop")
    rng = np.random.default_rng(0)
    xs = md.sample_configurations(system, ModesConfig(), system.x0, rng)
    assert xs.shape == (40, N_ATOMS, 3)
    sigma = N_ATOMS ** (1 / 3) / 2
    stds = xs.reshape(40, -1).std(axis=1) / sigma
    np.testing.assert_allclose(stds, np.linspace(0.01, 0.2, 40), rtol=0.15)
    cfg = ModesConfig(n_samples=4, sample_scale_min=1.0, sample_scale_max=2.0)
    xs = md.sample_configurations(system, cfg, system.x0, rng)
    stds = xs.reshape(4, -1).std(axis=1) / sigma
    np.testing.assert_allclose(stds, [1, 4 / 3, 5 / 3, 2], rtol=0.15)
    protein = System(name="p", kind="protein", x0=system.x0, bonds=system.bonds)
    xs = md.sample_configurations(protein, ModesConfig(), system.x0, rng)
    step = (xs - system.x0).reshape(10, -1).std(axis=1) / (np.std(system.x0) / 10)
    np.testing.assert_allclose(step, np.linspace(0.2, 1.0, 10), rtol=0.15)
    other = System(name="o", kind="loop", x0=system.x0, bonds=system.bonds, meta={"system": "x"})
    with pytest.raises(ValueError, match=r"system.meta\['system'\] must be one of"):
        md.sample_configurations(other, ModesConfig(), system.x0, rng)
    with pytest.raises(ValueError, match="sample_scale_min must be <="):
        md.sample_configurations(system, ModesConfig(sample_scale_min=2.0, sample_scale_max=1.0),
                                 system.x0, rng)  # fmt: skip


def test_rigid_body_basis():
    x = np.random.default_rng(0).standard_normal((7, 3))
    t, r = md.rigid_body_basis(x)
    basis = np.hstack([t, r])
    np.testing.assert_allclose(basis.T @ basis, np.eye(6), atol=1e-12)
    line = np.outer(np.arange(5.0), [1.0, 2.0, 0.5])
    assert md.rigid_body_basis(line)[1].shape == (15, 2)  # collinear: 5 rigid modes


def test_invalid_arguments_raise():
    system, model = _loop("lj-loop")
    cfg = ModesConfig(method="block-laplacian", at="x0")
    with pytest.raises(ValueError, match=r"n_modes must be in \[1, 60\]"):
        md.slow_modes(system, model, cfg, 0)
    with pytest.raises(ValueError, match=r"n_modes must be in \[1, 180\]"):
        md.slow_modes(system, model, ModesConfig(method="hessian", at="x0"), 181)
    with pytest.raises(ValueError, match="n_modes must be an integer"):
        md.slow_modes(system, model, cfg, 2.5)
    with pytest.raises(ValueError, match=r"x must have shape \(60, 3\)"):
        md.slow_modes(system, model, cfg, 3, x=np.zeros((59, 3)))


def test_orthonormalize_keeps_the_span_and_drops_dependent_columns():
    rng = np.random.default_rng(2)
    w = rng.standard_normal((500, 12)) * np.geomspace(1.0, 1e-6, 12)  # graded, full rank
    q = md._orthonormalize(w)
    np.testing.assert_allclose(q.T @ q, np.eye(12), atol=1e-12)
    assert np.max(subspace_angles(q, w)) < 1e-8
    w[:, 5] = w[:, 0] + 2.0 * w[:, 3]  # exactly dependent: Cholesky QR refuses, QR drops one
    q = md._orthonormalize(w)
    assert q.shape == (500, 11)
    np.testing.assert_allclose(q.T @ q, np.eye(11), atol=1e-12)
    assert np.max(subspace_angles(q, w)) < 1e-8
