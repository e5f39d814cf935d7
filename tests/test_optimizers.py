"""Optimisers are plugins: the SciPy built-ins under their names, and a third-party one registered in process."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest
from ase.io import write

from amp_core import ConfigError, OptimizerEntry, PluginManager, hookimpl, train
from amp_core.config import build_optimizer, from_dict


@dataclass(frozen=True)
class DescentParams:
    """Fixed step of the test optimiser."""

    step: float = 1e-3


class Descent:
    """Steepest descent with a fixed step (a third-party optimiser that is never installed)."""

    name = "descent"

    def __init__(self, params: DescentParams) -> None:
        self.params = params
        self.losses: list[float] = []

    def minimize(self, function, start, *, maxiter, callback):
        vector = np.array(start, dtype=np.float64)
        for _ in range(maxiter):
            loss, gradient = function(vector)
            self.losses.append(loss)
            vector = vector - self.params.step * gradient
            callback(vector)
        return f"{maxiter} fixed steps done"


class DescentPlugin:
    @hookimpl
    def amp_optimizers(self):
        return [OptimizerEntry("descent", DescentParams, Descent, "Fixed-step descent (test).")]


def _config(tmp_path, optimizer: str) -> dict:
    return {"descriptor": {"name": "gaussian", "elements": ["Cu", "Pt"], "cutoff": 4.0},
            "model": {"name": "neuralnetwork", "hiddenlayers": [3]},
            "data": {"train": str(tmp_path / "train.xyz")},
            "training": {"maxiter": 15, "optimizer": optimizer, "directory": str(tmp_path / "run"),
                         "convergence": {"energy_rmse": 1e-12}}}


def test_a_third_party_optimizer_registered_in_process_trains(tmp_path, slab_images):
    write(tmp_path / "train.xyz", slab_images[:4])
    manager = PluginManager()
    manager.register(DescentPlugin(), name="test-descent")
    potential = train(_config(tmp_path, "descent"), echo=None, manager=manager)
    assert potential.training["iterations"] == 15 and "15 fixed steps done" in potential.training["outcome"]
    log = (tmp_path / "run" / "train-log.txt").read_text()
    rows = [line.split() for line in log.splitlines() if line.split() and line.split()[0].isdigit()]
    assert float(rows[-1][2]) < float(rows[0][2])  # the loss went down


@pytest.mark.parametrize(("given", "name"), [("L-BFGS-B", "lbfgs"), ("BFGS", "bfgs"), ("CG", "cg"), ("lbfgs", "lbfgs")])
def test_builtin_optimizers_and_scipy_names(tmp_path, slab_images, given, name):
    write(tmp_path / "train.xyz", slab_images[:2])
    config = from_dict(_config(tmp_path, given))
    assert build_optimizer(config).name == name


def test_unknown_optimizer_suggests_one(tmp_path, slab_images):
    write(tmp_path / "train.xyz", slab_images[:2])
    with pytest.raises(ConfigError, match=r"unknown optimizer 'lbgfs'.*Did you mean 'lbfgs'"):
        train(_config(tmp_path, "lbgfs"), echo=None)
    assert not (tmp_path / "run").exists()  # refused before any work
