"""Protein structure sources, cleaning, starts, and one clear error per kind of bad input."""

import http.server
import os
import random
import threading
import warnings

import mdtraj
import numpy as np
import pytest

from engine import io as engine_io
from engine.config import SystemConfig
from engine.protein.build import (
    MAX_HEAVY_ATOMS,
    StructureError,
    build_protein_system,
    protein_structure_from_bytes,
)
from tests.conftest import shared_pdb


@pytest.fixture(autouse=True)
def cache(tmp_path, monkeypatch):
    """Every test writes only under its own cache folder; no real network."""
    folder = tmp_path / "cache"
    monkeypatch.setenv("SLOWMODE_CACHE", str(folder))
    monkeypatch.setenv("SLOWMODE_PDB_URL", "http://127.0.0.1:9")  # discard port: refused at once
    return folder


def _protein(**kw):
    return SystemConfig(kind="protein", **kw)


def _atom_line(serial, name, resname, resseq, xyz, element, record="ATOM  ", chain="A"):
    return (
        f"{record}{serial:5d} {name:<4s} {resname:>3s} {chain}{resseq:4d}    "
        f"{xyz[0]:8.3f}{xyz[1]:8.3f}{xyz[2]:8.3f}  1.00  0.00          {element:>2s}\n"
    )


def _tiny_pdb_text() -> str:
    """PDB text of a 3-residue peptide built from sequence (runs everywhere)."""
    s = build_protein_system(_protein(sequence="GAG"), 0)
    lines = []
    for a in s.topology.atoms:
        x = s.x0[a.index] * 10
        lines.append(
            _atom_line(
                a.index + 1, a.name, a.residue.name, a.residue.index + 1, x, a.element.symbol
            )
        )
    return "".join(lines) + "END\n"


@pytest.fixture(scope="module")
def tiny_text():
    return _tiny_pdb_text()


# ---- sources -------------------------------------------------------------------------------


def test_villin_default_loads_offline(cache):
    s = build_protein_system(_protein(pdb="villin"), 0)
    assert s.kind == "protein" and s.length_unit == "nm" and s.energy_unit == "kJ/mol"
    assert s.meta["n_residues"] == 35 and s.n_atoms == 582
    assert s.meta["sequence"].startswith("LSDEDF")
    assert any("water" in n for n in s.meta["notes"]) and any("ions" in n for n in s.meta["notes"])
    assert s.x0.shape == (582, 3) and s.bonds.shape[1] == 2 and len(s.elements) == 582
    np.testing.assert_array_equal(s.x0, s.reference)
    assert isinstance(s.topology, mdtraj.Topology)
    # nothing left behind outside the cache folder's scratch, which is emptied
    assert not os.listdir(cache / "scratch")


def test_file_path_and_bytes_give_the_same_system():
    path = shared_pdb("2JOF_native.pdb")
    a = build_protein_system(_protein(pdb=path), 0)
    with open(path, "rb") as fh:
        b = build_protein_system(_protein(pdb="upload.pdb"), 0, pdb_bytes=fh.read())
    assert a.n_atoms == b.n_atoms == 284
    assert a.meta["sequence"] == "DAYAQWLKDGGPSSGRPPPS"
    np.testing.assert_allclose(a.x0, b.x0)
    assert a.meta["notes"] == []  # complete file with hydrogens: nothing to report


def test_builds_on_threads_give_the_sequential_hydrogens():
    """Modeller's hydrogens come from a seeded generator of the build's own: builds running
    side by side (a group's runs) or any other use of `random` do not move them."""
    cfg = _protein(sequence="NLYIQWLKDGGPSSGRPPPS")  # Trp-cage from sequence: hydrogens added
    want = build_protein_system(cfg, 0).x0
    built, stop = [], threading.Event()

    def draw_elsewhere():
        while not stop.is_set():
            random.random()

    others = [threading.Thread(target=draw_elsewhere)]
    builds = [
        threading.Thread(target=lambda: built.append(build_protein_system(cfg, 0).x0))
        for _ in range(3)
    ]
    for t in others + builds:
        t.start()
    for t in builds:
        t.join()
    stop.set()
    others[0].join()
    assert len(built) == 3
    for x0 in built:
        np.testing.assert_array_equal(x0, want)


def test_multi_model_takes_model_one_by_default():
    path = shared_pdb("1PLW_rcsb_nmr.pdb")
    s1 = build_protein_system(_protein(pdb=path), 0)
    s2 = build_protein_system(_protein(pdb=path, nmr_model=2), 0)
    assert any(n.startswith("took NMR model 1 of") for n in s1.meta["notes"])
    assert s1.meta["sequence"] == "YGGFM" and s1.n_atoms == 75
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the entry's dummy CRYST1 record
        raw = mdtraj.load_pdb(path)
    ca_raw = raw.xyz[:, raw.topology.select("name CA")]
    ca = s1.x0[[a.index for a in s1.topology.atoms if a.name == "CA"]]
    np.testing.assert_allclose(ca, ca_raw[0], atol=1e-6)
    ca2 = s2.x0[[a.index for a in s2.topology.atoms if a.name == "CA"]]
    np.testing.assert_allclose(ca2, ca_raw[1], atol=1e-6)
    with pytest.raises(StructureError, match="nmr_model is 500"):
        build_protein_system(_protein(pdb=path, nmr_model=500), 0)


def test_unfolded_start_has_the_same_atoms():
    s = build_protein_system(
        _protein(pdb=shared_pdb("2JOF_native.pdb"), start=shared_pdb("2JOF_unfolded_T1000.pdb")), 0
    )
    assert s.x0.shape == s.reference.shape == (284, 3)
    assert not np.allclose(s.x0, s.reference)
    # matched atom by atom: every bond keeps a chemical length in the start
    r = np.linalg.norm(s.x0[s.bonds[:, 0]] - s.x0[s.bonds[:, 1]], axis=1)
    assert 0.09 < r.min() and r.max() < 0.2


def test_start_with_other_residues_is_refused():
    with pytest.raises(StructureError, match="native's residues"):
        build_protein_system(
            _protein(pdb=shared_pdb("2JOF_native.pdb"), start=shared_pdb("1PLW_native.pdb")), 0
        )


def test_sequence_starts_are_seeded_and_share_atoms():
    ext = build_protein_system(_protein(sequence="YGGFM", start="extended"), 0)
    helix = build_protein_system(_protein(sequence="YGGFM"), 0)
    r1 = build_protein_system(_protein(sequence="YGGFM", start="random"), 1)
    r1b = build_protein_system(_protein(sequence="YGGFM", start="random"), 1)
    r2 = build_protein_system(_protein(sequence="YGGFM", start="random"), 2)
    assert ext.reference is None and ext.n_atoms == helix.n_atoms == r1.n_atoms == 75
    np.testing.assert_allclose(r1.x0, r1b.x0, atol=1e-9)
    assert not np.allclose(r1.x0, r2.x0)
    ca = [a.index for a in ext.topology.atoms if a.name == "CA"]
    # an extended chain is longer than a helix
    assert np.linalg.norm(ext.x0[ca[-1]] - ext.x0[ca[0]]) > np.linalg.norm(
        helix.x0[ca[-1]] - helix.x0[ca[0]]
    )


def test_extended_start_of_a_pdb_structure():
    s = build_protein_system(_protein(pdb=shared_pdb("1PLW_native.pdb"), start="extended"), 0)
    assert s.x0.shape == s.reference.shape
    assert any("extended" in n for n in s.meta["notes"])


def test_residue_model_system(tiny_text):
    s = build_protein_system(
        _protein(pdb="t.pdb", model="residue"), 0, pdb_bytes=tiny_text.encode()
    )
    assert s.n_atoms == 3 and s.bonds.tolist() == [[0, 1], [1, 2]]
    assert s.meta["model"] == "residue"


def test_ligands_are_stripped_with_a_note(tiny_text):
    lig = "".join(
        _atom_line(900 + k, f"C{k}", "LIG", 99, (20.0 + k, 0.0, 0.0), "C", record="HETATM")
        for k in range(3)
    )
    traj, notes = protein_structure_from_bytes(
        (tiny_text.replace("END\n", "") + lig + "END\n").encode()
    )
    assert traj.n_residues == 3
    assert any("LIG (3 atoms)" in n for n in notes)


def test_missing_heavy_atoms_are_rebuilt_with_a_note(tiny_text):
    # drop ALA's CB (and its hydrogens): pdbfixer rebuilds it and says so
    kept = [
        ln
        for ln in tiny_text.splitlines(True)
        if not (" ALA " in ln and ln[12:16].strip() in ("CB", "HB1", "HB2", "HB3"))
    ]
    s = build_protein_system(_protein(pdb="cut.pdb"), 0, pdb_bytes="".join(kept).encode())
    assert s.n_atoms == 27
    assert any("pdbfixer added 1 missing heavy atoms" in n for n in s.meta["notes"])


# ---- downloads by PDB id (loopback server) --------------------------------------------------


class _Handler(http.server.BaseHTTPRequestHandler):
    hits: list = []
    body: bytes = b""

    def do_GET(self):  # noqa: N802 (http.server's name)
        _Handler.hits.append(self.path)
        if self.path.endswith("/1ABC.pdb"):
            self.send_response(200)
            self.end_headers()
            self.wfile.write(_Handler.body)
        elif self.path.endswith("/9HTM.pdb"):
            self.send_response(200)
            self.end_headers()
            self.wfile.write(b"<html>maintenance</html>")
        else:
            self.send_response(404)
            self.end_headers()

    def log_message(self, *args):
        del args


@pytest.fixture
def server(tiny_text, monkeypatch):
    _Handler.hits = []
    _Handler.body = tiny_text.encode()
    httpd = http.server.HTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    monkeypatch.setenv("SLOWMODE_PDB_URL", f"http://127.0.0.1:{httpd.server_port}/download")
    yield _Handler
    httpd.shutdown()
    httpd.server_close()


def test_pdb_id_downloads_once_into_the_cache(server, cache):
    s = build_protein_system(_protein(pdb="1abc"), 0)
    assert s.n_atoms == 27 and s.name.startswith("1ABC")
    assert (cache / "pdb" / "1ABC.pdb").is_file()
    build_protein_system(_protein(pdb="1ABC"), 0)
    assert server.hits == ["/download/1ABC.pdb"]  # second build read the cache


def test_unknown_pdb_id_is_a_clear_error(server):
    with pytest.raises(StructureError, match="unknown PDB id 0XYZ"):
        build_protein_system(_protein(pdb="0xyz"), 0)


def test_non_pdb_reply_is_not_cached(server, cache):
    with pytest.raises(StructureError, match="not a PDB file"):
        engine_io.fetch_pdb("9HTM")
    assert not (cache / "pdb" / "9HTM.pdb").exists()


def test_offline_download_is_one_clear_message():
    with pytest.raises(StructureError, match="offline") as err:
        build_protein_system(_protein(pdb="1ABC"), 0)  # on no machine's shared folder
    assert "\n" not in str(err.value) and "1ABC_native.pdb" in str(err.value)


def test_pdb_id_is_found_among_the_structures_on_this_machine_without_network(cache):
    path = shared_pdb("2JOF_native.pdb")
    assert engine_io.find_local_pdb("2jof") == path
    with open(path, "rb") as fh:
        assert engine_io.fetch_pdb("2jof") == fh.read()  # SLOWMODE_PDB_URL is unreachable
    s = build_protein_system(_protein(pdb="2JOF", start="extended"), 0)
    assert s.meta["sequence"] == "DAYAQWLKDGGPSSGRPPPS" and s.name.startswith("2JOF")
    assert any("on this machine (no download)" in n for n in s.meta["notes"])
    assert not (cache / "pdb").exists()  # nothing was downloaded or cached


def test_local_lookup_order_and_case(tmp_path, tiny_text, monkeypatch, cache):
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir(), b.mkdir()
    (a / "1abc_NATIVE.PDB").write_text(tiny_text)
    assert engine_io.find_local_pdb("1ABC", [str(tmp_path / "missing"), str(a)]) == str(
        a / "1abc_NATIVE.PDB"
    )
    (b / "1ABC.pdb").write_text(tiny_text)
    assert engine_io.find_local_pdb("1abc", [str(b), str(a)]) == str(b / "1ABC.pdb")
    assert engine_io.find_local_pdb("1ABC", []) is None
    assert engine_io.find_local_pdb("../x", [str(a)]) is None  # only real PDB ids
    # $SLOWMODE_PDB_DIRS comes first; the shared folder stays searched after it
    monkeypatch.setenv("SLOWMODE_PDB_DIRS", f"{a}{os.pathsep}{b}")
    assert engine_io.local_pdb_dirs()[:2] == (str(a), str(b))
    assert engine_io.local_pdb_dirs()[-1] == engine_io.SHARED_PDB_DIR
    assert build_protein_system(_protein(pdb="1abc"), 0).n_atoms == 27  # port 9: no network
    assert not (cache / "pdb").exists()
    with pytest.raises(StructureError, match="offline"):
        engine_io.fetch_pdb("1abc", local_dirs=())  # () skips the search


# ---- bad input -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "data, message",
    [
        (b"", "empty"),
        (b"   \n\n", "empty"),
        (bytes(range(256)) * 8, "binary"),
        (b"\x1f\x8b\x08\x00" + b"\x00" * 100, "binary"),
        (b"HEADER    NOT A STRUCTURE\nREMARK nothing here\nEND\n", "no ATOM or HETATM"),
    ],
    ids=["empty", "blank", "binary", "gzip", "no-atoms"],
)
def test_unusable_bytes(data, message):
    with pytest.raises(StructureError, match=message):
        build_protein_system(_protein(pdb="bad.pdb"), 0, pdb_bytes=data)


@pytest.mark.parametrize("keep", [40, 60], ids=["mid-coordinates", "before-element"])
def test_truncated_file(tiny_text, keep):
    lines = tiny_text.splitlines(True)
    cut = "".join(lines[:10]) + lines[10][:keep]
    with pytest.raises(StructureError, match="truncated"):
        protein_structure_from_bytes(cut.encode())


def test_enormous_file_is_capped_before_parsing():
    lines = []
    for k in range(MAX_HEAVY_ATOMS // 5 + 10):
        for j, name in enumerate(("N", "CA", "C", "O", "CB")):
            lines.append(
                _atom_line(
                    (5 * k + j) % 99999 + 1, name, "ALA", k % 9999 + 1, (k * 0.1, j, 0), name[0]
                )
            )
    with pytest.raises(StructureError, match=f"limit is {MAX_HEAVY_ATOMS}"):
        protein_structure_from_bytes("".join(lines).encode())


def test_dna_only_file():
    lines = [
        _atom_line(1 + 3 * k + j, name, "DA", k + 1, (k * 3.4, j, 0.0), name[0])
        for k in range(4)
        for j, name in enumerate(("P", "C4'", "N9"))
    ]
    with pytest.raises(StructureError, match="only nucleic acids"):
        protein_structure_from_bytes("".join(lines).encode())


def test_water_only_file():
    lines = [
        _atom_line(k + 1, "O", "HOH", k + 1, (3.0 * k, 0, 0), "O", record="HETATM")
        for k in range(5)
    ]
    with pytest.raises(StructureError, match="no protein residues"):
        protein_structure_from_bytes("".join(lines).encode())


def test_non_standard_residue_is_named(tiny_text):
    text = tiny_text.replace(" ALA A   2", " MSE A   2")
    with pytest.raises(StructureError, match="non-standard residue MSE 2"):
        protein_structure_from_bytes(text.encode())


@pytest.mark.parametrize(
    "seq, message", [("ACDXZ", "'X' at 4, 'Z' at 5"), ("", "empty"), ("AC-D", "'-' at 3")]
)
def test_invalid_sequences(seq, message):
    with pytest.raises(ValueError, match=message):
        build_protein_system(SystemConfig(kind="protein", sequence=seq or " "), 0)


def test_not_a_source():
    with pytest.raises(StructureError, match="neither an existing file"):
        build_protein_system(_protein(pdb="no/such/file.pdb"), 0)


def test_unknown_model_and_sequence_mismatch():
    with pytest.raises(ValueError, match="system.model"):
        build_protein_system(_protein(sequence="GAG", model="amber-gbn2"), 0)
    with pytest.raises(StructureError, match="does not match"):
        build_protein_system(_protein(pdb="villin", sequence="GAG"), 0)


def test_huge_sequence_is_refused_before_building():
    with pytest.raises(StructureError, match=f"the limit is {MAX_HEAVY_ATOMS}"):
        build_protein_system(_protein(sequence="W" * 400), 0)


def test_single_residue_peptide():
    with pytest.raises(StructureError, match="at least 2 residues"):
        build_protein_system(_protein(sequence="A"), 0)
    s = build_protein_system(_protein(sequence="A", model="residue"), 0)
    assert s.n_atoms == 1
