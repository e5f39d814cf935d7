"""Bad input gets a clear AmpError naming what, where and what to do; the store loses nothing."""

from __future__ import annotations

import numpy as np
import pytest
from ase import Atoms
from ase.calculators.singlepoint import SinglePointCalculator
from ase.io import write

from amp_core import Potential, create_descriptor, create_model, evaluate_loss
from amp_core.errors import ConfigError, DataError


def labelled(images, energy=1.0, forces=True):
    out = []
    for atoms in images:
        atoms = atoms.copy()
        f = np.zeros((len(atoms), 3)) if forces else None
        atoms.calc = SinglePointCalculator(atoms, energy=energy, forces=f)
        out.append(atoms)
    return out


@pytest.fixture
def potential():
    return Potential(create_descriptor("none"), create_model("pairpotential", cutoff=4.0))


@pytest.fixture
def good(slab_images):
    return [a.copy() for a in slab_images[:3]]


def copy_with_calc(atoms):
    new = atoms.copy()
    new.calc = SinglePointCalculator(new, **atoms.calc.results)
    return new


def test_empty_file(tmp_path, potential):
    path = tmp_path / "empty.xyz"
    path.write_text("")
    with pytest.raises(DataError, match="empty.xyz.* is empty"):
        evaluate_loss(str(path), potential)


def test_empty_list(potential):
    with pytest.raises(DataError, match="no structures"):
        evaluate_loss([], potential)


def test_image_without_energy(slab_images, potential):
    images = [copy_with_calc(a) for a in slab_images[:3]]
    images[1].calc = None
    with pytest.raises(DataError, match="image 1: no reference energy"):
        evaluate_loss(images, potential)


def test_image_without_forces_when_forces_trained(tmp_path, slab_images, potential):
    images = [copy_with_calc(a) for a in slab_images[:3]]
    images[2].calc = SinglePointCalculator(images[2], energy=1.0)
    path = tmp_path / "noforces.traj"
    write(path, images)
    with pytest.raises(DataError, match=r"noforces.traj, image 2: no reference forces.*train energies only"):
        evaluate_loss(str(path), potential, force_coefficient=0.04)
    evaluate_loss(str(path), potential)  # energies only is fine


@pytest.mark.parametrize("where", ["position", "energy", "forces"])
def test_non_finite_numbers(slab_images, potential, where):
    images = [copy_with_calc(a) for a in slab_images[:3]]
    bad = images[1]
    if where == "position":
        bad.positions[4, 1] = np.nan
        bad.calc = SinglePointCalculator(bad, energy=1.0, forces=np.zeros((len(bad), 3)))
        pattern = "image 1: position of atom 4 is not finite"
    elif where == "energy":
        bad.calc = SinglePointCalculator(bad, energy=np.inf, forces=np.zeros((len(bad), 3)))
        pattern = "image 1: reference energy is inf"
    else:
        forces = np.zeros((len(bad), 3))
        forces[7, 0] = np.nan
        bad.calc = SinglePointCalculator(bad, energy=1.0, forces=forces)
        pattern = "image 1: reference force on atom 7 is not finite"
    with pytest.raises(DataError, match=pattern):
        evaluate_loss(images, potential, force_coefficient=0.04)


def test_unknown_element_at_training_and_prediction(slab_images):
    model = create_model("pairpotential", cutoff=4.0, elements=("Cu",))
    potential = Potential(create_descriptor("none"), model)
    with pytest.raises(DataError, match=r"image 0: element\(s\) Pt unknown to model 'pairpotential'"):
        evaluate_loss([copy_with_calc(a) for a in slab_images[:2]], potential)
    atoms = Atoms("CuAu", positions=[[0, 0, 0], [0, 0, 2.5]])
    atoms.calc = potential
    with pytest.raises(DataError, match=r"element\(s\) Au unknown"):
        atoms.get_potential_energy()


def test_wrong_backend_name(slab_images, potential):
    with pytest.raises(ConfigError, match="unknown backend 'parallel'"):
        evaluate_loss([copy_with_calc(a) for a in slab_images[:2]], potential, backend="parallel")
