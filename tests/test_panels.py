"""The panels' pure helpers called directly with plain values (no registry, no Dash context),
and the id contract: every panel's ids are unique, and every id the JavaScript uses is
defined in Python and reaches the page as ``window.WB_IDS``."""

import json
import re
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from dash import no_update

from engine import RunSpec, SpecError, SystemConfig
from engine.analysis import Reach
from engine.methods import METHODS
from engine.presets import PRESETS
from workbench import forms, ids, jobs, layout
from workbench.panels import PageContext, live, method, runs, spectrum, system

JS = Path(__file__).resolve().parents[1] / "assets" / "workbench.js"


# ---- ids -------------------------------------------------------------------------------------
def test_every_id_the_javascript_uses_is_defined_in_python():
    source = JS.read_text()
    used = set(re.findall(r"\bID\.(\w+)\.(\w+)", source))
    assert used, "workbench.js reads its ids from window.WB_IDS (const ID = window.WB_IDS)"
    table = layout.js_ids()
    missing = [f"{panel}.{name}" for panel, name in used if name not in table.get(panel, {})]
    assert not missing
    assert "const ID = window.WB_IDS;" in source
    # no id string of its own: any "wb-..." literal would be an id (or a class) kept apart
    assert re.findall(r"""["']wb-[\w-]*["']""", source) == []


def test_ids_are_unique_across_panels_and_keep_their_dom_names():
    table = layout.js_ids()
    values = [v for t in table.values() for v in t.values()]
    assert len(values) == len(set(values))
    assert all(v.startswith("wb-") for v in values)
    assert table["page"]["SESSION"] == "wb-session" and table["live"]["POLL"] == "wb-poll"
    assert live.ID.viewer_dom("abc") == table["live"]["VIEW_PREFIX"] + "abc" == "wb-view-abc"
    assert set(table) == {"page", *layout.PANELS}


def test_index_string_sets_wb_ids_before_the_scripts():
    base = "<html><body>{%app_entry%}<footer>{%config%}{%scripts%}{%renderer%}</footer></html>"
    page = layout.index_string(base, {"page": {"SESSION": "wb-session"}, "x": {"A": "</script>"}})
    script, rest = page.split("{%scripts%}")
    assert rest == "{%renderer%}</footer></html>"
    data = re.search(r"window\.WB_IDS = (.*);</script>", script).group(1)
    assert json.loads(data.replace("<\\/", "</"))["page"]["SESSION"] == "wb-session"
    assert '</script>"' not in data  # a closing tag inside a value cannot end the script
    with pytest.raises(ValueError, match="scripts"):
        layout.index_string("<html></html>", {})


def test_page_is_composed_of_the_five_panels():
    page = layout.build(PageContext(presets=PRESETS, start_preset="fig2-lj-n400"))
    text = str(page)
    for pid in (system.ID.TABS, spectrum.ID.GRAPH, method.ID.RUN_BTN, live.ID.CARDS, runs.ID.BOX):
        assert f"'{pid}'" in text
    assert "Opened with the settings of fig2-lj-n400" in text
    # the tab-switch note, the warnings next to Run, the sequence box's helix note
    for pid in (method.ID.TAB_NOTE, method.ID.TAB_SAVED, method.ID.RISKS, system.ID.SEQUENCE_NOTE):
        assert f"'{pid}'" in text
    assert "ideal α-helix" in text


# ---- system --------------------------------------------------------------------------------
def test_form_values_and_system_summary():
    v = system.form_values(["60", "lj-loop"], [ids.field("system.n"), ids.field("system.kind")])
    assert v == {"system.n": "60", "system.kind": "lj-loop"}
    assert system.form_values(None, None) == {}
    assert system.system_summary(v, "loop", None).startswith("pure LJ loop, n = 60 beads")
    protein = {"protein.sequence": "NLYIQ", "protein.start": "helix", "system.model": "ca"}
    assert system.system_summary(protein, "protein", "sequence") == (
        "Protein: NLYIQ, start helix, model ca. Built from the sequence as an ideal α-helix "
        "(no experimental structure)."
    )
    assert system.system_summary({}, "protein", "pdbid").startswith("Protein: —")


def test_system_summary_never_echoes_a_value_the_run_would_refuse():
    for bad in ("5000000", "abc", "-3"):
        line = system.system_summary({"system.n": bad, "system.kind": "lj-loop"}, "loop", None)
        assert "n = " not in line and "must be an integer in [50," in line, line


# ---- method --------------------------------------------------------------------------------
def test_form_errors_reads_the_protein_only_on_its_tab():
    values = {**forms.default_values(), "system.n": "ten"}

    def bad_protein():
        raise SpecError("protein.pdb_id", "must be 4 characters, got 'x'")

    errors = method.form_errors(values, "loop", ["gd"], bad_protein)
    assert errors == {"system.n": "must be an integer in [50, 100000], got 'ten'"}
    errors = method.form_errors(forms.default_values(), "protein", [], bad_protein)
    assert errors["protein.pdb_id"] == "must be 4 characters, got 'x'"
    assert errors["methods"] == "choose at least one method"


def test_k_values_and_preset_form():
    names = ["system.n", "cg.n_modes", "gnn.n_modes"]
    assert method.k_values(7, names) == [no_update, "7", "7"]
    desc, specs = PRESETS["fig2-lj-n400"]
    values, methods, shown, tab, source = method.preset_form(desc, specs, names + ["nope"])
    assert values == ["400", "100", "80", no_update] and methods == ["gd", "cg", "gnn"]
    assert shown == desc and tab == "loop" and source is no_update
    desc, specs = PRESETS["trp-cage"]
    *_, tab, source = method.preset_form(desc, specs, names)
    assert tab == "protein" and source in {v for v, _ in forms.PROTEIN_SOURCES}


def test_method_options_offer_openmm_for_proteins_only():
    def disabled(tab):
        return {o["value"] for o in method.method_options(tab) if o["disabled"]}

    assert disabled("loop") == {"openmm-min", "openmm-md"} and disabled("protein") == set()
    assert [o["value"] for o in method.method_options("loop")] == list(forms.FORM_METHODS)


# ---- spectrum ------------------------------------------------------------------------------
@pytest.fixture
def spectrum_payload():
    n = 6
    x = np.stack([np.arange(n, dtype=float), np.zeros(n), np.zeros(n)], axis=1)
    return {
        "values": np.array([0.0, 0.5, 1.0]),
        "rigid": np.array([True, False, False]),
        "vectors": np.eye(n, 3),
        "space": "node",
        "method": "fake",
        "seconds": 0.25,
        "view": {"kind": "loop", "n": n},
        "x": x,
        "scale": 1.0,
    }


def test_spectrum_result_and_mode_payloads(spectrum_payload):
    fig, status, heat, mode = spectrum.spectrum_result(spectrum_payload, {"id": "t1", "k": 2})
    assert status.startswith("3 modes in 0.25 s (fake); 1 rigid-body mode(s)")
    assert heat is None and len(fig.data) >= 1
    assert mode["div"] == spectrum.ID.VIEW_DOM and mode["key"] == "t1"
    assert mode["disp"] is None and len(mode["base"]) == 18
    mode, info = spectrum.animate_mode(spectrum_payload, 1, "t1")
    assert mode["mode"] == 1 and len(mode["disp"]) == 18
    assert info.startswith("Animating mode 2 (λ = 0.5; node-space mode")
    _, info = spectrum.animate_mode(spectrum_payload, 0, "t1")
    assert "rigid-body mode" in info


def test_clicked_mode_and_pick_k():
    assert spectrum.clicked_mode(None) is None and spectrum.clicked_mode({"points": []}) is None
    assert spectrum.clicked_mode({"points": [{"x": 3, "customdata": 1}]}) == 1
    assert spectrum.clicked_mode({"points": [{"x": 3}]}) == 2
    info, pick, patch = spectrum.pick_k(5)
    assert info == "k = 5 slow modes (set for CG and GNN)." and pick["k"] == 5
    ops = patch.to_plotly_json()["operations"]
    assert [op["params"]["value"] for op in ops[:2]] == [5.5, 5.5]


# ---- live ------------------------------------------------------------------------------------
def loop_specs(methods=("gd", "gnn")):
    values = {**forms.default_values(), "system.n": "50"}
    return forms.parse_run_form(values, "loop", list(methods))


def test_new_group_colours_labels_and_queue_message():
    specs = loop_specs(("gd", "cg", "gnn"))
    g = live.new_group(["a", "b", "c"], specs, protein=False, workers=2, poll_ms=300)
    assert [r["method"] for r in g.runs] == ["gd", "cg", "gnn"]
    assert [r["color"] for r in g.runs] == [METHODS[m].color for m in ("gd", "cg", "gnn")]
    assert g.runs[0]["div"] == live.ID.viewer_dom("a") and g.live == {
        "runs": g.runs,
        "rmsd": False,
        "group": "a",
    }
    assert g.seen == {"_active": True, "_ms": 300, "_n": 0, "_group": "a"}
    assert g.message == "Started GD, CG, GNN (seed 0). 1 run(s) wait for a free worker (2 workers)."
    assert len(g.figure.data) == 5 * 3  # gap vs step and time, intact + contacts, Rg


def snap(**kw):
    base = dict(
        run_id="r1",
        label="gd",
        status="queued",
        queue_position=None,
        version=1,
        terminal=False,
        rows=(),
        n_rows=0,
        view=None,
        frame_no=0,
        frame_step=0,
        frame_x=None,
        stage_switch_step=None,
        last={},
        elapsed=1.0,
        message="",
    )
    return SimpleNamespace(**{**base, **kw})


def test_card_update_sends_the_view_once_and_marks_the_end():
    view = {"kind": "loop", "n": 2, "scale": 2.0}
    s1 = snap(view=view, frame_no=3, frame_step=40, frame_x=np.ones((2, 3)), version=2)
    u = live.card_update(s1, {}, ["wb-view-r1"], 50)
    assert u.frame["view"] == view and u.frame["xyz"] == [2.0] * 6 and u.frame["since"] == 3
    assert u.frame["period"] == 50 and u.frame["link"] == ["wb-view-r1"]
    assert u.frame["stretch"] == 4.0  # twice the rest length 1, in display units (scale 2)
    assert u.seen == {"frame": 3, "view": True, "version": 2, "ended": False, "done": False}
    assert u.status.startswith("GD · queued") and u.stop is no_update
    assert u.structure is no_update  # no rows yet
    rows = ({"step": 0, "energy": 1.0, "wall_time_s": 0.1, "bonds_intact_frac": 0.5,
             "bonds_stretched": 3},)  # fmt: skip
    s2 = snap(view=view, version=3, status="done", terminal=True, rows=rows, n_rows=1)
    u = live.card_update(s2, u.seen, [], 50)
    assert u.frame is no_update and u.stop is True and u.rows == rows
    assert u.seen["rows"] == 1 and not u.seen["done"]
    assert u.structure.startswith("bonds intact 50.0 % (3 stretched")
    u = live.card_update(snap(view=view, version=3, terminal=True), u.seen, [], 50)
    assert u.status is no_update and u.stop is no_update and u.seen["done"]
    gone = live.card_update(None, {"rows": 2}, [], 50)
    assert (
        gone.status == "not found" and gone.stop is True and gone.seen == {"rows": 2, "done": True}
    )


def test_status_line_is_rerendered_on_every_poll_while_active():
    running = snap(status="running", version=4, elapsed=2.0)
    u = live.card_update(running, {"version": 4, "view": True}, [], 50)
    assert u.status is not no_update  # same version, but the elapsed time moves on
    later = live.card_update(snap(status="running", version=4, elapsed=3.0), u.seen, [], 50)
    assert later.status is not no_update


def test_poll_update_collects_cards_and_stops_when_all_are_done():
    g = live.new_group(["r1"], loop_specs(("gd",)), protein=False, workers=2, poll_ms=300)
    rows = ({"step": 0, "stage": 0, "energy": 1.0, "grad_norm": 1.0, "wall_time_s": 0.0},)
    snaps = {"r1": snap(status="done", terminal=True, rows=rows, n_rows=1, stage_switch_step=0)}
    u = live.poll_update(g.live, g.seen, ["r1"], snaps, 50)
    assert u.frames == [no_update] and u.stops == [True] and u.new_rows and u.seen["_active"]
    assert u.switches == {"r1": 0} and u.structure[0].startswith("structure")
    snaps = {"r1": snap(status="done", terminal=True)}
    u = live.poll_update(g.live, u.seen, ["r1"], snaps, 50)
    assert not u.new_rows and not u.seen["_active"] and u.seen["_ms"] == 300


def test_poll_chain_stays_alive_until_every_run_of_the_group_has_its_card():
    """A poll that read the page before the new group's cards were there (it saw only the
    previous group's ended cards) must not end the chain: the new cards would never be
    polled (a lesson's Run once left its cards at their first status for 15 minutes)."""
    g = live.new_group(["r2", "r3"], loop_specs(("gd", "gnn")), False, workers=2, poll_ms=300)
    old = {"r1": snap(status="done", terminal=True)}
    seen = {**g.seen, "r1": {"done": True, "view": True, "version": 1}}
    u = live.poll_update(g.live, seen, ["r1"], old, 50)
    assert u.seen["_active"]  # r2 and r3 have no card yet
    done = {rid: snap(status="done", terminal=True) for rid in ("r2", "r3")}
    seen = {**u.seen, **{rid: {"done": True, "view": True, "version": 1} for rid in done}}
    u = live.poll_update(g.live, seen, ["r2", "r3"], done, 50)
    assert not u.seen["_active"]


def test_reference_is_gd_whenever_gd_runs_else_the_pick():
    with_gd = {"runs": [{"id": "a", "label": "gnn", "method": "gnn"},
                        {"id": "b", "label": "gd", "method": "gd"}]}  # fmt: skip
    assert live.reference_run(with_gd, "a") == "b"  # GD wins over the pick and the order
    opts, value, disabled = live.reference_options(with_gd)
    assert value == "b" and disabled and [o["label"] for o in opts] == ["GNN", "GD"]
    no_gd = {"runs": [{"id": "a", "label": "cg", "method": "cg"},
                      {"id": "b", "label": "gnn", "method": "gnn"}]}  # fmt: skip
    assert live.reference_run(no_gd, "b") == "b" and live.reference_run(no_gd, None) == "a"
    assert not live.reference_options(no_gd)[2]


def test_parse_threshold():
    assert live.parse_threshold("") == (None, "") and live.parse_threshold(None) == (None, "")
    assert live.parse_threshold("0.5") == (0.5, "")
    for bad in ("nan", "inf", "abc"):
        value, msg = live.parse_threshold(bad)
        assert value is None and msg == f"must be a finite number, got {bad!r}; blank means auto"


def test_speedup_block_auto_threshold_from_gd_and_reaches():
    # GD comes second: it is still the reference (not whichever card is first)
    group = {"runs": [{"id": "b", "label": "gnn", "method": "gnn"},
                      {"id": "a", "label": "gd", "method": "gd"}]}  # fmt: skip
    finals = {"a": 10.0, "b": 5.0}
    asked = []

    def reach(rid, metric, threshold):
        asked.append((rid, metric, threshold))
        return {"a": Reach(400, 4.0), "b": Reach(100, 1.0)}[rid]

    table, msg = live.speedup_block(
        group, "energy", "", lambda rid, m: finals[rid], reach, lambda rid, m: finals[rid] - 1
    )
    assert msg == "" and asked == [("b", "energy", 10.1), ("a", "energy", 10.1)]
    text = str(table)
    assert "steps to ≤ 10.1" in text and "4.00×" in text and "reference" in text
    assert "Threshold: energy ≤ 10.1 (auto: GD's final value + 1 % of its magnitude)." in text
    assert live.speedup_block(group, "energy", "x", None, None)[0] is no_update
    assert live.speedup_block(None, "energy", "", None, None) == (no_update, "")
    none_yet = live.speedup_block(group, "energy", "", lambda rid, m: None, reach)[0]
    assert "appears once the runs have logged values" in str(none_yet)


def test_best_value_of_columns():
    assert live.best_value({"energy": np.array([3.0, np.nan, -1.0, 2.0])}, "energy") == -1.0
    assert live.best_value({"energy": np.array([np.nan])}, "energy") is None
    assert live.best_value({}, "energy") is None


def test_share_link():
    link = live.share_link("http://h:1/?run=old", "r9")
    assert link[1].children == "http://h:1/?run=r9"
    assert live.share_link(None, "r9")[1].children == "/?run=r9"


# ---- runs ------------------------------------------------------------------------------------
def test_replayed_openmm_run_is_coloured_as_openmm_not_gd():
    spec = RunSpec(system=SystemConfig(kind="protein", pdb="villin"), method_label="openmm-min")
    assert runs.run_color(spec.to_dict()) == METHODS["openmm-min"].color != METHODS["gd"].color
    for m, s in zip(("gd", "cg", "gnn"), loop_specs(("gd", "cg", "gnn")), strict=True):
        assert runs.run_color(s.to_dict()) == METHODS[m].color
    assert runs.run_color(None) == METHODS["gd"].color  # a bare spec is plain GD
    assert runs.run_color({"no such field": 1}) == runs.NO_COLOR
    replay = snap(
        spec=spec.to_dict(),
        label="openmm-min",
        status="done",
        is_owner=True,
        rows=({"step": 0, "energy": 2.0}, {"step": 10, "energy": 1.0}),
    )
    title, last, fig, frame = runs.replay_view(replay, [(0, np.zeros((2, 3)))])
    assert fig.data[0].line.color == METHODS["openmm-min"].color
    assert title == "OPENMM-MIN · done · 2 logged steps" and last == 0 and frame is None


def test_replay_view_payloads_and_marker():
    replay = snap(
        spec=loop_specs(("gnn",))[0].to_dict(),
        label="gnn",
        status="done",
        is_owner=False,
        rows=({"step": 0, "energy": 2.0},),
        view={"kind": "loop", "n": 2, "scale": 1.0},
    )
    frames = [(0, np.zeros((2, 3))), (20, np.ones((2, 3)))]
    title, last, fig, frame = runs.replay_view(replay, frames)
    assert title.endswith("(shared with you, read-only)") and last == 1
    assert frame == {
        "div": runs.ID.VIEW_DOM,
        "key": "replay-r1",
        "step": 20,
        "xyz": [1.0] * 6,
        "view": replay.view,
    }
    ops = runs.replay_marker(20, None).to_plotly_json()["operations"]
    assert ops[0]["location"] == ["layout", "shapes", 0] and ops[0]["params"]["value"]["x0"] == 20
    ops = runs.replay_marker(20, 5).to_plotly_json()["operations"]
    assert ops[0]["location"] == ["layout", "shapes", 1]


def test_run_to_open_from_link_box_or_list():
    assert runs.run_from_search("?run=abc&x=1") == "abc"
    assert runs.run_from_search("") is None and runs.run_from_search("?x=1") is None
    assert runs.run_to_open(None, None, "?run=abc", None) == "abc"
    assert runs.run_to_open(ids.LOCATION, "?run=x", "?run=x", None) == "x"
    assert runs.run_to_open(runs.ID.OPEN_BTN, 1, None, " http://h/?run=r7 ") == "r7"
    assert runs.run_to_open(runs.ID.open_btn("r3"), 1, None, None) == "r3"
    assert runs.run_to_open(runs.ID.open_btn("r3"), None, None, None) is None  # just rendered


def test_runs_table_digest_and_system_names():
    assert runs.system_name({"system": {"kind": "lj-loop", "n": 400}}) == "lj-loop n=400"
    assert runs.system_name({"system": {"kind": "protein", "pdb": "/a/b/1vii.pdb"}}) == (
        "protein 1vii.pdb"
    )
    assert runs.system_name(None) == "? n=None"
    a = SimpleNamespace(run_id="a", status="done", last={"step": 5}, created=0, source="cli")
    a.label, a.spec = "gd", None
    assert runs.runs_digest([a]) == runs.runs_digest([a])
    assert runs.runs_digest([a]) != runs.runs_digest(
        [SimpleNamespace(**{**vars(a), "status": "x"})]
    )
    text = str(runs.runs_table([a]))
    assert "GD" in text and "(CLI)" in text and "run-open" in text
    assert "No runs yet" in str(runs.runs_table([]))


# ---- layout in workflow order (issue 9) -------------------------------------------------------
def test_panels_sit_in_workflow_order_with_the_setup_row_first():
    page = layout.build(PageContext(presets=PRESETS, start_preset="fig2-lj-n400"))
    # the lessons drawer comes last in the DOM (fixed to the corner by assets/workbench.css)
    assert layout.ORDER == (
        "system",
        "spectrum",
        "method",
        "live",
        "runs",
        "teach",
        "sweep",
        "lessons",
    )

    def areas(node):
        found = []
        props = getattr(node, "__dict__", {})
        if props.get("data-panel"):
            found.append(props["data-panel"])
        children = getattr(node, "children", None)
        for child in children if isinstance(children, list) else [children]:
            if child is not None and not isinstance(child, str):
                found += areas(child)
        return found

    assert areas(page) == list(layout.ORDER)
    setup = next(c for c in page.children if getattr(c, "className", "") == "wb-flow").children[0]
    assert setup.className == "wb-setup" and areas(setup) == ["system", "spectrum", "method"]


# ---- runs: names, exports, replay without frames ----------------------------------------------
def test_runs_and_exports_are_named_by_system_method_and_time(tmp_path):
    import time as _time

    created = _time.mktime((2026, 11, 30, 14, 2, 31, 0, 0, -1))
    loop = {"system": {"kind": "lj-loop", "n": 400}}
    assert runs.run_name(loop, "gnn", created) == "lj-loop n=400 · GNN · 14:02:31"
    assert runs.export_stem(loop, "gnn", created) == "lj-loop-n400_gnn_20261130-140231"
    assert runs.run_name(loop, "gd", None) == "lj-loop n=400 · GD"
    # an upload is named by the file it was, not by the server's token path
    upload = tmp_path / "uploads" / ("ab" * 16 + ".pdb")
    upload.parent.mkdir()
    upload.write_text("ATOM\n")
    jobs.name_upload(str(upload), "C:\\Users\\me\\Trp cage.pdb")
    spec = {"system": {"kind": "protein", "pdb": str(upload)}}
    assert runs.system_name(spec) == "protein Trp cage.pdb"
    assert runs.run_name(spec, "openmm-min", created) == (
        "protein Trp cage.pdb · OPENMM-MIN · 14:02:31"
    )
    assert runs.export_stem(spec, "openmm-min", created) == (
        "protein-trp-cage_openmm-min_20261130-140231"
    )
    assert jobs.structure_name("/x/1vii.pdb") == "1vii.pdb" and jobs.structure_name(None) == ""
    name, _ = jobs.export_file({"metrics": {"step": [0]}, "label": "gd"}, "csv", "s_gd_t")
    assert name == "s_gd_t_curves.csv"


def test_runs_table_names_runs_and_cuts_long_names_with_a_title():
    a = SimpleNamespace(run_id="a", status="done", last={"step": 5, "energy": 1.5}, source="")
    a.label, a.created = "gnn", 1.0e9
    a.spec = {"system": {"kind": "lj-loop", "n": 400}}
    table = runs.runs_table([a])
    cell = table.children[1].children[0].children[0]
    assert cell.children.startswith("lj-loop n=400 · GNN · ") and cell.title == cell.children
    assert cell.className == "wb-runs-name"
    assert [th.children for th in table.children[0].children.children][:4] == [
        "run",
        "status",
        "step",
        "energy",
    ]


def test_empty_replay_replaces_view_curves_and_exports():
    failed = snap(
        spec=loop_specs(("gnn",))[0].to_dict(),
        label="gnn",
        status="failed",
        rows=(),
        view=None,
        stage_switch_step=None,
    )
    title, last, value, fig, exports, style, frame = runs.empty_replay(failed)
    assert title == "GNN · failed · no frames stored for this run" and last == value == 0
    assert [b.id for b in exports] == [ids.export_btn("r1", "csv"), ids.export_btn("r1", "json")]
    assert frame["view"]["n"] == 0 and frame["xyz"] == [] and frame["key"] != "replay-r1"
    assert [len(t.x) for t in fig.data] == [0]


def test_spectrum_progress_shows_queue_place_or_phase_and_time():
    queued = SimpleNamespace(status="queued", queue_position=2, progress="", elapsed=0.0)
    assert "queued (position 2), waiting for the analysis thread · 0.0 s" in str(
        spectrum.task_progress(queued)
    )
    running = SimpleNamespace(status="running", queue_position=None, progress="building", elapsed=3)
    assert "building · 3.0 s" in str(spectrum.task_progress(running))
