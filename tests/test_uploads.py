"""Uploads and structure sources (issue 10, items 6, 10, 12, 13): an upload is checked by the
run's own builder before it is accepted, kept per session within stated limits and deleted
after its retention period; PDB ids never read the server's working directory; specs, the
structure dropdown and exported configs carry names, never server paths."""

import base64
import dataclasses
import json
import os

import pytest
from workbench_fakes import FakeEngine, wait_for

from engine import SpecError, SystemConfig
from engine import io as engine_io
from engine.protein.build import MAX_HEAVY_ATOMS, StructureError, build_protein_system
from workbench import forms, jobs, uploads
from workbench import registry as reg
from workbench.config import ServerConfig
from workbench.panels import PageContext, system
from workbench.registry import RunRegistry
from workbench.runstore import RunStore

SID, OTHER = "session-a", "session-b"


# ---- PDB text ----------------------------------------------------------------------------------
def atom_line(serial, name, resname, resseq, xyz, element, record="ATOM  ", chain="A"):
    x, y, z = (f"{v:8.3f}" if isinstance(v, float) else f"{v:>8s}" for v in xyz)
    name = name if len(name) == 4 else f" {name:<3s}"  # PDB: 1-letter elements from column 14
    return (
        f"{record}{serial:5d} {name} {resname:>3s} {chain}{resseq:4d}    "
        f"{x}{y}{z}  1.00  0.00          {element:>2s}\n"
    )


def heavy_lines(sequence: str) -> list[str]:
    """ATOM lines (heavy atoms, Angstrom) of a peptide built from ``sequence``."""
    s = build_protein_system(SystemConfig(kind="protein", sequence=sequence), 0)
    out = []
    for a in s.topology.atoms:
        if a.element.symbol != "H":
            x = [float(v) for v in s.x0[a.index] * 10]
            out.append(atom_line(len(out) + 1, a.name, a.residue.name, a.residue.index + 1, x,
                                 a.element.symbol))  # fmt: skip
    return out


@pytest.fixture(scope="module")
def peptide():
    """Heavy-atom ATOM lines of the 6-residue peptide GAWSKE (no END line)."""
    return heavy_lines("GAWSKE")


def pdb(lines, end=True) -> bytes:
    return ("".join(lines) + ("END\n" if end else "")).encode()


def payload(data: bytes) -> str:
    return "data:application/octet-stream;base64," + base64.b64encode(data).decode()


# ---- a registry on a temporary run folder, driven by the fake engine ------------------------
@pytest.fixture
def server(tmp_path, monkeypatch):
    """A registry whose structure folder is tmp/structures (holding 1ABC.pdb) with no network:
    the PDB download URL is a closed loopback port, the cache a temporary folder."""
    monkeypatch.setenv("SLOWMODE_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("SLOWMODE_PDB_URL", "http://127.0.0.1:9")  # discard port: refused
    monkeypatch.setenv(engine_io.PDB_DIRS_ENV, "")
    structures = tmp_path / "structures"
    structures.mkdir()
    config = ServerConfig(run_dir=str(tmp_path / "runs"), structure_dirs=(str(structures),))
    uploads.install(config)
    fake = FakeEngine(auto=True, n_rows=3, delay=0.01)
    registry = RunRegistry(config, fake.runner, bundle_reader=jobs.read_bundle)
    reg.install(registry)
    yield registry
    registry.shutdown()
    reg.install(None)


def upload(data: bytes, name: str = "trp.pdb", sid: str = SID):
    return system.upload_structure(payload(data), name, sid)


# ---- item 10: uploads checked by the run's builder ------------------------------------------
def test_a_protein_upload_is_accepted_and_builds_as_the_run_will(server, peptide):
    token, msg, source = upload(pdb(peptide))
    assert source == "upload" and token
    assert msg.startswith("trp.pdb: accepted, 6 residues, 48 heavy atoms (92 with hydrogens)")
    assert "checked with amber14 in" in msg
    name = server.store.upload_name(token)
    s = build_protein_system(SystemConfig(kind="protein", pdb=name), 0)
    assert s.meta["sequence"] == "GAWSKE" and s.name.startswith("trp.pdb (6 res")


def _refused(data, name="bad.pdb"):
    token, msg, source = upload(data, name)
    assert token is None and source is system.NU, msg
    return msg


def test_water_lipid_and_dna_only_files_are_refused_naming_residues(server):
    water = [
        atom_line(k + 1, "O", "HOH", k + 1, (3.0 * k, 0.0, 0.0), "O", record="HETATM")
        for k in range(5)
    ]
    msg = _refused(pdb(water))
    assert "only water" in msg and "HOH x5" in msg and f"{MAX_HEAVY_ATOMS:,} heavy atoms" in msg
    lipid = [
        atom_line(k + 1, f"C{k + 1}", "POP", 1, (1.5 * k, 0.0, 0.0), "C", record="HETATM")
        for k in range(12)
    ]
    assert "no protein residues found" in _refused(pdb(lipid)) and "POP x1" in _refused(pdb(lipid))
    dna = [
        atom_line(1 + 3 * k + j, name, "DA", k + 1, (k * 3.4, float(j), 0.0), name[0])
        for k in range(4)
        for j, name in enumerate(("P", "C4'", "N9"))
    ]
    msg = _refused(pdb(dna))
    assert "only nucleic acids" in msg and "DA x4" in msg


def test_non_standard_and_unknown_residues_are_named(server, peptide):
    mse = [line.replace(" ALA A   2", " MSE A   2") for line in peptide]
    assert "non-standard residue MSE 2 (chain A)" in _refused(pdb(mse))
    # a standard name with an atom its template does not have: amber14 names the residue
    extra = list(peptide)
    ala_cb = next(i for i, line in enumerate(extra) if " CB  ALA" in line)
    extra.insert(ala_cb + 1, atom_line(99, "QQ", "ALA", 2, (0.0, 0.0, 0.0), "C"))
    msg = _refused(pdb(extra))
    assert "cannot be modelled" in msg and "ALA" in msg and "template" in msg.lower()


def test_nan_coordinates_are_refused_naming_the_atoms(server, peptide):
    lines = list(peptide)
    i = next(i for i, line in enumerate(lines) if " CA  TRP" in line)
    lines[i] = lines[i][:30] + f"{'nan':>8s}" + lines[i][38:]
    msg = _refused(pdb(lines))
    assert "1 atom(s) have non-finite" in msg and "CA of TRP 3 (chain A)" in msg
    lines[i] = lines[i][:30] + f"{'1e+30':>8s}" + lines[i][38:]
    msg = _refused(pdb(lines))
    assert "1 atom(s) have out-of-range (beyond ±1000 nm)" in msg and "CA of TRP 3" in msg


def test_a_residue_fragment_is_named(server, peptide):
    lines = list(peptide)
    i = next(i for i, line in enumerate(lines) if " CD  GLU A   6" in line)
    lines[i] = lines[i][:22] + "   9" + lines[i][26:]  # one atom split off into residue 9
    msg = _refused(pdb(lines))
    assert "residue GLU 9 (chain A) has 1 heavy atom(s) (CD)" in msg


def test_structure_over_the_heavy_atom_limit_states_the_limit(server):
    lines = [
        atom_line(k % 99999 + 1, "CA", "ALA", k // 5 % 9999 + 1, (k * 0.1, 0.0, 0.0), "C")
        for k in range(MAX_HEAVY_ATOMS + 50)
    ]
    msg = _refused(pdb(lines), "huge.pdb")
    assert f"{MAX_HEAVY_ATOMS + 50} heavy atoms" in msg and f"limit is {MAX_HEAVY_ATOMS}" in msg


def test_files_cut_short_are_refused(server, peptide):
    text = pdb(peptide).decode()
    cut = text[: text.index(" CA  TRP") + 30]  # inside an ATOM record
    assert "truncated" in _refused(cut.encode())
    # an X-ray file cut inside an ANISOU record after whole ATOM lines
    anisou = "".join(peptide[:20]) + "ANISOU   20  CB  SER A   4     2406   1892"
    assert "ends inside the ANISOU record" in _refused(anisou.encode())
    # cut at a line end: the SEQRES says 6 residues, the atoms stop in residue 3, no END
    seqres = "SEQRES   1 A    6  GLY ALA TRP SER LYS GLU\n"
    upto3 = [line for line in peptide if int(line[22:26]) <= 3]
    msg = _refused((seqres + "".join(upto3)).encode())
    assert "ends after 3 of the 6 residues its SEQRES lists for chain A" in msg
    # the same residues in a complete file (END): a gap, accepted
    token, msg, _ = upload((seqres + "".join(upto3) + "END\n").encode(), "gap.pdb")
    assert token and "accepted, 3 residues" in msg


def test_mmcif_says_it_is_not_supported(server):
    cif = (
        b"data_1ABC\n#\nloop_\n_atom_site.group_PDB\n_atom_site.id\n_atom_site.Cartn_x\n"
        b"ATOM 1 11.639\n"
    )
    assert "mmCIF is not supported, upload PDB" in _refused(cif, "1abc.pdb")
    assert "mmCIF is not supported, upload PDB" in _refused(cif, "1abc.cif")
    with pytest.raises(StructureError, match="mmCIF is not supported, upload PDB"):
        build_protein_system(SystemConfig(kind="protein", pdb="x"), 0, pdb_bytes=cif)


def test_size_cap_is_still_stated(server):
    msg = _refused(b"A" * 3_000_000, "big.pdb")
    assert "larger than the 2 MB cap" in msg


@pytest.mark.parametrize(
    "contents, filename, sid, message",
    [
        ([1, 2], "a.pdb", SID, "no file received"),
        (None, {"x": 1}, SID, "no file received"),
        ("data:;base64,QUJD", "a.pdb", {"sid": 1}, "no session: reload the page"),
        ("data:;base64,QUJD", "a.pdb", None, "no session: reload the page"),
    ],
    ids=["list-contents", "dict-filename", "dict-session", "no-session"],
)
def test_hand_made_values_are_answered_at_the_field(server, contents, filename, sid, message):
    token, msg, source = system.upload_structure(contents, filename, sid)
    assert token is None and msg == message and source is system.NU


# ---- item 6: upload limits per session, retention, deletion with the session ------------
def test_per_session_count_and_bytes_limits_are_stated_when_hit(server, peptide, monkeypatch):
    def limit(**settings):  # the server's settings (workbench/config.py), changed in place
        monkeypatch.setattr(server, "config", dataclasses.replace(server.config, **settings))

    limit(uploads_per_session=2)
    first, _, _ = upload(pdb(peptide), "a.pdb")
    again, msg, _ = upload(pdb(peptide), "a.pdb")
    assert again == first  # the same file again is the same upload: it does not count twice
    second, _, _ = upload(pdb(peptide[:-1]), "b.pdb")
    assert second and second != first
    msg = _refused(pdb(peptide[:-2]), "c.pdb")
    assert msg == (
        "c.pdb not stored: this session already has 2 uploads; the limit is 2 per session "
        "(each is kept 24 h)"
    )
    token, _, _ = system.upload_structure(payload(pdb(peptide[:-2])), "c.pdb", OTHER)
    assert token  # another session has its own count
    assert len(server.store.uploads_of(SID)) == 2 and len(server.store.uploads_of(OTHER)) == 1
    limit(uploads_per_session=10, upload_session_bytes=len(pdb(peptide)) * 2 + 10)
    msg = _refused(pdb(peptide[:-3]), "d.pdb")
    assert "would bring this session's uploads to" in msg and "the limit is" in msg


def test_limits_of_all_sessions_together(tmp_path):
    store = RunStore(str(tmp_path))
    limits = uploads.UploadLimits(max_total_bytes=2500, max_session_bytes=2000)
    store.save_upload(b"x" * 1500, "a.pdb", "s1", limits)
    with pytest.raises(ValueError, match=r"uploads are full \(0.0015 MB of 0.0025 MB"):
        store.save_upload(b"y" * 1500, "b.pdb", "s2", limits)


def test_uploads_are_deleted_after_retention_or_with_their_session(server, peptide):
    token, _, _ = upload(pdb(peptide))
    name = server.store.upload_name(token)
    other, _, _ = system.upload_structure(payload(pdb(peptide)), "o.pdb", OTHER)
    created = server.store.uploads_of(SID)[0]["created"]
    retention = uploads.limits_of(server.config).retention_s
    assert server.store.purge_uploads(retention, now=created + retention - 1) == 0
    assert server.store.purge_uploads(retention, now=created + retention + 1) == 2
    assert server.store.upload_path(token) is None and server.store.upload_name(token) is None
    with pytest.raises(StructureError, match="uploaded structure 'trp.pdb' is not on this machine"):
        build_protein_system(SystemConfig(kind="protein", pdb=name), 0)
    token, _, _ = upload(pdb(peptide))
    other, _, _ = system.upload_structure(payload(pdb(peptide)), "o.pdb", OTHER)
    assert server.store.delete_uploads(SID) == 1
    assert server.store.upload_path(token) is None and server.store.upload_path(other)
    with pytest.raises(SpecError, match="needs an uploaded PDB file first"):
        system.read_protein({}, "upload", token)
    # a file of the earlier layout (uploads/<token>.pdb) goes after the retention period too
    old = server.store.uploads_dir / ("ab" * 16 + ".pdb")
    old.write_bytes(pdb(peptide))
    os.utime(old, (created - retention - 5, created - retention - 5))
    uploads.install(server.config)  # at start-up
    assert not old.exists() and server.store.upload_path(other)


def test_limits_are_stated_under_the_field():
    layout = system.layout(PageContext(structures=()))
    text = json.dumps(layout.to_plotly_json(), default=lambda o: o.to_plotly_json())
    assert "PDB format, at most 2 MB." in text
    assert (
        f"up to {MAX_HEAVY_ATOMS:,} heavy atoms (water, ions and ligands are stripped); at most "
        "10 uploads and 10 MB per session, each kept 24 h." in text
    )


def test_limits_settings_are_checked(monkeypatch):
    from workbench.config import ServerConfig, from_argv

    monkeypatch.setenv("WB_UPLOAD_RETENTION_S", "600")
    config = from_argv(["--uploads-per-session", "3"])
    limits = uploads.limits_of(config)
    assert (limits.retention_s, limits.max_per_session) == (600, 3)
    assert limits.max_bytes == config.max_upload_bytes
    with pytest.raises(ValueError, match=r"uploads_per_session must be in \[1, 10000\]"):
        ServerConfig(uploads_per_session=0)
    with pytest.raises(ValueError, match="max_per_session must be >= 1"):
        uploads.UploadLimits(max_per_session=0)


# ---- item 12: PDB ids never read the server's working directory --------------------------
def test_pdb_id_never_reads_the_working_directory(server, peptide, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "9zzz").write_bytes(pdb(peptide))  # a file named like a PDB id, here
    protein = system.read_protein({"protein.pdb_id": "9zzz"}, "pdbid", None)
    assert protein["pdb"] == "9zzz"
    with pytest.raises(StructureError) as err:
        build_protein_system(SystemConfig(kind="protein", pdb="9zzz"), 0)
    message = str(err.value)  # offline: one clear line
    assert "could not download PDB 9ZZZ" in message and "may be offline" in message
    assert "\n" not in message and str(tmp_path) not in message
    # in the configured structure folder, the id resolves there (no network)
    folder = server.config.structure_dirs[0]
    with open(os.path.join(folder, "1ABC.pdb"), "wb") as fh:
        fh.write(pdb(peptide))
    s = build_protein_system(SystemConfig(kind="protein", pdb="1abc"), 0)
    assert s.meta["sequence"] == "GAWSKE"
    assert "read from 1ABC.pdb on this machine (no download)" in s.meta["notes"][0]


def test_pdb_id_resolves_through_the_download_cache_and_a_loopback_server(
    server, peptide, tmp_path, monkeypatch
):
    import http.server
    import threading

    hits = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            hits.append(self.path)
            self.send_response(200)
            self.end_headers()
            self.wfile.write(pdb(peptide))

        def log_message(self, *args):
            del args

    httpd = http.server.HTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        monkeypatch.setenv("SLOWMODE_PDB_URL", f"http://127.0.0.1:{httpd.server_port}/dl")
        monkeypatch.chdir(tmp_path)
        (tmp_path / "7abc").write_text("not this one")
        for _ in range(2):
            data, label = engine_io.structure_source_bytes("7abc")
            assert data == pdb(peptide) and label == "7ABC"
        assert hits == ["/dl/7ABC.pdb"]  # then read from the cache
    finally:
        httpd.shutdown()
        httpd.server_close()


# ---- item 13: names, not server paths -----------------------------------------------------
def test_structure_dropdown_values_are_names(server, peptide):
    folder = server.config.structure_dirs[0]
    with open(os.path.join(folder, "mini.pdb"), "wb") as fh:
        fh.write(pdb(peptide))
    ctx = PageContext(structures=tuple(system.structure_list()))
    layout = json.dumps(system.layout(ctx).to_plotly_json(), default=lambda o: o.to_plotly_json())
    assert folder not in layout and "mini.pdb" in layout
    values = [v for _, v in uploads.structure_options(ctx.structures)]
    assert values == ["villin", "mini.pdb"]
    protein = system.read_protein(
        {"protein.structure": "mini.pdb", "protein.start": "mini.pdb"}, "file", None
    )
    assert protein["pdb"] == "mini.pdb" and protein["start"] == "mini.pdb"
    s = build_protein_system(SystemConfig(kind="protein", **protein), 0)
    assert s.meta["sequence"] == "GAWSKE"
    with pytest.raises(SpecError, match="protein.structure"):  # a path is not offered
        system.read_protein({"protein.structure": os.path.join(folder, "mini.pdb")}, "file", None)


def test_a_run_from_an_upload_stores_and_exports_names_only(server, peptide, tmp_path):
    token, _, _ = upload(pdb(peptide), "my protein.pdb")
    values = {**forms.default_values(), **forms.protein_values()}
    specs = system.run_specs(values, ["gd"], "protein", "upload", token)
    assert specs[0].system.pdb == f"{server.store.upload_name(token)}"
    assert specs[0].system.pdb.endswith("/my protein.pdb")
    run_id = server.submit_group(specs, owner=SID)[0]
    wait_for(lambda: server.snapshot(run_id, SID).terminal, what="the fake run to end")
    config = (tmp_path / "runs" / run_id / "config.json").read_text()
    data = server.export_data(run_id, SID)
    exported = jobs.export_file(data, "json", "x")[1]
    for text in (config, exported):
        assert str(tmp_path) not in text and "uploads" not in text
        assert json.loads(text)["spec"]["system"]["pdb"] == specs[0].system.pdb
    # the name maps back to the file on this server, and the runs list shows the file's name
    s = build_protein_system(specs[0].system, 0)
    assert s.name.startswith("my protein.pdb (6 res")
    from workbench.panels import runs

    assert runs.system_name(json.loads(config)["spec"]) == "protein my protein.pdb"
