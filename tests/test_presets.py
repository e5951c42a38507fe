"""Presets: the opening demo is the measured one, every caption quotes our committed results,
the protein tab's settings and the warnings about settings known to blow up."""

import json
from pathlib import Path

import pytest

from engine import RunSpec
from engine.methods import METHODS
from engine.presets import (
    DEMO_CANDIDATES,
    OPENING,
    OPENING_METHODS,
    OPENING_PRESET,
    PRESETS,
    demo_spec,
    paper_spec,
    protein_spec,
    risk_warnings,
)
from workbench import forms, server
from workbench.panels import method, system

RESULTS = Path(__file__).resolve().parents[1] / "bench" / "results"


def _json(name: str) -> dict:
    return json.loads((RESULTS / name).read_text())


def _e(mean: float, sd: float) -> str:
    return f"{mean:+.5f} ± {sd:.5f}"


def _pct(frac: float) -> str:
    return f"{round(100 * frac)} %"


# ---- the opening demo --------------------------------------------------------------------------
def test_the_page_opens_with_the_measured_demo():
    assert server.START_PRESET == OPENING_PRESET
    data = _json("demo.json")
    assert data["opening"] == OPENING and data["candidates"][OPENING] == DEMO_CANDIDATES[OPENING]
    desc, specs = PRESETS[OPENING_PRESET]
    assert specs == [demo_spec(OPENING, m) for m in OPENING_METHODS]
    c = DEMO_CANDIDATES[OPENING]
    for s in specs:  # what was measured: a fixed budget for every method, k left to n/4
        assert (s.system.kind, s.system.n, s.schedule.max_steps) == (
            c["system"],
            c["n"],
            c["steps"],
        )
        assert s.schedule.stopping == "none" and s.reparam.n_modes is None


def test_opening_caption_quotes_demo_json_and_the_claim_holds():
    desc, _ = PRESETS[OPENING_PRESET]
    rows = {r["method"]: r for r in _json("demo.json")["table"] if r["candidate"] == OPENING}
    gd, gnn = rows["gd"], rows["gnn"]
    assert gd["runs"] >= 3 and gnn["runs"] >= 3
    for r in (gd, gnn):
        assert _e(r["energy_mean"], r["energy_sd"]) in desc
        assert _pct(r["loop_contact_mean"]) in desc
        assert f"{r['wall_time_mean']:.0f} s" in desc
        assert f"{r['rg_mean']:.1f}" in desc
    improved_gd = {
        r["n"]: r["energy_mean"]
        for r in _json("fig3.json")["table"]
        if (r["protocol"], r["system"], r["method"]) == ("improved", "bond-lj-loop", "gd")
    }
    for n, e in improved_gd.items():
        assert f"{e:+.5f} at n={n}" in desc
    assert f"{DEMO_CANDIDATES[OPENING]['steps']} steps" in desc and "docs/benchmarks.md" in desc
    side = _json("demo.json")["side_by_side"][OPENING][-1]
    assert set(side["methods"]) == set(OPENING_METHODS)
    assert f"side by side both were done after {side['process_s']:.0f} s" in desc
    # the claim: the GNN ends clearly lower (no overlap of mean ± sd), its loop closed, every
    # chain bond intact in both
    assert gnn["energy_mean"] + gnn["energy_sd"] < gd["energy_mean"] - gd["energy_sd"]
    assert gnn["energy_worst"] < min(r["final_energy"] for r in _runs(OPENING, "gd"))
    assert gnn["loop_contact_min"] >= 0.9
    assert gd["bonds_intact_min"] == gnn["bonds_intact_min"] == 1.0


def _runs(candidate, method_):
    return [r for r in _json("demo.json")["runs"] if (r["candidate"], r["method"]) == (
        candidate, method_)]  # fmt: skip


def test_the_opening_form_parses_back_to_the_measured_specs():
    _, specs = PRESETS[OPENING_PRESET]
    values = forms.start_values(specs)  # k, chunk and patience blank: automatic
    back = forms.parse_run_form(values, "loop", list(OPENING_METHODS))
    assert back == specs


# ---- the paper-figure presets: captions quote docs/benchmarks.md's Figure 3 table ------------
FIGURES = {
    "fig2-lj-n400": ("lj-loop", 400),
    "fig3-bondlj-n400": ("bond-lj-loop", 400),
    "fig3-lj-n1000": ("lj-loop", 1000),
    "fig3-bondlj-n1000": ("bond-lj-loop", 1000),
}


@pytest.mark.parametrize("name", sorted(FIGURES))
def test_figure_captions_quote_the_figure3_results(name):
    system_kind, n = FIGURES[name]
    desc, specs = PRESETS[name]
    assert specs == [paper_spec(system_kind, n, m) for m in ("gd", "cg", "gnn")]
    assert "docs/benchmarks.md, Figure 3 table" in desc
    rows = {
        (r["protocol"], r["method"]): r
        for r in _json("fig3.json")["table"]
        if (r["system"], r["n"]) == (system_kind, n)
    }
    for m in ("gd", "cg", "gnn"):
        r = rows[("paper", m)]
        assert _e(r["energy_mean"], r["energy_sd"]) in desc, m
        if system_kind == "lj-loop":
            assert f"{m.upper()} {_pct(r['loop_contact_mean'])}" in desc, m
        else:
            assert round(100 * r["loop_contact_mean"]) >= 99 and "99-100 % of contacts" in desc
            assert f"{r['time_mean']:.1f} s" in desc
    assert "only the GNN closes the loop;" not in desc.replace("says only the GNN", "")
    if name == "fig2-lj-n400":
        for m in ("gd", "gnn"):
            assert f"{rows[('improved', m)]['energy_mean']:+.5f}" in desc


def test_trp_cage_caption_quotes_the_protein_benchmark_and_builds_offline(monkeypatch, tmp_path):
    desc, specs = PRESETS["trp-cage"]
    data = _json("protein.json")
    rows = {r["method"]: r for r in data["table"] if r["case"] == "2jof-extended"}
    ratios = {r["method"]: r for r in data["paper_metrics"] if r["case"] == "2jof-extended"}
    assert f"GD {rows['gd']['energy_mean']:.1f}" in desc
    assert f"GNN {rows['gnn']['energy_mean']:.1f} ± {rows['gnn']['energy_sd']:.1f}" in desc
    assert f"L-BFGS {rows['openmm']['energy_mean']:.1f}" in desc
    assert f"E_GD / E_GNN = {ratios['gnn']['E_GD_over_E']:.4f}" in desc
    assert f"t_GD / t_GNN = {ratios['gnn']['t_GD_over_t']:.2f}" in desc
    assert f"{rows['gd']['initial_rmsd_ca']:.2f} nm" in desc
    assert "docs/benchmarks-protein.md" in desc
    assert {s.system.pdb for s in specs} == {"2JOF"}
    # offline: the PDB id resolves to ../shared/data/pdb/2JOF_native.pdb
    from engine.protein.build import build_protein_system
    from tests.conftest import shared_pdb

    shared_pdb("2JOF_native.pdb")
    monkeypatch.setenv("SLOWMODE_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("SLOWMODE_PDB_URL", "http://127.0.0.1:9")  # refused at once
    s = build_protein_system(specs[0].system, 0)
    assert s.meta["n_residues"] == 20 and s.meta["sequence"] == "DAYAQWLKDGGPSSGRPPPS"
    assert any("2JOF_native.pdb on this machine" in note for note in s.meta["notes"])
    assert not (tmp_path / "cache" / "pdb").exists()  # nothing downloaded


# ---- the protein tab ---------------------------------------------------------------------------
def _names():
    return [f.name for f in forms.FIELDS]


def test_protein_tab_loads_the_benchmark_settings_and_loop_tab_restores():
    names = _names()
    loop = forms.start_values(PRESETS[OPENING_PRESET][1])
    current = [loop[n] for n in names]
    values, saved, note = forms.tab_switch("protein", names, current, None)
    pairs = zip(names, current, values, strict=True)
    form = {n: (c if v is None else v) for n, c, v in pairs}
    protein = {"pdb": "2JOF", "sequence": None, "start": "extended"}
    gd, cg, gnn = forms.parse_run_form(form, "protein", ["gd", "cg", "gnn"], protein)
    for got in (gd, cg, gnn):
        want = protein_spec(got.method_label, start="extended")
        assert got.optim == want.optim, got.method_label
        assert got.modes == want.modes and got.reparam.anchor == want.reparam.anchor
        assert got.reparam.n_modes == want.reparam.n_modes
        assert got.schedule.max_steps == want.schedule.max_steps
        assert got.schedule.min_delta == want.schedule.min_delta
        assert risk_warnings(got) == []
    assert "Protein settings loaded" in note and "docs/benchmarks-protein.md" in note
    assert f"lr {protein_spec('gd').optim.learning_rate:g}" in note and "x0" in note
    assert form["system.n"] == loop["system.n"]  # the loop's own fields are left alone
    # back to the loop: its settings return; to the protein again: the protein edits return
    form["gd.learning_rate"] = "0.0002"
    back, saved2, note2 = forms.tab_switch("loop", names, [form[n] for n in names], saved)
    restored = {n: (form[n] if v is None else v) for n, v in zip(names, back, strict=True)}
    assert restored["gd.learning_rate"] == loop["gd.learning_rate"] and note2
    again, _, _ = forms.tab_switch("protein", names, [restored[n] for n in names], saved2)
    assert dict(zip(names, again, strict=True))["gd.learning_rate"] == "0.0002"


def test_a_fill_switching_the_tab_is_not_overwritten():
    names = _names()
    values, *_, tab, _ = method.preset_form(*PRESETS["trp-cage"], names)
    filled = method.fill_record(values, names, tab)
    current = [None if v is method.NU else v for v in values]
    assert method.form_just_filled(filled, "protein", names, current)
    assert not method.form_just_filled(filled, "loop", names, current)
    assert not method.form_just_filled(None, "protein", names, current)
    assert not method.form_just_filled({"tab": "protein", "values": {}}, "protein", names, current)
    current[names.index("gd.learning_rate")] = "0.5"  # the user changed it since
    assert not method.form_just_filled(filled, "protein", names, current)


def test_a_lesson_step_leaving_the_protein_tab_keeps_its_loop_form():
    """A lesson step that fills a loop form while the protein tab is open: the tab switch
    it causes neither restores the saved loop settings over it nor saves it as the
    protein's (before, the protein lesson's 3000 steps leaked into the next lesson's run)."""
    from workbench.panels import lessons

    names = _names()
    protein = lessons.fill(lessons.LESSONS["protein"].steps[0], names)
    on_protein = [None if v is method.NU else v for v in protein[0]]
    saved = {"loop": {"schedule.max_steps": "20000"}}
    _, saved, _ = forms.tab_switch("protein", names, on_protein, saved)
    step = lessons.LESSONS["spectrum"].steps[0]
    values, _, _, tab, _, record = lessons.fill(step, names)
    assert tab == "loop" and record["tab"] == "loop"
    current = [c if v is method.NU else v for v, c in zip(values, on_protein, strict=True)]
    out = method.switch_tab(tab, record, saved, [{"name": n} for n in names], current)
    assert out[0] == [method.NU] * len(names) and out[1] is method.NU
    form = dict(zip(names, current, strict=True))
    assert form["schedule.max_steps"] == str(demo_spec(OPENING, "gd").schedule.max_steps)


# ---- warnings about settings known to blow up ----------------------------------------------------
def _loop_form_on_protein(methods):
    values = forms.start_values(PRESETS[OPENING_PRESET][1])
    protein = {"pdb": "2JOF", "sequence": None, "start": "native"}
    return forms.parse_run_form(values, "protein", methods, protein)


def test_risk_warnings_fire_for_the_measured_blow_ups():
    measured = {r["case"]: r for r in _json("demo_protein_risks.json")["runs"]}
    native = measured["gd benchmark (lr 4e-4, clip 0.01)"]["start_energy"]
    exploded = [
        c for c, r in measured.items()
        if r["status"] == "diverged" or not r["max_energy"] < native + 1000
    ]  # fmt: skip
    assert len(exploded) == 5  # lr 1e-2, lr 0.02, CG and GNN unanchored, GNN stage-1 1.6e-3
    assert exploded, "the measurement shows settings that blow up"
    from bench.bench_demo import risk_cases

    cases = risk_cases()
    for c in exploded:
        assert risk_warnings(cases[c]), c
    for c in measured:
        if "benchmark" in c:
            assert not risk_warnings(cases[c]), c
    # the loop's form on the Protein tab (what the issue ran) is warned about, per method
    gd, cg, gnn = _loop_form_on_protein(["gd", "cg", "gnn"])
    assert any("learning rate" in w for w in risk_warnings(gd))
    assert any("start at x0" in w for w in risk_warnings(cg))
    assert any("learning rate" in w for w in risk_warnings(cg))
    assert any("start at x0" in w for w in risk_warnings(gnn))


def test_no_warning_for_the_defaults_and_the_presets():
    for _, specs in PRESETS.values():
        for s in specs:
            assert risk_warnings(s) == [], s.method_label
    for m in ("gd", "cg", "gnn", "openmm-min"):
        assert risk_warnings(protein_spec(m)) == []
    assert risk_warnings(RunSpec()) == []
    residue = protein_spec("gd").replace(**{"system.model": "residue", "optim.learning_rate": 1.0})
    assert risk_warnings(residue) == []  # thresholds are for the all-atom energy only
    assert METHODS["openmm-min"].runner != "engine"


def test_run_risks_next_to_the_run_button():
    values = forms.start_values(PRESETS[OPENING_PRESET][1])

    def protein():
        return {"pdb": "2JOF", "sequence": None, "start": "native"}

    risks = method.run_risks(values, "protein", ["gd", "gnn"], protein)
    assert len(risks) == len(set(risks)) >= 2
    assert method.run_risks(values, "loop", ["gd", "gnn"], protein) == []
    values = {**values, **forms.protein_values()}
    assert method.run_risks(values, "protein", ["gd", "cg", "gnn"], protein) == []
    assert method.run_risks({**values, "gd.learning_rate": "x"}, "protein", ["gd"], protein) == []


def test_sequence_start_says_it_builds_an_ideal_helix():
    v = {"protein.sequence": "NLYIQ", "protein.start": "native", "system.model": "amber-obc2"}
    assert "ideal α-helix" in system.system_summary(v, "protein", "sequence")
    assert "α-helix" not in system.system_summary(v, "protein", "pdbid")
    assert "ideal α-helix" in system.SEQUENCE_NOTE
