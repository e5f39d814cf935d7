"""Validation during training: a reproducible split, validation columns, early stopping to the best parameters."""

from __future__ import annotations

import json

import numpy as np
import pytest
from ase.io import write

from amp_core import evaluate_loss, load, train
from amp_core.data import LossResult
from amp_core.validation import Monitor, default_interval


def _config(tmp_path, **training) -> dict:
    return {
        "descriptor": {"name": "gaussian", "elements": ["Cu", "Pt"], "cutoff": 4.0},
        "model": {"name": "neuralnetwork", "hiddenlayers": [4]},
        "backend": {"name": "serial"},
        "data": {"train": str(tmp_path / "train.xyz"), "validation_fraction": 0.25},
        "training": {"maxiter": 40, "force_coefficient": 0.04, "directory": str(tmp_path / "run"),
                     "convergence": {"energy_rmse": 1e-12}, **training},
    }


@pytest.fixture
def data(tmp_path, slab_images):
    write(tmp_path / "train.xyz", slab_images[:12])
    return tmp_path


def test_split_is_reproducible_from_the_seed_and_saved(data):
    train(_config(data, maxiter=2, seed=3), echo=None)
    first = json.loads((data / "run" / "split.json").read_text())
    train(_config(data, maxiter=2, seed=3), echo=None)
    again = json.loads((data / "run" / "split.json").read_text())
    assert first == again and len(first["validation"]) == 3 and len(first["train"]) == 9
    assert not set(first["validation"]) & set(first["train"])
    train(_config(data, maxiter=2, seed=4), echo=None)
    other = json.loads((data / "run" / "split.json").read_text())
    assert other["validation"] != first["validation"]


def test_rows_carry_validation_columns_at_the_interval(data):
    train(_config(data, maxiter=6, validation_interval=2), echo=None)
    log = (data / "run" / "train-log.txt").read_text()
    assert "V_E_rmse" in log and "validation: 3 images, every 2 iteration(s)" in log
    rows = [line.split() for line in log.splitlines() if line.split() and line.split()[0].isdigit()]
    assert [row[7] != "-" for row in rows[:5]] == [True, False, True, False, True]


def test_early_stopping_keeps_the_best_parameters(data):
    potential = train(_config(data, maxiter=400, validation_interval=1, patience=3), echo=None)
    best = potential.training["best_validation"]
    assert "early stopping" in potential.training["outcome"] or potential.training["iterations"] == 400
    saved = load(data / "run" / "potential.json")
    checkpoint = load(data / "run" / "checkpoint.json")
    split = json.loads((data / "run" / "split.json").read_text())
    assert np.array_equal(saved.model.vector(), potential.model.vector())
    validation = [f"{data / 'train.xyz'}@{origin.rsplit(' ', 1)[1]}" for origin in split["validation"]]
    result = evaluate_loss(validation, saved, forces=True)
    assert result.energy_rmse == pytest.approx(best["energy_rmse"], rel=1e-9)
    if best["iteration"] != potential.training["iterations"]:  # the checkpoint holds the last iterate
        assert not np.array_equal(checkpoint.model.vector(), saved.model.vector())


def test_default_interval_keeps_validation_under_a_tenth_of_the_work():
    assert default_interval(40, 10) == 3
    assert default_interval(90, 10) == 2
    assert default_interval(1000, 10) == 1


def _result(energy: float, force: float) -> LossResult:
    return LossResult(loss=energy + force, energy_loss=0.0, force_loss=0.0, energy_rmse=energy, force_rmse=force,
                      energy_maxresid=0.0, force_maxresid=0.0, gradient=np.zeros(1))


def test_overfitting_is_warned_about():
    monitor = Monitor(loss=None, interval=1)
    monitor.best, monitor.best_iteration = _result(0.01, 0.9), 5
    lines = monitor.summary(_result(0.008, 0.2), forces=True)
    assert "force RMSE 9.0000e-01 eV/A (training, same parameters: energy RMSE 8.0000e-03, force RMSE 2.0000e-01)" in lines[0]
    assert len(lines) == 2 and "validation force RMSE is 4.5 times the training" in lines[1]
    assert len(monitor.summary(_result(0.008, 0.6), forces=True)) == 1


def test_convergence_log_reads_the_validation_columns(data):
    from amp_core.plotting import read_log

    train(_config(data, maxiter=6, validation_interval=3), echo=None)
    columns = read_log(data / "run" / "train-log.txt")
    validated = ~np.isnan(columns["validation_energy_rmse"])
    assert validated.tolist()[:7] == [True, False, False, True, False, False, True]
    assert np.all(columns["validation_force_rmse"][validated] > 0)


def test_the_training_outcome_is_stored_in_the_potential_file(data):
    potential = train(_config(data, maxiter=4), echo=None)
    saved = json.loads((data / "run" / "potential.json").read_text())
    assert saved["training"] == json.loads(json.dumps(potential.training))
    assert saved["training"]["iterations"] == 4 and "best_validation" in saved["training"]
    assert load(data / "run" / "potential.json").training == saved["training"]
