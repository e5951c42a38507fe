"""The panels' callbacks called as plain functions (with ``context_value`` where they read
``ctx``) on a registry driven by the fake engine: start, poll, stop, share/open, export,
replay, forms."""

import base64
import copy
import json
import re
import time
from contextvars import copy_context

import numpy as np
import pytest
from dash import no_update
from dash._callback_context import context_value
from dash._utils import AttributeDict
from workbench_fakes import FakeEngine, release_all, wait_for

from engine import SystemConfig
from tests.conftest import shared_pdb
from workbench import figures, forms, ids, jobs
from workbench import registry as reg
from workbench.config import ServerConfig
from workbench.panels import live, method, runs, spectrum, system
from workbench.registry import RunRegistry

SID, OTHER = "session-a", "session-b"


@pytest.fixture(scope="module")
def small_system():
    return jobs.build_system(SystemConfig(kind="lj-loop", n=50), 0)


def structure_of(step: int) -> dict:
    """The structure metrics the engine logs with each row, made up from the step: bonds intact
    100, 90, 80, 70 %, loop contacts 0, 10, 20, 30 %, Rg 3.0, 2.8, 2.6, 2.4 at steps 0-60."""
    return {
        "bonds_intact_frac": 1.0 - step / 200,
        "loop_contact_frac": step / 200,
        "radius_of_gyration": 3.0 - step / 100,
    }


def with_structure(runner):
    """``runner`` whose rows also carry the structure metrics (the fake logs none)."""

    def run(spec, on_progress, should_stop, on_system):
        def progress(p):
            for row in p.rows:
                row.update(structure_of(row["step"]))
            on_progress(p)

        return runner(spec, progress, should_stop, on_system)

    return run


@pytest.fixture
def engine(tmp_path, small_system):
    fake = FakeEngine(auto=True, n_rows=4, delay=0.01, system=small_system)
    registry = RunRegistry(
        ServerConfig(run_dir=str(tmp_path), structure_dirs=()),
        with_structure(fake.runner),
        bundle_reader=jobs.read_bundle,
    )
    reg.install(registry)
    yield fake
    registry.shutdown()
    reg.install(None)


def call(fn, *args, trigger=None, value=1):
    """Run a callback with ctx.triggered set to ``trigger`` (an id, or an (id, prop) pair)."""

    def run():
        inputs = []
        if trigger is not None:
            cid, prop = trigger if isinstance(trigger, tuple) else (trigger, "n_clicks")
            key = (
                json.dumps(cid, sort_keys=True, separators=(",", ":"))
                if isinstance(cid, dict)
                else cid
            )
            inputs = [{"prop_id": f"{key}.{prop}", "value": value}]
        context_value.set(AttributeDict(triggered_inputs=inputs))
        return fn(*args)

    return copy_context().run(run)


def form(**changes):
    values = forms.default_values()
    values.update({"system.n": "50", **changes})
    names = list(values)
    return [values[n] for n in names], [ids.field(n) for n in names]


def start(methods=("gd", "gnn"), **changes):
    values, field_ids = form(**changes)
    return live.start_run(1, values, field_ids, list(methods), "loop", "file", None, SID)


def poll_until_done(group, seen, max_polls=400):
    """Poll like the browser's chain does, collecting everything sent."""
    frame_ids = [{"index": r["id"]} for r in group["runs"]]
    sent = {"frames": [], "patches": [], "status": [], "structure": [], "speedups": []}
    for tick in range(1, max_polls):
        out = live.poll_runs(tick, group, seen, SID, "energy", "", frame_ids)
        frames, status, structure, stops, patch, new_seen, speedup = out
        sent["frames"].append(frames)
        sent["status"].append(status)
        sent["structure"].append(structure)
        if patch is not no_update:
            sent["patches"].append(patch)
        if speedup is not no_update:
            sent["speedups"].append(speedup)
        seen = new_seen if new_seen is not no_update else seen
        if not seen.get("_active"):
            return seen, sent
        time.sleep(0.01)
    raise AssertionError("runs did not finish")


def last_sent(columns: list, i: int):
    """The last value sent to card ``i`` in a list of per-poll outputs."""
    return [col[i] for col in columns if col[i] is not no_update][-1]


def apply_assignments(fig: dict, patch) -> dict:
    """Apply a curves Patch to a figure dict as dash-renderer does; the curves are only ever
    assigned (whole arrays), never extended, so any other operation fails."""
    fig = copy.deepcopy(fig)
    for op in patch.to_plotly_json()["operations"]:
        assert op["operation"] == "Assign", op
        *path, last = op["location"]
        node = fig
        for key in path:
            node = node.setdefault(key, {}) if isinstance(node, dict) else node[key]
        node[last] = copy.deepcopy(op["params"]["value"])
    return fig


def text_of(component) -> str:
    """All the text inside a Dash component tree."""
    if component is None:
        return ""
    if isinstance(component, str | int | float):
        return str(component)
    if isinstance(component, list | tuple):
        return "".join(text_of(c) for c in component)
    return text_of(getattr(component, "children", None))


def speedup_cells(block) -> list[list[str]]:
    """The speed-up table's rows as cell texts, header first (``live.speedup_table``)."""
    table = block.children[0]
    head, body = table.children
    return [[text_of(c) for c in tr.children] for tr in [head.children, *body.children]]


def speedup_note(block) -> str:
    return text_of(block.children[1])


def test_bad_input_starts_nothing_and_names_the_range(engine):
    out = start(**{"system.n": "999999"})
    assert out[:5] == (no_update,) * 5
    assert out[5] == "Not started: system.n must be an integer in [50, 100000], got '999999'"
    assert reg.get().list_runs(SID) == []


def test_start_and_poll_delivers_view_once_then_curves(engine):
    cards, fig, style, group, seen, msg, _ = start()
    assert msg.startswith("Started GD, GNN (seed 0)")
    assert [r["label"] for r in group["runs"]] == ["gd", "gnn"] and len(cards) == 2
    # one trace per run on each of the loop panels: log gap vs step and vs time (top row),
    # bonds intact, loop contacts and Rg (bottom row); trace index = panel * n_runs + run
    assert len(fig.data) == 5 * 2 == len(figures.curve_panels(False)) * 2
    assert [t.name for t in fig.data] == ["gd", "gnn"] * 5 and style == {"display": "block"}
    assert seen["_active"]
    seen, sent = poll_until_done(group, seen)
    gd, gnn = group["runs"]
    for i, run in enumerate(group["runs"]):
        payloads = [f[i] for f in sent["frames"] if f[i] is not no_update]
        (first,) = payloads  # topology once; coordinates then stream through /_wb/frames
        assert first["view"]["n"] == 50 and first["link"] == [r["div"] for r in group["runs"]]
        assert first["run"] == run["id"] and first["period"] == reg.get().config.frame_ms
        assert seen[run["id"]]["rows"] == 4 and seen[run["id"]]["done"]
        # the structure line follows the newest row (step 60)
        assert last_sent(sent["structure"], i) == (
            "bonds intact 70.0 % · loop contacts 30.0 % · Rg 2.4"
        )
    # every trace is assigned whole: applying all replies in order, or any reply twice,
    # gives every point exactly once
    curves = fig.to_plotly_json()
    for patch in sent["patches"]:
        curves = apply_assignments(curves, patch)
    again = apply_assignments(apply_assignments(curves, sent["patches"][-1]), sent["patches"][-1])
    assert again == curves
    data = curves["data"]
    energies = [1.0 / (1 + s) for s in (0, 20, 40, 60)]
    for i in (0, 1):  # gd, gnn: gap vs step; raw energies in customdata
        assert data[i]["x"] == [0, 20, 40, 60]
        assert data[i]["customdata"] == pytest.approx(energies)
        assert data[i]["y"][:3] == pytest.approx([e - energies[-1] for e in energies[:3]])
    # the time axis is the time since the Run click at which each row reached the server
    clicks = {}
    for i, r in enumerate(group["runs"]):
        rows = reg.get().snapshot(r["id"], SID).rows
        clicks[r["label"]] = [row["click_time_s"] for row in rows]
        assert data[2 + i]["x"] == pytest.approx(clicks[r["label"]])
        assert clicks[r["label"]] == sorted(clicks[r["label"]]) and clicks[r["label"]][0] >= 0
    assert data[4]["y"] == pytest.approx([100.0, 90.0, 80.0, 70.0])  # gd bonds intact %
    assert data[7]["y"] == pytest.approx([0.0, 10.0, 20.0, 30.0])  # gnn loop contacts %
    assert data[8]["y"] == pytest.approx([3.0, 2.8, 2.6, 2.4])  # gd Rg
    # GNN's stage switch (step 20) is marked on the step and time axes, in its colour
    marks = [(m["x0"], m["xref"], m["line"]["color"]) for m in curves["layout"]["shapes"]]
    switch_time = clicks["gnn"][1]  # GNN's row at step 20
    assert marks == [(20.0, "x", gnn["color"]), (pytest.approx(switch_time), "x2", gnn["color"])]
    assert "switched at step 20" in last_sent(sent["status"], 1)
    assert "done" in last_sent(sent["status"], 0)
    # the speed-up readout arrives with the rows: GD is the reference
    cells = speedup_cells(sent["speedups"][-1])
    assert cells[0][:3] == ["method", "final energy", "best energy"]
    assert cells[1][0] == "GD reference" and cells[2][0] == "GNN"


def test_a_late_reply_for_the_previous_group_does_not_end_the_new_groups_polls(engine):
    """Run pressed while the previous group was being polled: that poll's reply (all done,
    "_active" false) can land in the store after the new group's. The next poll must still
    serve the new group, or its cards sit at "queued" forever."""
    *_, group_a, seen_a, _, _ = start(("gd",))
    stale, _ = poll_until_done(group_a, seen_a)
    assert stale["_active"] is False and stale["_group"] == group_a["group"]
    *_, group_b, seen_b, _, _ = start(("gd", "gnn"))
    assert seen_b["_group"] == group_b["group"] != group_a["group"]
    frame_ids = [{"index": r["id"]} for r in group_b["runs"]]
    out = live.poll_runs(1, group_b, stale, SID, "energy", "", frame_ids)
    status, new_seen = out[1], out[5]
    assert new_seen is not no_update and new_seen["_group"] == group_b["group"]
    assert all(status[i] is not no_update for i in range(2))
    assert set(new_seen) >= {r["id"] for r in group_b["runs"]}
    done, _ = poll_until_done(group_b, new_seen)
    assert done["_active"] is False


def test_a_diverged_run_says_so_and_keeps_its_curve(engine):
    engine.outcome = "diverge"
    _, fig, _, group, seen, _, _ = start(methods=("gd",))
    seen, sent = poll_until_done(group, seen)
    final_status = last_sent(sent["status"], 0)
    assert "diverged" in final_status and "not finite" in final_status
    curves = fig.to_plotly_json()
    for patch in sent["patches"]:
        curves = apply_assignments(curves, patch)
    gap = curves["data"][0]
    assert gap["x"] == [0, 20, 40]  # the non-finite row is kept on the step axis, as a gap
    assert gap["customdata"][:2] == [1.0, 1.0 / 21] and gap["customdata"][2] is None
    assert gap["y"][0] == pytest.approx(1.0 - 1.0 / 21) and gap["y"][2] is None


def test_stop_is_owner_only_and_the_reply_shows_stopped(engine):
    engine.auto = False  # runs wait until stopped
    _, _, _, group, _, _, _ = start(methods=("gd",))
    run_id = group["runs"][0]["id"]
    status_ids = [live.ID.status(run_id)]
    engine.wait_started(1)
    msg, statuses = call(live.stop_run, [1], status_ids, OTHER, trigger=live.ID.stop_btn(run_id))
    assert msg == "Only the session that started a run can stop it." and statuses == [no_update]
    assert reg.get().snapshot(run_id, SID).status == "running"
    # the reply waits for the run to end, so the card reads "stopped" without another poll
    msg, statuses = call(live.stop_run, [1], status_ids, SID, trigger=live.ID.stop_btn(run_id))
    assert msg.startswith("Stopped;") and "stopped" in statuses[0]
    assert reg.get().snapshot(run_id, SID).status == "stopped"
    msg, _ = call(live.stop_run, [1], status_ids, SID, trigger=live.ID.stop_btn(run_id))
    assert msg == "That run has already finished."
    nothing = call(
        live.stop_run, [None], status_ids, SID, trigger=live.ID.stop_btn(run_id), value=None
    )
    assert nothing == (no_update, [no_update])


def test_share_link_opens_read_only_for_another_session(engine):
    _, _, _, group, seen, _, _ = start(methods=("gd",))
    run_id = group["runs"][0]["id"]
    poll_until_done(group, seen)
    assert call(
        runs.open_run, [], None, f"?run={run_id}", None, OTHER, trigger=(ids.LOCATION, "search")
    )[1] == ("No such run, or it was not shared with you.")
    assert (
        call(live.share_run, 1, OTHER, "http://h/", trigger=live.ID.share_btn(run_id))
        == "Only the run's owner can share it."
    )
    link = call(
        live.share_run, 1, SID, "http://127.0.0.1:8050/?x=1", trigger=live.ID.share_btn(run_id)
    )
    assert link[1].children == f"http://127.0.0.1:8050/?run={run_id}"
    opened, msg = call(
        runs.open_run, [], None, f"?run={run_id}", None, OTHER, trigger=(ids.LOCATION, "search")
    )
    assert opened["id"] == run_id and msg == ""
    title, last, value, fig, exports, style, frame = runs.show_replay(opened, OTHER)
    assert "shared with you, read-only" in title and last == value == 3
    assert frame["view"]["n"] == 50 and len(frame["xyz"]) == 150
    msg, _ = call(live.stop_run, [1], [], OTHER, trigger=live.ID.stop_btn(run_id))
    assert msg == "Only the session that started a run can stop it."


def test_replay_slider_and_curve_clicks(engine):
    _, _, _, group, seen, _, _ = start(methods=("gnn",))
    run_id = group["runs"][0]["id"]
    poll_until_done(group, seen)
    opened = {"id": run_id}
    frame, patch = runs.replay_frame(1, opened, SID)
    assert frame["step"] == 20 and "view" not in frame
    np.testing.assert_allclose(frame["xyz"], 0.2)  # the fake's second frame
    ops = patch.to_plotly_json()["operations"]
    assert ops[0]["params"]["value"]["x0"] == 20
    assert runs.replay_click({"points": [{"x": 55}]}, opened, SID) == 3
    assert runs.replay_frame(1, opened, OTHER) == (no_update, no_update)  # not shared


@pytest.mark.parametrize(
    "fmt, needle",
    [
        ("csv", "step,stage,wall_time_s,energy"),
        ("json", '"spec"'),
        ("pdb", "ATOM"),
        ("traj", "MODEL"),
    ],
)
def test_exports(engine, fmt, needle):
    _, _, _, group, seen, _, _ = start(methods=("gd",))
    run_id = group["runs"][0]["id"]
    poll_until_done(group, seen)
    out = call(runs.export_run, [1], SID, trigger=ids.export_btn(run_id, fmt))
    assert needle in out["content"]
    assert re.fullmatch(r"lj-loop-n50_gd_\d{8}-\d{6}_\w+\.\w+", out["filename"])
    if fmt == "json":  # the CLI re-runs it: python -m engine run --config <file>
        from engine import RunSpec

        assert RunSpec.from_dict(json.loads(out["content"])["spec"]).system.n == 50
    if fmt == "traj":
        assert out["content"].count("MODEL") == 4
    assert call(runs.export_run, [1], OTHER, trigger=ids.export_btn(run_id, fmt)) is no_update


def test_validate_form_messages_next_to_fields(engine):
    values, field_ids = form(**{"system.n": "ten", "gnn.hidden": "0"})
    msg_ids = [ids.field_msg(n) for n in ("system.n", "gnn.hidden", "methods", "seed")]
    msgs = method.validate_form(values, ["gd", "gnn"], "loop", "file", None, field_ids, msg_ids)
    assert msgs[0] == "must be an integer in [50, 100000], got 'ten'"
    assert msgs[1] == "must be an integer in [2, 1024], got '0'"
    assert msgs[2:] == ["", ""]
    msgs = method.validate_form(values, [], "loop", "file", None, field_ids, msg_ids)
    assert msgs[2] == "choose at least one method"
    summary = system.summarize_system(values, "loop", "file", field_ids)
    assert "pure LJ loop" in summary


def test_upload_cap_and_acceptance(engine):
    with open(shared_pdb("1PLW_native.pdb"), "rb") as fh:
        contents = "data:;base64," + base64.b64encode(fh.read()).decode()
    token, msg, source = system.upload_structure(contents, "a.pdb", SID)
    assert (
        reg.get().store.upload_path(token).endswith("a.pdb")
        and source == "upload"
        and msg.startswith("a.pdb: accepted, 5 residues")
    )
    # three CA atoms of one residue: a PDB text, but nothing amber14 can model (tests/test_uploads)
    pdb = "ATOM      1  CA  ALA A   1      11.639   6.071  -5.147  1.00  0.00           C\n" * 3
    contents = "data:;base64," + base64.b64encode(pdb.encode()).decode()
    token, msg, source = system.upload_structure(contents, "a.pdb", SID)
    assert token is None and msg.startswith("a.pdb cannot be modelled") and source is no_update
    big = "data:;base64," + base64.b64encode(b"A" * 3_000_000).decode()
    token, msg, source = system.upload_structure(big, "big.pdb", SID)
    assert token is None and "larger than the 2 MB cap" in msg and source is no_update


def test_fill_form_from_preset_and_from_a_k_pick(engine):
    field_ids = [ids.field(n) for n in ("system.n", "cg.n_modes", "gnn.n_modes", "gnn.hidden")]
    values, methods, desc, tab, source, filled = call(
        method.fill_form,
        "fig2-lj-n400",
        None,
        field_ids,
        [None] * 4,
        trigger=(method.ID.PRESET, "value"),
    )
    assert values == ["400", "100", "80", "32"] and methods == ["gd", "cg", "gnn"] and tab == "loop"
    assert source is no_update
    assert "Figure 2" in desc
    names = ("system.n", "cg.n_modes", "gnn.n_modes", "gnn.hidden")
    assert filled == {"tab": "loop", "values": dict(zip(names, values, strict=True))}
    values, *_, filled = call(
        method.fill_form,
        None,
        {"k": 7},
        field_ids,
        [None] * 4,
        trigger=(spectrum.ID.K_PICK, "data"),
    )
    assert values == [no_update, "7", "7", no_update] and filled is no_update


def test_spectrum_click_animates_or_sets_k(engine, small_system):
    payload = {
        "values": np.array([0.0, 0.5, 1.0]),
        "rigid": np.array([True, False, False]),
        "vectors": np.eye(50, 3, dtype=np.float32),
        "space": "node",
        "method": "fake",
        "seconds": 0.1,
        "view": jobs.system_view(small_system),
        "x": small_system.x0,
        "scale": 1.0,
    }
    task_id = reg.get().submit_task(SID, "spectrum", lambda report, stop: payload)
    wait_for(lambda: reg.get().snapshot(task_id, SID).terminal)
    task = {"id": task_id, "k": None}
    click = {"points": [{"x": 2, "customdata": 1}]}
    mode, info, k_pick, fig = call(
        spectrum.spectrum_click,
        click,
        None,
        "animate",
        task,
        SID,
        trigger=(spectrum.ID.GRAPH, "clickData"),
    )
    assert mode["mode"] == 1 and len(mode["disp"]) == 150 and "No real timescale" in info
    disp = np.asarray(mode["disp"]).reshape(50, 3)
    assert np.max(np.linalg.norm(disp, axis=1)) == pytest.approx(1.0, abs=1e-3)
    _, info, k_pick, fig = call(
        spectrum.spectrum_click,
        click,
        None,
        "k",
        task,
        SID,
        trigger=(spectrum.ID.GRAPH, "clickData"),
    )
    assert k_pick["k"] == 2 and "k = 2" in info
    _, _, k_pick, _ = call(
        spectrum.spectrum_click,
        None,
        {"shapes[0].x0": 3.4},
        "animate",
        task,
        SID,
        trigger=(spectrum.ID.GRAPH, "relayoutData"),
    )
    assert k_pick["k"] == 3
    assert (
        call(
            spectrum.spectrum_click,
            click,
            None,
            "animate",
            task,
            OTHER,
            trigger=(spectrum.ID.GRAPH, "clickData"),
        )
        == (no_update,) * 4
    )


def test_runs_list_rerenders_only_on_change(engine):
    _, _, _, group, seen, _, _ = start(methods=("gd",))
    poll_until_done(group, seen)
    table, digest, reply = runs.refresh_runs(1, group, SID, None)
    assert "GD" in str(table) and digest
    assert reply == {"more": True, "tick": 1}  # the list is polled for as long as the page is open
    assert runs.refresh_runs(2, group, SID, digest) == (
        no_update,
        no_update,
        runs.POLL.answer(2, True),
    )
    assert "No runs yet" in str(runs.refresh_runs(3, group, OTHER, None)[0])


def test_runs_list_refreshes_a_live_runs_step_at_most_every_step_refresh_s(tmp_path, small_system):
    fake = FakeEngine(system=small_system)
    config = ServerConfig(run_dir=str(tmp_path), structure_dirs=())
    registry = RunRegistry(config, fake.runner, bundle_reader=jobs.read_bundle)
    reg.install(registry)
    try:
        _, _, _, group, _, _, _ = start(("gd",))
        rid = group["runs"][0]["id"]
        wait_for(lambda: fake.runs and fake.runs[0].started.is_set(), 30, "the run's start")
        fake.runs[0].tokens.release()
        wait_for(lambda: registry.snapshot(rid, SID).n_rows >= 1, 30, "a row")
        table, digest, _ = runs.refresh_runs(1, group, SID, None)
        assert "running" in str(table) and "Td('0')" in str(table)
        fake.runs[0].tokens.release()
        wait_for(lambda: registry.snapshot(rid, SID).n_rows >= 2, 30, "a second row")
        # only the step moved: the list waits (the card shows the step live) ...
        assert runs.refresh_runs(2, group, SID, digest)[:2] == (no_update, no_update)
        # ... until STEP_REFRESH_S have passed since it was drawn
        older = {**digest, "t": digest["t"] - runs.STEP_REFRESH_S}
        table, _, _ = runs.refresh_runs(3, group, SID, older)
        assert "Td('20')" in str(table)  # the step column
        fake.runs[0].release.set()  # a change of status is shown at once
        wait_for(lambda: registry.snapshot(rid, SID).terminal, 30, "the run's end")
        table, _, _ = runs.refresh_runs(4, group, SID, digest)
        assert "done" in str(table)
    finally:
        release_all()
        registry.shutdown()
        reg.install(None)


def test_speedup_threshold_input(engine):
    _, _, _, group, seen, _, _ = start(methods=("gnn", "gd"))  # GD second: still the reference
    poll_until_done(group, seen)
    table, msg = live.update_speedup("energy", "0.04", group, SID)
    assert msg == ""
    cells = speedup_cells(table)
    assert cells[0] == [
        "method",
        "final energy",
        "best energy",
        "steps to ≤ 0.04",
        "time to it (s)",
        "speed-up (time)",
        "speed-up (steps)",
    ]
    gnn, gd = cells[1:]
    assert gd[0] == "GD reference" and gnn[0] == "GNN"
    # both reach 0.04 at step 40 (E = 1/41): GNN is 1.00× GD, every column a tie, all marked best
    assert gnn[1:] == ["0.016393 ★", "0.016393 ★", "40 ★", "0.03 ★", "1.00× ★", "1.00× ★"]
    assert gd[3:] == ["40 ★", "0.03 ★", "reference ★", "reference ★"]
    assert speedup_note(table) == "Threshold: energy ≤ 0.04 (as entered)."
    # a threshold nobody reaches: the line says why, and that speed-ups need the reference
    table, _ = live.update_speedup("energy", "-1", group, SID)
    assert [row[3] for row in speedup_cells(table)[1:]] == ["not reached"] * 2
    assert speedup_note(table) == (
        "Threshold: energy ≤ -1 (as entered). "
        "GNN did not reach it: its best, 0.016393, stays above it. "
        "GD did not reach it: its best, 0.016393, stays above it. "
        "Speed-ups need GD (the reference) to reach it."
    )
    assert live.update_speedup("energy", "nan", group, SID)[1].startswith("must be a finite number")


def test_speedup_reference_is_the_pick_when_no_gd_runs(engine):
    _, _, _, group, seen, _, _ = start(methods=("gnn", "cg"))
    poll_until_done(group, seen)
    cg = group["runs"][1]["id"]
    default = speedup_cells(live.update_speedup("energy", "0.04", group, SID)[0])
    assert [row[0] for row in default[1:]] == ["GNN reference", "CG"]  # the first run
    picked = speedup_cells(live.update_speedup("energy", "0.04", group, SID, cg)[0])
    assert [row[0] for row in picked[1:]] == ["GNN", "CG reference"]


def test_cli_bundles_are_listed_for_every_session_and_replay(engine, tmp_path):
    import engine as eng
    from engine import io as engine_io

    spec = eng.RunSpec(
        system=SystemConfig(kind="lj-loop", n=50),
        schedule=eng.ScheduleConfig(max_steps=40, stopping="none"),
        method_label="gd",
    )
    engine_io.write_bundle(eng.run(spec), tmp_path / "bundles" / "cmp" / "gd")
    reg.get().index_bundles(jobs.find_bundles([str(tmp_path / "bundles")]))
    for reader in (SID, OTHER):
        (snap,) = reg.get().list_runs(reader)
        assert snap.source == "cli" and snap.label == "gd" and not snap.is_owner
    opened, msg = call(
        runs.open_run, [1], None, None, None, OTHER, trigger=runs.ID.open_btn(snap.run_id)
    )
    title, last, value, fig, exports, style, frame = runs.show_replay(opened, OTHER)
    assert title.startswith("GD · done · 3 logged steps") and frame["view"]["n"] == 50
    out = call(runs.export_run, [1], OTHER, trigger=ids.export_btn(snap.run_id, "pdb"))
    assert out["content"].count("ATOM") == 50
    assert reg.get().cancel(snap.run_id, by=OTHER) is False


def test_charts_are_redrawn_at_most_every_chart_ms_while_runs_are_live(tmp_path, small_system):
    """Rows arriving between chart redraws wait (the status line still follows every poll);
    the first rows and the runs' end are drawn at once, with every row."""
    fake = FakeEngine(system=small_system)
    config = ServerConfig(run_dir=str(tmp_path), structure_dirs=(), chart_ms=60_000)
    registry = RunRegistry(config, with_structure(fake.runner), bundle_reader=jobs.read_bundle)
    reg.install(registry)
    try:
        _, fig, _, group, seen, _, _ = start(("gd",))
        wait_for(lambda: fake.runs and fake.runs[0].started.is_set(), 30, "the run's start")
        run, frame_ids = fake.runs[0], [{"index": r["id"]} for r in group["runs"]]
        rid = group["runs"][0]["id"]

        def rows_logged(count):
            wait_for(lambda: registry.snapshot(rid, SID).n_rows >= count, 30, f"{count} rows")

        def poll(tick, seen):
            out = live.poll_runs(tick, group, seen, SID, "energy", "", frame_ids)
            return out[1][0], out[4], out[5]  # status, curves patch, seen

        run.tokens.release()
        rows_logged(1)
        _, patch, seen = poll(1, seen)
        assert patch is not no_update and seen["_charts"]  # the first rows: drawn at once
        assert live.teaching_views(seen, group, SID, [{"index": rid}]) != (
            [no_update],
            [no_update],
        )
        run.tokens.release()
        rows_logged(2)
        status, patch, seen = poll(2, seen)
        assert patch is no_update and seen["_dirty"] and not seen["_charts"]
        assert status is not no_update  # the status line does not wait
        assert live.teaching_views(seen, group, SID, [{"index": rid}]) == (
            [no_update],
            [no_update],
        )
        status, patch, seen = poll(3, seen)  # no new rows, still not due: still waiting
        assert patch is no_update and seen["_dirty"]
        run.release.set()
        wait_for(lambda: registry.snapshot(rid, SID).terminal, 30, "the run's end")
        _, patch, seen = poll(4, seen)
        assert not seen["_active"] and seen["_charts"]
        curves = apply_assignments(fig.to_plotly_json(), patch)
        assert curves["data"][0]["x"] == [0, 20]  # both rows, the held one included
    finally:
        release_all()
        registry.shutdown()
        reg.install(None)


def test_an_analysis_task_is_polled_the_same_way_by_every_panel(engine):
    """spectrum.poll_task (the spectrum and panel T's views): progress while it runs, why it
    ended when it failed, its payload when done, and "not found" for another session."""
    import threading

    r, gate = reg.get(), threading.Event()

    def work(report, should_stop):
        report("step 1 of 2")
        gate.wait(30)
        return {"answer": 42}

    task = {"id": r.submit_task(SID, "spectrum", work)}
    wait_for(lambda: r.snapshot(task["id"], SID).progress, 30, "the task's progress")
    status, payload, done = spectrum.poll_task(task, SID, "Spectrum")
    assert payload is None and done is False and "step 1 of 2" in str(status)
    assert spectrum.poll_task(task, OTHER, "Spectrum")[0].startswith("Spectrum not found")
    gate.set()
    wait_for(lambda: r.snapshot(task["id"], SID).terminal, 30, "the task's end")
    assert spectrum.poll_task(task, SID, "Spectrum") == (None, {"answer": 42}, True)

    def broken(report, should_stop):
        raise RuntimeError("no modes here")

    failed = {"id": r.submit_task(SID, "conditioning", broken)}
    wait_for(lambda: r.snapshot(failed["id"], SID).terminal, 30, "the failed task's end")
    status, payload, done = spectrum.poll_task(failed, SID, "Conditioning")
    assert payload is None and done and status.startswith("Conditioning failed")
    assert "no modes here" in status
    assert spectrum.poll_task(None, SID) == (no_update, None, True)
