"""Force calls for MD: the one-pass contraction, the stress and neighbour-list reuse.

References: the derivative-block path (``one_pass=False``, the training path), central
finite differences of the energy (positions, and a homogeneous strain of the cell), and a
fresh neighbour search at every step.
"""

from __future__ import annotations

import numpy as np
import pytest
from ase import units
from ase.build import bulk
from ase.calculators.emt import EMT
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from amp_core import Potential, PropertyNotImplementedError, create_descriptor, create_model, evaluate_loss
from amp_core.errors import DataError
from amp_plugins.descriptors.gaussian._fortran import probe

KERNELS = [False, pytest.param(True, marks=pytest.mark.skipif(probe() is not None, reason=f"no kernels: {probe()}"))]


def _cell(shape: str, seed: int = 0):
    """A rattled 32-atom Cu/Pt fcc cell: orthorhombic, or sheared (triclinic)."""
    atoms = bulk("Cu", "fcc", a=3.61, cubic=True).repeat((2, 2, 2))
    atoms.symbols[::5] = "Pt"
    if shape == "triclinic":
        shear = np.array([[0.0, 0.35, 0.15], [0.25, 0.0, -0.2], [0.1, 0.3, 0.0]])
        atoms.set_cell(atoms.cell.array + shear, scale_atoms=True)
    elif shape == "orthorhombic":
        atoms.set_cell(atoms.cell.array * [1.0, 1.04, 0.97], scale_atoms=True)
    atoms.rattle(0.08, seed=seed)
    return atoms


@pytest.fixture(scope="module")
def model():
    """A (10, 10) network initialised on three EMT-labelled cells (random weights: numbers, not physics)."""
    return initialised_model()


def initialised_model():
    """(descriptor, model): a (10, 10) network initialised on three EMT-labelled 32-atom Cu/Pt cells."""
    images = []
    for seed in range(3):
        atoms = _cell("cubic", seed)
        atoms.calc = EMT()
        atoms.get_forces()
        images.append(atoms)
    potential = Potential(create_descriptor("gaussian", elements=["Cu", "Pt"]),
                          create_model("neuralnetwork", hiddenlayers=(10, 10), seed=1))
    evaluate_loss(images, potential, forces=True)
    return potential.descriptor, potential.model


def _thermalise(atoms, temperature, seed):
    """Maxwell-Boltzmann velocities at ``temperature`` K (without ASE's version-dependent helpers)."""
    sigma = np.sqrt(units.kB * temperature / atoms.get_masses())[:, None]
    atoms.set_momenta(atoms.get_masses()[:, None] * sigma * np.random.default_rng(seed).normal(size=(len(atoms), 3)))


def _potential(model, compiled, **options):
    return Potential(*model, compiled=compiled, **options)


@pytest.mark.parametrize("compiled", KERNELS)
def test_one_pass_gives_the_derivative_block_numbers(model, compiled, slab_images):
    fast, reference = _potential(model, compiled), _potential(model, compiled, one_pass=False, skin=0)
    assert "stress" in fast.implemented_properties
    for atoms in [slab_images[3], slab_images[9], _cell("triclinic", 4)]:
        a, b = atoms.copy(), atoms.copy()
        a.calc, b.calc = fast, reference
        forces = a.get_forces()
        assert a.get_potential_energy() == pytest.approx(b.get_potential_energy(), rel=1e-12, abs=0)
        scale = np.abs(b.get_forces()).max()
        np.testing.assert_allclose(forces, b.get_forces(), rtol=0, atol=1e-12 * scale)


@pytest.mark.parametrize("compiled", KERNELS)
def test_one_pass_forces_are_minus_the_energy_gradient(model, compiled):
    atoms = _cell("triclinic", 2)
    atoms.calc = _potential(model, compiled, skin=0)
    forces = atoms.get_forces()
    step = 1e-5
    for index, axis in ((0, 0), (7, 1), (19, 2), (31, 0)):
        energies = []
        for sign in (1, -1):
            moved = atoms.copy()
            moved.positions[index, axis] += sign * step
            moved.calc = atoms.calc
            energies.append(moved.get_potential_energy())
        assert forces[index, axis] == pytest.approx(-(energies[0] - energies[1]) / (2 * step), rel=1e-6, abs=1e-8)


@pytest.mark.parametrize("compiled", KERNELS)
@pytest.mark.parametrize("shape", ["orthorhombic", "triclinic"])
def test_stress_is_the_strain_derivative_of_the_energy(model, compiled, shape):
    atoms = _cell(shape, 3)
    atoms.calc = _potential(model, compiled)
    stress = atoms.get_stress(voigt=False)
    step, volume = 1e-5, atoms.get_volume()
    expected = np.zeros((3, 3))
    for a in range(3):
        for b in range(3):
            energies = []
            for sign in (1, -1):
                strain = np.eye(3)
                strain[a, b] += sign * step
                strained = atoms.copy()
                strained.set_cell(atoms.cell.array @ strain.T, scale_atoms=True)  # r -> (1 + e) r
                strained.calc = _potential(model, compiled, one_pass=False, skin=0)
                energies.append(strained.get_potential_energy())
            expected[a, b] = (energies[0] - energies[1]) / (2 * step) / volume
    assert np.abs(expected - expected.T).max() < 1e-6 * np.abs(expected).max()  # rotation invariance
    np.testing.assert_allclose(stress, expected, rtol=0, atol=1e-6 * np.abs(expected).max())
    np.testing.assert_allclose(atoms.get_stress(), stress[[0, 1, 2, 1, 0, 0], [0, 1, 2, 2, 2, 1]])


def test_stress_needs_a_periodic_cell(model, slab_images):
    atoms = slab_images[0].copy()
    atoms.calc = _potential(model, False)
    with pytest.raises(PropertyNotImplementedError, match="periodic in all three directions"):
        atoms.get_stress()


def test_stress_is_not_listed_without_the_contraction(model):
    plain = Potential(create_descriptor("coordination"), create_model("neuralnetwork", hiddenlayers=(3,)))
    assert "stress" not in plain.implemented_properties


@pytest.mark.parametrize("compiled", KERNELS)
def test_npt_berendsen_runs_on_a_periodic_cell(model, compiled):
    from ase.md.nptberendsen import NPTBerendsen
    atoms = _cell("cubic", 5)
    atoms.calc = _potential(model, compiled)
    _thermalise(atoms, 300, 0)
    volume = atoms.get_volume()
    dyn = NPTBerendsen(atoms, 1.0 * units.fs, temperature_K=300, pressure_au=1.0 * units.bar,
                       taut=100 * units.fs, taup=500 * units.fs, compressibility_au=4.57e-5 / units.bar)
    dyn.run(5)
    assert np.isfinite(atoms.get_potential_energy()) and np.isfinite(atoms.get_stress()).all()
    assert atoms.get_volume() != volume  # the barostat moved the cell, from the calculator's stress


@pytest.mark.parametrize("compiled", KERNELS)
def test_neighbour_list_reuse_gives_fresh_list_numbers_across_an_md_run(model, compiled):
    from ase.md.verlet import VelocityVerlet
    atoms = _cell("triclinic", 6)
    reused = _potential(model, compiled, skin=0.1)
    fresh = _potential(model, compiled, skin=0)
    atoms.calc = reused
    _thermalise(atoms, 1500, 1)
    dyn = VelocityVerlet(atoms, 2.0 * units.fs)
    steps = 0
    for _ in dyn.irun(30):
        copy = atoms.copy()
        copy.calc = fresh
        assert atoms.get_potential_energy() == pytest.approx(copy.get_potential_energy(), rel=1e-12, abs=0)
        scale = np.abs(copy.get_forces()).max()
        np.testing.assert_allclose(atoms.get_forces(), copy.get_forces(), rtol=0, atol=1e-12 * scale)
        steps += 1
    assert 1 < reused.neighbour_builds < steps  # kept between some steps, rebuilt at others
    assert fresh.neighbour_builds == 0


def test_a_changed_cell_rebuilds_the_list(model):
    atoms = _cell("cubic", 7)
    potential = _potential(model, False, skin=1.0)
    atoms.calc = potential
    atoms.get_forces()
    atoms.positions[3] += 0.1  # within skin / 2: kept
    atoms.get_forces()
    assert potential.neighbour_builds == 1
    atoms.set_cell(atoms.cell.array * 1.01, scale_atoms=True)
    atoms.get_forces()
    assert potential.neighbour_builds == 2


@pytest.mark.parametrize("compiled", KERNELS)
def test_an_error_in_the_gradient_callback_propagates(model, compiled):
    descriptor = model[0].compiled() if compiled else model[0]
    atoms = _cell("cubic", 8)

    def broken(rows, values):
        raise ZeroDivisionError("model failed")

    with pytest.raises(ZeroDivisionError, match="model failed"):
        descriptor.contract(atoms, broken)
    with pytest.raises(ValueError, match="gradient callback returned shape"):
        descriptor.contract(atoms, lambda rows, values: values[:, :2])


def test_a_skin_list_for_another_atom_count_is_refused(model):
    descriptor = model[0]
    atoms = _cell("cubic", 9)
    kept = descriptor.neighbours(atoms, 0.5)
    with pytest.raises(DataError, match="built for 32 atoms"):
        descriptor.compute(atoms[:-1], neighbours=kept)
    with pytest.raises(ValueError, match="skin must be >= 0"):
        descriptor.neighbours(atoms, -1.0)


def test_stress_with_one_pass_off_still_comes_from_the_contraction(model):
    atoms = _cell("triclinic", 10)
    atoms.calc = _potential(model, False)
    expected = atoms.get_stress()
    again = atoms.copy()
    again.calc = _potential(model, False, one_pass=False)
    np.testing.assert_allclose(again.get_stress(), expected, rtol=1e-12, atol=1e-15)
    forces = atoms.get_forces()
    np.testing.assert_allclose(again.get_forces(), forces, rtol=0, atol=1e-12 * np.abs(forces).max())


@pytest.mark.parametrize("compiled", KERNELS)
def test_one_pass_builds_no_derivative_blocks(model, compiled, monkeypatch):
    """The force call never asks for derivative blocks: neither compute(derivatives=True) nor their numbering."""
    import amp_plugins.descriptors.gaussian._neighbors as neighbours_module

    def refuse(*args, **kwargs):
        raise AssertionError("derivative blocks were built")

    monkeypatch.setattr(neighbours_module, "derivative_blocks", refuse)
    atoms = _cell("triclinic", 11)
    atoms.calc = _potential(model, compiled)
    assert np.isfinite(atoms.get_forces()).all() and np.isfinite(atoms.get_stress()).all()
    atoms.calc = _potential(model, compiled, one_pass=False)
    with pytest.raises(AssertionError, match="derivative blocks were built"):
        atoms.get_forces()  # the fallback path does build them: the spy works


@settings(max_examples=6, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(angles=st.tuples(*[st.floats(0.0, 2 * np.pi)] * 3), seed=st.integers(0, 100))
def test_forces_and_stress_rotate_with_the_structure(model, angles, seed):
    from scipy.spatial.transform import Rotation

    rotation = Rotation.from_euler("xyz", angles).as_matrix()
    atoms = _cell("triclinic", seed)
    atoms.calc = _potential(model, False)
    turned = atoms.copy()
    turned.set_cell(atoms.cell.array @ rotation.T, scale_atoms=True)  # r -> R r
    turned.calc = _potential(model, False)
    forces, stress = atoms.get_forces(), atoms.get_stress(voigt=False)
    assert turned.get_potential_energy() == pytest.approx(atoms.get_potential_energy(), rel=1e-10)
    np.testing.assert_allclose(turned.get_forces(), forces @ rotation.T, rtol=0, atol=1e-9 * np.abs(forces).max())
    np.testing.assert_allclose(turned.get_stress(voigt=False), rotation @ stress @ rotation.T, rtol=0,
                               atol=1e-9 * np.abs(stress).max())
