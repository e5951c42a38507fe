"""OpenMM baselines (minimization, Langevin MD) on the protein's own System, logged as JAX runs."""

import numpy as np
import pytest

from engine.config import RunSpec, ScheduleConfig, SystemConfig
from engine.protein.baseline import (
    _make_context,
    run_openmm,
    run_openmm_result,
    with_builtin_obc2,
)
from engine.protein.build import build_protein_system
from engine.protein.energy import energy_terms

COLUMNS = {"step", "stage", "wall_time_s", "energy", "grad_norm", "radius_of_gyration"}


@pytest.fixture(autouse=True)
def _cache(tmp_path, monkeypatch):
    monkeypatch.setenv("SLOWMODE_CACHE", str(tmp_path / "cache"))


@pytest.fixture(scope="module")
def spec():
    return RunSpec(
        system=SystemConfig(kind="protein", sequence="YGGFM", start="extended"),
        chunk_size=10,
        frame_every=20,
        schedule=ScheduleConfig(max_steps=60),
    )


@pytest.fixture(scope="module")
def peptide(spec):
    return build_protein_system(spec.system, spec.seed)


def test_minimization_lowers_the_energy_of_the_same_system(spec, peptide):
    progress = []
    out = run_openmm(spec, peptide, method="openmm-min", on_progress=progress.append)
    m = out["metrics"]
    assert out["status"] == "done" and COLUMNS <= set(m)
    assert m["step"][0] == 0 and np.all(np.diff(m["step"]) > 0) and m["step"][-1] <= 60
    assert np.all(m["stage"] == 2) and np.all(np.diff(m["wall_time_s"]) >= 0)
    assert m["energy"][-1] < m["energy"][0]
    # OpenMM's CPU energy is the JAX energy of the same positions (mixed precision: 1e-5)
    assert m["energy"][0] == pytest.approx(
        energy_terms(peptide, peptide.x0)["total"], rel=1e-5, abs=1e-2
    )
    assert m["energy"][-1] == pytest.approx(
        energy_terms(peptide, out["x_final"])["total"], rel=1e-5, abs=1e-2
    )
    assert out["frames_x"].shape == (len(out["frames_step"]), peptide.n_atoms, 3)
    assert out["frames_step"][0] == 0 and out["frames_step"][-1] == m["step"][-1]
    assert len(progress) == len(m["step"]) and progress[0].x is not None


def test_langevin_dynamics_runs_and_stops_on_request(spec, peptide):
    out = run_openmm(spec, peptide, method="openmm-md", n_steps=40)
    assert out["status"] == "done" and out["metrics"]["step"].tolist() == [0, 10, 20, 30, 40]
    assert np.all(np.isfinite(out["metrics"]["energy"]))
    calls = []

    def stop():
        calls.append(1)
        return len(calls) > 2

    stopped = run_openmm(spec, peptide, method="openmm-md", n_steps=1000, should_stop=stop)
    assert stopped["status"] == "stopped" and stopped["metrics"]["step"][-1] == 20


def test_run_result_wrapper(spec, peptide):
    result = run_openmm_result(spec, "openmm-min", system=peptide)
    assert result.summary()["method"] == "openmm-min"
    assert result.x_final.shape == (peptide.n_atoms, 3)


def test_residue_model_and_unknown_method_are_refused(spec, peptide):
    residue = build_protein_system(
        SystemConfig(kind="protein", sequence="YGGFM", model="residue"), 0
    )
    with pytest.raises(ValueError, match="all-atom"):
        run_openmm(spec, residue, method="openmm-min")
    with pytest.raises(ValueError, match="method must be one of"):
        run_openmm(spec, peptide, method="openmm-npt")


def test_builtin_obc2_kernel_gives_the_energy_and_forces_of_obc2_xml(peptide):
    """Both baselines run OpenMM's GBSAOBCForce in place of implicit/obc2.xml's CustomGBForce:
    the same energy and forces, on the double-precision Reference platform, at x0 and at a
    jiggled x. They differ by 2e-7 of the GB terms: obc2.xml writes Coulomb's constant as
    138.935485, the built-in kernel uses 138.935456 kJ nm/mol/e^2 (float32 CPU MD rounds at
    1e-7 anyway)."""
    import openmm

    custom = peptide.payload["openmm_system"]
    builtin = with_builtin_obc2(custom)
    kinds = {type(f).__name__ for f in builtin.getForces()}
    assert "GBSAOBCForce" in kinds and "CustomGBForce" not in kinds
    assert {type(f).__name__ for f in custom.getForces()} >= {"CustomGBForce"}  # a copy

    def energy_forces(system, x):
        context = openmm.Context(
            system, openmm.VerletIntegrator(0.001), openmm.Platform.getPlatformByName("Reference")
        )
        context.setPositions(x)
        state = context.getState(getEnergy=True, getForces=True)
        return state.getPotentialEnergy()._value, state.getForces(asNumpy=True)._value

    rng = np.random.default_rng(0)
    for x in (peptide.x0, peptide.x0 + rng.normal(0, 0.01, peptide.x0.shape)):
        e_custom, f_custom = energy_forces(custom, np.asarray(x, np.float64))
        e_builtin, f_builtin = energy_forces(builtin, np.asarray(x, np.float64))
        assert e_builtin == pytest.approx(e_custom, rel=5e-7)
        assert e_builtin != e_custom  # two implementations, not one force read twice
        np.testing.assert_allclose(f_builtin, f_custom, rtol=5e-7, atol=1e-4)


@pytest.mark.parametrize("method", ["openmm-min", "openmm-md"])
def test_both_baselines_run_the_builtin_kernel_and_md_alone_constrains_hydrogens(
    spec, peptide, method
):
    context, _ = _make_context(spec, peptide, method)
    system = context.getSystem()
    kinds = {type(f).__name__ for f in system.getForces()}
    assert "GBSAOBCForce" in kinds and "CustomGBForce" not in kinds
    assert (system.getNumConstraints() > 0) == (method == "openmm-md")
