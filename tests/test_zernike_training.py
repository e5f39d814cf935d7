"""End to end: a neural network trained on Zernike fingerprints (energies and forces) through ``train``."""

from __future__ import annotations

import numpy as np
import pytest

from amp_core import create_descriptor, load, train
from tests.test_training_nn import setup_run
from tests.test_zernike_values import compiled_available

OPTIONS = 'elements = ["Cu", "Pt"]\nnmax = 4\n[descriptor.cutoff]\nname = "Polynomial"\nRc = 5.0\ngamma = 4'


@pytest.mark.parametrize(
    "backend",
    [
        "serial",
        pytest.param(
            "fortran",
            marks=pytest.mark.skipif(not compiled_available(), reason="no compiled (Fortran) kernel"),
        ),
    ],
)
@pytest.mark.filterwarnings("ignore::amp_core.ExtrapolationWarning")  # unseen slabs, 6 training images
def test_zernike_network_trains_saves_loads_and_predicts(tmp_path, slab_images, backend):
    path = setup_run(tmp_path, slab_images[:6], descriptor="zernike", descriptor_options=OPTIONS,
                     backend=backend, maxiter=25, energy_rmse=1e-9)  # fmt: skip
    potential = train(path, echo=None)
    log = (tmp_path / "run" / "train-log.txt").read_text()
    assert "zernike" in log
    rows = [line.split() for line in log.splitlines() if line.split() and line.split()[0].isdigit()]
    assert len(rows) >= 2 and float(rows[-1][2]) < float(rows[0][2])  # the loss went down
    loaded = load(tmp_path / "run" / "potential.json")
    assert loaded.descriptor.name == "zernike"
    assert loaded.descriptor.todict() == create_descriptor("zernike", **loaded.descriptor.todict()).todict()
    assert loaded.descriptor.params.cutoff.name == "Polynomial" and loaded.descriptor.params.nmax == 4
    for atoms in (slab_images[30], slab_images[31]):
        a, b = atoms.copy(), atoms.copy()
        a.calc, b.calc = loaded, potential
        assert a.get_potential_energy() == pytest.approx(b.get_potential_energy(), rel=1e-12)
        assert np.allclose(a.get_forces(), b.get_forces(), rtol=1e-10, atol=1e-12)
        # forces are minus the energy gradient (fingerprint derivatives through the network)
        h, k = 1e-4, 7
        plus, minus = atoms.copy(), atoms.copy()
        plus.positions[k, 2] += h
        minus.positions[k, 2] -= h
        plus.calc, minus.calc = loaded, loaded
        fd = -(plus.get_potential_energy() - minus.get_potential_energy()) / (2 * h)
        assert a.get_forces()[k, 2] == pytest.approx(fd, rel=1e-5, abs=1e-7)
