"""The pure helpers of bench/bench_reliability.py (the load-and-fault benchmark itself starts
servers and is not run in CI): reading Dash dependency strings and component trees the way
dash-renderer does, the fuzz catalogues, and the damage and log helpers."""

from __future__ import annotations

import json
import math
import time
from types import SimpleNamespace

import numpy as np
import plotly.utils
import pytest

from bench import bench_reliability as br


def as_json(component):
    """A Dash component as the server sends it (the layout / callback JSON)."""
    return json.loads(json.dumps(component, cls=plotly.utils.PlotlyJSONEncoder))


def test_output_strings_of_one_several_and_pattern_outputs():
    assert br.parse_outputs("wb-system-summary.children") == [("wb-system-summary", "children")]
    multi = "..wb-live-cards.children...wb-run-msg.children@1a2b...wb-curves.figure.."
    assert br.parse_outputs(multi) == [
        ("wb-live-cards", "children"),
        ("wb-run-msg", "children@1a2b"),
        ("wb-curves", "figure"),
    ]
    pattern = '..{"name":["ALL"],"type":"field-msg"}.children...wb-x.data..'
    assert br.parse_outputs(pattern) == [
        ({"name": ["ALL"], "type": "field-msg"}, "children"),
        ("wb-x", "data"),
    ]


def test_callbacks_are_named_by_their_outputs():
    outs = br.parse_outputs('..{"name":["ALL"],"type":"field-msg"}.children...wb-x.data@12ab..')
    assert br.callback_name(outs) == "field-msg(name).children, wb-x.data"


def test_ids_and_wildcards_match_as_in_dash():
    field = {"type": "field", "name": "system.n"}
    assert br.id_key(field) == '{"name":"system.n","type":"field"}'
    assert br.spec_id(br.id_key(field)) == field and br.spec_id("wb-run") == "wb-run"
    assert br.matches({"type": "field", "name": ["ALL"]}, field)
    assert not br.matches({"type": "field-msg", "name": ["ALL"]}, field)
    assert not br.matches({"type": "field", "name": ["ALL"], "x": 1}, field)
    assert br.matches("wb-run", "wb-run") and not br.matches("wb-run", field)
    assert br.is_pattern({"type": "a", "index": ["MATCH"]}) and not br.is_pattern(field)


def test_the_runs_list_is_read_from_the_real_rendered_table():
    from workbench.panels import runs

    def snap(run_id, status, step):
        return SimpleNamespace(
            run_id=run_id, status=status, source="session", label="gd", created=time.time(),
            spec={"system": {"kind": "lj-loop", "n": 60}}, last={"step": step, "energy": -1.5},
        )  # fmt: skip

    table = as_json(runs.runs_table([snap("a" * 16, "done", 300), snap("b" * 16, "damaged", 0)]))
    assert br.runs_in_table(table) == [("a" * 16, "done"), ("b" * 16, "damaged")]
    assert br.runs_in_table(as_json(runs.runs_table([]))) == []
    ids = [cid for cid, _ in br.components(table)]
    assert {"type": "run-open", "index": "b" * 16} in ids
    assert "done" in br.text_of(table) and "lj-loop n=60" in br.text_of(table)


def test_page_model_replaces_children_and_their_ids():
    from dash import html

    layout = as_json(html.Div([html.Div(id="box"), html.Button(id="b1")], id="root"))
    page = br.Page.__new__(br.Page)
    page.comps = {}
    page._register(layout, owner=None)
    page.set("box", "children", as_json([html.Button(id={"type": "x", "index": "1"})]))
    assert page.matching({"type": "x", "index": ["ALL"]})
    page.set("box", "children", as_json([html.Button(id={"type": "x", "index": "2"})]))
    assert [c["id"]["index"] for c in page.matching({"type": "x", "index": ["ALL"]})] == ["2"]
    assert page.get("b1", "n_clicks") is None and page.get("root", "id") == "root"


@pytest.mark.parametrize("kind", ["number", "text", "choice", "bool", "list", "store"])
def test_fuzz_catalogues_are_large_deterministic_and_marked(kind):
    opts = ("gd", "cg", "gnn")
    values = br.fuzz_values(kind, 1000, seed=3, options=opts)
    assert len(values) >= 1000
    again = br.fuzz_values(kind, 1000, seed=3, options=opts)
    assert [repr(v.value) for v in values] == [repr(v.value) for v in again]
    browser = [v.value for v in values if v.browser]
    if kind in ("number", "text"):
        assert all(v is None or isinstance(v, str) for v in browser) and len(browser) > 500
        assert any(isinstance(v, str) and len(v) >= 100_000 for v in browser)
    elif kind == "choice":
        assert set(browser) == set(opts)
    elif kind == "bool":
        assert sorted(map(repr, browser)) == ["[True]", "[]"]
    elif kind == "list":
        assert all(set(v) <= set(opts) for v in browser) and [] in browser
    else:
        assert browser == []
    hand = [v.value for v in values if not v.browser]
    kinds = {type(v).__name__ for v in hand}
    assert {"NoneType", "int", "float", "bool", "list", "dict", "str"} <= kinds
    assert any(isinstance(v, float) and math.isnan(v) for v in hand)


def test_upload_values_are_data_urls_when_a_browser_could_send_them():
    import base64

    values = br.upload_values(200, seed=0, cap=1000)
    assert len(values) >= 200
    sizes = []
    for fz, name in values:
        if fz.browser:
            head, _, b64 = fz.value.partition(",")
            assert head.startswith("data:") and head.endswith(";base64") and isinstance(name, str)
            sizes.append(len(base64.b64decode(b64, validate=True)))
    assert 0 in sizes and max(sizes) > 1000  # an empty file and one over the cap
    assert any(not isinstance(fz.value, str) for fz, _ in values)


def test_which_number_boxes_must_show_a_message():
    f = br.number_expected_invalid
    assert f("abc", 50, 10000, False) and f("nan", 0, 1, False) and f("1e309", 0, 1, False)
    assert f("20", 50, 10000, False) and f("10001", 50, 10000, False) and f("", 1, 2, False)
    assert f(" 60 ", 50, 10000, False) is None and f("", 1, 2, True) is None
    assert f([1], 0, 1, False) is None and f(None, 0, 1, False) is None


def test_traceback_sites_name_the_projects_innermost_frame_and_the_exception():
    root = "/w/repo"
    log = (
        "12:00 workbench: started\n"
        "Exception on /_dash-update-component [POST]\n"
        "Traceback (most recent call last):\n"
        '  File "/w/repo/.venv/lib/python3.11/site-packages/dash/_callback.py", line 60, in f\n'
        "    return func(*args, **kwargs)\n"
        '  File "/w/repo/workbench/panels/method.py", line 274, in fill_form\n'
        "    return preset_form(*PRESETS[preset], names)\n"
        '  File "/w/repo/.venv/lib/python3.11/site-packages/x.py", line 9, in g\n'
        "KeyError: 'villin'\n"
        '127.0.0.1 - - "POST /_dash-update-component HTTP/1.1" 500 -\n'
        "Traceback (most recent call last):\n"
        '  File "/w/repo/workbench/panels/method.py", line 274, in fill_form\n'
        "KeyError: 'x'\n"
        "Traceback (most recent call last):\n"
        '  File "/usr/lib/python3.11/json/decoder.py", line 3, in h\n'
        "ValueError: worse\n"
    )
    assert br.traceback_sites(log, root=root) == {
        "workbench/panels/method.py:274 fill_form: KeyError": 2,
        "?: ValueError": 1,
    }
    assert br.traceback_sites("no errors\n", root=root) == {}


def test_fuzz_errors_group_by_widget_callback_and_origin():
    errs = br.FuzzErrors()
    errs.add("system.n", [("validate", 200), ("risks", 500)], br.Fuzz([1], False, "json"))
    errs.add("system.n", [("risks", 500)], br.Fuzz({}, False, "json"))
    errs.add("tab", [("switch", "conn")], br.Fuzz("x", True, "text"))
    errs.add("tab", [("switch", 204)], br.Fuzz("y", True, "text"))
    assert errs.report() == [
        {"widget": "tab", "callback": "switch", "browser_sendable": True, "count": 1,
         "examples": ["'x'"]},
        {"widget": "system.n", "callback": "risks", "browser_sendable": False, "count": 2,
         "examples": ["[1]", "{}"]},
    ]  # fmt: skip


def test_strict_json_refuses_nan_like_a_browser():
    assert br.strict_json(b'{"a": [1, 2.5, null]}') == {"a": [1, 2.5, None]}
    for token in (b"NaN", b"Infinity", b"-Infinity"):
        with pytest.raises(ValueError):
            br.strict_json(b'{"xyz": [' + token + b"]}")


def test_rss_flat_is_growth_over_the_second_round():
    assert br.rss_flat(500.0, 540.0) == (0.08, True)
    assert br.rss_flat(500.0, 560.0) == (0.12, False)
    assert br.rss_flat(None, 560.0) == (None, None)


def test_damage_helpers(tmp_path):
    path = tmp_path / "frames.npz"
    np.savez(path, frames_x=np.zeros((3, 5, 3)))
    size = path.stat().st_size
    br.apply_damage(tmp_path, "frames.npz", "truncate")
    assert path.stat().st_size == size // 2
    with pytest.raises(Exception):  # noqa: B017 (numpy raises several kinds)
        np.load(path)["frames_x"]
    data = b"0123456789" * 30
    (tmp_path / "metrics.csv").write_bytes(data)
    br.apply_damage(tmp_path, "metrics.csv", "garble", seed=1)
    garbled = (tmp_path / "metrics.csv").read_bytes()
    assert len(garbled) == len(data) and garbled != data
    assert garbled[:100] == data[:100] and garbled[200:] == data[200:]
    meta = {"run_id": "r", "owner": "A", "status": "done", "created": 1.0, "version": 3}
    for how, check in [
        ("created", lambda m: m["created"] == "yesterday" and m["owner"] == "A"),
        ("types", lambda m: m["status"] == 3 and m["timings"] == []),
        ("[]", lambda m: m == []),
        ("{}", lambda m: m == {}),
    ]:
        (tmp_path / "meta.json").write_text(json.dumps(meta))
        br.apply_damage(tmp_path, "meta.json", how)
        assert check(json.loads((tmp_path / "meta.json").read_text())), how


def test_load_plan_is_small_loops_two_methods_each():
    plan = br.load_plan(sessions=4, clicks=2, quick=False)
    assert len(plan) == 4 and all(len(clicks) == 2 for clicks in plan)
    groups = [g for clicks in plan for g in clicks]
    assert all(60 <= g["n"] <= 100 and len(g["methods"]) == 2 for g in groups)
    assert {m for g in groups for m in g["methods"]} == {"gd", "cg", "gnn", "fire"}
    diverging = [g for g in groups if g["fields"]]
    assert len(diverging) == 1 and diverging[0]["fields"] == br.DIVERGE
    assert "gd" in diverging[0]["methods"]
    assert all(100 <= g["steps"] <= 500 for g in groups)


def test_server_command_binds_loopback_with_its_own_run_dir():
    cmd = br.server_command(8123, "/tmp/x")
    assert cmd[1] == "app.py" and cmd[cmd.index("--host") + 1] == "127.0.0.1"
    assert cmd[cmd.index("--port") + 1] == "8123" and cmd[cmd.index("--run-dir") + 1] == "/tmp/x"
    assert cmd[cmd.index("--bundle-dir") + 1] == "/tmp/x"
