"""One schema: the engine, the workbench form and the CLI agree on every declared field.

Walks every parameter declared in engine/config.py and checks that the form shows the range
and default the engine accepts, that the CLI has a flag with the same default and range, and
that all three accept the bounds and refuse just beyond them with the same message.
"""

import dataclasses
import math

import pytest

from engine import RunSpec, SpecError, cli, methods, schema
from engine.config import N_MAX_ALL_PAIRS
from workbench import forms

ENTRIES = schema.params(RunSpec)
NUMERIC = [e for e in ENTRIES if e.param.kind in ("int", "float")]
PROTEIN_ONLY = ("nmr_model",)


def _spec_with(path: str, value):
    d = RunSpec().to_dict()
    if path.split(".")[-1] in PROTEIN_ONLY:  # checked for protein systems only
        d["system"].update(kind="protein", pdb="villin")
    if path == "system.n" and value > N_MAX_ALL_PAIRS:  # only the cutoff model goes this far
        d["energy"]["repulsion"] = "cutoff"
    *parents, leaf = path.split(".")
    node = d
    for part in parents:
        node = node[part]
    node[leaf] = value
    return RunSpec.from_dict(d)


def _beyond(e: schema.Entry):
    """Values just outside the accepted interval (the open lower bound itself included)."""
    p = e.param
    step = 1 if p.kind == "int" else max(abs(p.hi), 1.0) * 1e-3
    out = [p.hi + step]
    out.append(p.lo if p.lo_open else p.lo - (1 if p.kind == "int" else max(abs(p.lo), 1e-3)))
    return out


def test_every_declared_default_is_accepted_and_documented():
    assert RunSpec() == RunSpec.from_dict(RunSpec().to_dict())
    for e in ENTRIES:
        e.param.check(e.path, e.default)
        assert e.param.label and e.param.help.endswith((".", ")")), e.path


@pytest.mark.parametrize("e", NUMERIC, ids=[e.path for e in NUMERIC])
def test_engine_accepts_the_bounds_and_refuses_beyond(e):
    p = e.param
    for ok in [p.hi] if p.lo_open else [p.lo, p.hi]:
        if e.path == "system.loop_stride" and ok >= RunSpec().system.n:
            continue
        assert _spec_with(e.path, int(ok) if p.kind == "int" else ok) is not None
    for bad in _beyond(e):
        with pytest.raises(SpecError) as err:
            _spec_with(e.path, bad)
        assert err.value.field == e.path
        assert p.interval() in str(err.value)


def _form_fields(path: str) -> list:
    return [f for f in forms.FIELDS if f.path == path]


def test_form_fields_show_exactly_what_the_engine_accepts():
    assert forms.FIELDS, "the form is generated from the schema"
    for f in forms.FIELDS:
        e = schema.entry(RunSpec, f.path)
        assert (f.lo, f.hi, f.param.lo_open) == (e.param.lo, e.param.hi, e.param.lo_open)
        assert f.kind == e.param.kind
        if f.kind == "choice":
            assert set(f.param.values) <= set(e.param.values), f.name
        if f.name in forms.AUTO_BLANK:
            assert f.default is None and f.optional  # blank: computed from the system
        elif f.methods is None:
            assert f.default == e.default, f.name
        else:
            method = methods.METHODS[f.methods[0]]
            assert f.default == method.changes.get(f.path, e.default), f.name
        if f.kind in ("int", "float"):
            assert f.range_text().startswith(e.param.interval())
    # every shared (sectioned) parameter is on the form, every method field too
    for e in ENTRIES:
        if e.param.section:
            assert e.path in forms.FIELD_BY_NAME, e.path
    for key in forms.FORM_METHODS:
        for mf in methods.METHODS[key].fields:
            assert f"{key}.{mf.name}" in forms.FIELD_BY_NAME


def test_cli_flags_have_the_schema_defaults_and_ranges():
    parser = cli.build_parser()
    run_parser = parser._subparsers._group_actions[0].choices["run"]
    actions = {a.dest: a for a in run_parser._actions}
    for e in cli.SPEC_PARAMS:
        action = actions[e.path]
        assert action.option_strings == [cli.flag_of(e)] or cli.flag_of(e) in action.option_strings
        assert action.default is None  # unset flags leave the schema's default in place
        assert e.param.interval() in action.help
    args = parser.parse_args(["run", "--out", "x"])
    assert cli.spec_from_args(args, "gd") == methods.get("gd").spec()


@pytest.mark.parametrize("e", NUMERIC, ids=[e.path for e in NUMERIC])
def test_form_cli_and_engine_refuse_the_same_values_with_the_same_message(e, capsys):
    flag = cli.flag_of(e)
    bad = _beyond(e)[0]
    text = str(int(bad) if e.param.kind == "int" else bad)
    assert cli.main(["run", flag, text, "--out", "never-written"]) == 2
    err = capsys.readouterr().err.strip()
    for f in _form_fields(e.path):
        with pytest.raises(SpecError) as form_err:
            forms.parse_value(f, text)
        message = forms.message_of(form_err.value)
        assert err == f"error: {flag}: {message}"
        assert message == f"must be {'an integer' if e.param.kind == 'int' else 'a number'} in " \
            f"{e.param.interval()}, got {text!r}"  # fmt: skip
    ok = e.param.hi
    extra = ["--repulsion", "cutoff"] if e.path == "system.n" else []
    args = cli.build_parser().parse_args(["run", flag, str(ok), *extra, "--out", "x"])
    if not (e.path == "system.loop_stride"):
        spec = cli.spec_from_args(args, "gd")
        value = spec.to_dict()
        for part in e.path.split("."):
            value = value[part]
        assert math.isclose(value, ok)


def test_a_new_parameter_is_declared_once():
    """optim.nesterov was added as one declaration plus its use in engine/optim.py: it is on
    the form and the CLI with the same default, and reaches the optimizer."""
    assert "optim.nesterov" in forms.FIELD_BY_NAME
    assert forms.FIELD_BY_NAME["optim.nesterov"].default is False
    args = cli.build_parser().parse_args(["run", "--nesterov", "--out", "x"])
    spec = cli.spec_from_args(args, "gd")
    assert spec.optim.nesterov is True
    values = forms.default_values()
    values["optim.nesterov"] = [True]
    (gd,) = forms.parse_run_form(values, "loop", ["gd"])
    assert gd.optim.nesterov is True


def test_all_pairs_energies_cap_n_below_the_cutoff_model():
    d = RunSpec().to_dict()
    d["system"]["n"] = 20000
    for repulsion in ("all-pairs", "random-subset"):
        d["energy"]["repulsion"] = repulsion
        with pytest.raises(SpecError) as err:
            RunSpec.from_dict(d)
        assert err.value.field == "system.n"
        assert str(err.value) == (
            f"system.n must be <= 10000 with {repulsion} repulsion (use cutoff for larger "
            "systems), got 20000"
        )
    d["energy"]["repulsion"] = "cutoff"
    assert RunSpec.from_dict(d).system.n == 20000


def test_methods_registry_is_the_one_source_of_method_identity():
    for key, m in methods.METHODS.items():
        spec = m.spec() if "protein" not in m.systems or len(m.systems) > 1 else None
        if spec is not None:
            assert methods.method_of(spec) == key
        assert m.color.startswith("#") and m.label and m.description
    # suffixed labels of presets and benchmarks keep their method
    gd = methods.get("gd").spec()
    assert methods.method_of(gd.replace(method_label="gd+")) == "gd"
    assert methods.method_of(gd.replace(method_label="openmm-min")) == "openmm-min"
    assert methods.method_of_dict(gd.replace(method_label="openmm-min").to_dict()) == "openmm-min"
    assert methods.method_of_dict({"bogus": 1}) == "gd"
    with pytest.raises(SpecError, match="protein systems only"):
        methods.check_system("openmm-min", "lj-loop")
    assert dataclasses.is_dataclass(methods.METHODS["gd"])
