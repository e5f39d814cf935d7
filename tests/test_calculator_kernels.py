"""The calculator computes force calls with the compiled kernels when they are built, with the same numbers."""

from __future__ import annotations

import logging
import re
import warnings

import numpy as np
import pytest

import amp_core.calculator as calculator
from amp_core import Potential, PropertyNotImplementedError, create_descriptor, create_model, evaluate_loss
from amp_plugins.descriptors.gaussian import Gaussian
from amp_plugins.descriptors.gaussian._fortran import probe

requires_kernels = pytest.mark.skipif(probe() is not None, reason=f"Fortran kernels not built: {probe()}")


def _trained(compiled, slab_images):
    potential = Potential(create_descriptor("gaussian", elements=["Cu", "Pt"]),
                          create_model("neuralnetwork", hiddenlayers=(5,), seed=4), compiled=compiled)
    evaluate_loss(slab_images[:3], potential)  # initialises the network
    return potential


@requires_kernels
def test_compiled_force_calls_give_the_numpy_numbers(slab_images):
    fast, plain = _trained(None, slab_images), _trained(False, slab_images)
    assert (fast.kernel, plain.kernel) == ("compiled", "numpy")
    for atoms in slab_images[5:8]:
        a, b = atoms.copy(), atoms.copy()
        a.calc, b.calc = fast, plain
        assert a.get_potential_energy() == pytest.approx(b.get_potential_energy(), rel=1e-12, abs=0)
        np.testing.assert_allclose(a.get_forces(), b.get_forces(), rtol=1e-12, atol=1e-13)


@requires_kernels
def test_forces_are_minus_the_energy_gradient_on_the_compiled_path(slab_images):
    atoms = slab_images[6].copy()
    atoms.calc = _trained(True, slab_images)
    forces = atoms.get_forces()
    step = 1e-5
    for index, axis in ((0, 2), (17, 0), (35, 1)):
        shifted = []
        for sign in (1, -1):
            moved = atoms.copy()
            moved.positions[index, axis] += sign * step
            moved.calc = atoms.calc
            shifted.append(moved.get_potential_energy())
        assert forces[index, axis] == pytest.approx(-(shifted[0] - shifted[1]) / (2 * step), rel=1e-6, abs=1e-8)


def test_compiled_true_without_kernels_is_an_error(slab_images):
    potential = Potential(create_descriptor("coordination"), create_model("neuralnetwork", hiddenlayers=(3,)),
                          compiled=True)
    evaluate_loss(slab_images[:2], potential)
    atoms = slab_images[0].copy()
    atoms.calc = potential
    with pytest.raises(PropertyNotImplementedError, match="descriptor 'coordination' has no compiled kernels"):
        atoms.get_potential_energy()
    potential.compiled = None  # when available: numpy here
    assert potential.kernel == "numpy" and np.isfinite(atoms.get_potential_energy())


def test_numpy_fallback_is_reported_once_and_never_when_chosen(slab_images, monkeypatch, caplog):
    def missing(self):
        raise PropertyNotImplementedError("the gaussian kernel was not built (install gfortran)")

    def said():
        return [r for r in caplog.records if "force calls run the numpy kernels" in r.getMessage()]

    monkeypatch.setattr(Gaussian, "compiled", missing)
    monkeypatch.setattr(calculator, "_WARNED_SLOW", set())
    automatic, chosen = _trained(None, slab_images), _trained(False, slab_images)
    with caplog.at_level(logging.WARNING, logger="amp_core"), warnings.catch_warnings():
        warnings.simplefilter("error")  # a log record, never a Python warning
        assert automatic.kernel == "numpy"
        atoms = slab_images[5].copy()
        atoms.calc = automatic
        atoms.get_forces()
        assert _trained(None, slab_images).kernel == "numpy"
        assert len(said()) == 1  # once per process and descriptor
        assert re.search(r"'gaussian'.*install gfortran.*compiled=False", said()[0].getMessage())
        monkeypatch.setattr(calculator, "_WARNED_SLOW", set())
        assert chosen.kernel == "numpy"  # compiled=False: asked for, so nothing said
        assert len(said()) == 1
    with pytest.raises(PropertyNotImplementedError, match="not built"):
        assert _trained(True, slab_images).kernel  # compiled=True: an error, as before
