"""The workbench's sweeps: a session's sweep runs on Dask in the background, belongs to it,
survives a restart, can be cancelled; the panel's pure views of the results."""

import math
import time

import pytest

from engine import EnergyConfig, RunSpec, ScheduleConfig, SystemConfig
from engine.sweeps import SweepSpec, parse_vary
from workbench import sweep_views
from workbench.sweeps import SweepManager

BASE = RunSpec(
    system=SystemConfig(kind="bond-lj-loop", n=50),
    energy=EnergyConfig(dtype="float64"),
    schedule=ScheduleConfig(max_steps=100, stopping="none"),
)
SPEC = SweepSpec(BASE, (parse_vary("optim.learning_rate=0.01,0.03"),), ("gd", "cg"), (0, 1))


@pytest.fixture(scope="module")
def client():
    from distributed import Client

    from engine.cluster import local_cluster

    cluster = local_cluster(2)
    c = Client(cluster)
    yield c
    c.close()
    cluster.close()


def wait_for(predicate, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)  # polling a condition, not a fixed wait
    raise AssertionError(f"timed out waiting for {what}")


def test_a_sweep_runs_in_the_background_belongs_to_its_session_and_survives_restart(
    client, tmp_path
):
    manager = SweepManager(tmp_path, client=client, limit=2)
    sid = manager.submit(SPEC, "alice")
    assert manager.snapshot(sid, "bob") is None  # another session reads "not found"
    snap = wait_for(
        lambda: (s := manager.snapshot(sid, "alice")) is not None and s.terminal and s, 120, "done"
    )
    assert snap.status == "done" and len(snap.rows) == 8 and snap.n_runs == 8
    assert "lowest final energy" in snap.message
    key = snap.rows[0]["key"]
    assert manager.run_folder(sid, key, "alice") and manager.run_folder(sid, key, "bob") is None
    again = SweepManager(tmp_path, client=client)  # a restarted server lists it again
    (old,) = again.list("alice")
    assert old.status == "done" and {r["key"] for r in old.rows} == {r["key"] for r in snap.rows}
    assert again.list("bob") == []


def test_cancel_and_the_session_limit(client, tmp_path):
    slow = SweepSpec(BASE.replace(**{"schedule.max_steps": 10**6}), (), ("gd",), (0, 1, 2))
    manager = SweepManager(tmp_path, client=client, limit=1)
    sid = manager.submit(slow, "alice")
    with pytest.raises(ValueError, match="limit is 1"):
        manager.submit(SPEC, "alice")
    wait_for(lambda: manager.snapshot(sid, "alice").status == "running", 60, "running")
    assert not manager.cancel(sid, "bob") and manager.cancel(sid, "alice")
    snap = wait_for(lambda: (s := manager.snapshot(sid, "alice")).terminal and s, 60, "cancelled")
    assert snap.status == "cancelled"
    assert all(r["status"] == "stopped" for r in snap.rows)


ROWS = [
    {"key": f"{m}_s{s}_{lr}", "method": m, "seed": s, "optim.learning_rate": lr,
     "status": "done", "final_energy": e + 0.01 * s, "best_energy": e, "wall_time_s": t + s,
     "steps": 100.0, "final_bond_ok_frac": 1.0}
    for m, e, t in (("gd", -1.0, 1.0), ("gnn", -2.0, 3.0))
    for lr in (0.01, 0.1)
    for s in (0, 1)
] + [{"key": "gnn_fail", "method": "gnn", "seed": 2, "optim.learning_rate": 0.1,
      "status": "failed", "final_energy": math.nan, "wall_time_s": math.nan,
      "steps": math.nan}]  # fmt: skip


def test_points_average_over_seeds_and_skip_failures():
    pts = sweep_views.points(ROWS, ["optim.learning_rate"])
    gnn = next(p for p in pts if p["method"] == "gnn" and p["values"]["optim.learning_rate"] == 0.1)
    assert (gnn["runs"], gnn["ok"], gnn["failed"]) == (3, 2, 1)
    assert gnn["energy"] == pytest.approx(-1.995) and gnn["time"] == pytest.approx(3.5)
    assert gnn["energy_sd"] == pytest.approx(0.01 / math.sqrt(2))
    assert gnn["best_key"] == "gnn_s0_0.1"


def test_views_show_every_method_and_open_the_best_run():
    fig = sweep_views.scatter_figure(ROWS, ["optim.learning_rate"], 9)
    assert [t.name for t in fig.data] == ["GD", "GNN"]
    assert "9 of 9 runs" in fig.layout.title.text
    assert set(fig.data[1].customdata) == {"gnn_s0_0.01", "gnn_s0_0.1"}
    par = sweep_views.parallel_figure(ROWS, ["optim.learning_rate"])
    labels = [d.label for d in par.data[0].dimensions]
    assert labels == ["log10 learning rate", "method", "final energy", "time (s)", "bonds intact"]
    columns, data = sweep_views.table(ROWS, ["optim.learning_rate"])
    assert "optim__learning_rate" in [c["id"] for c in columns]  # no dots in DataTable ids
    assert data[-1]["final_energy"] is None and data[0]["method"] == "GD"


def test_the_panel_says_what_its_plots_will_show_before_a_sweep(tmp_path):
    from workbench import sweeps
    from workbench.panels import sweep as panel

    manager = SweepManager(tmp_path)  # no cluster is started until a sweep is submitted
    sweeps.install(manager)
    try:
        status, scatter, parallel, columns, data, reply = panel.poll_sweep(0, None, "sid")
    finally:
        sweeps.install(None)
        manager.shutdown()
    texts = [a.text for fig in (scatter, parallel) for a in fig.layout.annotations]
    assert "No sweep yet" in texts[0] and "parallel coordinates" in texts[1]
    assert not scatter.layout.xaxis.visible and reply == {"more": False, "tick": 0}
