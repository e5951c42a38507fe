"""Sweeps: specification, expansion and validation; execution on an embedded LocalCluster
(results, bundles, resume, cancel) and on a separately started Dask scheduler and worker."""

import json
import math
import os
import subprocess
import sys
import time

import pytest

from engine import EnergyConfig, RunSpec, ScheduleConfig, SpecError, SystemConfig, io
from engine.cluster import WORKER_ENV, run_sweep
from engine.sweeps import Axis, SweepSpec, estimate_seconds, expand, parse_seeds, parse_vary

BASE = RunSpec(
    system=SystemConfig(kind="bond-lj-loop", n=50),
    energy=EnergyConfig(dtype="float64"),
    schedule=ScheduleConfig(max_steps=100, stopping="none"),
)
TINY = SweepSpec(
    base=BASE,
    axes=(parse_vary("optim.learning_rate=0.01,0.03"),),
    methods=("gd", "cg"),
    seeds=(0, 1),
    name="tiny",
)


def test_vary_and_seeds_syntax():
    assert parse_vary("optim.learning_rate=1e-3:1e-1:log:3").expand() == (0.001, 0.01, 0.1)
    assert parse_vary("reparam.hidden=8,16,32").expand() == (8, 16, 32)
    assert parse_vary("system.n=50:150:lin:3").expand() == (50, 100, 150)
    random = parse_vary("optim.learning_rate=1e-4:1e-1:random:4")
    assert random.expand(3) == random.expand(3) != random.expand(4)  # seeded by the sweep
    assert all(1e-4 <= v <= 1e-1 for v in random.expand(3))
    assert parse_seeds("0-4") == (0, 1, 2, 3, 4) and parse_seeds("0,3,7") == (0, 3, 7)
    with pytest.raises(SpecError, match="--seeds"):
        parse_seeds("4-0")


@pytest.mark.parametrize(
    "text, field, message",
    [
        ("optim.bogus=1", "--vary", "not a declared run-spec field"),
        ("optim.learning_rate", "--vary", "must be FIELD=v1,v2"),
        ("optim.learning_rate=20", "optim.learning_rate", r"must be a number in \(0, 10\]"),
        ("optim.learning_rate=0.1:0.01:log:3", "axis optim.learning_rate", "lo <= hi"),
        ("optim.name=adam:sgd:lin:2", "axis optim.name", "needs a numeric field"),
        ("system.n=50:100:lin:x", "--vary", "count must be an integer"),
    ],
)
def test_bad_axes_name_the_field_and_the_range(text, field, message):
    with pytest.raises(SpecError, match=message) as err:
        parse_vary(text)
    assert err.value.field == field


def test_expansion_is_stable_and_validated():
    runs = expand(TINY)
    assert TINY.n_runs == len(runs) == 8
    assert len({r.key for r in runs}) == 8 and [r.key for r in expand(TINY)] == [
        r.key for r in runs
    ]
    assert {(r.method, r.spec.reparam.kind) for r in runs} == {("gd", "none"), ("cg", "linear")}
    assert {r.spec.seed for r in runs} == {0, 1}
    assert {r.spec.optim.learning_rate for r in runs} == {0.01, 0.03}
    assert SweepSpec.from_dict(json.loads(json.dumps(TINY.to_dict()))) == TINY
    with pytest.raises(SpecError, match="axis reparam.n_layers must be an integer in"):
        SweepSpec(BASE, (Axis("reparam.n_layers", values=(1, 4)),), ("gnn",))
    with pytest.raises(SpecError, match=r"must be < n=50, got 60 \(at \{'system.loop_stride': 60"):
        expand(SweepSpec(BASE, (Axis("system.loop_stride", values=(10, 60)),), ("gd",)))
    with pytest.raises(SpecError, match="method must be one of"):
        SweepSpec(BASE, (), ("lbfgs",))
    longer = SweepSpec(BASE.replace(**{"schedule.max_steps": 1000}), TINY.axes, TINY.methods)
    assert estimate_seconds(longer) > estimate_seconds(SweepSpec(BASE, TINY.axes, TINY.methods))


@pytest.fixture(scope="module")
def client():
    from distributed import Client

    from engine.cluster import local_cluster

    cluster = local_cluster(2)
    c = Client(cluster)
    yield c
    c.close()
    cluster.close()


def test_the_embedded_cluster_takes_no_fixed_port(client):
    """dashboard_address=None still bound 8787 (dask/distributed#8136): a second server or
    another Dask user on the machine then collided. Now a free loopback port."""
    scheduler = client.cluster.scheduler
    (address,) = [sock.getsockname() for sock in scheduler.http_server._sockets.values()]
    assert address[0] == "127.0.0.1" and address[1] != 8787


@pytest.fixture(scope="module")
def tiny(client, tmp_path_factory):
    """TINY run once on the embedded cluster: (its outcome, its folder, the progress counts
    it reported). Two tests read it: the sweep's own checks, and the separate scheduler's."""
    folder, seen = tmp_path_factory.mktemp("tiny"), []
    outcome = run_sweep(TINY, folder, client=client, on_row=lambda r, c: seen.append(c))
    return outcome, folder, seen


def test_sweep_on_a_local_cluster_writes_bundles_and_resumes(client, tiny):
    outcome, tmp_path, seen = tiny
    assert outcome.status == "done" and outcome.ran == 8 and len(outcome.rows) == 8
    assert seen[-1]["done"] == 8 and seen[-1]["pending"] == 0
    for row in outcome.rows:
        assert row["status"] == "done" and math.isfinite(row["final_energy"])
        bundle = io.read_bundle(tmp_path / "runs" / row["key"])
        assert bundle["config"]["spec"]["seed"] == row["seed"]
        assert bundle["metrics"]["energy"][-1] == pytest.approx(row["final_energy"])
    assert (tmp_path / "results.csv").read_text().count("\n") == 9
    assert SweepSpec.from_dict(io.read_json(tmp_path / "sweep.json")) == TINY
    again = run_sweep(TINY, tmp_path, client=client)
    assert again.ran == 0 and [r["final_energy"] for r in again.rows] == [
        r["final_energy"] for r in outcome.rows
    ]


def test_a_failed_run_is_a_row_not_the_end_of_the_sweep(client, tmp_path):
    protein = SweepSpec(
        RunSpec(system=SystemConfig(kind="protein", pdb=str(tmp_path / "missing.pdb"))),
        (),
        ("gd",),
    )
    mixed = run_sweep(protein, tmp_path / "p", client=client)
    assert [r["status"] for r in mixed.rows] == ["failed"]
    assert "missing.pdb" in mixed.rows[0]["message"]


def test_cancel_stops_the_whole_sweep(client, tmp_path):
    slow = SweepSpec(
        BASE.replace(**{"schedule.max_steps": 200000, "chunk_size": 20}),
        (parse_vary("optim.learning_rate=0.01,0.02,0.03"),),
        ("gd",),
        (0, 1),
    )
    t0 = time.monotonic()
    outcome = run_sweep(
        slow, tmp_path, client=client, should_stop=lambda: time.monotonic() - t0 > 3
    )
    assert outcome.status == "cancelled"
    assert time.monotonic() - t0 < 60  # the running tasks saw the event between chunks
    assert [r["status"] for r in outcome.rows] == ["stopped"] * 6
    ran = [r["steps"] for r in outcome.rows if math.isfinite(r["steps"])]
    assert ran and max(ran) < 200000  # the runs that had started stopped at a chunk boundary


def _spawn(args, **kw):
    env = {**os.environ, **WORKER_ENV}
    return subprocess.Popen(args, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, **kw)


@pytest.mark.slow
def test_sweep_through_a_separately_started_scheduler_matches_the_embedded_cluster(tiny, tmp_path):
    bindir = os.path.dirname(sys.executable)
    sched_file = tmp_path / "scheduler.json"
    dask = os.path.join(bindir, "dask")
    scheduler = _spawn([dask, "scheduler", "--host", "127.0.0.1", "--port", "0",
                        "--no-dashboard", "--scheduler-file", str(sched_file)])  # fmt: skip
    worker = None
    try:
        deadline = time.monotonic() + 60
        while not sched_file.exists() and time.monotonic() < deadline:
            time.sleep(0.1)  # polling for the file the scheduler writes when it listens
        address = json.loads(sched_file.read_text())["address"]
        assert address.startswith("tcp://127.0.0.1:")
        worker = _spawn([dask, "worker", address, "--nworkers", "1",
                         "--nthreads", "1", "--no-dashboard", "--host", "127.0.0.1"])  # fmt: skip
        out = tmp_path / "remote"
        cmd = [sys.executable, "-m", "engine", "sweep", "--system", "bond-lj-loop", "--n", "50",
               "--steps", "100", "--stopping", "none", "--dtype", "float64",
               "--vary", "optim.learning_rate=0.01,0.03", "--methods", "gd,cg", "--seeds", "0-1",
               "--scheduler", address, "--out", str(out), "--quiet"]  # fmt: skip
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
        assert proc.returncode == 0, proc.stderr[-2000:]
        assert "| optim.learning_rate | method |" in proc.stdout
        remote = {r["key"]: r for r in map(json.loads, (out / "results.jsonl").open())}
        local = {r["key"]: r for r in tiny[0].rows}
        assert set(remote) == set(local) and len(local) == 8  # same specs, same keys
        for key, row in local.items():
            assert remote[key]["final_energy"] == row["final_energy"], key
    finally:
        for proc in (worker, scheduler):
            if proc is not None:
                proc.terminate()
                proc.wait(timeout=30)


def test_python_api_returns_the_table(client, tmp_path):
    import engine

    small = SweepSpec(BASE, (), ("gd",), (0, 1), name="api")
    rows = engine.sweep(small, client, out_dir=tmp_path)
    assert [(r["method"], r["seed"], r["status"]) for r in rows] == [
        ("gd", 0, "done"),
        ("gd", 1, "done"),
    ]


def test_a_protocol_of_per_method_specs_is_a_sweep():
    from engine.presets import paper_spec

    specs = {m: paper_spec("lj-loop", 400, m, 0, max_steps=1000) for m in ("gd", "cg", "gnn")}
    sweep = SweepSpec.from_method_specs(specs, seeds=(0, 1, 2), name="fig3-paper")
    runs = expand(sweep)
    assert len(runs) == 9
    assert all(r.spec == specs[r.method].replace(seed=r.seed) for r in runs)
    assert SweepSpec.from_dict(json.loads(json.dumps(sweep.to_dict()))) == sweep
