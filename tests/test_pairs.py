"""Pair energies (engine/pairs.py): blocked, cell-list and neighbour-list sums against a
direct all-pairs reference, gradients, program size independent of n, no recompiles."""

import functools
import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads

from engine import EnergyConfig, RunSpec, SystemConfig, build_system, make_energy, pairs, run
from engine.potentials import soft_repulsion

REP = functools.partial(soft_repulsion, power=1.0, eps=1e-2)
EXCLUDED = (1, 7)


def _direct(x, potential, scale, excluded, cutoff=None, shift=True):
    """Slow reference: dense [n, n] distances, pairs i < j chosen by a numpy mask."""
    x = np.asarray(x, np.float64)
    n = len(x)
    i, j = np.triu_indices(n, 1)
    keep = ~np.isin(j - i, excluded)
    r = np.linalg.norm(x[i[keep]] - x[j[keep]], axis=1)
    v = np.asarray(potential(jnp.asarray(r)))
    if cutoff is not None:
        v = np.where(r < cutoff, v - (float(potential(cutoff)) if shift else 0.0), 0.0)
    return scale * v.sum()


def _positions(n, seed=0, spread=None):
    rng = np.random.default_rng(seed)
    return jnp.asarray(rng.normal(size=(n, 3)) * (spread or n ** (1 / 3) / 4))


@pytest.mark.parametrize("n", [9, 50, 300])
@pytest.mark.parametrize("block", [8, 32, None])
def test_blocked_equals_direct(n, block):
    x = _positions(n)
    e = pairs.make_blocked_energy(n, REP, 0.3, EXCLUDED, block=block)(x)
    assert float(e) == pytest.approx(_direct(x, REP, 0.3, EXCLUDED), rel=1e-12)


def test_n_allowed_pairs_counts_the_mask():
    for n, exc in ((50, (1, 7)), (10, (1, 2)), (8, (1, 10))):
        i, j = np.triu_indices(n, 1)
        assert pairs.n_allowed_pairs(n, exc) == int(np.sum(~np.isin(j - i, exc)))


@pytest.mark.parametrize("cutoff", [1.5, 2.5])
def test_cell_and_neighbor_energies_equal_direct_cutoff(cutoff):
    n = 400
    x = _positions(n, 1)
    ref = _direct(x, REP, 0.1, EXCLUDED, cutoff)
    blocked = pairs.make_blocked_energy(n, REP, 0.1, EXCLUDED, cutoff=cutoff)
    cell = pairs.make_cell_energy(
        n, REP, 0.1, EXCLUDED, cutoff, pairs.cell_grid(np.asarray(x), cutoff)
    )
    nl = pairs.neighbor_list(n, cutoff, EXCLUDED)
    listed = pairs.make_neighbor_energy(n, REP, 0.1, EXCLUDED, cutoff, cell)
    nbrs = nl.allocate(x)
    assert not bool(nbrs.overflow)
    for value in (blocked(x), cell(x), listed(x, nbrs)):
        assert float(value) == pytest.approx(ref, rel=1e-12)
    g = [jax.grad(blocked)(x), jax.grad(cell)(x), jax.grad(listed)(x, nbrs)]
    np.testing.assert_allclose(g[1], g[0], rtol=1e-10, atol=1e-14)
    np.testing.assert_allclose(g[2], g[0], rtol=1e-10, atol=1e-14)


def test_cutoff_beyond_the_system_is_all_pairs_exactly():
    n = 120
    x = _positions(n, 2)
    full = pairs.make_blocked_energy(n, REP, 1.0, EXCLUDED)
    big = 100.0  # beyond every distance
    unshifted = pairs.make_blocked_energy(n, REP, 1.0, EXCLUDED, cutoff=big, shift=False)
    assert float(unshifted(x)) == float(full(x))
    np.testing.assert_array_equal(jax.grad(unshifted)(x), jax.grad(full)(x))
    cell = pairs.make_cell_energy(n, REP, 1.0, EXCLUDED, big, pairs.cell_grid(np.asarray(x), big))
    shifted = float(full(x)) - pairs.n_allowed_pairs(n, EXCLUDED) * float(REP(big))
    assert float(cell(x)) == pytest.approx(shifted, rel=1e-12)


def test_cell_energy_overflow_falls_back_and_stays_exact():
    n = 200
    x = _positions(n, 3)
    tiny = pairs.CellGrid(2.0, 16, 2)  # 16 buckets of 2 atoms: overflows
    cell = pairs.make_cell_energy(n, REP, 1.0, EXCLUDED, 2.0, tiny)
    assert float(cell(x)) == pytest.approx(_direct(x, REP, 1.0, EXCLUDED, 2.0), rel=1e-12)


def test_stale_neighbor_list_falls_back_to_the_cell_energy():
    n = 150
    x = _positions(n, 4)
    grid = pairs.cell_grid(np.asarray(x), 2.0, margin=3.0)
    cell = pairs.make_cell_energy(n, REP, 1.0, EXCLUDED, 2.0, grid)
    listed = pairs.make_neighbor_energy(n, REP, 1.0, EXCLUDED, 2.0, cell)
    nbrs = pairs.neighbor_list(n, 2.0, EXCLUDED).allocate(x)
    y = x * 0.7  # moved far beyond skin / 2: the list alone would miss pairs
    assert float(listed(y, nbrs)) == pytest.approx(float(cell(y)), rel=1e-12)
    assert pairs.needs_rebuild(y, nbrs)
    assert not pairs.needs_rebuild(x + 0.01, nbrs)


@pytest.mark.parametrize("kind", ["blocked", "cell", "neighbor"])
def test_gradients_first_and_second_order(kind, key):
    n = 40
    x = _positions(n, 5)
    if kind == "blocked":
        fn = pairs.make_blocked_energy(n, REP, 0.5, EXCLUDED, block=16)
    else:
        cell = pairs.make_cell_energy(n, REP, 0.5, EXCLUDED, 2.0, pairs.cell_grid(x, 2.0))
        fn = cell
        if kind == "neighbor":
            nbrs = pairs.neighbor_list(n, 2.0, EXCLUDED).allocate(x)
            listed = pairs.make_neighbor_energy(n, REP, 0.5, EXCLUDED, 2.0, cell)
            fn = functools.partial(lambda y, nb: listed(y, nb), nb=nbrs)
    order = 2 if kind == "blocked" else 1  # (the cell kernels' second order: the HVP below)
    check_grads(fn, (x,), order=order, modes=["rev"], atol=1e-5, rtol=1e-5)
    # forward-over-reverse Hessian-vector product against finite differences of the gradient
    v = jax.random.normal(key, x.shape)
    hvp = jax.jvp(jax.grad(fn), (x,), (v,))[1]
    h = 1e-5
    fd = (jax.grad(fn)(x + h * v) - jax.grad(fn)(x - h * v)) / (2 * h)
    np.testing.assert_allclose(hvp, fd, rtol=1e-5, atol=1e-8)


def test_coincident_atoms_give_finite_forces():
    n = 30
    x = np.array(_positions(n, 6))
    x[20] = x[3]
    x = jnp.asarray(x)
    for fn in (
        pairs.make_blocked_energy(n, REP, 1.0, EXCLUDED),
        pairs.make_cell_energy(n, REP, 1.0, EXCLUDED, 2.0, pairs.cell_grid(x, 2.0)),
    ):
        assert np.all(np.isfinite(np.asarray(jax.grad(fn)(x))))


def _largest_constant(text: str) -> int:
    """Elements of the largest array constant in StableHLO text (0 if none)."""
    sizes = [1]
    for shape in re.findall(r"stablehlo\.constant dense<.*?> : tensor<([0-9x]+)x?[a-z]", text):
        sizes.append(int(np.prod([int(s) for s in shape.split("x") if s])))
    return max(sizes)


@pytest.mark.parametrize("repulsion", ["all-pairs", "cutoff"])
def test_program_has_no_n_squared_constant_and_does_not_grow_with_n(repulsion):
    sizes, biggest = {}, {}
    for n in (200, 800):
        system = build_system(SystemConfig(kind="lj-loop", n=n), seed=0)
        model = make_energy(system, EnergyConfig(repulsion=repulsion, dtype="float32"))
        x = jnp.asarray(system.x0, jnp.float32)
        text = jax.jit(jax.value_and_grad(model.energy_fn)).lower(x).as_text()
        sizes[n], biggest[n] = len(text), _largest_constant(text)
    assert biggest[800] < 800, biggest  # nothing of n^2 (or even n) elements is folded in
    # the text differs only in the shapes written into it, not in size
    assert abs(sizes[800] - sizes[200]) < 0.02 * sizes[200], sizes


@pytest.mark.parametrize("kind", ["bond-lj-loop", "lj-loop"])
@pytest.mark.parametrize("repulsion", ["all-pairs", "cutoff"])
def test_loop_model_energy_matches_reference_pair_terms(kind, repulsion):
    """The loop model's energy equals the sum of its PairTerms (the Hessian's view)."""
    system = build_system(SystemConfig(kind=kind, n=80), seed=2)
    model = make_energy(system, EnergyConfig(repulsion=repulsion, cutoff=2.0, dtype="float64"))
    x = jnp.asarray(system.x0)
    total = 0.0
    for t in model.pair_terms:
        p = pairs.concrete_pairs(t.pairs, system.x0)
        r = jnp.linalg.norm(x[p[:, 0]] - x[p[:, 1]], axis=1)
        w = np.broadcast_to(np.asarray(t.weights), (len(p),))
        total += t.scale * float(jnp.sum(jnp.asarray(w) * t.potential(r)))
    assert float(model.energy_fn(x)) == pytest.approx(total, rel=1e-12)
    assert model.reported == ("cutoff" if repulsion == "cutoff" else "full")


@pytest.mark.parametrize("cutoff", [0.7, 2.5, 100.0])
def test_pairs_within_finds_exactly_the_allowed_pairs_inside_the_cutoff(cutoff):
    x = np.asarray(_positions(300, 4))
    i, j = np.triu_indices(300, 1)
    r = np.linalg.norm(x[i] - x[j], axis=1)
    keep = (r <= cutoff) & ~np.isin(j - i, EXCLUDED)
    found = pairs.pairs_within(x, cutoff, EXCLUDED)
    np.testing.assert_array_equal(found, np.stack([i[keep], j[keep]], axis=1))
    spec = pairs.CutoffPairs(EXCLUDED, cutoff)
    np.testing.assert_array_equal(pairs.concrete_pairs(spec, x), found)
    listed = np.array([[0, 3], [2, 5]])
    np.testing.assert_array_equal(pairs.concrete_pairs(listed, x), listed)


def test_cutoff_model_lists_no_n_squared_pairs():
    """The cutoff model's repulsion term finds its pairs per configuration (sparse Hessians at
    any n), the other models list every pair up to PAIR_TERMS_MAX_ATOMS."""
    system = build_system(SystemConfig(kind="lj-loop", n=6000), seed=0)
    model = make_energy(system, EnergyConfig(repulsion="cutoff", cutoff=2.0, dtype="float64"))
    rep = model.pair_terms[-1]
    assert isinstance(rep.pairs, pairs.CutoffPairs) and rep.pairs.cutoff == 2.0
    assert max(np.asarray(t.pairs).size for t in model.pair_terms[:-1]) <= 2 * 2 * 6000


def test_cutoff_run_does_not_recompile_across_chunks():
    spec = RunSpec().replace(
        **{
            "system.n": 120,
            "energy.repulsion": "cutoff",
            "energy.cutoff": 2.0,
            "schedule.max_steps": 200,
            "schedule.stopping": "none",
            "chunk_size": 20,
        }
    )
    from engine.run import advance, init_run

    parts, state, _ = init_run(spec)
    chunk = parts.stages[2].chunk
    for _ in range(6):
        state, _ = advance(parts, state)
    assert chunk.n_traces == 1
    result = run(spec)
    assert result.status == "done" and np.isfinite(result.metrics["energy"]).all()
    # the reported energy is the cutoff model's: the same positions give the same value
    model = make_energy(result.system, spec.energy)
    x = jnp.asarray(result.x_final, jnp.float32)
    assert result.metrics["energy"][-1] == pytest.approx(float(model.energy_fn(x)), rel=1e-4)


def test_blocked_forces_with_coincident_and_close_atoms_match_direct_autodiff():
    """The strips' forces come from a matrix product (x_i sum_j c_ij - sum_j c_ij x_j); a
    coincident pair (no force) and a very close one must not swamp the other terms."""
    n = 40
    x = np.array(_positions(n, 7), np.float64)
    x[25] = x[4]  # coincident: phi(0), no force
    x[30] = x[10] + 1e-4  # very close: a large force along a tiny separation

    def direct(y):
        i, j = np.triu_indices(n, 1)
        keep = ~np.isin(j - i, EXCLUDED)
        i, j = i[keep], j[keep]
        d2 = jnp.sum((y[i] - y[j]) ** 2, axis=1)
        r = jnp.sqrt(jnp.where(d2 > 0, d2, 1.0))
        return 0.7 * jnp.sum(jnp.where(d2 > 0, REP(r), REP(0.0)))

    fn = pairs.make_blocked_energy(n, REP, 0.7, EXCLUDED, block=16)
    xj = jnp.asarray(x)
    assert float(fn(xj)) == pytest.approx(float(direct(xj)), rel=1e-12)
    np.testing.assert_allclose(jax.grad(fn)(xj), jax.grad(direct)(xj), rtol=1e-8, atol=1e-8)


def test_cell_hash_spreads_the_loop_start_and_matches_the_host():
    """One bucket per occupied cell for a compact x0 (an XOR hash put three cells in one),
    and the in-program hash equals the host's (capacities are chosen on the host)."""
    x = build_system(SystemConfig(kind="lj-loop", n=2000), seed=0).x0
    cells = np.floor(x / 3.0).astype(np.int64)
    fullest_cell = np.unique(cells, axis=0, return_counts=True)[1].max()
    counts = pairs._host_bucket_counts(x, 3.0, 4096)
    assert counts.max() == fullest_cell
    device = np.asarray(pairs._hash(jnp.asarray(cells, jnp.int32), 4096))
    assert np.bincount(device, minlength=4096).tolist() == counts.tolist()


def test_neighbor_capacity_follows_the_fullest_neighbourhood():
    x = np.asarray(_positions(500, 8))
    from scipy.spatial import cKDTree

    most = max(len(p) for p in cKDTree(x).query_ball_point(x, 2.5))
    cap = pairs.neighbor_capacity(x, 2.5)
    assert cap % 16 == 0 and most * pairs.CAPACITY_MARGIN <= cap < most * pairs.CAPACITY_MARGIN + 16
    nbrs = pairs.neighbor_list(500, 1.5, EXCLUDED, skin=1.0).allocate(jnp.asarray(x))
    assert nbrs.idx.shape[1] == cap and not bool(nbrs.overflow)
