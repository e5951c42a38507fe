"""Teaching views of issue 12 items 2-4: conditioning (J^T H J through CG and the GNN), the
GNN's propagation graph, the energy landscape slice. Engine numerics against dense or
finite-difference computations; figures and panel callbacks on small systems."""

import json
from contextvars import copy_context

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from dash import no_update as NU
from dash._callback_context import context_value
from dash._utils import AttributeDict
from jax.flatten_util import ravel_pytree
from workbench_fakes import FakeEngine, wait_for

from engine import ReparamConfig, build_system, make_energy
from engine.hessian import hessian
from engine.modes import rigid_body_basis
from engine.presets import OPENING, demo_spec
from engine.reparam import make_gnn, make_reparam
from engine.run import compute_modes
from engine.teaching import (
    full_modes,
    gauss_newton_extremes,
    gauss_newton_spectrum,
    jacobian_spectrum,
    kappa_bulk_of,
    kappa_of,
    landscape_slice,
    map_conditioning,
    map_ntk,
    path_in_plane,
    position_conditioning,
    propagation_matrix,
    strongest_edges,
)


@pytest.fixture(scope="module")
def loop():
    spec = demo_spec(OPENING, "gnn").replace(**{"system.n": 50})
    system = build_system(spec.system, spec.seed)
    model = make_energy(system, spec.energy)
    return spec, system, model


@pytest.fixture(scope="module")
def small_gnn(loop):
    spec, system, model = loop
    cfg = ReparamConfig(kind="gnn", hidden=4, n_layers=1, fit_to_x0=False)
    modes = compute_modes(spec.replace(**{"reparam.n_modes": 5}), system, model)
    gnn = make_gnn(cfg, modes, system.n_atoms, jnp.float64)
    params = gnn.init(jax.random.PRNGKey(0), jnp.asarray(system.x0))
    return gnn, params


def _nonzero(values, rel=1e-9):
    v = np.sort(np.asarray(values))
    return v[np.abs(v) > rel * np.abs(v).max()]


# ---- conditioning -------------------------------------------------------------------------
def test_gauss_newton_spectrum_equals_dense_jt_h_j_without_zero_modes():
    rng = np.random.default_rng(0)
    n = 5
    x = rng.normal(size=(n, 3))
    a = rng.normal(size=(3 * n, 3 * n))
    h = a + a.T
    r = np.concatenate(rigid_body_basis(x), axis=1)
    p = np.eye(3 * n) - r @ r.T
    for n_params in (4, 40):  # fewer and more parameters than coordinates
        j = rng.normal(size=(3 * n, n_params))
        values, rank = gauss_newton_spectrum(h, j @ j.T, x)
        jp = p @ j
        dense = _nonzero(np.linalg.eigvalsh(jp.T @ h @ jp))
        assert rank == min(n_params, 3 * n - 6) == len(dense)
        np.testing.assert_allclose(np.sort(values), dense, rtol=1e-8, atol=1e-10)


def test_cholesky_and_eigh_routes_and_the_jacobian_route_agree():
    from engine.teaching import _gn_by_cholesky

    rng = np.random.default_rng(1)
    n = 6
    x = rng.normal(size=(n, 3))
    a = rng.normal(size=(3 * n, 3 * n))
    h = a + a.T
    r = np.concatenate(rigid_body_basis(x), axis=1)
    p = np.eye(3 * n) - r @ r.T
    j = rng.normal(size=(3 * n, 60))  # full rank: the Cholesky route
    assert _gn_by_cholesky(h, j @ j.T, r) is not None
    values, rank = gauss_newton_spectrum(h, j @ j.T, x)
    jp = p @ j
    dense = _nonzero(np.linalg.eigvalsh(jp.T @ h @ jp))
    assert rank == 3 * n - 6 == len(values)
    np.testing.assert_allclose(values, dense, rtol=1e-8, atol=1e-10 * np.abs(dense).max())
    # a rank-deficient kernel is refused by the Cholesky route and cut by rank in eigh's
    thin = rng.normal(size=(3 * n, 5))
    assert _gn_by_cholesky(h, thin @ thin.T, r) is None
    values, rank = gauss_newton_spectrum(h, thin @ thin.T, x)
    want = _nonzero(np.linalg.eigvalsh((p @ thin).T @ h @ (p @ thin)))
    assert rank == 5 and len(values) == 5
    np.testing.assert_allclose(values, want, rtol=1e-8, atol=1e-12)
    # J itself (P <= 3n) gives the same numbers as its kernel J J^T
    for cols in (thin, rng.normal(size=(3 * n, 3 * n))):
        by_j, rank_j = jacobian_spectrum(h, cols, x)
        by_k, rank_k = gauss_newton_spectrum(h, cols @ cols.T, x)
        assert rank_j == rank_k
        np.testing.assert_allclose(by_j, by_k, rtol=1e-7, atol=1e-10 * np.abs(by_k).max())


def test_cg_map_onto_eigenvectors_has_exactly_their_eigenvalues(loop):
    _, system, model = loop
    m = full_modes(model, system.x0)
    cols = m.vectors[:, 6:16]  # ten non-rigid eigenvectors, orthonormal
    basis, x0 = jnp.asarray(cols), jnp.asarray(system.x0)

    def apply(z):  # x = x0 + V z: at z = 0 the Hessian is H(x0)
        return x0 + jnp.reshape(basis @ z, (-1, 3))

    row = map_conditioning(model, apply, jnp.zeros(10), "CG onto 10 eigenvectors")
    np.testing.assert_allclose(np.sort(row.values), np.sort(m.values[6:16]), rtol=1e-7)
    assert row.rank == 10 and row.n_params == 10
    assert row.kappa == pytest.approx(kappa_of(m.values[6:16]))


def test_gnn_kernel_and_jvp_against_finite_differences(small_gnn):
    gnn, params = small_gnn
    flat, unravel = ravel_pytree(params)

    def f(p):
        return np.asarray(gnn.apply(unravel(jnp.asarray(p))), np.float64).ravel()

    eps = 1e-6
    flat_np = np.asarray(flat, np.float64)
    jac = np.stack(
        [(f(flat_np + eps * e) - f(flat_np - eps * e)) / (2 * eps) for e in np.eye(len(flat_np))],
        axis=1,
    )
    rng = np.random.default_rng(3)
    v = rng.normal(size=len(flat_np))
    jv = jax.jvp(lambda p: gnn.apply(unravel(p)).ravel(), (flat,), (jnp.asarray(v),))[1]
    np.testing.assert_allclose(np.asarray(jv), jac @ v, rtol=1e-6, atol=1e-8)
    k, n_params = map_ntk(gnn.apply, params, chunk=7)  # chunks that do not divide 3n
    assert n_params == len(flat_np)
    np.testing.assert_allclose(k, jac @ jac.T, rtol=1e-6, atol=1e-8 * np.abs(k).max())


def test_lanczos_extremes_match_the_dense_operator(loop, small_gnn):
    _, system, model = loop
    gnn, params = small_gnn
    flat, unravel = ravel_pytree(params)
    x = np.asarray(gnn.apply(params), np.float64)
    jac = np.asarray(jax.jacfwd(lambda p: gnn.apply(unravel(p)).ravel())(flat))
    r = np.concatenate(rigid_body_basis(x), axis=1)
    jp = (np.eye(len(r)) - r @ r.T) @ jac
    dense = np.linalg.eigvalsh(jp.T @ np.asarray(hessian(model, x)) @ jp)
    top, bottom = gauss_newton_extremes(model, gnn.apply, params, n_eig=3)
    scale = np.abs(dense).max()
    np.testing.assert_allclose(top, dense[-3:], atol=1e-7 * scale)
    np.testing.assert_allclose(bottom, dense[:3], atol=1e-7 * scale)


def test_position_conditioning_excludes_the_rigid_body_span(loop):
    _, system, model = loop
    row = position_conditioning(model, system.x0)
    m = full_modes(model, system.x0)
    assert row.rank == 3 * system.n_atoms - 6 == len(row.values)
    np.testing.assert_allclose(row.values, np.sort(m.values[6:]))
    assert row.n_negative == int((m.values[6:] < 0).sum())
    assert kappa_of([-4.0, 2.0, 1.0]) == 4.0 and kappa_of([0.0, 1.0]) == float("inf")
    assert kappa_bulk_of(np.arange(1.0, 11.0)) == pytest.approx(10 / 1.9)  # 10 % quantile
    assert row.kappa_bulk == pytest.approx(kappa_bulk_of(row.values))


def test_conditioning_report_rows(loop):
    from engine.teaching import conditioning_report

    spec, system, _ = loop
    specs = [
        demo_spec(OPENING, m).replace(**{"system.n": 50, "schedule.max_steps": 400})
        for m in ("cg", "gnn")
    ]
    phases = []  # the view's two parts, one after the other, are the whole report
    rows = conditioning_report(specs, system, phases.append, parts=("start",))
    assert len(rows) == 3
    rows += conditioning_report(specs, system, phases.append, parts=("switch",))
    labels = [r.label for r in rows]
    assert labels[:3] == ["H in positions, at x0", labels[1], "GNN at step 0"]
    assert labels[1].startswith("CG at its start, x = Ψz (k = ")
    assert all(np.isfinite(r.kappa) and r.kappa >= 1 for r in rows)
    # CG: J = Psi (x) I3 on node modes, H at CG's start, compared with the dense product
    model = make_energy(system, specs[0].energy)
    modes = compute_modes(specs[0], system, model)
    cg = make_reparam(specs[0].reparam, modes, system.n_atoms, jnp.float64)
    x = np.asarray(cg.apply(cg.init(None, jnp.asarray(system.x0))))
    j = np.kron(np.asarray(modes.vectors), np.eye(3))
    r = np.concatenate(rigid_body_basis(x), axis=1)
    jp = (np.eye(len(r)) - r @ r.T) @ j
    dense = _nonzero(np.linalg.eigvalsh(jp.T @ np.asarray(hessian(model, x)) @ jp))
    np.testing.assert_allclose(np.sort(rows[1].values), dense, rtol=1e-6)
    assert any("kernel" in p for p in phases)
    if len(rows) == 4:
        assert rows[3].label.startswith("GNN at its switch (step ")
    # the GNN's step 0 without compiling the run: the parameters init_run makes
    from engine.run import init_run
    from engine.teaching import initial_params

    params = initial_params(specs[1], system, compute_modes(specs[1], system, model))
    _, state, _ = init_run(specs[1], system)
    for got, want in zip(jax.tree.leaves(params), jax.tree.leaves(state.params), strict=True):
        np.testing.assert_array_equal(np.asarray(got), np.asarray(want))
    with pytest.raises(ValueError, match="parts"):
        conditioning_report(specs, system, parts=("middle",))


# ---- propagation graph --------------------------------------------------------------------
def test_propagation_matrix_by_setting(loop):
    spec, system, model = loop
    modes = compute_modes(spec, system, model)
    psi = np.asarray(modes.vectors)
    a = propagation_matrix(spec.replace(**{"reparam.propagation": "psi"}), system, modes)
    np.testing.assert_allclose(a, psi @ psi.T, atol=1e-12)
    lam = np.abs(np.asarray(modes.values))
    a = propagation_matrix(spec.replace(**{"reparam.propagation": "psi-lambda"}), system, modes)
    np.testing.assert_allclose(a, (psi * lam) @ psi.T, atol=1e-12)
    a = propagation_matrix(spec.replace(**{"reparam.propagation": "bonds"}), system)
    bonds = np.asarray(system.bonds)
    assert a[bonds[0, 0], bonds[0, 1]] == a[bonds[0, 1], bonds[0, 0]] == 1.0
    assert np.allclose(np.diag(a), 0.2) and a.sum() == pytest.approx(2 * len(bonds) + 0.2 * 50)


def test_strongest_edges():
    a = np.array([[9.0, 0.1, -3.0], [0.1, 9.0, 2.0], [-3.0, 2.0, 9.0]])
    pairs, w = strongest_edges(a, 2)
    assert pairs.tolist() == [[0, 2], [1, 2]] and w.tolist() == [-3.0, 2.0]
    assert len(strongest_edges(a, 10)[1]) == 3 and len(strongest_edges(a, 0)[1]) == 0
    with pytest.raises(ValueError, match="m must be"):
        strongest_edges(a, -1)


# ---- landscape slice ----------------------------------------------------------------------
def test_landscape_slice_against_direct_energies(loop):
    _, system, model = loop
    m = full_modes(model, system.x0)
    u, v = m.vectors[:, 6], m.vectors[:, 7]
    a, b, e = landscape_slice(model, system.x0, u, v, 0.4, 0.2, grid=5)
    assert e.shape == (5, 5) and a[-1] == 0.4 and b[0] == -0.2
    for ib, ia in ((0, 0), (2, 2), (4, 1), (3, 4)):
        x = system.x0 + (a[ia] * u + b[ib] * v).reshape(-1, 3)
        assert e[ib, ia] == pytest.approx(float(model.energy_fn(jnp.asarray(x))), rel=1e-9)
    with pytest.raises(ValueError, match="parallel"):
        landscape_slice(model, system.x0, u, 2 * u, 1, 1)
    with pytest.raises(ValueError, match="grid"):
        landscape_slice(model, system.x0, u, v, 1, 1, grid=2)


def test_path_in_plane(loop):
    _, system, model = loop
    m = full_modes(model, system.x0)
    u, v, w = m.vectors[:, 6], m.vectors[:, 7], m.vectors[:, 8]
    x0 = system.x0
    frames = np.stack(
        [x0, x0 + (0.3 * u - 0.2 * v).reshape(-1, 3), x0 + (0.3 * u + 0.4 * w).reshape(-1, 3)]
    )
    a, b, frac = path_in_plane(frames, x0, u, v)
    np.testing.assert_allclose(a, [0, 0.3, 0.3], atol=1e-12)
    np.testing.assert_allclose(b, [0, -0.2, 0], atol=1e-12)
    np.testing.assert_allclose(frac, [1, 1, 0.09 / 0.25], atol=1e-12)


# ---- figures ------------------------------------------------------------------------------
def test_conditioning_figure_labels_every_kappa():
    from workbench import teach_views

    rows = [
        {
            "label": "H",
            "values": [-1.0, 2.0, 100.0],
            "kappa": 100.0,
            "kappa_bulk": 50.0,
            "rank": 3,
            "n_negative": 1,
            "seconds": 0.1,
        },
        {
            "label": "GNN",
            "values": [1.0, 4.0],
            "kappa": 4.0,
            "kappa_bulk": 2.0,
            "rank": 2,
            "n_negative": 0,
            "seconds": 0.2,
        },
    ]
    fig = teach_views.conditioning_figure(rows)
    assert fig.layout.xaxis.type == "log"
    ticks = list(fig.layout.yaxis.ticktext)
    assert "κ = 100, κ₁₀ = 50 · 3 modes (1 < 0)" in ticks[0]
    assert "κ = 4, κ₁₀ = 2 · 2 modes" in ticks[1]
    hollow = [t for t in fig.data if t.marker.symbol == "circle-open"]
    assert len(hollow) == 1 and list(hollow[0].x) == [1.0]
    text = teach_views.conditioning_text(rows, 0.3)
    assert "GNN: κ = 4 (0.04× H's), κ₁₀ = 2 (0.04× H's)" in text and text.endswith(" In 0.3 s.")


def _graph_payload(loop, spec_changes=None):
    from workbench import teach_views

    spec, system, _ = loop
    spec = spec.replace(**(spec_changes or {}))
    frames = [(0, system.x0), (20, system.x0 + 0.1)]
    return teach_views.graph_work(spec, system, frames)(lambda text: None)


def test_graph_figure_draws_the_m_strongest_edges_and_the_histogram(loop):
    from workbench import teach_views

    p = _graph_payload(loop)
    fig = teach_views.graph_figure(p, 1, 30, True)
    edge_traces = [t for t in fig.data if t.name.startswith("A_ij")]
    n_segments = sum(int(np.isfinite(np.asarray(t.x, float)).sum()) // 2 for t in edge_traces)
    assert n_segments == 30
    assert "step 20: the 30 strongest edges" in fig.layout.title.text
    beads = next(t for t in fig.data if t.name == "beads")
    np.testing.assert_allclose(np.asarray(beads.x), loop[1].x0[:, 0] + 0.1)
    off = teach_views.graph_figure(p, 0, 30, False)
    assert not [t for t in off.data if t.name.startswith("A_ij")]
    hist = teach_views.weight_histogram(p, 30)
    assert sum(hist.data[0].y) == 50 * 49 // 2
    cut = abs(p["weights"][29])
    assert f"|A_ij| ≥ {cut:.3g} (30 edges)" in hist.layout.annotations[0].text


def test_landscape_figure(loop):
    from workbench import teach_views

    spec, system, model = loop
    paths = {"GD": [(0, system.x0), (20, system.x0 + 0.05)]}
    p = teach_views.landscape_work(spec, system, paths, 1, 3, grid=9)(lambda text: None)
    assert p["E"].shape == (9, 9) and p["a"][-1] >= 0.5
    fig = teach_views.landscape_figure(p)
    assert fig.data[0].type == "contour" and fig.data[1].name.startswith("GD (last frame: ")
    assert "mode 1 (λ = " in fig.layout.xaxis.title.text
    assert "mode 3 (λ = " in fig.layout.yaxis.title.text
    center = p["E"][4, 4] - p["e0"]
    assert center == pytest.approx(0.0, abs=1e-9)  # the grid's centre is x0


def test_projection_figure_has_displacement_and_gradient():
    from workbench import teach_views

    shares = [[0, 1, 1, 2], [0, 2, 1, 1]]
    grads = [[0, 0, 1, 3], [0, 1, 1, 2]]
    fig = teach_views.projection_figure([0, 20], shares, 12, grad_shares=grads)
    disp = {t["name"].split(" (")[0]: t for t in fig["data"] if t["stackgroup"] == "bands"}
    grad = {t["name"].split(" (")[0]: t for t in fig["data"] if t["stackgroup"] == "grad"}
    assert disp["slowest"]["y"] == [25.0, 50.0] and grad["fastest"]["y"] == [75.0, 50.0]
    assert disp["slowest"]["name"] == "slowest (12)" and disp["slowest"]["x"] == [0, 20]
    assert all(not t["showlegend"] for t in grad.values())
    # a second chart with other values leaves the first (and the shared template) unchanged
    teach_views.projection_figure([5], [[1, 0, 0, 0]], 12, grad_shares=[[1, 0, 0, 0]])
    assert disp["slowest"]["y"] == [25.0, 50.0]
    empty = teach_views.projection_figure([], [], 12)
    assert all(t["x"] == [] for t in empty["data"])


# ---- the panel's callbacks on a registry with fake runs ------------------------------------
SID = "teach-session"


@pytest.fixture
def registry(tmp_path):
    from workbench import jobs
    from workbench import registry as reg
    from workbench.config import ServerConfig
    from workbench.registry import RunRegistry

    small = jobs.build_system(demo_spec(OPENING, "gd").replace(**{"system.n": 50}).system, 0)
    fake = FakeEngine(auto=True, n_rows=3, delay=0.01, system=small)
    r = RunRegistry(
        ServerConfig(run_dir=str(tmp_path), structure_dirs=()),
        fake.runner,
        bundle_reader=jobs.read_bundle,
    )
    reg.install(r)
    yield r
    r.shutdown()
    reg.install(None)


def _call(fn, *args, trigger=None):
    def run():
        inputs = [{"prop_id": f"{trigger}.value", "value": 1}] if trigger else []
        context_value.set(AttributeDict(triggered_inputs=inputs))
        return fn(*args)

    return copy_context().run(run)


def test_panel_graph_and_landscape_on_runs(registry):
    from workbench.panels import teach

    specs = [demo_spec(OPENING, m).replace(**{"system.n": 50}) for m in ("gd", "gnn")]
    ids_ = registry.submit_group(specs, SID)
    wait_for(lambda: all(registry.snapshot(i, SID).terminal for i in ids_), 10)
    opts = teach.run_options(registry.list_runs(SID))
    assert sorted(o["value"] for o in opts) == sorted(ids_)
    # graph of the GNN run
    task, poll, msg = teach.start_graph(1, ids_[1], SID, None)
    assert poll["more"] is True and "queued" in msg  # its poll chain starts
    wait_for(lambda: registry.snapshot(task["id"], SID).terminal, 60, "the graph task")
    tick = teach.GRAPH_POLL.tick
    out = _call(teach.show_graph, 1, 0, ["on"], 50, None, [], task, SID, trigger=tick)
    fig, _, hist, _, text, reply, last, frame, overlay = out
    assert overlay == {"targets": [], "pairs": []}
    assert (
        reply == {"more": False, "tick": 1}
        and frame == last == len(registry.frames(ids_[1], SID)) - 1 >= 1
    )
    assert f"A ({specs[1].reparam.propagation}; GNN)" in text
    assert "the 50 strongest edges" in fig.layout.title.text
    # the replay slider moves the frame when the graph's run is the replayed one
    from workbench.panels import runs

    replay = {"id": ids_[1]}
    on = ["on"]
    out = _call(teach.show_graph, 1, last, on, 50, 0, on, task, SID, replay, trigger=runs.ID.SLIDER)
    assert out[-2] == 0 and out[0].layout.title.text.startswith("step 0:")
    # with "also over the run's 3D views": the 50 strongest pairs, to its card and the replay
    overlay = out[-1]
    assert [t["key"] for t in overlay["targets"]] == [ids_[1], f"replay-{ids_[1]}"]
    p = registry.snapshot(task["id"], SID).payload
    assert overlay["pairs"] == np.asarray(p["pairs"])[:50].ravel().tolist()
    assert "drawn over the run's 3D views too" in out[4]
    other = {"id": ids_[0]}
    out = _call(teach.show_graph, 1, last, on, 50, 0, on, task, SID, other, trigger=runs.ID.SLIDER)
    assert out[5] == {"more": False, "tick": 1}  # the poll chain's answer, whatever fired
    assert all(o is NU for i, o in enumerate(out) if i != 5)
    # landscape over both runs; a bad mode number is refused, naming the field
    assert "mode j must differ" in teach.start_landscape(1, ids_, 2, 2, SID, None)[2]
    bad = teach.start_landscape(1, ids_, 0, 2, SID, None)[2]
    assert "mode i must be a whole number in [1, 144]" in bad
    task, _, _ = teach.start_landscape(1, ids_, 1, 2, SID, None)
    wait_for(lambda: registry.snapshot(task["id"], SID).terminal, 60, "the landscape task")
    fig, style, text, reply = teach.poll_landscape(1, task, SID)
    assert (
        reply == {"more": False, "tick": 1} and style == {"display": "block"} and len(fig.data) == 3
    )
    assert "41 × 41 energies and 2 path(s)" in text
    assert teach.start_landscape(1, [], 1, 2, SID, None)[2].startswith("Not computed")


def test_panel_conditioning_from_the_form(registry):
    from workbench import forms, ids
    from workbench.panels import teach

    values = forms.default_values()
    values.update({"system.n": "50", "schedule.max_steps": "200"})
    names = list(values)
    args = ([values[n] for n in names], [ids.field(n) for n in names], "loop", "file", None)
    task, poll, _ = teach.start_conditioning(1, *args, SID, None)
    assert poll["more"] is True
    wait_for(lambda: registry.snapshot(task["id"], SID).terminal, 240, "the conditioning task")
    # the first part is drawn at once, and the GNN's replay to its switch starts
    fig, style, text, reply, switch = teach.poll_conditioning(1, task, SID)
    assert reply["more"] and style == {"display": "block"}, text
    assert text.startswith("H in positions, at x0: κ = ") and "CG at its start, x = Ψz" in text
    assert text.endswith("Now the GNN at its switch: queued.")
    assert len(fig.layout.yaxis.ticktext) == 3
    assert switch["shown"] in text and switch["id"] != task["id"]
    wait_for(lambda: registry.snapshot(switch["id"], SID).terminal, 240, "the switch part")
    fig, style, text, reply, nxt = teach.poll_conditioning(2, switch, SID)
    assert reply == {"more": False, "tick": 2} and nxt is NU, (
        text
    )  # 200 steps: the GNN's stage 1 does not end
    assert text.endswith("did not reach its stage switch within its 200 steps: no switch row.")
    assert len(fig.layout.yaxis.ticktext) == 3
    bad = dict(values, **{"system.n": "abc"})
    msg = teach.start_conditioning(1, [bad[n] for n in names], *args[1:], SID, None)[2]
    assert msg.startswith("Not computed: system.n")
    json.dumps(fig.to_plotly_json(), default=str)  # the figure serialises
