"""Implausibly large structures are refused before the neighbour search (no SIGFPE, no quadratic hang)."""

from __future__ import annotations

import subprocess
import sys
import time

import pytest
from ase import Atoms
from ase.build import fcc111
from ase.calculators.singlepoint import SinglePointCalculator
from ase.io import write

from amp_core import DataError, Potential, create_descriptor, create_model, evaluate_loss
from amp_core.images import MAX_EXTENT


def _potential():
    return Potential(create_descriptor("gaussian", elements=["Cu"], cutoff=5.0),
                     create_model("neuralnetwork", hiddenlayers=(3,)))


def test_far_away_atom_through_the_calculator_is_a_clear_error(slab_images):
    pair = Atoms("Cu2", positions=[[0, 0, 0], [0, 0, 2e6]])
    pair.calc = _potential()
    with pytest.raises(DataError, match=r"structure given to the calculator: atom \d lies .* non-periodic direction 2"):
        pair.get_potential_energy()


def test_escaped_atom_of_a_slab_is_refused_quickly():
    slab = fcc111("Cu", (2, 2, 3), vacuum=6.0)
    slab.pbc = (True, True, False)
    slab.positions[5, 2] = 1e5
    slab.calc = SinglePointCalculator(slab, energy=0.0)
    began = time.monotonic()
    with pytest.raises(DataError, match=r"image 0: atom 5 lies .* at most 2000"):
        evaluate_loss([slab], _potential())
    assert time.monotonic() - began < 10


def test_an_atom_far_along_a_periodic_direction_is_fine():
    slab = fcc111("Cu", (2, 2, 3), vacuum=6.0)
    slab.pbc = (True, True, False)
    slab.positions[5, 0] += 1e5  # unwrapped coordinates, as MD writes them
    slab.calc = SinglePointCalculator(slab, energy=0.0)
    assert evaluate_loss([slab], _potential()).loss >= 0


def test_a_huge_cell_is_refused():
    crystal = Atoms("Cu", cell=[MAX_EXTENT * 2, 3, 3], pbc=True)
    crystal.calc = SinglePointCalculator(crystal, energy=0.0)
    with pytest.raises(DataError, match="cell vector is 4000 Angstrom long"):
        evaluate_loss([crystal], _potential())


def test_amp_train_with_a_far_away_atom_exits_2(tmp_path):
    pair = Atoms("Cu2", positions=[[0, 0, 0], [0, 0, 2e6]])
    pair.calc = SinglePointCalculator(pair, energy=1.0)
    write(tmp_path / "far.xyz", pair)
    (tmp_path / "run.toml").write_text('[descriptor]\nname = "gaussian"\nelements = ["Cu"]\n[model]\n'
                                       'name = "neuralnetwork"\n[data]\ntrain = "far.xyz"\n')
    run = subprocess.run([sys.executable, "-m", "amp_core.cli", "train", "run.toml"], cwd=tmp_path,
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 2, run.stderr
    assert "far.xyz, image 0: atom" in run.stderr and "Traceback" not in run.stderr
