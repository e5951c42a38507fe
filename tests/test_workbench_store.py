"""One run format on disk (workbench runs are CLI bundles), the live buffers that make a poll
cost what is new, and the access rules as plain functions."""

import math
import types

import numpy as np
import pytest
from workbench_fakes import FakeEngine, wait_for

from engine import RunSpec, ScheduleConfig, SystemConfig, analysis, build_system, cli
from engine import io as engine_io
from workbench import access, jobs
from workbench.config import ServerConfig
from workbench.live import Columns
from workbench.registry import CLI_OWNER, RunRegistry

SMALL = RunSpec(
    system=SystemConfig(kind="lj-loop", n=50),
    schedule=ScheduleConfig(max_steps=40, stopping="none"),
    method_label="gd",
)


@pytest.fixture
def make(tmp_path):
    made = []

    def factory(engine=None, run_dir=None, **kw):
        fake = engine or FakeEngine()
        cfg = ServerConfig(run_dir=str(run_dir or tmp_path / "runs"), **kw)
        reg = RunRegistry(cfg, fake.runner)
        made.append((reg, fake))
        return reg, fake

    yield factory
    for reg, fake in made:
        for run in fake.runs:
            run.release.set()
        reg.shutdown()


def saved(reg, folder, run_id, owner):
    """Wait until a finished run's bundle and its newest meta.json are on disk."""

    def done():
        if not (folder / "metrics.csv").exists():
            return False
        config, meta = engine_io.read_json(folder / "config.json"), engine_io.read_meta(folder)
        return bool(config["timings"]) and meta["version"] == reg.snapshot(run_id, owner).version

    return wait_for(done, what="persisted")


def auto_run(reg, spec, owner="A"):
    run_id = reg.submit(spec, owner=owner)
    wait_for(lambda: reg.snapshot(run_id, owner).terminal, what="run ends")
    saved(reg, reg.store.path(run_id), run_id, owner)
    return run_id


# ---- one run format on disk ---------------------------------------------------------------
def test_server_saved_run_is_a_bundle_the_cli_reruns(make, tmp_path):
    system = jobs.build_system(SMALL.system, SMALL.seed)
    reg, _ = make(engine=FakeEngine(auto=True, n_rows=3, system=system))
    run_id = auto_run(reg, SMALL)
    folder = reg.store.path(run_id)
    names = sorted(p.name for p in folder.iterdir())
    assert names == sorted(engine_io.BUNDLE_FILES + (engine_io.META_FILE, engine_io.VIEW_FILE))

    bundle = engine_io.read_bundle(folder)
    assert bundle["config"]["spec"] == SMALL.to_dict() and bundle["config"]["status"] == "done"
    assert bundle["config"]["system"]["n_atoms"] == 50 and "numpy" in bundle["config"]["versions"]
    assert bundle["metrics"]["step"].tolist() == [0, 20, 40]  # integer columns stay integers
    assert bundle["metrics"]["step"].dtype.kind == "i"
    np.testing.assert_allclose(bundle["metrics"]["energy"], [1.0, 1 / 21, 1 / 41])
    assert bundle["view"]["n"] == 50 and bundle["x_final"].shape == (50, 3)
    assert (folder / "final.pdb").read_text().count("ATOM") == 50
    meta = engine_io.read_meta(folder)
    assert meta["owner"] == "A" and meta["status"] == "done" and not meta["shared"]

    out = tmp_path / "again"
    assert (
        cli.main(["run", "--config", str(folder / "config.json"), "--out", str(out), "--quiet"])
        == 0
    )
    assert engine_io.read_bundle(out)["config"]["spec"] == SMALL.to_dict()


def test_failed_run_keeps_meta_and_a_rerunnable_config(make):
    reg, _ = make(engine=FakeEngine(outcome="fail"))
    run_id = reg.submit(SMALL, owner="A")
    wait_for(lambda: reg.snapshot(run_id, "A").terminal, what="failure")
    folder = reg.store.path(run_id)
    wait_for(lambda: engine_io.read_meta(folder)["status"] == "failed", what="meta")
    config = engine_io.read_json(folder / "config.json")
    assert RunSpec.from_dict(config["spec"]) == SMALL and not engine_io.is_bundle(folder)


def fake_cli_result(system, n_rows=4):
    steps = np.arange(n_rows) * 20
    energy = 1.0 / (1.0 + steps)
    metrics = {
        "step": steps,
        "stage": np.full(n_rows, 2),
        "wall_time_s": 0.01 * (1 + np.arange(n_rows)),
        "energy": energy,
        "grad_norm": np.ones(n_rows),
    }
    frames_x = np.stack([system.x0 + 0.01 * i for i in range(n_rows)])
    return types.SimpleNamespace(
        spec=SMALL,
        status="done",
        message="budget reached",
        metrics=metrics,
        frames_step=steps,
        frames_x=frames_x,
        x_final=frames_x[-1],
        system=system,
        timings={"total_s": 0.1},
        summary=lambda: {"method": "gd", "stage_switch_step": None},
    )


def test_cli_bundle_is_listed_for_everyone_and_read_by_a_new_registry(make, tmp_path):
    system = jobs.build_system(SMALL.system, SMALL.seed)
    bundles = tmp_path / "results"
    engine_io.write_bundle(fake_cli_result(system), bundles / "cmp" / "gd")
    reg, _ = make()
    reg.index_bundles(jobs.find_bundles([str(bundles)]))
    reg.index_bundles(jobs.find_bundles([str(bundles)]))  # a rescan adds nothing
    for reader in ("A", "B"):
        (snap,) = reg.list_runs(reader)
        assert snap.source == "cli" and snap.label == "gd" and not snap.is_owner
    snap = reg.snapshot(snap.run_id, "A")  # arrays load on first read, by the store's reader
    assert snap.n_rows == 4 and [r["step"] for r in snap.rows] == [0, 20, 40, 60]
    assert isinstance(snap.rows[0]["step"], int) and snap.frame_x.shape == (50, 3)
    assert len(reg.frames(snap.run_id, "B")) == 4
    assert reg.curve_final(snap.run_id, "B", "energy") == pytest.approx(1 / 61)
    assert reg.cancel(snap.run_id, by=CLI_OWNER) is False
    data = reg.export_data(snap.run_id, "B")
    np.testing.assert_allclose(data["x_final"], system.x0 + 0.03)
    assert data["metrics"]["energy"].shape == (4,)


def test_server_runs_under_a_bundle_dir_are_never_listed_as_cli_bundles(make, tmp_path):
    reg, _ = make(engine=FakeEngine(auto=True, n_rows=2))
    run_id = auto_run(reg, RunSpec(), owner="A")
    run_dir = tmp_path / "runs"
    assert engine_io.is_bundle(run_dir / run_id)
    assert jobs.find_bundles([str(run_dir)]) == []  # meta.json marks it as a session's run
    reg2, _ = make()
    reg2.index_bundles([(str((run_dir / run_id).resolve()), {})])  # even when passed in
    assert reg2.list_runs("B") == [] and reg2.snapshot(run_id, "B") is None
    assert [s.run_id for s in reg2.list_runs("A")] == [run_id]


def test_stored_run_replays_from_the_bundle_with_the_same_rows(make, tmp_path):
    reg, _ = make(engine=FakeEngine(auto=True, n_rows=5))
    run_id = auto_run(reg, RunSpec(), owner="A")
    before = reg.snapshot(run_id, "A")
    reg2, _ = make()
    after = reg2.snapshot(run_id, "A")
    assert after.source == "stored" and after.rows == before.rows
    assert after.last == before.last and after.frame_no == 1
    np.testing.assert_allclose(after.frame_x, before.frame_x)
    assert reg2.snapshot(run_id, "A", since_rows=3).rows == before.rows[3:]


# ---- polls cost what is new ----------------------------------------------------------------
def test_snapshot_since_rows_returns_only_the_new_rows(make):
    reg, engine = make()
    run_id = reg.submit(RunSpec(), owner="A")
    engine.wait_started(1)
    for _ in range(5):
        engine.runs[0].tokens.release()
    wait_for(lambda: reg.snapshot(run_id, "A").n_rows == 5, what="rows")
    snap = reg.snapshot(run_id, "A", since_rows=3)
    assert snap.n_rows == 5 and [r["step"] for r in snap.rows] == [60, 80]
    assert reg.snapshot(run_id, "A", since_rows=5).rows == ()
    assert reg.snapshot(run_id, "A", since_rows=1 << 62).rows == ()
    seen = {run_id: {"rows": 4, "frame": 5}}
    (snap,) = reg.snapshots([run_id], "A", seen).values()
    assert [r["step"] for r in snap.rows] == [80] and snap.frame_x is None


def test_poll_path_never_copies_the_whole_history(make, monkeypatch):
    reg, _ = make(engine=FakeEngine(auto=True, n_rows=6))
    run_id = auto_run(reg, RunSpec())  # saved: the store copies the columns once, at the end
    starts = []
    rows = Columns.rows
    monkeypatch.setattr(
        Columns, "rows", lambda self, start=0: starts.append(start) or rows(self, start)
    )
    monkeypatch.setattr(Columns, "columns", lambda self: pytest.fail("copied every column"))
    reg.snapshot(run_id, "A", since_rows=4)
    reg.snapshots([run_id], "A", {run_id: {"rows": 6}})
    reg.curve_final(run_id, "A", "energy")
    reg.curve_reach(run_id, "A", "energy", 0.5)
    reg.list_runs("A")
    assert starts == [4, 6, 6]


def ragged_rows(rng, n):
    """Rows with NaN energies (diverged stretches), an int step and a float wall time."""
    energy = rng.normal(size=n).cumsum()
    energy[rng.random(n) < 0.2] = math.nan
    energy[3] = math.inf
    return [
        {"step": 10 * i, "wall_time_s": 0.5 * i, "energy": float(e), "rmsd": float(abs(e))}
        for i, e in enumerate(energy)
    ]


@pytest.mark.parametrize("chunks", [1, 3, 17])
def test_columns_final_and_reach_match_engine_analysis(chunks):
    rows = ragged_rows(np.random.default_rng(chunks), 200)
    cols = Columns()
    for i in range(0, len(rows), chunks):
        cols.extend(rows[i : i + chunks])
    full = {k: np.asarray([r[k] for r in rows]) for k in rows[0]}
    got = cols.rows(0)
    assert len(cols) == 200 and [r["step"] for r in got] == full["step"].tolist()
    np.testing.assert_array_equal([r["energy"] for r in got], full["energy"])  # NaN == NaN here
    for name in ("energy", "rmsd"):
        v = full[name]
        assert cols.final(name) == analysis.final_value(v)
        for threshold in (*np.nanquantile(v[np.isfinite(v)], [0, 0.1, 0.5, 1]), -1e9, math.nan):
            want = analysis.first_reach(v, threshold, full["step"], full["wall_time_s"])
            assert cols.reach(name, threshold) == want
    assert cols.final("missing") is None and cols.reach("missing", 0.0) is None


def test_columns_grow_new_keys_and_missing_values_as_nan():
    cols = Columns()
    cols.extend([{"step": 0, "energy": 1.0}])
    cols.extend([{"step": 1, "energy": 0.5, "rmsd": 2.0}, {"energy": 0.2}])
    rows = cols.rows()
    assert math.isnan(rows[0]["rmsd"]) and rows[1]["rmsd"] == 2.0
    assert isinstance(rows[1]["step"], float) and math.isnan(rows[2]["step"])  # promoted
    assert cols.final("rmsd") == 2.0 and cols.columns()["energy"].tolist() == [1.0, 0.5, 0.2]
    big = Columns.from_columns({"step": np.arange(1000), "energy": np.linspace(1, 0, 1000)})
    assert big.reach("energy", 0.5) == analysis.Reach(500, 0.0)  # no wall time column
    assert big.rows(998) == ({"step": 998, "energy": 1 - 998 / 999}, {"step": 999, "energy": 0.0})


def test_registry_curves_match_engine_analysis_on_a_diverged_run(make):
    reg, engine = make()
    run_id = reg.submit(RunSpec(), owner="A")
    engine.wait_started(1)
    engine.runs[0].outcome = "diverge"
    for _ in range(4):
        engine.runs[0].tokens.release()
    snap = wait_for(lambda: reg.snapshot(run_id, "A").terminal and reg.snapshot(run_id, "A"))
    assert snap.status == "diverged"
    cols = {k: np.asarray([r[k] for r in snap.rows]) for k in snap.rows[0]}
    assert math.isnan(cols["energy"][-1])
    assert reg.curve_final(run_id, "A", "energy") == analysis.final_value(cols["energy"])
    for threshold in (1.0, 0.06, 0.01):
        want = analysis.first_reach(cols["energy"], threshold, cols["step"], cols["wall_time_s"])
        assert reg.curve_reach(run_id, "A", "energy", threshold) == want
    assert reg.curve_final(run_id, "B", "energy") is None
    assert reg.curve_reach(run_id, "B", "energy", 1.0) is None


def test_rows_come_from_progress_not_from_the_result(make):
    """Each Progress row is kept once; the result's columns are not re-read at the end."""

    class Engine(FakeEngine):
        def _run(self, run, on_progress, should_stop, on_system):
            result = super()._run(run, on_progress, should_stop, on_system)
            result.metrics = {k: v[:1] for k, v in result.metrics.items()}  # would lose rows
            return result

    reg, _ = make(engine=Engine(auto=True, n_rows=4))
    run_id = auto_run(reg, RunSpec())
    assert [r["step"] for r in reg.snapshot(run_id, "A").rows] == [0, 20, 40, 60]


# ---- access rules --------------------------------------------------------------------------
def test_access_rules_as_plain_functions():
    assert access.can_read("A", False, "A") and not access.can_read("A", False, "B")
    assert access.can_read("A", True, "B") and not access.can_read("A", True, "")
    assert not access.can_read("", False, "")  # an empty session id reads nothing
    assert access.can_stop("A", "A", "running") and access.can_stop("A", "A", "queued")
    assert not access.can_stop("A", "B", "running") and not access.can_stop("A", "", "running")
    assert not any(access.can_stop("A", "A", s) for s in access.TERMINAL)
    assert access.can_share("A", "A", "run") and not access.can_share("A", "A", "task")
    assert not access.can_share("A", "B", "run") and not access.can_share("", "", "run")
    assert access.is_listed("A", "session", "A") and not access.is_listed("A", "stored", "B")
    assert access.is_listed(access.CLI_OWNER, "cli", "B") and not access.is_listed("", "x", "")
    assert access.quota_error(3, 1, 4) is None and "limit is 4" in access.quota_error(3, 2, 4)
    with pytest.raises(PermissionError):
        access.check_submitter("")


def test_engine_io_find_bundles_skips_owned_and_damaged(tmp_path):
    system = build_system(SMALL.system, SMALL.seed)
    engine_io.write_bundle(fake_cli_result(system), tmp_path / "a")
    engine_io.write_bundle(fake_cli_result(system), tmp_path / "owned")
    engine_io.write_meta(tmp_path / "owned", {"owner": "A", "status": "done"})
    engine_io.write_bundle(fake_cli_result(system), tmp_path / "bad")
    (tmp_path / "bad" / "config.json").write_text("{oops")
    assert [p for p, _ in engine_io.find_bundles([str(tmp_path)])] == [
        str((tmp_path / "a").resolve())
    ]
    assert not list(tmp_path.rglob("*.tmp"))  # atomic writes leave no temporary files
