"""AMBER ff14SB + OBC2 in JAX against OpenMM's own energies and forces; residue model checks."""

import copy

import jax
import jax.numpy as jnp
import numpy as np
import openmm
import pytest

from engine.config import EnergyConfig, SystemConfig
from engine.protein.amber import amber_parameters, make_amber_fns
from engine.protein.build import build_protein_system
from engine.protein.energy import energy_terms, make_protein_energy, residue_matrices
from tests.conftest import shared_pdb

N_PERTURBED = 20
# all 20 amino acids: every residue template, charged termini, His, Pro, Cys
ALL_AA = "ACDEFGHIKLMNPQRSTVWY"


@pytest.fixture(autouse=True)
def _cache(tmp_path, monkeypatch):
    monkeypatch.setenv("SLOWMODE_CACHE", str(tmp_path / "cache"))


def _openmm_reference(system, xs):
    """OpenMM Reference-platform (double precision) energies [k] and forces [k, n, 3]."""
    ctx = openmm.Context(
        system.payload["openmm_system"],
        openmm.VerletIntegrator(0.001),
        openmm.Platform.getPlatformByName("Reference"),
    )
    energies, forces = [], []
    for x in xs:
        ctx.setPositions(x)
        state = ctx.getState(getEnergy=True, getForces=True)
        energies.append(state.getPotentialEnergy()._value)
        forces.append(np.asarray(state.getForces(asNumpy=True)._value))
    return np.array(energies), np.array(forces)


def _configurations(system, seed=0):
    """The start plus N_PERTURBED Gaussian perturbations (0.005..0.05 nm per coordinate)."""
    rng = np.random.default_rng(seed)
    scales = np.linspace(0.005, 0.05, N_PERTURBED)
    return [system.x0] + [system.x0 + s * rng.standard_normal(system.x0.shape) for s in scales]


def _validate(system):
    model = make_protein_energy(system, EnergyConfig(dtype="float64"))
    value_and_grad = jax.jit(jax.value_and_grad(model.energy_fn))
    xs = _configurations(system)
    e_ref, f_ref = _openmm_reference(system, xs)
    e_err, f_err = [], []
    for x, e0, f0 in zip(xs, e_ref, f_ref, strict=True):
        e, g = value_and_grad(jnp.asarray(x))
        f = -np.asarray(g)
        e_err.append(abs(float(e) - e0) / abs(e0))
        f_err.append(np.sqrt(np.mean((f - f0) ** 2)) / np.sqrt(np.mean(f0**2)))
    return max(e_err), max(f_err)


@pytest.fixture(scope="module")
def trpcage():
    return build_protein_system(SystemConfig(kind="protein", pdb=shared_pdb("2JOF_native.pdb")), 0)


@pytest.fixture(scope="module")
def small():
    """Met-enkephalin from sequence (75 atoms): cheap to compile for the structural tests."""
    return build_protein_system(SystemConfig(kind="protein", sequence="YGGFM"), 0)


@pytest.fixture(scope="module")
def peptide():
    return build_protein_system(SystemConfig(kind="protein", sequence=ALL_AA, start="extended"), 0)


def test_matches_openmm_on_2jof(trpcage):
    e_err, f_err = _validate(trpcage)
    assert e_err <= 1e-5, f"max relative energy error {e_err:.2e}"
    assert f_err <= 1e-4, f"max relative force RMS error {f_err:.2e}"


def test_matches_openmm_on_peptide_from_sequence(peptide):
    e_err, f_err = _validate(peptide)
    assert e_err <= 1e-5, f"max relative energy error {e_err:.2e}"
    assert f_err <= 1e-4, f"max relative force RMS error {f_err:.2e}"


def test_terms_match_openmm_force_groups(peptide):
    system = copy.deepcopy(peptide.payload["openmm_system"])
    names = {
        openmm.HarmonicBondForce: "bond",
        openmm.HarmonicAngleForce: "angle",
        openmm.PeriodicTorsionForce: "torsion",
        openmm.CustomGBForce: "gb",
    }
    groups = {}
    for i, force in enumerate(system.getForces()):
        force.setForceGroup(i)
        groups[names.get(type(force), type(force).__name__)] = i
    ctx = openmm.Context(
        system, openmm.VerletIntegrator(0.001), openmm.Platform.getPlatformByName("Reference")
    )
    ctx.setPositions(peptide.x0)

    def omm(name):
        return ctx.getState(getEnergy=True, groups={groups[name]}).getPotentialEnergy()._value

    terms = energy_terms(peptide, peptide.x0)
    for name in ("bond", "angle", "torsion"):
        assert terms[name] == pytest.approx(omm(name), rel=1e-9, abs=1e-9)
    assert terms["lj"] + terms["coulomb"] == pytest.approx(omm("NonbondedForce"), rel=1e-9)
    assert terms["gb_polar"] + terms["gb_surface"] == pytest.approx(omm("gb"), rel=1e-9)
    assert terms["total"] == pytest.approx(sum(v for k, v in terms.items() if k != "total"))


def test_parameters_found_by_type_not_index(small):
    peptide = small
    system = peptide.payload["openmm_system"]
    shuffled = openmm.System()
    for i in range(system.getNumParticles()):
        shuffled.addParticle(system.getParticleMass(i))
    for force in reversed([copy.deepcopy(f) for f in system.getForces()]):
        shuffled.addForce(force)
    a, b = amber_parameters(system), amber_parameters(shuffled)
    energy_a, energy_b = (jax.jit(make_amber_fns(p)[0]) for p in (a, b))
    x = jnp.asarray(peptide.x0)
    assert float(energy_a(x)) == pytest.approx(float(energy_b(x)), rel=1e-12)


def test_unsupported_force_is_rejected(peptide):
    system = copy.deepcopy(peptide.payload["openmm_system"])
    system.addForce(openmm.CustomExternalForce("x^2"))
    with pytest.raises(ValueError, match="CustomExternalForce"):
        amber_parameters(system)


def test_energy_model_interface_and_float32(small):
    peptide = small
    model = make_protein_energy(peptide, EnergyConfig(dtype="float32"))
    assert model.pair_terms is None and model.aux_update is None
    aux = model.aux_init(jax.random.PRNGKey(0), peptide.x0)
    assert aux.shape == (0,) and aux.dtype == jnp.float32
    x32 = jnp.asarray(peptide.x0, dtype=jnp.float32)
    e32, g32 = jax.jit(jax.value_and_grad(lambda x: model.train_energy_fn(x, aux)))(x32)
    assert e32.dtype == jnp.float32 and g32.dtype == jnp.float32
    e64 = float(jax.jit(model.energy_fn)(jnp.asarray(peptide.x0)))
    assert float(e32) == pytest.approx(e64, rel=1e-4)
    assert np.all(np.isfinite(np.asarray(g32)))


def test_blocked_pair_sums_equal_single_block(small, monkeypatch):
    peptide = small
    from engine.protein import amber

    params = amber_parameters(peptide.payload["openmm_system"])
    x = jnp.asarray(peptide.x0)
    single = jax.jit(jax.value_and_grad(make_amber_fns(params)[0]))(x)
    monkeypatch.setattr(amber, "_SINGLE_BLOCK_PAIRS", 0)
    monkeypatch.setattr(
        amber, "_BLOCK_ELEMENTS", 31 * params.n_atoms
    )  # 3 blocks of 31 rows, padded
    blocked = jax.jit(jax.value_and_grad(make_amber_fns(params)[0]))(x)
    assert float(blocked[0]) == pytest.approx(float(single[0]), rel=1e-12)
    np.testing.assert_allclose(np.asarray(blocked[1]), np.asarray(single[1]), rtol=1e-9, atol=1e-9)


# ---- residue-level model -------------------------------------------------------------------


@pytest.fixture(scope="module")
def residue_system():
    return build_protein_system(
        SystemConfig(kind="protein", sequence="DAYAQWLKDGGPSSGRPPPS", model="residue"), 0
    )


def test_residue_model_energy_and_gradient(residue_system):
    model = make_protein_energy(residue_system, EnergyConfig(dtype="float64"))
    x = jnp.asarray(residue_system.x0)
    energy_fn = jax.jit(model.energy_fn)
    e, g = jax.jit(jax.value_and_grad(model.energy_fn))(x)
    assert np.isfinite(float(e)) and np.all(np.isfinite(np.asarray(g)))
    # central finite difference along a random direction
    v = jnp.asarray(np.random.default_rng(1).standard_normal(x.shape))
    h = 1e-6
    fd = (float(energy_fn(x + h * v)) - float(energy_fn(x - h * v))) / (2 * h)
    assert float(jnp.sum(g * v)) == pytest.approx(fd, rel=1e-6, abs=1e-6)
    terms = energy_terms(residue_system, residue_system.x0)
    assert set(terms) == {"bond", "angle", "vdw", "hbond", "hydrophobic", "total"}
    assert terms["total"] == pytest.approx(float(e))


def test_residue_matrices_for_heatmaps(residue_system):
    m = residue_matrices(residue_system)
    n = residue_system.n_atoms
    assert set(m) >= {"vdw", "hbond", "hydrophobic"}
    for name, a in m.items():
        assert a.shape == (n, n), name
        np.testing.assert_allclose(a, a.T, err_msg=name)
        assert np.all(np.diag(a) == 0), name
    assert np.all(m["hbond"] <= 0) and np.all(m["hydrophobic"] <= 0)
    # proline (no amide H) donates nothing: its H-bond strengths are half those of others
    assert m["hbond_strength"][11, 0] == pytest.approx(0.5 * m["hbond_strength"][10, 0])


def test_residue_matrices_refuse_all_atom(peptide):
    with pytest.raises(ValueError, match="residue-level"):
        residue_matrices(peptide)
