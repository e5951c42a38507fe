"""Issue 10 (limits and serving): each defect reproduced, then held fixed.

Server-wide limits that no client-chosen session token escapes, spectrum tasks counted with
runs and bounded, finished runs released from memory (reread from disk), the request body
cap, widget values of shapes no browser sends, the Host header check, the bind address's
environment variables, stop messages, queue positions on Run, failed-run tracebacks in the
log, and waitress serving app.py.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import threading
import time

import pytest
import workbench_fakes
from workbench_fakes import FakeEngine, wait_for

from engine import RunSpec, SpecError
from workbench import forms, guards, jobs
from workbench.config import ServerConfig, from_argv
from workbench.panels import live
from workbench.registry import Busy, RunRegistry

KEEP = 2  # max_loaded_runs of the memory test
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture
def make(tmp_path):
    made = []

    def factory(engine=None, **kw):
        engine = engine or FakeEngine()
        cfg = ServerConfig(run_dir=str(tmp_path / f"r{len(made)}"), **kw)
        reg = RunRegistry(cfg, engine.runner)
        made.append((reg, engine))
        return reg, engine

    yield factory
    for reg, engine in made:
        for run in engine.runs:
            run.release.set()
        reg.shutdown()


def ended(reg, run_id, owner):
    return wait_for(lambda: reg.snapshot(run_id, owner).terminal, what=f"{run_id} ended")


# ---- 6: limits per server, not per client-chosen token ---------------------------------------
def test_the_server_wide_limit_holds_whatever_the_session_tokens(make):
    reg, _ = make(max_active_per_session=4, max_active_total=6, workers=1)
    accepted, refused = 0, []
    for token in range(10):  # a client choosing ten tokens
        try:
            reg.submit_group([RunSpec(), RunSpec()], owner=f"tok{token}")
            accepted += 2
        except Busy as err:
            refused.append(str(err))
    assert accepted == 6 and len(refused) == 7
    assert "limit is 6 per server (max_active_total)" in refused[0]
    with pytest.raises(Busy, match=r"limit is 4 per session \(max_active_per_session\)"):
        reg.submit_group([RunSpec()] * 5, owner="fresh")


def test_spectrum_tasks_count_with_runs_and_are_bounded(make):
    reg, engine = make(max_active_per_session=2, max_active_total=20, max_tasks_total=2)
    hold = threading.Event()

    def slow(report, should_stop):
        while not hold.wait(0.01):
            if should_stop():
                return None
        return "spectrum"

    reg.submit_group([RunSpec(), RunSpec()], owner="A")
    with pytest.raises(Busy, match="per session"):  # two runs fill the session's two slots
        reg.submit_task("A", "spectrum", slow)
    first = reg.submit_task("B", "spectrum", slow)
    second = reg.submit_task("B", "spectrum", slow)  # replaces the first, holds one slot
    assert wait_for(lambda: reg.snapshot(first, "B").terminal, what="replaced task ended")
    assert reg.active_count("B") == 1
    reg.submit_task("C", "spectrum", slow)
    with pytest.raises(Busy, match=r"limit is 2 per server \(max_tasks_total\)"):
        reg.submit_task("D", "spectrum", slow)
    hold.set()
    assert wait_for(lambda: reg.snapshot(second, "B").status == "done", what="task done")
    reg.submit_task("D", "spectrum", slow)  # a slot is free again


def test_a_queued_task_that_is_stopped_is_cancelled_at_once(make):
    reg, _ = make(task_workers=1)
    hold = threading.Event()
    reg.submit_task("A", "other", lambda report, stop: hold.wait(5))
    queued = reg.submit_task("B", "spectrum", lambda report, stop: "x")
    assert reg.cancel(queued, "B")
    assert reg.snapshot(queued, "B").status == "cancelled"
    assert reg.active_count("B") == 0
    hold.set()


def test_a_small_spectrum_does_not_wait_behind_another_sessions_large_one(make):
    reg, _ = make(task_workers=2)
    big = threading.Event()
    reg.submit_task("A", "spectrum", lambda report, stop: big.wait(10) and "big")
    small = reg.submit_task("B", "spectrum", lambda report, stop: "small")
    t0 = time.monotonic()
    snap = wait_for(lambda: reg.snapshot(small, "B").terminal and reg.snapshot(small, "B"))
    assert snap.payload == "small" and time.monotonic() - t0 < 2.0 and not big.is_set()
    big.set()


def test_abandoned_spectrum_computations_are_bounded(make):
    reg, _ = make(task_workers=2)
    jobs.set_computation_limit(1)
    release = threading.Event()

    def compute(spec, report):
        release.wait(10)
        return {"seed": spec.seed}

    def task(seed):
        return jobs.spectrum_task(RunSpec(seed=seed), compute=compute)

    def snap(task_id):
        return reg.snapshot(task_id, "A")

    try:
        first = reg.submit_task("A", "spectrum", task(1))
        wait_for(lambda: jobs.computing() == 1, what="first computation")
        reg.cancel(first, "A")  # abandoned: its computation goes on in the background
        wait_for(lambda: snap(first).terminal, what="first task stopped")
        second = reg.submit_task("A", "spectrum", task(2))
        waiting = wait_for(
            lambda: "task_workers" in snap(second).progress and snap(second),
            what="the second waits for a computation slot",
        )
        assert "the limit is 1" in waiting.progress and jobs.computing() == 1
        release.set()
        done = wait_for(lambda: snap(second).status == "done" and snap(second))
        assert done.payload == {"seed": 2}
    finally:
        release.set()
        jobs.set_computation_limit(2)


# ---- 6: finished runs leave memory, reread from disk ------------------------------------------
def _rss_mb() -> float:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


def test_finished_runs_are_released_from_memory_and_reopened_from_disk(make, monkeypatch):
    import tracemalloc

    monkeypatch.setattr(workbench_fakes, "N_ATOMS", 20_000)  # 240 kB per frame, 10 frames a run
    reg, _ = make(engine=FakeEngine(auto=True, n_rows=10), max_loaded_runs=KEEP, workers=1)
    first = reg.submit(RunSpec(), owner="A")
    ended(reg, first, "A")
    before = reg.export_data(first, "A")
    tracemalloc.start()
    try:
        rss0, held0 = _rss_mb(), tracemalloc.get_traced_memory()[0]
        ids = []
        for _ in range(10):  # 30 runs, 3 at a time (the session's limit is 4)
            ids = [reg.submit(RunSpec(), owner="A") for _ in range(3)]
            for run_id in ids:
                ended(reg, run_id, "A")
        wait_for(lambda: reg.in_memory() == ids[1:], what="the last two saved and in memory")
        held = (tracemalloc.get_traced_memory()[0] - held0) / 2**20
    finally:
        tracemalloc.stop()
    rss = _rss_mb() - rss0
    # each run holds ~8 MB in memory (frames, the engine's result): with every run kept, 30
    # runs held 243 MB (RSS +247 MB); released beyond max_loaded_runs = 2, 27 MB (RSS +32 MB)
    assert len(reg.in_memory()) == 2 and first not in reg.in_memory()
    assert held < 50, f"{held:.0f} MB still allocated after 30 finished runs (RSS +{rss:.0f} MB)"
    again = reg.export_data(first, "A")  # reopened from its folder
    assert first in reg.in_memory()
    assert again["metrics"]["energy"].tolist() == before["metrics"]["energy"].tolist()
    assert len(again["frames"]) == len(before["frames"]) == 10
    assert (again["x_final"] == before["x_final"]).all()
    listed = {s.run_id: s for s in reg.list_runs("A")}
    assert len(listed) == 31 and listed[ids[0]].last["step"] == 180


def test_a_released_run_keeps_its_frame_number(make):
    reg, _ = make(engine=FakeEngine(auto=True, n_rows=4), max_loaded_runs=1)
    a = reg.submit(RunSpec(), owner="A")
    ended(reg, a, "A")
    frame_no = reg.snapshot(a, "A").frame_no
    b = reg.submit(RunSpec(), owner="A")
    ended(reg, b, "A")
    wait_for(lambda: reg.in_memory() == [b], what="a released, b in memory")  # b saved
    snap = reg.snapshot(a, "A", since_frame=frame_no)  # the browser has the last frame
    assert snap.frame_no == frame_no and snap.frame_x is None and snap.n_rows == 4


def test_the_page_states_the_limit_that_was_hit(make):
    from workbench import ids
    from workbench import registry as reg_mod
    from workbench.panels import spectrum

    reg, engine = make(max_active_per_session=1, max_active_total=1)
    reg_mod.install(reg)
    try:
        values = forms.default_values()
        names = list(values)
        args = ([values[n] for n in names], [ids.field(n) for n in names])
        assert live.start_run(1, *args, ["gd"], "loop", "file", None, "A")[5].startswith("Started")
        msg = live.start_run(1, *args, ["gd"], "loop", "file", None, "B")[5]
        assert msg == (
            "Not started: the server has 1 active run(s), task(s) and sweep(s) from all sessions; "
            "the limit is 1 per server (max_active_total): wait for some to finish"
        )
        status = spectrum.start_spectrum(1, *args, "loop", "file", None, "C")[2]
        assert (
            status.startswith("Not computed: the server has 1 active")
            and "(max_active_total)" in status
        )
    finally:
        reg_mod.install(None)


# ---- 14: stop messages, queue positions, failed-run tracebacks ---------------------------------
def test_a_non_owner_stopping_a_running_run_is_told_it_is_not_theirs(make):
    reg, engine = make()
    run_id = reg.submit(RunSpec(), owner="A")
    engine.wait_started(1)
    assert "not yours" in reg.stop(run_id, "B")
    assert "not yours" in reg.stop("0123456789abcdef", "B")  # unknown reads the same
    assert reg.snapshot(run_id, "A").status == "running"
    assert reg.stop(run_id, "A") is None
    ended(reg, run_id, "A")
    assert reg.stop(run_id, "A") == "That run has already finished."


def test_run_click_says_which_runs_wait_in_the_queue_and_where(make):
    reg, engine = make(workers=1, max_active_total=20)
    reg.submit_group([RunSpec()] * 2, owner="other")  # one runs, one waits
    engine.wait_started(1)
    specs = forms.parse_run_form(forms.default_values(), "loop", ["gd", "gnn"])
    ids = reg.submit_group(specs, owner="A")
    waiting = reg.waiting(ids)
    assert waiting == {ids[0]: 2, ids[1]: 3}
    g = live.new_group(ids, specs, False, 1, 400, waiting)
    assert g.message == (
        "Queued GD at position 2, GNN at position 3 (seed 0), in the queue for 1 busy worker(s)."
    )
    assert live.queue_message(g.runs, {}, 0, 2) == "Started GD, GNN (seed 0)."


def test_a_failed_runs_traceback_is_written_to_the_server_log(make, caplog):
    reg, _ = make(engine=FakeEngine(outcome="fail", auto=True))
    with caplog.at_level(logging.ERROR, logger="workbench"):
        run_id = reg.submit(RunSpec(), owner="A")
        ended(reg, run_id, "A")
    text = "\n".join(r.getMessage() for r in caplog.records)
    assert f"run {run_id}" in text and "Traceback" in text and "fake engine exploded" in text


# ---- 14: field values and messages -------------------------------------------------------------
def test_a_huge_field_value_is_not_echoed_back_in_full():
    big = "9" * 3_000_000
    with pytest.raises(SpecError) as err:
        forms.parse_run_form({**forms.default_values(), "system.n": big}, "loop", ["gd"])
    msg = forms.message_of(err.value)
    assert len(msg) < 400 and msg.endswith("… (3,000,042 characters in all)")  # was all 3 MB


def test_form_parsing_refuses_non_text_values_with_the_field_name():
    for bad in (["400"], {"n": 400}):
        with pytest.raises(SpecError, match=r"^system.n must be text, got a (list|dict)$"):
            forms.parse_run_form({**forms.default_values(), "system.n": bad}, "loop", ["gd"])


def test_widget_values_of_shapes_no_browser_sends_are_refused_with_the_field_name():
    kinds = {'{"name":"system.n","type":"field"}': "text", "wb-methods": "choices"}
    fid = {"type": "field", "name": "system.n"}
    ok = [{"id": fid, "property": "value", "value": "400"}]
    assert guards.value_refusal(kinds, ok, 100) is None
    for bad in ([1, 2], {"a": 1}, [[1]]):
        msg = guards.value_refusal(kinds, [{"id": fid, "property": "value", "value": bad}], 100)
        assert msg.startswith("Not accepted: system.n must be text or a number, got a ")
    listed = [[{"id": "wb-methods", "property": "value", "value": [{"x": 1}]}]]
    assert "wb-methods must be a list of its options" in guards.value_refusal(kinds, listed, 100)
    long = [{"id": fid, "property": "value", "value": "1" * 5000}]
    assert guards.value_refusal(kinds, long, 1000) == (
        "Not accepted: system.n holds 5,000 characters; the limit is 1,000 (max_field_chars)."
    )


def test_runs_and_sweeps_share_the_session_and_server_limits(make, tmp_path):
    """An active sweep holds a slot of its session and of the server against runs, and runs
    hold theirs against sweeps (refused before any cluster starts)."""
    from workbench.sweeps import SweepManager

    reg, _ = make(max_active_per_session=2, max_active_total=3)
    sweeps = {"A": 2, "B": 0}  # active sweeps per session (3 on the server with C's one)
    reg.outside_active = lambda owner: (sweeps.get(owner, 0), 3)
    with pytest.raises(Busy, match=r"limit is 2 per session"):
        reg.submit(RunSpec(), owner="A")
    with pytest.raises(Busy, match=r"sweep\(s\) from all sessions; the limit is 3 per server"):
        reg.submit(RunSpec(), owner="B")
    reg.outside_active = lambda owner: (0, 0)
    reg.submit(RunSpec(), owner="A")  # no sweeps: the run is taken
    manager = SweepManager(tmp_path / "sweeps", limit=2, max_total=3,
                           max_active=lambda owner: (2, 2))  # fmt: skip
    with pytest.raises(ValueError, match=r"limit is 2 per session"):
        manager.submit(None, "A")
    manager = SweepManager(tmp_path / "sweeps", limit=2, max_total=3,
                           max_active=lambda owner: (0, 3))  # fmt: skip
    with pytest.raises(ValueError, match=r"limit is 3 per server \(max_active_total\)"):
        manager.submit(None, "A")


def test_the_server_connects_the_sweep_manager_to_the_run_limits(client):
    from workbench import registry as reg
    from workbench import sweeps

    manager = sweeps.get()
    assert reg.get().outside_active == manager.active_counts
    assert manager._other_active == reg.get().active_counts
    assert manager.max_total == reg.get().config.max_active_total


# ---- 14: bind address, Host header --------------------------------------------------------------
def test_the_bind_address_ignores_the_generic_host_and_port_variables(monkeypatch):
    monkeypatch.setenv("HOST", "0.0.0.0")
    monkeypatch.setenv("PORT", "1234")
    cfg = from_argv([])
    assert (cfg.host, cfg.port) == ("127.0.0.1", 8050)
    monkeypatch.setenv("SLOWMODE_HOST", "0.0.0.0")
    monkeypatch.setenv("SLOWMODE_PORT", "9001")
    cfg = from_argv([])
    assert (cfg.host, cfg.port) == ("0.0.0.0", 9001)
    assert from_argv(["--host", "127.0.0.2", "--port", "8123"]).port == 8123  # make run


def test_host_header_check():
    allowed = ServerConfig(host="10.0.0.5", allowed_hosts=("class.example",)).host_names
    ok_hosts = ("10.0.0.5:8050", "localhost:8050", "127.0.0.1", "[::1]:8050", "Class.Example")
    for ok in (*ok_hosts, "192.168.1.7:8050", "[fe80::1]"):  # an IP address is never rebound
        assert guards.host_refusal(ok, allowed) is None, ok
    msg = guards.host_refusal("attacker.example:8050", allowed)
    assert "'attacker.example:8050' is not a name of this server" in msg
    assert "--allowed-host" in msg
    assert guards.host_refusal("x" * 5000, allowed).count("x") < 100
    assert guards.host_refusal("any.example", ServerConfig(allowed_hosts=("*",)).host_names) is None


# ---- over HTTP: one app in this process ----------------------------------------------------------
@pytest.fixture(scope="module")
def client(tmp_path_factory):
    from browser_util import share_dash_callbacks

    from workbench import registry as reg
    from workbench.server import create_app

    share_dash_callbacks()  # other test files' apps get the callbacks too
    run_dir = tmp_path_factory.mktemp("runs")
    cfg = ServerConfig(run_dir=str(run_dir), bundle_dirs=(), structure_dirs=(),
                       max_request_bytes=4_000_000)  # fmt: skip
    app = create_app(cfg, runner=FakeEngine(auto=True).runner)
    c = app.server.test_client()
    assert c.get("/_dash-dependencies").status_code == 200  # Dash sets up its callbacks
    c.app = app
    yield c
    share_dash_callbacks()
    reg.get().shutdown()
    reg.install(None)


def _start_run_body(app, field_values: dict) -> dict:
    """A Dash request for live.start_run (protein tab, PDB id) as the page sends it, with
    ``field_values`` changed."""
    from dash._utils import split_callback_id

    from workbench import ids as wb_ids
    from workbench.panels import method, system

    kinds = guards.widget_kinds(app.layout())  # every form widget on the page
    names = [json.loads(k)["name"] for k in kinds if k.startswith('{"name":')]
    assert "protein.pdb_id" in names
    values = forms.default_values()
    values.update(field_values)
    fields = [
        {"id": {"type": "field", "name": n}, "property": "value", "value": values.get(n)}
        for n in names
    ]
    output = next(k for k in app.callback_map if k.startswith(f"..{live.ID.CARDS}.children."))
    return {
        "output": output,
        "outputs": split_callback_id(output),
        "inputs": [{"id": method.ID.RUN_BTN, "property": "n_clicks", "value": 1}],
        "state": [
            fields,
            [
                {
                    "id": {"type": "field", "name": n},
                    "property": "id",
                    "value": {"type": "field", "name": n},
                }
                for n in names
            ],  # fmt: skip
            {"id": method.ID.METHODS, "property": "value", "value": ["gd"]},
            {"id": system.ID.TABS, "property": "value", "value": "protein"},
            {"id": system.ID.PROTEIN_SOURCE, "property": "value", "value": "pdbid"},
            {"id": system.ID.UPLOAD_TOKEN, "property": "data", "value": None},
            {"id": wb_ids.SESSION, "property": "data", "value": "tok"},
        ],
        "changedPropIds": [f"{method.ID.RUN_BTN}.n_clicks"],
    }


def test_a_non_string_in_a_text_field_is_refused_not_a_server_error(client):
    body = _start_run_body(client.app, {"protein.pdb_id": ["2JOF"]})
    r = client.post("/_dash-update-component", json=body)
    assert r.status_code == 400
    assert r.text.startswith("Not accepted: protein.pdb_id must be text or a number, got a list")
    body = _start_run_body(client.app, {"protein.sequence": "A" * 20_000})
    r = client.post("/_dash-update-component", json=body)
    assert r.status_code == 400 and "max_field_chars" in r.text and len(r.text) < 200
    body = _start_run_body(client.app, {})
    body["state"][-1]["value"] = {"not": "a token"}
    r = client.post("/_dash-update-component", json=body)
    assert r.status_code == 400 and "wb-session must be a session token" in r.text


def test_the_request_body_is_capped_with_a_message_naming_the_limit(client):
    r = client.post("/_dash-update-component", data=b"x" * 5_000_000,
                    content_type="application/json")  # fmt: skip
    assert r.status_code == 413
    assert r.text.strip() == (
        "The request body (5 MB) is larger than this server's limit of 4 MB (max_request_bytes)."
    )


def test_a_foreign_host_header_is_refused(client):
    assert client.get("/", headers={"Host": "127.0.0.1:8050"}).status_code == 200
    r = client.get("/_wb/frames?runs=", headers={"Host": "rebound.attacker.example"})
    assert r.status_code == 400 and "not a name of this server" in r.text


# ---- waitress serves app.py ----------------------------------------------------------------
def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_app_py_serves_with_waitress_and_exits_on_sigterm(tmp_path):
    import http.client

    port = _free_port()
    args = ["--port", str(port), "--host", "127.0.0.1", "--run-dir", str(tmp_path),
            "--no-warm-up", "--compile-cache-dir", "", "--bundle-dir", str(tmp_path)]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": ROOT, "JAX_PLATFORMS": "cpu", "HOST": "0.0.0.0"}
    proc = subprocess.Popen(
        [sys.executable, os.path.join(ROOT, "app.py"), *args],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )

    def get(path, host="127.0.0.1"):
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        try:
            conn.request("GET", path, headers={"Host": host})
            r = conn.getresponse()
            return r.status, dict(r.getheaders()), r.read().decode()
        except OSError:
            return None
        finally:
            conn.close()

    try:
        first = wait_for(lambda: get("/"), timeout=120, what="the server answers")
        status, headers, _ = first
        assert status == 200 and headers.get("Server") == "slowmode-workbench"
        status, _, text = get("/", host="evil.example")
        assert status == 400 and "not a name of this server" in text
        frames = get("/_wb/frames?runs=abc:0")
        assert frames[0] == 200 and json.loads(frames[2]) == {"abc": {"gone": True}}
        proc.send_signal(signal.SIGTERM)
        t0 = time.time()
        proc.wait(timeout=15)
        assert time.time() - t0 < 10
        out = proc.stdout.read()
        assert "waitress" in out and "shutting down" in out
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_help_lists_every_flag_with_its_text(capsys):
    """`python app.py --help` prints every setting (a "%" in a help text once broke it)."""
    import dataclasses

    with pytest.raises(SystemExit) as done:
        from_argv(["--help"])
    assert done.value.code == 0
    out = " ".join(capsys.readouterr().out.split())
    for f in dataclasses.fields(ServerConfig):
        if f.metadata.get("flag"):
            assert f.name.replace("_", "-").removesuffix("s") in out, f.name
    assert "15-20 % of the steps/s" in out  # a literal "%" comes through
