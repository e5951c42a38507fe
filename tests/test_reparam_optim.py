"""Conformance table: every reparametrization x every optimizer (optax alias_test style)."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from util import fake_modes

from engine import EnergyConfig, OptimConfig, ReparamConfig, SystemConfig, build_system, make_energy
from engine.loop import make_chunk_fn
from engine.optim import clip_rows, fire, make_optimizer
from engine.reparam import make_reparam, propagation_factors
from engine.reparam.gnn import bond_propagation

N = 60
RING = np.stack([np.arange(N), (np.arange(N) + 1) % N], axis=1)  # graph for the bond-graph GNN


@pytest.fixture(scope="module")
def system():
    return build_system(SystemConfig(kind="lj-loop", n=N), seed=0)


@pytest.fixture(scope="module")
def model(system):
    return make_energy(system, EnergyConfig(dtype="float64"))


REPARAMS = {
    "none": (ReparamConfig(kind="none"), None),
    "linear-node": (ReparamConfig(kind="linear"), "node"),
    "linear-cart": (ReparamConfig(kind="linear"), "cartesian"),
    "gnn-1layer": (ReparamConfig(kind="gnn", hidden=16), "node"),
    "gnn-psi-3layer-concat": (
        ReparamConfig(
            kind="gnn",
            hidden=16,
            n_layers=3,
            residual="concat",
            propagation="psi",
            activation="silu",
        ),
        "node",
    ),
    "gnn-cart-relu-xavier": (
        ReparamConfig(kind="gnn", hidden=8, n_layers=2, activation="relu", self_init="xavier"),
        "cartesian",
    ),
    "gnn-fit": (ReparamConfig(kind="gnn", hidden=32, fit_to_x0=True, fit_steps=1500), "node"),
    "linear-anchored": (ReparamConfig(kind="linear", anchor="x0"), "node"),
    "gnn-anchored": (ReparamConfig(kind="gnn", hidden=16, anchor="x0"), "cartesian"),
    "gnn-bonds": (
        ReparamConfig(kind="gnn", hidden=16, n_layers=2, residual="concat", propagation="bonds"),
        None,
    ),
}
OPTIMS = {
    "adam": OptimConfig(name="adam", learning_rate=0.01),
    "sgd": OptimConfig(name="sgd", learning_rate=0.05, clip="global-norm", clip_value=1.0),
    "fire": OptimConfig(name="fire", learning_rate=0.01, clip="max-displacement", clip_value=0.1),
}


def build(name, system):
    cfg, space = REPARAMS[name]
    modes = fake_modes(space, 20 if space == "node" else 60) if space else None
    return make_reparam(cfg, modes, N, jnp.float64, bonds=RING)


@pytest.mark.parametrize("name", list(REPARAMS))
def test_reparam_shape_and_start(name, system, key):
    reparam = build(name, system)
    params = reparam.init(key, system.x0)
    x = reparam.apply(params)
    assert x.shape == (N, 3) and x.dtype == jnp.float64
    np.testing.assert_allclose(jax.jit(reparam.apply)(params), x, rtol=1e-12, atol=1e-12)
    if name == "none":
        np.testing.assert_array_equal(x, system.x0)
    elif name.endswith("anchored"):
        np.testing.assert_allclose(x, system.x0, atol=1e-12)
    elif name == "gnn-fit":
        rel = np.linalg.norm(x - system.x0) / np.linalg.norm(system.x0)
        assert rel < 0.35, f"fit to x0 should pull the output towards x0 (rel. error {rel:.3f})"
    elif name.startswith("gnn"):
        # output spread matched to x0 (centroid and global std)
        np.testing.assert_allclose(np.mean(x, axis=0), np.mean(system.x0, axis=0), atol=1e-10)
        assert np.std(x - x.mean(0)) == pytest.approx(np.std(system.x0), rel=1e-8)


@pytest.mark.parametrize("name", list(REPARAMS))
def test_float32_stays_float32(name, system, key):
    cfg, space = REPARAMS[name]
    modes = fake_modes(space, 20 if space == "node" else 60) if space else None
    reparam = make_reparam(cfg, modes, N, jnp.float32, bonds=RING)
    params = reparam.init(key, system.x0)
    assert {leaf.dtype for leaf in jax.tree.leaves(params)} == {jnp.dtype("float32")}
    assert reparam.apply(params).dtype == jnp.float32


def test_linear_with_all_modes_reproduces_x0(system, key):
    for space, k in (("node", N), ("cartesian", 3 * N)):
        reparam = make_reparam(ReparamConfig(kind="linear"), fake_modes(space, k), N, jnp.float64)
        np.testing.assert_allclose(
            reparam.apply(reparam.init(key, system.x0)), system.x0, atol=1e-10
        )


def test_gnn_propagation_is_factored_and_matches_dense(system):
    modes = fake_modes("node", 10)
    b = propagation_factors(modes, N, "psi-lambda")
    dense = modes.vectors @ np.diag(modes.values) @ modes.vectors.T
    np.testing.assert_allclose(b[0] @ b[0].T, dense, atol=1e-12)
    cart = fake_modes("cartesian", 30)
    bc = propagation_factors(cart, N, "psi")
    full = cart.vectors @ cart.vectors.T
    trace_blocks = sum(full[c::3, c::3] for c in range(3))
    np.testing.assert_allclose(sum(bc[c] @ bc[c].T for c in range(3)), trace_blocks, atol=1e-12)
    assert b.shape == (1, N, 10)  # never an n x n array in the model


def test_bond_propagation_matches_dense_adjacency():
    bonds = np.array([[0, 1], [1, 2], [2, 1], [3, 0], [4, 4]])  # a repeat, a reversal, a self-loop
    h = np.random.default_rng(0).normal(size=(5, 3))
    adjacency = np.zeros((5, 5))
    for i, j in ((0, 1), (1, 2), (0, 3)):
        adjacency[i, j] = adjacency[j, i] = 1.0
    out = bond_propagation(bonds, 5)(jnp.asarray(h))
    np.testing.assert_allclose(out, (adjacency + 0.2 * np.eye(5)) @ h, atol=1e-12)


def test_graph_inputs_are_checked():
    bonds_cfg = ReparamConfig(kind="gnn", propagation="bonds")
    assert not bonds_cfg.needs_modes and ReparamConfig(kind="gnn").needs_modes
    with pytest.raises(ValueError, match="needs a system with bonds"):
        make_reparam(bonds_cfg, None, N, bonds=np.zeros((0, 2), int))
    with pytest.raises(ValueError, match=r"bond indices must be in \[0, 59\]"):
        make_reparam(bonds_cfg, None, N, bonds=np.array([[0, 60]]))
    with pytest.raises(ValueError, match="needs slow modes"):
        make_reparam(ReparamConfig(kind="gnn"), None, N, bonds=RING)


def test_bond_graph_run_computes_no_modes():
    from engine import RunSpec, ScheduleConfig, SpecError, run

    spec = RunSpec(
        system=SystemConfig(kind="bond-lj-loop", n=N),
        reparam=ReparamConfig(kind="gnn", hidden=8, propagation="bonds"),
        optim=OptimConfig(name="adam", learning_rate=0.01),
        schedule=ScheduleConfig(
            max_steps=200, stage1_max_steps=100, stopping="none", switch="fixed", stage1_steps=100
        ),
    )
    with pytest.raises(SpecError, match="pure LJ loop has none"):
        spec.replace(**{"system.kind": "lj-loop"})
    result = run(spec)
    summary = result.summary()
    assert summary["modes_s"] == 0.0 and result.status == "done"
    assert summary["final_energy"] < result.metrics["energy"][0]
    assert result.metrics["stage"][0] == 1 and result.metrics["stage"][-1] == 2


@pytest.mark.parametrize("optim", list(OPTIMS))
@pytest.mark.parametrize("name", list(REPARAMS))
def test_energy_decreases_and_no_recompile(name, optim, system, model, key):
    reparam = build(name, system)
    params = reparam.init(key, system.x0)
    tx = make_optimizer(OPTIMS[optim], 0.003 if name.startswith("gnn") and optim != "sgd" else None)
    chunk = make_chunk_fn(
        lambda p, a: model.energy_fn(reparam.apply(p)), reparam.apply, model.energy_fn, tx, 25
    )
    aux = jnp.zeros((0, 2), jnp.int32)
    state = tx.init(params)
    e_start = float(model.energy_fn(reparam.apply(params)))
    out = chunk(params, state, aux)
    out = chunk(out.params, out.opt_state, aux)
    out = chunk(out.params, out.opt_state, aux)
    assert chunk.n_traces == 1, "the second and later chunks must not recompile"
    assert float(out.energy) < e_start
    assert out.train_energies.shape == (25,)
    assert np.isfinite(float(out.grad_norm))


def test_fire_minimizes_a_quadratic_fast():
    target = jnp.array([1.0, -2.0, 3.0])
    loss = lambda p: 0.5 * jnp.sum(jnp.array([1.0, 10.0, 100.0]) * (p - target) ** 2)  # noqa: E731
    tx = fire(0.02)

    def step(carry, _):
        p, state = carry
        u, state = tx.update(jax.grad(loss)(p), state)
        return (optax.apply_updates(p, u), state), None

    (p, state), _ = jax.jit(lambda c: jax.lax.scan(step, c, None, length=300))(
        (jnp.zeros(3), tx.init(jnp.zeros(3)))
    )
    np.testing.assert_allclose(p, target, atol=1e-4)
    assert float(state.dt) > 0.02, "time step grows while going downhill"


def test_clipping_modes():
    g = {"x": jnp.array([[3.0, 4.0, 0.0], [0.3, 0.0, 0.4]])}
    u, _ = clip_rows(1.0).update(g, optax.EmptyState())
    np.testing.assert_allclose(jnp.linalg.norm(u["x"], axis=1), [1.0, 0.5], rtol=1e-12)
    elementwise = make_optimizer(
        OptimConfig(name="sgd", learning_rate=1.0, momentum=0.0, clip="elementwise", clip_value=0.5)
    )
    u, _ = elementwise.update(g, elementwise.init(g))
    assert float(jnp.max(jnp.abs(u["x"]))) == pytest.approx(0.5)
    glob = make_optimizer(
        OptimConfig(name="sgd", learning_rate=1.0, momentum=0.0, clip="global-norm", clip_value=1.0)
    )
    u, _ = glob.update(g, glob.init(g))
    assert float(optax.global_norm(u)) == pytest.approx(1.0, rel=1e-9)
