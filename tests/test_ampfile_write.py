"""Writing Amp ``.amp`` files: read back by amp-core always, by the original Amp 1.0.1 when installed."""

from __future__ import annotations

import importlib
import sys
from pathlib import Path

import numpy as np
import pytest
from ase import Atoms
from ase.calculators.emt import EMT
from ase.calculators.singlepoint import SinglePointCalculator

import amp_core
from amp_core import ModelFileError, Potential, PropertyNotImplementedError, create_descriptor, create_model
from amp_core.ampfile import amp_text

sys.path.insert(0, str(Path(__file__).parent / "support"))
amp_original = importlib.import_module("amp_original")


def labelled(atoms: Atoms) -> Atoms:
    atoms.calc = EMT()
    energy, forces = atoms.get_potential_energy(), atoms.get_forces()
    atoms.calc = SinglePointCalculator(atoms, energy=energy, forces=forces)
    return atoms


def images() -> list[Atoms]:
    """A rattled periodic Cu/Pt cell (cell vectors > cutoff) and a rattled cluster."""
    rng = np.random.default_rng(3)
    cell = Atoms("Cu3Pt", cell=[[4.3, 0.0, 0.0], [0.2, 4.2, 0.0], [0.1, 0.3, 4.4]], pbc=True,
                 scaled_positions=[[0, 0, 0], [0.5, 0.5, 0], [0.5, 0, 0.5], [0, 0.5, 0.5]])
    cell.positions += rng.normal(scale=0.08, size=(4, 3))
    cluster = Atoms("Cu2Pt2", positions=[[0, 0, 0], [2.5, 0.1, 0], [1.2, 2.2, 0.2], [1.1, 0.9, 2.1]])
    cluster.positions += rng.normal(scale=0.05, size=(4, 3))
    return [labelled(cell), labelled(cluster)]


ZETA_HALF_GS = {
    el: [
        {"type": "G2", "element": "Cu", "eta": 0.05, "offset": 0.0},
        {"type": "G2", "element": "Pt", "eta": 2.0, "offset": 0.3},
        {"type": "G4", "elements": ["Cu", "Pt"], "eta": 0.005, "zeta": 0.5, "gamma": -1.0},
        {"type": "G4", "elements": ["Cu", "Cu"], "eta": 0.1, "zeta": 2.0, "gamma": 1.0},
        {"type": "G5", "elements": ["Pt", "Pt"], "eta": 0.01, "zeta": 1.0, "gamma": 1.0},
    ]
    for el in ("Cu", "Pt")
}

DESCRIPTORS = {
    "default set, cosine": ("gaussian", {"elements": ["Pt", "Cu"], "cutoff": 4.0, "preset": "amp"}),
    "G2/G4/G5 with zeta 0.5, polynomial": (
        "gaussian", {"Gs": ZETA_HALF_GS, "cutoff": {"name": "Polynomial", "Rc": 3.9, "gamma": 5.0}}),
    "zernike nmax 3": ("zernike", {"elements": ["Cu", "Pt"], "nmax": 3, "cutoff": 4.0}),
    "bispectrum jmax 1.5": ("bispectrum", {"elements": ["Cu", "Pt"], "jmax": 1.5, "cutoff": 4.0}),
}
MODELS = {
    "tanh (3, 2)": {"hiddenlayers": (3, 2)},
    "sigmoid, per element": {"hiddenlayers": {"Cu": (2,), "Pt": (3, 2)}, "activation": "sigmoid", "seed": 4},
}


def trained(descriptor: tuple[str, dict], model: dict) -> Potential:
    """A potential with initialised (random, seeded) weights, scalings and fprange from the images."""
    name, options = descriptor
    potential = Potential(create_descriptor(name, **options), create_model("neuralnetwork", **model))
    amp_core.evaluate_loss(images(), potential, backend="serial")
    return potential


def predictions(potential: Potential, structures: list[Atoms]) -> tuple[np.ndarray, np.ndarray]:
    energies, forces = [], []
    for atoms in structures:
        atoms = atoms.copy()
        atoms.calc = potential
        energies.append(atoms.get_potential_energy())
        forces.append(atoms.get_forces())
    return np.array(energies), np.concatenate(forces)


@pytest.mark.parametrize("model", sorted(MODELS))
@pytest.mark.parametrize("descriptor", sorted(DESCRIPTORS))
def test_written_amp_file_reads_back_with_the_same_predictions(tmp_path: Path, descriptor: str, model: str) -> None:
    potential = trained(DESCRIPTORS[descriptor], MODELS[model])
    path = potential.save_amp(tmp_path / "model.amp")
    assert path.read_text().startswith("dict(descriptor=")
    loaded = amp_core.load(path)
    assert loaded.descriptor == potential.descriptor
    np.testing.assert_array_equal(loaded.model.vector(), potential.model.vector())
    energies, forces = predictions(loaded, images())
    expected_energies, expected_forces = predictions(potential, images())
    np.testing.assert_array_equal(energies, expected_energies)
    np.testing.assert_array_equal(forces, expected_forces)


def test_descriptor_without_amp_counterpart_is_refused(tmp_path: Path) -> None:
    potential = Potential(create_descriptor("none"), create_model("pairpotential"))
    with pytest.raises(PropertyNotImplementedError, match="descriptor 'none' cannot be written as an Amp .amp file"):
        potential.save_amp(tmp_path / "model.amp")
    assert not (tmp_path / "model.amp").exists()


def test_non_finite_parameters_are_refused(tmp_path: Path) -> None:
    potential = trained(DESCRIPTORS["default set, cosine"], MODELS["tanh (3, 2)"])
    vector = potential.model.vector()
    vector[3] = np.nan
    potential.model.set_vector(vector)
    with pytest.raises(ValueError, match="weights.*cannot hold NaN"):
        potential.save_amp(tmp_path / "model.amp")
    assert list(tmp_path.iterdir()) == []


def test_untrained_model_is_written_as_amp_writes_it_and_refused_on_load(tmp_path: Path) -> None:
    """Amp saves a calculator before training with weights None; loading it for predictions is refused."""
    potential = Potential(create_descriptor("gaussian", elements=["Cu"], preset="amp"), create_model("neuralnetwork"))
    text = amp_text(potential.descriptor, potential.model)
    assert "weights=None" in text and "hiddenlayers=(20, 20)" in text
    potential.save_amp(tmp_path / "fresh.amp")
    with pytest.raises(ModelFileError, match="only trained models"):
        amp_core.load(tmp_path / "fresh.amp")


AMP = amp_original.amp_python()


@pytest.mark.skipif(AMP is None, reason="the original Amp is not installed (~/.cache/amp-original, AMP_SETUP notes)")
@pytest.mark.parametrize("model", sorted(MODELS))
@pytest.mark.parametrize("descriptor", sorted(DESCRIPTORS))
def test_original_amp_loads_the_file_and_predicts_the_same(tmp_path: Path, descriptor: str, model: str) -> None:
    potential = trained(DESCRIPTORS[descriptor], MODELS[model])
    path = potential.save_amp(tmp_path / "model.amp")
    structures, energies, forces = amp_original.amp_predict(AMP, path, images(), tmp_path / "amp")
    ours_e, ours_f = predictions(potential, structures)
    np.testing.assert_allclose(ours_e, energies, rtol=1e-10)
    if DESCRIPTORS[descriptor][0] == "bispectrum":  # Amp computes bispectrum values only: no forces
        assert all(f is None for f in forces)
        return
    forces = np.concatenate(forces)
    np.testing.assert_allclose(ours_f, forces, rtol=0, atol=1e-10 * np.abs(forces).max())


# Note: with weights that differ by direction (Gs['Cu']['Pt'] != Gs['Pt']['Cu']) the original Amp's
# Zernike forces differ from ours while the energies agree to 1e-10; ours agree with finite
# differences of the energy (tests/test_zernike_derivatives.py), so the files are compared here with
# Amp's default weights (the neighbour's atomic number), where Amp's forces are right.
