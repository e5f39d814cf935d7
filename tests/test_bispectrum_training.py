"""End to end: the neural network trains on bispectrum fingerprints with forces, saves, loads, predicts."""

from __future__ import annotations

import numpy as np
import pytest
from ase.io import write

from amp_core import load, train

CONFIG = """
[descriptor]
name = "bispectrum"
cutoff = 4.5
jmax = 1.5
[descriptor.Gs]
Cu = {{ Cu = 1.0, Pt = 2.0 }}
Pt = {{ Cu = 1.0, Pt = 2.0 }}
[model]
name = "neuralnetwork"
hiddenlayers = [4, 4]
[backend]
name = "{backend}"
[data]
train = "train.xyz"
[training]
maxiter = 60
force_coefficient = 0.04
[training.convergence]
energy_rmse = 1e-9
force_rmse = 1e-9
"""


@pytest.mark.parametrize("backend", ["serial", "fortran"])
@pytest.mark.filterwarnings("ignore::amp_core.ExtrapolationWarning")  # unseen slabs, few training images
def test_bispectrum_force_training_saves_loads_and_predicts(tmp_path, slab_images, backend):
    if backend == "fortran":
        from amp_plugins.descriptors.bispectrum._fortran import probe

        if probe() is not None:
            pytest.skip(probe())
    write(tmp_path / "train.xyz", slab_images[:4])
    (tmp_path / "run.toml").write_text(CONFIG.format(backend=backend))
    potential = train(tmp_path / "run.toml", echo=None)
    log = (tmp_path / "run" / "train-log.txt").read_text()
    rows = [line.split() for line in log.splitlines() if line.split() and line.split()[0].isdigit()]
    assert len(rows) > 30
    # columns: iteration, time, loss, energy rmse, energy max, force rmse, ...: forces were trained
    assert float(rows[-1][2]) < 0.8 * float(rows[0][2])
    assert float(rows[-1][5]) < float(rows[0][5])
    loaded = load(tmp_path / "run" / "potential.json")
    assert loaded.descriptor.name == "bispectrum" and loaded.descriptor.params == potential.descriptor.params
    atoms = slab_images[30].copy()
    atoms.calc = loaded
    reference = slab_images[30].copy()
    reference.calc = potential
    assert atoms.get_potential_energy() == pytest.approx(reference.get_potential_energy(), rel=1e-10)
    forces = atoms.get_forces()
    assert np.allclose(forces, reference.get_forces(), rtol=1e-8, atol=1e-10)
    # the forces are minus the gradient of the predicted energy (through the analytic derivatives)
    for atom, axis in [(0, 0), (17, 2), (35, 1)]:
        moved = []
        for step in (1e-4, -1e-4):
            probe_atoms = slab_images[30].copy()
            probe_atoms.positions[atom, axis] += step
            probe_atoms.calc = loaded
            moved.append(probe_atoms.get_potential_energy())
        assert -(moved[0] - moved[1]) / 2e-4 == pytest.approx(forces[atom, axis], rel=1e-5, abs=1e-7)
