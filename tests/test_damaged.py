"""Issue 10, damaged run files: listed "damaged" at start-up (not only once opened), the
verdict kept across restarts, data never deleted, exports of a damaged run say why."""

from __future__ import annotations

import json
from contextvars import copy_context

import pytest
import test_reliability as rel
from dash._callback_context import context_value
from dash._utils import AttributeDict

from workbench import ids, runstore
from workbench import registry as reg_module
from workbench.panels import runs

make, stored = rel.make, rel.stored  # the fixtures: a finished run of session "A" on disk
listed, truncate = rel.listed, rel.truncate


def garble(path, at=0.5, n=64):
    data = bytearray(path.read_bytes())
    i = int(len(data) * at)
    data[i : i + n] = bytes((b ^ 0x5A) for b in data[i : i + n])
    path.write_bytes(bytes(data))


DAMAGES = [
    ("frames.npz", truncate),
    ("frames.npz", garble),  # same length, zip directory intact: only the CRC tells
    ("metrics.csv", truncate),
    ("metrics.csv", lambda p: p.write_text(p.read_text().replace(",", ";", 3))),
    ("config.json", truncate),
]


@pytest.mark.parametrize("name, damage", DAMAGES)
def test_a_damaged_data_file_is_listed_damaged_at_start_up_and_after_a_restart(
    stored, monkeypatch, name, damage
):
    run_id, folder, reopen = stored
    damage(folder / name)
    before = {p.name: p.read_bytes() for p in folder.iterdir()}
    reg = reopen()
    snap = listed(reg, run_id)  # nobody has opened it
    assert snap.status == "damaged" and name in snap.message and "done before" in snap.message
    cell = runs.status_cell(snap)  # the runs list says what is damaged, under the status
    assert cell.className == "wb-st-damaged" and cell.title == snap.message
    assert cell.children[0] == "damaged" and cell.children[1].children == snap.message
    marker = json.loads((folder / runstore.DAMAGE_FILE).read_text())
    assert name in marker["damage"]
    # the next start reads the verdict, not the files (they are unchanged)
    monkeypatch.setattr(runstore, "check_files", lambda f: pytest.fail("files read again"))
    again = reopen()
    assert listed(again, run_id).status == "damaged" and name in listed(again, run_id).message
    assert again.export_data(run_id, "A") is None and again.frames(run_id, "A") == []
    after = {p.name: p.read_bytes() for p in folder.iterdir() if p.name != runstore.DAMAGE_FILE}
    assert after == before  # nothing deleted or rewritten


def test_restored_files_are_listed_done_again(stored):
    run_id, folder, reopen = stored
    good = (folder / "frames.npz").read_bytes()
    truncate(folder / "frames.npz")
    assert listed(reopen(), run_id).status == "damaged"
    (folder / "frames.npz").write_bytes(good)
    reg = reopen()
    assert listed(reg, run_id).status == "done" and len(reg.frames(run_id, "A")) >= 1
    assert not (folder / runstore.DAMAGE_FILE).exists()


def test_a_finished_run_missing_a_data_file_is_listed_damaged(stored):
    run_id, folder, reopen = stored
    (folder / "frames.npz").unlink()
    snap = listed(reopen(), run_id)
    assert snap.status == "damaged" and "missing frames.npz" in snap.message


def call(fn, *args, trigger):
    def run():
        key = json.dumps(trigger, sort_keys=True, separators=(",", ":"))
        fired = [{"prop_id": f"{key}.n_clicks", "value": 1}]
        context_value.set(AttributeDict(triggered_inputs=fired))
        return fn(*args)

    return copy_context().run(run)


def test_an_export_of_a_damaged_run_says_why_and_the_replay_offers_none(stored):
    run_id, folder, reopen = stored
    truncate(folder / "metrics.csv")
    reg = reopen()
    reg_module.install(reg)
    try:
        for fmt in ("csv", "json", "pdb", "traj"):
            trigger = ids.export_btn(run_id, fmt)
            assert call(runs.export_run, [1], "A", trigger=trigger) is runs.NU  # no empty file
            msg = call(runs.export_refusal, [1], "A", trigger=trigger)
            assert msg.startswith("Nothing exported: this run is damaged") and "metrics.csv" in msg
        title, *_, exports, _style, _clear = runs.empty_replay(reg.snapshot(run_id, "A"))
        assert "damaged" in title and "metrics.csv" in title and exports == []
        assert "not shared" in call(runs.export_refusal, [1], "B", trigger=trigger)
    finally:
        reg_module.install(None)


def test_an_export_that_downloads_clears_the_message(stored):
    run_id, folder, reopen = stored
    reg = reopen()
    reg_module.install(reg)
    try:
        trigger = ids.export_btn(run_id, "csv")
        assert call(runs.export_refusal, [1], "A", trigger=trigger) == ""
        assert call(runs.export_run, [1], "A", trigger=trigger)["content"].startswith("step")
    finally:
        reg_module.install(None)


def test_intact_runs_are_not_read_again_at_the_next_start_until_their_files_change(
    stored, monkeypatch
):
    run_id, folder, reopen = stored
    assert listed(reopen(), run_id).status == "done"  # checked once, found intact
    calls = []
    real = runstore.check_files
    monkeypatch.setattr(runstore, "check_files", lambda f: calls.append(f) or real(f))
    assert listed(reopen(), run_id).status == "done" and calls == []
    truncate(folder / "metrics.csv")  # size and time change: checked again
    snap = listed(reopen(), run_id)
    assert len(calls) == 1 and snap.status == "damaged" and "metrics.csv" in snap.message
