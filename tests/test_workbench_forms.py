"""Form parsing: defaults, bad input with messages that name the accepted range, method-scoped
fields, presets filling the form, protein sources and uploads."""

import base64

import pytest

from engine import RunSpec, SpecError, SystemConfig
from engine.presets import PRESETS
from workbench import forms


def test_defaults_give_gd_and_gnn_from_the_same_system_and_seed():
    specs = forms.parse_run_form(forms.default_values(), "loop", list(forms.DEFAULT_METHODS))
    gd, gnn = specs
    assert (gd.label, gd.reparam.kind) == ("gd", "none")
    assert (gnn.label, gnn.reparam.kind) == ("gnn", "gnn")
    assert gd.system == gnn.system and gd.system.kind == "lj-loop" and gd.system.n == 400
    assert gd.seed == gnn.seed == 0
    assert gd.frame_every == gd.chunk_size  # live views get a frame after every chunk


@pytest.mark.parametrize(
    "field, raw, expected",
    [
        ("system.n", "abc", "must be an integer in [50, 100000], got 'abc'"),
        ("system.n", "-5", "must be an integer in [50, 100000], got '-5'"),
        ("system.n", "1e9", "must be an integer in [50, 100000], got '1e9'"),
        ("system.n", "nan", "must be an integer in [50, 100000], got 'nan'"),
        ("system.n", "400.5", "must be an integer in [50, 100000], got '400.5'"),
        ("system.n", "", "is required: an integer in [50, 100000]"),
        ("gd.learning_rate", "inf", "must be a number in (0, 10], got 'inf'"),
        ("system.loop_strength", "-0.1", "must be a number in [0, 10], got '-0.1'"),
        ("seed", "3000000000", "must be an integer in [0, 2147483647], got '3000000000'"),
    ],
    ids=[
        "text",
        "negative",
        "huge",
        "nan",
        "fraction",
        "blank",
        "inf-lr",
        "negative-float",
        "huge-seed",
    ],
)
def test_bad_numbers_get_a_message_naming_the_range(field, raw, expected):
    values = forms.default_values()
    values[field] = raw
    assert forms.validate_form(values, "loop", ["gd"]) == {field: expected}
    with pytest.raises(SpecError) as err:
        forms.parse_run_form(values, "loop", ["gd"])
    assert err.value.field == field


def test_engine_rules_across_fields_come_back_on_the_form_key():
    values = forms.default_values()
    values.update({"system.n": "60", "system.loop_stride": "70"})
    assert forms.validate_form(values, "loop", ["gd"]) == {
        "system.loop_stride": "must be < n=60, got 70"
    }

    values = forms.default_values()
    values.update({"system.kind": "lj-loop", "gnn.propagation": "bonds"})
    assert forms.validate_form(values, "loop", ["gnn"]) == {
        "gnn.propagation": "'bonds' needs a system with bonds (bond-lj-loop or protein); "
        "the pure LJ loop has none"
    }
    values["system.kind"] = "bond-lj-loop"
    (gnn,) = forms.parse_run_form(values, "loop", ["gnn"])
    assert gnn.reparam.propagation == "bonds" and not gnn.reparam.needs_modes


def test_method_scoped_fields_map_errors_back_and_are_checked_only_when_used():
    values = forms.default_values()
    values["gnn.hidden"] = "1"
    assert forms.validate_form(values, "loop", ["gd"]) == {}  # GNN not selected
    assert forms.validate_form(values, "loop", ["gd", "gnn"]) == {
        "gnn.hidden": "must be an integer in [2, 1024], got '1'"
    }


def test_method_scoped_values_reach_only_their_run():
    values = forms.default_values()
    values.update(
        {
            "cg.n_modes": "33",
            "cg.learning_rate": "0.05",
            "gd.learning_rate": "0.01",
            "fire.learning_rate": "0.3",
        }
    )
    gd, cg, fire = forms.parse_run_form(values, "loop", ["gd", "cg", "fire"])
    assert (gd.optim.learning_rate, gd.reparam.n_modes) == (0.01, None)
    assert (cg.optim.learning_rate, cg.reparam.n_modes, cg.reparam.kind) == (0.05, 33, "linear")
    assert (fire.optim.name, fire.optim.learning_rate) == ("fire", 0.3)
    assert [forms.method_of(s) for s in (gd, cg, fire)] == ["gd", "cg", "fire"]


def test_blank_optional_fields_let_the_engine_choose():
    specs = forms.parse_run_form(forms.default_values(), "loop", ["cg"])
    assert specs[0].reparam.n_modes is None and specs[0].optim.stage1_lr is None


def test_no_method_or_unknown_method_is_refused():
    with pytest.raises(SpecError, match="choose at least one method"):
        forms.parse_run_form(forms.default_values(), "loop", [])
    with pytest.raises(SpecError) as err:
        forms.parse_run_form(forms.default_values(), "loop", ["lbfgs"])
    assert err.value.field == "methods"


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_presets_fill_the_form_and_parse_back_to_the_same_specs(name):
    _, specs = PRESETS[name]
    values, methods = forms.values_from_specs(specs)
    tab = "protein" if specs[0].system.kind == "protein" else "loop"
    protein = None
    if tab == "protein":  # the structure comes from the protein widgets, not the fields
        system = specs[0].system
        protein = {"pdb": system.pdb, "start": system.start, "model": system.model}
    back = forms.parse_run_form(values, tab, methods, protein)
    # the workbench sends a frame after every chunk; everything else that the run uses must be
    # the preset's (GNN-only choices of a GD or CG run are unused, so they may differ)
    assert [
        used(s.replace(frame_every=p.frame_every)) for s, p in zip(back, specs, strict=True)
    ] == [used(p) for p in specs]


def used(spec: RunSpec) -> dict:
    d = spec.to_dict()
    if spec.reparam.kind != "gnn":
        d["reparam"] = {
            "kind": spec.reparam.kind,
            "n_modes": spec.reparam.n_modes,
            "anchor": spec.reparam.anchor,
        }
    if (spec.method_label or "").startswith("openmm"):
        d.pop("optim")  # OpenMM's minimizer has no step size
    return d


def test_bool_and_choice_widgets():
    values = forms.default_values()
    values["gnn.fit_to_x0"] = [True]
    assert forms.parse_run_form(values, "loop", ["gnn"])[0].reparam.fit_to_x0 is True
    values["energy.soft_core"] = "quantum"
    assert "energy.soft_core" in forms.validate_form(values, "loop", ["gd"])


def allowed(path):
    return path in {"/data/a.pdb", "villin"}


@pytest.mark.parametrize(
    "choice, expected",
    [
        (
            forms.ProteinChoice(source="file", structure="villin"),
            {"pdb": "villin", "sequence": None},
        ),
        (forms.ProteinChoice(source="pdbid", pdb_id="2jof"), {"pdb": "2jof", "sequence": None}),
        (
            forms.ProteinChoice(source="sequence", sequence="nly iqw"),
            {"pdb": None, "sequence": "NLYIQW"},
        ),
        (
            forms.ProteinChoice(source="upload", upload_path="/runs/uploads/x.pdb"),
            {"pdb": "/runs/uploads/x.pdb", "sequence": None},
        ),
    ],
    ids=["file", "pdbid", "sequence", "upload"],
)
def test_protein_sources(choice, expected):
    assert forms.protein_system(choice, allowed) == {**expected, "start": "native"}


@pytest.mark.parametrize(
    "choice, field",
    [
        (forms.ProteinChoice(source="file", structure="/etc/passwd"), "protein.structure"),
        (forms.ProteinChoice(source="pdbid", pdb_id="../x"), "protein.pdb_id"),
        (forms.ProteinChoice(source="sequence", sequence="HELLO1"), "protein.sequence"),
        (forms.ProteinChoice(source="upload"), "protein.upload"),
        (
            forms.ProteinChoice(source="file", structure="villin", start="/tmp/other.pdb"),
            "protein.start",
        ),
    ],
    ids=["unlisted-path", "bad-id", "bad-sequence", "no-upload", "unlisted-start"],
)
def test_protein_sources_refuse_what_the_server_did_not_offer(choice, field):
    with pytest.raises(SpecError) as err:
        forms.protein_system(choice, allowed)
    assert err.value.field == field


def test_protein_specs_use_the_protein_fields():
    protein = forms.protein_system(
        forms.ProteinChoice(source="file", structure="villin", start="extended"), allowed
    )
    values = forms.default_values()
    values["system.model"] = "residue"
    (spec,) = forms.parse_run_form(values, "protein", ["gd"], protein)
    assert spec.system.kind == "protein" and spec.system.pdb == "villin"
    assert (spec.system.start, spec.system.model) == ("extended", "residue")
    values["system.n"] = "junk"  # loop fields do not matter for a protein
    assert forms.validate_form(values, "protein", ["gd"], protein) == {}


PDB = (
    "ATOM      1  N   ALA A   1      11.104   6.134  -6.504  1.00  0.00           N\n"
    "ATOM      2  CA  ALA A   1      11.639   6.071  -5.147  1.00  0.00           C\n"
    "ATOM      3  C   ALA A   1      13.155   5.914  -5.263  1.00  0.00           C\n"
)


def upload(text: str) -> str:
    return "data:application/octet-stream;base64," + base64.b64encode(text.encode()).decode()


def test_upload_accepts_a_small_pdb():
    assert forms.check_upload(upload(PDB), "x.pdb", 10_000) == PDB.encode()


@pytest.mark.parametrize(
    "contents, cap, message",
    [
        (upload(PDB), 100, "larger than the 0.0001 MB cap"),
        (upload("hello, world\n" * 10), 10_000, "is not a PDB structure"),
        ("data:;base64,@@@", 10_000, "could not be decoded"),
        (None, 10_000, "no file received"),
    ],
    ids=["too-large", "not-pdb", "not-base64", "empty"],
)
def test_upload_refusals(contents, cap, message):
    with pytest.raises(SpecError, match=message) as err:
        forms.check_upload(contents, "x.pdb", cap)
    assert err.value.field == "protein.upload"


def test_every_numeric_field_range_is_accepted_by_the_engine_at_its_default():
    for f in forms.FIELDS:
        if f.kind in ("int", "float") and f.default is not None:
            assert f.lo <= f.default <= f.hi, f.name
    loop_methods = [m for m in forms.FORM_METHODS if not m.startswith("openmm")]
    assert isinstance(
        forms.parse_run_form(forms.default_values(), "loop", loop_methods)[0], RunSpec
    )


@pytest.mark.parametrize(
    "system, source, widgets",
    [
        (
            SystemConfig(kind="protein", pdb="villin", start="random"),
            "file",
            {"protein.structure": "villin", "protein.start": "random"},
        ),
        (
            SystemConfig(kind="protein", pdb="2JOF"),
            "pdbid",
            {"protein.pdb_id": "2JOF", "protein.start": "native"},
        ),
        (
            SystemConfig(kind="protein", sequence="GYDPETGTWG"),
            "sequence",
            {"protein.sequence": "GYDPETGTWG", "protein.start": "native"},
        ),
    ],
    ids=["file", "pdbid", "sequence"],
)
def test_protein_presets_fill_the_protein_widgets(system, source, widgets):
    assert forms.protein_widgets(RunSpec(system=system)) == (source, widgets)


def test_openmm_baseline_is_for_all_atom_proteins_only():
    values = forms.default_values()
    with pytest.raises(SpecError, match="applies to protein systems only") as err:
        forms.parse_run_form(values, "loop", ["gd", "openmm-min"])
    assert err.value.field == "methods"
    protein = forms.protein_system(forms.ProteinChoice(source="file", structure="villin"), allowed)
    gd, omm = forms.parse_run_form(values, "protein", ["gd", "openmm-min"], protein)
    assert omm.method_label == "openmm-min" and forms.method_of(omm) == "openmm-min"
    assert forms.method_of(gd) == "gd"
    values["system.model"] = "residue"
    assert forms.validate_form(values, "protein", ["openmm-min"], protein) == {
        "methods": "the OpenMM baseline needs the all-atom model"
    }


@pytest.mark.parametrize(
    "changes, chunk, patience",
    [
        ({}, 20, 20),  # n = 400: the paper's 20 checks of 20 steps
        ({"system.n": "1000"}, 10, 40),  # slower steps: smaller chunks, same 400 steps of patience
        ({"system.n": "1000", "chunk_size": "25"}, 25, 16),
        ({"chunk_size": "7", "schedule.patience": "3"}, 7, 3),
    ],
    ids=["n400", "n1000", "chunk-given", "both-given"],
)
def test_blank_chunk_and_patience_are_chosen_from_n(changes, chunk, patience):
    values = forms.default_values()
    values.update(changes)
    (spec,) = forms.parse_run_form(values, "loop", ["gd"])
    assert (spec.chunk_size, spec.frame_every, spec.schedule.patience) == (chunk, chunk, patience)


def test_k_beyond_the_number_of_modes_is_refused_on_the_spot():
    values = forms.default_values()
    values.update({"system.n": "60", "gnn.n_modes": "80"})
    assert forms.validate_form(values, "loop", ["gd", "gnn"]) == {
        "gnn.n_modes": "must be in [1, 60] for n = 60 (60 modes), got 80"
    }
    values["modes.method"] = "hessian"  # Cartesian modes: 3n of them
    assert forms.validate_form(values, "loop", ["gd", "gnn"]) == {}


def test_the_page_opens_with_the_fig2_settings_and_k_left_to_n_over_4():
    _, specs = PRESETS["fig2-lj-n400"]
    values = forms.start_values(specs)
    gd, gnn = forms.parse_run_form(values, "loop", ["gd", "gnn"])
    paper_gnn = next(s for s in specs if s.reparam.kind == "gnn")
    assert gnn.optim == paper_gnn.optim and gnn.energy == paper_gnn.energy
    assert gnn.reparam.propagation == paper_gnn.reparam.propagation and gnn.reparam.n_modes is None
    assert (gnn.chunk_size, gnn.schedule.patience) == (
        paper_gnn.chunk_size,
        paper_gnn.schedule.patience,
    )
    assert forms.start_values(None) == forms.default_values()
