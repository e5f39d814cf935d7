"""Defaults that depend on the data, and that the default settings generalise on the shipped data."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from ase.calculators.singlepoint import SinglePointCalculator
from ase.io import write

from amp_core import train
from amp_core.config import DEFAULT_FORCE_RMSE, DEFAULT_MAXITER, INTEGER_MAXIMUM, from_dict

EXAMPLES = Path(__file__).resolve().parent.parent / "examples" / "data"


def _config(tmp_path, **training):
    return {"descriptor": {"name": "gaussian", "elements": ["Cu", "Pt"], "cutoff": 4.0},
            "model": {"name": "neuralnetwork", "hiddenlayers": [3]},
            "data": {"train": str(tmp_path / "train.xyz")},
            "training": {"maxiter": 2, "directory": str(tmp_path / "run"), **training}}


def test_forces_are_trained_by_default_when_every_image_has_them(tmp_path, slab_images):
    write(tmp_path / "train.xyz", slab_images[:3])
    potential = train(_config(tmp_path), echo=None)
    assert potential.config["training"]["forces"] is True
    assert "forces trained" in (tmp_path / "run" / "train-log.txt").read_text()
    # Amp's energy criterion alone would stop a run whose forces are still poor
    assert potential.config["training"]["convergence"] == {
        "energy_rmse": 0.001, "energy_maxresid": None, "force_rmse": DEFAULT_FORCE_RMSE, "force_maxresid": None}
    given = train(_config(tmp_path, force_coefficient=0.04), echo=None)  # Amp's way: Amp's criteria
    assert given.config["training"]["convergence"]["force_rmse"] is None


def test_energies_only_by_default_when_an_image_lacks_forces(tmp_path, slab_images):
    images = [a.copy() for a in slab_images[:3]]
    for a, source in zip(images, slab_images[:3]):
        results = {"energy": source.get_potential_energy()}
        if a is not images[1]:
            results["forces"] = source.get_forces()
        a.calc = SinglePointCalculator(a, **results)
    write(tmp_path / "train.xyz", images)
    potential = train(_config(tmp_path), echo=None)
    assert potential.config["training"]["forces"] is False
    assert potential.training["iterations"] == 2


def test_an_explicit_forces_setting_wins(tmp_path, slab_images):
    write(tmp_path / "train.xyz", slab_images[:3])
    assert train(_config(tmp_path, forces=False), echo=None).config["training"]["forces"] is False


def test_maxiter_defaults_to_a_thousand_or_no_limit_under_max_time(tmp_path, slab_images):
    write(tmp_path / "train.xyz", slab_images[:1])
    config = _config(tmp_path)
    del config["training"]["maxiter"]
    assert from_dict(config).maxiter == DEFAULT_MAXITER
    config["training"]["max_time"] = "10m"
    assert from_dict(config).maxiter == INTEGER_MAXIMUM
    config["training"]["maxiter"] = 7
    assert from_dict(config).maxiter == 7


def test_the_default_settings_generalise_on_the_shipped_data(tmp_path, slab_images):
    """Defaults only (systematic symmetry functions, (20, 20) network, c_F, forces from the data):
    on held-out slabs the saved potential's force RMSE is within 1.5x of its training force RMSE."""
    from ase.io import read

    write(tmp_path / "train.xyz", slab_images[:20])
    write(tmp_path / "valid.xyz", read(EXAMPLES / "ptcu-validation.xyz", ":"))
    config = {"descriptor": {"name": "gaussian", "elements": ["Cu", "Pt"]},
              "model": {"name": "neuralnetwork"},
              "data": {"train": str(tmp_path / "train.xyz"), "validation": str(tmp_path / "valid.xyz")},
              "training": {"maxiter": 150, "directory": str(tmp_path / "run")}}
    potential = train(config, echo=None)
    best = potential.training["best_validation"]
    assert best["iteration"] > 10  # it learned something before the best
    assert best["force_rmse"] <= 1.5 * best["training_force_rmse"], best
    saved = json.loads((tmp_path / "run" / "potential.json").read_text())
    assert np.isclose(saved["training"]["best_validation"]["force_rmse"], best["force_rmse"])
