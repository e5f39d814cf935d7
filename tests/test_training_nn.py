"""Training the Gaussian + neural-network potential from a config, and with a third-party descriptor."""

from __future__ import annotations

import numpy as np
import pytest
from ase.io import write

from amp_core import load, train

# The stated threshold for the quickstart data (10 images, hidden (5, 5), <= 2000 iterations).
FORCE_RMSE_THRESHOLD = 0.25  # eV/A

CONFIG = """
[descriptor]
name = "{descriptor}"
{descriptor_options}
[model]
name = "neuralnetwork"
hiddenlayers = [5, 5]
[backend]
name = "{backend}"
[data]
train = "train.xyz"
[training]
maxiter = {maxiter}
force_coefficient = {force_coefficient}
[training.convergence]
energy_rmse = {energy_rmse}
{force_rmse}
"""


def setup_run(tmp_path, images, **values):
    write(tmp_path / "train.xyz", images)
    defaults = {"descriptor": "gaussian", "descriptor_options": 'elements = ["Cu", "Pt"]', "backend": "serial",
                "maxiter": 2000, "force_coefficient": 0.04, "energy_rmse": 0.004,
                "force_rmse": f"force_rmse = {FORCE_RMSE_THRESHOLD}"}
    defaults.update(values)
    (tmp_path / "run.toml").write_text(CONFIG.format(**defaults))
    return tmp_path / "run.toml"


def test_quickstart_data_trains_below_force_threshold(tmp_path, slab_images):
    potential = train(setup_run(tmp_path, slab_images[:10]), echo=None)
    assert potential.training["converged"], (tmp_path / "run" / "train-log.txt").read_text()[-2000:]
    log = (tmp_path / "run" / "train-log.txt").read_text()
    rows = [line.split() for line in log.splitlines() if line.split() and line.split()[0].isdigit()]
    assert float(rows[-1][5]) <= FORCE_RMSE_THRESHOLD < float(rows[0][5])
    assert "energy_rmse* force_rmse*" in rows[-1][-2] + " " + rows[-1][-1]
    # The saved file predicts what the trained object predicts, through ASE.
    loaded = load(tmp_path / "run" / "potential.json")
    atoms = slab_images[7].copy()  # a training image: unseen ones may be flagged as extrapolation (warning)
    atoms.calc = loaded
    reference = slab_images[7].copy()
    reference.calc = potential
    assert atoms.get_potential_energy() == pytest.approx(reference.get_potential_energy(), rel=1e-12)
    assert np.allclose(atoms.get_forces(), reference.get_forces(), rtol=1e-10, atol=1e-12)


def test_same_parameters_after_n_iterations_on_every_backend(tmp_path, slab_images):
    vectors = {}
    for backend in ("serial", "multiprocessing"):
        folder = tmp_path / backend
        folder.mkdir()
        path = setup_run(folder, slab_images[:6], backend=backend, maxiter=15, energy_rmse=1e-9)
        vectors[backend] = train(path, echo=None).model.vector()
    assert np.allclose(vectors["serial"], vectors["multiprocessing"], rtol=1e-8, atol=1e-12)


def test_third_party_descriptor_trains_from_config(tmp_path, slab_images):
    pytest.importorskip("amp_coordination", reason="install examples/amp-coordination (README test command)")
    path = setup_run(tmp_path, slab_images[:8], descriptor="coordination",
                     descriptor_options='elements = ["Cu", "Pt"]\nradii = [3.0, 4.5, 6.0]',
                     maxiter=60, energy_rmse=1e-9, force_rmse="")
    potential = train(path, echo=None)
    log = (tmp_path / "run" / "train-log.txt").read_text()
    assert "descriptor coordination (amp-coordination 0.1.0)" in log
    rows = [line.split() for line in log.splitlines() if line.split() and line.split()[0].isdigit()]
    assert float(rows[-1][2]) < 0.5 * float(rows[0][2])
    assert load(tmp_path / "run" / "potential.json").descriptor.name == "coordination"
    assert potential.descriptor.name == "coordination"
