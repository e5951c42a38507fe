"""Teaching views: the eigenbasis projection, loop verdicts, conditioning, and the lessons'
numbers against our benchmark docs."""

import re
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import plotly.graph_objects as go
import pytest
from dash import no_update as NU

from engine import build_system, make_energy
from engine.hessian import hessian
from engine.modes import rigid_body_basis
from engine.presets import OPENING, demo_spec
from engine.run import default_n_modes
from engine.teaching import (
    FAST,
    MIDDLE,
    RIGID,
    SLOW,
    condition_number,
    effective_spectrum,
    eig_deflated,
    full_modes,
    loop_verdict,
    mode_bands,
    project,
    project_frames,
    projection_basis,
)


@pytest.fixture(scope="module")
def small_loop():
    spec = demo_spec(OPENING, "gd").replace(**{"system.n": 50})
    system = build_system(spec.system, spec.seed)
    model = make_energy(system, spec.energy)
    return system, model, full_modes(model, system.x0)


# ---- full modes and projection -----------------------------------------------------------------
def test_full_modes_are_an_orthonormal_eigenbasis_with_rigid_span_apart(small_loop):
    system, model, m = small_loop
    n_dof = 3 * system.n_atoms
    assert m.vectors.shape == (n_dof, n_dof)
    np.testing.assert_allclose(m.vectors.T @ m.vectors, np.eye(n_dof), atol=1e-9)
    t, r = rigid_body_basis(system.x0)
    assert m.rigid.sum() == t.shape[1] + r.shape[1] == 6
    np.testing.assert_allclose(m.vectors[:, :6], np.concatenate([t, r], axis=1))
    # the free columns are eigenvectors of H restricted to the complement, |value| ascending
    h = hessian(model, system.x0)
    p = np.eye(n_dof) - m.vectors[:, :6] @ m.vectors[:, :6].T
    free = m.vectors[:, 6:]
    np.testing.assert_allclose(p @ h @ p @ free, free * m.values[6:], atol=1e-8 * np.abs(h).max())
    assert np.all(np.diff(np.abs(m.values[6:])) >= -1e-12)


def test_eig_deflated_matches_dense_eigh_on_the_complement():
    rng = np.random.default_rng(0)
    a = rng.normal(size=(12, 12))
    h = a + a.T
    basis, _ = np.linalg.qr(rng.normal(size=(12, 2)))
    values, vectors, rigid = eig_deflated(h, basis)
    q, _ = np.linalg.qr(np.concatenate([basis, rng.normal(size=(12, 10))], axis=1))
    comp = q[:, 2:]  # an orthonormal basis of the complement
    want = np.linalg.eigvalsh(comp.T @ h @ comp)
    np.testing.assert_allclose(np.sort(values[2:]), np.sort(want), atol=1e-10)
    assert rigid.tolist() == [True, True] + [False] * 10


def test_mode_bands():
    rigid = np.array([True] * 3 + [False] * 10)
    bands = mode_bands(rigid, 2, 3)
    assert bands.tolist() == [RIGID] * 3 + [SLOW] * 2 + [MIDDLE] * 5 + [FAST] * 3
    assert mode_bands(rigid, 4).tolist().count(FAST) == 4
    assert mode_bands(np.zeros(3, bool), 5).tolist() == [SLOW] * 3  # slow wins on overlap
    with pytest.raises(ValueError, match="n_slow"):
        mode_bands(rigid, -1)


def test_a_displacement_along_one_eigenvector_lands_in_its_band(small_loop):
    system, _, m = small_loop
    bands = mode_bands(m.rigid, 10)
    for col in (0, 6, 30, m.vectors.shape[1] - 1):
        dx = 0.3 * m.vectors[:, col].reshape(-1, 3)
        shares = project(dx, m.vectors, bands)
        want = np.zeros(4)
        want[bands[col]] = 0.09
        np.testing.assert_allclose(shares, want, atol=1e-12)


def test_band_totals_equal_the_squared_norm(small_loop, key):
    system, _, m = small_loop
    bands = mode_bands(m.rigid, 10)
    rng = np.random.default_rng(1)
    frames = rng.normal(size=(5, system.n_atoms, 3))
    shares = project(frames, m.vectors, bands)
    assert shares.shape == (5, 4)
    np.testing.assert_allclose(shares.sum(axis=1), (frames**2).sum(axis=(1, 2)), rtol=1e-10)
    one = project(frames[2].ravel(), m.vectors, bands)
    np.testing.assert_allclose(one, shares[2])


def test_projection_basis_bands_the_runs_slow_modes_and_frames_split_both_charts(small_loop):
    """A card's charts: k = n/4 node modes are 3k Hessian modes (block-Laplacian), and each
    frame gives the bands of x - x0 and of the gradient at x, each summing to its norm."""
    system, model, m = small_loop
    spec = demo_spec(OPENING, "gd").replace(**{"system.n": 50})
    basis = projection_basis(system, spec)
    assert spec.modes.method == "block-laplacian"
    assert int((basis.bands == SLOW).sum()) == 3 * default_n_modes(spec, 50) == 39
    np.testing.assert_allclose(basis.modes.values, m.values, rtol=1e-9, atol=1e-12)
    x0 = np.asarray(system.x0, np.float64)
    xs = x0 + 0.01 * np.random.default_rng(2).normal(size=(3, *x0.shape))
    moved, grads = project_frames(basis, x0, xs)
    assert moved.shape == grads.shape == (3, 4)
    np.testing.assert_allclose(moved.sum(axis=1), ((xs - x0) ** 2).sum(axis=(1, 2)), rtol=1e-9)
    g = np.stack([np.asarray(jax.grad(model.energy_fn)(jnp.asarray(x))) for x in xs])
    np.testing.assert_allclose(grads.sum(axis=1), (g**2).sum(axis=(1, 2)), rtol=1e-6)
    np.testing.assert_allclose(grads, project(g, basis.modes.vectors, basis.bands), rtol=1e-6)


# ---- loop verdict ----------------------------------------------------------------------------
@pytest.mark.parametrize(
    "contacts, intact, kind, text",
    [
        (1.0, 1.0, "closed", "loop closed: contacts 100 %, bonds intact 100 %"),
        (0.95, 0.99, "closed", "loop closed: contacts 95 %, bonds intact 99 %"),
        (0.58, 1.0, "partly", "partly closed: contacts 58 %, bonds intact 100 %"),
        (0.99, 0.985, "partly", "partly closed: contacts 99 %, bonds intact 98 %"),
        (0.02, 1.0, "open", "loop open: contacts 2 %, bonds intact 100 %"),
        (1.0, 0.90, "torn", "torn apart: contacts 100 %, bonds intact 90 %"),
        (None, 1.0, "unknown", "no verdict yet: no structure logged"),
        (float("nan"), 1.0, "unknown", "no verdict yet: no structure logged"),
    ],
)
def test_loop_verdict(contacts, intact, kind, text):
    v = loop_verdict(contacts, intact)
    assert (v.kind, v.text) == (kind, text)


# ---- conditioning --------------------------------------------------------------------------
def test_effective_spectrum_against_dense(small_loop):
    system, model, m = small_loop
    h = hessian(model, system.x0)
    j = m.vectors[:, 6:16]  # a linear map onto 10 modes: J^T H J is diagonal
    np.testing.assert_allclose(
        np.sort(effective_spectrum(h, j)), np.sort(m.values[6:16]), atol=1e-10
    )
    rng = np.random.default_rng(2)
    j = rng.normal(size=(h.shape[0], 7))
    np.testing.assert_allclose(
        effective_spectrum(h, j), np.linalg.eigvalsh(j.T @ h @ j), rtol=1e-9, atol=1e-12
    )


def test_condition_number():
    assert condition_number([0.0, 1e-20, -2.0, 10.0]) == pytest.approx(5.0)
    assert condition_number([]) == float("inf")
    assert condition_number([0.0, 0.0]) == float("inf")


# ---- the card views (workbench/teach_views.py) against a registry stand-in ---------------------
class _Reg:
    """What teach_views reads of the registry: export_data, frames, snapshot, curve_final."""

    def __init__(self, spec, system, frames, finals):
        self.spec, self.system, self._frames, self.finals = spec, system, frames, finals
        self.terminal = False  # the run still going: later polls will come

    def export_data(self, run_id, reader):
        return {"system": self.system}

    def frames(self, run_id, reader):
        return list(self._frames)

    def snapshot(self, run_id, reader, since_rows=0, since_frame=0):
        from types import SimpleNamespace

        return SimpleNamespace(spec=self.spec.to_dict(), terminal=self.terminal)

    def curve_final(self, run_id, reader, metric):
        return self.finals.get(metric)


def test_card_views_project_kept_frames_and_give_the_verdict(small_loop):
    from concurrent.futures import wait

    from workbench import teach_views

    system, _, m = small_loop
    spec = demo_spec(OPENING, "gd").replace(**{"system.n": 50})
    along = m.vectors[:, 10].reshape(-1, 3)  # a slow mode (k = 13 node modes -> 39 slow)
    frames = [(0, system.x0), (20, system.x0 + 0.1 * along), (40, system.x0 + 0.2 * along)]
    finals = {"loop_contact_frac": 1.0, "bonds_intact_frac": 1.0}
    r = _Reg(spec, system, frames, finals)
    live = {"runs": [{"id": "run-a"}], "rmsd": False}
    teach_views.CACHE.clear()  # modes of this system computed by another test would be reused
    figs, badges = teach_views.card_views(r, live, "sid-test", ["run-a"])
    assert "computing" in go.Figure(figs[0]).layout.annotations[0].text
    assert badges[0].children == "loop closed: contacts 100 %, bonds intact 100 %"
    wait([teach_views.CACHE.run_state("run-a", "sid-test")["future"]])
    figs, _ = teach_views.card_views(r, live, "sid-test", ["run-a"])
    traces = {t.name.split(" (")[0]: t for t in go.Figure(figs[0]).data if t.stackgroup == "bands"}
    grads = {t.name.split(" (")[0]: t for t in go.Figure(figs[0]).data if t.stackgroup == "grad"}
    assert list(traces["slowest"].x) == [0, 20, 40] == list(grads["slowest"].x)
    assert traces["slowest"].y[-1] == pytest.approx(100.0)
    assert traces["fastest"].y[-1] == pytest.approx(0.0, abs=1e-9)
    assert traces["slowest"].name == "slowest (39)"  # k = ceil(50 / 4) node modes = 39
    # the gradient's shares: those of the gradient at each frame, projected directly
    model = make_energy(system, spec.energy)
    g = np.asarray(jax.grad(model.energy_fn)(jnp.asarray(frames[2][1])), np.float64)
    want = project(g, m.vectors, mode_bands(m.rigid, 39))
    assert grads["fastest"].y[-1] == pytest.approx(100 * want[FAST] / want.sum(), rel=1e-6)
    assert grads["slowest"].y[-1] == pytest.approx(100 * want[SLOW] / want.sum(), rel=1e-6)
    # nothing new: unchanged
    assert teach_views.card_views(r, live, "sid-test", ["run-a"])[0] == [None]
    # a run that ended before its modes were ready (no later poll): its last poll waits
    teach_views.CACHE.clear()
    r.terminal = True
    figs, _ = teach_views.card_views(r, live, "sid-test", ["run-a"])
    assert not go.Figure(figs[0]).layout.annotations and len(go.Figure(figs[0]).data[0].x) == 3
    # a protein group: no verdict; too large a system: the chart says so
    big = spec.replace(**{"system.n": teach_views.MAX_ATOMS + 1})
    r2 = _Reg(big, system, frames, finals)
    figs, badges = teach_views.card_views(r2, {"runs": [{"id": "b"}], "rmsd": True}, "s", ["b"])
    assert badges == [None] and "off above" in go.Figure(figs[0]).layout.annotations[0].text


# ---- lessons -------------------------------------------------------------------------------
DOCS = Path(__file__).resolve().parents[1]
_NUM = re.compile(r"\d+(?:,\d{3})*(?:\.\d+)?")  # 4,660 and 0.54; a list's commas are not part of it


def _quoted_in(token: str, doc: str) -> bool:
    """The number ``token`` appears in ``doc`` as a whole number (or, for a percentage up to
    100, as the fraction the tables print: 54 -> 0.54)."""
    found = re.search(rf"(?<![\d.]){re.escape(token)}(?![\d])", doc)
    if found or "." in token or "," in token:
        return bool(found)
    v = int(token)
    return v <= 100 and re.search(rf"(?<![\d.]){v / 100:.2f}(?![\d])", doc) is not None


def test_every_number_a_lesson_quotes_is_in_the_document_it_cites():
    from workbench.panels.lessons import LESSONS

    assert 3 <= len(LESSONS) <= 5
    for lesson in LESSONS.values():
        assert 2 <= len(lesson.steps) <= 4
        for step in lesson.steps:
            doc = (DOCS / step.source).read_text().replace("−", "-")
            text = step.text.replace("−", "-")
            missing = [t for t in _NUM.findall(text) if not _quoted_in(t, doc)]
            assert not missing, (lesson.title, missing)


def test_lesson_steps_fill_the_form_as_the_presets_do():
    from workbench import forms
    from workbench.panels import lessons, method

    names = [f.name for f in forms.FIELDS]
    for lesson in lessons.LESSONS.values():
        for step in lesson.steps:
            assert step.action is None or step.action in lessons.ACTIONS
            values, methods, desc, tab, source, record = lessons.fill(step, names)
            if step.form is None:
                assert methods is NU and tab is NU and record is NU
                continue
            assert record == method.fill_record(values, names, tab)  # kept by a tab switch
            _, specs = lessons.form_of(step.form)
            # exactly what the method panel's preset fill sets (tab and protein source too)
            want = method.preset_form(*lessons.form_of(step.form), names)
            assert values == want[0] and methods == want[1] and (tab, source) == want[3:]
            assert methods == [forms.method_of(s) for s in specs]
            assert desc.startswith("Set by the lesson: ")
            # a rehearsal caps n and the steps, and lets k default to n/4
            small = dict(zip(names, lessons.fill(step, names, rehearse=True)[0], strict=True))
            assert int(small["schedule.max_steps"]) <= lessons.REHEARSAL_STEPS
            if tab == "loop":
                assert int(small["system.n"]) <= lessons.REHEARSAL_N
                assert small["cg.n_modes"] == small["gnn.n_modes"] == ""
                v = forms.parse_run_form(small, tab, forms.chosen_methods(methods))
                assert [s.system.n for s in v] == [lessons.REHEARSAL_N] * len(methods)
    # every step that says the lesson pressed a button names one the step presses
    for lesson in lessons.LESSONS.values():
        for step in lesson.steps:
            assert ("the lesson pressed" in step.text.lower()) == (step.action is not None)
            clicks = lessons.presses(step, [None, 3, 5])
            now = zip(lessons.ACTIONS, [None, 3, 5], strict=True)
            want = [(c or 0) + 1 if a == step.action else NU for a, c in now]
            assert clicks == want
    assert any(s.action == "conditioning" for s in lessons.LESSONS["spectrum"].steps)
    # moving through a lesson
    assert lessons.go_to(None, "gnn", 0) == {"lesson": "gnn", "step": 0}
    assert lessons.go_to({"lesson": "gnn", "step": 0}, "gnn", -1)["step"] == 0
    last = len(lessons.LESSONS["gnn"].steps) - 1
    assert lessons.go_to({"lesson": "gnn", "step": last}, "gnn", 1)["step"] == last
    assert lessons.go_to({"lesson": "gnn", "step": 1}, "cg", 1) == {"lesson": "cg", "step": 0}
    assert lessons.go_to({"lesson": "gnn", "step": 1}, None, 1) is None


def test_projection_charts_kept_are_bounded():
    from workbench import teach_views

    cache = teach_views._Modes()
    first = cache.run_state("run-0", "sid")
    first["shares"][0] = [1.0, 0.0, 0.0, 0.0]
    assert cache.run_state("run-0", "sid") is first  # the same card keeps its chart
    for i in range(1, teach_views.MAX_RUN_CHARTS + 5):
        cache.run_state(f"run-{i}", "sid")
    assert len(cache._runs) == teach_views.MAX_RUN_CHARTS
    assert cache.run_state("run-0", "sid")["shares"] == {}  # the oldest was dropped


def test_the_trap_lesson_quotes_the_step_and_radius_at_which_its_gnn_run_diverges():
    import engine
    from engine import presets
    from workbench.panels import lessons

    step = lessons.LESSONS["trap"].steps[0]
    (gnn,) = [s for s in presets.PRESETS[step.form][1] if s.reparam.kind == "gnn"]
    result = engine.run(gnn)
    assert result.status == "diverged"
    at, rg = re.search(r"radius of gyration ([\d.]+) .* at step (\d+)", result.message).group(2, 1)
    assert "'diverged' around step 5,000 with a radius of gyration near 31 " in step.text
    # "around": the step is chaotic in the last bit of rounding (4,660 to 5,160 seen across
    # CPUs), so within a fifth of 5,000; the torn-apart chain itself is not in doubt
    assert 4000 <= int(at) <= 6000 and abs(float(rg) - 31) < 1.5
