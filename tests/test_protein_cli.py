"""``python -m engine`` on proteins: the issue's command line, bundles in kJ/mol and nm."""

import numpy as np
import pytest

from engine import cli, io

PEPTIDE = [
    "--system",
    "protein",
    "--sequence",
    "YGGFM",
    "--start",
    "extended",
    "--model",
    "amber-obc2",
]


def test_compare_gd_bond_graph_gnn_and_openmm_on_one_peptide(tmp_path, capsys):
    out = tmp_path / "cmp"
    args = [
        "compare",
        *PEPTIDE,
        "--methods",
        "gd,gnn,openmm-min",
        "--propagation",
        "bonds",
        "--anchor",
        "x0",
        "--lr",
        "4e-4",
        "--clip-value",
        "0.01",
        "--steps",
        "60",
        "--stopping",
        "none",
        "--out",
        str(out),
        "--quiet",
    ]
    assert cli.main(args) == 0
    bundles = {m: io.read_bundle(out / m) for m in ("gd", "gnn", "openmm-min")}
    for method, b in bundles.items():
        assert (
            b["config"]["system"]["energy_unit"] == "kJ/mol"
            and b["config"]["system"]["length_unit"] == "nm"
        )
        energy = np.asarray(b["metrics"]["energy"])
        assert energy[-1] < energy[0], method
    # one start for every method; the bond-graph GNN computes no slow modes
    starts = {m: float(b["metrics"]["energy"][0]) for m, b in bundles.items()}
    assert starts["gnn"] == pytest.approx(starts["gd"], rel=1e-5)  # x0 + f(p0) - f(p0) in float32
    assert abs(starts["openmm-min"] - starts["gd"]) <= 1e-3 * abs(
        starts["gd"]
    )  # float32 JAX vs OpenMM
    assert bundles["gnn"]["config"]["timings"]["modes_s"] == 0.0
    assert "time to reach" in capsys.readouterr().out


def test_unreadable_structure_is_one_line_and_writes_nothing(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "bad.pdb").write_bytes(b"\x00\x01binary\xff" * 50)
    assert cli.main(["run", "--system", "protein", "--pdb", "bad.pdb", "--out", "X"]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1 and "pdb" in err.lower()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.pdb"]
