"""Loop systems: pair potentials, energies vs finite differences, reference values, metrics."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads

from engine import (
    EnergyConfig,
    SystemConfig,
    build_system,
    make_energy,
    potentials,
    structure_metrics,
)
from engine.loops import loop_pairs
from engine.systems import bond_integrity


def test_softened_lj_reference_values():
    # method.md §3.1: minimum -0.23672 at r ~ 1.132, V(0) = 83.33, barrier 84.73 at r ~ 0.467
    r = np.linspace(0.3, 2.0, 200001)
    v = np.asarray(potentials.softened_lj(jnp.asarray(r)))
    i = np.argmin(v)
    assert v[i] == pytest.approx(-0.23672, abs=1e-5)
    assert r[i] == pytest.approx(1.132, abs=2e-3)
    assert float(potentials.softened_lj(0.0)) == pytest.approx(5 / 6 / 1e-2, rel=1e-12)
    near = np.linspace(0.3, 0.6, 30001)
    vn = np.asarray(potentials.softened_lj(jnp.asarray(near)))
    assert vn.max() == pytest.approx(84.73, abs=0.01)
    assert near[np.argmax(vn)] == pytest.approx(0.467, abs=2e-3)


def test_monotone_core_has_no_trap_and_matches_outside():
    r = jnp.linspace(0.0, 0.8, 1000)
    dv = jax.vmap(jax.grad(potentials.monotone_lj))(r)
    assert bool(jnp.all(dv < 0)), "monotone core must be strictly decreasing below its radius"
    r_out = jnp.linspace(0.8, 3.0, 100)
    np.testing.assert_allclose(
        potentials.monotone_lj(r_out), potentials.softened_lj(r_out), rtol=1e-12
    )
    # C1 at the junction
    g = jax.grad(potentials.monotone_lj)
    assert float(g(0.8 - 1e-9)) == pytest.approx(float(g(0.8 + 1e-9)), rel=1e-5)


def test_lj_dimer_minimum_at_analytic_distance():
    def dimer(d):
        return potentials.lennard_jones(jnp.abs(d), sigma=1.3, epsilon=0.7)

    r_min = 2 ** (1 / 6) * 1.3
    assert float(dimer(r_min)) == pytest.approx(-0.7, rel=1e-12)
    assert abs(float(jax.grad(dimer)(r_min))) < 1e-12
    assert float(jax.grad(jax.grad(dimer))(r_min)) > 0


def test_loop_graph():
    bonds, loops = loop_pairs(50, 10)
    assert bonds.shape == (49, 2) and loops.shape == (40, 2)
    assert np.all(loops[:, 1] - loops[:, 0] == 10)


@pytest.mark.parametrize("kind", ["bond-lj-loop", "lj-loop"])
def test_initial_positions_reference_scale_and_seeded(kind):
    a = build_system(SystemConfig(kind=kind, n=1000), seed=3)
    b = build_system(SystemConfig(kind=kind, n=1000), seed=3)
    c = build_system(SystemConfig(kind=kind, n=1000), seed=4)
    np.testing.assert_array_equal(a.x0, b.x0)
    assert not np.allclose(a.x0, c.x0)
    assert a.x0.std() == pytest.approx(1000 ** (1 / 3) / 4, rel=0.05)


def _direct_energy(x, system, kind, a=0.1, eps=1e-2, rep_mag=2.5e-3):
    """Slow reference: per-pair means written out with numpy loops over pair lists."""
    x = np.asarray(x, np.float64)
    bonds = np.asarray(system.bonds)
    loops = np.asarray(system.meta["loop_pairs"])
    r = lambda p: np.linalg.norm(x[p[:, 0]] - x[p[:, 1]], axis=1)  # noqa: E731
    lj = lambda r_: 1 / (r_**12 + eps) - 1 / (r_**6 + 6 * eps)  # noqa: E731
    if kind == "bond-lj-loop":
        e = np.mean((r(bonds) - 1) ** 2) + np.mean(a * lj(r(loops)))
    else:
        e = (np.sum(lj(r(bonds))) + np.sum(a * lj(r(loops)))) / (len(bonds) + len(loops))
    n = len(x)
    excluded = {tuple(p) for p in np.concatenate([bonds, loops])}
    rep = [
        1 / (np.linalg.norm(x[i] - x[j]) + eps)
        for i in range(n)
        for j in range(i + 1, n)
        if (i, j) not in excluded
    ]
    return e + rep_mag * np.mean(rep)


@pytest.mark.parametrize("kind", ["bond-lj-loop", "lj-loop"])
def test_energy_matches_direct_reference(kind):
    system = build_system(SystemConfig(kind=kind, n=60), seed=1)
    model = make_energy(system, EnergyConfig(dtype="float64"))
    assert float(model.energy_fn(jnp.asarray(system.x0))) == pytest.approx(
        _direct_energy(system.x0, system, kind), rel=1e-10
    )


@pytest.mark.parametrize("kind", ["bond-lj-loop", "lj-loop"])
@pytest.mark.parametrize("soft_core", ["reference", "monotone"])
@pytest.mark.parametrize("repulsion", ["all-pairs", "random-subset", "cutoff"])
def test_gradients_match_finite_differences(kind, soft_core, repulsion, key):
    system = build_system(SystemConfig(kind=kind, n=50), seed=0)
    model = make_energy(
        system, EnergyConfig(soft_core=soft_core, repulsion=repulsion, dtype="float64")
    )
    x = jnp.asarray(system.x0)
    aux = model.aux_init(key, x)
    check_grads(model.energy_fn, (x,), order=1, modes=["rev"], atol=1e-5, rtol=1e-5)
    check_grads(
        lambda y: model.train_energy_fn(y, aux), (x,), order=1, modes=["rev"], atol=1e-5, rtol=1e-5
    )


def test_float32_energy_stays_float32():
    system = build_system(SystemConfig(kind="lj-loop", n=50), seed=0)
    model = make_energy(system, EnergyConfig())
    x = jnp.asarray(system.x0, jnp.float32)
    assert model.energy_fn(x).dtype == jnp.float32
    assert jax.grad(model.energy_fn)(x).dtype == jnp.float32


def test_random_subset_is_unbiased_estimate_and_redrawn(key):
    system = build_system(SystemConfig(kind="lj-loop", n=80), seed=0)
    model = make_energy(
        system, EnergyConfig(repulsion="random-subset", resample_every=100, dtype="float64")
    )
    x = jnp.asarray(system.x0)
    aux = model.aux_init(key, x)
    assert aux.shape == (int(80 * np.log(80)), 2)
    assert len({tuple(p) for p in np.asarray(aux)}) == aux.shape[0], (
        "pairs drawn without replacement"
    )
    same = model.aux_update(key, x, 40, 20, aux)
    assert same is aux
    new = model.aux_update(jax.random.PRNGKey(9), x, 120, 80, aux)
    assert new.shape == aux.shape and not np.array_equal(new, aux)
    values = [
        float(model.train_energy_fn(x, model.aux_init(jax.random.PRNGKey(s), x))) for s in range(40)
    ]
    assert np.mean(values) == pytest.approx(float(model.energy_fn(x)), rel=2e-3)


def test_cutoff_neighbour_list_rebuilds_when_atoms_move(key):
    system = build_system(SystemConfig(kind="lj-loop", n=100), seed=0)
    model = make_energy(system, EnergyConfig(repulsion="cutoff", cutoff=2.5, dtype="float64"))
    x = jnp.asarray(system.x0)
    aux = model.aux_init(key, x)
    same = model.aux_update(key, x + 0.01, 20, 0, aux)
    assert same.idx is aux.idx  # small move: the list is kept, only the check point moves
    moved = model.aux_update(key, x * 1.5, 20, 0, aux)
    assert moved.idx is not aux.idx and not np.array_equal(moved.x_build, aux.x_build)
    assert moved.idx.shape[0] == 100
    assert model.reported == "cutoff"
    assert float(model.train_energy_fn(x * 1.5, moved)) == pytest.approx(
        float(model.energy_fn(x * 1.5)), rel=1e-12
    )


def test_structure_metrics_on_ideal_layout():
    system = build_system(SystemConfig(kind="lj-loop", n=60), seed=0)
    x = np.zeros((60, 3))
    x[:, 0] = np.arange(60) * 1.1  # straight chain: bonds fine, no loop contacts
    m = structure_metrics(x, system)
    assert m["bond_ok_frac"] == 1.0
    assert m["loop_contact_frac"] == 0.0
    assert m["collapsed_pairs"] == 0
    assert m["radius_of_gyration"] == pytest.approx(1.1 * np.sqrt((60**2 - 1) / 12), rel=1e-9)
    x[5] = x[4] + 0.1
    assert structure_metrics(x, system)["collapsed_pairs"] >= 1


@pytest.mark.parametrize("repulsion", ["all-pairs", "random-subset", "cutoff"])
def test_coincident_beads_give_finite_gradient(repulsion, key):
    system = build_system(SystemConfig(kind="bond-lj-loop", n=50), seed=0)
    model = make_energy(system, EnergyConfig(repulsion=repulsion, dtype="float64"))
    x = np.array(system.x0)
    x[1] = x[0]  # bonded pair on top of each other
    x[30] = x[7]  # a repulsion pair too
    x = jnp.asarray(x)
    aux = model.aux_init(key, x)
    assert np.all(np.isfinite(np.asarray(jax.grad(model.energy_fn)(x))))
    assert np.all(np.isfinite(np.asarray(jax.grad(model.train_energy_fn)(x, aux))))


def test_intact_bonds_count_the_bonds_stretched_beyond_twice_their_rest_length():
    system = build_system(SystemConfig(kind="bond-lj-loop", n=50), seed=0)
    x = np.zeros((50, 3))
    x[:, 0] = np.arange(50) * 1.0  # 49 bonds at rest length
    x[10:, 0] += 1.5  # bond 9-10 is 2.5 long: stretched
    x[30:, 0] += 0.9  # bond 29-30 is 1.9 long: still intact (<= 2)
    x[40:, 1] += 5.0  # bond 39-40 is sqrt(1 + 25): stretched
    m = structure_metrics(x, system)
    assert m["bonds_stretched"] == 2
    assert m["bonds_intact_frac"] == pytest.approx(47 / 49)
    assert bond_integrity(x, np.zeros((0, 2), int), 1.0) == {
        "bonds_intact_frac": 1.0,
        "bonds_stretched": 0,
    }
    # per-bond rest lengths: a bond at 3 with rest 2 is intact
    pair = np.array([[0.0, 0, 0], [3.0, 0, 0]])
    assert bond_integrity(pair, [[0, 1]], [2.0])["bonds_stretched"] == 0
    assert bond_integrity(pair, [[0, 1]], [1.0])["bonds_stretched"] == 1
